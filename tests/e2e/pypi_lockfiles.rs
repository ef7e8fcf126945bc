//! Python lockfiles against a project published for many platforms: `cairn prefetch` and
//! `cairn export` take only the wheels that fit the platform and Python asked for (or this
//! machine's), `pip freeze` output without hashes resolves through the index, and the real pip
//! installs the chosen wheel from the imported bundle on an offline node.

use std::path::Path;
use std::process::Command;

use crate::bundle::{cairn, text};
use crate::fake_pypi::{FakePypi, Index};
use crate::support::{Cairn, assert_success};

/// This machine's Python minor version (the one the test venvs run).
fn host_minor() -> u32 {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.version_info[1])"])
        .output()
        .expect("python3 must be installed");
    assert_success(&out, "python3");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("minor")
}

/// The wheel architecture of this machine and another one.
fn arches() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "aarch64" => ("aarch64", "x86_64"),
        _ => ("x86_64", "aarch64"),
    }
}

/// `multi` 1.0 for manylinux on two architectures, musllinux, macOS and Windows, three
/// Pythons, and an sdist. Returns the index and the name of the wheel this machine takes.
fn multi_platform(work: &Path, index: &mut Index) -> String {
    let m = host_minor();
    let (arch, other) = arches();
    let own = format!("cp3{m}-cp3{m}");
    let chosen = format!("{own}-manylinux_2_17_{arch}.manylinux2014_{arch}");
    for tag in [
        chosen.clone(),
        format!("{own}-manylinux_2_17_{other}"),
        format!("{own}-musllinux_1_1_{arch}"),
        format!("{own}-macosx_11_0_arm64"),
        format!("{own}-win_amd64"),
        format!("cp3{0}-cp3{0}-manylinux_2_17_{arch}", m + 1),
        format!("cp3{0}-cp3{0}-manylinux_2_17_{arch}", m - 1),
    ] {
        index.wheel_tagged(work, "multi", "1.0", &tag);
    }
    index.sdist("multi", "1.0");
    format!("multi-1.0-{chosen}.whl")
}

/// Every `multi` file, as `(filename, upstream hit path)`.
fn multi_files(pypi: &FakePypi) -> Vec<(String, String)> {
    pypi.index()
        .files()
        .iter()
        .filter(|f| f.project == "multi")
        .map(|f| {
            (
                f.filename.clone(),
                format!("packages/{}/{}", &f.sha256()[..8], f.filename),
            )
        })
        .collect()
}

/// The PyPI files (not derived `.metadata`) a store holds, sorted.
fn held_pypi_files(data_dir: &Path) -> Vec<String> {
    let store = cairn_mirror::store::Store::attach(data_dir).expect("store");
    let mut keys: Vec<String> = store
        .index()
        .all_artifacts()
        .expect("artifacts")
        .into_iter()
        .filter(|(eco, key, _)| eco == "pypi" && !key.ends_with(".metadata"))
        .map(|(_, key, _)| key)
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_platform_filter_bundles_only_the_matching_wheel_and_pip_installs_it_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let mut index = Index::default();
    let chosen = multi_platform(&t.join("wheels"), &mut index);
    let pypi = FakePypi::start(index);
    let data_a = t.join("a");
    let a = Cairn::start(&data_a, &["--pypi-upstream", &pypi.simple_url]);

    // A hashed requirements file naming every file of the release, as hash generators write.
    let files = multi_files(&pypi);
    assert_eq!(files.len(), 8);
    let mut requirements = String::from("multi==1.0");
    for (name, _) in &files {
        let sha = pypi.index().file(name).sha256();
        requirements.push_str(&format!(" \\\n    --hash=sha256:{sha}"));
    }
    let req = t.join("requirements.txt");
    std::fs::write(&req, requirements + "\n").expect("write");

    let listen = format!("127.0.0.1:{}", a.url.rsplit(':').next().unwrap_or_default());
    let (arch, _) = arches();
    let platform = format!("manylinux_2_17_{arch}");
    let python = format!("3.{}", host_minor());
    let data_a_arg = data_a.to_str().expect("path");
    let req_arg = req.to_str().expect("path");
    let filter = ["--platform", &platform, "--python-version", &python];
    let mut args = vec![
        "prefetch",
        "--data-dir",
        data_a_arg,
        "--listen",
        &listen,
        "--lockfile",
        req_arg,
    ];
    args.extend(filter);
    let out = cairn(&args);
    assert!(out.status.success(), "prefetch failed:\n{}", text(&out));
    assert!(
        text(&out).contains(&format!("pypi multi==1.0: {chosen}\n")),
        "the report names the chosen file:\n{}",
        text(&out)
    );
    for (name, hit) in &files {
        let expected = usize::from(*name == chosen);
        assert_eq!(pypi.hits(hit), expected, "upstream fetches of {name}");
    }

    // Every platform's files are not all in the node, so an unfiltered export refuses…
    let car = t.join("multi.car");
    let car_arg = car.to_str().expect("path");
    let out = cairn(&[
        "export",
        "--data-dir",
        data_a_arg,
        "-o",
        car_arg,
        "--lockfile",
        req_arg,
        "--all-platforms",
    ]);
    assert!(!out.status.success(), "every platform exported");
    assert!(
        text(&out).contains("7 of the files the lockfiles name are not in this node"),
        "{}",
        text(&out)
    );
    // …and the filtered one bundles exactly the chosen wheel.
    let mut args = vec![
        "export",
        "--data-dir",
        data_a_arg,
        "-o",
        car_arg,
        "--lockfile",
        req_arg,
    ];
    args.extend(filter);
    let out = cairn(&args);
    assert!(out.status.success(), "export failed:\n{}", text(&out));

    // A uv.lock naming the same release (every file, with its URL and hash) takes the same one.
    let mut uv_lock = String::from(
        "version = 1\nrequires-python = \">=3.8\"\n\n[[package]]\nname = \"multi\"\n\
         version = \"1.0\"\nsource = { registry = \"http://cache.invalid/pypi/simple\" }\n",
    );
    let entry = |name: &str| {
        let sha = pypi.index().file(name).sha256();
        format!(
            "{{ url = \"http://cache.invalid/pypi/files/multi/{name}\", hash = \"sha256:{sha}\" }}"
        )
    };
    let wheels: Vec<String> = files
        .iter()
        .filter(|(n, _)| n.ends_with(".whl"))
        .map(|(n, _)| format!("    {},\n", entry(n)))
        .collect();
    uv_lock.push_str(&format!(
        "sdist = {}\nwheels = [\n{}]\n",
        entry("multi-1.0.tar.gz"),
        wheels.concat()
    ));
    let uv_dir = t.join("uv-project");
    std::fs::create_dir_all(&uv_dir).expect("dir");
    std::fs::write(uv_dir.join("uv.lock"), uv_lock).expect("uv.lock");
    let uv_car = t.join("uv.car");
    let uv_lock_path = uv_dir.join("uv.lock");
    let mut args = vec![
        "export",
        "--data-dir",
        data_a_arg,
        "-o",
        uv_car.to_str().expect("path"),
        "--lockfile",
        uv_lock_path.to_str().expect("path"),
    ];
    args.extend(filter);
    let out = cairn(&args);
    assert!(
        out.status.success(),
        "uv.lock export failed:\n{}",
        text(&out)
    );
    let data_c = t.join("c");
    let out = cairn(&[
        "import",
        "--data-dir",
        data_c.to_str().expect("path"),
        uv_car.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "import failed:\n{}", text(&out));
    assert_eq!(held_pypi_files(&data_c), [format!("multi/{chosen}")]);
    a.stop();

    let data_b = t.join("b");
    let data_b_arg = data_b.to_str().expect("path");
    let out = cairn(&["import", "--data-dir", data_b_arg, car_arg]);
    assert!(out.status.success(), "import failed:\n{}", text(&out));
    assert_eq!(held_pypi_files(&data_b), [format!("multi/{chosen}")]);

    // The real pip installs it from the offline node, upstream dead.
    let b = Cairn::start(
        &data_b,
        &[
            "--offline",
            "--listen",
            &listen,
            "--pypi-upstream",
            "http://127.0.0.1:9/",
        ],
    );
    let venv = crate::pypi::venv(&t.join("venv"));
    let index_url = format!("{}/pypi/simple/", b.url);
    let out = crate::pypi::python_tool(
        &venv.join("bin/pip"),
        &[
            "install",
            "--no-cache-dir",
            "--require-hashes",
            "--index-url",
            &index_url,
            "-r",
            req_arg,
        ],
        &t.join("home"),
    );
    assert_success(&out, "pip install from the bundle");
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", "import multi; print(multi.TAG)"])
        .output()
        .expect("python");
    assert_success(&out, "import multi");
    assert!(
        chosen.contains(String::from_utf8_lossy(&out.stdout).trim()),
        "installed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    b.stop();
}

#[test]
fn pip_freeze_output_resolves_through_the_index_for_this_machine() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let work = t.join("wheels");
    let mut index = crate::pypi::index(&work);
    let chosen = multi_platform(&work, &mut index);
    index.sdist("only-src", "0.5");
    let pypi = FakePypi::start(index);
    let data_a = t.join("a");
    let a = Cairn::start(&data_a, &["--pypi-upstream", &pypi.simple_url]);
    let listen = format!("127.0.0.1:{}", a.url.rsplit(':').next().unwrap_or_default());
    let data_a_arg = data_a.to_str().expect("path");

    // `pip freeze` output: pinned names, no hashes, one project with only an sdist.
    let freeze = t.join("requirements-frozen.txt");
    std::fs::write(
        &freeze,
        "alpha-lib==1.0.0\nBeta_Core==2.0.0\nmulti==1.0\nonly-src==0.5\n",
    )
    .expect("write");
    let freeze_arg = freeze.to_str().expect("path");
    let out = cairn(&[
        "prefetch",
        "--data-dir",
        data_a_arg,
        "--listen",
        &listen,
        "--lockfile",
        freeze_arg,
    ]);
    let report = text(&out);
    assert!(out.status.success(), "prefetch failed:\n{report}");
    assert!(report.contains("pypi: files for Python 3."), "{report}");
    for line in [
        "pypi alpha-lib==1.0.0: alpha_lib-1.0.0-py3-none-any.whl".to_owned(),
        "pypi beta-core==2.0.0: Beta_Core-2.0.0-py3-none-any.whl".to_owned(),
        format!("pypi multi==1.0: {chosen}"),
        "pypi only-src==0.5: only-src-0.5.tar.gz".to_owned(),
    ] {
        assert!(report.contains(&format!("{line}\n")), "{line}:\n{report}");
    }
    for (name, hit) in multi_files(&pypi) {
        assert_eq!(pypi.hits(&hit), usize::from(name == chosen), "{name}");
    }

    // The export resolves the same files through the pages the node holds.
    let car = t.join("frozen.car");
    let car_arg = car.to_str().expect("path");
    let out = cairn(&[
        "export",
        "--data-dir",
        data_a_arg,
        "-o",
        car_arg,
        "--lockfile",
        freeze_arg,
    ]);
    assert!(out.status.success(), "export failed:\n{}", text(&out));
    let data_b = t.join("b");
    let out = cairn(&[
        "import",
        "--data-dir",
        data_b.to_str().expect("path"),
        car_arg,
    ]);
    assert!(out.status.success(), "import failed:\n{}", text(&out));
    assert_eq!(
        held_pypi_files(&data_b),
        [
            "alpha-lib/alpha_lib-1.0.0-py3-none-any.whl".to_owned(),
            "beta-core/Beta_Core-2.0.0-py3-none-any.whl".to_owned(),
            format!("multi/{chosen}"),
            "only-src/only-src-0.5.tar.gz".to_owned(),
        ]
    );

    // A range or a bare name is refused, naming the line; nothing is fetched for it.
    let bad = t.join("requirements-bad.txt");
    std::fs::write(&bad, "multi==1.0\nflask>=2\n").expect("write");
    let out = cairn(&[
        "prefetch",
        "--data-dir",
        data_a_arg,
        "--listen",
        &listen,
        "--lockfile",
        bad.to_str().expect("path"),
    ]);
    assert!(!out.status.success(), "a range was prefetched");
    assert!(
        text(&out).contains("requirements-bad.txt:2: flask>=2 is not pinned with =="),
        "{}",
        text(&out)
    );
    a.stop();
}
