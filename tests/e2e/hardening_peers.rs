//! A peer on an open swarm that answers every resolve with "downloading" and then sends nothing:
//! pip, through a `cairn serve` node connected to it, still gets every file, each miss falling
//! through to upstream within seconds (not the 30 s a silent transfer used to wait, past pip's
//! 15 s read timeout), and the staller is asked once, then kept out.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use libp2p::futures::{AsyncWriteExt as _, StreamExt as _};

use crate::fake_pypi::{FakePypi, Index};
use crate::support::{Cairn, assert_success, runtime};

/// How long nodes may take to find each other (the tests share two loaded cores).
const JOIN: Duration = Duration::from_secs(30);
/// A hang-catcher, not a benchmark: a miss that waited out a silent transfer (30 s) fails it.
const MISS_FALLS_THROUGH: Duration = Duration::from_secs(25);

/// A Bitswap block source that has nothing.
struct Empty;

impl cairn_node::BlockSource for Empty {
    fn get(&self, _cid: &Cid) -> Option<Bytes> {
        None
    }
}

/// A node on the open swarm that answers every resolve request with `downloading` and then
/// holds the stream open without a leaf; counts the requests.
fn staller() -> (cairn_node::Node, String, Arc<AtomicUsize>) {
    runtime().block_on(async {
        let config = cairn_node::NodeConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
            mdns: false,
            ..cairn_node::NodeConfig::default()
        };
        let node = cairn_node::Node::start(config, Arc::new(Empty))
            .await
            .expect("the stalling node");
        let mut streams = node
            .stream_control()
            .accept(libp2p::StreamProtocol::new("/cairn/resolve/1.0.0"))
            .expect("accept resolve");
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        tokio::spawn(async move {
            while let Some((_, mut stream)) = streams.next().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // The answer needs no request read first: one uvarint-prefixed JSON frame.
                    let answer = br#"{"type":"downloading"}"#;
                    let mut frame = vec![answer.len() as u8];
                    frame.extend_from_slice(answer);
                    if stream.write_all(&frame).await.is_ok() && stream.flush().await.is_ok() {
                        tokio::time::sleep(Duration::from_secs(300)).await;
                    }
                    drop(stream);
                });
            }
        });
        let address = node
            .listen_addrs()
            .await
            .expect("the staller's addresses")
            .into_iter()
            .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
            .expect("a TCP address")
            .with(libp2p::multiaddr::Protocol::P2p(node.peer_id()));
        (node, address.to_string(), asked)
    })
}

/// `pip download` of `package` through `node`, with no cache.
fn pip_download(node: &Cairn, dir: &Path, package: &str) -> Output {
    let index = format!("{}/pypi/simple/", node.url);
    let target = dir.join("wheels");
    let target = target.to_str().expect("utf-8 path");
    let args = [
        "-m",
        "pip",
        "download",
        "--no-cache-dir",
        "--no-deps",
        "--index-url",
        &index,
        "-d",
        target,
        package,
    ];
    crate::pypi::python_tool(Path::new("python3"), &args, &dir.join("pip-home"))
}

#[test]
fn a_peer_that_claims_downloads_and_sends_nothing_costs_pip_seconds_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut wheels = Index::default();
    let work = tmp.path().join("work");
    wheels.wheel(&work, "first-py", "1.0.0", &[], None).wheel(
        &work,
        "second-py",
        "1.0.0",
        &[],
        None,
    );
    let fake = FakePypi::start(wheels);
    let (staller, staller_address, asked) = staller();
    let staller_id = staller.peer_id().to_string();

    let node = Cairn::start(
        &tmp.path().join("node"),
        &[
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--pypi-upstream",
            &fake.simple_url,
            "--bootstrap",
            &staller_address,
        ],
    );
    node.wait_connected(&[&staller_id], JOIN);

    let started = Instant::now();
    assert_success(
        &pip_download(&node, &tmp.path().join("first"), "first-py"),
        &format!("pip download first-py\n--- log\n{}", node.logs()),
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < MISS_FALLS_THROUGH,
        "the first miss took {elapsed:?}\n--- log\n{}",
        node.logs()
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the staller was asked once"
    );

    let started = Instant::now();
    assert_success(
        &pip_download(&node, &tmp.path().join("second"), "second-py"),
        &format!("pip download second-py\n--- log\n{}", node.logs()),
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < MISS_FALLS_THROUGH,
        "the second miss took {elapsed:?}"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the staller was asked again"
    );
    staller.shutdown();
    node.stop();
}
