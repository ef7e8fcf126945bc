//! Routing and content negotiation.

use super::*;
use http::Method;

fn route_with(
    path: &str,
    accept: Option<&str>,
    query: Option<&str>,
) -> Result<Option<Route>, BadRequest> {
    Pypi.route(&Request {
        method: &Method::GET,
        path,
        query,
        accept,
    })
}

fn route(path: &str) -> Result<Option<Route>, BadRequest> {
    route_with(path, None, None)
}

#[test]
fn negotiation() {
    let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
    let uv = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
    for (accept, query, expect) in [
        (Some(pip), None, "json"),
        (Some(uv), None, "json"),
        (Some("text/html"), None, "text-html"),
        (Some("application/vnd.pypi.simple.v1+html"), None, "html"),
        (
            Some("application/vnd.pypi.simple.latest+json"),
            None,
            "json",
        ),
        (None, None, "text-html"),
        (Some("application/xml"), None, "text-html"),
        (Some(pip), Some("format=text/html"), "text-html"),
        (
            Some("text/html"),
            Some("format=application%2Fvnd.pypi.simple.v1%2Bjson"),
            "json",
        ),
        (
            Some("application/vnd.pypi.simple.v1+json;q=0, text/html"),
            None,
            "text-html",
        ),
    ] {
        assert_eq!(negotiate(accept, query), expect, "{accept:?} {query:?}");
    }
}

#[test]
fn names_are_normalised_by_redirect() {
    for (path, to) in [
        ("simple/Django/", "simple/django/"),
        ("simple/zope.interface/", "simple/zope-interface/"),
        ("simple/six", "simple/six/"),
    ] {
        assert_eq!(
            route(path),
            Ok(Some(Route::Redirect { path: to.into() })),
            "{path}"
        );
    }
    match route("simple/six/") {
        Ok(Some(Route::Metadata(m))) => {
            assert_eq!((m.key.as_str(), m.upstream_path.as_str()), ("six", "six/"));
            assert!(
                m.upstream_accept
                    .is_some_and(|a| a.starts_with("application/vnd.pypi.simple.v1+json"))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_and_hostile_paths() {
    match route("files/Six/six-1.17.0-py2.py3-none-any.whl") {
        Ok(Some(Route::Artifact(a))) => {
            assert_eq!(a.key, "six/six-1.17.0-py2.py3-none-any.whl");
            assert_eq!(a.listed_by.document().map(|m| m.key.as_str()), Some("six"));
        }
        other => panic!("{other:?}"),
    }
    for hostile in [
        "simple/../etc/",
        "simple/%2e%2e/",
        "files/six/..%2f..%2fetc%2fpasswd",
        "files/six/a%00b.whl",
        "simple/a%0ab/",
        "files/../six/x.whl",
    ] {
        assert!(route(hostile).is_err(), "{hostile} should be refused");
    }
}

#[test]
fn the_simple_root_lists_held_projects() {
    let json = "application/vnd.pypi.simple.v1+json";
    assert_eq!(
        route_with("simple/", Some(json), None),
        Ok(Some(Route::Held {
            variant: JSON_VARIANT
        }))
    );
    assert_eq!(
        route("simple/"),
        Ok(Some(Route::Held {
            variant: TEXT_HTML_VARIANT
        }))
    );
    assert_eq!(
        route("simple"),
        Ok(Some(Route::Redirect {
            path: "simple/".into()
        }))
    );
    let projects = vec!["a-b".to_owned(), "six".to_owned()];
    let base = Url::parse("http://127.0.0.1:7777/pypi/").expect("base");
    let rendered = Pypi
        .render_held(&projects, JSON_VARIANT, &base)
        .expect("json");
    assert_eq!(rendered.content_type, page::JSON);
    let doc: serde_json::Value = serde_json::from_slice(&rendered.body).expect("JSON");
    assert_eq!(
        doc,
        serde_json::json!({
            "meta": { "api-version": "1.0" },
            "projects": [{ "name": "a-b" }, { "name": "six" }],
        })
    );
    let html = Pypi
        .render_held(&projects, TEXT_HTML_VARIANT, &base)
        .expect("html");
    assert_eq!(html.content_type, "text/html; charset=utf-8");
    let text = String::from_utf8(html.body.to_vec()).expect("utf-8");
    assert!(
        text.contains("<a href=\"a-b/\">a-b</a>") && text.contains("<a href=\"six/\">six</a>"),
        "{text}"
    );
    let hostile = vec!["<script>\"".to_owned()];
    let text = page::root_html(&hostile);
    assert!(!text.contains("<script>"), "{text}");
    // Nothing held: still a valid, empty index.
    let empty = Pypi.render_held(&[], JSON_VARIANT, &base).expect("json");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&empty.body).expect("JSON")["projects"],
        serde_json::json!([])
    );
}

#[test]
fn artifacts_render_and_file_host() {
    let body = std::fs::read(format!(
        "{}/tests/fixtures/six.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let url = Url::parse("https://upstream.invalid/simple/six/").expect("url");
    let doc = MetadataDoc {
        key: "six",
        url: &url,
        body: &body,
        context: None,
    };
    let facts = Pypi.read(&doc).expect("page read");
    let refs = &facts.artifacts;
    let wheel = refs
        .iter()
        .find(|r| r.key == "six/six-1.17.0-py2.py3-none-any.whl")
        .expect("wheel");
    assert_eq!(wheel.url.host_str(), Some("files.upstream.invalid"));
    assert!(wheel.size.is_some());
    let prefixes = &facts.download_prefixes;
    assert_eq!(
        prefixes.iter().map(Url::as_str).collect::<Vec<_>>(),
        ["https://files.upstream.invalid/"]
    );

    let base = Url::parse("http://127.0.0.1:7777/pypi/").expect("base");
    let json = Pypi.render(&doc, "json", &base).expect("json");
    assert_eq!(json.content_type, "application/vnd.pypi.simple.v1+json");
    let rendered: serde_json::Value = serde_json::from_slice(&json.body).expect("parse");
    let upstream: serde_json::Value = serde_json::from_slice(&body).expect("parse");
    let (r, u) = (&rendered["files"][0], &upstream["files"][0]);
    assert_eq!(
        r["url"],
        format!(
            "http://127.0.0.1:7777/pypi/files/six/{}",
            u["filename"].as_str().expect("name")
        )
    );
    for key in ["hashes", "size", "upload-time", "yanked", "requires-python"] {
        assert_eq!(r[key], u[key], "{key} kept");
    }
    assert_eq!(rendered["versions"], upstream["versions"]);
    let html = Pypi.render(&doc, "text-html", &base).expect("html");
    assert_eq!(html.content_type, "text/html; charset=utf-8");
    let text = String::from_utf8(html.body.to_vec()).expect("utf-8");
    assert!(
        text.contains("six-1.17.0-py2.py3-none-any.whl#sha256="),
        "hash fragments kept"
    );
    let refs = Pypi.read(&doc).expect("page read").artifacts;
    let first = refs
        .iter()
        .find(|r| r.key.ends_with(".whl") || r.key.ends_with(".tar.gz"))
        .expect("a file");
    assert!(first.version.is_some(), "{first:?}");
    let refused = first.key.clone();
    let kept = Pypi
        .without(&doc, &|key| key == refused)
        .expect("filter")
        .expect("changed");
    let kept: serde_json::Value = serde_json::from_slice(&kept).expect("JSON");
    let files = kept["files"].as_array().expect("files");
    let before = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["files"]
        .as_array()
        .expect("files")
        .len();
    assert_eq!(files.len(), before - 1);
    assert!(
        files
            .iter()
            .all(|f| artifact_key("six", f["filename"].as_str().expect("name")) != refused)
    );
    assert_eq!(Pypi.without(&doc, &|_| false).expect("filter"), None);
}

#[test]
fn provenance_is_a_document_here_and_pages_point_at_it() {
    match route("integrity/Six/1.17.0/six-1.17.0-py2.py3-none-any.whl/provenance") {
        Ok(Some(Route::Metadata(m))) => {
            assert_eq!(
                m.key,
                "integrity/six/1.17.0/six-1.17.0-py2.py3-none-any.whl"
            );
            assert_eq!(
                m.upstream_path,
                "/integrity/six/1.17.0/six-1.17.0-py2.py3-none-any.whl/provenance"
            );
            assert_eq!(m.upstream_accept, Some(INTEGRITY_JSON));
            assert_eq!(Pypi.routing_name(&m.key), "six");
        }
        other => panic!("{other:?}"),
    }
    for hostile in [
        "integrity/six/1.0/../../etc/provenance",
        "integrity/six/1.0/a%2fb.whl/provenance",
        "integrity/six/..%2f..%2f/x.whl/provenance",
        "integrity/-bad-/1.0/x.whl/provenance",
    ] {
        assert!(
            !matches!(route(hostile), Ok(Some(Route::Metadata(_)))),
            "{hostile}"
        );
    }
    assert_eq!(route("integrity/six/1.0/x.whl"), Ok(None));

    let url = Url::parse("https://upstream.invalid/simple/six/").expect("url");
    let body = br#"{"meta":{"api-version":"1.3"},"name":"six","versions":["1.17.0"],"files":[
        {"filename":"six-1.17.0-py2.py3-none-any.whl","url":"https://files.upstream.invalid/p/six-1.17.0-py2.py3-none-any.whl",
         "hashes":{"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
         "provenance":"https://upstream.invalid/integrity/six/1.17.0/six-1.17.0-py2.py3-none-any.whl/provenance"},
        {"filename":"six-1.17.0.tar.gz","url":"https://files.upstream.invalid/p/six-1.17.0.tar.gz",
         "hashes":{"sha256":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
         "provenance":"https://elsewhere.invalid/attestations/7"}]}"#;
    let doc = MetadataDoc {
        key: "six",
        url: &url,
        body,
        context: None,
    };
    let prefixes = Pypi.read(&doc).expect("read").download_prefixes;
    assert!(
        prefixes
            .iter()
            .any(|p| p.as_str() == "https://upstream.invalid/integrity/"),
        "{prefixes:?}"
    );
    let base = Url::parse("http://127.0.0.1:7777/pypi/").expect("base");
    let json: serde_json::Value =
        serde_json::from_slice(&Pypi.render(&doc, "json", &base).expect("json").body)
            .expect("JSON");
    assert_eq!(
        json["files"][0]["provenance"],
        "http://127.0.0.1:7777/pypi/integrity/six/1.17.0/six-1.17.0-py2.py3-none-any.whl/provenance"
    );
    // One this node could not serve is not handed on.
    assert!(json["files"][1].get("provenance").is_none(), "{json}");
    let html = Pypi.render(&doc, "html", &base).expect("html");
    let text = String::from_utf8(html.body.to_vec()).expect("utf-8");
    assert!(
        text.contains("data-provenance=\"http://127.0.0.1:7777/pypi/integrity/six/1.17.0/"),
        "{text}"
    );

    // The document itself: as sent, a JSON object, bounded.
    let purl =
        Url::parse("https://upstream.invalid/integrity/six/1.17.0/x.whl/provenance").expect("url");
    let sent = br#"{"version":1,"attestation_bundles":[]}"#;
    let doc = MetadataDoc {
        key: "integrity/six/1.17.0/x.whl",
        url: &purl,
        body: sent,
        context: None,
    };
    assert!(Pypi.read(&doc).expect("read").artifacts.is_empty());
    let rendered = Pypi.render(&doc, "provenance", &base).expect("render");
    assert_eq!(
        (&rendered.body[..], rendered.content_type),
        (&sent[..], INTEGRITY_JSON)
    );
    for bad in [&b"[1]"[..], b"nope"] {
        let doc = MetadataDoc { body: bad, ..doc };
        assert!(Pypi.read(&doc).is_err());
    }
    // Held lists name projects only.
    let held = Pypi
        .render_held(&["six".to_owned(), doc.key.to_owned()], "json", &base)
        .expect("held");
    let held: serde_json::Value = serde_json::from_slice(&held.body).expect("JSON");
    assert_eq!(held["projects"], serde_json::json!([{ "name": "six" }]));
}

#[test]
fn keys_route_back_to_themselves() {
    let key_of = |route: Option<Route>| match route? {
        Route::Metadata(m) => Some(m.key),
        Route::Artifact(a) => Some(a.key),
        _ => None,
    };
    for path in [
        "simple/requests/",
        "files/requests/requests-2.32.3-py3-none-any.whl",
        "files/requests/requests-2.32.3-py3-none-any.whl.metadata",
        "files/requests/requests-2.32.3.tar.gz",
        "integrity/requests/2.32.3/requests-2.32.3.tar.gz/provenance",
    ] {
        let key = key_of(route(path).expect("routes")).expect("a key");
        let again = key_of(Pypi.key_route(&key).expect("key routes")).expect("a key");
        assert_eq!(again, key, "{path}");
    }
    for hostile in ["../../etc/passwd", "a\0b", "file:///etc/passwd", "Requests"] {
        let back = Pypi
            .key_route(hostile)
            .ok()
            .flatten()
            .and_then(|r| key_of(Some(r)));
        assert_ne!(back.as_deref(), Some(hostile), "{hostile:?}");
    }
}

#[test]
fn a_project_scope_is_its_page_and_every_file_under_it() {
    let scope = Pypi.package_scope("LiteLLM", None).expect("scope");
    assert_eq!(scope.documents, ["litellm"]);
    assert_eq!(scope.listed_by, ["litellm"]);
    assert_eq!(scope.artifact_prefixes, ["litellm/"]);
    assert!((scope.owns)("litellm/litellm-1.0.0.tar.gz"));
}

#[test]
fn a_version_scope_is_the_files_naming_that_version() {
    let scope = Pypi.package_scope("Foo_Bar", Some("1.2.0")).expect("scope");
    assert!(scope.documents.is_empty(), "the page stays");
    assert_eq!(scope.artifact_prefixes, ["foo-bar/"]);
    for owned in [
        "foo-bar/foo_bar-1.2.0-py3-none-any.whl",
        "foo-bar/foo_bar-1.2.0-py3-none-any.whl.metadata",
        "foo-bar/foo-bar-1.2.0.tar.gz",
        "foo-bar/Foo.Bar-1.2.0.zip",
        "foo-bar/foo_bar-1.2.0-1-cp312-cp312-manylinux_2_17_x86_64.whl",
    ] {
        assert!((scope.owns)(owned), "{owned}");
    }
    for other in [
        "foo-bar/foo_bar-1.2.01-py3-none-any.whl",
        "foo-bar/foo-bar-1.2.0rc1.tar.gz",
        "foo-bar/foo_bar-1.3.0-py3-none-any.whl",
        "foo-bar/other-1.2.0.tar.gz",
        "foo-bar/README",
        "foo-barx/foo_bar-1.2.0-py3-none-any.whl",
    ] {
        assert!(!(scope.owns)(other), "{other}");
    }
}

#[test]
fn project_scopes_refuse_names_and_versions_pypi_cannot_have() {
    for (name, version) in [
        ("", None),
        ("../x", None),
        ("a b", None),
        ("litellm", Some("")),
        ("litellm", Some("1/2")),
    ] {
        assert!(
            Pypi.package_scope(name, version).is_err(),
            "{name}@{version:?}"
        );
    }
}
