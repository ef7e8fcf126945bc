//! What a client is told when it asks in the wrong place: a path under no ecosystem, and the
//! PyPI simple root (upstream's lists every project; a node's lists what it holds).

use crate::fake_npm::FakeNpm;
use crate::fake_pypi::{FakePypi, Index};
use crate::support::{Cairn, get, get_with};

#[test]
fn a_path_under_no_ecosystem_says_where_each_lives() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let npm = FakeNpm::start(crate::npm::registry());
    let pypi = FakePypi::start(Index::default());
    let cairn = Cairn::start(
        &tmp.path().join("data"),
        &[
            "--npm-upstream",
            &npm.url,
            "--pypi-upstream",
            &pypi.simple_url,
        ],
    );
    let reply = get(&format!("{}/lodash", cairn.url));
    assert_eq!(reply.status, 404);
    let error: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON error");
    let message = error["error"].as_str().expect("error message");
    assert!(
        message.contains("no route for /lodash")
            && message.contains("npm at /npm/")
            && message.contains("pypi at /pypi/simple/"),
        "{message}"
    );
    assert_eq!(npm.total_hits(), 0);
}

#[test]
fn the_pypi_simple_root_lists_the_projects_this_node_holds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut index = Index::default();
    index
        .wheel(&tmp.path().join("wheels"), "Alpha_Lib", "1.0.0", &[], None)
        .wheel(&tmp.path().join("wheels"), "beta-lib", "2.0.0", &[], None);
    let fake = FakePypi::start(index);
    let cairn = Cairn::start(
        &tmp.path().join("data"),
        &["--pypi-upstream", &fake.simple_url],
    );
    let root = format!("{}/pypi/simple/", cairn.url);
    let json = "application/vnd.pypi.simple.v1+json";

    // Nothing held yet: a valid, empty index, and upstream's root is never asked for.
    let empty = get_with(&root, &[("accept", json)]);
    assert_eq!(empty.status, 200, "{}", empty.text);
    let doc: serde_json::Value = serde_json::from_slice(&empty.body).expect("JSON");
    assert_eq!(doc["projects"], serde_json::json!([]));

    assert_eq!(get(&format!("{root}alpha-lib/")).status, 200);
    let listed = get_with(&root, &[("accept", json)]);
    assert_eq!(listed.headers["content-type"], json);
    let doc: serde_json::Value = serde_json::from_slice(&listed.body).expect("JSON");
    assert_eq!(doc["meta"]["api-version"], "1.0");
    assert_eq!(
        doc["projects"],
        serde_json::json!([{ "name": "alpha-lib" }])
    );

    let html = get(&root);
    assert_eq!(html.status, 200);
    assert!(
        html.headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/html"),
        "{:?}",
        html.headers
    );
    assert!(
        html.text.contains("<a href=\"alpha-lib/\">alpha-lib</a>"),
        "{}",
        html.text
    );
    assert!(!html.text.contains("beta-lib"), "{}", html.text);
    assert_eq!(fake.hits("simple/"), 0);
}
