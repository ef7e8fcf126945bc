//! The contract's conformance check ([`cairn_conformance::check`]) over each adapter, on documents
//! sized like real projects: an npm packument with hundreds of versions (scoped), a cargo index
//! file with hundreds of releases of a mixed-case crate, a PyPI page with hundreds of files (JSON
//! and HTML, with and without upstream core metadata), and a recorded Debian suite (its
//! `InRelease` and the `Packages` it lists). Client URLs are read from the rendered documents
//! the way each client reads them.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use cairn_conformance::{Case, ListedBy, check};
use cairn_ecosystem::{ArtifactRef, Ecosystem, MetadataDoc, MetadataRoute, Method, Request, Route};
use cairn_ipld::digest::{Algorithm, Digest};
use serde_json::{Value, json};
use url::Url;

/// The node's URL for `mount`, as the server hands it to `render`.
fn base(mount: &str) -> Url {
    Url::parse(&format!("http://cairn.invalid:8080/{mount}/")).expect("base URL")
}

/// The metadata route `path` has when a client asks with `accept`.
fn document_route(adapter: &dyn Ecosystem, path: &str, accept: Option<&str>) -> MetadataRoute {
    let request = Request {
        method: &Method::GET,
        path,
        query: None,
        accept,
    };
    match adapter.route(&request) {
        Ok(Some(Route::Metadata(route))) => route,
        other => panic!("{path} is not a document: {other:?}"),
    }
}

fn assert_conforms(name: &str, case: &Case<'_>) {
    let problems = check(case);
    assert!(
        problems.is_empty(),
        "{name} breaks the contract:\n{}",
        problems.join("\n")
    );
}

fn rendered_text(
    adapter: &dyn Ecosystem,
    doc: &MetadataDoc<'_>,
    route: &MetadataRoute,
    base: &Url,
) -> String {
    let rendered = adapter
        .render(doc, route.variant, base)
        .unwrap_or_else(|e| panic!("{} as {}: {e}", doc.key, route.variant));
    String::from_utf8(rendered.body.to_vec()).expect("a rendered document is UTF-8")
}

fn digest_of(algorithm: Algorithm, seed: &str) -> Digest {
    Digest::of(algorithm, seed.as_bytes())
}

/// A packument of `@scope/name` with `count` versions, each manifest shaped like a real one.
fn packument(scope: &str, name: &str, count: usize) -> Vec<u8> {
    let full = format!("@{scope}/{name}");
    let mut versions = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    let mut latest = String::new();
    for i in 0..count {
        let version = format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10);
        let seed = format!("{full}@{version}");
        let integrity = base64::engine::general_purpose::STANDARD
            .encode(digest_of(Algorithm::Sha512, &seed).bytes());
        let shasum = hex::encode(digest_of(Algorithm::Sha1, &seed).bytes());
        versions.insert(
            version.clone(),
            json!({
                "name": full,
                "version": version,
                "description": "A package with a long release history",
                "homepage": format!("https://example.invalid/{name}#readme"),
                "repository": {"type": "git", "url": format!("git+https://example.invalid/{name}.git")},
                "bugs": {"url": format!("https://example.invalid/{name}/issues")},
                "license": "MIT",
                "main": "index.js",
                "dependencies": {"left-pad": "^1.3.0", "@types/node": "*"},
                "devDependencies": {"mocha": "^10.0.0"},
                "engines": {"node": ">=18"},
                "_id": format!("{full}@{version}"),
                "dist": {
                    "integrity": format!("sha512-{integrity}"),
                    "shasum": shasum,
                    "tarball": format!("https://registry.upstream.invalid/{full}/-/{name}-{version}.tgz"),
                    "fileCount": 12,
                    "unpackedSize": 48213,
                },
            }),
        );
        time.insert(version.clone(), json!("2024-01-01T00:00:00.000Z"));
        latest = version;
    }
    serde_json::to_vec(&json!({
        "_id": full,
        "name": full,
        "dist-tags": {"latest": latest, "next": latest},
        "versions": versions,
        "time": time,
    }))
    .expect("packument JSON")
}

#[test]
fn npm_packument_tarballs_route_back_to_the_packument() {
    let npm = cairn_npm::Npm;
    let base = base("npm");
    let body = packument("acme", "widgets", 600);
    let url = Url::parse("https://registry.upstream.invalid/@acme%2fwidgets").expect("url");
    let doc = MetadataDoc {
        key: "@acme/widgets",
        url: &url,
        body: &body,
        context: None,
    };
    let listed = npm.read(&doc).expect("packument read").artifacts;
    assert_eq!(listed.len(), 600);
    let mut client_urls = Vec::new();
    for accept in [None, Some(cairn_npm::ABBREVIATED)] {
        let route = document_route(&npm, "@acme%2fwidgets", accept);
        assert_eq!(route.key, doc.key);
        let rendered: Value =
            serde_json::from_str(&rendered_text(&npm, &doc, &route, &base)).expect("JSON");
        // What npm, yarn and pnpm fetch: each version's `dist.tarball`.
        for manifest in rendered["versions"].as_object().expect("versions").values() {
            let tarball = manifest["dist"]["tarball"].as_str().expect("dist.tarball");
            client_urls.push(tarball.to_owned());
        }
    }
    assert_conforms(
        "npm",
        &Case {
            adapter: &npm,
            base: &base,
            listed_by: ListedBy::Document(doc.key),
            listed: &listed,
            client_urls: &client_urls,
            package: Some("@acme/widgets"),
        },
    );
}

/// An index file of `name` with `count` releases, one JSON line each as the sparse index has.
fn index_file(name: &str, count: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..count {
        let version = format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10);
        let cksum = hex::encode(digest_of(Algorithm::Sha256, &format!("{name}-{version}")).bytes());
        let line = json!({
            "name": name,
            "vers": version,
            "deps": [{"name": "serde", "req": "^1", "features": [], "optional": false,
                      "default_features": true, "target": null, "kind": "normal"}],
            "cksum": cksum,
            "features": {"default": ["std"], "std": []},
            "yanked": i % 50 == 7,
            "rust_version": "1.70",
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

#[test]
fn cargo_index_releases_route_back_to_the_index_file() {
    let cargo = cairn_cargo::Cargo;
    let base = base("cargo");
    let config_body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters/cargo/tests/fixtures/config.json"),
    )
    .expect("config.json fixture");
    let config_url = Url::parse("https://index.upstream.invalid/config.json").expect("url");
    let config_route = document_route(&cargo, "index/config.json", None);
    let config = MetadataDoc {
        key: &config_route.key,
        url: &config_url,
        body: &config_body,
        context: None,
    };
    let body = index_file("Big_Crate", 400);
    let route = document_route(&cargo, "index/bi/g_/big_crate", None);
    assert_eq!(
        route.context.as_deref().map(|c| c.key.as_str()),
        Some(config.key)
    );
    let url = Url::parse("https://index.upstream.invalid/bi/g_/big_crate").expect("url");
    let doc = MetadataDoc {
        key: &route.key,
        url: &url,
        body: &body,
        context: Some(&config),
    };
    let listed = cargo.read(&doc).expect("index file read").artifacts;
    assert_eq!(listed.len(), 400);
    // What cargo does: `dl` from the rendered config.json (no markers: it appends
    // `/{crate}/{version}/download`), the name and version from each rendered index line.
    let rendered_config: Value =
        serde_json::from_str(&rendered_text(&cargo, &config, &config_route, &base)).expect("JSON");
    let dl = rendered_config["dl"].as_str().expect("dl");
    assert!(!dl.contains('{'), "{dl}");
    let client_urls: Vec<String> = rendered_text(&cargo, &doc, &route, &base)
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("index line");
            format!(
                "{dl}/{}/{}/download",
                line["name"].as_str().expect("name"),
                line["vers"].as_str().expect("vers")
            )
        })
        .collect();
    assert_conforms(
        "cargo",
        &Case {
            adapter: &cargo,
            base: &base,
            listed_by: ListedBy::Document(doc.key),
            listed: &listed,
            client_urls: &client_urls,
            package: Some("Big_Crate"),
        },
    );
}

/// A PEP 691 page of `project` with an sdist and three wheels for each of `releases` versions,
/// on a separate file host; every other wheel has upstream core metadata.
fn project_page(project: &str, releases: usize) -> Vec<u8> {
    let mut files = Vec::new();
    for i in 0..releases {
        let version = format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10);
        let stem = format!("{}-{version}", project.replace('-', "_"));
        let names = [
            format!("{stem}.tar.gz"),
            format!("{stem}-py3-none-any.whl"),
            format!("{stem}-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            format!("{stem}-cp312-cp312-win_amd64.whl"),
        ];
        for (n, filename) in names.into_iter().enumerate() {
            let sha = hex::encode(digest_of(Algorithm::Sha256, &filename).bytes());
            let mut file = json!({
                "filename": filename,
                "url": format!("https://files.upstream.invalid/packages/{}/{}/{filename}", &sha[..2], &sha[2..4]),
                "hashes": {"sha256": sha},
                "requires-python": ">=3.8",
                "size": 100_000 + i * 10 + n,
                "upload-time": "2024-01-01T00:00:00.000000Z",
                "yanked": false,
            });
            if filename.ends_with(".whl") && (i + n) % 2 == 0 {
                let meta = hex::encode(
                    digest_of(Algorithm::Sha256, &format!("{filename}.metadata")).bytes(),
                );
                file["core-metadata"] = json!({"sha256": meta});
            }
            files.push(file);
        }
    }
    serde_json::to_vec(&json!({
        "meta": {"api-version": "1.1"},
        "name": project,
        "versions": [],
        "files": files,
    }))
    .expect("page JSON")
}

/// `href`s (fragments removed) of a PEP 503 page, and their `.metadata` where the anchor
/// advertises core metadata, as pip and uv read them.
fn html_client_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for anchor in html.split("<a ").skip(1) {
        let tag = anchor.split('>').next().unwrap_or_default();
        let href = tag
            .split("href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("an anchor has an href")
            .replace("&amp;", "&");
        let href = href.split('#').next().unwrap_or_default().to_owned();
        if tag.contains("data-core-metadata=") {
            urls.push(format!("{href}.metadata"));
        }
        urls.push(href);
    }
    urls
}

#[test]
fn pypi_page_files_route_back_to_the_page() {
    let pypi = cairn_pypi::Pypi;
    let base = base("pypi");
    let body = project_page("big-project", 120);
    let url = Url::parse("https://upstream.invalid/simple/big-project/").expect("url");
    let doc = MetadataDoc {
        key: "big-project",
        url: &url,
        body: &body,
        context: None,
    };
    let listed = pypi.read(&doc).expect("page read").artifacts;
    // 480 files, and the upstream metadata of half the 360 wheels.
    assert_eq!(listed.len(), 660);
    let mut client_urls = Vec::new();
    for accept in [
        Some("application/vnd.pypi.simple.v1+json"),
        Some("application/vnd.pypi.simple.v1+html"),
        None,
    ] {
        let route = document_route(&pypi, "simple/big-project/", accept);
        assert_eq!(route.key, doc.key);
        let text = rendered_text(&pypi, &doc, &route, &base);
        if accept.is_some_and(|a| a.ends_with("+json")) {
            let page: Value = serde_json::from_str(&text).expect("JSON");
            for file in page["files"].as_array().expect("files") {
                let url = file["url"].as_str().expect("url").to_owned();
                if file
                    .get("core-metadata")
                    .is_some_and(|m| m != &json!(false))
                {
                    client_urls.push(format!("{url}.metadata"));
                }
                client_urls.push(url);
            }
        } else {
            client_urls.extend(html_client_urls(&text));
        }
    }
    assert_conforms(
        "pypi",
        &Case {
            adapter: &pypi,
            base: &base,
            listed_by: ListedBy::Document(doc.key),
            listed: &listed,
            client_urls: &client_urls,
            package: Some("Big.Project"),
        },
    );
}

fn apt_fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../adapters/apt/tests/fixtures")
            .join(name),
    )
    .expect(name)
}

fn debian() -> cairn_apt::Archive {
    let keyring =
        cairn_apt::Keyring::load(&[Path::new("/usr/share/keyrings/debian-archive-keyring.gpg")])
            .expect("debian-archive-keyring must be installed");
    cairn_apt::Archive::new("debian", keyring).expect("archive")
}

#[test]
fn apt_indexes_route_back_to_their_in_release() {
    let apt = debian();
    let base = base("apt/debian");
    let body = apt_fixture("bookworm-updates-InRelease");
    let route = document_route(&apt, "dists/bookworm-updates/InRelease", None);
    let url = Url::parse("https://upstream.invalid/debian/dists/bookworm-updates/InRelease")
        .expect("url");
    let doc = MetadataDoc {
        key: &route.key,
        url: &url,
        body: &body,
        context: None,
    };
    let listed = apt.read(&doc).expect("InRelease verified").artifacts;
    assert!(listed.len() > 100, "{} index files", listed.len());
    // What apt does: every file of the SHA256 section below `dists/SUITE/`, by path and by hash.
    let text = rendered_text(&apt, &doc, &route, &base);
    let mut client_urls = Vec::new();
    let mut in_sha256 = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_sha256 = line == "SHA256:";
            continue;
        }
        if !in_sha256 {
            continue;
        }
        let [hex, _size, path] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("SHA256 line {line:?}");
        };
        let dir = path
            .rsplit_once('/')
            .map_or(String::new(), |(d, _)| format!("{d}/"));
        client_urls.push(format!("{base}dists/bookworm-updates/{path}"));
        client_urls.push(format!(
            "{base}dists/bookworm-updates/{dir}by-hash/SHA256/{hex}"
        ));
    }
    assert_conforms(
        "apt InRelease",
        &Case {
            adapter: &apt,
            base: &base,
            listed_by: ListedBy::Document(doc.key),
            listed: &listed,
            client_urls: &client_urls,
            package: None,
        },
    );
}

#[test]
fn apt_pool_files_route_back_to_the_listings() {
    let apt = debian();
    let base = base("apt/debian");
    let xz = apt_fixture("bookworm-updates-main-amd64-Packages.xz");
    let key = "dists/bookworm-updates/main/binary-amd64/Packages.xz";
    let url = Url::parse(&format!("https://upstream.invalid/debian/{key}")).expect("url");
    let mut listed: Vec<ArtifactRef> = Vec::new();
    apt.listing(key, &url, &mut std::io::Cursor::new(&xz), &mut |artifact| {
        listed.push(artifact);
        Ok(())
    })
    .expect("Packages read");
    // What apt does: each stanza's `Filename`, below the archive root.
    let mut text = String::new();
    lzma_rust2::XzReader::new(std::io::Cursor::new(&xz), true)
        .read_to_string(&mut text)
        .expect("Packages.xz decompresses");
    let client_urls: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("Filename: "))
        .map(|filename| format!("{base}{filename}"))
        .collect();
    assert_eq!(client_urls.len(), listed.len());
    assert_conforms(
        "apt Packages",
        &Case {
            adapter: &apt,
            base: &base,
            listed_by: ListedBy::Listings,
            listed: &listed,
            client_urls: &client_urls,
            package: None,
        },
    );
}
