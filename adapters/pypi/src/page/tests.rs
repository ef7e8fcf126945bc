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
            "hashes": {"sha256": "ab"},
            "requires-python": ">=3.8,<4",
            "yanked": "broken build",
            "core-metadata": {"sha256": "cd"}
        }]
    });
    let html = to_html(&page);
    assert!(
        html.contains("data-requires-python=\"&gt;=3.8,&lt;4\""),
        "{html}"
    );
    assert!(
        html.contains(
            "href=\"https://files.upstream.invalid/demo-1.0-py3-none-any.whl#sha256=ab\""
        )
    );
    let back = parse("demo", &url(), html.as_bytes()).expect("parse");
    let file = files(&back).next().expect("file");
    assert_eq!(file["requires-python"], ">=3.8,<4");
    assert_eq!(file["yanked"], "broken build");
    assert_eq!(file["core-metadata"]["sha256"], "cd");
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
