//! Which distribution files suit a machine: wheel file names (`name-ver(-build)?-py-abi-plat.whl`,
//! each tag a `.`-separated set), sdist names, and a `Target` (Python version, implementation,
//! ABIs, platforms) that ranks wheels the way pip orders its supported tags. Pure: the caller
//! detects the host (see `docs/protocols.md`, "Wheel compatibility tags").

use crate::name::normalize;

/// A parsed wheel file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelName {
    /// Normalised project name.
    pub project: String,
    pub version: String,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
}

/// Parse `name-version(-build)?-python-abi-platform.whl`; `None` when it is not one.
pub fn parse_wheel(filename: &str) -> Option<WheelName> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    let (name, version, tags) = match parts.as_slice() {
        [name, version, py, abi, plat] => (name, version, [py, abi, plat]),
        [name, version, build, py, abi, plat] => {
            // The build tag starts with a digit.
            if !build.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            (name, version, [py, abi, plat])
        }
        _ => return None,
    };
    let set = |t: &str| -> Option<Vec<String>> {
        let v: Vec<String> = t.split('.').map(str::to_ascii_lowercase).collect();
        (!v.iter().any(String::is_empty)).then_some(v)
    };
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some(WheelName {
        project: normalize(name),
        version: (*version).to_owned(),
        python: set(tags[0])?,
        abi: set(tags[1])?,
        platform: set(tags[2])?,
    })
}

/// Source distribution suffixes, preferred first.
const SDIST_SUFFIXES: [&str; 5] = [".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz"];

/// The version of `project`'s sdist `filename` (`name-version.tar.gz`, the name possibly with
/// `-` in it), and the rank of its suffix; `None` when it is not an sdist of `project`.
pub fn parse_sdist(project: &str, filename: &str) -> Option<(String, usize)> {
    let (rank, stem) = SDIST_SUFFIXES
        .iter()
        .enumerate()
        .find_map(|(i, s)| filename.strip_suffix(s).map(|stem| (i, stem)))?;
    let project = normalize(project);
    stem.char_indices()
        .filter(|&(_, c)| c == '-')
        .find(|&(i, _)| normalize(&stem[..i]) == project)
        .map(|(i, _)| (stem[i + 1..].to_owned(), rank))
        .filter(|(v, _)| !v.is_empty())
}

/// Versions compared loosely: case, and `-`, `_`, `.` separators, do not matter (a wheel name
/// spells `1.0-1` as `1.0_1`), nor a leading `v`.
pub fn same_version(a: &str, b: &str) -> bool {
    let canon = |v: &str| -> String {
        let v = v.trim().to_ascii_lowercase();
        let v = v.strip_prefix('v').unwrap_or(&v).to_owned();
        v.replace(['-', '_'], ".")
    };
    canon(a) == canon(b)
}

/// `manylinux1_x86_64` → `manylinux_2_5_x86_64` (and 2010 → 2_12, 2014 → 2_17).
fn unalias(platform: &str) -> String {
    for (legacy, glibc) in [
        ("manylinux1_", "2_5_"),
        ("manylinux2010_", "2_12_"),
        ("manylinux2014_", "2_17_"),
    ] {
        if let Some(arch) = platform.strip_prefix(legacy) {
            return format!("manylinux_{glibc}{arch}");
        }
    }
    platform.to_owned()
}

/// `PREFIX_MAJOR_MINOR_ARCH` → (major, minor, arch).
fn versioned<'a>(platform: &'a str, prefix: &str) -> Option<(u32, u32, &'a str)> {
    let rest = platform.strip_prefix(prefix)?;
    let mut it = rest.splitn(3, '_');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let arch = it.next().filter(|a| !a.is_empty())?;
    Some((major, minor, arch))
}

/// Whether a macOS wheel architecture runs on `arch` (fat binaries list several).
fn mac_arch_fits(wheel: &str, arch: &str) -> bool {
    wheel == arch
        || match wheel {
            "universal2" => matches!(arch, "x86_64" | "arm64"),
            "intel" => matches!(arch, "x86_64" | "i386"),
            "fat64" => matches!(arch, "x86_64" | "ppc64"),
            "fat32" | "fat" => matches!(arch, "i386" | "ppc"),
            "universal" => matches!(arch, "x86_64" | "i386" | "ppc" | "ppc64"),
            _ => false,
        }
}

/// How well a wheel's platform tag fits a wanted platform: `Some(0)` is best, larger is a
/// worse (older) fit, `None` does not run there. `any` is handled by the caller.
pub fn platform_fit(wanted: &str, wheel: &str) -> Option<u32> {
    let (wanted, wheel) = (unalias(wanted), unalias(wheel));
    if wanted == wheel {
        return Some(0);
    }
    for (prefix, max_major) in [("manylinux_", 2), ("musllinux_", 1)] {
        if let (Some((wm, wn, wa)), Some((hm, hn, ha))) =
            (versioned(&wheel, prefix), versioned(&wanted, prefix))
        {
            // Only the current major line exists (glibc 2, musl 1).
            return (wa == ha && wm == hm && wm == max_major && wn <= hn).then(|| hn - wn);
        }
    }
    if let (Some((wm, wn, wa)), Some((hm, hn, ha))) =
        (versioned(&wheel, "macosx_"), versioned(&wanted, "macosx_"))
    {
        let older = (wm, wn) <= (hm, hn);
        return (older && mac_arch_fits(wa, ha)).then(|| {
            (hm - wm)
                .saturating_mul(100)
                .saturating_add(hn.saturating_sub(wn))
        });
    }
    None
}

/// The Python a selection is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Python {
    /// Interpreter tag prefix: `cp` (CPython), `pp` (PyPy)…
    pub implementation: String,
    pub major: u32,
    pub minor: u32,
    /// ABIs before `abi3` and `none` [default: `cpXY` for CPython].
    pub abis: Vec<String>,
}

impl Python {
    /// `3.11` for `implementation` with its default ABI.
    pub fn parse(version: &str, implementation: &str) -> Result<Python, String> {
        let (major, minor) = version
            .trim()
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| format!("Python version {version:?} is not MAJOR.MINOR (e.g. 3.11)"))?;
        if major != 3 {
            return Err(format!(
                "Python version {version}: only Python 3 is supported"
            ));
        }
        if minor > 99 {
            return Err(format!(
                "Python version {version}: no such Python 3 release"
            ));
        }
        let implementation = implementation.to_ascii_lowercase();
        if implementation.is_empty() || !implementation.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(format!(
                "implementation {implementation:?} is not a tag like cp or pp"
            ));
        }
        let abis = if implementation == "cp" {
            vec![format!("cp{major}{minor}")]
        } else {
            Vec::new()
        };
        Ok(Python {
            implementation,
            major,
            minor,
            abis,
        })
    }

    /// The (interpreter, abi, platform-specific?) triples this Python accepts, best first, in
    /// the order pip lists its supported tags.
    fn pairs(&self) -> Vec<(String, String, bool)> {
        let (m, n) = (self.major, self.minor);
        let own = format!("{}{m}{n}", self.implementation);
        let cpython = self.implementation == "cp";
        let mut out = Vec::new();
        for specific in [true, false] {
            if specific {
                let mut abis: Vec<String> = self
                    .abis
                    .iter()
                    .filter(|a| *a != "abi3" && *a != "none")
                    .cloned()
                    .collect();
                if cpython {
                    abis.push("abi3".into());
                }
                abis.push("none".into());
                for abi in abis {
                    out.push((own.clone(), abi, true));
                }
                if cpython {
                    for k in (2..n).rev() {
                        out.push((format!("cp{m}{k}"), "abi3".into(), true));
                    }
                }
            } else {
                out.push((own.clone(), "none".into(), false));
            }
            out.push((format!("py{m}{n}"), "none".into(), specific));
            out.push((format!("py{m}"), "none".into(), specific));
            for k in (0..n).rev() {
                out.push((format!("py{m}{k}"), "none".into(), specific));
            }
        }
        out
    }
}

/// What to keep: for each group of platforms, the best wheel for `python`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `None`: every Python (one wheel kept per interpreter tag set).
    pub python: Option<Python>,
    /// Each group gets its own best file. A group lists platforms in preference order; `any`
    /// wheels fit every group.
    pub groups: Vec<Vec<String>>,
}

/// A wheel's rank for one group: lower is better.
type Rank = (usize, usize, u32);

impl Target {
    fn rank(&self, wheel: &WheelName, group: &[String]) -> Option<Rank> {
        let pairs = self.python.as_ref().map(Python::pairs);
        let mut best: Option<Rank> = None;
        for platform in &wheel.platform {
            let (slot, fit) = if platform == "any" {
                (group.len(), 0)
            } else {
                match group
                    .iter()
                    .enumerate()
                    .find_map(|(i, g)| platform_fit(g, platform).map(|f| (i, f)))
                {
                    Some(found) => found,
                    None => continue,
                }
            };
            let pair = match &pairs {
                None => Some(0),
                Some(pairs) => wheel
                    .python
                    .iter()
                    .flat_map(|py| wheel.abi.iter().map(move |abi| (py, abi)))
                    .filter_map(|(py, abi)| {
                        pairs.iter().position(|(p, a, specific)| {
                            p == py && a == abi && *specific == (platform != "any")
                        })
                    })
                    .min(),
            };
            if let Some(pair) = pair {
                let rank = (pair, slot, fit);
                best = Some(best.map_or(rank, |b| b.min(rank)));
            }
        }
        best
    }

    /// Whether the wheel runs somewhere this target covers.
    pub fn fits(&self, wheel: &WheelName) -> bool {
        self.groups.iter().any(|g| self.rank(wheel, g).is_some())
    }

    /// The wheels to keep among `wheels` (indexes): per group, the best one; with no Python
    /// given, the best per interpreter tag set.
    pub fn choose(&self, wheels: &[WheelName]) -> Vec<usize> {
        let mut chosen: Vec<usize> = Vec::new();
        for group in &self.groups {
            let mut best: Vec<(Vec<String>, Rank, usize)> = Vec::new();
            for (i, wheel) in wheels.iter().enumerate() {
                let Some(rank) = self.rank(wheel, group) else {
                    continue;
                };
                let key = if self.python.is_some() {
                    Vec::new()
                } else {
                    wheel.python.clone()
                };
                match best.iter_mut().find(|(k, _, _)| *k == key) {
                    Some(entry) if rank < entry.1 => *entry = (key, rank, i),
                    Some(_) => {}
                    None => best.push((key, rank, i)),
                }
            }
            chosen.extend(best.into_iter().map(|(_, _, i)| i));
        }
        chosen.sort_unstable();
        chosen.dedup();
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(name: &str) -> WheelName {
        parse_wheel(name).unwrap_or_else(|| panic!("{name} parses"))
    }

    #[test]
    fn wheel_names_with_build_tags_and_compressed_sets() {
        let w = wheel("Foo_Bar-1.2.0-1build-py2.py3-none-any.whl");
        assert_eq!(w.project, "foo-bar");
        assert_eq!(w.version, "1.2.0");
        assert_eq!(w.python, ["py2", "py3"]);
        let w = wheel("numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl");
        assert_eq!(
            w.platform,
            ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        );
        for bad in [
            "a-1.0-py3-none.whl",
            "a-1.0-build-py3-none-any.whl",
            "a-1.0-py3-none-any.tar.gz",
            "a-1.0-py3..x-none-any.whl",
            "-1.0-py3-none-any.whl",
        ] {
            assert_eq!(parse_wheel(bad), None, "{bad}");
        }
    }

    #[test]
    fn sdist_names_and_versions() {
        assert_eq!(
            parse_sdist("python-dateutil", "python-dateutil-2.8.2.tar.gz"),
            Some(("2.8.2".into(), 0))
        );
        assert_eq!(
            parse_sdist("zope.interface", "zope_interface-6.0.zip"),
            Some(("6.0".into(), 1))
        );
        assert_eq!(parse_sdist("six", "sixteen-1.0.tar.gz"), None);
        assert_eq!(parse_sdist("six", "six-1.0-py3-none-any.whl"), None);
        assert!(same_version("1.0.post1", "1.0_post1"));
        assert!(!same_version("1.0", "1.0.1"));
    }

    #[test]
    fn manylinux_legacy_aliases_and_glibc_order() {
        assert_eq!(
            platform_fit("manylinux_2_17_x86_64", "manylinux1_x86_64"),
            Some(12)
        );
        assert_eq!(
            platform_fit("manylinux2014_x86_64", "manylinux_2_17_x86_64"),
            Some(0)
        );
        assert_eq!(
            platform_fit("manylinux_2_17_x86_64", "manylinux_2_28_x86_64"),
            None
        );
        assert_eq!(
            platform_fit("manylinux_2_17_x86_64", "manylinux_2_17_aarch64"),
            None
        );
        assert_eq!(
            platform_fit("manylinux_2_17_x86_64", "musllinux_1_1_x86_64"),
            None
        );
        assert_eq!(
            platform_fit("musllinux_1_2_x86_64", "musllinux_1_1_x86_64"),
            Some(1)
        );
        assert_eq!(
            platform_fit("macosx_14_0_arm64", "macosx_11_0_universal2"),
            Some(300)
        );
        assert_eq!(
            platform_fit("macosx_10_9_x86_64", "macosx_11_0_x86_64"),
            None
        );
        assert_eq!(platform_fit("win_amd64", "win_amd64"), Some(0));
        assert_eq!(platform_fit("win_amd64", "win32"), None);
    }

    fn target(python: Option<&str>, groups: &[&[&str]]) -> Target {
        Target {
            python: python.map(|v| Python::parse(v, "cp").expect("python")),
            groups: groups
                .iter()
                .map(|g| g.iter().map(|p| (*p).to_owned()).collect())
                .collect(),
        }
    }

    const FILES: [&str; 9] = [
        "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
        "demo-1.0-cp311-cp311-manylinux_2_17_aarch64.whl",
        "demo-1.0-cp311-cp311-musllinux_1_1_x86_64.whl",
        "demo-1.0-cp311-cp311-macosx_11_0_arm64.whl",
        "demo-1.0-cp311-cp311-win_amd64.whl",
        "demo-1.0-cp38-abi3-manylinux_2_17_x86_64.whl",
        "demo-1.0-py3-none-any.whl",
    ];

    fn chosen(target: &Target) -> Vec<&'static str> {
        let wheels: Vec<WheelName> = FILES.iter().map(|f| wheel(f)).collect();
        target
            .choose(&wheels)
            .into_iter()
            .map(|i| FILES[i])
            .collect()
    }

    #[test]
    fn one_best_wheel_per_platform_group() {
        // The newest glibc the platform allows wins; the exact ABI beats abi3, abi3 beats any.
        assert_eq!(
            chosen(&target(
                Some("3.11"),
                &[&["manylinux_2_31_x86_64", "linux_x86_64"]]
            )),
            [FILES[1]]
        );
        assert_eq!(
            chosen(&target(Some("3.11"), &[&["manylinux_2_17_x86_64"]])),
            [FILES[0]]
        );
        assert_eq!(
            chosen(&target(Some("3.10"), &[&["manylinux2014_x86_64"]])),
            [FILES[7]]
        );
        assert_eq!(
            chosen(&target(
                Some("3.11"),
                &[&["manylinux_2_17_aarch64"], &["win_amd64"]]
            )),
            [FILES[3], FILES[6]]
        );
        assert_eq!(
            chosen(&target(Some("3.13"), &[&["macosx_14_0_arm64"]])),
            [FILES[8]]
        );
        assert_eq!(chosen(&target(Some("3.11"), &[&["any"]])), [FILES[8]]);
        // No Python given: the best for each interpreter tag set.
        assert_eq!(
            chosen(&target(None, &[&["manylinux_2_17_x86_64"]])),
            [FILES[0], FILES[2], FILES[7], FILES[8]]
        );
    }

    #[test]
    fn python_versions_are_checked() {
        assert!(Python::parse("3", "cp").is_err());
        assert!(Python::parse("2.7", "cp").is_err());
        assert!(Python::parse("3.x", "cp").is_err());
        assert!(Python::parse("3.1000", "cp").is_err());
        assert_eq!(
            platform_fit("macosx_4000000000_0_x86_64", "macosx_10_9_x86_64"),
            Some(u32::MAX)
        );
        let t = target(Some("3.9"), &[&["manylinux_2_17_x86_64"]]);
        assert!(!t.fits(&wheel(FILES[0])));
        assert!(t.fits(&wheel(FILES[7])));
        assert!(t.fits(&wheel("demo-1.0-cp39-abi3-manylinux_2_17_x86_64.whl")));
        assert!(!t.fits(&wheel("demo-1.0-cp310-abi3-manylinux_2_17_x86_64.whl")));
    }
}
