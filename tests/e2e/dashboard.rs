//! What the operator sees: `GET /api/v1/traffic` counts the real npm's installs through the
//! node (a first install fetched, a second answered from the cache) and the bytes served by
//! source, per ecosystem, and the history survives a restart.

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, ClientEnv, assert_success, get, project};

fn traffic(node: &Cairn, window: &str) -> serde_json::Value {
    let reply = get(&format!("{}/api/v1/traffic?window={window}", node.url));
    assert_eq!(reply.status, 200, "{}", reply.text);
    serde_json::from_str(&reply.text).expect("traffic JSON")
}

#[test]
fn traffic_counts_installs_by_source_and_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    registry.publish("traffic-lib", "1.0.0", &[], &[("t.js", noise(64 << 10, 1))]);
    let fake = FakeNpm::start(registry);
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    let app = project(
        &tmp.path().join("app"),
        serde_json::json!({ "traffic-lib": "1.0.0" }),
    );
    let first = ClientEnv::new(&tmp.path().join("first"), &node.npm());
    assert_success(&first.run("npm", &["install"], &app), "npm install (cold)");
    let second = ClientEnv::new(&tmp.path().join("second"), &node.npm());
    std::fs::remove_dir_all(app.join("node_modules")).expect("node_modules");
    assert_success(&second.run("npm", &["install"], &app), "npm install (warm)");

    let hour = traffic(&node, "hour");
    assert_eq!(hour["bucket_seconds"], 60, "{hour}");
    assert_eq!(hour["ecosystems"]["npm"].as_array().map(Vec::len), Some(60));
    let npm = &hour["totals"]["npm"];
    let count = |field: &str| npm[field].as_u64().unwrap_or_default();
    // Cold: the packument and the tarball fetched; warm (from the lockfile): the tarball from
    // the cache.
    assert!(count("misses") >= 2 && count("hits") >= 1, "{npm}");
    assert!(count("upstream_bytes") >= 64 << 10, "{npm}");
    assert!(count("cache_bytes") >= 64 << 10, "{npm}");
    assert!(
        hour["spared_upstream_bytes"].as_u64().unwrap_or_default() >= count("cache_bytes"),
        "{hour}"
    );
    // The same figures as /metrics counts them.
    let hits = node
        .metric("cairn_cache_lookups_total{ecosystem=\"npm\",kind=\"artifact\",result=\"hit\"}")
        + node.metric(
            "cairn_cache_lookups_total{ecosystem=\"npm\",kind=\"metadata\",result=\"hit\"}",
        );
    assert!(count("hits") as f64 >= hits, "{npm} against {hits}");
    let day = traffic(&node, "day");
    assert_eq!(day["bucket_seconds"], 900, "{day}");
    assert_eq!(day["totals"]["npm"], hour["totals"]["npm"]);
    let bad = get(&format!("{}/api/v1/traffic?window=week", node.url));
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("hour, day"), "{}", bad.text);
    node.stop();

    // A restart reads the day back from the index.
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    let again = traffic(&node, "day");
    assert_eq!(again["totals"]["npm"], day["totals"]["npm"], "{again}");
}
