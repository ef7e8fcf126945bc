//! Packument conformance on recorded upstream documents (host replaced by `upstream.invalid`).

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn doc_url(path: &str) -> Url {
    Url::parse(&format!("https://upstream.invalid/{path}")).expect("url")
}

fn base() -> Url {
    Url::parse("http://127.0.0.1:7777/npm/").expect("base")
}

fn value(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("rendered JSON parses")
}

#[test]
fn artifacts_of_a_recorded_packument() {
    let name = PackageName::parse("is-number").expect("name");
    let refs = artifacts(&name, &doc_url("is-number"), &fixture("is-number.json")).expect("refs");
    let latest = refs
        .iter()
        .find(|r| r.key == "is-number/-/is-number-7.0.0.tgz")
        .expect("7.0.0 listed");
    assert_eq!(latest.digest.algorithm(), Algorithm::Sha512);
    assert_eq!(
        latest.url.as_str(),
        "https://upstream.invalid/is-number/-/is-number-7.0.0.tgz"
    );
    // 0.1.0 predates sha512 integrity in some registries; whatever it has must be usable.
    assert!(
        refs.iter()
            .all(|r| r.url.host_str() == Some("upstream.invalid"))
    );
}

#[test]
fn full_rendering_keeps_everything_but_tarball_urls() {
    let name = PackageName::parse("is-number").expect("name");
    let body = fixture("is-number.json");
    let rendered = render(&name, &doc_url("is-number"), &body, false, &base()).expect("render");
    let (mut upstream, rendered) = (value(&body), value(&rendered));
    for (_, v) in upstream["versions"].as_object_mut().expect("versions") {
        let file = v["dist"]["tarball"]
            .as_str()
            .and_then(|t| t.rsplit('/').next())
            .expect("tarball")
            .to_owned();
        v["dist"]["tarball"] = format!("http://127.0.0.1:7777/npm/is-number/-/{file}").into();
    }
    assert_eq!(rendered, upstream);
}

#[test]
fn abbreviated_rendering_keeps_install_fields_only() {
    let name = PackageName::parse("@types/ms").expect("name");
    let body = fixture("@types__ms.json");
    let rendered =
        value(&render(&name, &doc_url("@types%2fms"), &body, true, &base()).expect("render"));
    let top: Vec<&String> = rendered.as_object().expect("object").keys().collect();
    for key in &top {
        assert!(
            ["name", "dist-tags", "versions", "modified"].contains(&key.as_str()),
            "unexpected top-level key {key}"
        );
    }
    let upstream = value(&body);
    let latest = upstream["dist-tags"]["latest"].as_str().expect("latest");
    let version = &rendered["versions"][latest];
    assert_eq!(version["name"], "@types/ms");
    assert_eq!(
        version["dist"]["integrity"],
        upstream["versions"][latest]["dist"]["integrity"]
    );
    assert_eq!(
        version["dist"]["tarball"],
        format!("http://127.0.0.1:7777/npm/@types/ms/-/ms-{latest}.tgz")
    );
    assert!(version.get("readme").is_none() && version.get("description").is_none());
}

#[test]
fn install_scripts_are_flagged_in_the_abbreviated_form() {
    let body = br#"{"name":"x","versions":{"1.0.0":{"name":"x","version":"1.0.0",
        "scripts":{"postinstall":"node build.js","test":"t"},
        "dist":{"tarball":"https://upstream.invalid/x/-/x-1.0.0.tgz","shasum":"0000000000000000000000000000000000000000"}}}}"#;
    let name = PackageName::parse("x").expect("name");
    let rendered = value(&render(&name, &doc_url("x"), body, true, &base()).expect("render"));
    assert_eq!(rendered["versions"]["1.0.0"]["hasInstallScript"], true);
    assert!(rendered["versions"]["1.0.0"].get("scripts").is_none());
}

#[test]
fn malformed_packuments_name_the_cause() {
    let name = PackageName::parse("x").expect("name");
    for (body, expect) in [
        (&b"<html>oops</html>"[..], "not valid JSON"),
        (br#"{"name":"y","versions":{}}"#, "got one for"),
        (br#"{"name":"x","versions":{"1.0.0":{"dist":{"tarball":"https://upstream.invalid/x/-/x-1.0.0.tgz"}}}}"#, "no usable integrity"),
        (br#"{"name":"x","versions":{"1.0.0":{"dist":{"integrity":"sha512-AAAA","tarball":"https://upstream.invalid/x/-/..%2f..%2fetc.tgz"}}}}"#, "integrity"),
    ] {
        let err = artifacts(&name, &doc_url("x"), body).expect_err("malformed");
        assert!(err.0.contains(expect), "{}: {err}", String::from_utf8_lossy(body));
    }
}

#[test]
fn digests_prefer_sha512() {
    let sha512 = Digest::of(Algorithm::Sha512, b"t");
    let sri = format!(
        "sha1-{} sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Digest::of(Algorithm::Sha1, b"t").bytes()),
        base64::engine::general_purpose::STANDARD.encode(sha512.bytes())
    );
    assert_eq!(digest_of(Some(&sri), None), Some(sha512));
    let sha1 = Digest::of(Algorithm::Sha1, b"t");
    assert_eq!(
        digest_of(None, Some(&hex::encode(sha1.bytes()))),
        Some(sha1)
    );
    assert_eq!(digest_of(Some("md5-xyz"), None), None);
}

fn manifest(part: &str) -> Option<serde_json::Value> {
    let name = PackageName::parse("is-number").expect("name");
    let body = fixture("is-number.json");
    version_manifest(&name, &doc_url("is-number"), &body, part, &base())
        .expect("packument reads")
        .map(|m| value(&m))
}

#[test]
fn a_version_manifest_is_the_full_version_with_its_tarball_here() {
    let upstream = value(&fixture("is-number.json"));
    let mut expected = upstream["versions"]["7.0.0"].clone();
    expected["dist"]["tarball"] =
        "http://127.0.0.1:7777/npm/is-number/-/is-number-7.0.0.tgz".into();
    assert_eq!(manifest("7.0.0"), Some(expected.clone()));
    // A dist-tag names the version it points at.
    assert_eq!(upstream["dist-tags"]["latest"], "7.0.0");
    assert_eq!(manifest("latest"), Some(expected));
    let old = manifest("2.0.0").expect("2.0.0 is published");
    assert_eq!(old["version"], "2.0.0");
    // Unknown versions and tags are absent, not errors.
    assert_eq!(manifest("99.0.0"), None);
    assert_eq!(manifest("no-such-tag"), None);
}

#[test]
fn a_version_manifest_of_a_scoped_package_and_odd_documents() {
    let name = PackageName::parse("@types/ms").expect("name");
    let body = fixture("@types__ms.json");
    let doc = value(&body);
    let latest = doc["dist-tags"]["latest"]
        .as_str()
        .expect("latest")
        .to_owned();
    let got = version_manifest(&name, &doc_url("@types%2fms"), &body, "latest", &base())
        .expect("reads")
        .map(|m| value(&m))
        .expect("latest exists");
    assert_eq!(got["version"], latest.as_str());
    assert_eq!(
        got["dist"]["tarball"],
        format!("http://127.0.0.1:7777/npm/@types/ms/-/ms-{latest}.tgz")
    );
    // No versions, a tag that is not a string, a tag naming a missing version: nothing.
    for odd in [
        r#"{"name":"is-number"}"#,
        r#"{"name":"is-number","dist-tags":{"latest":7},"versions":{}}"#,
        r#"{"name":"is-number","dist-tags":{"latest":"1.0.0"},"versions":{}}"#,
    ] {
        let name = PackageName::parse("is-number").expect("name");
        let got = version_manifest(
            &name,
            &doc_url("is-number"),
            odd.as_bytes(),
            "latest",
            &base(),
        );
        assert_eq!(got, Ok(None), "{odd}");
    }
    let name = PackageName::parse("is-number").expect("name");
    let broken = br#"{"versions":{"1.0.0":{"dist":{"tarball":5}}}}"#;
    let err = version_manifest(&name, &doc_url("is-number"), broken, "1.0.0", &base())
        .expect_err("a non-string tarball is an error");
    assert!(err.0.contains("tarball"), "{}", err.0);
}

#[test]
fn a_policy_leaves_out_versions_and_latest_moves_to_the_highest_left() {
    let name = PackageName::parse("is-number").expect("name");
    let body = fixture("is-number.json");
    let url = doc_url("is-number");
    let refs = artifacts(&name, &url, &body).expect("refs");
    let seven = refs
        .iter()
        .find(|r| r.key == "is-number/-/is-number-7.0.0.tgz")
        .expect("7.0.0 listed");
    assert_eq!(seven.version.as_deref(), Some("7.0.0"));
    assert!(seven.published.is_some(), "the packument's time is read");
    let refused = |key: &str| key == "is-number/-/is-number-7.0.0.tgz";
    let kept = value(
        &without(&name, &url, &body, &refused)
            .expect("filter")
            .expect("changed"),
    );
    assert!(kept["versions"].get("7.0.0").is_none());
    assert!(kept["time"].get("7.0.0").is_none());
    assert_eq!(kept["dist-tags"]["latest"], "6.0.0");
    let original = value(&body);
    assert_eq!(
        kept["versions"]["6.0.0"], original["versions"]["6.0.0"],
        "what is kept is kept as upstream sent it"
    );
    assert_eq!(
        without(&name, &url, &body, &|_| false).expect("filter"),
        None
    );
    assert_eq!(
        version_order("1.10.0", "1.9.0"),
        std::cmp::Ordering::Greater
    );
    assert_eq!(
        version_order("2.0.0-rc.1", "1.9.0"),
        std::cmp::Ordering::Greater
    );
    assert_eq!(
        version_order("2.0.0-rc.1", "2.0.0"),
        std::cmp::Ordering::Less
    );
}

#[test]
fn signatures_and_attestations_are_kept_with_the_attestations_fetched_here() {
    let name = PackageName::parse("@corp/core").expect("name");
    let body = br#"{"name":"@corp/core","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{
        "name":"@corp/core","version":"1.0.0","dist":{
        "integrity":"sha512-AAAA","tarball":"https://upstream.invalid/@corp/core/-/core-1.0.0.tgz",
        "signatures":[{"keyid":"SHA256:k1","sig":"MEUCIQ+/="}],
        "attestations":{"url":"https://upstream.invalid/-/npm/v1/attestations/@corp%2fcore@1.0.0",
          "provenance":{"predicateType":"https://slsa.dev/provenance/v1"}}}}},
        "time":{"1.0.0":"2026-01-01T00:00:00.000Z"}}"#;
    for abbreviated in [false, true] {
        let rendered = value(
            &render(&name, &doc_url("@corp%2fcore"), body, abbreviated, &base()).expect("render"),
        );
        let dist = &rendered["versions"]["1.0.0"]["dist"];
        assert_eq!(
            dist["signatures"],
            serde_json::json!([{"keyid":"SHA256:k1","sig":"MEUCIQ+/="}])
        );
        assert_eq!(
            dist["attestations"],
            serde_json::json!({
                "url": "http://127.0.0.1:7777/npm/-/npm/v1/attestations/@corp%2fcore@1.0.0",
                "provenance": {"predicateType": "https://slsa.dev/provenance/v1"}
            }),
            "abbreviated: {abbreviated}"
        );
    }
    // A url that is not an attestations URL, or odd shapes, pass as sent.
    for odd in [
        r#"{"url":"https://elsewhere.invalid/provenance/1"}"#,
        r#"{"url":"https://upstream.invalid/-/npm/v1/attestations/x@1?y"}"#,
        r#"{"url":7}"#,
        r#""just a string""#,
    ] {
        let body = format!(
            r#"{{"name":"x","versions":{{"1.0.0":{{"dist":{{"tarball":"https://upstream.invalid/x/-/x-1.0.0.tgz","attestations":{odd}}}}}}}}}"#
        );
        let name = PackageName::parse("x").expect("name");
        let rendered =
            value(&render(&name, &doc_url("x"), body.as_bytes(), false, &base()).expect("render"));
        assert_eq!(
            rendered["versions"]["1.0.0"]["dist"]["attestations"],
            value(odd.as_bytes()),
            "{odd}"
        );
    }
}
