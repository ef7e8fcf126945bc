//! A store damaged under a running node: a flat file with a byte flipped, or deleted while its
//! index row stays, is never served; the node drops it and fetches it again from upstream, and
//! no answer names the data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, get, wait_for};

const MIB: usize = 1 << 20;

fn registry() -> Registry {
    let mut r = Registry::default();
    r.publish("small-pkg", "1.0.0", &[], &[]).publish(
        "large-pkg",
        "1.0.0",
        &[],
        &[("data.bin", noise(3 * MIB + 17, 21))],
    );
    r
}

/// The stored flat file holding exactly `bytes`.
fn blob_of(data_dir: &Path, bytes: &[u8]) -> PathBuf {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    // The download commits just after its last byte went out.
    wait_for(Duration::from_secs(10), "the artifact's blob", || {
        let mut files = Vec::new();
        walk(&data_dir.join("blobs"), &mut files);
        files
            .into_iter()
            .find(|f| std::fs::read(f).is_ok_and(|b| b == bytes))
    })
}

struct Case {
    path: &'static str,
    tarball: Vec<u8>,
}

fn cases(npm: &FakeNpm) -> Vec<Case> {
    [
        ("small-pkg", "small-pkg/-/small-pkg-1.0.0.tgz"),
        ("large-pkg", "large-pkg/-/large-pkg-1.0.0.tgz"),
    ]
    .into_iter()
    .map(|(name, path)| Case {
        path,
        tarball: npm.registry().version(name, "1.0.0").tarball.to_vec(),
    })
    .collect()
}

/// The download that fetched it again commits just after its last byte went out.
fn blob_back(blob: &Path, bytes: &[u8]) {
    wait_for(Duration::from_secs(10), "the blob back in place", || {
        std::fs::read(blob).ok().filter(|b| b == bytes)
    });
}

fn assert_no_path(text: &str, data_dir: &Path) {
    let dir = data_dir.to_str().expect("path");
    assert!(
        !text.contains(dir),
        "an answer names the data directory: {text}"
    );
}

#[test]
fn a_flipped_byte_in_a_stored_blob_is_never_served_and_is_fetched_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let npm = FakeNpm::start(registry());
    let node = Cairn::start(&data, &["--npm-upstream", &npm.url]);
    let cases = cases(&npm);
    assert!(
        cases[1].tarball.len() > 2 * MIB,
        "the large tarball spans leaves"
    );
    for case in &cases {
        let url = format!("{}/npm/{}", node.url, case.path);
        let first = get(&url);
        assert_eq!(first.status, 200, "{}: {}", case.path, first.text);
        assert_eq!(&first.body[..], &case.tarball[..]);
        assert_eq!(npm.hits(case.path), 1);

        // One byte flipped on disk, in the last leaf of the large file.
        let blob = blob_of(&data, &case.tarball);
        let mut damaged = case.tarball.clone();
        let at = damaged.len() - 3;
        damaged[at] ^= 0x20;
        std::fs::write(&blob, &damaged).expect("damage the blob");

        let second = get(&url);
        assert_ne!(
            &second.body[..],
            &damaged[..],
            "{}: the damaged bytes were served",
            case.path
        );
        assert_no_path(&second.text, &data);
        if case.tarball.len() <= MIB {
            // Noticed before anything was sent: fetched again within the same request.
            assert_eq!(second.status, 200, "{}", second.text);
            assert_eq!(&second.body[..], &case.tarball[..]);
        }
        // The next request (or this one, for the small file) fetched it again from upstream.
        let third = get(&url);
        assert_eq!(third.status, 200, "{}: {}", case.path, third.text);
        assert_eq!(&third.body[..], &case.tarball[..], "{}", case.path);
        assert_eq!(npm.hits(case.path), 2, "{}", case.path);
        blob_back(&blob, &case.tarball);
    }
    assert!(
        node.logs().contains("stored artifact is damaged"),
        "{}",
        node.logs()
    );
    node.stop();
}

#[test]
fn a_deleted_blob_is_fetched_again_and_no_answer_names_the_data_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let npm = FakeNpm::start(registry());
    let node = Cairn::start(&data, &["--npm-upstream", &npm.url]);
    for case in &cases(&npm) {
        let url = format!("{}/npm/{}", node.url, case.path);
        assert_eq!(get(&url).status, 200);
        let blob = blob_of(&data, &case.tarball);
        std::fs::remove_file(&blob).expect("delete the blob");
        // Noticed before anything was sent: fetched again within the same request.
        let again = get(&url);
        assert_no_path(&again.text, &data);
        assert_eq!(again.status, 200, "{}: {}", case.path, again.text);
        assert_eq!(&again.body[..], &case.tarball[..]);
        assert_eq!(npm.hits(case.path), 2, "{}", case.path);
        blob_back(&blob, &case.tarball);
    }
    node.stop();
}

/// A bundle holding one apt document, `dists/stable/InRelease` of archive `test`, with `body`.
fn in_release_bundle(path: &Path, body: &[u8]) {
    use cairn_mirror::car::CarWriter;
    use cairn_mirror::cid::{BlockCid, raw_block_cid};
    use cairn_mirror::index::MetadataRecord;
    use cairn_mirror::snapshot::{DocumentEntry, Snapshot};
    let cid = raw_block_cid(body);
    let mut snapshot = Snapshot::default();
    snapshot.documents.push(DocumentEntry {
        ecosystem: "apt/test".into(),
        key: "dists/stable/InRelease".into(),
        record: MetadataRecord {
            private: false,
            cid: Some(BlockCid(cid)),
            status: 200,
            upstream_url: "http://127.0.0.1:9/debian/dists/stable/InRelease".into(),
            fetched_at: cairn_mirror::now_ms(),
            etag: None,
            last_modified: None,
            size: body.len() as u64,
        },
        root: None,
    });
    let encoded = snapshot.encode();
    let file = std::fs::File::create(path).expect("bundle");
    let mut car = CarWriter::new(file, &[encoded.root]).expect("car");
    for (cid, block) in &encoded.blocks {
        car.write_block(cid, block).expect("write");
    }
    car.write_block(&cid, body).expect("write");
    car.finish().expect("finish");
}

#[test]
fn a_bundled_in_release_without_a_good_signature_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let archive = crate::fake_apt::build_archive(&t.join("archive"));
    let suite = archive.dir.join("dists/stable");
    let signed = std::fs::read(suite.join("InRelease")).expect("InRelease");
    let unsigned = std::fs::read(suite.join("Release")).expect("Release");
    let mut tampered = signed.clone();
    let at = tampered
        .windows(6)
        .position(|w| w == b"Suite:")
        .expect("a Suite field");
    tampered[at + 7] ^= 0x01;
    let keyring = format!("test={}", archive.keyring.display());
    let wrong = format!("test={}", archive.wrong_keyring.display());
    let import = |name: &str, body: &[u8], keyring: &str| {
        let data = t.join(format!("data-{name}"));
        let car = t.join(format!("{name}.car"));
        in_release_bundle(&car, body);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["import", "--data-dir"])
            .arg(&data)
            .args(["--apt-upstream", "test=http://127.0.0.1:9/debian/"])
            .args(["--apt-keyring", keyring])
            .arg(&car)
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .env("CAIRN_LOG", "warn")
            .output()
            .expect("cairn import");
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let held = std::fs::read_dir(data.join("meta"))
            .map(|d| d.count())
            .unwrap_or(0);
        (out.status.success(), text, held)
    };
    // The genuine document, checked against its keyring, goes in.
    let (ok, text, held) = import("signed", &signed, &keyring);
    assert!(ok, "{text}");
    assert_eq!(held, 1, "{text}");
    for (name, body, keyring) in [
        ("unsigned", &unsigned, &keyring),
        ("tampered", &tampered, &keyring),
        ("other-key", &signed, &wrong),
    ] {
        let (ok, text, held) = import(name, body, keyring);
        assert!(!ok, "{name}: imported\n{text}");
        assert!(text.contains("was not imported"), "{name}: {text}");
        assert!(text.contains("dists/stable/InRelease"), "{name}: {text}");
        assert_eq!(held, 0, "{name}: something was stored");
    }
}

#[test]
fn a_large_file_read_whole_twice_is_then_served_from_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let npm = FakeNpm::start(registry());
    let node = Cairn::start(&data, &["--npm-upstream", &npm.url]);
    let case = &cases(&npm)[1];
    let url = format!("{}/npm/{}", node.url, case.path);
    assert_eq!(get(&url).body, case.tarball, "the download");
    let blob = blob_of(&data, &case.tarball);
    // Two whole reads from disk, each leaf checked: the second keeps the file in memory.
    for read in ["first", "second"] {
        let reply = get(&url);
        assert_eq!(reply.status, 200, "{read} read from disk: {}", reply.text);
        assert_eq!(reply.body, case.tarball, "{read} read from disk");
    }
    // With its file gone from disk, it is still served whole and by range, from memory, and
    // upstream is not asked again.
    std::fs::remove_file(&blob).expect("remove the blob");
    let reply = get(&url);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, case.tarball);
    let ranged = crate::support::get_with(&url, &[("range", "bytes=1048570-1048585")]);
    assert_eq!(ranged.status, 206, "{}", ranged.text);
    assert_eq!(ranged.body, case.tarball[1_048_570..=1_048_585]);
    assert_eq!(npm.hits(case.path), 1, "upstream asked again");
    assert!(
        !node.logs().contains("damaged"),
        "a read from memory went to disk:\n{}",
        node.logs()
    );
    node.stop();
}

/// A node in front of `npm` whose cache of hot artifacts takes no file as large as
/// `large-pkg`'s: every read of it is from disk.
fn node_reading_from_disk(data: &Path, npm: &FakeNpm) -> Cairn {
    Cairn::start(
        data,
        &["--npm-upstream", &npm.url, "--memory-budget", "16M"],
    )
}

#[test]
fn a_large_file_checked_moments_ago_is_checked_again_once_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let npm = FakeNpm::start(registry());
    let node = node_reading_from_disk(&data, &npm);
    let case = &cases(&npm)[1];
    let url = format!("{}/npm/{}", node.url, case.path);
    assert_eq!(get(&url).body, case.tarball, "the download");
    // Read whole from disk, every leaf checked; then again, within the minute the check stands.
    for read in ["checked", "stands"] {
        let reply = get(&url);
        assert_eq!(reply.status, 200, "{read}: {}", reply.text);
        assert_eq!(reply.body, case.tarball, "{read}");
    }

    // Overwritten in place with one byte flipped, its modification time set back as it was:
    // the status change time still tells.
    let blob = blob_of(&data, &case.tarball);
    let mtime = std::fs::metadata(&blob)
        .and_then(|m| m.modified())
        .expect("the blob's modification time")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    let mut damaged = case.tarball.clone();
    damaged[MIB + 5] ^= 0x20;
    std::fs::write(&blob, &damaged).expect("damage the blob");
    let touched = std::process::Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{}.{:09}", mtime.as_secs(), mtime.subsec_nanos()))
        .arg(&blob)
        .status()
        .expect("run touch");
    assert!(touched.success(), "touch: {touched}");

    let reply = get(&url);
    assert!(reply.body != damaged, "the damaged bytes were served");
    assert!(
        reply.body.len() < case.tarball.len(),
        "the body ends at the damaged leaf: {} bytes",
        reply.body.len()
    );
    let again = get(&url);
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(again.body == case.tarball, "fetched again whole");
    assert_eq!(npm.hits(case.path), 2, "fetched again once");
    assert!(
        node.logs().contains("stored artifact is damaged"),
        "{}",
        node.logs()
    );
    node.stop();
}

/// Read one HTTP/1.1 response with a `Content-Length` from `reader`: its status and body.
fn read_response(reader: &mut impl std::io::BufRead) -> (u16, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a response line");
        assert!(!line.is_empty(), "the connection ended in a head: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no length in {head:?}"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    (status, body)
}

#[test]
fn a_large_file_checked_moments_ago_is_sent_from_its_file_whole_by_range_and_pipelined() {
    use std::io::{BufReader, Write};
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let npm = FakeNpm::start(registry());
    let node = node_reading_from_disk(&data, &npm);
    let all = cases(&npm);
    let (small, large) = (&all[0], &all[1]);
    let url = format!("{}/npm/{}", node.url, large.path);
    assert_eq!(get(&url).body, large.tarball, "the download");
    assert_eq!(
        get(&format!("{}/npm/{}", node.url, small.path)).body,
        small.tarball
    );
    let sent = || node.metric("cairn_sent_from_files_bytes_total");
    blob_of(&data, &large.tarball);

    // Stored moments ago, every byte hashed as it was written: sent from the file.
    let before = sent();
    let reply = get(&url);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.body == large.tarball, "the whole file");
    assert_eq!(
        sent() - before,
        large.tarball.len() as f64,
        "sent by the kernel"
    );
    let ranged = crate::support::get_with(&url, &[("range", "bytes=1048570-2097160")]);
    assert_eq!(ranged.status, 206, "{}", ranged.text);
    assert!(
        ranged.body == large.tarball[1_048_570..=2_097_160],
        "a range"
    );

    // Three requests in one write on one connection, a small file between: each answer whole
    // and in its place.
    let addr = node.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let request = |path: &str, extra: &str| {
        format!("GET /npm/{path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n")
    };
    let pipelined = [
        request(large.path, ""),
        request(small.path, ""),
        request(large.path, "Range: bytes=3145000-\r\n"),
        request(large.path, "Connection: close\r\n"),
    ]
    .concat();
    stream.write_all(pipelined.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    let expected: [(u16, &[u8]); 4] = [
        (200, &large.tarball),
        (200, &small.tarball),
        (206, &large.tarball[3_145_000..]),
        (200, &large.tarball),
    ];
    for (n, (status, body)) in expected.into_iter().enumerate() {
        let got = read_response(&mut reader);
        assert_eq!(got.0, status, "answer {n}");
        assert!(got.1 == body, "answer {n}: {} bytes", got.1.len());
    }

    // HTTP/2 frames its own data: the same bytes, not sent from the file.
    let before = sent();
    let file = tmp.path().join("h2.bin");
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "30", "-o"])
        .arg(&file)
        .arg(&url)
        .status()
        .expect("curl");
    assert!(curl.success(), "curl: {curl}");
    assert!(
        std::fs::read(&file).expect("read") == large.tarball,
        "over HTTP/2"
    );
    assert_eq!(sent(), before, "HTTP/2 bytes counted as sent from the file");
    node.stop();
}
