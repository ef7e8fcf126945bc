//! `--lockfile [KIND:]FILE`: what a lockfile pins, read by its ecosystem's adapter. The kind
//! comes from the file name (`package-lock.json`, `npm-shrinkwrap.json`, `yarn.lock`,
//! `pnpm-lock.yaml`, `Cargo.lock`, `requirements*.txt`, `uv.lock`) or an explicit prefix
//! (`npm:`, `cargo:`, `pypi:`, `apt:` — apt package lists have no standard name).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cairn_mirror::cid::Digest;

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

/// The kind of a lockfile, from a prefix or its name.
fn kind_of(arg: &str) -> Result<(&'static str, PathBuf)> {
    for kind in ["npm", "cargo", "pypi", "apt"] {
        if let Some(path) = arg.strip_prefix(kind).and_then(|r| r.strip_prefix(':')) {
            return Ok((kind, PathBuf::from(path)));
        }
    }
    let path = PathBuf::from(arg);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let kind = match name {
        "package-lock.json" | "npm-shrinkwrap.json" | "yarn.lock" | "pnpm-lock.yaml" => "npm",
        "Cargo.lock" => "cargo",
        "uv.lock" => "pypi",
        n if n.starts_with("requirements") && n.ends_with(".txt") => "pypi",
        _ => bail!(
            "{arg}: unknown lockfile (expected package-lock.json, npm-shrinkwrap.json, yarn.lock, \
             pnpm-lock.yaml, Cargo.lock, requirements*.txt or uv.lock, or a KIND: prefix: \
             npm:, cargo:, pypi:, apt:)"
        ),
    };
    Ok((kind, path))
}

/// Read one `[KIND:]FILE`. Errors name the file and line.
pub fn read(arg: &str) -> Result<Vec<Item>> {
    let (kind, path) = kind_of(arg)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read lockfile {}", path.display()))?;
    let file = path.display().to_string();
    let items = match kind {
        "npm" => cairn_npm::lockfile::read(&file, &text)?
            .into_iter()
            .map(Item::Npm)
            .collect(),
        "cargo" => cairn_cargo::lockfile::read(&file, &text)?
            .into_iter()
            .map(Item::Cargo)
            .collect(),
        "pypi" if is_uv_lock(&path) => cairn_pypi::lockfile::uv_lock(&file, &text)?
            .into_iter()
            .map(Item::Pypi)
            .collect(),
        "pypi" => cairn_pypi::lockfile::requirements(&file, &text)?
            .into_iter()
            .map(Item::Pypi)
            .collect(),
        _ => cairn_apt::lockfile::read(&file, &text)?
            .into_iter()
            .map(Item::Apt)
            .collect(),
    };
    Ok(items)
}

fn is_uv_lock(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()) == Some("uv.lock")
}

/// Read every lockfile; all errors at once, one per line.
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
        assert_eq!(kind_of("a/package-lock.json").expect("npm").0, "npm");
        assert_eq!(kind_of("Cargo.lock").expect("cargo").0, "cargo");
        assert_eq!(kind_of("requirements-dev.txt").expect("pypi").0, "pypi");
        let (kind, path) = kind_of("apt:/tmp/pkgs.list").expect("apt");
        assert_eq!((kind, path.as_path()), ("apt", Path::new("/tmp/pkgs.list")));
        let e = kind_of("Gemfile.lock").expect_err("unknown");
        assert!(
            e.to_string().contains("Gemfile.lock: unknown lockfile"),
            "{e}"
        );
    }
}
