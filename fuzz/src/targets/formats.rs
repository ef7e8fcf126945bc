//! Targets for the content-addressed formats: CAR streams (bundles), dag-cbor and snapshots,
//! dag-pb / UnixFS nodes (from peers, bundles and identity CIDs in gateway requests).

use std::cell::RefCell;
use std::collections::HashMap;

use cairn_mirror::car::CarReader;
use cairn_mirror::dagcbor::Value;
use cairn_mirror::snapshot::Snapshot;
use cairn_mirror::unixfs::{decode_node, decode_unixfs};
use cid::Cid;

/// Most sections read from one input (each is at least two bytes, so this only bounds the
/// time spent on a long input of tiny sections).
const MAX_SECTIONS: usize = 1 << 16;

/// A CAR v1 stream read with every block verified, as `cairn import` reads a bundle.
pub fn car(input: &[u8]) -> bool {
    let Ok(mut reader) = CarReader::new(input) else {
        return false;
    };
    let _ = reader.roots();
    for _ in 0..MAX_SECTIONS {
        match reader.next_block() {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
    true
}

/// One dag-cbor block. The decoder is strict (canonical forms only), so whatever it accepts
/// must encode back to the same bytes.
pub fn dag_cbor(input: &[u8]) -> bool {
    let Ok(value) = Value::decode(input) else {
        return false;
    };
    let _ = (value.get("type"), value.as_array(), value.as_link());
    assert_eq!(
        value.encode(),
        input,
        "decoded {value:?} does not encode to its input"
    );
    true
}

/// A snapshot, as the bundle importer decodes it: the blocks of a CAR, looked up by CID from
/// the root the header names. Sections are taken as they are (not checked against their
/// CIDs) so that mutated blocks reach the decoder; an attacker who writes a bundle can make
/// any block's CID match anyway.
pub fn snapshot(input: &[u8]) -> bool {
    let Ok(mut reader) = CarReader::new(input) else {
        return false;
    };
    let Some(root) = reader.roots().first().copied() else {
        return false;
    };
    let mut blocks: HashMap<Cid, Vec<u8>> = HashMap::new();
    for _ in 0..MAX_SECTIONS {
        match reader.next_section() {
            Ok(Some((cid, data))) => {
                blocks.entry(cid).or_insert(data);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Snapshot::decode(&root, |cid| {
        blocks
            .get(cid)
            .cloned()
            .ok_or_else(|| format!("need {cid}"))
    })
    .is_ok()
}

/// One dag-pb node and its UnixFS `Data`, read as the gateway's walk and the resolve server
/// read inner nodes. The input is also read as a bare `Data` message, so that its fields are
/// mutated without breaking the length of the node field around them.
pub fn dag_pb(input: &[u8]) -> bool {
    let bare = unixfs(input);
    let Ok(node) = decode_node(input) else {
        return bare;
    };
    node.data.is_none_or(unixfs) || bare
}

fn unixfs(data: &[u8]) -> bool {
    let Ok(unixfs) = decode_unixfs(data) else {
        return false;
    };
    if unixfs.is_file() {
        let _ = unixfs.file_size();
    }
    true
}

/// A store and index that bundles are imported into, one per thread (opening SQLite per input
/// would be most of the work). A thread-local is dropped when its thread ends, and with it the
/// temporary directory: each run of the target runs on a thread of its own.
struct Sink {
    _dir: tempfile::TempDir,
    store: cairn_mirror::store::Store,
    ecosystems: Vec<std::sync::Arc<dyn cairn_mirror::ecosystem::Ecosystem>>,
}

impl Sink {
    fn open() -> Sink {
        let dir = tempfile::tempdir().expect("a temporary directory for the bundle target");
        let store = cairn_mirror::store::Store::open(&dir.path().join("store"))
            .expect("a store for the bundle target");
        Sink {
            _dir: dir,
            store,
            ecosystems: super::adapters::ecosystems(),
        }
    }
}

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// A whole bundle, imported as `cairn import` does: the snapshot, then documents and artifacts
/// streamed into a store, verified, and indexed.
pub fn bundle(input: &[u8]) -> bool {
    SINK.with(|sink| {
        let mut sink = sink.borrow_mut();
        let sink = sink.get_or_insert_with(Sink::open);
        let index = sink.store.index();
        cairn_mirror::bundle::import(
            &sink.store,
            index,
            &sink.ecosystems,
            &|_, _| false,
            input,
            |_| {},
        )
        .is_ok()
    })
}
