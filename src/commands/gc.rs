//! `cairn gc [--dry-run] [--min-age DUR] [--json]`: remove what nothing needs from the data
//! directory (the store's `gc` says what that is); it works beside a running node.

use anyhow::{Context, Result};

use crate::cli::Common;
use crate::settings::{self, FileSettings};

pub async fn run(
    common: &Common,
    file: &FileSettings,
    dry_run: bool,
    min_age: &str,
    json: bool,
) -> Result<()> {
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    let grace = settings::parse_duration(min_age).context("--min-age")?;
    if !data_dir.join("index.sqlite3").exists() {
        anyhow::bail!("no Cairn store in {}", data_dir.display());
    }
    let dir = data_dir.clone();
    let report = tokio::task::spawn_blocking(move || {
        cairn_mirror::store::Store::attach(&dir)?.gc(dry_run, grace)
    })
    .await
    .context("gc")?
    .with_context(|| format!("gc of {}", data_dir.display()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("gc report")?
        );
        return Ok(());
    }
    let size = cairn_mirror::units::size;
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} files no row names ({}), {} temp files ({}); {} rows whose file is gone, {} orphan leaf rows",
        report.orphan_files,
        size(report.orphan_bytes),
        report.temp_files,
        size(report.temp_bytes),
        report.missing_files,
        report.orphan_leaf_rows,
    );
    if report.foreign_files > 0 {
        println!(
            "left alone: {} files whose names are not Cairn's",
            report.foreign_files
        );
    }
    Ok(())
}
