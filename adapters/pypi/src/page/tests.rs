//! Pages recorded from upstream (hosts replaced by `upstream.invalid`), in both forms.

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn url() -> Url {
    Url::parse("https://upstream.invalid/simple/six/").expect("url")
}

#[test]
fn json_and_html_pages_read_the_same_files() {
    let json = parse("six", &url(), &fixture("six.json")).expect("json");
    let html = parse("six", &url(), &fixture("six.html")).expect("html");
    let names = |p: &Value| {
        let mut v: Vec<String> = files(p)
            .map(|f| format!("{} {} {}", f["filename"], f["url"], f["hashes"]["sha256"]))
            .collect();
        v.sort();
        v
    };
    assert!(!names(&json).is_empty());
    assert!(
        names(&json) == names(&html),
        "the two forms list different files"
    );
}

#[test]
fn html_round_trips_attributes() {
    let page = serde_json::json!({
        "name": "demo",
        "files": [{
            "filename": "demo-1.0-py3-none-any.whl",
            "url": "https://files.upstream.invalid/demo-1.0-py3-none-any.whl",
            "hashes": {"sha256": AB},
            "requires-python": ">=3.8,<4",
            "yanked": "broken build",
            "core-metadata": {"sha256": CD}
        }]
    });
    let html = to_html(&page);
    assert!(
        html.contains("data-requires-python=\"&gt;=3.8,&lt;4\""),
        "{html}"
    );
    assert!(html.contains(&format!(
        "href=\"https://files.upstream.invalid/demo-1.0-py3-none-any.whl#sha256={AB}\""
    )));
    let back = parse("demo", &url(), html.as_bytes()).expect("parse");
    let file = files(&back).next().expect("file");
    assert_eq!(file["requires-python"], ">=3.8,<4");
    assert_eq!(file["yanked"], "broken build");
    assert_eq!(file["core-metadata"]["sha256"], CD);
}

const AB: &str = "abababababababababababababababababababababababababababababababab";
const CD: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

#[test]
fn html_escapes_hostile_values_and_drops_non_hex_digests() {
    let attack = "\"><script>alert(1)</script>";
    let page = serde_json::json!({
        "name": format!("demo{attack}"),
        "files": [
            {
                "filename": format!("demo-1.0.tar.gz{attack}"),
                "url": format!("https://files.upstream.invalid/demo-1.0.tar.gz?x={attack}#frag{attack}"),
                "hashes": {"sha256": format!("{AB}{attack}")},
                "requires-python": attack,
                "yanked": attack,
                "core-metadata": {"sha256": attack}
            },
            {
                "filename": "demo-1.0-py3-none-any.whl",
                "url": "https://files.upstream.invalid/demo-1.0-py3-none-any.whl",
                "hashes": {"sha256": AB.to_uppercase()},
                "dist-info-metadata": {"sha256": format!("{CD}\" onmouseover=\"x")}
            }
        ]
    });
    let html = to_html(&page);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("\"><"), "{html}");
    assert!(!html.contains("onmouseover=\""), "{html}");
    assert!(
        !html.contains("frag"),
        "a fragment of upstream's URL survived: {html}"
    );
    // Digests that are not 64 hex digits are dropped; good ones are written in lowercase.
    assert!(!html.contains("data-core-metadata"), "{html}");
    assert!(!html.contains(&format!("#sha256={AB}&")), "{html}");
    assert!(
        html.contains(&format!("demo-1.0-py3-none-any.whl#sha256={AB}\"")),
        "{html}"
    );
    // The values are still there, escaped: they read back as they went in (the hostile file
    // name itself is one `parse` refuses, as it should).
    assert!(
        html.contains(&format!(">demo-1.0.tar.gz{}</a>", escape(attack))),
        "{html}"
    );
    let attrs = attributes(&html[html.find("<a ").expect("anchor") + 3..]);
    let attr = |name: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(attr("data-requires-python"), Some(attack));
    assert_eq!(attr("data-yanked"), Some(attack));
}

#[test]
fn relative_urls_are_resolved_and_bad_pages_refused() {
    let body = br#"<html><body><a href="../../files/x-1.0.tar.gz#sha256=00">x-1.0.tar.gz</a></body></html>"#;
    let page = parse("x", &url(), body).expect("parse");
    assert_eq!(
        files(&page).next().expect("file")["url"],
        "https://upstream.invalid/files/x-1.0.tar.gz"
    );
    assert!(parse("x", &url(), b"not a page").is_err());
    assert!(
        parse(
            "x",
            &url(),
            br#"{"files":[{"filename":"../../etc/passwd","url":"x"}]}"#
        )
        .is_err()
    );
}

#[test]
fn a_quarantined_project_lists_no_file() {
    let url = Url::parse("https://upstream.invalid/simple/evil/").expect("url");
    let json = br#"{"meta":{"api-version":"1.4"},"name":"evil","project-status":{"status":"quarantined"},
        "files":[{"filename":"evil-1.0-py3-none-any.whl","url":"https://files.invalid/evil-1.0-py3-none-any.whl","hashes":{"sha256":"00"}}]}"#;
    let page = parse("evil", &url, json).expect("json page");
    assert!(quarantined(&page));
    assert_eq!(files(&page).count(), 0);
    let html = "<!DOCTYPE html><html><head><meta name=\"pypi:project-status\" content=\"quarantined\"></head>\
        <body><a href=\"https://files.invalid/evil-1.0-py3-none-any.whl#sha256=00\">evil-1.0-py3-none-any.whl</a></body></html>";
    let page = parse("evil", &url, html.as_bytes()).expect("html page");
    assert!(quarantined(&page));
    assert_eq!(files(&page).count(), 0);
    let active = html.replace("quarantined", "active");
    let page = parse("evil", &url, active.as_bytes()).expect("html page");
    assert!(!quarantined(&page));
    assert_eq!(files(&page).count(), 1);
}

/// What the tree model renders: the reference the raw path must agree with.
fn rendered_by_the_tree(body: &[u8], files_base: &str, integrity_base: &str) -> Value {
    let mut page = parse_unresolved("demo", body).expect("page");
    rewrite(&mut page, files_base, integrity_base);
    advertise_wheel_metadata(&mut page);
    page
}

fn rendered_raw(body: &[u8], files_base: &str, integrity_base: &str) -> Value {
    let json = raw::with_page("demo", body, |page| {
        raw::render_json(page, files_base, integrity_base)
    })
    .expect("page");
    serde_json::from_slice(&json).expect("the raw rendering is JSON")
}

#[test]
fn the_raw_rendering_is_the_trees_on_recorded_and_awkward_pages() {
    let awkward = format!(
        r#"{{ "meta" : {{"api-version":"1.1", "_last-serial": 7}},
            "name":"demo", "versions": ["1.0", "2.0"], "zz\u00e9": [1, 2.5e3, null],
            "files": [
              {{"filename":"demo-1.0-py3-none-any.whl","url":"../../files/a.whl#sha256={AB}",
                "hashes":{{"sha256":"{AB}"}},"core-metadata":false,"yanked":"bad \"build\"",
                "provenance":"https://upstream.invalid/integrity/demo/1.0/demo-1.0-py3-none-any.whl/provenance",
                "size": 12, "upload-time":"2024-01-01T00:00:00Z", "a\tkey": "\u0041\n"}},
              {{"filename":"demo-2.0-py3-none-any.whl","url":"x","hashes":{{"md5":"00"}},
                "provenance":"https://elsewhere.invalid/p"}},
              {{"filename":"demo-2.0.tar.gz","url":"y","hashes":{{"sha256":"{AB}"}},
                "provenance":null,"dist-info-metadata":{{"sha256":"{AB}"}}}},
              {{"filename":"demo-3.0-py3-none-any.whl","url":"z","hashes":{{"sha256":"{AB}"}},
                "dist-info-metadata":true, "yanked": false}}
            ] }}"#
    );
    let bases = (
        "http://cairn.test/pypi/files/demo/",
        "http://cairn.test/pypi/integrity/",
    );
    for body in [
        fixture("six.json"),
        fixture("six.html"),
        awkward.into_bytes(),
        br#"{"files":[],"name":"empty"}"#.to_vec(),
        br#"{"files":[{"filename":"demo-1.0.tar.gz","url":"u"}],"project-status":{"status":"Quarantined"}}"#.to_vec(),
    ] {
        assert_eq!(
            rendered_raw(&body, bases.0, bases.1),
            rendered_by_the_tree(&body, bases.0, bases.1),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn the_raw_reading_refuses_what_the_tree_refuses() {
    for body in [
        &br#"[1, 2]"#[..],
        br#"{"name":"x"}"#,
        br#"{"files":{}}"#,
        br#"{"files":[1]}"#,
        br#"{"files":[{"filename":"../evil.whl","url":"u"}]}"#,
        br#"{"files":[{"filename":"demo-1.0.tar.gz","url":3}]}"#,
        br#"{"files":[{"filename":"demo-1.0.tar.gz"}]}"#,
        b"\xff{",
        b"plain text",
    ] {
        let tree = parse_unresolved("demo", body);
        let raw = raw::with_page("demo", body, |_| ());
        assert!(tree.is_err(), "{}", String::from_utf8_lossy(body));
        assert!(raw.is_err(), "{}", String::from_utf8_lossy(body));
    }
}
