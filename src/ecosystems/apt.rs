//! apt's entry in the ecosystem table, and its specifics: which archives to serve (configured
//! with `--apt-upstream NAME=URL`, else every archive of the machine's own apt sources), each
//! with the keyring its Release files must be signed with and its own adapter, what `cairn
//! status` says of them, package lists resolved against the indexes a node holds (`export`),
//! and `cairn setup apt`. `suites.rs`: the package lists' suites, for `prefetch` and `export`.
//!
//! Keyrings: `--apt-keyring NAME=FILE` (repeatable), else the source's `Signed-By` files, else
//! Debian's archive keyring. Credentials: in the archive's URL, else apt's own auth files
//! (`auth.rs`).

mod auth;
mod suites;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cairn_apt::sources::{self, Source};
use cairn_mirror::EcosystemSetup;
use url::Url;

pub use self::suites::{AptSuite, held_update_indexes, machine_architectures, suites};
use super::discover::{points_at_self, with_slash};
use super::lockfiles::Item;
use super::{Client, Entry, Kind, Lockfiles};

pub const ENTRY: Entry = Entry {
    name: "apt",
    route: "apt/",
    clients: &[Client::Apt],
    lockfiles: Lockfiles {
        // Package lists (or `dpkg --get-selections` output) have no standard name: `apt:FILE`.
        names: &[],
        read: read_lockfile,
    },
    kind: Kind::Apt,
};

fn read_lockfile(file: &str, _path: &Path, text: &str) -> Result<Vec<Item>> {
    Ok(cairn_apt::lockfile::read(file, text)?
        .into_iter()
        .map(Item::Apt)
        .collect())
}

/// One adapter per apt archive (`configured`, else apt's sources), with its keyring loaded. A
/// configured archive whose keyring cannot be read is an error; a discovered one is left off
/// with a warning.
pub fn adapters(
    configured: &[String],
    keyrings: &[String],
    listen: &SocketAddr,
    public_url: Option<&Url>,
) -> Result<Vec<EcosystemSetup>> {
    let archives = archives(configured, keyrings, Path::new(APT_ETC), listen, public_url)?;
    if archives.is_empty() {
        tracing::warn!(target: crate::logging::TARGET,
            ecosystem = "apt",
            "off: no archives in apt's sources; set --apt-upstream NAME=URL"
        );
    }
    let mut out = Vec::new();
    for archive in archives {
        let paths: Vec<&Path> = archive.keyrings.iter().map(|p| p.as_path()).collect();
        let keyring = match cairn_apt::Keyring::load(&paths) {
            Ok(keyring) => keyring,
            Err(e) if configured.is_empty() => {
                tracing::warn!(target: crate::logging::TARGET, archive = %archive.name, "off: {e}; set --apt-keyring {}=FILE", archive.name);
                continue;
            }
            Err(e) => bail!("apt archive {}: {e}", archive.name),
        };
        let ecosystem =
            cairn_apt::Archive::new(&archive.name, keyring).map_err(anyhow::Error::msg)?;
        tracing::info!(target: crate::logging::TARGET, ecosystem = %format!("apt/{}", archive.name), upstream = %cairn_mirror::upstream::redact(&archive.upstream), from = %archive.from, keyring = %ecosystem.keyring().source(), "upstream");
        // apt's own credentials for the archive, unless its URL carries some.
        let bare = archive.upstream.username().is_empty() && archive.upstream.password().is_none();
        let credentials = bare
            .then(|| auth::credentials(Path::new(APT_ETC), &archive.upstream))
            .flatten();
        if credentials.is_some() {
            tracing::info!(target: crate::logging::TARGET, ecosystem = %format!("apt/{}", archive.name), from = "apt's auth.conf", "upstream credentials");
        }
        // Served where its index namespace says, as before the mount was the engine's.
        let mut setup = EcosystemSetup::new(
            Arc::new(ecosystem),
            &format!("apt/{}", archive.name),
            Ok(archive.upstream),
        );
        setup.credentials = credentials;
        out.push(setup);
    }
    Ok(out)
}

/// What `cairn status` reports of apt: each archive `serve` would take, or why apt is off.
pub fn status(
    configured: &[String],
    keyrings: &[String],
    listen: &SocketAddr,
) -> Vec<serde_json::Value> {
    match archives(configured, keyrings, Path::new(APT_ETC), listen, None) {
        Ok(archives) if archives.is_empty() => vec![serde_json::json!({
            "ecosystem": "apt",
            "off": "no archives in apt's sources",
            "enable": "--apt-upstream NAME=URL",
        })],
        Ok(archives) => archives
            .into_iter()
            .map(|a| {
                serde_json::json!({
                    "ecosystem": format!("apt/{}", a.name),
                    "url": cairn_mirror::upstream::redact(&a.upstream),
                    "from": a.from,
                })
            })
            .collect(),
        Err(e) => vec![serde_json::json!({
            "ecosystem": "apt",
            "off": format!("{e:#}"),
            "enable": "--apt-upstream NAME=URL",
        })],
    }
}

/// Used when neither the configuration nor the source names a keyring.
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Where apt keeps its sources.
pub const APT_ETC: &str = "/etc/apt";

/// An archive to serve at `/apt/NAME/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptArchive {
    pub name: String,
    pub upstream: Url,
    pub keyrings: Vec<PathBuf>,
    /// Where it was found, for the start-up log.
    pub from: String,
}

/// The archives of apt's sources under `etc` (`sources.list`, `sources.list.d/*.list` and
/// `*.sources`), with the file each came from, in file order.
pub fn machine_sources(etc: &Path) -> Vec<(Source, PathBuf)> {
    let mut files = vec![etc.join("sources.list")];
    if let Ok(dir) = std::fs::read_dir(etc.join("sources.list.d")) {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let parsed = match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources::parse_deb822(&text),
            Some("list") => sources::parse_list(&text),
            _ => continue,
        };
        out.extend(parsed.into_iter().map(|s| (s, file.clone())));
    }
    out
}

/// `NAME=VALUE` pairs of a repeatable flag, by name.
fn pairs(values: &[String], flag: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for value in values {
        let (name, rest) = value
            .split_once('=')
            .with_context(|| format!("--{flag} {value:?}: expected NAME=VALUE"))?;
        cairn_apt::check_archive_name(name).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))?;
        out.entry(name.to_owned())
            .or_default()
            .push(rest.to_owned());
    }
    Ok(out)
}

/// The archives to serve: configured ones, else the machine's (skipping sources that already
/// point at this node).
pub fn archives(
    configured: &[String],
    keyrings: &[String],
    etc: &Path,
    listen: &SocketAddr,
    public: Option<&Url>,
) -> Result<Vec<AptArchive>> {
    let keyrings = pairs(keyrings, "apt-keyring")?;
    let mut out: Vec<AptArchive> = Vec::new();
    if !configured.is_empty() {
        for (name, urls) in pairs(configured, "apt-upstream")? {
            let [url] = urls.as_slice() else {
                bail!("--apt-upstream names archive {name} more than once");
            };
            let upstream = Url::parse(url).with_context(|| {
                format!(
                    "--apt-upstream {name}={}",
                    cairn_mirror::upstream::redact_text(url)
                )
            })?;
            out.push(AptArchive {
                name,
                upstream: with_slash(upstream),
                keyrings: Vec::new(),
                from: "configured".into(),
            });
        }
    } else {
        for (source, file) in machine_sources(etc) {
            if points_at_self(&source.uri, listen, public) {
                continue;
            }
            let name = source.archive_name();
            if cairn_apt::check_archive_name(&name).is_err() {
                continue;
            }
            let upstream = with_slash(source.uri.clone());
            match out.iter_mut().find(|a| a.name == name) {
                Some(existing) if existing.upstream == upstream => {}
                Some(existing) => {
                    tracing::warn!(target: "cairn::apt", archive = %name, kept = %cairn_mirror::upstream::redact(&existing.upstream), skipped = %cairn_mirror::upstream::redact(&upstream), "two apt archives share a name; set --apt-upstream to choose");
                }
                None => out.push(AptArchive {
                    name,
                    upstream,
                    keyrings: source
                        .signed_by
                        .as_deref()
                        .map(sources::keyring_files)
                        .unwrap_or_default()
                        .into_iter()
                        .map(PathBuf::from)
                        .collect(),
                    from: file.display().to_string(),
                }),
            }
        }
    }
    for archive in &mut out {
        if let Some(files) = keyrings.get(&archive.name) {
            archive.keyrings = files.iter().map(PathBuf::from).collect();
        }
        if archive.keyrings.is_empty() {
            archive.keyrings.push(PathBuf::from(DEFAULT_KEYRING));
        }
    }
    Ok(out)
}

/// Resolve package lists against the `Packages` indexes this node holds (for `cairn export`;
/// prefetch resolves them through the node): for each wanted
/// package, (archive name, pool path, SHA256). `what` names the lists in errors.
pub fn resolve_held(
    store: &cairn_mirror::store::Store,
    index: &cairn_mirror::index::Index,
    what: &str,
    wanted: &[cairn_apt::lockfile::Wanted],
) -> Result<Vec<(String, cairn_apt::packages::PoolFile)>> {
    let mut listed = Vec::new();
    let mut archive_of = std::collections::HashMap::new();
    for (eco, key, record) in index.all_artifacts().context("reading the index")? {
        let Some(archive) = eco.strip_prefix("apt/") else {
            continue;
        };
        // Index files fetched through their mutable paths are held under content keys.
        if !cairn_apt::is_listing_key(cairn_mirror::content_key::route_key(&key)) {
            continue;
        }
        let file = store
            .blob(&record.flat)
            .open()
            .with_context(|| format!("{eco} {key}"))?;
        let files =
            cairn_apt::packages::read(file).map_err(|e| anyhow::anyhow!("{eco} {key}: {e}"))?;
        for f in files {
            archive_of.insert(f.filename.clone(), archive.to_owned());
            listed.push(f);
        }
    }
    if listed.is_empty() {
        bail!(
            "no apt indexes on this node to resolve the {what} against (run `cairn prefetch` with them first)"
        );
    }
    let found = cairn_apt::lockfile::resolve(what, wanted, &listed)?;
    Ok(found
        .into_iter()
        .map(|f| {
            let archive = archive_of.get(&f.filename).cloned().unwrap_or_default();
            (archive, f.clone())
        })
        .collect())
}

/// Print, or write, the apt sources that point the machine's archives at Cairn (`base` is
/// `http://HOST:PORT/apt/`). Applying records the upstreams in `cairn.toml` first, writes
/// `sources.list.d/cairn.sources`, and renames each source file it replaces to
/// `FILE.disabled-by-cairn`.
pub fn setup(
    base: &Url,
    apply: bool,
    config: Option<&Path>,
    etc: &Path,
    listen: &SocketAddr,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let found: Vec<(Source, PathBuf)> = machine_sources(etc)
        .into_iter()
        .filter(|(s, _)| !points_at_self(&s.uri, listen, Some(base)))
        .collect();
    if found.is_empty() {
        bail!(
            "no apt archives in {}/sources.list or sources.list.d to point at Cairn",
            etc.display()
        );
    }
    let list: Vec<Source> = found.iter().map(|(s, _)| s.clone()).collect();
    let text = sources::render_deb822(&list, base);
    // One file often holds several entries (a deb822 file with one stanza per archive): each
    // file is named once.
    let mut files: Vec<&PathBuf> = Vec::new();
    for (_, file) in &found {
        if !files.contains(&file) {
            files.push(file);
        }
    }
    let write_failed = |e: std::io::Error| anyhow::anyhow!("cannot write the apt setup: {e}");
    if !apply {
        writeln!(
            out,
            "# Write to {}/sources.list.d/cairn.sources, replacing the entries below (or run this command with --apply):",
            etc.display()
        )
        .map_err(write_failed)?;
        for file in &files {
            writeln!(out, "#   {}", file.display()).map_err(write_failed)?;
        }
        write!(out, "{text}").map_err(write_failed)?;
        return Ok(());
    }
    let upstreams: Vec<String> = list
        .iter()
        .map(|s| format!("{}={}", s.archive_name(), s.uri))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (path, _) = crate::settings::config_path(config);
    crate::settings::edit_toml(&path, |table| {
        table.entry("apt-upstream").or_insert_with(|| {
            toml::Value::Array(upstreams.into_iter().map(toml::Value::String).collect())
        });
    })?;
    writeln!(out, "recorded apt-upstream in {}", path.display()).map_err(write_failed)?;
    let target = etc.join("sources.list.d").join("cairn.sources");
    crate::settings::write_whole(&target, &text, 0o644)?;
    writeln!(out, "wrote {}", target.display()).map_err(write_failed)?;
    for file in files {
        if file == &target {
            continue;
        }
        let aside = PathBuf::from(format!("{}.disabled-by-cairn", file.display()));
        std::fs::rename(file, &aside)
            .with_context(|| format!("cannot move {} aside", file.display()))?;
        writeln!(out, "moved {} to {}", file.display(), aside.display()).map_err(write_failed)?;
    }
    Ok(())
}

/// apt's side of a node requiring tokens or serving HTTPS with a private CA: the token in
/// `ETC/auth.conf.d/cairn.conf` (mode 0600; over plain HTTP the machine must name its scheme, or
/// apt will not send it) and the CA in `ETC/apt.conf.d/60cairn-ca`. Printed, or written with
/// `apply`.
pub fn access(
    base: &Url,
    apply: bool,
    etc: &Path,
    token: Option<&str>,
    ca_file: Option<&Path>,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let host = base.host_str().context("the node's URL has no host")?;
    let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
    let scheme = if base.scheme() == "http" {
        "http://"
    } else {
        ""
    };
    let mut files = Vec::new();
    if let Some(secret) = token {
        let line = format!(
            "machine {scheme}{host}{port}{} login cairn password {secret}\n",
            base.path()
        );
        files.push((etc.join("auth.conf.d/cairn.conf"), line, 0o600));
    }
    if let Some(ca) = ca_file {
        let line = format!("Acquire::https::{host}::CaInfo \"{}\";\n", ca.display());
        files.push((etc.join("apt.conf.d/60cairn-ca"), line, 0o644));
    }
    let write_failed = |e: std::io::Error| anyhow::anyhow!("cannot write the apt setup: {e}");
    for (path, text, mode) in files {
        if !apply {
            write!(out, "# Write to {}:\n{text}", path.display()).map_err(write_failed)?;
            continue;
        }
        crate::settings::write_whole(&path, &text, mode)?;
        writeln!(out, "wrote {}", path.display()).map_err(write_failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_to_auth_conf_for_its_owner_only_and_the_ca_to_apt_conf() {
        use std::os::unix::fs::PermissionsExt as _;
        let etc = tempfile::tempdir().expect("tempdir");
        let base = Url::parse("http://cache.internal:7777/apt/").expect("url");
        let mut printed = Vec::new();
        access(
            &base,
            false,
            etc.path(),
            Some("cairn_s"),
            None,
            &mut printed,
        )
        .expect("print");
        let printed = String::from_utf8(printed).expect("utf-8");
        assert!(
            printed
                .contains("machine http://cache.internal:7777/apt/ login cairn password cairn_s"),
            "{printed}"
        );
        assert!(
            !etc.path().join("auth.conf.d").exists(),
            "printing writes nothing"
        );

        let tls = Url::parse("https://cache.internal/apt/").expect("url");
        let ca = Path::new("/etc/ssl/corp-ca.pem");
        access(
            &tls,
            true,
            etc.path(),
            Some("cairn_s"),
            Some(ca),
            &mut Vec::new(),
        )
        .expect("apply");
        let auth = etc.path().join("auth.conf.d/cairn.conf");
        assert_eq!(
            std::fs::read_to_string(&auth).expect("auth.conf"),
            "machine cache.internal/apt/ login cairn password cairn_s\n"
        );
        let mode = std::fs::metadata(&auth).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(etc.path().join("apt.conf.d/60cairn-ca")).expect("ca"),
            "Acquire::https::cache.internal::CaInfo \"/etc/ssl/corp-ca.pem\";\n"
        );
    }

    #[test]
    fn archives_come_from_apt_sources_and_flags() {
        let etc = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(etc.path().join("sources.list.d")).expect("dir");
        std::fs::write(
            etc.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: https://upstream.invalid/debian\nSuites: bookworm bookworm-updates\n\
             Components: main\nSigned-By: /keys/debian.gpg\n\n\
             Types: deb\nURIs: https://upstream.invalid/debian-security\nSuites: bookworm-security\n\
             Components: main\n",
        )
        .expect("write");
        std::fs::write(
            etc.path().join("sources.list"),
            "deb http://127.0.0.1:7777/apt/debian bookworm main\n",
        )
        .expect("write");
        std::fs::write(
            etc.path().join("sources.list.d/x.list.disabled"),
            "deb http://a.invalid/x s main\n",
        )
        .expect("write");
        let listen: SocketAddr = "127.0.0.1:7777".parse().expect("addr");
        let found = archives(&[], &[], etc.path(), &listen, None).expect("archives");
        let names: Vec<&str> = found.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["debian", "debian-security"]);
        assert_eq!(
            found[0].upstream.as_str(),
            "https://upstream.invalid/debian/"
        );
        assert_eq!(found[0].keyrings, [PathBuf::from("/keys/debian.gpg")]);
        assert_eq!(found[1].keyrings, [PathBuf::from(DEFAULT_KEYRING)]);

        let configured = archives(
            &["test=http://127.0.0.1:1/repo".into()],
            &["test=/k.gpg".into()],
            etc.path(),
            &listen,
            None,
        )
        .expect("configured");
        assert_eq!(configured.len(), 1);
        assert_eq!(configured[0].upstream.as_str(), "http://127.0.0.1:1/repo/");
        assert_eq!(configured[0].keyrings, [PathBuf::from("/k.gpg")]);
        assert!(archives(&["BAD=http://x".into()], &[], etc.path(), &listen, None).is_err());
        assert!(archives(&["nourl".into()], &[], etc.path(), &listen, None).is_err());
    }

    #[test]
    fn setup_names_each_replaced_file_once() {
        let etc = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(etc.path().join("sources.list.d")).expect("dir");
        // Two stanzas (two archives) in one deb822 file, and a one-line file with two lines.
        std::fs::write(
            etc.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: https://upstream.invalid/debian\nSuites: bookworm bookworm-updates\n\
             Components: main\n\n\
             Types: deb\nURIs: https://upstream.invalid/debian-security\nSuites: bookworm-security\n\
             Components: main\n",
        )
        .expect("write");
        std::fs::write(
            etc.path().join("sources.list"),
            "deb https://upstream.invalid/extra a main\ndeb https://upstream.invalid/extra b main\n",
        )
        .expect("write");
        let listen: SocketAddr = "127.0.0.1:7777".parse().expect("addr");
        let base = Url::parse("http://127.0.0.1:7777/apt/").expect("url");
        let mut printed = Vec::new();
        setup(&base, false, None, etc.path(), &listen, &mut printed).expect("print");
        let printed = String::from_utf8(printed).expect("utf-8");
        for file in ["sources.list.d/debian.sources", "sources.list"] {
            let line = format!("#   {}\n", etc.path().join(file).display());
            assert_eq!(printed.matches(&line).count(), 1, "{file}:\n{printed}");
        }
        assert_eq!(printed.matches("URIs: ").count(), 4, "{printed}");

        let config = etc.path().join("cairn.toml");
        let mut applied = Vec::new();
        setup(
            &base,
            true,
            Some(&config),
            etc.path(),
            &listen,
            &mut applied,
        )
        .expect("apply");
        let applied = String::from_utf8(applied).expect("utf-8");
        assert_eq!(applied.matches("moved ").count(), 2, "{applied}");
    }

    #[test]
    fn setup_apply_replaces_the_sources() {
        let etc = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(etc.path().join("sources.list.d")).expect("dir");
        let original = etc.path().join("sources.list.d/debian.sources");
        std::fs::write(
            &original,
            "Types: deb\nURIs: https://upstream.invalid/debian\nSuites: bookworm\nComponents: main\n",
        )
        .expect("write");
        let config = etc.path().join("cairn.toml");
        let listen: SocketAddr = "127.0.0.1:7777".parse().expect("addr");
        let base = Url::parse("http://127.0.0.1:7777/apt/").expect("url");
        setup(
            &base,
            true,
            Some(&config),
            etc.path(),
            &listen,
            &mut Vec::new(),
        )
        .expect("apply");
        let written =
            std::fs::read_to_string(etc.path().join("sources.list.d/cairn.sources")).expect("read");
        assert!(
            written.contains("URIs: http://127.0.0.1:7777/apt/debian\n"),
            "{written}"
        );
        assert!(!original.exists());
        assert!(
            etc.path()
                .join("sources.list.d/debian.sources.disabled-by-cairn")
                .exists()
        );
        let recorded = std::fs::read_to_string(&config).expect("config");
        assert!(
            recorded.contains("debian=https://upstream.invalid/debian"),
            "{recorded}"
        );
        // Applied once, the sources point at Cairn: the recorded upstreams are what it serves.
        assert!(
            archives(&[], &[], etc.path(), &listen, Some(&base))
                .expect("none")
                .is_empty()
        );
    }
}
