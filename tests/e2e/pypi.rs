//! The real pip and uv through the `cairn` binary, in front of the fake index.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fake_pypi::{FakePypi, Index};
use crate::support::{Cairn, assert_success, get, get_with};

/// A project with a dependency spelled un-normalised, a yanked release and a file to tamper.
pub(crate) fn index(work: &Path) -> Index {
    let mut i = Index::default();
    i.wheel(work, "alpha-lib", "1.0.0", &["Beta_Core>=2"], None)
        .wheel(work, "Beta_Core", "2.0.0", &[], None)
        .wheel(work, "Beta_Core", "2.1.0", &[], Some("broken build"))
        .wheel(work, "evil-pkg", "1.0.0", &[], None);
    i
}

/// Run a Python client with nothing from the machine's pip configuration.
pub(crate) fn python_tool(program: &Path, args: &[&str], home: &Path) -> Output {
    Command::new(program)
        .args(args)
        .env("HOME", home)
        .env("PIP_FIND_LINKS", "")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("UV_CACHE_DIR", home.join("uv-cache"))
        .env_remove("PIP_INDEX_URL")
        .env_remove("UV_INDEX_URL")
        .env_remove("UV_DEFAULT_INDEX")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (it must be installed): {e}",
                program.display()
            )
        })
}

/// `uv pip install alpha-lib` into a new venv at `dir`, with no cache.
fn uv_install(dir: &Path, index_url: &str, home: &Path) -> Output {
    let python = format!("{}", venv(dir).join("bin/python").display());
    let args = [
        "pip",
        "install",
        "--no-cache",
        "--python",
        &python,
        "--index-url",
        index_url,
        "alpha-lib",
    ];
    python_tool(&crate::tools::tools().uv, &args, home)
}

pub(crate) fn venv(dir: &Path) -> PathBuf {
    let output = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .output()
        .expect("python3");
    assert_success(&output, "python3 -m venv");
    dir.to_path_buf()
}

/// Install `requirement` from `index_url` with pip and with uv, each into a fresh venv below
/// `dir` (no client cache): the two venvs, after failing the test when either install failed.
pub(crate) fn install_with_pip_and_uv(
    dir: &Path,
    index_url: &str,
    requirement: &str,
    what: &str,
) -> [PathBuf; 2] {
    let home = dir.join("home");
    let pip_venv = venv(&dir.join("pip-venv"));
    crate::support::assert_success(
        &python_tool(
            &pip_venv.join("bin/pip"),
            &[
                "install",
                "--no-cache-dir",
                "--index-url",
                index_url,
                requirement,
            ],
            &home,
        ),
        &format!("pip install {what}"),
    );
    let uv_venv = venv(&dir.join("uv-venv"));
    crate::support::assert_success(
        &python_tool(
            &crate::tools::tools().uv,
            &[
                "pip",
                "install",
                "--no-cache",
                "--python",
                uv_venv.join("bin/python").to_str().expect("path"),
                "--index-url",
                index_url,
                requirement,
            ],
            &home,
        ),
        &format!("uv pip install {what}"),
    );
    [pip_venv, uv_venv]
}

/// `module.VERSION` as the venv's Python imports it (the fake wheels define it).
pub(crate) fn module_version(venv: &Path, module: &str) -> String {
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", &format!("import {module}; print({module}.VERSION)")])
        .output()
        .expect("python");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn version_of(venv: &Path, module: &str) -> String {
    let output = Command::new(venv.join("bin/python"))
        .args(["-c", &format!("import {module}; print({module}.VERSION)")])
        .output()
        .expect("python");
    assert_success(&output, "import");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap_or_default()
}

#[test]
fn pip_and_uv_install_through_cairn_then_offline_with_caches_disabled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakePypi::start(index(&tmp.path().join("wheels")));
    let data = tmp.path().join("data");
    let cairn = Cairn::start(&data, &["--pypi-upstream", &fake.simple_url]);
    let index_url = format!("{}/pypi/simple/", cairn.url);
    let home = tmp.path().join("home");

    let pip_venv = venv(&tmp.path().join("venv-pip"));
    let pip = pip_venv.join("bin/pip");
    let install = [
        "install",
        "--no-cache-dir",
        "--index-url",
        &index_url,
        "alpha-lib",
    ];
    assert_success(&python_tool(&pip, &install, &home), "pip install");
    assert_eq!(version_of(&pip_venv, "alpha_lib"), "1.0.0");
    assert_eq!(
        version_of(&pip_venv, "beta_core"),
        "2.0.0",
        "the yanked 2.1.0 was chosen"
    );

    // uv reads the now-cached wheels by HTTP range.
    let uv_venv = tmp.path().join("venv-uv");
    assert_success(&uv_install(&uv_venv, &index_url, &home), "uv pip install");
    assert_eq!(version_of(&uv_venv, "beta_core"), "2.0.0");

    // Offline on the same address, fresh venv, caches disabled: upstream is never asked.
    let listen = format!("127.0.0.1:{}", port_of(&cairn.url));
    cairn.stop();
    let upstream_requests = fake.total_hits();
    let _cairn = Cairn::start(
        &data,
        &[
            "--offline",
            "--pypi-upstream",
            &fake.simple_url,
            "--listen",
            &listen,
        ],
    );
    let offline_venv = venv(&tmp.path().join("venv-offline"));
    assert_success(
        &python_tool(&offline_venv.join("bin/pip"), &install, &home),
        "offline pip install",
    );
    assert_eq!(version_of(&offline_venv, "beta_core"), "2.0.0");
    let uv_offline = tmp.path().join("venv-uv-offline");
    assert_success(
        &uv_install(&uv_offline, &index_url, &home),
        "offline uv pip install",
    );
    assert_eq!(
        fake.total_hits(),
        upstream_requests,
        "offline node contacted upstream"
    );
}

#[test]
fn a_file_that_does_not_match_its_sha256_fails_and_is_never_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakePypi::start(index(&tmp.path().join("wheels")));
    fake.tamper("evil_pkg-1.0.0-py3-none-any.whl");
    let data = tmp.path().join("data");
    let cairn = Cairn::start(&data, &["--pypi-upstream", &fake.simple_url]);
    let venv = venv(&tmp.path().join("venv"));
    let index_url = format!("{}/pypi/simple/", cairn.url);
    let output = python_tool(
        &venv.join("bin/pip"),
        &[
            "install",
            "--no-cache-dir",
            "--index-url",
            &index_url,
            "evil-pkg",
        ],
        &tmp.path().join("home"),
    );
    assert!(!output.status.success(), "pip installed a tampered wheel");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("502"),
        "pip's error does not show the 502:\n{stderr}"
    );
    assert!(
        std::fs::read_dir(data.join("blobs"))
            .expect("blobs")
            .next()
            .is_none()
    );
    let wheel = "evil_pkg-1.0.0-py3-none-any.whl";
    crate::support::assert_refused_and_nothing_stored(
        &crate::support::get(&format!("{}/pypi/files/evil-pkg/{wheel}", cairn.url)),
        502,
        &data,
        "pypi",
        &format!("evil-pkg/{wheel}"),
        &[&fake.index().file(wheel).bytes],
    );
    assert!(cairn.metric("cairn_digest_mismatches_total{ecosystem=\"pypi\"}") >= 1.0);
}

#[test]
fn simple_api_negotiation_redirects_yanks_and_ranges() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = FakePypi::start(index(&tmp.path().join("wheels")));
    let cairn = Cairn::start(
        &tmp.path().join("data"),
        &["--pypi-upstream", &fake.simple_url],
    );
    let simple = format!("{}/pypi/simple/", cairn.url);

    // Other spellings redirect to the normalised name (reqwest follows redirects).
    let page = get_with(
        &format!("{simple}Beta_Core"),
        &[("accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_eq!(page.status, 200);
    assert_eq!(
        page.headers["content-type"],
        "application/vnd.pypi.simple.v1+json"
    );
    let json: serde_json::Value = serde_json::from_slice(&page.body).expect("json");
    let yanked = json["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["filename"] == "Beta_Core-2.1.0-py3-none-any.whl")
        .expect("yanked file listed");
    assert_eq!(yanked["yanked"], "broken build");
    assert_eq!(
        yanked["size"].as_u64(),
        Some(
            fake.index()
                .file("Beta_Core-2.1.0-py3-none-any.whl")
                .bytes
                .len() as u64
        )
    );
    assert!(
        yanked["url"]
            .as_str()
            .expect("url")
            .starts_with(&format!("{}/pypi/files/beta-core/", cairn.url))
    );

    let html = get(&format!("{simple}beta-core/"));
    assert_eq!(html.headers["content-type"], "text/html; charset=utf-8");
    assert!(
        html.text.contains("data-yanked=\"broken build\""),
        "{}",
        html.text
    );
    assert!(html.text.contains("#sha256="), "{}", html.text);
    assert_eq!(
        fake.hits("simple/beta-core/"),
        1,
        "both forms come from one upstream document"
    );

    // Range reads of a cached file return exactly the bytes asked for.
    let file = fake.index().file("Beta_Core-2.0.0-py3-none-any.whl");
    let url = format!("{}/pypi/files/beta-core/{}", cairn.url, file.filename);
    assert_eq!(get(&url).body, file.bytes, "first read fills the cache");
    let len = file.bytes.len();
    for (range, start, end) in [
        ("bytes=10-99".to_owned(), 10, 99),
        (format!("bytes={}-", len - 22), len - 22, len - 1),
        ("bytes=-100".to_owned(), len - 100, len - 1),
    ] {
        let part = get_with(&url, &[("range", &range)]);
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(&part.body[..], &file.bytes[start..=end], "{range}");
        assert_eq!(
            part.headers["content-range"],
            format!("bytes {start}-{end}/{len}").as_str()
        );
    }
    assert_eq!(
        get_with(&url, &[("range", &format!("bytes={len}-"))]).status,
        416
    );
    assert_eq!(get(&format!("{simple}..%2f/")).status, 400);

    // PEP 658: upstream has no core metadata, so Cairn advertises it and serves it from the wheel.
    let entry = json["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["filename"] == "Beta_Core-2.0.0-py3-none-any.whl")
        .expect("wheel listed");
    assert_eq!(entry["core-metadata"], true);
    assert!(html.text.contains("data-core-metadata=\"true\""));
    let alpha = fake.index().file("alpha_lib-1.0.0-py3-none-any.whl");
    let metadata = get(&format!(
        "{}/pypi/files/alpha-lib/{}.metadata",
        cairn.url, alpha.filename
    ));
    assert_eq!(metadata.status, 200, "{}", metadata.text);
    assert_eq!(
        metadata.text,
        "Metadata-Version: 2.1\nName: alpha-lib\nVersion: 1.0.0\nRequires-Dist: Beta_Core>=2\n"
    );
    let wheel_path = format!("packages/{}/{}", &alpha.sha256()[..8], alpha.filename);
    assert_eq!(
        fake.hits(&wheel_path),
        1,
        "the wheel is fetched once for its metadata"
    );
    assert_eq!(
        get(&format!(
            "{}/pypi/files/alpha-lib/{}",
            cairn.url, alpha.filename
        ))
        .body,
        alpha.bytes
    );
    assert_eq!(fake.hits(&wheel_path), 1, "and then served from the cache");
}
