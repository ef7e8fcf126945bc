//! Tests of the index over a real SQLite file in a temp dir.

use super::*;
use crate::cid::{Algorithm, Digest};
use crate::cid::{BlockCid, RootCid};
use crate::unixfs::DagBuilder;

/// The caller's rule for taking credentials out of a URL (the mirror passes its own).
fn strip_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]).into(),
        None => url.into(),
    }
}

fn index() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(&dir.path().join("index.sqlite3")).expect("open");
    (dir, index)
}

#[test]
fn artifacts_round_trip() {
    let (_dir, index) = index();
    let mut builder = DagBuilder::new();
    builder.update(b"bytes");
    let dag = builder.finish();
    let record = ArtifactRecord {
        private: false,
        flat: Digest::of(Algorithm::Sha512, b"bytes").flat_cid(),
        root: RootCid(dag.root),
        size: 5,
        upstream_url: "http://upstream/x.tgz".into(),
        fetched_at: 42,
    };
    assert_eq!(index.get_artifact("npm", "x").expect("get"), None);
    index.put_artifact("npm", "x", &record, &dag).expect("put");
    assert_eq!(index.get_artifact("npm", "x").expect("get"), Some(record));
    assert_eq!(index.get_artifact("cargo", "x").expect("get"), None);
    let stats = index.stats().expect("stats");
    assert_eq!(stats[0].artifacts, 1);
    assert_eq!(stats[0].artifact_bytes, 5);
}

#[test]
fn negative_entries_expire_and_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(&dir.path().join("i.sqlite3")).expect("open");
    let record = |cid: Option<BlockCid>, fetched_at| MetadataRecord {
        private: false,
        cid,
        status: if cid.is_some() { 200 } else { 404 },
        upstream_url: "https://upstream.invalid/x".into(),
        fetched_at,
        etag: None,
        last_modified: None,
        size: 0,
    };
    let found = BlockCid(crate::cid::raw_block_cid(b"doc"));
    index
        .put_metadata("npm", "kept", &record(Some(found), 1), &[])
        .expect("put");
    for (key, at) in [("old", 10), ("newer", 20), ("newest", 30), ("latest", 40)] {
        index
            .put_metadata("npm", key, &record(None, at), &[])
            .expect("put");
    }
    // "old" has expired; of the rest, only the newest two are kept.
    assert_eq!(index.expire_negative(15, 2).expect("expire"), 2);
    let present = |key: &str| index.get_metadata("npm", key).expect("get").is_some();
    assert!(!present("old") && !present("newer"));
    assert!(present("newest") && present("latest"));
    // A document is never expired this way, however old.
    assert!(present("kept"));
    assert_eq!(index.expire_negative(i64::MAX, 10).expect("expire"), 2);
    assert!(present("kept"));
}

#[test]
fn metadata_and_refs_are_written_together() {
    let (_dir, index) = index();
    let record = MetadataRecord {
        private: false,
        cid: Some(BlockCid(crate::cid::raw_block_cid(b"{}"))),
        status: 200,
        upstream_url: "http://upstream/x".into(),
        fetched_at: 1,
        etag: Some("\"e\"".into()),
        last_modified: None,
        size: 2,
    };
    let reference = RefRecord {
        version: None,
        published: None,
        removed: None,
        yanked: false,
        package: None,
        flat: Digest::of(Algorithm::Sha256, b"a").flat_cid(),
        url: "http://upstream/x/-/x-1.0.0.tgz".into(),
        size: Some(1),
    };
    index
        .put_metadata(
            "npm",
            "x",
            &record,
            &[("x/-/x-1.0.0.tgz".into(), reference.clone())],
        )
        .expect("put");
    assert_eq!(
        index.get_metadata("npm", "x").expect("get"),
        Some(record.clone())
    );
    assert_eq!(
        index.get_ref("npm", "x/-/x-1.0.0.tgz").expect("ref"),
        Some(reference.clone())
    );
    // One project's references by key prefix: not its neighbours' nor another ecosystem's.
    let refs = |keys: &[&str]| -> Vec<(String, RefRecord)> {
        keys.iter()
            .map(|k| ((*k).to_owned(), reference.clone()))
            .collect()
    };
    index
        .put_metadata(
            "pypi",
            "six",
            &record,
            &refs(&["six/a.whl", "six/b.tar.gz"]),
        )
        .expect("put");
    index
        .put_metadata("pypi", "sixty", &record, &refs(&["sixty/c.whl"]))
        .expect("put");
    index
        .put_metadata("pypi", "si", &record, &refs(&["si/d.whl"]))
        .expect("put");
    let keys = |prefix: &str, limit: usize| -> Vec<String> {
        index
            .refs_with_prefix("pypi", prefix, limit)
            .expect("prefix")
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys("six/", 10), ["six/a.whl", "six/b.tar.gz"]);
    assert_eq!(keys("six/", 1), ["six/a.whl"]);
    assert!(keys("x/", 10).is_empty());
    index.touch_metadata("npm", "x", 99).expect("touch");
    assert_eq!(
        index
            .get_metadata("npm", "x")
            .expect("get")
            .map(|r| r.fetched_at),
        Some(99)
    );
}

#[test]
fn stored_credentials_are_stripped() {
    let (_dir, index) = index();
    let record = MetadataRecord {
        private: false,
        cid: Some(BlockCid(crate::cid::raw_block_cid(b"{}"))),
        status: 200,
        upstream_url: "http://cairn:s3cret@upstream.invalid/x".into(),
        fetched_at: 1,
        etag: None,
        last_modified: None,
        size: 2,
    };
    let reference = RefRecord {
        version: None,
        published: None,
        removed: None,
        yanked: false,
        package: None,
        flat: Digest::of(Algorithm::Sha256, b"a").flat_cid(),
        url: "http://cairn:s3cret@upstream.invalid/x/-/x-1.0.0.tgz".into(),
        size: Some(1),
    };
    let scoped = MetadataRecord {
        upstream_url: "http://upstream.invalid/@types%2fnode".into(),
        ..record.clone()
    };
    index
        .put_metadata(
            "npm",
            "x",
            &record,
            &[("x/-/x-1.0.0.tgz".into(), reference)],
        )
        .expect("put");
    index
        .put_metadata("npm", "@types/node", &scoped, &[])
        .expect("put");
    assert_eq!(index.strip_credentials(strip_userinfo).expect("strip"), 2);
    let got = index.get_metadata("npm", "x").expect("get").expect("row");
    assert_eq!(got.upstream_url, "http://upstream.invalid/x");
    let got = index
        .get_ref("npm", "x/-/x-1.0.0.tgz")
        .expect("ref")
        .expect("row");
    assert_eq!(got.url, "http://upstream.invalid/x/-/x-1.0.0.tgz");
    let got = index
        .get_metadata("npm", "@types/node")
        .expect("get")
        .expect("row");
    assert_eq!(got.upstream_url, scoped.upstream_url);
    assert_eq!(index.strip_credentials(strip_userinfo).expect("strip"), 0);
}

/// The schema as the releases before schema versions created it, word for word.
const SCHEMA_BEFORE_VERSIONS: &str = include_str!("testdata/schema-before-versions.sql");

#[test]
fn an_index_made_before_schema_versions_keeps_its_tables_and_rows_and_gains_the_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index.sqlite3");
    let tables = |conn: &Connection| -> Vec<(String, String)> {
        conn.prepare(
            "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("schema")
    };
    let before = {
        let conn = Connection::open(&path).expect("old index");
        conn.execute_batch("PRAGMA journal_mode=WAL;").expect("wal");
        conn.execute_batch(SCHEMA_BEFORE_VERSIONS)
            .expect("old schema");
        let flat = Digest::of(Algorithm::Sha512, b"bytes").flat_cid();
        conn.execute(
            "INSERT INTO artifacts VALUES ('npm', 'x', ?1, ?2, 5, 'http://upstream/x.tgz', 7, 7)",
            rusqlite::params![flat.to_bytes(), flat.to_bytes()],
        )
        .expect("old row");
        tables(&conn)
    };
    let index = Index::open(&path).expect("open the old index");
    assert_eq!(index.schema_version().expect("version"), SCHEMA_VERSION);
    let record = index
        .get_artifact("npm", "x")
        .expect("get")
        .expect("old row");
    assert_eq!((record.size, record.fetched_at), (5, 7));
    drop(index);
    let after = tables(&Connection::open(&path).expect("reopen"));
    // Version 1 is the old schema itself: every old table is as it was but for the `private`
    // column version 6 gave artifacts and metadata; version 2 only added the events table,
    // version 3 an index of leaves by file, version 4 the upkeep runs, version 5 the access
    // tokens and version 6 the indexes of private rows.
    // the `version`, `published` and `removed` columns version 7 gave artifact references, and
    // version 8's `yanked`.
    let column = ", private INTEGER NOT NULL DEFAULT 0";
    let ref_columns = ", version TEXT, published INTEGER, removed INTEGER, yanked INTEGER NOT NULL DEFAULT 0, package TEXT";
    let after: Vec<(String, String)> = after
        .into_iter()
        .map(|(name, sql)| match name.as_str() {
            "artifacts" | "metadata" => {
                assert!(sql.contains(column), "{name}: {sql}");
                (name, sql.replace(column, ""))
            }
            "artifact_refs" => {
                assert!(sql.contains(ref_columns), "{name}: {sql}");
                (name, sql.replace(ref_columns, ""))
            }
            _ => (name, sql),
        })
        .collect();
    let added: Vec<&str> = after
        .iter()
        .filter(|t| !before.contains(t))
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        before.iter().all(|t| after.contains(t)),
        "an old table changed: {before:?} against {after:?}"
    );
    assert_eq!(
        added,
        [
            "artifact_refs_by_document",
            "artifact_refs_removed",
            "artifacts_private",
            "events",
            "leaves_by_flat",
            "metadata_private",
            "tokens",
            "traffic",
            "upkeep_runs"
        ]
    );
    assert!(!record.private, "an old row is public");
}

#[test]
fn a_new_index_is_at_the_newest_version_and_reopens_unchanged() {
    let (dir, index) = index();
    assert_eq!(index.schema_version().expect("version"), SCHEMA_VERSION);
    drop(index);
    let index = Index::open(&dir.path().join("index.sqlite3")).expect("reopen");
    assert_eq!(index.schema_version().expect("version"), SCHEMA_VERSION);
}

#[test]
fn an_index_from_a_newer_cairn_is_refused_naming_both_versions() {
    let (dir, index) = index();
    drop(index);
    let path = dir.path().join("index.sqlite3");
    let newer = SCHEMA_VERSION + 1;
    Connection::open(&path)
        .and_then(|c| c.execute_batch(&format!("PRAGMA user_version = {newer}")))
        .expect("mark newer");
    let err = match Index::open(&path) {
        Ok(_) => panic!("an index of version {newer} was opened"),
        Err(e) => e,
    };
    assert!(matches!(err, IndexError::TooNew { found, supported, .. }
        if found == newer && supported == SCHEMA_VERSION));
    let message = err.to_string();
    assert!(
        message.contains(&format!("schema version {newer}"))
            && message.contains(&format!("newer than {SCHEMA_VERSION}"))
            && message.contains(&path.display().to_string()),
        "{message}"
    );
    // Refused, not rewritten.
    let version: i64 = Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .expect("version");
    assert_eq!(version, newer);
}

#[test]
fn a_publication_time_only_moves_later_and_a_version_added_later_dates_from_its_sighting() {
    let (_dir, index) = index();
    const DAY: i64 = 86_400_000;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64
    };
    let record = MetadataRecord {
        private: false,
        cid: Some(BlockCid(crate::cid::raw_block_cid(b"{}"))),
        status: 200,
        upstream_url: "http://upstream/x".into(),
        fetched_at: 1,
        etag: None,
        last_modified: None,
        size: 2,
    };
    let reference = |version: &str, published: i64| RefRecord {
        flat: Digest::of(Algorithm::Sha256, version.as_bytes()).flat_cid(),
        url: format!("http://upstream/x/-/x-{version}.tgz"),
        size: None,
        version: Some(version.to_owned()),
        published: Some(published),
        removed: None,
        yanked: false,
        package: None,
    };
    let published = |key: &str| {
        index
            .get_ref("npm", key)
            .expect("read")
            .expect("ref")
            .published
            .expect("published")
    };
    let first_fetch = now() - 40 * DAY;
    index
        .put_metadata(
            "npm",
            "x",
            &record,
            &[("x/-/x-1.0.0.tgz".into(), reference("1.0.0", first_fetch))],
        )
        .expect("first fetch");
    // The first sighting of a document trusts its dates.
    assert_eq!(published("x/-/x-1.0.0.tgz"), first_fetch);
    let before = now();
    index
        .put_metadata(
            "npm",
            "x",
            &record,
            &[
                // Backdated: stays as first recorded.
                (
                    "x/-/x-1.0.0.tgz".into(),
                    reference("1.0.0", first_fetch - 100 * DAY),
                ),
                // New in a document read before, claiming an old date: dated now.
                (
                    "x/-/x-1.1.0.tgz".into(),
                    reference("1.1.0", first_fetch - 10 * DAY),
                ),
            ],
        )
        .expect("second fetch");
    assert_eq!(published("x/-/x-1.0.0.tgz"), first_fetch);
    assert!(published("x/-/x-1.1.0.tgz") >= before);
    let listed = index.refs_listed_by("npm", "x").expect("listed");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].1.version.as_deref(), Some("1.1.0"));

    // Listed no more: removed upstream; listed again: not.
    assert!(!index.any_removed());
    let removed = |key: &str| {
        index
            .get_ref("npm", key)
            .expect("read")
            .expect("ref")
            .removed
    };
    index
        .put_metadata(
            "npm",
            "x",
            &record,
            &[("x/-/x-1.1.0.tgz".into(), reference("1.1.0", first_fetch))],
        )
        .expect("third fetch");
    assert!(removed("x/-/x-1.0.0.tgz").is_some());
    assert_eq!(removed("x/-/x-1.1.0.tgz"), None);
    assert!(index.any_removed());
    index
        .put_metadata(
            "npm",
            "x",
            &record,
            &[("x/-/x-1.0.0.tgz".into(), reference("1.0.0", first_fetch))],
        )
        .expect("fourth fetch");
    assert_eq!(removed("x/-/x-1.0.0.tgz"), None);
    assert!(removed("x/-/x-1.1.0.tgz").is_some());

    // Yanked as each reading says: marked, then unmarked.
    let yanked = |key: &str| {
        index
            .get_ref("npm", key)
            .expect("read")
            .expect("ref")
            .yanked
    };
    assert!(!yanked("x/-/x-1.0.0.tgz"));
    for mark in [true, false] {
        let mut marked = reference("1.0.0", first_fetch);
        marked.yanked = mark;
        index
            .put_metadata("npm", "x", &record, &[("x/-/x-1.0.0.tgz".into(), marked)])
            .expect("yank");
        assert_eq!(yanked("x/-/x-1.0.0.tgz"), mark);
        assert_eq!(
            index.refs_listed_by("npm", "x").expect("listed")[0]
                .1
                .yanked,
            mark
        );
    }
}

#[test]
fn a_listing_read_in_parts_keeps_every_part_and_marks_nothing_removed() {
    let (_dir, index) = index();
    let reference = |n: usize| {
        (
            format!("pool/main/p/p{n}/p{n}_1_amd64.deb"),
            RefRecord {
                flat: Digest::of(Algorithm::Sha256, n.to_string().as_bytes()).flat_cid(),
                url: format!("http://upstream/debian/pool/main/p/p{n}/p{n}_1_amd64.deb"),
                size: Some(n as u64),
                version: Some("1".to_owned()),
                published: None,
                removed: None,
                yanked: false,
                package: Some(format!("p{n}")),
            },
        )
    };
    let listing = "dists/stable/main/binary-amd64/by-hash/SHA256/00";
    let refs: Vec<_> = (0..25).map(reference).collect();
    // One reading in three parts, then the same listing read again (after a crash, or from a
    // bundle): as a document read thrice, the first parts would be "removed" by the later ones.
    for _ in 0..2 {
        for part in refs.chunks(10) {
            index
                .put_listed_refs("apt/debian", listing, part)
                .expect("part");
        }
    }
    let listed = index.refs_listed_by("apt/debian", listing).expect("listed");
    assert_eq!(listed.len(), refs.len());
    assert!(
        listed
            .iter()
            .all(|(_, r)| r.removed.is_none() && r.published.is_none()),
        "{listed:?}"
    );
    assert!(!index.any_removed());
}

#[test]
fn a_search_finds_cached_files_by_package_and_version_and_nothing_else() {
    let (_dir, index) = index();
    let metadata = MetadataRecord {
        private: false,
        cid: Some(BlockCid(crate::cid::raw_block_cid(b"{}"))),
        status: 200,
        upstream_url: "http://upstream/left-pad".into(),
        fetched_at: 1,
        etag: None,
        last_modified: None,
        size: 2,
    };
    let mut refs = Vec::new();
    for (i, version) in ["1.0.0", "1.3.0", "2.0.0"].iter().enumerate() {
        let key = format!("left-pad/-/left-pad-{version}.tgz");
        let bytes = format!("left-pad {version}");
        let mut builder = DagBuilder::new();
        builder.update(bytes.as_bytes());
        let dag = builder.finish();
        let flat = Digest::of(Algorithm::Sha512, bytes.as_bytes()).flat_cid();
        refs.push((
            key.clone(),
            RefRecord {
                version: Some((*version).to_owned()),
                published: None,
                removed: None,
                yanked: false,
                package: None,
                flat,
                url: format!("http://upstream/{key}"),
                size: Some(bytes.len() as u64),
            },
        ));
        // 2.0.0 is known from the document but not cached.
        if *version != "2.0.0" {
            let record = ArtifactRecord {
                private: false,
                flat,
                root: RootCid(dag.root),
                size: bytes.len() as u64,
                upstream_url: format!("http://upstream/{key}"),
                fetched_at: 10 + i as i64,
            };
            index.put_artifact("npm", &key, &record, &dag).expect("put");
        }
    }
    index
        .put_metadata("npm", "left-pad", &metadata, &refs)
        .expect("put metadata");
    // A file no document lists (imported, say) is found by its key.
    let mut builder = DagBuilder::new();
    builder.update(b"wheel");
    let dag = builder.finish();
    let wheel = ArtifactRecord {
        private: false,
        flat: Digest::of(Algorithm::Sha256, b"wheel").flat_cid(),
        root: RootCid(dag.root),
        size: 5,
        upstream_url: "http://upstream/six-1.16.0-py2.py3-none-any.whl".into(),
        fetched_at: 5,
    };
    index
        .put_artifact("pypi", "six/six-1.16.0-py2.py3-none-any.whl", &wheel, &dag)
        .expect("put wheel");

    let keys =
        |found: Vec<FoundFile>| -> Vec<String> { found.into_iter().map(|f| f.key).collect() };
    let all = index.search("LEFT-pad", None, None, 10).expect("search");
    assert_eq!(
        keys(all.clone()),
        [
            "left-pad/-/left-pad-1.3.0.tgz",
            "left-pad/-/left-pad-1.0.0.tgz"
        ],
        "cached files only, newest first, case ignored"
    );
    assert_eq!(all[0].package.as_deref(), Some("left-pad"));
    assert_eq!(all[0].version.as_deref(), Some("1.3.0"));
    assert_eq!(
        keys(
            index
                .search("left-pad", Some("1.0.0"), None, 10)
                .expect("search")
        ),
        ["left-pad/-/left-pad-1.0.0.tgz"]
    );
    assert!(
        index
            .search("left-pad", Some("2.0.0"), None, 10)
            .expect("search")
            .is_empty()
    );
    assert!(
        index
            .search("left-pad", None, Some("cargo"), 10)
            .expect("search")
            .is_empty()
    );
    assert_eq!(
        keys(
            index
                .search("six", Some("1.16.0"), Some("pypi"), 10)
                .expect("search")
        ),
        ["six/six-1.16.0-py2.py3-none-any.whl"]
    );
    assert!(
        index
            .search("six", Some("1.15.0"), None, 10)
            .expect("search")
            .is_empty()
    );
    // LIKE's wildcards are text.
    assert!(
        index
            .search("left%pad", None, None, 10)
            .expect("search")
            .is_empty()
    );
    assert!(
        index
            .search("_", None, None, 10)
            .expect("search")
            .is_empty()
    );
    assert_eq!(index.search("-", None, None, 1).expect("search").len(), 1);
}

#[test]
fn a_large_commit_is_checkpointed_by_the_index_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index.sqlite3");
    let index = Index::open(&path).expect("open");
    let main_file = || std::fs::metadata(&path).expect("stat the index").len();
    // A page of 20,000 files: several thousand pages of log, past the threshold.
    let refs: Vec<(String, RefRecord)> = (0..20_000)
        .map(|i| {
            let reference = RefRecord {
                version: Some(format!("1.0.{i}")),
                published: None,
                removed: None,
                yanked: false,
                package: None,
                flat: Digest::of(Algorithm::Sha256, format!("file {i}").as_bytes()).flat_cid(),
                url: format!("https://upstream.invalid/packages/{i:08}/big-1.0.{i}.tar.gz"),
                size: Some(i),
            };
            (format!("big/big-1.0.{i}.tar.gz"), reference)
        })
        .collect();
    let record = MetadataRecord {
        private: false,
        cid: Some(BlockCid(crate::cid::raw_block_cid(b"{}"))),
        status: 200,
        upstream_url: "https://upstream.invalid/simple/big/".into(),
        fetched_at: 1,
        etag: None,
        last_modified: None,
        size: 2,
    };
    let before = main_file();
    index
        .put_metadata("pypi", "big", &record, &refs)
        .expect("put");
    // The commit's pages went to the log; the database file grows only when the index's own
    // thread copies them in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while index.checkpointer.runs() == 0 || main_file() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 30 s: {} runs, database file {} bytes (was {before})",
            index.checkpointer.runs(),
            main_file()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        index.checkpointer.runs(),
        1,
        "one commit past the threshold"
    );
    // Small commits after it leave the thread alone.
    index
        .put_metadata(
            "pypi",
            "small",
            &record,
            &[("small/small-1.0.tar.gz".into(), refs[0].1.clone())],
        )
        .expect("put a small document");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(index.checkpointer.runs(), 1);
    assert_eq!(
        index.refs_listed_by("pypi", "big").expect("read").len(),
        20_000
    );
}
