//! `--lockfile [KIND:]FILE`: what a lockfile pins, read by its ecosystem's adapter. The kind
//! comes from the file name (each ecosystem's `lockfiles.names` in the table:
//! `package-lock.json`, `npm-shrinkwrap.json`, `yarn.lock`, `pnpm-lock.yaml`, `Cargo.lock`,
//! `requirements*.txt`, `uv.lock`) or an explicit prefix, the ecosystem's name (`npm:`,
//! `cargo:`, `pypi:`, `apt:` — apt package lists have no standard name).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cairn_mirror::cid::Digest;

use super::{Entry, TABLE};

/// What one lockfile entry names.
#[derive(Clone, Debug)]
pub enum Item {
    Npm(cairn_npm::lockfile::Locked),
    Cargo(cairn_cargo::lockfile::LockedCrate),
    Pypi(cairn_pypi::lockfile::Locked),
    Apt(cairn_apt::lockfile::Wanted),
}

impl Item {
    /// The registry digests that name the entry's files (none for apt, whose lists name
    /// packages: they are resolved against the indexes).
    pub fn digests(&self) -> Vec<Digest> {
        match self {
            Item::Npm(l) => vec![l.integrity.clone()],
            Item::Cargo(l) => vec![l.checksum.clone()],
            Item::Pypi(l) => l.sha256.clone(),
            Item::Apt(_) => Vec::new(),
        }
    }

    /// `npm left-pad 1.3.0`, for progress and errors.
    pub fn describe(&self) -> String {
        match self {
            Item::Npm(l) => format!("npm {}@{}", l.name, l.version),
            Item::Cargo(l) => format!("cargo {} {}", l.name, l.version),
            Item::Pypi(l) => format!("pypi {}=={}", l.project, l.version),
            Item::Apt(w) => match &w.version {
                Some(v) => format!("apt {}={v}", w.name),
                None => format!("apt {}", w.name),
            },
        }
    }
}

/// True when the file name `name` matches `pattern`, where one `*` stands for any text.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
        None => pattern == name,
    }
}

/// The ecosystem of a lockfile, from a `KIND:` prefix or its name.
fn kind_of(arg: &str) -> Result<(&'static Entry, PathBuf)> {
    for entry in &TABLE {
        if let Some(path) = arg
            .strip_prefix(entry.name)
            .and_then(|r| r.strip_prefix(':'))
        {
            return Ok((entry, PathBuf::from(path)));
        }
    }
    let path = PathBuf::from(arg);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let found = TABLE.iter().find(|entry| {
        entry
            .lockfiles
            .names
            .iter()
            .any(|pattern| name_matches(pattern, name))
    });
    match found {
        Some(entry) => Ok((entry, path)),
        None => {
            let names: Vec<&str> = TABLE
                .iter()
                .flat_map(|e| e.lockfiles.names.iter().copied())
                .collect();
            let (last, rest) = names.split_last().map_or(("", &[][..]), |(l, r)| (*l, r));
            let prefixes: Vec<String> = TABLE.iter().map(|e| format!("{}:", e.name)).collect();
            bail!(
                "{arg}: unknown lockfile (expected {} or {last}, or a KIND: prefix: {})",
                rest.join(", "),
                prefixes.join(", ")
            )
        }
    }
}

/// Read one `[KIND:]FILE`. Errors name the file and line.
pub fn read(arg: &str) -> Result<Vec<Item>> {
    let (entry, path) = kind_of(arg)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read lockfile {}", path.display()))?;
    let file = path.display().to_string();
    (entry.lockfiles.read)(&file, &path, &text)
}

/// The apt package-list entries among `items` (they name packages, resolved later against
/// `Packages` indexes, where every other item names its files).
pub fn apt_wanted(items: &[Item]) -> Vec<cairn_apt::lockfile::Wanted> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Apt(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

/// Read every lockfile; all errors at once, one per line.
pub fn read_all(args: &[String]) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for arg in args {
        match read(arg) {
            Ok(found) => items.extend(found),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_names_or_prefixes() {
        let kind = |arg| kind_of(arg).map(|(entry, _)| entry.name);
        assert_eq!(kind("a/package-lock.json").expect("npm"), "npm");
        assert_eq!(kind("pnpm-lock.yaml").expect("pnpm"), "npm");
        assert_eq!(kind("Cargo.lock").expect("cargo"), "cargo");
        assert_eq!(kind("requirements-dev.txt").expect("pypi"), "pypi");
        assert_eq!(kind("requirements.txt").expect("pypi"), "pypi");
        assert_eq!(kind("x/uv.lock").expect("uv"), "pypi");
        assert!(kind("requirements.toml").is_err());
        assert!(kind("dev-requirements.txt").is_err());
        let (entry, path) = kind_of("apt:/tmp/pkgs.list").expect("apt");
        assert_eq!(
            (entry.name, path.as_path()),
            ("apt", std::path::Path::new("/tmp/pkgs.list"))
        );
        let e = kind("Gemfile.lock").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "Gemfile.lock: unknown lockfile (expected package-lock.json, npm-shrinkwrap.json, \
             yarn.lock, pnpm-lock.yaml, Cargo.lock, requirements*.txt or uv.lock, or a KIND: \
             prefix: npm:, cargo:, pypi:, apt:)"
        );
    }
}
