//! Targets for what peers send: Bitswap messages (uvarint-framed protobuf) and the frames of
//! `/cairn/resolve/1.0.0`, `/cairn/metadata/1.0.0` and `/cairn/holds/1.0.0` (uvarint-framed JSON
//! and bodies), read from a stream as the node reads them, both as the server and as the asker.

use cairn_mirror::cid::FlatCid;
use cairn_node::bitswap::message::{self, Message};
use cairn_node::peers::{
    HoldsAnswer, HoldsRequest, MAX_HOLDS_FLATS, MAX_METADATA_BODY, MetadataHeader, MetadataRequest,
    ResolveFrame, ResolveRequest, parse_leaf, wire,
};
use cid::Cid;
use futures::executor::block_on;
use futures::io::Cursor;

/// Most frames read from one input.
const MAX_FRAMES: usize = 256;

/// Bitswap messages until the stream ends: wants (server side), blocks and presences (client
/// side), with each block's CID rebuilt from its prefix.
pub fn bitswap(input: &[u8]) -> bool {
    let mut stream = Cursor::new(input);
    let mut read = 0;
    for _ in 0..MAX_FRAMES {
        match block_on(message::read_message(&mut stream)) {
            Ok(Some(msg)) => {
                take(&msg);
                read += 1;
            }
            Ok(None) => return read > 0,
            Err(_) => return false,
        }
    }
    true
}

fn take(msg: &Message) {
    if let Some(wantlist) = &msg.wantlist {
        for entry in &wantlist.entries {
            let _ = (Cid::try_from(entry.block.as_ref()), entry.kind());
        }
    }
    for block in &msg.payload {
        if let Ok(cid) = message::block_cid(block) {
            let _ = message::cid_prefix(&cid);
        }
    }
    for presence in &msg.block_presences {
        let _ = (presence.kind(), Cid::try_from(presence.cid.as_ref()));
    }
    let _ = msg.is_empty();
}

/// A resolve stream: read as the server reads a request, and as the asker reads the answer's
/// frames (leaves checked one by one).
pub fn resolve(input: &[u8]) -> bool {
    let mut stream = Cursor::new(input);
    if let Ok(Some(request)) =
        block_on(wire::read_json::<_, ResolveRequest>(&mut stream, "resolve"))
    {
        let _ = request.flat.parse::<FlatCid>();
    }
    let mut stream = Cursor::new(input);
    let mut accepted = false;
    for _ in 0..MAX_FRAMES {
        match block_on(wire::read_json::<_, ResolveFrame>(&mut stream, "resolve")) {
            Ok(Some(ResolveFrame::Leaves { leaves })) => {
                accepted |= leaves.iter().all(|leaf| parse_leaf(leaf).is_ok());
            }
            Ok(Some(_)) => accepted = true,
            Ok(None) | Err(_) => break,
        }
    }
    accepted
}

/// A metadata stream: read as the server reads a request, and as the asker reads the header
/// and the body it announces.
pub fn metadata(input: &[u8]) -> bool {
    let mut stream = Cursor::new(input);
    let _ = block_on(wire::read_json::<_, MetadataRequest>(
        &mut stream,
        "metadata",
    ));
    let mut stream = Cursor::new(input);
    let Ok(Some(header)) = block_on(wire::read_json::<_, MetadataHeader>(
        &mut stream,
        "metadata",
    )) else {
        return false;
    };
    if !header.found {
        return true;
    }
    matches!(
        block_on(wire::read_frame(&mut stream, "metadata", MAX_METADATA_BODY)),
        Ok(Some(body)) if body.len() as u64 == header.size
    )
}

/// A holds stream: read as the server reads a request (a list longer than it takes is refused)
/// and as the asker reads the answer, each CID parsed.
pub fn holds(input: &[u8]) -> bool {
    let mut stream = Cursor::new(input);
    let mut accepted = false;
    if let Ok(Some(request)) = block_on(wire::read_json::<_, HoldsRequest>(&mut stream, "holds"))
        && request.flats.len() <= MAX_HOLDS_FLATS
    {
        accepted |= request.flats.iter().all(|f| f.parse::<FlatCid>().is_ok());
    }
    let mut stream = Cursor::new(input);
    if let Ok(Some(answer)) = block_on(wire::read_json::<_, HoldsAnswer>(&mut stream, "holds")) {
        accepted |= answer.held.iter().all(|f| f.parse::<FlatCid>().is_ok());
    }
    accepted
}
