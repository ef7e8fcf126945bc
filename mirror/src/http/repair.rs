//! `POST /api/v1/repair/artifact/FLAT-CID` and `POST /api/v1/repair/document/BLOCK-CID`
//! (`?fetch=true` to fetch it again): `cairn verify` hands the node each stored file it found
//! damaged, so that the node drops it from its memory caches and its announcements too, and
//! (with `--repair`) fetches it again through its peers and upstream. The node checks the file
//! again itself: a request cannot make it drop a sound one. Answered with a JSON
//! [`crate::RepairReport`].
//!
//! Only for clients on this machine, exactly as a purge (see `purge.rs`).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Method;

use super::purge::{json_report, local_client, only};
use crate::cid::{BlockCid, FlatCid};
use crate::engine::Mirror;
use crate::engine::repair::REPAIR_PREFIX;
use crate::error::Error;

pub(super) async fn repair(mirror: &Mirror, request: http::Request<Body>) -> Response {
    if let Some(refused) = only(&request, Method::POST, "a repair") {
        return refused;
    }
    if let Err(why) = local_client(&request, "a repair") {
        tracing::warn!("refused a repair of {}: {why}", request.uri().path());
        return Error::Forbidden(why).into_response();
    }
    let path = request.uri().path();
    let fetch = match request.uri().query() {
        None | Some("") | Some("fetch=false") => false,
        Some("fetch=true") => true,
        Some(other) => {
            return Error::BadRequest(format!(
                "{path}: unknown query {other:?} (fetch=true or fetch=false)"
            ))
            .into_response();
        }
    };
    let rest = path.strip_prefix(REPAIR_PREFIX).unwrap_or_default();
    let result = match rest.split_once('/') {
        Some(("artifact", cid)) => match cid.parse::<FlatCid>() {
            Ok(flat) => mirror.repair_artifact(flat, fetch).await,
            Err(e) => Err(Error::BadRequest(format!("{path}: not a flat CID: {e}"))),
        },
        Some(("document", cid)) => match cid.parse::<BlockCid>() {
            Ok(block) => mirror.repair_document(block, fetch).await,
            Err(e) => Err(Error::BadRequest(format!("{path}: not a block CID: {e}"))),
        },
        _ => Err(Error::NotFound(format!(
            "no route for {path}: {REPAIR_PREFIX}artifact/FLAT-CID or {REPAIR_PREFIX}document/BLOCK-CID"
        ))),
    };
    json_report(result, "repair report")
}
