//! What registries sign reaches the client as it was signed. The fake npm registry signs every
//! version (ECDSA P-256 over `NAME@VERSION:INTEGRITY`, as the npm registry does) and publishes
//! its key at `-/npm/v1/keys`; through the node, `npm audit signatures` (its Sigstore TUF
//! refresh answered by a stand-in, `fake_tuf.rs`, so the keys come from the node) passes for
//! an honest signature and fails for a forged one, online and offline: the node neither breaks
//! nor hides either. The keys and a version's attestations are cached documents, served as
//! upstream sent them; PyPI's PEP 740 provenance likewise.

use std::path::Path;
use std::process::Output;

use crate::fake_npm::{FakeNpm, Registry, SIGNING_KEY_ID, noise};
use crate::support::{Cairn, ClientEnv, assert_success, get, project};

/// `npm audit signatures` in `app` through `env`'s registry, trusting `tuf`; its output.
fn audit_signatures(
    env: &ClientEnv,
    tuf: &crate::fake_tuf::FakeTuf,
    app: &Path,
) -> (Output, String) {
    let out = env
        .command("npm", &["audit", "signatures"], app)
        .env("https_proxy", &tuf.proxy)
        .env("no_proxy", "127.0.0.1,localhost")
        .env("NODE_EXTRA_CA_CERTS", &tuf.ca)
        .output()
        .expect("npm audit signatures");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, said)
}

#[test]
fn npm_audit_signatures_verifies_through_the_node_and_a_forged_signature_still_fails() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    registry.publish("signed-lib", "1.0.0", &[], &[("a.js", noise(4 << 10, 1))]);
    registry.publish("forged-lib", "1.0.0", &[], &[("b.js", noise(4 << 10, 2))]);
    registry.sign(tmp.path(), Some(("forged-lib", "1.0.0")));
    let fake = FakeNpm::start(registry);
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--npm-upstream", &fake.url]);
    let env = ClientEnv::new(&tmp.path().join("client"), &node.npm());

    // The signature reaches npm byte for byte, in both forms of the packument.
    let signed = fake.registry().version("signed-lib", "1.0.0");
    let (keyid, sig) = signed.signature.clone().expect("signed");
    assert_eq!(keyid, SIGNING_KEY_ID);
    for accept in [None, Some("application/vnd.npm.install-v1+json")] {
        let url = format!("{}signed-lib", node.npm());
        let reply = match accept {
            Some(a) => crate::support::get_with(&url, &[("accept", a)]),
            None => get(&url),
        };
        let doc: serde_json::Value = serde_json::from_str(&reply.text).expect("packument");
        assert_eq!(
            doc["versions"]["1.0.0"]["dist"]["signatures"],
            serde_json::json!([{ "keyid": keyid, "sig": sig }]),
            "accept {accept:?}"
        );
    }

    // Installs are unaffected; the audit verifies the honest one and catches the forged one.
    let app = project(
        &tmp.path().join("app"),
        serde_json::json!({ "signed-lib": "1.0.0" }),
    );
    assert_success(&env.run("npm", &["install"], &app), "npm install");
    let forged_app = project(
        &tmp.path().join("forged-app"),
        serde_json::json!({ "forged-lib": "1.0.0" }),
    );
    assert_success(
        &env.run("npm", &["install"], &forged_app),
        "npm install (forged)",
    );
    let tuf = crate::fake_tuf::FakeTuf::start(&tmp.path().join("tuf"), &env.dir.join("cache"));
    let (out, said) = audit_signatures(&env, &tuf, &app);
    assert!(out.status.success(), "npm audit signatures: {said}");
    assert!(
        said.contains("1 package has a verified registry signature"),
        "{said}"
    );
    assert!(
        fake.hits("-/npm/v1/keys") >= 1,
        "the keys came from upstream through the node"
    );
    let (out, said) = audit_signatures(&env, &tuf, &forged_app);
    assert!(!out.status.success(), "a forged signature passed: {said}");
    assert!(said.contains("invalid registry signature"), "{said}");

    // The keys and the attestations are served as upstream sent them, and kept.
    let keys = get(&format!("{}-/npm/v1/keys", node.npm()));
    assert_eq!(keys.status, 200, "{}", keys.text);
    let upstream_keys = get(&format!("{}-/npm/v1/keys", fake.url));
    assert_eq!(keys.text, upstream_keys.text);
    let attestations_path = "-/npm/v1/attestations/signed-lib@1.0.0";
    let attestations = get(&format!("{}{attestations_path}", node.npm()));
    assert_eq!(attestations.status, 200, "{}", attestations.text);
    assert_eq!(
        attestations.text,
        get(&format!("{}{attestations_path}", fake.url)).text
    );
    let unknown = get(&format!(
        "{}-/npm/v1/attestations/signed-lib@9.9.9",
        node.npm()
    ));
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    node.stop();

    // Offline, from what the node kept: the same verdicts.
    let offline = Cairn::start(&data, &["--npm-upstream", &fake.url, "--offline"]);
    let env = ClientEnv::new(&tmp.path().join("offline-client"), &offline.npm());
    let kept = get(&format!("{}-/npm/v1/keys", offline.npm()));
    assert_eq!((kept.status, kept.text), (200, upstream_keys.text));
    let kept = get(&format!("{}{attestations_path}", offline.npm()));
    assert_eq!(kept.status, 200, "{}", kept.text);
    let tuf =
        crate::fake_tuf::FakeTuf::start(&tmp.path().join("tuf-offline"), &env.dir.join("cache"));
    let (out, said) = audit_signatures(&env, &tuf, &app);
    assert!(out.status.success(), "offline: {said}");
    let (out, said) = audit_signatures(&env, &tuf, &forged_app);
    assert!(
        !out.status.success() && said.contains("invalid registry signature"),
        "offline: {said}"
    );
}

#[test]
fn pypi_provenance_is_served_here_as_the_index_sent_it_offline_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wheels = tmp.path().join("wheels");
    let mut index = crate::fake_pypi::Index::default();
    index.wheel(&wheels, "attested-py", "1.0.0", &[], None);
    let pypi = crate::fake_pypi::FakePypi::start(index);
    let file = pypi
        .index()
        .file("attested_py-1.0.0-py3-none-any.whl")
        .clone();
    let data = tmp.path().join("data");
    let node = Cairn::start(&data, &["--pypi-upstream", &pypi.simple_url]);

    // Pages point each file's provenance at the node, in both forms.
    let here = format!("{}/pypi/{}", node.url, file.provenance_path());
    let json = crate::support::get_with(
        &format!("{}/pypi/simple/attested-py/", node.url),
        &[("accept", "application/vnd.pypi.simple.v1+json")],
    );
    let page: serde_json::Value = serde_json::from_str(&json.text).expect("page");
    assert_eq!(page["files"][0]["provenance"], here.as_str(), "{page}");
    let html = get(&format!("{}/pypi/simple/attested-py/", node.url));
    assert!(
        html.text.contains(&format!("data-provenance=\"{here}\"")),
        "{}",
        html.text
    );

    // The Integrity API's answer, byte for byte, with its media type.
    let upstream = get(&format!(
        "{}{}",
        pypi.simple_url.trim_end_matches("simple/"),
        file.provenance_path()
    ));
    let served = get(&here);
    assert_eq!(served.status, 200, "{}", served.text);
    assert_eq!(served.text, upstream.text);
    assert_eq!(
        served.header("content-type").as_deref(),
        Some("application/vnd.pypi.integrity.v1+json")
    );
    // Installers are unaffected by the field.
    let venv = crate::pypi::venv(&tmp.path().join("venv"));
    assert_success(
        &crate::pypi::python_tool(
            &venv.join("bin/pip"),
            &[
                "install",
                "--no-cache-dir",
                "--index-url",
                &format!("{}/pypi/simple/", node.url),
                "attested-py",
            ],
            &tmp.path().join("home"),
        ),
        "pip install of an attested project",
    );
    // Hostile spellings never reach upstream.
    for hostile in [
        "integrity/attested-py/1.0.0/..%2f..%2fsimple/provenance",
        "integrity/attested-py/../../../etc/provenance",
    ] {
        let reply = get(&format!("{}/pypi/{hostile}", node.url));
        assert!(
            matches!(reply.status, 400 | 404),
            "{hostile}: {}",
            reply.status
        );
    }
    assert!(
        !pypi
            .requests()
            .iter()
            .any(|p| p.contains("..") || p.contains("%2f")),
        "{:?}",
        pypi.requests()
    );
    node.stop();

    let offline = Cairn::start(&data, &["--pypi-upstream", &pypi.simple_url, "--offline"]);
    let kept = get(&format!("{}/pypi/{}", offline.url, file.provenance_path()));
    assert_eq!((kept.status, kept.text), (200, upstream.text));
}
