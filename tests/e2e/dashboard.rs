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

#[test]
fn recent_refusals_name_the_file_the_kind_and_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    registry.publish("bent-lib", "1.0.0", &[], &[("b.js", noise(8 << 10, 2))]);
    registry.publish("banned-lib", "1.0.0", &[], &[("x.js", noise(8 << 10, 3))]);
    let fake = FakeNpm::start(registry);
    fake.faults.tamper("bent-lib-1.0.0.tgz");
    let node = Cairn::start(
        &tmp.path().join("data"),
        &["--npm-upstream", &fake.url, "--deny", "npm:banned-lib"],
    );
    let bent = get(&format!("{}bent-lib/-/bent-lib-1.0.0.tgz", node.npm()));
    assert_eq!(bent.status, 502, "{}", bent.text);
    let banned = get(&format!("{}banned-lib/-/banned-lib-1.0.0.tgz", node.npm()));
    assert_eq!(banned.status, 403, "{}", banned.text);

    let reply = get(&format!("{}/api/v1/refusals", node.url));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let report: serde_json::Value = serde_json::from_str(&reply.text).expect("JSON");
    let refusals = report["refusals"].as_array().expect("refusals");
    // Newest first: the policy's, then the digest's.
    assert_eq!(refusals[0]["kind"], "policy", "{report}");
    assert_eq!(refusals[0]["rule"], "deny", "{report}");
    assert_eq!(refusals[0]["key"], "banned-lib/-/banned-lib-1.0.0.tgz");
    assert!(
        refusals[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("deny \"npm:banned-lib\"")),
        "{report}"
    );
    assert_eq!(refusals[1]["kind"], "digest", "{report}");
    assert_eq!(refusals[1]["key"], "bent-lib/-/bent-lib-1.0.0.tgz");
    let reason = refusals[1]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("digest") && reason.contains(&fake.url),
        "{reason}"
    );
    assert!(
        !reason.contains(tmp.path().to_str().expect("path")),
        "{reason}"
    );
}
