//! Private upstreams: an npm scope on a registry of its own that wants a token, found in the
//! node's own npm configuration (`@corp:registry` and `_authToken` from an environment
//! variable, in the `.npmrc` of the user running `cairn serve`). The real npm installs a
//! project that uses both registries through the node: every `@corp/…` request goes to the
//! private registry, with the token, and never to the public one, which publishes a
//! dependency-confusion decoy under the same name; no public name is asked of the private
//! registry; and the token appears nowhere it could leak: the node's log at debug level,
//! `/metrics`, `/api/v1/status`, rendered metadata, the lockfile, an exported bundle.

use crate::bundle::cairn;
use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, ClientEnv, assert_success, get, project};

const TOKEN: &str = "corp-npm-t0ken-5f1e2d";

/// The public registry: `pub-lib`, and a decoy `@corp/app-core` at a higher version, as an
/// attacker would publish it.
fn public_registry() -> Registry {
    let mut r = Registry::default();
    r.publish("pub-lib", "1.0.0", &[], &[("lib.js", noise(8 << 10, 1))]);
    r.publish("pub-lib", "1.1.0", &[], &[("lib.js", noise(8 << 10, 2))]);
    r.publish(
        "@corp/app-core",
        "9.9.9",
        &[],
        &[("decoy.js", b"the decoy".to_vec())],
    );
    r
}

/// The private registry: the real `@corp/app-core` (which depends on `pub-lib` and
/// `@corp/log`), and a `pub-lib` of its own that must never be taken.
fn private_registry() -> Registry {
    let mut r = Registry::default();
    r.publish("@corp/log", "2.0.0", &[], &[("log.js", noise(4 << 10, 3))]);
    r.publish(
        "@corp/app-core",
        "1.2.0",
        &[("pub-lib", "^1.0.0"), ("@corp/log", "^2.0.0")],
        &[("core.js", noise(64 << 10, 4))],
    );
    r.publish(
        "pub-lib",
        "1.5.0",
        &[],
        &[("shadow.js", b"shadow".to_vec())],
    );
    r
}

#[test]
fn an_npm_scope_goes_to_its_own_registry_with_its_token_and_nowhere_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let public = FakeNpm::start(public_registry());
    let private = FakeNpm::start_guarded(private_registry(), Some(&format!("Bearer {TOKEN}")));
    // The node's own npm configuration, as an operator's user would have it: the scope's
    // registry, and its token from the environment.
    let private_key = private.url.trim_start_matches("http:");
    let home = data.with_extension("home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join(".npmrc"),
        format!(
            "@corp:registry={}\n{private_key}:_authToken=${{CORP_NPM_TOKEN}}\n",
            private.url
        ),
    )
    .expect("npmrc");
    let node = Cairn::start_with_env(
        &data,
        &["--npm-upstream", &public.url],
        &[("CORP_NPM_TOKEN", TOKEN), ("CAIRN_LOG", "debug")],
    );

    let env = ClientEnv::new(&tmp.path().join("client"), &node.npm());
    let app = project(
        &tmp.path().join("app"),
        serde_json::json!({ "@corp/app-core": "*", "pub-lib": "^1.0.0" }),
    );
    assert_success(&env.run("npm", &["install"], &app), "npm install");

    // The private package, not the decoy; the public library, not the private shadow.
    let installed = |name: &str| -> serde_json::Value {
        let path = app.join("node_modules").join(name).join("package.json");
        serde_json::from_str(&std::fs::read_to_string(&path).expect("installed")).expect("json")
    };
    assert_eq!(installed("@corp/app-core")["version"], "1.2.0");
    assert_eq!(installed("@corp/log")["version"], "2.0.0");
    assert_eq!(installed("pub-lib")["version"], "1.1.0");

    // Each name reached exactly its registry; the private one was always sent the token, the
    // public one never.
    let public_asked = public.requests();
    assert!(
        public_asked.iter().all(|p| !p.contains("corp")),
        "a @corp name reached the public registry: {public_asked:?}"
    );
    assert!(public_asked.iter().any(|p| p.contains("pub-lib")));
    let private_asked = private.requests();
    assert!(
        private_asked.iter().all(|p| p.contains("corp")),
        "a public name reached the private registry: {private_asked:?}"
    );
    assert_eq!(private.authorized_hits(), private_asked.len());
    assert!(private_asked.len() >= 4, "{private_asked:?}");
    assert_eq!(public.authorized_hits(), 0);

    // The token is nowhere it could leak.
    let metrics = get(&format!("{}/metrics", node.url)).text;
    let status = get(&format!("{}/api/v1/status", node.url)).text;
    let report: serde_json::Value = serde_json::from_str(&status).expect("status");
    let npm = report["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .find(|u| u["ecosystem"] == "npm")
        .expect("npm");
    assert_eq!(npm["routed"][0]["names"][0], "@corp/*", "{status}");
    assert_eq!(npm["routed"][0]["private"], true, "{status}");
    let packument = get(&format!("{}/npm/@corp%2fapp-core", node.url));
    assert_eq!(packument.status, 200);
    assert!(
        packument.text.contains(&node.url),
        "tarballs point at the node"
    );
    let lockfile = std::fs::read_to_string(app.join("package-lock.json")).expect("lockfile");
    assert!(lockfile.contains(&format!("{}/npm/@corp/app-core/-/", node.url)));
    for (what, text) in [
        ("/metrics", &metrics),
        ("/api/v1/status", &status),
        ("the rendered packument", &packument.text),
        ("the lockfile", &lockfile),
    ] {
        assert!(!text.contains(TOKEN), "the token is in {what}");
    }
    node.stop();
    let log = std::fs::read_to_string(data.with_extension("log")).expect("log");
    assert!(log.contains("routed upstream"), "{log}");
    assert!(!log.contains(TOKEN), "the token is in the node's log");
    let car = tmp.path().join("app.car");
    let exported = cairn(&[
        "export",
        "--data-dir",
        data.to_str().expect("path"),
        "--lockfile",
        app.join("package-lock.json").to_str().expect("path"),
        "-o",
        car.to_str().expect("path"),
    ]);
    assert_success(&exported, "cairn export");
    let bundle = std::fs::read(&car).expect("bundle");
    assert!(bundle.len() > 64 << 10, "the bundle holds the packages");
    assert!(
        !bundle.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the token is in the exported bundle"
    );
}
