//! Logging: text or JSON on stderr (`serve`), or through the progress bar's writer (the node
//! `prefetch` runs in-process); the filter from `CAIRN_LOG`, else `RUST_LOG`, else a default.

use anyhow::Result;

/// The target of the log lines `serve` writes about itself (its start, upstreams, limits and
/// shutdown), kept as it was when they came from `main.rs`, so that log filters and readers
/// keep matching them.
pub const TARGET: &str = "cairn";

/// The log filter when neither `CAIRN_LOG` nor `RUST_LOG` is set. Kademlia warns "Failed to
/// trigger bootstrap: No known peers" whenever it bootstraps with an empty routing table, which
/// is every start of a node that has no peer yet (and every five minutes on a node alone): not
/// worth a warning. Its only other warning concerns record replication, which Cairn does not use
/// (it publishes provider records only).
const DEFAULT_LOG_FILTER: &str = "info,libp2p_kad::behaviour=error";

/// Logging to stderr, as `serve` logs.
pub fn init(format: &str) -> Result<()> {
    init_to(format, DEFAULT_LOG_FILTER, std::io::stderr)
}

/// Logging to `writer` at `default` (a filter, unless `CAIRN_LOG` or `RUST_LOG` gives one).
pub fn init_to<W>(format: &str, default: &str, writer: W) -> Result<()>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CAIRN_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => anyhow::bail!("invalid log format {other:?}: expected text or json"),
    }
    Ok(())
}
