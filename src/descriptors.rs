//! File descriptors for `serve`: raise the soft limit to the hard one, and size the HTTP
//! connection cap below it, leaving room for what else the node opens (blob files, SQLite,
//! temp files of downloads, libp2p connections).

/// Descriptors kept for everything but HTTP connections: SQLite's connections and WAL files,
/// downloads' temp files, libp2p's connections (capped by the swarm), mDNS, logs.
const RESERVED: u64 = 512;
/// The cap when the descriptor limit allows more: enough for hundreds of concurrent installs.
const MOST_CONNECTIONS: u64 = 4096;

/// Raise the soft descriptor limit to the hard limit; the soft limit now in force.
pub fn raise_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = rustix::process::Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return maximum,
            Err(e) => {
                tracing::warn!("cannot raise the descriptor limit from {current} to {maximum}: {e}")
            }
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// The most HTTP connections a node with `limit` descriptors can hold: each may hold a second
/// descriptor (the file it is sending), after [`RESERVED`] for the rest.
pub fn fitting(limit: u64) -> usize {
    (limit.saturating_sub(RESERVED) / 2).clamp(1, usize::MAX as u64) as usize
}

/// The cap to serve with: `configured` if it fits in `limit` descriptors, else the most that
/// fits (with a warning); by default the most that fits, up to [`MOST_CONNECTIONS`].
pub fn pick_cap(configured: Option<usize>, limit: u64) -> usize {
    let fits = fitting(limit);
    match configured {
        None => fits.min(MOST_CONNECTIONS as usize),
        Some(n) if n <= fits => n.max(1),
        Some(n) => {
            tracing::warn!(
                "max-connections {n} does not fit in the descriptor limit ({limit}): serving at most {fits}"
            );
            fits
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_room_below_the_descriptor_limit() {
        assert_eq!(pick_cap(None, 1024), 256);
        assert_eq!(pick_cap(None, 20_000), 4096);
        assert_eq!(pick_cap(Some(9000), 20_000), 9000);
        assert_eq!(pick_cap(None, 100), 1);
        assert_eq!(pick_cap(Some(10), 1024), 10);
        assert_eq!(pick_cap(Some(10_000), 1024), 256);
        assert_eq!(pick_cap(None, u64::MAX), 4096);
    }
}
