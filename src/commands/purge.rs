//! `cairn purge SPEC...`: drop packages' cached files and documents at once (incident response:
//! a compromised release, a bad upload), so that nothing of them is served, held or announced,
//! and the next request fetches them from upstream again.
//!
//! Through the node answering at `--listen` when there is one (`DELETE /api/v1/purge/…`, which
//! only loopback clients may send), so that its memory caches and its announcements go too;
//! else directly on the data directory, as its owner (`Store::open` takes the directory's lock:
//! a node that holds it but does not answer is named, and nothing is purged behind its back).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use cairn_mirror::ecosystem::PackageScope;
use cairn_mirror::{PurgeReport, PurgeSpec};

use super::local_node::LocalNode;
use crate::cli::Common;
use crate::ecosystems;
use crate::settings::{self, FileSettings};

/// How long a node has to answer one purge.
const PURGE_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(common: &Common, file: &FileSettings, specs: &[String], json: bool) -> Result<()> {
    // Every spec is checked before anything is dropped.
    let specs = specs
        .iter()
        .map(|text| {
            let spec = PurgeSpec::parse(text).map_err(anyhow::Error::msg)?;
            check_ecosystem(&spec)?;
            Ok(spec)
        })
        .collect::<Result<Vec<_>>>()?;
    let listen = settings::listen(common.listen.as_deref(), file)?;
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    let node = LocalNode::find(listen, &data_dir, PURGE_TIMEOUT).await?;
    let mut reports = Vec::new();
    if let Some(node) = &node {
        for spec in &specs {
            let what = format!("the purge of {spec}");
            reports.push(
                node.call(reqwest::Method::DELETE, &spec.path(), &what)
                    .await?,
            );
        }
    } else {
        if !data_dir.join("index.sqlite3").exists() {
            bail!(
                "no Cairn node answers at {listen} and there is no Cairn store in {}: nothing to \
                 purge",
                data_dir.display()
            );
        }
        let purged = tokio::task::spawn_blocking(move || in_store(&data_dir, &specs))
            .await
            .context("purge")??;
        reports.extend(purged);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).context("purge report")?
        );
    } else {
        for report in &reports {
            print!("{}", describe(report));
        }
    }
    Ok(())
}

/// Refuse a spec whose ecosystem no Cairn serves (before anything is dropped).
fn check_ecosystem(spec: &PurgeSpec) -> Result<()> {
    if let Some(archive) = spec.ecosystem.strip_prefix("apt/") {
        cairn_apt::check_archive_name(archive)
            .map_err(|why| anyhow::anyhow!("{spec}: apt archive {archive:?}: {why}"))?;
        return Ok(());
    }
    let known: Vec<String> = ecosystems::base_adapters()
        .iter()
        .map(|a| a.name().to_owned())
        .collect();
    if !known.contains(&spec.ecosystem) {
        bail!(
            "{spec}: unknown ecosystem {:?} (Cairn purges {}, and apt:ARCHIVE/SOURCE)",
            spec.ecosystem,
            known.join(", ")
        );
    }
    Ok(())
}

/// Purge `specs` in the data directory `data_dir`, no node running (blocking).
fn in_store(data_dir: &std::path::Path, specs: &[PurgeSpec]) -> Result<Vec<PurgeReport>> {
    let store = cairn_mirror::store::Store::open(data_dir).with_context(|| {
        format!(
            "no node answers at --listen, and the data directory {} cannot be opened to purge \
             it directly",
            data_dir.display()
        )
    })?;
    let adapters = ecosystems::base_adapters();
    let mut reports = Vec::with_capacity(specs.len());
    for spec in specs {
        let scope: PackageScope = match spec.ecosystem.strip_prefix("apt/") {
            Some(_) => cairn_apt::source_package_scope(&spec.name, spec.version.as_deref()),
            None => adapters
                .iter()
                .find(|a| a.name() == spec.ecosystem)
                .with_context(|| format!("{spec}: unknown ecosystem {:?}", spec.ecosystem))?
                .package_scope(&spec.name, spec.version.as_deref()),
        }
        .map_err(|e| anyhow::anyhow!("{spec}: {e}"))?;
        let (report, _) = cairn_mirror::purge_store(&store, spec, &scope)
            .with_context(|| format!("purging {spec}"))?;
        reports.push(report);
    }
    Ok(reports)
}

/// What a purge dropped, for people: a summary line, then each key.
fn describe(report: &PurgeReport) -> String {
    let spec = PurgeSpec {
        ecosystem: report.ecosystem.clone(),
        name: report.package.clone(),
        version: report.version.clone(),
    };
    let mut out = format!(
        "{spec}: dropped {} document{}, {} file{} ({})\n",
        report.documents.len(),
        if report.documents.len() == 1 { "" } else { "s" },
        report.files,
        if report.files == 1 { "" } else { "s" },
        cairn_mirror::units::size(report.bytes),
    );
    for document in &report.documents {
        out.push_str(&format!("  document {}:{document}\n", report.ecosystem));
    }
    for artifact in &report.artifacts {
        out.push_str(&format!(
            "  file     {}:{}\n",
            artifact.ecosystem, artifact.key
        ));
    }
    for key in &report.unfinished {
        out.push_str(&format!(
            "  still downloading {}:{key} (held again when it ends: purge again then)\n",
            report.ecosystem
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_of_unknown_ecosystems_or_archives_are_refused_by_name() {
        let err =
            check_ecosystem(&PurgeSpec::parse("gems:rails").expect("spec")).expect_err("unknown");
        assert!(err.to_string().contains("\"gems\""), "{err}");
        let err = check_ecosystem(&PurgeSpec::parse("apt:Bad Name/openssl").expect("spec"))
            .expect_err("bad archive");
        assert!(err.to_string().contains("Bad Name"), "{err}");
        for good in [
            "npm:left-pad",
            "pypi:litellm",
            "cargo:serde@1.0.0",
            "apt:debian/openssl",
        ] {
            check_ecosystem(&PurgeSpec::parse(good).expect("spec")).expect(good);
        }
    }

    #[test]
    fn a_report_names_every_document_and_file_dropped() {
        let report = PurgeReport {
            ecosystem: "npm".into(),
            package: "left-pad".into(),
            version: None,
            documents: vec!["left-pad".into()],
            files: 1,
            bytes: 2048,
            artifacts: vec![cairn_mirror::PurgedKey {
                ecosystem: "npm".into(),
                key: "left-pad/-/left-pad-1.3.0.tgz".into(),
            }],
            unfinished: vec!["left-pad/-/left-pad-1.4.0.tgz".into()],
        };
        let text = describe(&report);
        assert!(
            text.starts_with("npm:left-pad: dropped 1 document, 1 file ("),
            "{text}"
        );
        assert!(text.contains("document npm:left-pad\n"), "{text}");
        assert!(
            text.contains("file     npm:left-pad/-/left-pad-1.3.0.tgz\n"),
            "{text}"
        );
        assert!(
            text.contains("still downloading npm:left-pad/-/left-pad-1.4.0.tgz"),
            "{text}"
        );
    }
}
