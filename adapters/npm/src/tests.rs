//! Routing of request paths.

use super::*;
use http::Method;

fn route(path: &str, accept: Option<&str>) -> Result<Option<Route>, BadRequest> {
    Npm.route(&Request {
        method: &Method::GET,
        path,
        query: None,
        accept,
    })
}

fn metadata(path: &str, accept: Option<&str>) -> (String, String, &'static str) {
    match route(path, accept) {
        Ok(Some(Route::Metadata(m))) => (m.key, m.upstream_path, m.variant),
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn scoped_names_map_to_one_key() {
    for path in ["@types%2fnode", "@types%2Fnode", "@types/node"] {
        assert_eq!(
            metadata(path, None),
            ("@types/node".into(), "@types%2fnode".into(), "full"),
            "{path}"
        );
    }
}

#[test]
fn accept_negotiation() {
    let npm = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";
    assert_eq!(metadata("lodash", Some(npm)).2, "abbreviated");
    assert_eq!(
        metadata("lodash", Some("application/json; q=1.0, */*")).2,
        "full"
    );
    assert_eq!(metadata("lodash", Some("application/json")).2, "full");
    assert_eq!(metadata("lodash", None).2, "full");
    assert_eq!(
        metadata(
            "lodash",
            Some("application/vnd.npm.install-v1+json;q=0, */*")
        )
        .2,
        "full"
    );
}

#[test]
fn tarballs_in_every_spelling() {
    for path in [
        "@babel/core/-/core-7.0.0.tgz",
        "@babel%2fcore/-/core-7.0.0.tgz",
        "@babel%2Fcore/-/core-7.0.0.tgz",
    ] {
        match route(path, None) {
            Ok(Some(Route::Artifact(a))) => {
                assert_eq!(a.key, "@babel/core/-/core-7.0.0.tgz");
                assert_eq!(
                    a.listed_by.document().map(|m| m.key.as_str()),
                    Some("@babel/core")
                );
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn hostile_paths_are_bad_requests() {
    for path in [
        "..",
        "%2e%2e",
        "a%00b",
        "../etc/passwd",
        "lodash/-/..%2f..%2fpasswd.tgz",
        "lodash/-/lodash.tar",
        "%2e%2e/-/x.tgz",
        &"a".repeat(215),
    ] {
        assert!(route(path, None).is_err(), "{path} should be refused");
    }
}

#[test]
fn api_routes() {
    assert!(matches!(
        route("-/ping", None),
        Ok(Some(Route::Local { .. }))
    ));
    assert!(matches!(
        route("-/npm/v1/security/advisories/bulk", None),
        Ok(Some(Route::Passthrough {
            method: Method::POST,
            ..
        }))
    ));
    assert_eq!(route("-/nothing-here", None), Ok(None));
    match route("-/package/@types%2fnode/dist-tags", None) {
        Ok(Some(Route::Metadata(m))) => {
            assert_eq!((m.key.as_str(), m.variant), ("@types/node", "dist-tags"))
        }
        other => panic!("dist-tags: {other:?}"),
    }
}

fn part(path: &str) -> (String, &'static str, String) {
    match route(path, Some(ABBREVIATED)) {
        Ok(Some(Route::Part { document, part })) => (document.key, document.variant, part),
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn versions_and_dist_tags_are_parts_of_the_packument() {
    for (path, key, wanted) in [
        ("lodash/4.17.21", "lodash", "4.17.21"),
        ("lodash/latest", "lodash", "latest"),
        ("pnpm/9.15.4", "pnpm", "9.15.4"),
        ("@types/node/20.0.0", "@types/node", "20.0.0"),
        ("@types%2fnode/20.0.0", "@types/node", "20.0.0"),
        ("@types%2Fnode/next", "@types/node", "next"),
        (
            "@yarnpkg/cli-dist/4.0.0-rc.1+build.5",
            "@yarnpkg/cli-dist",
            "4.0.0-rc.1+build.5",
        ),
    ] {
        // The same document key as the packument: one upstream fetch, one freshness.
        assert_eq!(
            part(path),
            (key.into(), VERSION_VARIANT, wanted.into()),
            "{path}"
        );
    }
    // Deeper paths are not npm's; hostile parts are refused before any fetch.
    assert_eq!(route("lodash/4.17.21/extra", None), Ok(None));
    assert_eq!(route("@types/node/20.0.0/x", None), Ok(None));
    for hostile in [
        "lodash/..",
        "lodash/.",
        "lodash/%2e%2e",
        "lodash/1.0.0%00",
        "lodash/1.0.0%20",
        "lodash/a\\b",
        "lodash/%22",
        "..%2f..%2fetc/passwd",
        &format!("lodash/{}", "1".repeat(MAX_PART + 1)),
    ] {
        assert!(route(hostile, None).is_err(), "{hostile} should be refused");
    }
    assert!(route(&format!("lodash/{}", "1".repeat(MAX_PART)), None).is_ok());
}

#[test]
fn passthrough_names_exact_endpoints_and_methods() {
    for (path, method) in [
        ("-/npm/v1/security/advisories/bulk", Method::POST),
        ("-/npm/v1/security/audits/quick", Method::POST),
        ("-/npm/v1/security/audits", Method::POST),
        ("-/v1/search", Method::GET),
    ] {
        match route(path, None) {
            Ok(Some(Route::Passthrough {
                method: m,
                upstream_path,
            })) => assert_eq!((m, upstream_path.as_str()), (method, path)),
            other => panic!("{path}: {other:?}"),
        }
    }
    for path in [
        "-/npm/v1/security/../../../../lodash",
        "-/npm/v1/security/%2e%2e/%2e%2e/lodash",
        "-/npm/v1/security/%2E%2E/lodash",
        "-/npm/v1/security/advisories%2fbulk",
        "-/npm/v1/security/advisories/bulk/..",
        "-/npm/v1/security/anything",
        "-/npm/v1/keys/extra",
        "-/v1/search/../../lodash",
        "-/npm/v1/attestations/lodash",
        "-/npm/v1/attestations/..@1.0.0",
        "-/npm/v1/attestations/lodash@1.0.0%2f..%2f..",
    ] {
        assert!(
            !matches!(
                route(path, None),
                Ok(Some(Route::Passthrough { .. } | Route::Metadata(_)))
            ),
            "{path} should not be asked of upstream"
        );
    }
}

#[test]
fn keys_and_attestations_are_documents_with_the_name_checked_and_its_slash_literal() {
    for (asked, key, sent) in [
        ("-/npm/v1/keys", "-/npm/v1/keys", "-/npm/v1/keys"),
        (
            "-/npm/v1/attestations/lodash@4.17.21",
            "-/npm/v1/attestations/lodash@4.17.21",
            "-/npm/v1/attestations/lodash@4.17.21",
        ),
        (
            "-/npm/v1/attestations/@sigstore%2fcore@1.0.0",
            "-/npm/v1/attestations/@sigstore/core@1.0.0",
            "-/npm/v1/attestations/@sigstore/core@1.0.0",
        ),
        (
            "-/npm/v1/attestations/@sigstore/core@1.0.0",
            "-/npm/v1/attestations/@sigstore/core@1.0.0",
            "-/npm/v1/attestations/@sigstore/core@1.0.0",
        ),
    ] {
        match route(asked, None) {
            Ok(Some(Route::Metadata(m))) => assert_eq!(
                (m.key.as_str(), m.upstream_path.as_str()),
                (key, sent),
                "{asked}"
            ),
            other => panic!("{asked}: {other:?}"),
        }
    }
    // An attestations document routes as its package, the keys as no package.
    let npm = Npm;
    assert_eq!(
        npm.routing_name("-/npm/v1/attestations/@corp/core@1.0.0"),
        "@corp/core"
    );
    assert_eq!(
        npm.routing_name("-/npm/v1/attestations/left-pad@1.3.0"),
        "left-pad"
    );
    assert_eq!(npm.routing_name("@corp/core"), "@corp/core");
    assert_eq!(npm.routing_name("-/npm/v1/keys"), "-/npm/v1/keys");
}

#[test]
fn provenance_documents_render_as_sent_and_must_be_json_objects() {
    let url = Url::parse("http://upstream.test/-/npm/v1/keys").expect("ok");
    let base = Url::parse("http://cairn.test/npm/").expect("ok");
    let body = br#"{"keys":[{"keyid":"SHA256:x","key":"AAAA","expires":null}]}"#;
    let doc = MetadataDoc {
        key: "-/npm/v1/keys",
        url: &url,
        body,
        context: None,
    };
    assert!(Npm.read(&doc).expect("ok").artifacts.is_empty());
    assert!(Npm.without(&doc, &|_| true).expect("ok").is_none());
    let rendered = Npm.render(&doc, "as-sent", &base).expect("ok");
    assert_eq!(&rendered.body[..], &body[..]);
    for bad in [&b"[]"[..], b"not json", b"\"keys\""] {
        let doc = MetadataDoc { body: bad, ..doc };
        let err = Npm.read(&doc).expect_err("refused").to_string();
        assert!(err.contains("-/npm/v1/keys"), "{err}");
    }
    let huge = vec![b' '; (4 << 20) + 1];
    let doc = MetadataDoc { body: &huge, ..doc };
    assert!(
        Npm.read(&doc)
            .expect_err("refused")
            .to_string()
            .contains("limit")
    );
}

#[test]
fn keys_route_back_to_themselves() {
    let key_of = |route: Option<Route>| match route? {
        Route::Metadata(m) => Some(m.key),
        Route::Artifact(a) => Some(a.key),
        _ => None,
    };
    for path in [
        "lodash",
        "@types%2fnode",
        "@types/node",
        "lodash/-/lodash-4.17.21.tgz",
        "@types/node/-/node-20.0.0.tgz",
    ] {
        let key = key_of(route(path, None).expect("routes")).expect("a key");
        let again = key_of(Npm.key_route(&key).expect("key routes")).expect("a key");
        assert_eq!(again, key, "{path}");
    }
    for hostile in [
        "../../etc/passwd",
        "a\0b",
        "file:///etc/passwd",
        "lodash/-/%2e%2e",
    ] {
        let back = Npm
            .key_route(hostile)
            .ok()
            .flatten()
            .and_then(|r| key_of(Some(r)));
        assert_ne!(back.as_deref(), Some(hostile), "{hostile:?}");
    }
}

#[test]
fn dist_tags_without_a_name_is_refused() {
    for path in ["-/package/dist-tags", "-/package//dist-tags"] {
        assert!(route(path, None).is_err(), "{path} should be refused");
    }
    let (key, _, _) = metadata("-/package/@s%2Fb/dist-tags", None);
    assert_eq!(key, "@s/b");
}

fn with_method(method: Method, path: &str) -> Result<Option<Route>, BadRequest> {
    Npm.route(&Request {
        method: &method,
        path,
        query: None,
        accept: None,
    })
}

fn refusal(method: Method, path: &str) -> (StatusCode, String) {
    match with_method(method.clone(), path) {
        Ok(Some(Route::Refused { status, message })) => (status, message),
        other => panic!("{method} {path}: {other:?}"),
    }
}

#[test]
fn writes_are_refused_as_a_read_only_mirror() {
    for (method, path) in [
        (Method::PUT, "lodash"),       // npm publish, deprecate, owner
        (Method::PUT, "@scope%2fpkg"), // scoped publish
        (Method::DELETE, "lodash/-/lodash-1.0.0.tgz/-rev/3-abc"), // unpublish
        (Method::DELETE, "lodash/-rev/3-abc"),
        (Method::PUT, "-/package/lodash/dist-tags/next"), // npm dist-tag add
        (Method::DELETE, "-/package/lodash/dist-tags/next"),
        (Method::POST, "-/package/lodash/access"),
        (Method::POST, "lodash"),
        (Method::PATCH, "lodash"),
    ] {
        let (status, message) = refusal(method.clone(), path);
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            message.contains("read-only Cairn mirror of {upstream}")
                && message.contains("npm publish --registry {upstream}")
                && message.contains(&format!("{method} /{path}")),
            "{method} {path}: {message}"
        );
    }
    // The audit passthroughs keep their POST; reads stay reads.
    assert!(matches!(
        with_method(Method::POST, "-/npm/v1/security/audits/quick"),
        Ok(Some(Route::Passthrough { .. }))
    ));
    assert!(matches!(
        with_method(Method::HEAD, "lodash"),
        Ok(Some(Route::Metadata(_)))
    ));
    // A POST to a GET-only passthrough is a write like any other.
    assert_eq!(
        refusal(Method::POST, "-/npm/v1/keys").0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn accounts_do_not_exist_on_a_mirror() {
    for (method, path, status) in [
        (Method::GET, "-/whoami", StatusCode::NOT_FOUND),
        (Method::GET, "-/npm/v1/user", StatusCode::NOT_FOUND),
        (Method::GET, "-/npm/v1/tokens", StatusCode::NOT_FOUND),
        (
            Method::GET,
            "-/user/org.couchdb.user:bob",
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, "-/org/acme/user", StatusCode::NOT_FOUND),
        (Method::POST, "-/v1/login", StatusCode::METHOD_NOT_ALLOWED),
        (
            Method::PUT,
            "-/user/org.couchdb.user:bob",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::DELETE,
            "-/npm/v1/tokens/token/abc",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::PUT,
            "-/team/acme/devs/user",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let (got, message) = refusal(method.clone(), path);
        assert_eq!(got, status, "{method} {path}");
        assert!(
            message.contains("read-only Cairn mirror") && message.contains("has no accounts"),
            "{method} {path}: {message}"
        );
    }
}

#[test]
fn a_package_scope_is_its_packument_and_every_tarball_under_it() {
    let scope = Npm.package_scope("@types/node", None).expect("scope");
    assert_eq!(scope.documents, ["@types/node"]);
    assert_eq!(scope.listed_by, ["@types/node"]);
    assert_eq!(scope.artifact_prefixes, ["@types/node/-/"]);
    assert!((scope.owns)("@types/node/-/node-20.1.0.tgz"));
}

#[test]
fn a_version_scope_is_that_versions_tarball_and_keeps_the_packument() {
    let scope = Npm.package_scope("left-pad", Some("1.3.0")).expect("scope");
    assert!(scope.documents.is_empty(), "the packument stays");
    assert_eq!(scope.listed_by, ["left-pad"]);
    assert!((scope.owns)("left-pad/-/left-pad-1.3.0.tgz"));
    assert!(!(scope.owns)("left-pad/-/left-pad-1.3.1.tgz"));
    assert!(!(scope.owns)("left-pad/-/left-pad-1.3.0-beta.tgz"));
    let scoped = Npm
        .package_scope("@scope/pkg", Some("2.0.0"))
        .expect("scope");
    assert!((scoped.owns)("@scope/pkg/-/pkg-2.0.0.tgz"));
}

#[test]
fn package_scopes_refuse_names_and_versions_npm_cannot_have() {
    for (name, version) in [
        ("", None),
        ("../etc", None),
        ("@scope", None),
        ("left-pad", Some("")),
        ("left-pad", Some("1.0/../../x")),
        ("left-pad", Some("1.0 beta")),
    ] {
        let err = Npm
            .package_scope(name, version)
            .expect_err(&format!("{name}@{version:?}"));
        assert!(!err.0.is_empty());
    }
}
