//! `--platform`, `--python-version`, `--implementation`, `--abi`, `--all-platforms`: which
//! Python files `cairn prefetch` and `cairn export` take, like `pip download`'s flags. The
//! default is this machine: its architecture, its C library (glibc from `ldd --version`, or
//! musl), and the version of `python3` on `PATH` (every Python when there is none).

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cairn_pypi::tags::{Python, Target};

/// Longest a probe (`ldd --version`, `python3 --version`) may run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most output a probe may give.
const PROBE_OUTPUT: u64 = 64 << 10;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct PythonTargetArgs {
    /// PyPI: a wheel platform tag to take files for (repeatable; each gets its own best
    /// wheel), e.g. manylinux_2_17_x86_64, musllinux_1_2_aarch64, macosx_11_0_arm64, win_amd64,
    /// or any for pure-Python wheels only; a manylinux or musllinux tag also takes wheels for
    /// older C libraries [default: this machine's architecture and glibc (`ldd --version`) or
    /// musl version, plus linux_ARCH]
    #[arg(long = "platform", value_name = "TAG")]
    pub platforms: Vec<String>,
    /// PyPI: the Python version to take files for, MAJOR.MINOR [default: the version of
    /// `python3` on PATH; without one, the best wheel for each Python the project has]
    #[arg(long, value_name = "X.Y")]
    pub python_version: Option<String>,
    /// PyPI: the interpreter tag prefix (cp for CPython, pp for PyPy)
    #[arg(long, value_name = "TAG", default_value = "cp")]
    pub implementation: String,
    /// PyPI: an ABI tag the interpreter takes, before abi3 and none (repeatable)
    /// [default: cpXY for CPython]
    #[arg(long = "abi", value_name = "TAG")]
    pub abis: Vec<String>,
    /// PyPI: take every file the lockfiles name (every platform, every Python, and sdists)
    #[arg(long, conflicts_with_all = ["platforms", "python_version", "abis"])]
    pub all_platforms: bool,
}

impl PythonTargetArgs {
    /// The target, or `None` for every file. Runs the host probes only for what the flags
    /// leave open.
    pub fn target(&self) -> Result<Option<Target>> {
        if self.all_platforms {
            return Ok(None);
        }
        let version = match &self.python_version {
            Some(v) => Some(v.clone()),
            None if self.abis.is_empty() => host_python(),
            None => bail!("--abi needs --python-version"),
        };
        let python = match version {
            Some(v) => {
                let mut python =
                    Python::parse(&v, &self.implementation).map_err(anyhow::Error::msg)?;
                if !self.abis.is_empty() {
                    python.abis = self.abis.iter().map(|a| a.to_ascii_lowercase()).collect();
                }
                Some(python)
            }
            None => None,
        };
        let groups = if self.platforms.is_empty() {
            vec![host_platforms()?]
        } else {
            for p in &self.platforms {
                check_platform(p)?;
            }
            self.platforms
                .iter()
                .map(|p| vec![p.to_ascii_lowercase()])
                .collect()
        };
        Ok(Some(Target { python, groups }))
    }
}

fn check_platform(tag: &str) -> Result<()> {
    if tag.is_empty()
        || tag.len() > 100
        || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!(
            "--platform {tag:?} is not a wheel platform tag (letters, digits and _, e.g. \
             manylinux_2_17_x86_64)"
        );
    }
    Ok(())
}

/// Run a probe with bounded time and output: (exit success, stdout, stderr).
fn probe(program: &str, args: &[&str]) -> Option<(bool, String, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let (stdout, stderr) = (child.stdout.take()?, child.stderr.take()?);
    let read = |pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.take(PROBE_OUTPUT).read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    Some((status.success(), out.join().ok()?, err.join().ok()?))
}

/// `Python 3.11.7` → `3.11`.
fn python_from_version_output(text: &str) -> Option<String> {
    let version = text.trim().strip_prefix("Python ")?;
    let mut parts = version.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
    (major.parse::<u32>().is_ok() && !minor.is_empty()).then(|| format!("{major}.{minor}"))
}

fn host_python() -> Option<String> {
    let (ok, out, err) = probe("python3", &["--version"])?;
    // Python 2 and very old 3 wrote the version to stderr.
    ok.then(|| python_from_version_output(&out).or_else(|| python_from_version_output(&err)))?
}

/// The C library `ldd --version` names: glibc `(2, 36)` or musl `(1, 2)`.
#[derive(Debug, PartialEq, Eq)]
enum Libc {
    Glibc(u32, u32),
    Musl(u32, u32),
}

fn major_minor(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// glibc's `ldd --version` prints `ldd (… GLIBC …) 2.36` on stdout; musl's prints
/// `musl libc (ARCH)` and `Version 1.2.4` on stderr (and exits 1).
fn libc_from_ldd(stdout: &str, stderr: &str) -> Option<Libc> {
    if let Some(first) = stdout.lines().next()
        && (first.contains("GLIBC") || first.contains("GNU libc"))
    {
        let (major, minor) = major_minor(first.split_whitespace().last()?)?;
        return Some(Libc::Glibc(major, minor));
    }
    if stderr.contains("musl libc") {
        let version = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version "))?;
        let (major, minor) = major_minor(version.trim())?;
        return Some(Libc::Musl(major, minor));
    }
    None
}

/// The architecture as wheel platform tags spell it.
fn wheel_arch(arch: &str, little_endian: bool) -> &str {
    match arch {
        "x86" => "i686",
        "arm" => "armv7l",
        "powerpc64" if little_endian => "ppc64le",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// This machine's platforms, best first: `manylinux_2_X_ARCH` (or `musllinux_1_X_ARCH`) and
/// `linux_ARCH`.
fn host_platforms() -> Result<Vec<String>> {
    if std::env::consts::OS != "linux" {
        bail!(
            "cannot tell this machine's wheel platform on {}: give --platform TAG (e.g. \
             macosx_11_0_arm64, win_amd64) or --all-platforms",
            std::env::consts::OS
        );
    }
    let arch = wheel_arch(std::env::consts::ARCH, cfg!(target_endian = "little"));
    let libc = probe("ldd", &["--version"]).and_then(|(_, out, err)| libc_from_ldd(&out, &err));
    platforms_for(arch, libc)
}

fn platforms_for(arch: &str, libc: Option<Libc>) -> Result<Vec<String>> {
    let first = match libc {
        Some(Libc::Glibc(major, minor)) => format!("manylinux_{major}_{minor}_{arch}"),
        Some(Libc::Musl(major, minor)) => format!("musllinux_{major}_{minor}_{arch}"),
        None => bail!(
            "cannot tell this machine's C library (`ldd --version` names neither glibc nor \
             musl): give --platform TAG (e.g. manylinux_2_17_{arch}) or --all-platforms"
        ),
    };
    Ok(vec![first, format!("linux_{arch}")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_and_musl_from_ldd() {
        assert_eq!(
            libc_from_ldd(
                "ldd (Debian GLIBC 2.36-9+deb12u4) 2.36\nCopyright (C) 2022\n",
                ""
            ),
            Some(Libc::Glibc(2, 36))
        );
        assert_eq!(
            libc_from_ldd("ldd (GNU libc) 2.39\n", ""),
            Some(Libc::Glibc(2, 39))
        );
        assert_eq!(
            libc_from_ldd(
                "",
                "musl libc (x86_64)\nVersion 1.2.4\nDynamic Program Loader\n"
            ),
            Some(Libc::Musl(1, 2))
        );
        assert_eq!(libc_from_ldd("", "ldd: not found"), None);
        assert_eq!(
            platforms_for("aarch64", Some(Libc::Musl(1, 2))).expect("musl"),
            ["musllinux_1_2_aarch64", "linux_aarch64"]
        );
        let e = platforms_for("x86_64", None).expect_err("unknown libc");
        assert!(e.to_string().contains("--platform TAG"), "{e}");
        assert_eq!(wheel_arch("powerpc64", true), "ppc64le");
        assert_eq!(wheel_arch("x86", true), "i686");
    }

    #[test]
    fn python_version_from_python3() {
        assert_eq!(
            python_from_version_output("Python 3.11.7\n").as_deref(),
            Some("3.11")
        );
        assert_eq!(
            python_from_version_output("Python 3.14.0rc1").as_deref(),
            Some("3.14")
        );
        assert_eq!(python_from_version_output("bash: python3: not found"), None);
    }

    #[test]
    fn flags_make_a_target_without_probing_what_they_give() {
        let args = PythonTargetArgs {
            platforms: vec!["manylinux2014_aarch64".into(), "win_amd64".into()],
            python_version: Some("3.12".into()),
            implementation: "cp".into(),
            ..Default::default()
        };
        let target = args.target().expect("target").expect("some");
        assert_eq!(
            target.groups,
            [
                vec!["manylinux2014_aarch64".to_owned()],
                vec!["win_amd64".to_owned()]
            ]
        );
        assert_eq!(target.python.expect("python").abis, ["cp312"]);
        let all = PythonTargetArgs {
            all_platforms: true,
            ..Default::default()
        };
        assert_eq!(all.target().expect("all"), None);
        let bad = PythonTargetArgs {
            platforms: vec!["../etc".into()],
            python_version: Some("3.12".into()),
            implementation: "cp".into(),
            ..Default::default()
        };
        assert!(bad.target().is_err());
        let abi_alone = PythonTargetArgs {
            abis: vec!["cp312".into()],
            implementation: "cp".into(),
            ..Default::default()
        };
        assert!(abi_alone.target().is_err());
    }
}
