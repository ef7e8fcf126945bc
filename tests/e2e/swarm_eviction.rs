//! The swarm as one cache: three nodes of a private swarm, each under a size limit. A node that
//! must evict lets go first of what its peers hold, and keeps what is the swarm's last copy,
//! even when that copy is its least recently used file; the swarm as a whole still holds every
//! package. Outside a private swarm the same node evicts plainly least recently used.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, get, swarm_key, wait_for};

/// Six packages of one incompressible MiB each.
fn registry() -> Registry {
    let mut r = Registry::default();
    for i in 1..=6u64 {
        r.publish(
            &format!("s{i}"),
            "1.0.0",
            &[],
            &[("data.bin", noise(1 << 20, 301 + 2 * i))],
        );
    }
    r
}

fn tarball(i: u32) -> String {
    format!("s{i}/-/s{i}-1.0.0.tgz")
}

/// GET the tarball of `s{i}` through `node`; its stored file (the flat CID is the ETag).
fn fetch(node: &Cairn, data: &Path, i: u32) -> PathBuf {
    let reply = get(&format!("{}{}", node.npm(), tarball(i)));
    assert_eq!(reply.status, 200, "{}: {}", tarball(i), reply.text);
    let etag = reply.header("etag").expect("an ETag");
    let flat = etag.trim_matches('"');
    data.join("blobs").join(&flat[flat.len() - 2..]).join(flat)
}

/// What a scenario left: which of `s1`…`s4` node `a` evicted and kept, and everything still
/// running.
struct Outcome {
    gone: Vec<u32>,
    kept: Vec<u32>,
    a: Cairn,
    _peers: (Cairn, Cairn),
    fake: FakeNpm,
    _tmp: tempfile::TempDir,
}

/// Node `a` holds `s1`…`s4` (used in that order), `b` holds `s2` and `c` holds `s3`; then `a`
/// takes `s5`, which puts it over a limit that makes it evict two files.
fn scenario(private: bool) -> Outcome {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakeNpm::start(registry());
    let size = fake.registry().version("s1", "1.0.0").tarball.len() as u64;
    // Five files over a limit of 4.3: down to 90% of it (3.87 files) takes two of them.
    let limit = (size as f64 * 4.3) as u64;
    let key = swarm_key(&tmp.path().join("swarm.key"), 0x77);
    let mut common = vec![
        "--p2p-listen".to_owned(),
        "/ip4/127.0.0.1/tcp/0".into(),
        "--no-mdns".into(),
        "--npm-upstream".into(),
        fake.url.clone(),
    ];
    if private {
        common.extend(["--swarm-key".into(), key.to_str().expect("path").into()]);
    }
    let start = |name: &str, extra: &[String]| {
        let mut args: Vec<&str> = common.iter().map(String::as_str).collect();
        args.extend(extra.iter().map(String::as_str));
        Cairn::start(&tmp.path().join(name), &args)
    };
    let limit_arg = limit.to_string();
    let a = start("a", &["--max-size".into(), limit_arg]);
    let bootstrap = ["--bootstrap".to_owned(), a.p2p_address()];
    let b = start("b", &bootstrap);
    let c = start("c", &bootstrap);
    b.wait_connected(&[&a.peer_id()], Duration::from_secs(60));
    c.wait_connected(&[&a.peer_id()], Duration::from_secs(60));
    a.wait_connected(&[&b.peer_id(), &c.peer_id()], Duration::from_secs(60));

    let a_data = tmp.path().join("a");
    let files: Vec<PathBuf> = (1..=4)
        .map(|i| {
            let file = fetch(&a, &a_data, i);
            // Distinct access times, in order.
            std::thread::sleep(Duration::from_millis(20));
            file
        })
        .collect();
    let on_b = fetch(&b, &tmp.path().join("b"), 2);
    let on_c = fetch(&c, &tmp.path().join("c"), 3);
    assert!(on_b.exists() && on_c.exists());
    assert_eq!(a.metric("cairn_evicted_files_total"), 0.0);
    let fifth = fetch(&a, &a_data, 5);
    wait_for(Duration::from_secs(60), "a's eviction pass", || {
        (a.metric("cairn_evicted_files_total") >= 2.0).then_some(())
    });
    assert!(fifth.exists(), "the file just used stays");
    let gone: Vec<u32> = (1..=4)
        .filter(|&i| !files[i as usize - 1].exists())
        .collect();
    let kept: Vec<u32> = (1..=4)
        .filter(|&i| files[i as usize - 1].exists())
        .collect();
    Outcome {
        gone,
        kept,
        a,
        _peers: (b, c),
        fake,
        _tmp: tmp,
    }
}

#[test]
fn a_node_of_a_private_swarm_evicts_what_its_peers_hold_and_keeps_the_swarms_last_copy() {
    // Bound whole: the peers and the data directories must last to the end.
    let outcome = scenario(true);
    let Outcome {
        gone,
        kept,
        a,
        fake,
        ..
    } = &outcome;
    // `s1` is the least recently used, but no peer holds it: `s2` (on b) and `s3` (on c) go.
    assert_eq!(*gone, [2, 3], "{}", a.logs());
    assert_eq!(*kept, [1, 4]);
    assert_eq!(a.metric("cairn_evicted_shared_files_total"), 2.0);
    assert_eq!(a.metric("cairn_evicted_last_copies_total"), 0.0);
    // Nothing of the working set was lost to the swarm: `s2` comes back from a peer.
    let hits = fake.hits(&tarball(2));
    let reply = get(&format!("{}{}", a.npm(), tarball(2)));
    assert_eq!(reply.status, 200, "{}\n{}", reply.text, a.logs());
    assert_eq!(
        fake.hits(&tarball(2)),
        hits,
        "s2 came from a peer, not upstream"
    );
}

#[test]
fn outside_a_private_swarm_the_same_node_evicts_least_recently_used() {
    let outcome = scenario(false);
    let Outcome { gone, kept, a, .. } = &outcome;
    assert_eq!(*gone, [1, 2], "{}", a.logs());
    assert_eq!(*kept, [3, 4]);
    assert_eq!(a.metric("cairn_evicted_shared_files_total"), 0.0);
}
