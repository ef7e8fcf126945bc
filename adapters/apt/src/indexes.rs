//! Which of the files a suite's `Release` lists `apt-get update` fetches (docs/protocols.md,
//! "apt: what `apt-get update` fetches"): for each component, `Packages` of each architecture
//! (and of `all` when the Release says so), `Sources` for `deb-src`, every `Translation-*`,
//! the DEP-11 `Components` and icon tarballs, and command-not-found's `Commands`; one
//! compressed variant of each, the one apt tries first. Never `Contents` (apt-file's, fetched
//! only when configured) nor pdiffs (asked only to update lists a machine already has, and
//! replaced by the whole index when missing).

use std::collections::{HashMap, HashSet};

use crate::release::{Listed, Release};

/// File name suffixes in the order apt tries them (its default `Acquire::CompressionTypes`:
/// xz, bzip2, lzma, gzip, lz4, zstd, then the uncompressed file).
pub const COMPRESSIONS: [&str; 7] = [".xz", ".bz2", ".lzma", ".gz", ".lz4", ".zst", ""];

/// `path` without its compression suffix, if it has a known one.
fn base_of(path: &str) -> &str {
    COMPRESSIONS
        .iter()
        .filter(|c| !c.is_empty())
        .find_map(|c| path.strip_suffix(c))
        .unwrap_or(path)
}

/// True when `path` (relative to `dists/SUITE/`) is of a kind `apt-get update` fetches, in
/// any compression: `Packages`, `Sources`, `Translation-*`, DEP-11 `Components-*.yml` and
/// `icons-*.tar`, and `Commands-*`. By-hash names, pdiffs and `Contents` are not.
pub fn is_update_index(path: &str) -> bool {
    if path.contains("/by-hash/") || path.contains(".diff/") {
        return false;
    }
    let base = base_of(path);
    let Some((dir, file)) = base.rsplit_once('/') else {
        return false;
    };
    let kind = dir.rsplit('/').next().unwrap_or_default();
    match kind {
        _ if kind.starts_with("binary-") => file == "Packages",
        "source" => file == "Sources",
        "i18n" => file.starts_with("Translation-"),
        "dep11" => {
            (file.starts_with("Components-") && file.ends_with(".yml"))
                || (file.starts_with("icons-") && file.ends_with(".tar"))
        }
        "cnf" => file.starts_with("Commands-"),
        _ => false,
    }
}

/// The files of `release` that `apt-get update` fetches for `components` on machines of
/// `architectures` (dpkg's names: `amd64`, `arm64`), with `Sources` when `sources` (a
/// `deb-src` entry): one listed variant per index, the first apt tries. Indexes the Release
/// does not list are not asked for by apt either, and are left out.
pub fn update_indexes<'a>(
    release: &'a Release,
    components: &[String],
    architectures: &[String],
    sources: bool,
) -> Vec<&'a Listed> {
    let listed_archs: Option<Vec<&str>> = release
        .field("Architectures")
        .map(|a| a.split_whitespace().collect());
    let supported = |arch: &str| listed_archs.as_ref().is_none_or(|l| l.contains(&arch));
    let mut archs: Vec<&str> = architectures
        .iter()
        .map(String::as_str)
        .filter(|a| supported(a))
        .collect();
    // Debian lists `binary-all` without `all` in Architectures, and keeps arch:all packages in
    // every architecture's file too: apt fetches it only when the Release names `all`.
    if listed_archs.as_ref().is_some_and(|l| l.contains(&"all")) {
        archs.push("all");
    }
    // Bases in order, each once (a long Release is read in linear time).
    let mut bases: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut push = |base: String| {
        if seen.insert(base.clone()) {
            bases.push(base);
        }
    };
    for component in components {
        for arch in &archs {
            push(format!("{component}/binary-{arch}/Packages"));
            if *arch != "all" {
                push(format!("{component}/dep11/Components-{arch}.yml"));
                push(format!("{component}/cnf/Commands-{arch}"));
            }
        }
        if sources {
            push(format!("{component}/source/Sources"));
        }
        // Every translation and every icon size the suite has: which ones a machine asks for
        // depends on its locale and desktop settings.
        for file in &release.files {
            let base = base_of(&file.path);
            let Some(rest) = base.strip_prefix(component.as_str()) else {
                continue;
            };
            let wanted = rest.starts_with("/i18n/Translation-")
                || (rest.starts_with("/dep11/icons-") && rest.ends_with(".tar"));
            if wanted && !rest.contains("/by-hash/") {
                push(base.to_owned());
            }
        }
    }
    let by_path: HashMap<&str, &Listed> =
        release.files.iter().map(|f| (f.path.as_str(), f)).collect();
    bases
        .iter()
        .filter_map(|base| {
            COMPRESSIONS
                .iter()
                .find_map(|suffix| by_path.get(format!("{base}{suffix}").as_str()).copied())
        })
        .collect()
}

/// The text of a clear-signed `InRelease`, unverified: for reading the names it lists from a
/// node that has verified it. Dash-escaped lines are unescaped.
pub fn signed_text(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8 text".to_owned())?;
    let Some(start) = text.find("-----BEGIN PGP SIGNED MESSAGE-----") else {
        // A plain Release.
        return Ok(text.to_owned());
    };
    let rest = &text[start..];
    let body_at = rest
        .find("\n\n")
        .ok_or_else(|| "clear-signed text without a body".to_owned())?;
    let body = &rest[body_at + 2..];
    let end = body
        .find("\n-----BEGIN PGP SIGNATURE-----")
        .ok_or_else(|| "clear-signed text without a signature".to_owned())?;
    Ok(body[..end]
        .lines()
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(architectures: &str, paths: &[&str]) -> Release {
        let mut text = format!("Suite: stable\nArchitectures: {architectures}\nSHA256:\n");
        for (n, path) in paths.iter().enumerate() {
            text.push_str(&format!(" {:064x} {} {path}\n", n + 1, 100 + n));
        }
        Release::parse(&text).expect("release")
    }

    fn paths(found: Vec<&Listed>) -> Vec<&str> {
        found.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn update_indexes_are_what_apt_fetches_first() {
        let r = release(
            "amd64 arm64",
            &[
                "main/binary-amd64/Packages",
                "main/binary-amd64/Packages.gz",
                "main/binary-amd64/Packages.xz",
                "main/binary-arm64/Packages.xz",
                "main/binary-all/Packages.xz",
                "main/i18n/Translation-en.bz2",
                "main/i18n/Translation-de.bz2",
                "main/i18n/Translation-de.xz",
                "main/dep11/Components-amd64.yml.gz",
                "main/dep11/Components-amd64.yml.xz",
                "main/dep11/icons-48x48.tar.gz",
                "main/dep11/icons-64x64@2.tar.gz",
                "main/cnf/Commands-amd64.xz",
                "main/Contents-amd64.gz",
                "main/binary-amd64/Packages.diff/Index",
                "main/source/Sources.xz",
                "contrib/binary-amd64/Packages.xz",
                "contrib/i18n/Translation-en.bz2",
            ],
        );
        let found = paths(update_indexes(
            &r,
            &["main".into()],
            &["amd64".into()],
            false,
        ));
        assert_eq!(
            found,
            [
                "main/binary-amd64/Packages.xz",
                "main/dep11/Components-amd64.yml.xz",
                "main/cnf/Commands-amd64.xz",
                "main/i18n/Translation-en.bz2",
                "main/i18n/Translation-de.xz",
                "main/dep11/icons-48x48.tar.gz",
                "main/dep11/icons-64x64@2.tar.gz",
            ]
        );
        // `binary-all` only when the Release names `all`; an architecture it lacks is skipped.
        let r = release(
            "all amd64",
            &[
                "main/binary-amd64/Packages.xz",
                "main/binary-all/Packages.xz",
            ],
        );
        let found = paths(update_indexes(
            &r,
            &["main".into()],
            &["amd64".into(), "riscv64".into()],
            true,
        ));
        assert_eq!(
            found,
            [
                "main/binary-amd64/Packages.xz",
                "main/binary-all/Packages.xz"
            ]
        );
    }

    #[test]
    fn update_index_kinds() {
        for path in [
            "main/binary-amd64/Packages.xz",
            "main/binary-amd64/Packages",
            "main/source/Sources.gz",
            "main/i18n/Translation-pt_BR.bz2",
            "main/dep11/Components-arm64.yml.gz",
            "main/dep11/icons-128x128@2.tar.gz",
            "main/cnf/Commands-amd64.xz",
        ] {
            assert!(is_update_index(path), "{path}");
        }
        for path in [
            "main/Contents-amd64.gz",
            "main/binary-amd64/Packages.diff/Index",
            "main/binary-amd64/by-hash/SHA256/00",
            "main/binary-amd64/Release",
            "main/binary-amd64/Packages.xz.asc",
            "Release",
        ] {
            assert!(!is_update_index(path), "{path}");
        }
    }

    #[test]
    fn signed_text_unwraps_a_clear_signed_release() {
        let body = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: stable\n- -dashed\nSHA256:\n x\n-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        assert_eq!(
            signed_text(body.as_bytes()).expect("text"),
            "Suite: stable\n-dashed\nSHA256:\n x\n"
        );
        assert!(signed_text(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: x\n\nno end").is_err());
        assert_eq!(signed_text(b"Suite: a\n").expect("plain"), "Suite: a\n");
    }
}
