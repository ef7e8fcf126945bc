//! `cairn status`: what the node holds, where each ecosystem's upstream is (as `serve` would
//! find it without flags), and whether a node answers at `--listen`.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::Common;
use crate::ecosystems::{self, apt, discover::Found};
use crate::settings::{self, FileSettings};

pub async fn run(common: &Common, file: &FileSettings, json: bool) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    let listen = settings::listen(common.listen.as_deref(), file)?;
    let index_path = data_dir.join("index.sqlite3");
    if !index_path.exists() {
        anyhow::bail!(
            "no Cairn store in {} (run `cairn serve` first)",
            data_dir.display()
        );
    }
    let dir = data_dir.clone();
    let (stats, held, free, pins) = tokio::task::spawn_blocking(move || {
        let store = cairn_mirror::store::Store::attach(&dir)?;
        let stats = store.index().stats()?;
        let pins = store.index().pins()?.len();
        Ok::<_, cairn_mirror::error::StoreError>((
            stats,
            store.held_bytes_by_ecosystem()?,
            store.free_bytes(),
            pins,
        ))
    })
    .await
    .context("reading the index")?
    .context("reading the index")?;
    let last_verify = last_verify(&data_dir).await?;
    // As `serve` would take it without flags: environment, then `cairn.toml`.
    let limit = settings::from_env("max-size", file.max_size.as_deref())
        .map(|text| settings::parse_size(&text).context("max-size"))
        .transpose()?;
    let mut ecosystem_limits = std::collections::BTreeMap::new();
    for (ecosystem, key) in settings::ECOSYSTEM_LIMITS {
        if let Some(text) = settings::from_env(key, file.max_size_of(ecosystem)) {
            ecosystem_limits.insert(ecosystem, settings::parse_size(&text).context(key)?);
        }
    }
    // Bytes held per ecosystem (`apt`: every archive), with its limit; an ecosystem with a
    // limit that holds nothing is shown too.
    let mut by_ecosystem: std::collections::BTreeMap<&str, (u64, Option<u64>)> = held
        .by_ecosystem
        .iter()
        .map(|(e, &bytes)| {
            (
                e.as_str(),
                (bytes, ecosystem_limits.get(e.as_str()).copied()),
            )
        })
        .collect();
    for (&ecosystem, &limit) in &ecosystem_limits {
        by_ecosystem.entry(ecosystem).or_insert((0, Some(limit)));
    }
    let held = held.total;
    let running = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(listen),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    // As `serve` would find them without flags: environment, then `cairn.toml`, then the
    // clients' own settings.
    let mut upstreams: Vec<serde_json::Value> = Vec::new();
    for (entry, registry) in ecosystems::registries() {
        let setting = settings::from_env(registry.key, file.upstream(registry.key));
        let found = ecosystems::find_upstream(registry, setting.as_deref(), &listen, None).await;
        let route_settings = ecosystems::RouteSettings {
            npm_scope: settings::list_from_env("npm-scope", &file.npm_scope),
            pypi_index: settings::list_from_env("pypi-index", &file.pypi_index),
            pypi_route: settings::list_from_env("pypi-route", &file.pypi_route),
        };
        let main = found.as_ref().ok().map(|f| f.url().clone());
        let routed =
            match ecosystems::find_routed(registry, &route_settings, main.as_ref(), &listen, None)
                .await
            {
                Ok(extra) => extra
                    .routed
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "names": r.patterns.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                            "url": cairn_mirror::upstream::redact(&r.url),
                            "private": r.credentials.is_some(),
                            "from": extra.routed_from,
                        })
                    })
                    .collect(),
                Err(why) => vec![serde_json::json!({ "error": why })],
            };
        upstreams.push(match found {
            Ok(found) => serde_json::json!({
                "ecosystem": entry.name,
                "url": found.shown(),
                "from": match &found {
                    Found::Configured(_) => "configured",
                    Found::Discovered { from, .. } => from,
                },
                "routed": routed,
            }),
            Err(why) => serde_json::json!({
                "ecosystem": entry.name,
                "off": why,
                "enable": format!("--{} URL", registry.key),
            }),
        });
    }
    // cargo's alternative registries, as `serve` would find them.
    match ecosystems::cargo::registries::setups(
        &ecosystems::discover::Env::current(),
        &settings::list_from_env("cargo-registry", &file.cargo_registry),
        &listen,
        None,
    ) {
        Ok(setups) => upstreams.extend(setups.iter().map(|s| {
            serde_json::json!({
                "ecosystem": s.mount,
                "url": s.upstream.as_ref().map(cairn_mirror::upstream::redact).unwrap_or_default(),
                "from": "cargo's alternative registries",
                "private": s.is_private(None),
            })
        })),
        Err(e) => upstreams.push(serde_json::json!({
            "ecosystem": "cargo/*",
            "off": format!("{e:#}"),
            "enable": "--cargo-registry NAME=URL",
        })),
    }
    upstreams.extend(apt::status(
        &settings::list_from_env("apt-upstream", &file.apt_upstream),
        &settings::list_from_env("apt-keyring", &file.apt_keyring),
        &listen,
    ));
    if json {
        let report = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "data_dir": data_dir,
            "listen": listen.to_string(),
            "running": running,
            "upstreams": upstreams,
            "stats": stats,
            "store": {
                "held_bytes": held,
                "limit_bytes": limit,
                "free_bytes": free,
                "pinned_snapshots": pins,
                "ecosystems": by_ecosystem
                    .iter()
                    .map(|(e, (bytes, limit))| {
                        (e.to_string(), serde_json::json!({ "held_bytes": bytes, "limit_bytes": limit }))
                    })
                    .collect::<serde_json::Map<_, _>>(),
            },
            "last_verify": last_verify,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("status report")?
        );
        return Ok(());
    }
    let width = upstreams
        .iter()
        .filter_map(|u| u["ecosystem"].as_str())
        .map(|name| name.len() + 1)
        .chain([9])
        .max()
        .unwrap_or(9);
    println!("{:<width$} {}", "data dir:", data_dir.display());
    println!(
        "{:<width$} {} ({listen})",
        "server:",
        if running { "running" } else { "not running" }
    );
    for u in &upstreams {
        let name = format!("{}:", u["ecosystem"].as_str().unwrap_or("?"));
        match (u["url"].as_str(), u["off"].as_str()) {
            (Some(url), _) => println!(
                "{name:<width$} ← {url} (from {})",
                u["from"].as_str().unwrap_or("?")
            ),
            // The reason names the flag that turns the ecosystem on (also in the JSON's
            // `enable`).
            (None, Some(why)) if why.contains("--") => println!("{name:<width$} off: {why}"),
            (None, Some(why)) => println!(
                "{name:<width$} off: {why}; turn it on with {}",
                u["enable"].as_str().unwrap_or("its upstream flag")
            ),
            (None, None) => {}
        }
        for r in u["routed"].as_array().into_iter().flatten() {
            match (r["url"].as_str(), r["error"].as_str()) {
                (Some(url), _) => {
                    let names: Vec<&str> = r["names"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n.as_str())
                        .collect();
                    println!(
                        "{:<width$}   {} ← {url} (from {}){}",
                        "",
                        names.join(" "),
                        r["from"].as_str().unwrap_or("?"),
                        if r["private"].as_bool() == Some(true) {
                            ", private"
                        } else {
                            ""
                        }
                    )
                }
                (None, Some(why)) => println!("{:<width$}   routes: {why}", ""),
                (None, None) => {}
            }
        }
    }
    let size = cairn_mirror::units::size;
    println!(
        "{:<width$} {} of artifacts held, {}{}, {pins} pinned snapshot{}",
        "store:",
        size(held),
        limit.map_or("no size limit".to_owned(), |l| format!("limit {}", size(l))),
        free.map_or(String::new(), |f| format!(", {} free on its disk", size(f))),
        if pins == 1 { "" } else { "s" },
    );
    println!(
        "{:<width$} {}",
        "verify:",
        describe_verify(last_verify.as_ref())
    );
    if !by_ecosystem.is_empty() {
        let shown: Vec<String> = by_ecosystem
            .iter()
            .map(|(e, (bytes, limit))| match limit {
                Some(limit) => format!("{e} {} of {}", size(*bytes), size(*limit)),
                None => format!("{e} {}", size(*bytes)),
            })
            .collect();
        println!("{:<width$} {}", "held:", shown.join(", "));
    }
    if stats.is_empty() {
        println!("{:<width$} empty", "cache:");
    }
    for s in stats {
        println!(
            "{:<width$} {} artifacts ({}), {} metadata documents",
            format!("{}:", s.ecosystem),
            s.artifacts,
            cairn_mirror::units::size(s.artifact_bytes),
            s.metadata_documents
        );
    }
    Ok(())
}

/// The last `cairn verify` run, as kept in the index: when it ended (`finished_at`, ms since
/// the epoch) and its report.
async fn last_verify(data_dir: &std::path::Path) -> Result<Option<serde_json::Value>> {
    let dir = data_dir.to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        cairn_mirror::store::Store::attach(&dir)?
            .index()
            .last_run(cairn_mirror::VERIFY_JOB)
            .map_err(cairn_mirror::error::StoreError::from)
    })
    .await
    .context("reading the index")?
    .context("reading the last verify run")?;
    Ok(run.map(|(at, report)| {
        let report: cairn_mirror::VerifyReport = serde_json::from_str(&report).unwrap_or_default();
        serde_json::json!({
            "finished_at": at,
            "files": report.files,
            "bytes": report.bytes,
            "documents": report.documents,
            "damaged": report.damaged.len(),
            "repaired": report.repaired,
            "remaining": report.remaining,
        })
    }))
}

/// The last verify run in words.
fn describe_verify(run: Option<&serde_json::Value>) -> String {
    let Some(run) = run else {
        return "never run (`cairn verify`)".to_owned();
    };
    let ago = (cairn_mirror::now_ms() - run["finished_at"].as_i64().unwrap_or(0)).max(0) / 1000;
    let ago = match ago {
        0..120 => format!("{ago} s"),
        120..7200 => format!("{} min", ago / 60),
        7200..172_800 => format!("{} h", ago / 3600),
        _ => format!("{} days", ago / 86_400),
    };
    let files = run["files"].as_u64().unwrap_or(0);
    match run["damaged"].as_u64().unwrap_or(0) {
        0 => format!("{ago} ago, {files} files, no damage"),
        damaged => format!(
            "{ago} ago, {files} files: {damaged} damaged, {} repaired",
            run["repaired"].as_u64().unwrap_or(0)
        ),
    }
}
