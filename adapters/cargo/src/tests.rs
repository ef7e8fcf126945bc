//! Routing, config rewriting and digests, on upstream documents recorded with the host replaced
//! by `upstream.invalid`.

use super::*;
use http::Method;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn route(path: &str) -> Result<Option<Route>, BadRequest> {
    Cargo.route(&Request {
        method: &Method::GET,
        path,
        query: None,
        accept: None,
    })
}

fn config_doc<'a>(url: &'a Url, body: &'a [u8]) -> MetadataDoc<'a> {
    MetadataDoc {
        key: CONFIG_KEY,
        url,
        body,
        context: None,
    }
}

#[test]
fn routes() {
    assert!(
        matches!(route("index/config.json"), Ok(Some(Route::Metadata(m))) if m.variant == "config")
    );
    match route("index/it/oa/itoa") {
        Ok(Some(Route::Metadata(m))) => {
            assert_eq!(
                (m.key.as_str(), m.upstream_path.as_str()),
                ("itoa", "it/oa/itoa")
            );
            assert_eq!(
                m.context.as_deref().map(|c| c.key.as_str()),
                Some("config.json")
            );
        }
        other => panic!("{other:?}"),
    }
    match route("crates/MixedCase/1.0.0/download") {
        Ok(Some(Route::Artifact(a))) => {
            assert_eq!(a.key, "mixedcase/1.0.0");
            assert_eq!(
                a.listed_by.document().map(|m| m.upstream_path.as_str()),
                Some("mi/xe/mixedcase")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(route("index/xx/oa/itoa"), Ok(None), "wrong prefix is a 404");
    assert_eq!(route("crates/itoa/1.0.0"), Ok(None));
    for hostile in [
        "index/../etc/passwd",
        "index/it/oa/%2e%2e",
        "crates/itoa/../download",
        "crates/it%00oa/1.0.0/download",
        "crates/itoa/1.0.0;rm/download",
        "index/1/$",
    ] {
        assert!(route(hostile).is_err(), "{hostile} should be refused");
    }
}

/// The fixture `config.json` as an upstream's, rendered for a node at 127.0.0.1:7777.
fn rendered_config() -> Rendered {
    let url = Url::parse("https://upstream.invalid/config.json").expect("url");
    let body = fixture("config.json");
    let base = Url::parse("http://127.0.0.1:7777/cargo/").expect("base");
    Cargo
        .render(&config_doc(&url, &body), CONFIG_VARIANT, &base)
        .expect("render")
}

#[test]
fn a_node_requiring_tokens_tells_cargo_to_send_its_token_and_nothing_else_changes() {
    let rendered = rendered_config();
    let open: serde_json::Value = serde_json::from_slice(&rendered.body).expect("json");
    assert!(open.get("auth-required").is_none());
    let guarded = Cargo
        .for_token_clients(CONFIG_VARIANT, rendered)
        .expect("for token clients");
    let mut config: serde_json::Value = serde_json::from_slice(&guarded.body).expect("json");
    assert_eq!(config["auth-required"], true);
    config
        .as_object_mut()
        .expect("object")
        .remove("auth-required");
    assert_eq!(config, open);
    let line = Rendered {
        body: bytes::Bytes::from_static(b"{\"name\":\"x\"}\n"),
        content_type: "text/plain",
    };
    let same = Cargo
        .for_token_clients(INDEX_VARIANT, line)
        .expect("index file");
    assert_eq!(
        &same.body[..],
        b"{\"name\":\"x\"}\n",
        "index files are as they were"
    );
}

#[test]
fn config_points_downloads_back_at_the_node() {
    let rendered = rendered_config();
    let config: serde_json::Value = serde_json::from_slice(&rendered.body).expect("json");
    assert_eq!(config["dl"], "http://127.0.0.1:7777/cargo/crates");
    assert!(config.get("api").is_none());
    // The upstream's own dl is what the mirror may fetch from.
    let url = Url::parse("https://upstream.invalid/config.json").expect("url");
    let body = fixture("config.json");
    let facts = Cargo.read(&config_doc(&url, &body)).expect("config read");
    assert!(facts.artifacts.is_empty());
    let prefixes = facts.download_prefixes;
    assert_eq!(prefixes.len(), 1);
    assert_eq!(prefixes[0].host_str(), Some("upstream.invalid"));
}

#[test]
fn index_file_digests_and_download_urls() {
    let config_url = Url::parse("https://upstream.invalid/config.json").expect("url");
    let config = fixture("config.json");
    let body = fixture("itoa");
    let url = Url::parse("https://upstream.invalid/it/oa/itoa").expect("url");
    let context = config_doc(&config_url, &config);
    let doc = MetadataDoc {
        key: "itoa",
        url: &url,
        body: &body,
        context: Some(&context),
    };
    let facts = Cargo.read(&doc).expect("index file read");
    let refs = &facts.artifacts;
    assert_eq!(
        refs.len(),
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    );
    let first = &refs[0];
    assert!(first.key.starts_with("itoa/"));
    assert!(first.url.as_str().ends_with("/download"), "{}", first.url);
    // One read gives the download location too: where the config.json read with it says.
    assert_eq!(
        facts.download_prefixes,
        Cargo.read(&context).expect("config read").download_prefixes
    );
    let prefix = &facts.download_prefixes[0];
    assert!(first.url.as_str().starts_with(prefix.as_str()));
    // Index files are passed through byte for byte.
    let rendered = Cargo
        .render(
            &doc,
            INDEX_VARIANT,
            &Url::parse("http://h/cargo/").expect("base"),
        )
        .expect("render");
    assert_eq!(&rendered.body[..], &body[..]);
    let refs = Cargo.read(&doc).expect("index file read").artifacts;
    assert_eq!(refs[0].version.as_deref(), Some("0.1.0"));
    assert_eq!(
        refs[0].published,
        cairn_ecosystem::time::parse_rfc3339("2016-06-25T21:50:33Z")
    );
    let kept = Cargo
        .without(&doc, &|key| key == "itoa/0.1.1")
        .expect("filter")
        .expect("changed");
    let kept = String::from_utf8(kept).expect("utf-8");
    assert_eq!(kept.lines().count(), refs.len() - 1);
    assert!(!kept.contains("\"vers\": \"0.1.1\""), "{kept}");
    assert!(kept.contains("\"vers\": \"0.1.0\""));
    assert_eq!(Cargo.without(&doc, &|_| false).expect("filter"), None);
}

#[test]
fn relative_and_templated_dl() {
    let url = Url::parse("http://up.invalid/index/config.json").expect("url");
    let body = br#"{"dl":"/files/{lowerprefix}/{crate}-{version}.crate"}"#;
    let doc = config_doc(&url, body);
    assert_eq!(
        absolute_dl(&doc).expect("dl"),
        "http://up.invalid/files/{lowerprefix}/{crate}-{version}.crate"
    );
    assert_eq!(
        Cargo.read(&doc).expect("config read").download_prefixes[0].as_str(),
        "http://up.invalid/files/"
    );
}

/// The key a route names.
fn key_of(route: Option<Route>) -> Option<String> {
    match route? {
        Route::Metadata(m) => Some(m.key),
        Route::Artifact(a) => Some(a.key),
        _ => None,
    }
}

#[test]
fn keys_route_back_to_themselves() {
    for path in [
        "index/config.json",
        "index/se/rd/serde",
        "index/3/s/syn",
        "index/1/a",
        "crates/serde/1.0.200/download",
    ] {
        let key = key_of(route(path).expect("routes")).expect("a key");
        let again = key_of(Cargo.key_route(&key).expect("key routes")).expect("a key");
        assert_eq!(again, key, "{path}");
    }
    for hostile in [
        "../../etc/passwd",
        "a\0b",
        "file:///etc/passwd",
        "se/rd/serde",
    ] {
        let back = Cargo
            .key_route(hostile)
            .ok()
            .flatten()
            .and_then(|r| key_of(Some(r)));
        assert_ne!(back.as_deref(), Some(hostile), "{hostile:?}");
    }
}

#[test]
fn a_crate_scope_is_its_index_file_and_every_crate_file() {
    let scope = Cargo.package_scope("Serde", None).expect("scope");
    assert_eq!(scope.documents, ["serde"]);
    assert_eq!(scope.listed_by, ["serde"]);
    assert_eq!(scope.artifact_prefixes, ["serde/"]);
    assert!((scope.owns)("serde/1.0.0"));
    assert!(Cargo.package_scope("config.json", None).is_err());
}

#[test]
fn a_version_scope_is_that_crate_file_and_keeps_the_index_file() {
    let scope = Cargo.package_scope("foo", Some("1.2.3")).expect("scope");
    assert!(scope.documents.is_empty());
    assert!((scope.owns)("foo/1.2.3"));
    assert!(!(scope.owns)("foo/1.2.30"));
    assert!(Cargo.package_scope("foo", Some("../x")).is_err());
    assert!(Cargo.package_scope("foo", Some("")).is_err());
}
