//! apt's package lists, for `cairn prefetch` and `cairn export`: the suites the machines' apt
//! sources name (whose indexes are fetched), this machine's architectures, and the update
//! indexes a node holds for them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cairn_apt::sources::{self, Source};

use super::machine_sources;

/// One suite of an archive, as machines' apt sources name it: what `cairn prefetch` fetches
/// the indexes of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptSuite {
    /// The archive, as served at `/apt/NAME/`.
    pub archive: String,
    pub suite: String,
    pub components: Vec<String>,
    /// A `deb-src` entry names it: `Sources` too.
    pub sources: bool,
}

/// The suites of apt sources files (`*.sources` in deb822, anything else in the one-line
/// format), else of the machine's own apt sources: the suites the offline machines'
/// `apt-get update` will ask for. Entries pointing at a Cairn node (`…/apt/NAME`) name their
/// archive as the node serves it, as do those pointing at the archive itself.
pub fn suites(files: &[PathBuf], etc: &Path) -> Result<Vec<AptSuite>> {
    let found: Vec<Source> = if files.is_empty() {
        let found: Vec<Source> = machine_sources(etc).into_iter().map(|(s, _)| s).collect();
        if found.is_empty() {
            bail!(
                "no apt sources in {}/sources.list or sources.list.d to find the suites of the \
                 package lists in: pass --apt-sources FILE (the sources the machines use)",
                etc.display()
            );
        }
        found
    } else {
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read apt sources {}", file.display()))?;
            let parsed = match file.extension().and_then(|e| e.to_str()) {
                Some("sources") => sources::parse_deb822(&text),
                _ => sources::parse_list(&text),
            };
            if parsed.is_empty() {
                bail!("{}: no apt source entries in it", file.display());
            }
            found.extend(parsed);
        }
        found
    };
    let mut out: Vec<AptSuite> = Vec::new();
    for source in found {
        let archive = source.archive_name();
        if cairn_apt::check_archive_name(&archive).is_err() {
            continue;
        }
        let deb_src = source.types.iter().any(|t| t == "deb-src");
        for suite in &source.suites {
            // A suite with a path (`./`, flat repositories) has no dists/ layout.
            if suite.contains('/') || suite.contains("..") || suite.is_empty() {
                continue;
            }
            match out
                .iter_mut()
                .find(|s| s.archive == archive && s.suite == *suite)
            {
                Some(known) => {
                    for c in &source.components {
                        if !known.components.contains(c) {
                            known.components.push(c.clone());
                        }
                    }
                    known.sources |= deb_src;
                }
                None => out.push(AptSuite {
                    archive: archive.clone(),
                    suite: suite.clone(),
                    components: source.components.clone(),
                    sources: deb_src,
                }),
            }
        }
    }
    Ok(out)
}

/// dpkg's architectures of this machine (native, then foreign), which apt fetches `Packages`
/// for; from the build target when dpkg is not there.
pub fn machine_architectures() -> Vec<String> {
    let dpkg = |arg: &str| -> Option<Vec<String>> {
        let out = std::process::Command::new("dpkg")
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
    };
    match dpkg("--print-architecture") {
        Some(mut archs) if !archs.is_empty() => {
            archs.extend(dpkg("--print-foreign-architectures").unwrap_or_default());
            archs
        }
        _ => {
            let arch = match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                "x86" => "i386",
                "arm" => "armhf",
                "powerpc64" => "ppc64el",
                other => other,
            };
            vec![arch.to_owned()]
        }
    }
}

/// The index files `apt-get update` fetches ([`cairn_apt::indexes::is_update_index`]) that this
/// node holds for the current `InRelease` (or `Release`) of every suite of every archive: a
/// bundle for apt carries them all, with the suites' documents, so that an offline machine's
/// `apt-get update` finds every index it asks for, for every suite of its sources.
pub fn held_update_indexes(
    index: &cairn_mirror::index::Index,
) -> Result<std::collections::HashSet<cairn_mirror::cid::FlatCid>> {
    let held: std::collections::HashSet<(String, cairn_mirror::cid::FlatCid)> = index
        .all_artifacts()
        .context("reading the index")?
        .into_iter()
        .filter(|(eco, _, _)| eco.starts_with("apt/"))
        .map(|(eco, _, record)| (eco, record.flat))
        .collect();
    let mut out = std::collections::HashSet::new();
    for (eco, key, listed_by, record) in index.all_refs().context("reading the index")? {
        if !eco.starts_with("apt/") {
            continue;
        }
        let Some(suite_dir) = listed_by
            .strip_suffix("/InRelease")
            .or_else(|| listed_by.strip_suffix("/Release"))
        else {
            continue;
        };
        let Some(path) = key
            .strip_prefix(suite_dir)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            continue;
        };
        if cairn_apt::indexes::is_update_index(path) && held.contains(&(eco, record.flat)) {
            out.insert(record.flat);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_come_from_sources_files_or_the_machines() {
        let etc = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(etc.path().join("sources.list.d")).expect("dir");
        let deb822 = etc.path().join("sources.list.d/cairn.sources");
        std::fs::write(
            &deb822,
            "Types: deb deb-src\nURIs: http://node.invalid:7777/apt/debian\n\
             Suites: bookworm bookworm-updates\nComponents: main contrib\n",
        )
        .expect("write");
        let list = etc.path().join("extra.list");
        std::fs::write(
            &list,
            "deb https://upstream.invalid/debian bookworm main non-free\n\
             deb https://upstream.invalid/flat ./\n",
        )
        .expect("write");
        let found =
            suites(&[deb822.clone(), list.clone()], Path::new("/nonexistent")).expect("suites");
        let named: Vec<(&str, &str, Vec<&str>, bool)> = found
            .iter()
            .map(|s| {
                (
                    s.archive.as_str(),
                    s.suite.as_str(),
                    s.components.iter().map(String::as_str).collect(),
                    s.sources,
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                (
                    "debian",
                    "bookworm",
                    vec!["main", "contrib", "non-free"],
                    true
                ),
                ("debian", "bookworm-updates", vec!["main", "contrib"], true),
            ]
        );
        // No files given: the machine's sources.
        assert_eq!(suites(&[], etc.path()).expect("machine").len(), 2);
        let e = suites(&[], Path::new("/nonexistent")).expect_err("none");
        assert!(e.to_string().contains("--apt-sources"), "{e}");
        let empty = etc.path().join("empty.list");
        std::fs::write(&empty, "# nothing\n").expect("write");
        let e = suites(&[empty], etc.path()).expect_err("empty");
        assert!(e.to_string().contains("no apt source entries"), "{e}");
    }
}
