//! Gateway tests: negotiation as pure functions, then whole requests through the router (no
//! socket) against a mirror with no ecosystem at all, so no upstream exists to be asked.

use std::str::FromStr as _;

use tower::ServiceExt as _;

use super::*;
use crate::MirrorConfig;
use crate::car::CarReader;
use crate::cid::{Algorithm, Digest, FlatCid, raw_block_cid};
use crate::testing::noise;
use crate::unixfs::{CHUNK_SIZE, Dag};

#[test]
fn format_negotiation() {
    let car = |dups| Ok(Format::Car { dups });
    for (accept, query, expect) in [
        ("", "format=raw", Ok(Format::Raw)),
        ("", "format=car", car(false)),
        ("application/vnd.ipld.raw", "", Ok(Format::Raw)),
        ("application/vnd.ipld.car", "", car(false)),
        (
            "application/vnd.ipld.car; version=1; order=dfs; dups=y",
            "",
            car(true),
        ),
        ("application/vnd.ipld.car;order=unk", "", car(false)),
        ("application/vnd.ipld.car;dups=y", "car-dups=n", car(false)),
        ("application/vnd.ipld.car", "format=raw", Ok(Format::Raw)),
        (
            "application/vnd.ipld.raw",
            "format=car&car-dups=y",
            car(true),
        ),
        ("application/vnd.ipld.car;dups=y", "format=car", car(true)),
        (
            "text/html, application/vnd.ipld.raw;q=0.5",
            "",
            Ok(Format::Raw),
        ),
        (
            "application/vnd.ipld.raw;q=0.5, application/vnd.ipld.car",
            "",
            car(false),
        ),
        (
            "application/vnd.ipld.car;version=2, application/vnd.ipld.car;version=1;q=0.5",
            "",
            car(false),
        ),
        (
            "application/vnd.ipld.car;q=0, application/vnd.ipld.raw",
            "",
            Ok(Format::Raw),
        ),
    ] {
        let got = negotiate([accept], &Query::parse(Some(query)));
        assert_eq!(got, expect, "Accept: {accept:?}, ?{query}");
    }
    for (accept, query, error) in [
        ("", "", "trustless gateway"),
        ("*/*", "", "trustless gateway"),
        ("text/html", "", "trustless gateway"),
        ("", "format=tar", "format=tar"),
        ("application/vnd.ipld.car; version=2", "", "version 2"),
        ("", "format=car&car-version=2", "version 2"),
        ("application/vnd.ipld.car", "car-order=weird", "order weird"),
        ("application/vnd.ipld.car", "car-dups=maybe", "dups=maybe"),
    ] {
        match negotiate([accept], &Query::parse(Some(query))) {
            Err(message) => assert!(message.contains(error), "{message}"),
            Ok(format) => panic!("Accept: {accept:?}, ?{query} gave {format:?}"),
        }
    }
}

#[test]
fn car_etags_differ_by_shape() {
    let cid = raw_block_cid(b"x");
    let plain = car_etag(&cid, &Selector::default());
    let mut seen = std::collections::HashSet::from([plain.clone()]);
    for selector in [
        Selector {
            dups: true,
            ..Selector::default()
        },
        Selector {
            scope: DagScope::Block,
            ..Selector::default()
        },
        Selector {
            bytes: Some(EntityBytes { from: 0, to: None }),
            ..Selector::default()
        },
        Selector {
            bytes: Some(EntityBytes {
                from: 0,
                to: Some(9),
            }),
            ..Selector::default()
        },
    ] {
        assert!(seen.insert(car_etag(&cid, &selector)), "{selector:?}");
    }
    assert!(plain.starts_with(&format!("\"{cid}.car.")), "{plain}");
}

struct Node {
    _dir: tempfile::TempDir,
    mirror: Mirror,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mirror =
            Mirror::open(MirrorConfig::new(dir.path().to_path_buf()), Vec::new()).expect("mirror");
        Node { _dir: dir, mirror }
    }

    /// Cache `data` as an artifact; `keep_leaves` indexes only the first leaves.
    fn add(&self, data: &[u8], keep_leaves: Option<usize>) -> (FlatCid, Dag) {
        let store = &self.mirror.inner.store;
        let mut writer = store
            .artifact_writer(Digest::of(Algorithm::Sha512, data))
            .expect("writer");
        writer.write(data).expect("write");
        let origin = crate::store::Origin {
            private: false,
            upstream_url: "http://upstream.invalid/x.tgz".into(),
            fetched_at: 1,
        };
        let keep = keep_leaves.unwrap_or(usize::MAX);
        let committed =
            crate::testing::commit_keeping_leaves(store, "npm", "x.tgz", writer, origin, keep)
                .expect("commit");
        (committed.record.flat, committed.dag)
    }

    async fn request(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Result<Bytes, String>) {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = crate::http::router(self.mirror.clone())
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20)
            .await
            .map_err(|e| e.to_string());
        (parts.status, parts.headers, body)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

fn car_blocks(body: &[u8]) -> (Vec<Cid>, Vec<Cid>) {
    let reader = CarReader::new(body).expect("CAR header");
    let roots = reader.roots().to_vec();
    let cids = reader.map(|b| b.expect("verified block").0).collect();
    (roots, cids)
}

#[tokio::test]
async fn the_probe_cid_and_unknown_or_malformed_cids() {
    let node = Node::new();
    let (status, headers, body) = node.request("GET", "/ipfs/bafkqaaa?format=raw", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.expect("body"), Bytes::new());
    assert_eq!(header(&headers, "content-type"), RAW_TYPE);
    let (status, headers, _) = node
        .request("HEAD", "/ipfs/bafkqaaa", &[("accept", RAW_TYPE)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-length"), "0");
    assert_eq!(
        header(&headers, "content-location"),
        "/ipfs/bafkqaaa?format=raw"
    );
    let (status, _, body) = node.request("GET", "/ipfs/bafkqaaa?format=car", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (roots, cids) = car_blocks(&body.expect("body"));
    assert_eq!(roots, [Cid::from_str("bafkqaaa").expect("cid")]);
    assert!(cids.is_empty(), "identity blocks are never sent: {cids:?}");

    let unknown = raw_block_cid(b"never cached");
    for uri in [
        format!("/ipfs/{unknown}?format=raw"),
        format!("/ipfs/{unknown}?format=car"),
    ] {
        let (status, headers, body) = node.request("GET", &uri, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(header(&headers, "content-type"), "application/json");
        let body = body.expect("body");
        let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|e| e.contains("not held")),
            "{error}"
        );
        let (status, _, _) = node
            .request("HEAD", &uri, &[("cache-control", "only-if-cached")])
            .await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{uri}");
    }
    for (uri, accept, expect) in [
        ("/ipfs/not-a-cid?format=raw", "", "invalid CID"),
        ("/ipfs/bafkqaaa", "", "trustless gateway"),
        ("/ipfs/bafkqaaa", "text/html", "trustless gateway"),
        ("/ipfs/bafkqaaa?format=car&dag-scope=most", "", "dag-scope"),
        (
            "/ipfs/bafkqaaa?format=car&entity-bytes=1-2",
            "",
            "entity-bytes",
        ),
        ("/ipfs/bafkqaaa?format=car&car-version=2", "", "version 2"),
        ("/ipfs/bafkqaaa/file?format=raw", "", "without a path"),
    ] {
        let headers: &[(&str, &str)] = if accept.is_empty() {
            &[]
        } else {
            &[("accept", accept)]
        };
        let (status, _, body) = node.request("GET", uri, headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let body = String::from_utf8(body.expect("body").to_vec()).expect("utf-8");
        assert!(body.contains(expect), "{uri}: {body}");
    }
    let (status, _, _) = node
        .request("GET", "/ipfs/bafkqaaa/file?format=car", &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = node.request("POST", "/ipfs/bafkqaaa?format=raw", &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn blocks_and_cars_of_a_cached_artifact() {
    let node = Node::new();
    let data = noise(2 * CHUNK_SIZE as usize + 100, 2);
    let (flat, dag) = node.add(&data, None);
    let root = dag.root;
    let leaves: Vec<Cid> = dag.leaves.iter().map(|l| l.cid).collect();

    // Raw blocks: the root node, a leaf, and the flat file (over 2 MiB: streamed).
    for (cid, expect) in [
        (root, dag.nodes[0].1.clone()),
        (
            leaves[1],
            data[CHUNK_SIZE as usize..2 * CHUNK_SIZE as usize].to_vec(),
        ),
        (flat.0, data.clone()),
    ] {
        let uri = format!("/ipfs/{cid}");
        let (status, headers, body) = node.request("GET", &uri, &[("accept", RAW_TYPE)]).await;
        assert_eq!(status, StatusCode::OK, "{cid}");
        assert_eq!(body.expect("body"), expect, "{cid}");
        assert_eq!(header(&headers, "etag"), format!("\"{cid}.raw\""));
        assert_eq!(header(&headers, "x-ipfs-roots"), cid.to_string());
        assert_eq!(header(&headers, "x-ipfs-path"), uri);
        assert_eq!(header(&headers, "content-length"), expect.len().to_string());
        assert_eq!(
            header(&headers, "cache-control"),
            "public, max-age=29030400, immutable"
        );
        assert_eq!(
            header(&headers, "content-disposition"),
            format!("attachment; filename=\"{cid}.bin\"")
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(header(&headers, "vary"), "Accept");
        let (status, _, _) = node
            .request(
                "GET",
                &uri,
                &[
                    ("accept", RAW_TYPE),
                    ("if-none-match", &format!("\"{cid}.raw\"")),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
    }

    // CARs: everything, a range, one block, dups.
    for (query, expect) in [
        ("", vec![root, leaves[0], leaves[1], leaves[2]]),
        ("&entity-bytes=0:1048575", vec![root, leaves[0]]),
        ("&entity-bytes=-1:*", vec![root, leaves[2]]),
        ("&dag-scope=block", vec![root]),
        (
            "&dag-scope=entity&car-dups=y",
            vec![root, leaves[0], leaves[1], leaves[2]],
        ),
    ] {
        let uri = format!("/ipfs/{root}?format=car{query}");
        let (status, headers, body) = node.request("GET", &uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let dups = if query.contains("dups=y") { "y" } else { "n" };
        assert_eq!(
            header(&headers, "content-type"),
            format!("application/vnd.ipld.car; version=1; order=dfs; dups={dups}")
        );
        assert!(header(&headers, "etag").starts_with(&format!("\"{root}.car.")));
        assert_eq!(
            header(&headers, "content-disposition"),
            format!("attachment; filename=\"{root}.car\"")
        );
        let (roots, cids) = car_blocks(&body.expect("body"));
        assert_eq!(roots, [root]);
        assert_eq!(cids, expect, "{uri}");
    }
    let (status, headers, body) = node
        .request(
            "HEAD",
            &format!("/ipfs/{root}"),
            &[(
                "accept",
                "application/vnd.ipld.car; version=1; order=dfs; dups=n",
            )],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(header(&headers, "content-type").starts_with(CAR_TYPE));
    assert!(body.expect("body").is_empty());
    let (status, _, body) = node
        .request(
            "GET",
            &format!("/ipfs/{root}?format=car&entity-bytes=5000000:*"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    let (status, _, body) = node
        .request("GET", &format!("/ipfs/{flat}?format=car"), &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
}

#[tokio::test]
async fn a_missing_child_aborts_the_car_after_the_root() {
    let node = Node::new();
    let (_, dag) = node.add(&noise(2 * CHUNK_SIZE as usize + 100, 2), Some(1));
    let (status, _, body) = node
        .request("GET", &format!("/ipfs/{}?format=car", dag.root), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    let error = body.expect_err("the body is aborted");
    assert!(error.contains("truncated"), "{error}");
}
