//! `serve --auth required` and `cairn token`: the real npm and pip fail with their own
//! authentication errors without a token and install with one, each presenting it its own way
//! (npm's `_authToken` as `setup --token` writes it, a Bearer header; pip's credentials in the
//! index URL, HTTP Basic); `/healthz` stays open; the admin routes need an admin token, which
//! this machine's `cairn purge` finds in the data directory; a revoked or expired token stops
//! working, and one created while the node runs starts working, within the node's reload; no
//! secret reaches the node's log (debug level) or `/metrics`; the real cargo, told by the
//! node's `config.json` that its token is required, sends it (also as `setup cargo --token
//! --apply` writes it); `--admin-metrics` keeps
//! `/metrics` to admin tokens. And the abuse: malformed
//! credentials, a bad token name, a taken name, a bad `--auth`, cargo without or with a wrong
//! token.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::bundle::cairn;
use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::fake_pypi::FakePypi;
use crate::pypi::{python_tool, venv};
use crate::support::{Cairn, ClientEnv, assert_success, get, get_with, project, wait_for};

const TARBALL: &str = "guarded/-/guarded-1.0.0.tgz";

fn registry() -> Registry {
    let mut r = Registry::default();
    r.publish(
        "guarded",
        "1.0.0",
        &[],
        &[("data.bin", noise(100 << 10, 91))],
    );
    r
}

/// `cairn token create NAME EXTRA…` on `data`: the secret it prints.
pub(crate) fn create_token(data: &Path, name: &str, extra: &[&str]) -> String {
    let dir = data.to_str().expect("path");
    let mut args = vec!["token", "create", name, "--data-dir", dir];
    args.extend_from_slice(extra);
    let out = cairn(&args);
    assert_success(&out, &format!("cairn token create {name}"));
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(secret.starts_with("cairn_"), "{secret}");
    secret
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

fn status_with(url: &str, secret: &str) -> u16 {
    get_with(url, &[("authorization", &bearer(secret))]).status
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn tokens_guard_every_route_and_npm_and_pip_each_present_theirs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let npm_fake = FakeNpm::start(registry());
    let pypi_fake = FakePypi::start(crate::pypi::index(&tmp.path().join("wheels")));
    let reader = create_token(&data, "ci", &[]);
    let admin = create_token(&data, "ops", &["--admin"]);
    let node = Cairn::start(
        &data,
        &[
            "--auth",
            "required",
            "--npm-upstream",
            &npm_fake.url,
            "--pypi-upstream",
            &pypi_fake.simple_url,
        ],
    );

    // Open: only /healthz. Everything else asks for a token, with both challenges.
    assert_eq!(get(&format!("{}/healthz", node.url)).status, 200);
    for path in ["/npm/guarded", "/metrics", "/api/v1/status", "/", "/ipfs/x"] {
        let reply = get(&format!("{}{path}", node.url));
        assert_eq!(reply.status, 401, "{path}: {}", reply.text);
        let challenges: Vec<String> = reply
            .headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect();
        assert_eq!(
            challenges,
            ["Bearer realm=\"cairn\"", "Basic realm=\"cairn\""]
        );
    }
    assert_eq!(npm_fake.total_hits(), 0, "nothing reached upstream");

    // npm without a token: its own authentication error.
    let env = ClientEnv::new(&tmp.path().join("npm-client"), &node.npm());
    let app = project(
        &tmp.path().join("app"),
        serde_json::json!({ "guarded": "1.0.0" }),
    );
    let refused = env.run("npm", &["install"], &app);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("E401"), "{}", stderr(&refused));

    // With the token `setup --token` gives npm, run as it prints it.
    let setup = cairn(&["setup", "npm", "--url", &node.npm(), "--token", &reader]);
    assert_success(&setup, "cairn setup npm --token");
    let printed = String::from_utf8_lossy(&setup.stdout).into_owned();
    let line = printed
        .lines()
        .find(|l| l.contains(":_authToken"))
        .unwrap_or_else(|| panic!("no _authToken line in {printed}"));
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    assert_eq!(args[..2], ["config", "set"], "{line}");
    assert_success(&env.run("npm", &args, &app), "npm config set _authToken");
    assert_success(
        &env.run("npm", &["install"], &app),
        "npm install with a token",
    );
    assert_eq!(npm_fake.hits(TARBALL), 1);

    // pip: the token as the password of the index URL `setup pip --token` prints.
    let setup = cairn(&[
        "setup",
        "pip",
        "--url",
        &format!("{}/pypi/simple/", node.url),
        "--token",
        &reader,
    ]);
    assert_success(&setup, "cairn setup pip --token");
    let printed = String::from_utf8_lossy(&setup.stdout).into_owned();
    let index_url = printed
        .split_whitespace()
        .find(|w| w.starts_with("http://cairn:"))
        .unwrap_or_else(|| panic!("no index URL with credentials in {printed}"))
        .to_owned();
    let home = tmp.path().join("home");
    let pip_venv = venv(&tmp.path().join("venv"));
    let pip = pip_venv.join("bin/pip");
    let plain_index = format!("{}/pypi/simple/", node.url);
    let install = |index: &str| {
        python_tool(
            &pip,
            &[
                "install",
                "--no-cache-dir",
                "--index-url",
                index,
                "alpha-lib",
            ],
            &home,
        )
    };
    // Without credentials pip answers the 401 by asking for them (and, with no terminal,
    // stops there).
    let refused = install(&plain_index);
    assert!(!refused.status.success());
    let said = format!(
        "{}{}",
        stderr(&refused),
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(
        said.contains(&format!(
            "User for {}",
            node.url.trim_start_matches("http://")
        )),
        "{said}"
    );
    assert_success(&install(&index_url), "pip install with a token");

    // Admin routes: a reader is refused, this machine's own command goes through the node
    // with the admin secret the node left in the data directory.
    let purge_url = format!("{}/api/v1/purge/npm/guarded", node.url);
    let purge_as = |secret: &str| {
        crate::support::runtime().block_on(async {
            reqwest::Client::new()
                .delete(&purge_url)
                .bearer_auth(secret)
                .send()
                .await
                .expect("purge")
                .status()
                .as_u16()
        })
    };
    assert_eq!(purge_as(&reader), 403);
    let address = node.url.trim_start_matches("http://").to_owned();
    let purged = cairn(&[
        "purge",
        "npm:guarded",
        "--listen",
        &address,
        "--data-dir",
        data.to_str().expect("path"),
    ]);
    assert_success(&purged, "cairn purge through the node requiring tokens");
    assert_eq!(purge_as(&admin), 200, "an admin token may purge");
    let peers = cairn(&[
        "peers",
        "--json",
        "--listen",
        &address,
        "--data-dir",
        data.to_str().expect("path"),
    ]);
    assert_success(&peers, "cairn peers through the node requiring tokens");

    // A token made while the node runs works, a revoked one and an expired one stop.
    let metrics = format!("{}/metrics", node.url);
    let late = create_token(&data, "late", &[]);
    wait_for(Duration::from_secs(5), "the new token accepted", || {
        (status_with(&metrics, &late) == 200).then_some(())
    });
    let brief = create_token(&data, "brief", &["--expires", "2s"]);
    wait_for(Duration::from_secs(5), "the brief token accepted", || {
        (status_with(&metrics, &brief) == 200).then_some(())
    });
    assert_success(
        &cairn(&[
            "token",
            "revoke",
            "late",
            "--data-dir",
            data.to_str().expect("path"),
        ]),
        "cairn token revoke",
    );
    wait_for(Duration::from_secs(5), "the revoked token refused", || {
        (status_with(&metrics, &late) == 401).then_some(())
    });
    wait_for(Duration::from_secs(10), "the expired token refused", || {
        (status_with(&metrics, &brief) == 401).then_some(())
    });
    assert_eq!(status_with(&metrics, &reader), 200, "the others still work");

    // `token list` names them, never their secrets.
    let list = cairn(&["token", "list", "--data-dir", data.to_str().expect("path")]);
    assert_success(&list, "cairn token list");
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    for name in ["ci", "ops", "brief"] {
        assert!(listed.contains(name), "{listed}");
    }
    assert!(!listed.contains("late"), "revoked: {listed}");

    // No secret anywhere the node writes or shows.
    let shown = format!(
        "{}{}",
        node.logs(),
        get_with(&metrics, &[("authorization", &bearer(&admin))]).text
    );
    for secret in [&reader, &admin, &late, &brief] {
        assert!(!shown.contains(secret.as_str()), "a secret leaked");
    }
    let local = std::fs::read_to_string(data.join("admin-token")).expect("admin-token");
    assert!(!shown.contains(local.trim()), "the local secret leaked");
}

#[test]
fn malformed_credentials_bad_names_and_a_bad_auth_setting_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let dir = data.to_str().expect("path");
    let secret = create_token(&data, "ci", &[]);

    let taken = cairn(&["token", "create", "ci", "--data-dir", dir]);
    assert!(!taken.status.success());
    assert!(
        stderr(&taken).contains("exists already"),
        "{}",
        stderr(&taken)
    );
    for bad in ["", "a b", "x\u{1b}[2J", "../up"] {
        let out = cairn(&["token", "create", bad, "--data-dir", dir]);
        assert!(!out.status.success(), "{bad:?}");
        assert!(
            stderr(&out).contains("invalid token name"),
            "{}",
            stderr(&out)
        );
    }
    let out = cairn(&[
        "token",
        "create",
        "x",
        "--expires",
        "soon",
        "--data-dir",
        dir,
    ]);
    assert!(!out.status.success());
    let out = cairn(&["token", "revoke", "nobody", "--data-dir", dir]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no token is named"),
        "{}",
        stderr(&out)
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "serve",
            "--no-p2p",
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "maybe",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .expect("cairn serve");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid auth"), "{}", stderr(&out));

    let admin = create_token(&data, "scraper", &["--admin"]);
    let node = Cairn::start(&data, &["--auth", "required", "--admin-metrics"]);
    let metrics = format!("{}/metrics", node.url);
    assert_eq!(status_with(&metrics, &secret), 403, "--admin-metrics");
    assert_eq!(status_with(&metrics, &admin), 200);
    let url = format!("{}/api/v1/status", node.url);
    let long = format!("Bearer {}", "x".repeat(16 << 10));
    let not_utf8 = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [0xff, 0xfe, b':']
        )
    );
    for value in [
        "Bearer",
        "Basic",
        "Basic !!!",
        not_utf8.as_str(),
        long.as_str(),
        &format!("Bearer {secret}x"),
        &format!("Digest {secret}"),
    ] {
        let reply = get_with(&url, &[("authorization", value)]);
        assert_eq!(reply.status, 401, "{value:.40}: {}", reply.text);
    }
    // Each of the ways the clients use works.
    let basic = |pair: &str| {
        format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair)
        )
    };
    for value in [
        bearer(&secret),
        basic(&format!("cairn:{secret}")),
        basic(&format!("{secret}:")),
        secret.clone(),
    ] {
        assert_eq!(get_with(&url, &[("authorization", &value)]).status, 200);
    }
}

#[test]
fn serving_other_hosts_without_tokens_says_so_in_the_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = Cairn::start(&tmp.path().join("data"), &["--listen", "0.0.0.0:0"]);
    wait_for(Duration::from_secs(10), "the warning", || {
        node.logs()
            .contains("serving without access tokens on an address other hosts reach")
            .then_some(())
    });
}

#[test]
fn cargo_sends_its_registry_token_when_the_node_requires_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let fake = crate::fake_cargo::FakeCargo::start(crate::cargo::registry());
    let secret = create_token(&data, "builds", &[]);
    let node = Cairn::start(
        &data,
        &["--auth", "required", "--cargo-upstream", &fake.index_url],
    );
    let index = format!("{}/cargo/index/", node.url);
    let config = get_with(
        &format!("{index}config.json"),
        &[("authorization", &secret)],
    );
    assert_eq!(config.status, 200);
    let config: serde_json::Value = serde_json::from_slice(&config.body).expect("json");
    assert_eq!(
        config["auth-required"], true,
        "cargo is told to send its token"
    );

    // crates-io replaced by a registry of cargo's own, whose token cargo sends as it is.
    let home = tmp.path().join("cargo-home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join("config.toml"),
        format!(
            "[registries.cairn]\nindex = \"sparse+{index}\"\n\n[source.crates-io]\nreplace-with = \"cairn\"\n\n[registry]\nglobal-credential-providers = [\"cargo:token\"]\n\n[net]\nretry = 0\n"
        ),
    )
    .expect("config.toml");
    let app = crate::cargo::project(&tmp.path().join("app"), &[("app-core", "1.2")]);
    let fetch = |token: Option<&str>| {
        let mut command = std::process::Command::new("cargo");
        command
            .arg("fetch")
            .current_dir(&app)
            .env("CARGO_HOME", &home)
            .env_remove("CARGO_REGISTRIES_CAIRN_TOKEN");
        if let Some(token) = token {
            command.env("CARGO_REGISTRIES_CAIRN_TOKEN", token);
        }
        command.output().expect("cargo")
    };
    let refused = fetch(None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("no token found"),
        "{}",
        stderr(&refused)
    );
    let wrong = fetch(Some("cairn_0000"));
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("401"), "{}", stderr(&wrong));
    assert_success(&fetch(Some(&secret)), "cargo fetch with its token");
    assert_eq!(fake.hits("files/ap/p-/app-core/app-core-1.2.0.crate"), 1);

    // As `setup cargo --token --apply` writes it into a cargo home that had a plain source
    // replacement and a credential provider of its own: cargo finds the token itself.
    let set_up = tmp.path().join("set-up-home");
    std::fs::create_dir_all(&set_up).expect("home");
    std::fs::write(
        set_up.join("config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"cairn\"\n\n[source.cairn]\nregistry = \"sparse+{index}\"\n\n\
             [registry]\nglobal-credential-providers = [\"cargo:libsecret\"]\n\n[net]\nretry = 0\n"
        ),
    )
    .expect("config.toml");
    let setup = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "setup", "cargo", "--apply", "--url", &index, "--token", &secret,
        ])
        .arg("--config")
        .arg(tmp.path().join("cairn.toml"))
        .env("CARGO_HOME", &set_up)
        .env("XDG_CONFIG_HOME", tmp.path().join("xdg"))
        .output()
        .expect("cairn setup");
    assert_success(&setup, "cairn setup cargo --token --apply");
    let credentials = set_up.join("credentials.toml");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&credentials)
            .expect("credentials")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let config = std::fs::read_to_string(set_up.join("config.toml")).expect("config");
    assert!(
        config.contains("cargo:libsecret") && config.contains("cargo:token"),
        "{config}"
    );
    let fetched = std::process::Command::new("cargo")
        .arg("fetch")
        .current_dir(&app)
        .env("CARGO_HOME", &set_up)
        .env_remove("CARGO_REGISTRIES_CAIRN_TOKEN")
        .output()
        .expect("cargo");
    assert_success(&fetched, "cargo fetch as setup --token wrote it");
    assert!(
        !node.logs().contains(&secret),
        "the token leaked into the log"
    );
}
