//! Choosing the files of one locked requirement for a `tags::Target`: the best compatible wheel
//! per platform group, else one sdist, as pip would for that machine.

use crate::lockfile::Locked;
use crate::tags::{Target, parse_sdist, parse_wheel, same_version};

/// At most this many file names are quoted in an error.
const QUOTED: usize = 12;

/// The files to fetch for `locked` among `candidates` (file names the index lists for it,
/// already matched against the lockfile's hashes when it has any). `target: None` keeps every
/// file of the pinned version.
pub fn select<'a>(
    locked: &Locked,
    candidates: &[&'a str],
    target: Option<&Target>,
) -> Result<Vec<&'a str>, String> {
    let mut wheels = Vec::new();
    let mut sdists = Vec::new();
    for &name in candidates {
        if let Some(wheel) = parse_wheel(name) {
            if wheel.project == locked.project && same_version(&wheel.version, &locked.version) {
                wheels.push((name, wheel));
            }
        } else if let Some((version, rank)) = parse_sdist(&locked.project, name)
            && same_version(&version, &locked.version)
        {
            sdists.push((name, rank));
        }
    }
    if wheels.is_empty() && sdists.is_empty() {
        return Err(format!(
            "no wheel or sdist of {}=={} among {}",
            locked.project,
            locked.version,
            quote(candidates)
        ));
    }
    let Some(target) = target else {
        let mut all: Vec<&str> = wheels.iter().map(|(n, _)| *n).collect();
        all.extend(sdists.iter().map(|(n, _)| *n));
        return Ok(all);
    };
    let parsed: Vec<_> = wheels.iter().map(|(_, w)| w.clone()).collect();
    let chosen: Vec<&str> = target
        .choose(&parsed)
        .into_iter()
        .map(|i| wheels[i].0)
        .collect();
    if !chosen.is_empty() {
        return Ok(chosen);
    }
    if let Some((name, _)) = sdists.iter().min_by_key(|(_, rank)| *rank) {
        return Ok(vec![name]);
    }
    let names: Vec<&str> = wheels.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "no wheel of {}=={} fits {} and it has no sdist; its wheels: {} (set --platform and \
         --python-version, or take --all-platforms)",
        locked.project,
        locked.version,
        describe(target),
        quote(&names)
    ))
}

fn quote(names: &[&str]) -> String {
    if names.is_empty() {
        return "no files".into();
    }
    let mut out = names
        .iter()
        .take(QUOTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > QUOTED {
        out.push_str(&format!(" and {} more", names.len() - QUOTED));
    }
    out
}

/// `Python 3.11 (cp) on manylinux_2_36_x86_64, linux_x86_64`.
pub fn describe(target: &Target) -> String {
    let python = match &target.python {
        Some(p) => format!("Python {}.{} ({})", p.major, p.minor, p.implementation),
        None => "any Python".into(),
    };
    let groups: Vec<String> = target.groups.iter().map(|g| g.join(", ")).collect();
    format!("{python} on {}", groups.join(" / "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::Python;

    fn locked(project: &str, version: &str) -> Locked {
        Locked {
            project: project.into(),
            version: version.into(),
            filenames: Vec::new(),
            sha256: Vec::new(),
        }
    }

    fn linux(python: &str) -> Target {
        Target {
            python: Some(Python::parse(python, "cp").expect("python")),
            groups: vec![vec!["manylinux_2_17_x86_64".into()]],
        }
    }

    const PAGE: [&str; 6] = [
        "demo-0.9-py3-none-any.whl",
        "demo-1.0-cp311-cp311-manylinux2014_x86_64.whl",
        "demo-1.0-cp311-cp311-win_amd64.whl",
        "demo-1.0.zip",
        "demo-1.0.tar.gz",
        "demo-1.0-py3.11.egg",
    ];

    #[test]
    fn a_compatible_wheel_wins_over_the_sdist() {
        let l = locked("demo", "1.0");
        assert_eq!(
            select(&l, &PAGE, Some(&linux("3.11"))).expect("select"),
            [PAGE[1]]
        );
        // No wheel fits Python 3.12: the .tar.gz sdist (preferred to the zip).
        assert_eq!(
            select(&l, &PAGE, Some(&linux("3.12"))).expect("select"),
            [PAGE[4]]
        );
        // All platforms: every file of the version.
        assert_eq!(
            select(&l, &PAGE, None).expect("select"),
            [PAGE[1], PAGE[2], PAGE[3], PAGE[4]]
        );
    }

    /// A release laid out like a big compiled project's: 8 Pythons × 9 platforms and an sdist.
    fn release() -> Vec<String> {
        let platforms = [
            "manylinux_2_17_x86_64.manylinux2014_x86_64",
            "manylinux_2_28_x86_64",
            "manylinux_2_17_aarch64.manylinux2014_aarch64",
            "musllinux_1_1_x86_64",
            "musllinux_1_2_aarch64",
            "macosx_10_9_x86_64",
            "macosx_11_0_arm64",
            "win32",
            "win_amd64",
        ];
        let mut files: Vec<String> = (8..=15)
            .flat_map(|minor| {
                platforms
                    .iter()
                    .map(move |p| format!("big_pkg-2.1.0-cp3{minor}-cp3{minor}-{p}.whl"))
            })
            .collect();
        files.push("big_pkg-2.1.0.tar.gz".into());
        files
    }

    #[test]
    fn a_big_release_takes_one_file_per_machine() {
        let files = release();
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        assert_eq!(names.len(), 73);
        let l = locked("big-pkg", "2.1.0");
        let host = Target {
            python: Some(Python::parse("3.11", "cp").expect("python")),
            groups: vec![vec!["manylinux_2_36_x86_64".into(), "linux_x86_64".into()]],
        };
        assert_eq!(
            select(&l, &names, Some(&host)).expect("host"),
            ["big_pkg-2.1.0-cp311-cp311-manylinux_2_28_x86_64.whl"]
        );
        let two = Target {
            python: Some(Python::parse("3.12", "cp").expect("python")),
            groups: vec![
                vec!["musllinux_1_2_x86_64".into()],
                vec!["macosx_14_0_arm64".into()],
            ],
        };
        assert_eq!(
            select(&l, &names, Some(&two)).expect("two"),
            [
                "big_pkg-2.1.0-cp312-cp312-musllinux_1_1_x86_64.whl",
                "big_pkg-2.1.0-cp312-cp312-macosx_11_0_arm64.whl"
            ]
        );
        assert_eq!(select(&l, &names, None).expect("all").len(), 73);
    }

    #[test]
    fn nothing_that_fits_names_the_target_and_the_files() {
        let wheels_only = &PAGE[..3];
        let e = select(&locked("demo", "1.0"), wheels_only, Some(&linux("3.12")))
            .expect_err("nothing fits");
        assert!(e.contains("demo==1.0"), "{e}");
        assert!(
            e.contains("Python 3.12 (cp) on manylinux_2_17_x86_64"),
            "{e}"
        );
        assert!(e.contains("demo-1.0-cp311-cp311-win_amd64.whl"), "{e}");
        let e = select(&locked("demo", "2.0"), &PAGE, None).expect_err("no version");
        assert!(
            e.starts_with("no wheel or sdist of demo==2.0 among demo-0.9"),
            "{e}"
        );
    }
}
