//! What `deploy/` ships is checked, not only written: the systemd unit passes `systemd-analyze
//! verify` (its `ExecStart` pointed at the binary under test, since the unit names the path an
//! operator installs to) and its hardening rates OK in `systemd-analyze security` (an exposure
//! of 2.0 at most, with the directives the node cannot do without explained in the unit); the
//! Kubernetes manifests are valid against the Kubernetes 1.31 schemas (kubernetes-validate,
//! strict: no field the schemas do not know) and keep what running a cache there needs; the
//! Helm chart lints, renders the same resources (and a Secret when given the key), which pass
//! the same schemas, and refuses to render without a swarm key.

use std::path::Path;
use std::process::Command;

/// The unit as shipped, with `ExecStart` running this build's binary.
fn unit_under_test(dir: &Path) -> std::path::PathBuf {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/cairn.service"))
            .expect("deploy/cairn.service");
    assert!(
        shipped.contains("ExecStart=/usr/local/bin/cairn serve"),
        "the unit starts the installed binary"
    );
    let unit = shipped.replace("/usr/local/bin/cairn", env!("CARGO_BIN_EXE_cairn"));
    let path = dir.join("cairn.service");
    std::fs::write(&path, unit).expect("unit");
    path
}

fn analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (it must be installed: Debian's systemd)")
}

#[test]
fn the_systemd_unit_verifies_and_its_hardening_rates_ok() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let unit = unit_under_test(tmp.path());
    let verified = analyze(&["verify"], &unit);
    let said = String::from_utf8_lossy(&verified.stderr).into_owned();
    assert!(verified.status.success(), "systemd-analyze verify: {said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned: {said}"
    );

    // `--threshold` is in tenths: 20 is an exposure of 2.0, systemd's "OK".
    let rated = analyze(
        &["security", "--offline=yes", "--threshold=20", "--no-pager"],
        &unit,
    );
    let report = String::from_utf8_lossy(&rated.stdout).into_owned();
    assert!(rated.status.success(), "exposure over 2.0:\n{report}");
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .expect("an overall rating");
    assert!(overall.contains("OK"), "{overall}");
    for kept in [
        "DynamicUser=",
        "ProtectSystem=",
        "NoNewPrivileges=",
        "PrivateDevices=",
        "CapabilityBoundingSet=",
    ] {
        let line = report
            .lines()
            .find(|l| l.contains(kept))
            .unwrap_or_else(|| panic!("{kept} rated:\n{report}"));
        assert!(line.trim_start().starts_with('✓'), "{line}");
    }
}

#[test]
fn the_kubernetes_manifests_are_valid_and_run_the_node_as_a_hardened_daemonset() {
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/cairn.yaml");
    let checked = Command::new(&crate::tools::tools().kubernetes_validate)
        .args(["--strict", "--kubernetes-version", "1.31.0", manifests])
        .output()
        .expect("kubernetes-validate");
    let said = String::from_utf8_lossy(&checked.stdout).into_owned()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "kubernetes-validate: {said}");
    for resource in ["configmap/cairn-config", "daemonset/cairn", "service/cairn"] {
        assert!(
            said.contains(&format!("passed for resource {resource}")),
            "{resource} checked: {said}"
        );
    }
    let text = std::fs::read_to_string(manifests).expect("manifests");
    assert_hardened_daemonset(&text);
    assert!(text.contains("secretName: cairn-swarm-key"));
    assert_config_reads(&text);
}

/// What running a cache on a cluster needs, in `manifests` (the file or the chart's output).
fn assert_hardened_daemonset(text: &str) {
    for needed in [
        "hostNetwork: true",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "capabilities: {drop: [\"ALL\"]}",
        "path: /healthz",
        "secretName: ",
        "internalTrafficPolicy: Local",
        "type: DirectoryOrCreate",
    ] {
        assert!(text.contains(needed), "the manifests lack {needed:?}");
    }
    assert!(
        text.contains("\"chown-store\", \"--user\""),
        "the store is handed to the node's user by the node's own binary"
    );
}

/// What the ConfigMap in `text` carries is a cairn.toml this build reads.
fn assert_config_reads(text: &str) {
    let start = text
        .find("cairn.toml: |")
        .expect("cairn.toml in the ConfigMap");
    let toml: String = text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("cairn.toml");
    std::fs::write(&config, &toml).expect("cairn.toml");
    let status = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["policy", "explain", "npm:x@1.0.0", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:9"])
        .output()
        .expect("cairn");
    let said = String::from_utf8_lossy(&status.stderr);
    // It reads the file and then finds no node: not a settings error.
    assert!(said.contains("no node answers"), "{said}");
}

fn helm(args: &[&str]) -> std::process::Output {
    Command::new(&crate::tools::tools().helm)
        .args(args)
        .output()
        .expect("helm")
}

fn validate(manifests: &Path) -> String {
    let checked = Command::new(&crate::tools::tools().kubernetes_validate)
        .args(["--strict", "--kubernetes-version", "1.31.0"])
        .arg(manifests)
        .output()
        .expect("kubernetes-validate");
    let said = String::from_utf8_lossy(&checked.stdout).into_owned()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "kubernetes-validate: {said}");
    said
}

#[test]
fn the_helm_chart_lints_and_renders_valid_hardened_resources() {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/cairn");
    let linted = helm(&["lint", "--strict", chart]);
    assert!(
        linted.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, extra, secret, resources) in [
        (
            "existing-secret",
            &[][..],
            "cairn-swarm-key",
            &["configmap/cache-config", "daemonset/cache", "service/cache"][..],
        ),
        (
            "made-secret",
            &["--set", "swarmKey.value=/key/swarm/psk/1.0.0/"][..],
            "cache-swarm-key",
            &[
                "configmap/cache-config",
                "daemonset/cache",
                "service/cache",
                "secret/cache-swarm-key",
            ][..],
        ),
    ] {
        let mut args = vec!["template", "cache", chart, "--namespace", "cairn"];
        args.extend_from_slice(extra);
        let rendered = helm(&args);
        let text = String::from_utf8_lossy(&rendered.stdout).into_owned();
        assert!(
            rendered.status.success(),
            "helm template ({name}): {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let file = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &text).expect("rendered manifests");
        let said = validate(&file);
        for resource in resources {
            assert!(
                said.contains(&format!("passed for resource {resource}")),
                "{resource} checked ({name}): {said}"
            );
        }
        assert_hardened_daemonset(&text);
        assert!(
            text.contains(&format!("secretName: {secret}")),
            "{name}: {text}"
        );
        assert_config_reads(&text);
    }
    let refused = helm(&[
        "template",
        "cache",
        chart,
        "--set",
        "swarmKey.existingSecret=",
    ]);
    assert!(!refused.status.success(), "rendered without a swarm key");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("swarmKey.existingSecret or swarmKey.value is required"),
        "{said}"
    );
}
