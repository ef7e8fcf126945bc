//! `cairn`: the command line. Parse the flags (`cli`), read `cairn.toml` (`settings`), and run
//! the subcommand (`commands`), which reaches each ecosystem through one table (`ecosystems`).
//! Errors are one line on stderr and a non-zero exit.

mod barlog;
mod bundles;
mod cli;
mod commands;
mod descriptors;
mod ecosystems;
mod logging;
mod memory;
mod p2p;
mod policy;
mod pytarget;
mod settings;

// `bundles.rs` and `commands/prefetch.rs` name these modules by their old paths.
use ecosystems::{apt, lockfiles};

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};

/// jemalloc hands freed memory back to the system on a timer (background threads), where
/// glibc's per-thread arenas keep it: after a cold install of ~470 npm packages the node idles at
/// 63 MB instead of 91 MB, most of it the bounded caches (BENCHMARKS.md). mimalloc was tried and
/// kept 314 MB.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = Cli::parse();
    // Blocking work (SQLite, file reads, hashing) is short; a bounded pool keeps thread count
    // and per-thread allocator arenas, and so memory, in check under load.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("cairn: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let creates_config = matches!(cli.command, Command::Setup { apply: true, .. });
    let file = settings::load(cli.common.config.as_deref(), creates_config)?;
    let common = &cli.common;
    match cli.command {
        Command::Serve(args) => commands::serve::run(common, &file, *args).await,
        Command::Setup {
            client,
            url,
            apply,
            ca_file,
            token,
            as_of,
        } => {
            let given = commands::setup::Given {
                url,
                ca_file,
                token,
                as_of,
            };
            commands::setup::run(common, &file, client, given, apply).await
        }
        Command::Status { json } => commands::status::run(common, &file, json).await,
        Command::Prefetch {
            lockfiles,
            url,
            python,
            apt_sources,
        } => {
            commands::prefetch::command(common, &file, lockfiles, url, &python, &apt_sources).await
        }
        Command::Export {
            lockfiles,
            all,
            snapshot,
            output,
            python,
        } => {
            let selection = commands::export::selection(lockfiles, all, snapshot, python)?;
            commands::export::run(common, &file, selection, output).await
        }
        Command::Import {
            file: car,
            pin,
            apt,
        } => commands::import::run(common, &file, car, pin, &apt).await,
        Command::Snapshot => commands::snapshot::run(common, &file).await,
        Command::Pin {
            root,
            lockfiles,
            python,
        } => commands::pin::run(common, &file, root, lockfiles, python).await,
        Command::Unpin { root } => commands::pin::unpin(common, &file, root).await,
        Command::Pins { json } => commands::pin::list(common, &file, json).await,
        Command::Id => commands::id::run(common, &file).await,
        Command::Health { url } => commands::health::run(common, &file, url).await,
        Command::ChownStore { user } => commands::chown_store::run(common, &file, &user),
        Command::Peers { json, url } => commands::peers::run(common, &file, url, json).await,
        Command::Gc {
            dry_run,
            min_age,
            json,
        } => commands::gc::run(common, &file, dry_run, &min_age, json).await,
        Command::Purge { specs, json } => commands::purge::run(common, &file, &specs, json).await,
        Command::Verify { repair, json } => {
            commands::verify::run(common, &file, repair, json).await
        }
        Command::Token(command) => commands::token::run(common, &file, command).await,
        Command::Policy(cli::PolicyCommand::Explain { packages, json }) => {
            commands::policy::explain(common, &file, &packages, json).await
        }
        Command::Policy(cli::PolicyCommand::Check { lockfiles, json }) => {
            commands::policy::check(common, &file, &lockfiles, json).await
        }
    }
}
