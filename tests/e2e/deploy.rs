//! What `deploy/` ships is checked, not only written: the systemd unit passes `systemd-analyze
//! verify` (its `ExecStart` pointed at the binary under test, since the unit names the path an
//! operator installs to) and its hardening rates OK in `systemd-analyze security` (an exposure
//! of 2.0 at most, with the directives the node cannot do without explained in the unit).

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
