//! Routes, the InRelease → index → pool chain on recorded archive data, and list resolution.

use std::path::Path;

use cairn_ecosystem::{Listing, MetadataDoc, Request, Route};
use http::Method;
use url::Url;

use super::*;

fn archive() -> Archive {
    let keyring = Keyring::load(&[Path::new("/usr/share/keyrings/debian-archive-keyring.gpg")])
        .expect("debian-archive-keyring must be installed");
    Archive::new("debian", keyring).expect("archive")
}

fn route(a: &Archive, path: &str) -> Result<Option<Route>, BadRequest> {
    a.route(&Request {
        method: &Method::GET,
        path,
        query: None,
        accept: None,
    })
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect(name)
}

#[test]
fn routes() {
    let a = archive();
    assert_eq!(a.name(), "apt/debian");
    let Some(Route::Metadata(m)) = route(&a, "dists/bookworm/InRelease").expect("ok") else {
        panic!("InRelease is metadata");
    };
    assert_eq!(m.key, "dists/bookworm/InRelease");
    let Some(Route::Metadata(m)) = route(&a, "dists/bookworm/Release").expect("ok") else {
        panic!("Release is metadata");
    };
    assert_eq!(
        m.context.as_deref().map(|c| c.key.as_str()),
        Some("dists/bookworm/Release.gpg")
    );
    let Some(Route::Artifact(r)) =
        route(&a, "dists/bookworm/main/binary-amd64/Packages.xz").expect("ok")
    else {
        panic!("index is an artifact");
    };
    assert!(matches!(&r.listed_by, Listing::Current(m) if m.key == "dists/bookworm/InRelease"));
    let hash = "dists/bookworm/main/binary-amd64/by-hash/SHA256/".to_owned() + &"ab".repeat(32);
    let Some(Route::Artifact(r)) = route(&a, &hash).expect("ok") else {
        panic!("by-hash is an artifact");
    };
    assert!(matches!(&r.listed_by, Listing::Document(_)));
    assert!(
        route(&a, "dists/bookworm/main/binary-amd64/by-hash/MD5Sum/00")
            .expect("ok")
            .is_none()
    );
    // apt's encoding of `+` and `~` and the raw form name the same key.
    let encoded = "pool/main/g/gcc-12/libstdc%2b%2b6_12.2.0-14%7edeb12u1_amd64.deb";
    let raw = "pool/main/g/gcc-12/libstdc++6_12.2.0-14~deb12u1_amd64.deb";
    for path in [encoded, raw] {
        let Some(Route::Artifact(r)) = route(&a, path).expect("ok") else {
            panic!("pool file is an artifact");
        };
        assert_eq!(r.key, raw);
        assert_eq!(r.listed_by, Listing::Listings);
    }
}

#[test]
fn hostile_paths_are_refused() {
    let a = archive();
    for path in [
        "pool/../etc/passwd",
        "pool/%2e%2e/x",
        "pool//x",
        "pool/a%00b",
        "dists/./InRelease",
        "pool/a%0ab",
        "%2fetc/passwd",
    ] {
        assert!(route(&a, path).is_err(), "{path}");
    }
    assert!(route(&a, &"a/".repeat(600)).is_err());
    assert!(Archive::new("../x", archive().keyring).is_err());
}

#[test]
fn in_release_lists_indexes_by_path_and_hash() {
    let a = archive();
    let body = fixture("bookworm-updates-InRelease");
    let url = Url::parse("https://upstream.invalid/debian/dists/bookworm-updates/InRelease")
        .expect("url");
    let doc = MetadataDoc {
        key: "dists/bookworm-updates/InRelease",
        url: &url,
        body: &body,
        context: None,
    };
    let refs = a.artifacts(&doc).expect("verified");
    let xz = refs
        .iter()
        .find(|r| r.key == "dists/bookworm-updates/main/binary-amd64/Packages.xz")
        .expect("Packages.xz listed");
    assert_eq!(
        xz.url.as_str(),
        "https://upstream.invalid/debian/dists/bookworm-updates/main/binary-amd64/Packages.xz"
    );
    assert_eq!(xz.size, Some(6924));
    let hex = "87e7e94047fb7fb6f4ceecc7022d4bee55b66031cc2a7666d3196f3e0aabb846";
    let by_hash = format!("dists/bookworm-updates/main/binary-amd64/by-hash/SHA256/{hex}");
    let h = refs
        .iter()
        .find(|r| r.key == by_hash)
        .expect("by-hash listed");
    assert_eq!(h.digest, xz.digest);
    assert_eq!(
        h.url.as_str(),
        format!("https://upstream.invalid/debian/{by_hash}")
    );

    // A tampered copy is refused, naming the file and the keyring.
    let mut bad = body.clone();
    let at = bad.windows(3).position(|w| w == b"all").expect("text");
    bad[at] = b'A';
    let doc = MetadataDoc { body: &bad, ..doc };
    let e = a.artifacts(&doc).expect_err("tampered");
    assert!(e.0.contains("dists/bookworm-updates/InRelease"), "{e}");
    assert!(e.0.contains("debian-archive-keyring.gpg"), "{e}");
}

#[test]
fn packages_list_pool_files_with_their_digests() {
    let a = archive();
    let xz = fixture("bookworm-updates-main-amd64-Packages.xz");
    // The recorded index is the one the recorded InRelease lists.
    let digest = Digest::of(Algorithm::Sha256, &xz);
    assert_eq!(
        hex::encode(digest.bytes()),
        "87e7e94047fb7fb6f4ceecc7022d4bee55b66031cc2a7666d3196f3e0aabb846"
    );
    let key = "dists/bookworm-updates/main/binary-amd64/Packages.xz";
    // Whether an artifact is a listing travels on its route, by path and by hash alike.
    let listing = |path: &str| match route(&a, path) {
        Ok(Some(Route::Artifact(r))) => r.listing,
        other => panic!("{path}: {other:?}"),
    };
    assert!(listing(key));
    assert!(listing("dists/s/main/binary-amd64/by-hash/SHA256/00"));
    assert!(listing("dists/s/main/source/Sources.xz"));
    assert!(!listing("dists/s/main/i18n/Translation-en.xz"));
    assert!(!listing("dists/s/main/binary-amd64/Packages.diff/Index"));
    assert!(!listing("pool/main/p/Packages_1.0_all.deb"));
    let url = Url::parse(&format!("https://upstream.invalid/debian/{key}")).expect("url");
    let mut refs = Vec::new();
    a.listing(key, &url, &mut std::io::Cursor::new(xz), &mut |r| {
        refs.push(r);
        Ok(())
    })
    .expect("listing");
    assert_eq!(refs.len(), 38);
    let ca = refs
        .iter()
        .find(|r| r.key == "pool/main/c/ca-certificates/ca-certificates_20230311+deb12u1_all.deb")
        .expect("listed");
    assert_eq!(ca.size, Some(155260));
    assert_eq!(
        hex::encode(ca.digest.bytes()),
        "0d5f444f594e48c1e16a41d8fc628a09b24c658916a1274025c2330f2a802bed"
    );
    assert_eq!(
        ca.url.as_str(),
        "https://upstream.invalid/debian/pool/main/c/ca-certificates/ca-certificates_20230311+deb12u1_all.deb"
    );
}

#[test]
fn sources_indexes_list_source_files() {
    let text = "Package: hello\nVersion: 2.10-3\nDirectory: pool/main/h/hello\nChecksums-Sha256:\n \
        aa00000000000000000000000000000000000000000000000000000000000000 1847 hello_2.10-3.dsc\n \
        bb00000000000000000000000000000000000000000000000000000000000000 725946 hello_2.10.orig.tar.gz\n\n";
    let files = packages::read(text.as_bytes()).expect("read");
    assert_eq!(files.len(), 2);
    assert_eq!(
        files[1].filename,
        "pool/main/h/hello/hello_2.10.orig.tar.gz"
    );
    assert_eq!(files[1].size, 725946);
}

#[test]
fn gzip_indexes_are_read() {
    use std::io::Write;
    let text = "Package: a\nVersion: 1\nFilename: pool/a_1_all.deb\nSize: 3\nSHA256: \
        cc00000000000000000000000000000000000000000000000000000000000000\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).expect("gzip");
    let files = packages::read(&gz.finish().expect("gzip")[..]).expect("read");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].filename, "pool/a_1_all.deb");
}

#[test]
fn release_dates_are_checked() {
    let text = "Date: Sat, 10 May 2025 08:37:46 UTC\nValid-Until: Sat, 17 May 2025 08:37:46 UTC\n\
        SHA256:\n 0000000000000000000000000000000000000000000000000000000000000000 0 main/x\n";
    let release = release::Release::parse(text).expect("parse");
    let during = release::parse_date("Mon, 12 May 2025 00:00:00 UTC").expect("date");
    release.check_dates(during).expect("valid");
    let after = release::parse_date("Sun, 1 Jun 2025 00:00:00 UTC").expect("date");
    let e = release.check_dates(after).expect_err("expired");
    assert!(e.contains("Valid-Until"), "{e}");
    let before = release::parse_date("Fri, 09 May 2025 00:00:00 UTC").expect("date");
    assert!(
        release
            .check_dates(before)
            .expect_err("future")
            .contains("future")
    );
    assert!(release::Release::parse("Origin: x\n").is_err());
}

#[test]
fn sources_are_read_in_both_formats() {
    let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://upstream.invalid/debian bookworm main contrib\n\
        deb-src http://upstream.invalid/debian-security bookworm-security main\nnot an entry\n";
    let sources = sources::parse_list(list);
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0].archive_name(), "debian");
    assert_eq!(sources[0].signed_by.as_deref(), Some("/k.gpg"));
    assert_eq!(sources[0].components, ["main", "contrib"]);
    assert_eq!(sources[1].archive_name(), "debian-security");
    let deb822 = "Types: deb\nURIs: https://upstream.invalid/debian\nSuites: bookworm bookworm-updates\n\
        Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
        Types: deb\nURIs: http://upstream.invalid/other\nSuites: x\nComponents: main\nEnabled: no\n";
    let sources = sources::parse_deb822(deb822);
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].suites, ["bookworm", "bookworm-updates"]);
    let base = Url::parse("http://127.0.0.1:7777/apt/").expect("url");
    let out = sources::render_deb822(&sources, &base);
    assert!(
        out.contains("URIs: http://127.0.0.1:7777/apt/debian\n"),
        "{out}"
    );
    assert!(out.contains("Suites: bookworm bookworm-updates\n"), "{out}");
}

#[test]
fn package_lists_resolve_to_pool_files() {
    let list = "hello\ncurl=7.88.1-10+deb12u5\nold\tdeinstall\nlibc6:amd64\tinstall\n";
    let wanted = lockfile::read("pkgs.txt", list).expect("read");
    assert_eq!(wanted.len(), 3);
    let e = lockfile::read("pkgs.txt", "ok\nBAD NAME\n").expect_err("bad");
    assert_eq!(e.to_string(), "pkgs.txt:2: unknown selection \"NAME\"");
    let file = |package: &str, version: &str, arch: &str| packages::PoolFile {
        package: package.into(),
        version: version.into(),
        filename: format!("pool/{package}_{version}_{arch}.deb"),
        size: 1,
        sha256: [0; 32],
    };
    let listed = vec![
        file("hello", "2.10-2", "amd64"),
        file("hello", "2.10-3", "amd64"),
        file("hello", "2.10-3~bpo1", "amd64"),
        file("curl", "7.88.1-10+deb12u5", "amd64"),
        file("curl", "7.88.1-10+deb12u8", "amd64"),
        file("libc6", "2.36-9", "amd64"),
        file("libc6", "2.36-9", "i386"),
    ];
    let found = lockfile::resolve("pkgs.txt", &wanted, &listed).expect("resolve");
    let names: Vec<&str> = found.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(
        names,
        [
            "pool/hello_2.10-3_amd64.deb",
            "pool/curl_7.88.1-10+deb12u5_amd64.deb",
            "pool/libc6_2.36-9_amd64.deb"
        ]
    );
    let e = lockfile::resolve(
        "pkgs.txt",
        &lockfile::read("pkgs.txt", "nope\n").expect("read"),
        &listed,
    )
    .expect_err("missing");
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn debian_version_order() {
    use lockfile::compare_versions as cmp;
    use std::cmp::Ordering::*;
    for (a, b, want) in [
        ("1.0", "1.0", Equal),
        ("1.0~rc1", "1.0", Less),
        ("1.0", "1.0+b1", Less),
        ("1:0.9", "2.0", Greater),
        ("2.10-3", "2.9-9", Greater),
        ("1.0-1", "1.0-1~bpo1", Greater),
        ("1.0a", "1.0", Greater),
        ("1.01", "1.1", Equal),
    ] {
        assert_eq!(cmp(a, b), want, "{a} vs {b}");
    }
}

/// An xz stream of a stanza whose `Description` line is `line_len` bytes of `x`.
fn xz_with_a_long_line(line_len: usize) -> Vec<u8> {
    use std::io::Write;
    let mut xz = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1))
        .expect("xz writer");
    xz.write_all(b"Package: bomb\nVersion: 1\nDescription: ")
        .expect("xz");
    let block = vec![b'x'; 1 << 20];
    let mut left = line_len;
    while left > 0 {
        let n = left.min(block.len());
        xz.write_all(&block[..n]).expect("xz");
        left -= n;
    }
    xz.write_all(b"\n\n").expect("xz");
    xz.finish().expect("xz")
}

#[test]
fn an_xz_bomb_with_an_enormous_line_is_refused_at_the_line_limit() {
    // 16 MiB of one line, compressed to a few kilobytes.
    let bomb = xz_with_a_long_line(16 << 20);
    assert!(bomb.len() < 256 << 10, "the bomb is small: {}", bomb.len());
    let error = packages::read_each(&bomb[..], packages::Limits::default(), |_| Ok(()))
        .expect_err("refused");
    assert!(
        error.contains("line 3") && error.contains("1 MiB, the line limit"),
        "{error}"
    );
}

#[test]
fn an_endless_line_is_refused_without_being_held() {
    // 64 GiB of one line: read whole, it would never fit in memory.
    let endless = std::io::Read::chain(
        &b"Package: bomb\nDescription: "[..],
        std::io::Read::take(std::io::repeat(b'x'), 64 << 30),
    );
    let error =
        packages::read_each(endless, packages::Limits::default(), |_| Ok(())).expect_err("refused");
    assert!(
        error.contains("line 2") && error.contains("line limit"),
        "{error}"
    );
}

#[test]
fn an_index_decompressing_past_its_limit_is_refused() {
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "Package: p{i}\nVersion: 1\nFilename: pool/p{i}_1_all.deb\nSize: 3\nSHA256: \
             cc00000000000000000000000000000000000000000000000000000000000000\n\n"
        ));
    }
    let limits = packages::Limits {
        decompressed: 64 << 10,
        ..packages::Limits::default()
    };
    let mut seen = 0;
    let error = packages::read_each(text.as_bytes(), limits, |_| {
        seen += 1;
        Ok(())
    })
    .expect_err("refused");
    assert!(
        error.contains("more than 64 KiB, the limit of an index"),
        "{error}"
    );
    assert!(seen < 2000);
    let limits = packages::Limits {
        entries: 100,
        ..packages::Limits::default()
    };
    let error = packages::read_each(text.as_bytes(), limits, |_| Ok(())).expect_err("refused");
    assert!(error.contains("more than 100 files"), "{error}");
}

#[test]
fn a_listing_hands_out_its_files_one_by_one() {
    let text = "Package: a\nVersion: 1\nFilename: pool/a_1_all.deb\nSize: 3\nSHA256: \
        cc00000000000000000000000000000000000000000000000000000000000000\n\n\
        Package: b\nVersion: 1\nFilename: pool/b_1_all.deb\nSize: 3\nSHA256: \
        dd00000000000000000000000000000000000000000000000000000000000000\n";
    let key = "dists/s/main/binary-amd64/Packages";
    let url = Url::parse(&format!("https://upstream.invalid/debian/{key}")).expect("url");
    let mut keys = Vec::new();
    let error = archive()
        .listing(key, &url, &mut std::io::Cursor::new(text), &mut |r| {
            keys.push(r.key);
            Err(AdapterError("the sink is full".into()))
        })
        .expect_err("the sink's error ends the reading");
    assert_eq!(keys, ["pool/a_1_all.deb"]);
    assert!(error.0.contains("the sink is full"), "{error}");
}

#[test]
fn keys_route_back_to_themselves() {
    let archive = archive();
    let key_of = |route: Option<Route>| match route? {
        Route::Metadata(m) => Some(m.key),
        Route::Artifact(a) => Some(a.key),
        _ => None,
    };
    for key in [
        "dists/bookworm/InRelease",
        "dists/bookworm/main/binary-amd64/Packages.xz",
        "dists/bookworm/main/binary-amd64/by-hash/SHA256/0123abcd",
        "pool/main/g/gcc/libgcc-s1_12.2.0-14+deb12u1_amd64.deb",
        "pool/main/a/apt/apt_2.6.1~x_amd64.deb",
    ] {
        let again = key_of(archive.key_route(key).expect("key routes")).expect("a key");
        assert_eq!(again, key);
    }
    for hostile in [
        "../../etc/passwd",
        "pool/a\0b",
        "pool/%2e%2e/x",
        "/etc/passwd",
    ] {
        let back = archive
            .key_route(hostile)
            .ok()
            .flatten()
            .and_then(|r| key_of(Some(r)));
        assert_ne!(back.as_deref(), Some(hostile), "{hostile:?}");
    }
}

#[test]
fn a_source_package_scope_is_its_pool_files_in_every_component() {
    let scope = archive().package_scope("openssl", None).expect("scope");
    assert!(scope.documents.is_empty(), "the Release files stay");
    assert!(scope.listed_by.is_empty(), "the Packages indexes stay");
    assert_eq!(scope.artifact_prefixes, ["pool/"]);
    for owned in [
        "pool/main/o/openssl/libssl3_3.0.11-1~deb12u2_amd64.deb",
        "pool/main/o/openssl/openssl_3.0.11-1~deb12u2.dsc",
        "pool/updates/main/o/openssl/openssl_3.0.13-1~deb12u1_amd64.deb",
    ] {
        assert!((scope.owns)(owned), "{owned}");
    }
    for other in [
        "pool/main/o/openssl-blacklist/openssl-blacklist_0.5-3_all.deb",
        "pool/main/o/openssl",
        "pool/o/openssl/x.deb",
        "dists/bookworm/main/o/openssl/x",
        "pool/main/p/openssl/x.deb",
    ] {
        assert!(!(scope.owns)(other), "{other}");
    }
    let lib = archive().package_scope("libxml2", None).expect("scope");
    assert!((lib.owns)(
        "pool/main/libx/libxml2/libxml2_2.9.14_amd64.deb"
    ));
    assert!(!(lib.owns)("pool/main/l/libxml2/libxml2_2.9.14_amd64.deb"));
}

#[test]
fn source_package_scopes_refuse_bad_names_and_versions() {
    for name in ["", "a", "OpenSSL", "../x", "a/b", "x y"] {
        assert!(archive().package_scope(name, None).is_err(), "{name:?}");
    }
    let err = archive()
        .package_scope("openssl", Some("3.0"))
        .expect_err("versions are not selected");
    assert!(err.0.contains("@3.0"), "{err}");
}
