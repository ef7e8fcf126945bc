//! What the operator sees: `GET /api/v1/traffic` counts the real npm's installs through the
//! node (a first install fetched, a second answered from the cache) and the bytes served by
//! source, per ecosystem, and the history survives a restart; recent refusals name what was
//! refused and why; and the dashboard page, in headless Chromium (Debian's, driven by
//! Playwright) against a node requiring tokens, shows the same figures as `/metrics` and the
//! status API, refreshes by itself, finds a cached package with its CIDs and gateway link,
//! shows hostile text as text, and fits a phone's width (screenshots kept under
//! `target/tmp/dashboard/`).

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, ClientEnv, assert_success, get, get_with, metric_sum, project};

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

/// The browser script, started against `url`: send a line to move it on, read its steps.
struct Browser {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Browser {
    fn start(url: &str, token: &str, shots: &std::path::Path) -> Browser {
        use std::process::{Command, Stdio};
        crate::tools::debian_command("chromium", "chromium");
        let dir = &crate::tools::tools().browser;
        let mut child = Command::new("node")
            .arg(dir.join("dashboard-browser.mjs"))
            .args([url, token])
            .arg(shots)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node dashboard-browser.mjs");
        let input = child.stdin.take().expect("stdin");
        let output = std::io::BufRead::lines(std::io::BufReader::new(
            child.stdout.take().expect("stdout"),
        ));
        Browser {
            child,
            input,
            output,
        }
    }

    /// The next step's report; `step` names it.
    fn step(&mut self, step: &str) -> serde_json::Value {
        let line = self
            .output
            .next()
            .unwrap_or_else(|| panic!("the browser script ended before {step}"))
            .expect("read the browser script");
        let report: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the browser script said {line:?}: {e}"));
        assert!(
            report.get("error").is_none(),
            "in the browser: {}",
            report["error"]
        );
        assert_eq!(report["step"], step, "{report}");
        report
    }

    fn next(&mut self) {
        use std::io::Write;
        writeln!(self.input, "next").expect("tell the browser script to go on");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The figures the page shows against `/metrics` and the status API, read at the same moment
/// (nothing is installed in between): they must be the same numbers.
fn assert_page_matches_node(page: &serde_json::Value, node: &Cairn, token: &str) {
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str())];
    let metrics = get_with(&format!("{}/metrics", node.url), &headers).text;
    let sum = |prefix: &str| metric_sum(&metrics, prefix) as u64;
    // npm's lookups with one of `results`, whatever their kind (documents, files).
    let lookups = |results: &[&str]| {
        let lines: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                results
                    .iter()
                    .any(|r| l.contains(&format!("result=\"{r}\"")))
            })
            .collect();
        metric_sum(
            &lines.join("\n"),
            "cairn_cache_lookups_total{ecosystem=\"npm\",",
        ) as u64
    };
    let hits = lookups(&["hit", "stale", "revalidated", "joined"]);
    let misses = lookups(&["miss", "unkept"]);
    let npm = &page["traffic"]["npm"];
    assert_eq!(
        npm["hits"], hits,
        "hits on the page against /metrics: {page}"
    );
    assert_eq!(npm["requests"], hits + misses, "{page}");
    for (field, source) in [("cache_bytes", "cache"), ("upstream_bytes", "upstream")] {
        let served = sum(&format!("cairn_served_bytes_total{{source=\"{source}\"}}"));
        assert_eq!(
            npm[field], served,
            "{field} on the page against /metrics: {page}"
        );
    }
    // The allocator's figures are there, and what it keeps resident covers what it holds.
    let allocated = sum("cairn_memory_allocated_bytes ");
    let resident = sum("cairn_memory_resident_bytes ");
    assert!(
        allocated > 0 && resident >= allocated,
        "{allocated} held, {resident} resident"
    );
    let held = sum("cairn_store_bytes ");
    assert_eq!(page["held"], held, "{page}");
    let asked = sum("cairn_upstream_requests_total{ecosystem=\"npm\"");
    let upstream = page["upstreams"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["ecosystem"] == "npm"))
        .unwrap_or_else(|| panic!("no npm upstream on the page: {page}"));
    assert_eq!(upstream["requests"], asked, "{page}");
    assert!(
        upstream["text"].as_array().expect("cells")[2]
            .as_str()
            .is_some_and(|s| s.contains("up")),
        "the state is a word: {upstream}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&get_with(&format!("{}/api/v1/status", node.url), &headers).text)
            .expect("status JSON");
    let files = status["stats"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["ecosystem"] == "npm"))
        .map(|s| s["artifacts"].clone())
        .expect("npm in the status");
    let shown = page["store"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["ecosystem"] == "npm"))
        .map(|s| s["files"].clone())
        .unwrap_or_else(|| panic!("no npm store row: {page}"));
    assert_eq!(
        shown, files,
        "files on the page against /api/v1/status: {page}"
    );
    assert!(
        page["problem"].is_null(),
        "the page reports a problem: {page}"
    );
}

#[test]
fn the_dashboard_in_a_real_browser_shows_what_the_node_counts_and_finds_cached_packages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    registry.publish("dash-lib", "1.0.0", &[], &[("d.js", noise(48 << 10, 4))]);
    registry.publish("dash-bent", "1.0.0", &[], &[("b.js", noise(8 << 10, 5))]);
    registry.publish("dash-banned", "1.0.0", &[], &[("x.js", noise(8 << 10, 6))]);
    let fake = FakeNpm::start(registry);
    fake.faults.tamper("dash-bent-1.0.0.tgz");
    let data = tmp.path().join("data");
    let token = crate::auth::create_token(&data, "dashboard", &[]);
    let node = Cairn::start(
        &data,
        &[
            "--npm-upstream",
            &fake.url,
            "--auth",
            "required",
            "--deny",
            "npm:dash-banned",
        ],
    );
    let auth = format!("Bearer {token}");
    let with_token = [("authorization", auth.as_str())];
    // The page, as a browser asks for it, needs the token; tools still get the text summary.
    let html = [("accept", "text/html")];
    assert_eq!(get_with(&format!("{}/", node.url), &html).status, 401);
    let page = get_with(
        &format!("{}/", node.url),
        &[("accept", "text/html"), ("authorization", auth.as_str())],
    );
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.header("content-security-policy")
            .unwrap_or_default()
            .contains("script-src 'self'")
    );
    let summary = get_with(&format!("{}/", node.url), &with_token);
    assert!(
        summary
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{}",
        summary.text
    );

    let install = |name: &str| {
        let env = ClientEnv::new(&tmp.path().join(name), &node.npm());
        let key = format!("{}:_authToken", node.npm().trim_start_matches("http:"));
        let app = project(
            &tmp.path().join(format!("{name}-app")),
            serde_json::json!({ "dash-lib": "1.0.0" }),
        );
        assert_success(
            &env.run("npm", &["config", "set", &key, &token], &app),
            "npm config set _authToken",
        );
        assert_success(&env.run("npm", &["install"], &app), "npm install");
    };
    install("cold");
    let bent = get_with(
        &format!("{}dash-bent/-/dash-bent-1.0.0.tgz", node.npm()),
        &with_token,
    );
    assert_eq!(bent.status, 502, "{}", bent.text);
    let banned = get_with(
        &format!("{}dash-banned/-/dash-banned-1.0.0.tgz", node.npm()),
        &with_token,
    );
    assert_eq!(banned.status, 403, "{}", banned.text);

    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut browser = Browser::start(&format!("{}/?refresh=1", node.url), &token, &shots);
    let loaded = browser.step("loaded");
    assert_page_matches_node(&loaded, &node, &token);
    assert!(
        loaded["console_errors"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{loaded}"
    );
    assert!(
        loaded["node"].as_str().is_some_and(|n| n.contains("npm")),
        "{loaded}"
    );
    let kinds: Vec<&str> = loaded["refusals"]
        .as_array()
        .expect("refusals")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["policy", "digest"], "{loaded}");
    let bent_row = loaded["refusals"][1]["text"].to_string();
    assert!(
        bent_row.contains("dash-bent/-/dash-bent-1.0.0.tgz") && bent_row.contains("digest"),
        "{bent_row}"
    );
    assert!(
        loaded["swarm"].as_str().is_some_and(|s| !s.is_empty()),
        "{loaded}"
    );

    // A warm install after the page loaded: the page shows it by itself, without a reload.
    install("warm");
    browser.next();
    let refreshed = browser.step("refreshed");
    assert_eq!(refreshed["navigations"], 1, "{refreshed}");
    assert!(
        refreshed["refreshes"].as_u64() > loaded["refreshes"].as_u64(),
        "{refreshed}"
    );
    assert_page_matches_node(&refreshed, &node, &token);
    assert!(
        refreshed["traffic"]["npm"]["cache_bytes"].as_u64()
            > loaded["traffic"]["npm"]["cache_bytes"].as_u64(),
        "the warm install came from the cache: {refreshed}"
    );
    assert!(
        refreshed["spared"].as_u64().unwrap_or_default() >= 48 << 10,
        "{refreshed}"
    );

    browser.next();
    let searched = browser.step("searched");
    let found = &searched["found"];
    assert!(
        found["said"]
            .as_str()
            .is_some_and(|s| s.starts_with("1 cached file")),
        "{found}"
    );
    let file = &found["files"][0];
    assert_eq!(file["key"], "dash-lib/-/dash-lib-1.0.0.tgz", "{found}");
    let link = file["link"].as_str().expect("a gateway link");
    let car = get_with(&format!("{}{link}", node.url), &with_token);
    assert_eq!(car.status, 200, "{link}: {}", car.text);
    assert!(
        car.header("content-type")
            .unwrap_or_default()
            .contains("car"),
        "{link}"
    );
    assert!(
        link.contains(file["root"].as_str().expect("root CID")),
        "{link}"
    );
    assert!(
        searched["missing"]["said"]
            .as_str()
            .is_some_and(|s| s.starts_with("Not cached")),
        "{searched}"
    );
    // Markup in a search is shown as text, never run.
    assert_eq!(searched["injected"]["title"], "Cairn", "{searched}");
    assert_eq!(searched["injected"]["images"], 0, "{searched}");
    assert!(
        searched["hostile"]["said"]
            .as_str()
            .is_some_and(|s| s.contains("<img")),
        "{searched}"
    );

    browser.next();
    let narrow = browser.step("narrow");
    assert!(
        narrow["page_width"].as_u64() <= narrow["view_width"].as_u64(),
        "the page is wider than a phone's screen: {narrow}"
    );
    assert!(
        narrow["console_errors"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{narrow}"
    );
    for shot in [
        "dashboard.png",
        "dashboard-search.png",
        "dashboard-phone.png",
    ] {
        assert!(shots.join(shot).is_file(), "no screenshot {shot}");
    }
    eprintln!("dashboard screenshots in {}", shots.display());
}
