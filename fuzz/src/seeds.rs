//! Seeds for the binary formats, made with Cairn's own writers (`cairn-fuzz --write-seeds`
//! writes them under `fuzz/corpus/`). The text formats' seeds are files kept as they are.

use cairn_mirror::car::CarWriter;
use cairn_mirror::cid::{Algorithm, BlockCid, Digest, RootCid, raw_block_cid};
use cairn_mirror::dagcbor::Value;
use cairn_mirror::index::{ArtifactRecord, MetadataRecord, RefRecord};
use cairn_mirror::snapshot::{ArtifactEntry, DocumentEntry, RefEntry, Snapshot};
use cairn_mirror::unixfs::{DagBuilder, put_varint};
use cairn_node::bitswap::message::{
    self, Block, BlockPresence, BlockPresenceType, Entry, Message, WantType, Wantlist,
};
use cid::Cid;

/// One seed: the target it is for, a file name, and its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn car_of(roots: &[Cid], blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    let mut car = CarWriter::new(Vec::new(), roots).expect("a CAR header writes to memory");
    for (cid, data) in blocks {
        car.write_block(cid, data)
            .expect("a CAR block writes to memory");
    }
    car.finish().expect("a CAR finishes in memory")
}

fn sample_snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..3 {
        let body = format!("document {i}");
        s.documents.push(DocumentEntry {
            ecosystem: if i == 0 { "apt/debian" } else { "npm" }.into(),
            key: format!("pkg-{i}"),
            record: MetadataRecord {
                private: false,
                cid: Some(BlockCid(raw_block_cid(body.as_bytes()))),
                status: 200,
                upstream_url: format!("https://upstream.invalid/pkg-{i}"),
                fetched_at: 1_700_000_000_000 + i,
                etag: (i == 1).then(|| "\"e1\"".into()),
                last_modified: None,
                size: body.len() as u64,
            },
            root: None,
        });
        let flat = Digest::of(Algorithm::Sha512, body.as_bytes()).flat_cid();
        s.artifacts.push(ArtifactEntry {
            ecosystem: "npm".into(),
            key: format!("pkg-{i}/-/pkg-{i}-1.0.0.tgz"),
            record: ArtifactRecord {
                private: false,
                flat,
                root: RootCid(raw_block_cid(body.as_bytes())),
                size: body.len() as u64,
                upstream_url: "https://upstream.invalid/t.tgz".into(),
                fetched_at: 5,
            },
        });
        s.refs.push(RefEntry {
            ecosystem: "apt/debian".into(),
            key: format!("pool/p{i}.deb"),
            listed_by: "dists/s/main/binary-amd64/Packages.xz@x".into(),
            record: RefRecord {
                version: None,
                published: None,
                removed: None,
                yanked: false,
                package: None,
                flat,
                url: "https://upstream.invalid/p.deb".into(),
                size: (i == 0).then_some(7),
            },
        });
    }
    s
}

/// A DAG of a file just over two chunks: one inner node over three raw leaves.
fn sample_dag() -> cairn_mirror::unixfs::Dag {
    let mut builder = DagBuilder::new();
    let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 16).collect();
    for _ in 0..(2 * 16 + 1) {
        builder.update(&chunk);
    }
    builder.finish()
}

fn frame(out: &mut Vec<u8>, body: &[u8]) {
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn json_frames(values: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        frame(
            &mut out,
            &serde_json::to_vec(value).expect("JSON serialises"),
        );
    }
    out
}

/// Every generated seed.
pub fn generated() -> Vec<Seed> {
    let mut seeds: Vec<Seed> = Vec::new();

    // CAR: raw blocks, an identity block, and a bundle-shaped snapshot.
    let raw: Vec<(Cid, Vec<u8>)> = ["alpha", "beta beta", "gamma gamma gamma"]
        .iter()
        .map(|s| (raw_block_cid(s.as_bytes()), s.as_bytes().to_vec()))
        .collect();
    seeds.push(("car", "raw-blocks".into(), car_of(&[raw[0].0], &raw)));
    let encoded = sample_snapshot().encode();
    let bundle = car_of(&[encoded.root], &encoded.blocks);
    seeds.push(("car", "snapshot".into(), bundle.clone()));
    seeds.push(("snapshot", "three-entries".into(), bundle));
    // Version 2: a document large enough to travel as a UnixFS file names that file's root.
    let mut chunked = sample_snapshot();
    chunked.documents[0].record.size = 3 << 20;
    chunked.documents[0].root = Some(RootCid(sample_dag().root));
    let chunked = chunked.encode();
    seeds.push((
        "snapshot",
        "version-2-document-root".into(),
        car_of(&[chunked.root], &chunked.blocks),
    ));
    seeds.push(("snapshot", "empty".into(), {
        let empty = Snapshot::default().encode();
        car_of(&[empty.root], &empty.blocks)
    }));
    // A bundle of one small artifact: its snapshot, then its one raw leaf.
    let hello = b"hello, bundle";
    let leaf = raw_block_cid(hello);
    let one = Snapshot {
        artifacts: vec![ArtifactEntry {
            ecosystem: "npm".into(),
            key: "hello/-/hello-1.0.0.tgz".into(),
            record: ArtifactRecord {
                private: false,
                flat: Digest::of(Algorithm::Sha512, hello).flat_cid(),
                root: RootCid(leaf),
                size: hello.len() as u64,
                upstream_url: "https://upstream.invalid/hello/-/hello-1.0.0.tgz".into(),
                fetched_at: 1_700_000_000_000,
            },
        }],
        ..Snapshot::default()
    }
    .encode();
    let mut blocks = one.blocks.clone();
    blocks.push((leaf, hello.to_vec()));
    seeds.push((
        "bundle",
        "one-artifact".into(),
        car_of(&[one.root], &blocks),
    ));
    seeds.push(("bundle", "empty".into(), {
        let empty = Snapshot::default().encode();
        car_of(&[empty.root], &empty.blocks)
    }));
    for (i, (_, block)) in encoded.blocks.iter().enumerate() {
        seeds.push(("dag-cbor", format!("snapshot-block-{i}"), block.clone()));
    }
    let value = Value::map(vec![
        ("text", Value::text("é and \u{1f4a9}")),
        ("int", Value::Int(-(1 << 40))),
        ("big", Value::Int(u64::MAX.into())),
        ("bytes", Value::Bytes(vec![0, 1, 2])),
        (
            "list",
            Value::Array(vec![Value::Null, Value::Bool(true), Value::Link(raw[1].0)]),
        ),
    ]);
    seeds.push(("dag-cbor", "every-kind".into(), value.encode()));

    // dag-pb: an inner node over leaves.
    let dag = sample_dag();
    for (i, (_, node)) in dag.nodes.iter().enumerate() {
        seeds.push(("dag-pb", format!("file-node-{i}"), node.clone()));
    }

    // dag-pb as other writers make it: sizes without a `filesize`, inline data, a directory.
    let unixfs = |kind: u64, data: &[u8], filesize: Option<u64>, sizes: &[u64]| {
        let mut out = Vec::new();
        put_varint(&mut out, 1 << 3);
        put_varint(&mut out, kind);
        if !data.is_empty() {
            put_varint(&mut out, (2 << 3) | 2);
            put_varint(&mut out, data.len() as u64);
            out.extend_from_slice(data);
        }
        if let Some(size) = filesize {
            put_varint(&mut out, 3 << 3);
            put_varint(&mut out, size);
        }
        for &size in sizes {
            put_varint(&mut out, 4 << 3);
            put_varint(&mut out, size);
        }
        out
    };
    let node = |links: &[Cid], data: &[u8]| {
        let mut out = Vec::new();
        for cid in links {
            let mut link = Vec::new();
            let hash = cid.to_bytes();
            put_varint(&mut link, (1 << 3) | 2);
            put_varint(&mut link, hash.len() as u64);
            link.extend_from_slice(&hash);
            put_varint(&mut link, 3 << 3);
            put_varint(&mut link, 1 << 20);
            put_varint(&mut out, (2 << 3) | 2);
            put_varint(&mut out, link.len() as u64);
            out.extend_from_slice(&link);
        }
        put_varint(&mut out, (1 << 3) | 2);
        put_varint(&mut out, data.len() as u64);
        out.extend_from_slice(data);
        out
    };
    let leaves: Vec<Cid> = dag.leaves.iter().map(|l| l.cid).collect();
    seeds.push((
        "dag-pb",
        "sizes-without-filesize".into(),
        node(&leaves, &unixfs(2, b"", None, &[1 << 20, 1 << 20, 1 << 16])),
    ));
    seeds.push((
        "dag-pb",
        "inline-data".into(),
        node(&[], &unixfs(2, b"hello", Some(5), &[])),
    ));
    seeds.push((
        "dag-pb",
        "directory".into(),
        node(&leaves[..1], &unixfs(1, b"", None, &[])),
    ));

    seeds.push((
        "dag-pb",
        "data-sizes-without-filesize".into(),
        unixfs(2, b"", None, &[1 << 20, 1 << 20, 1 << 16]),
    ));
    seeds.push((
        "dag-pb",
        "data-inline".into(),
        unixfs(0, b"hello", Some(5), &[]),
    ));

    // Bitswap: a wantlist, then blocks and presences.
    let wants = Message {
        wantlist: Some(Wantlist {
            entries: raw
                .iter()
                .enumerate()
                .map(|(i, (cid, _))| Entry {
                    block: cid.to_bytes().into(),
                    priority: i as i32,
                    cancel: i == 2,
                    want_type: if i == 0 {
                        WantType::Have
                    } else {
                        WantType::Block
                    } as i32,
                    send_dont_have: true,
                })
                .collect(),
            full: true,
        }),
        ..Message::default()
    };
    let answers = Message {
        payload: raw
            .iter()
            .map(|(cid, data)| Block {
                prefix: message::cid_prefix(cid).into(),
                data: data.clone().into(),
            })
            .collect(),
        block_presences: vec![
            BlockPresence {
                cid: raw[0].0.to_bytes().into(),
                r#type: BlockPresenceType::Have as i32,
            },
            BlockPresence {
                cid: dag.root.to_bytes().into(),
                r#type: BlockPresenceType::DontHave as i32,
            },
        ],
        blocks: vec![b"a bitswap 1.0.0 block".to_vec().into()],
        ..Message::default()
    };
    let mut stream = Vec::new();
    frame(&mut stream, &wants.to_bytes());
    frame(&mut stream, &answers.to_bytes());
    seeds.push(("bitswap", "wants-then-blocks".into(), stream));

    // Resolve: a request, and an answer of leaves.
    let flat = Digest::of(Algorithm::Sha256, b"artifact").flat_cid();
    let leaves: Vec<serde_json::Value> = dag
        .leaves
        .iter()
        .map(|l| serde_json::json!({"cid": l.cid.to_string(), "offset": l.offset, "len": l.len}))
        .collect();
    seeds.push((
        "resolve",
        "request".into(),
        json_frames(&[serde_json::json!({"flat": flat.to_string(), "claiming": true})]),
    ));
    seeds.push((
        "resolve",
        "holding".into(),
        json_frames(&[
            serde_json::json!({"type": "holding"}),
            serde_json::json!({"type": "leaves", "leaves": leaves}),
            serde_json::json!({"type": "done", "root": dag.root.to_string(), "size": dag.size}),
        ]),
    ));
    seeds.push((
        "resolve",
        "others".into(),
        json_frames(&[
            serde_json::json!({"type": "claiming", "decided": false}),
            serde_json::json!({"type": "none"}),
            serde_json::json!({"type": "failed", "reason": "upstream said 404"}),
        ]),
    ));

    // Metadata: a request, a header and its body.
    seeds.push((
        "metadata",
        "request".into(),
        json_frames(&[serde_json::json!({"ecosystem": "npm", "key": "@types/ms"})]),
    ));
    let body = br#"{"name":"demo","versions":{}}"#;
    let mut answer = json_frames(&[serde_json::json!({
        "found": true,
        "upstream_url": "https://upstream.invalid/demo",
        "fetched_at": 1_700_000_000_000u64,
        "etag": "\"abc\"",
        "size": body.len(),
    })]);
    frame(&mut answer, body);
    seeds.push(("metadata", "found".into(), answer));
    seeds.push((
        "metadata",
        "not-found".into(),
        json_frames(&[serde_json::json!({"found": false})]),
    ));

    // Holds: a request naming files, and an answer naming some of them.
    let other = Digest::of(Algorithm::Sha512, b"another artifact").flat_cid();
    seeds.push((
        "holds",
        "request".into(),
        json_frames(&[serde_json::json!({"flats": [flat.to_string(), other.to_string()]})]),
    ));
    seeds.push((
        "holds",
        "answer".into(),
        json_frames(&[serde_json::json!({"held": [other.to_string()]})]),
    ));
    seeds
}
