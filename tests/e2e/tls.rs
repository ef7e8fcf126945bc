//! `serve --tls-cert --tls-key`: the real npm installs through `https://` with a test CA, the
//! documents it gets name `https://` tarball URLs, HTTP/2 is negotiated by ALPN, and a renewed
//! certificate is served without a restart; the real cargo, set up by `cairn setup cargo
//! --ca-file`, fetches over HTTP/2, and pip installs trusting the CA file; uv and apt-get
//! install over `https://` trusting the CA as `setup --ca-file` says. And the abuse: a key
//! that is not the certificate's, half a pair, and a plain-HTTP client on the TLS port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::fake_npm::{FakeNpm, Registry, noise};
use crate::support::{Cairn, ClientEnv, assert_success, project, wait_for};

fn openssl(args: &[&str], dir: &Path) {
    crate::support::openssl(dir, args, None);
}

/// A test CA in `dir` (`ca.crt`, `ca.key`).
pub(crate) fn ca(dir: &Path) -> PathBuf {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=Cairn test CA",
            "-days",
            "2",
        ],
        dir,
    );
    dir.join("ca.crt")
}

/// A certificate for 127.0.0.1 signed by the CA, as `NAME.crt` and `NAME.key` in `dir`.
fn server_cert(dir: &Path, name: &str, serial: &str) -> (PathBuf, PathBuf) {
    let (crt, key, csr) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
        dir,
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            &crt,
        ],
        dir,
    );
    (dir.join(crt), dir.join(key))
}

/// A test CA in `dir` and a certificate for 127.0.0.1 it signed with `serial`: the CA's path,
/// the certificate's and its key's.
fn test_ca(dir: &Path, serial: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("certs");
    let ca = ca(dir);
    let (crt, key) = server_cert(dir, "server", serial);
    (ca, crt, key)
}

/// The serial number of the certificate the node at `address` serves now.
fn served_serial(address: &str, ca: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {address} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            ca.display()
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn registry() -> Registry {
    let mut r = Registry::default();
    r.publish(
        "secure-pkg",
        "1.0.0",
        &[],
        &[("data.bin", noise(200 << 10, 71))],
    );
    r
}

#[test]
fn npm_installs_over_https_with_http2_and_a_renewed_certificate_needs_no_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    let (ca, crt, key) = test_ca(&certs, "0x1001");
    let fake = FakeNpm::start(registry());
    let node = Cairn::start(
        &tmp.path().join("data"),
        &[
            "--npm-upstream",
            &fake.url,
            "--tls-cert",
            crt.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
        ],
    );
    assert!(node.url.starts_with("https://127.0.0.1:"), "{}", node.url);

    // The real npm, trusting the test CA.
    let env = ClientEnv::new(&tmp.path().join("client"), &node.npm());
    let npmrc = env.dir.join("npmrc");
    let mut config = std::fs::read_to_string(&npmrc).expect("npmrc");
    config.push_str(&format!("cafile={}\n", ca.display()));
    std::fs::write(&npmrc, config).expect("npmrc");
    let dir = project(
        &tmp.path().join("app"),
        serde_json::json!({ "secure-pkg": "1.0.0" }),
    );
    assert_success(
        &env.run("npm", &["install"], &dir),
        "npm install over https",
    );
    assert_eq!(fake.hits("secure-pkg/-/secure-pkg-1.0.0.tgz"), 1);
    let lock = std::fs::read_to_string(dir.join("package-lock.json")).expect("lockfile");
    assert!(
        lock.contains(&format!("{}secure-pkg/-/secure-pkg-1.0.0.tgz", node.npm())),
        "the tarball URL names the node over https: {lock}"
    );

    // This machine's purge reaches the node over HTTPS (loopback: its name is not checked).
    let address = node.url.trim_start_matches("https://").to_owned();
    let purged = crate::bundle::cairn(&[
        "purge",
        "npm:secure-pkg",
        "--listen",
        &address,
        "--data-dir",
        tmp.path().join("data").to_str().expect("path"),
    ]);
    assert_success(&purged, "cairn purge through the node over https");
    assert!(node.logs().contains("purged"), "{}", node.logs());

    // HTTP/2 by ALPN.
    let version = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--http2",
            "--cacert",
        ])
        .arg(&ca)
        .arg(format!("{}secure-pkg", node.npm()))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&version.stdout), "2");

    // A renewal: new files in place, served within the reload check, no restart.
    assert_eq!(served_serial(&address, &ca), "serial=1001");
    let (renewed_crt, renewed_key) = server_cert(&certs, "renewed", "0x2002");
    std::fs::copy(&renewed_key, &key).expect("key");
    std::fs::copy(&renewed_crt, &crt).expect("cert");
    wait_for(
        Duration::from_secs(60),
        "the renewed certificate served",
        || (served_serial(&address, &ca) == "serial=2002").then_some(()),
    );
    assert!(
        node.logs().contains("TLS certificate loaded again"),
        "{}",
        node.logs()
    );

    // A plain-HTTP client on the TLS port gets nothing served.
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg(format!("http://{address}/healthz"))
        .output()
        .expect("curl");
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
}

#[test]
fn serve_refuses_a_key_that_is_not_the_certificates_and_half_a_pair() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs");
    ca(&certs);
    let (crt, _) = server_cert(&certs, "one", "0x1");
    let (_, other_key) = server_cert(&certs, "two", "0x2");
    let serve = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--listen", "127.0.0.1:0", "--no-p2p", "--data-dir"])
            .arg(tmp.path().join("data"))
            .args(args)
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .output()
            .expect("cairn")
    };
    let crt_arg = crt.to_str().expect("path");
    let mismatch = serve(&[
        "--tls-cert",
        crt_arg,
        "--tls-key",
        other_key.to_str().expect("path"),
    ]);
    assert!(!mismatch.status.success());
    let stderr = String::from_utf8_lossy(&mismatch.stderr);
    assert!(
        stderr.contains("does not go with") && stderr.contains("one.crt"),
        "{stderr}"
    );
    let half = serve(&["--tls-cert", crt_arg]);
    assert!(!half.status.success());
    assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-key"));
    let missing = serve(&["--tls-cert", crt_arg, "--tls-key", "/nonexistent/key.pem"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/key.pem"));
}

#[test]
fn cargo_fetches_over_https_and_http2_as_setup_writes_it_and_pip_trusts_the_ca_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    let (ca, crt, key) = test_ca(&certs, "0x3003");
    let cargo_fake = crate::fake_cargo::FakeCargo::start(crate::cargo::registry());
    let pypi_fake =
        crate::fake_pypi::FakePypi::start(crate::pypi::index(&tmp.path().join("wheels")));
    let node = Cairn::start(
        &tmp.path().join("data"),
        &[
            "--cargo-upstream",
            &cargo_fake.index_url,
            "--pypi-upstream",
            &pypi_fake.simple_url,
            "--tls-cert",
            crt.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
        ],
    );

    // `setup cargo --apply --ca-file` writes the source replacement and `http.cainfo`.
    let home = tmp.path().join("cargo-home");
    std::fs::create_dir_all(&home).expect("cargo home");
    let setup = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["setup", "cargo", "--apply", "--url"])
        .arg(format!("{}/cargo/index/", node.url))
        .arg("--ca-file")
        .arg(&ca)
        .arg("--config")
        .arg(tmp.path().join("cairn.toml"))
        .env("CARGO_HOME", &home)
        .env("XDG_CONFIG_HOME", tmp.path().join("xdg"))
        .output()
        .expect("cairn setup");
    assert_success(&setup, "cairn setup cargo --apply --ca-file");
    let config = std::fs::read_to_string(home.join("config.toml")).expect("config.toml");
    assert!(config.contains("cainfo"), "{config}");
    assert!(
        config.contains(&format!("sparse+{}/cargo/index/", node.url)),
        "{config}"
    );

    let before = node.logs().len();
    let app = crate::cargo::project(&tmp.path().join("app"), &[("app-core", "1.2")]);
    assert_success(
        &crate::cargo::cargo(&home, &app, &["fetch"]),
        "cargo fetch over https",
    );
    assert_eq!(
        cargo_fake.hits("files/ap/p-/app-core/app-core-1.2.0.crate"),
        1
    );
    let during = node.logs()[before..].to_owned();
    assert!(
        during.contains("TLS connection") && !during.contains("alpn=\"http/1.1\""),
        "cargo negotiated HTTP/2 on every connection: {during}"
    );
    assert!(during.contains("alpn=\"h2\""), "{during}");

    // pip: `setup pip --ca-file` says to set `global.cert`; pip with that CA installs.
    let index_url = format!("{}/pypi/simple/", node.url);
    let setup = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["setup", "pip", "--url", &index_url, "--ca-file"])
        .arg(&ca)
        .env("XDG_CONFIG_HOME", tmp.path().join("xdg"))
        .output()
        .expect("cairn setup");
    assert_success(&setup, "cairn setup pip --ca-file");
    let printed = String::from_utf8_lossy(&setup.stdout).into_owned();
    assert!(
        printed.contains(&format!("global.cert {}", ca.display())),
        "{printed}"
    );
    // pip's requests takes a CA bundle named in the environment over its own `cert`
    // setting: none is left set here (the README says so too).
    let venv = crate::pypi::venv(&tmp.path().join("venv"));
    let install = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--no-cache-dir",
            "--index-url",
            &index_url,
            "alpha-lib",
        ])
        .env("HOME", tmp.path().join("home"))
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_FIND_LINKS", "")
        .env("PIP_CERT", &ca)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("PIP_INDEX_URL")
        .output()
        .expect("pip");
    assert_success(&install, "pip install over https");
}

#[test]
fn uv_and_apt_get_install_over_https_trusting_the_test_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    let (ca, crt, key) = test_ca(&certs, "0x3004");
    let pypi_fake =
        crate::fake_pypi::FakePypi::start(crate::pypi::index(&tmp.path().join("wheels")));
    let archive = crate::fake_apt::build_archive(&tmp.path().join("archive"));
    let apt_fake = crate::fake_apt::serve(&archive);
    let node = Cairn::start(
        &tmp.path().join("data"),
        &[
            "--pypi-upstream",
            &pypi_fake.simple_url,
            "--apt-upstream",
            &format!("test={}", apt_fake.url),
            "--apt-keyring",
            &format!("test={}", archive.keyring.display()),
            "--tls-cert",
            crt.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
        ],
    );
    assert!(node.url.starts_with("https://"), "{}", node.url);

    // uv, with the CA where `setup uv --ca-file` says to put it.
    let venv = crate::pypi::venv(&tmp.path().join("venv"));
    let python = venv.join("bin/python");
    let install = Command::new(&crate::tools::tools().uv)
        .args(["pip", "install", "--no-cache", "--python"])
        .arg(&python)
        .args([
            "--index-url",
            &format!("{}/pypi/simple/", node.url),
            "alpha-lib",
        ])
        .env("HOME", tmp.path().join("home"))
        .env("SSL_CERT_FILE", &ca)
        .env_remove("UV_INDEX_URL")
        .env_remove("UV_DEFAULT_INDEX")
        .env_remove("UV_NATIVE_TLS")
        .output()
        .expect("uv");
    assert_success(&install, "uv pip install over https");

    // apt-get, with the CA as `setup apt --ca-file` sets it.
    let line = format!(
        "deb [signed-by={}] {}/apt/test {} {}",
        archive.keyring.display(),
        node.url,
        crate::fake_apt::SUITE,
        crate::fake_apt::COMPONENT
    );
    let apt = crate::fake_apt::AptClient::new(&tmp.path().join("apt"), &line);
    let trust = format!("Acquire::https::CaInfo={}", ca.display());
    assert_success(
        &apt.run(&["-o", &trust, "update"]),
        "apt-get update over https",
    );
    assert_success(
        &apt.run(&[
            "-o",
            &trust,
            "install",
            "--download-only",
            "-y",
            "cairn-hello",
        ]),
        "apt-get install over https",
    );
    let deb = archive.deb("cairn-hello");
    let file = deb.filename.rsplit('/').next().expect("file name");
    assert!(
        apt.archives_dir().join(file).is_file(),
        "{file} not downloaded"
    );
}
