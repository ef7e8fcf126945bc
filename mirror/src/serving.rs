//! A mirror at work: [`Mirror::serve`] starts the HTTP front on a listener and the upkeep beside
//! it (access times written, cached not-founds expired and the store kept under its size limit,
//! every [`UPKEEP_EVERY`] and whenever a commit passes the limit), and returns
//! the [`Serving`] handle that owns both. [`Serving::shutdown`] stops everything in one order:
//!
//! 1. stop accepting connections, and let open ones finish their requests (within the grace);
//! 2. let downloads under way finish (within the grace), then abandon the rest;
//! 3. stop the peers (nothing is being downloaded that they could be offered);
//! 4. stop the upkeep, write the last access times, checkpoint SQLite.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Mirror;
use crate::error::Error;
use crate::http::ConnectionLimits;

/// How often the upkeep runs.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(30);

/// A mirror serving HTTP ([`Mirror::serve`]); stop it with [`Serving::shutdown`].
pub struct Serving {
    mirror: Mirror,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    upkeep: JoinHandle<()>,
}

impl Mirror {
    /// Serve HTTP on `listener` within `limits`, and keep the store's bookkeeping up to date,
    /// until [`Serving::shutdown`]. Must be called within a tokio runtime.
    pub fn serve(&self, listener: tokio::net::TcpListener, limits: ConnectionLimits) -> Serving {
        let stop = CancellationToken::new();
        let server = tokio::spawn(crate::http::serve(
            listener,
            crate::http::router(self.clone()),
            limits,
            stop.clone().cancelled_owned(),
        ));
        let upkeep = tokio::spawn(upkeep(self.clone(), stop.clone()));
        if self.auth_required() {
            tokio::spawn(reload_tokens(self.clone(), stop.clone()));
        }
        Serving {
            mirror: self.clone(),
            stop,
            server,
            upkeep,
        }
    }
}

impl Serving {
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// Stop in order (see the module's documentation), giving open connections, then downloads
    /// under way, `grace` each. Fails only when the store cannot be written at the end.
    pub async fn shutdown(self, grace: Duration) -> Result<(), Error> {
        self.stop.cancel();
        match tokio::time::timeout(grace, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("HTTP server error: {e}"),
            Ok(Err(e)) => tracing::warn!("HTTP server task failed: {e}"),
            Err(_) => {
                tracing::warn!("connections still open after {grace:?}; closing them")
            }
        }
        self.mirror.finish_downloads(grace).await;
        if let Some(peers) = self.mirror.peer_source() {
            peers.shutdown();
        }
        if let Err(e) = self.upkeep.await {
            tracing::warn!("upkeep task failed: {e}");
        }
        self.mirror.close().await
    }
}

/// Read the access tokens again every [`RELOAD_EVERY`] until `stop`, so that a revoked token
/// stops working and a new one works within that time.
///
/// [`RELOAD_EVERY`]: crate::engine::tokens::RELOAD_EVERY
async fn reload_tokens(mirror: Mirror, stop: CancellationToken) {
    let mut tick = tokio::time::interval(crate::engine::tokens::RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = mirror.reload_tokens().await {
            tracing::warn!("cannot read the access tokens again (the last ones read stay): {e}");
        }
    }
}

/// Every [`UPKEEP_EVERY`] until `stop`: write batched access times and the traffic history,
/// expire cached not-founds,
/// read the pins and the last verify run for `/metrics`, keep the store under its size limit,
/// and empty the in-memory caches once the node is idle (`engine/idle.rs`); and at once when a
/// commit passes the limit.
async fn upkeep(mirror: Mirror, stop: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        let timed = tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => true,
            () = mirror.eviction_due() => false,
        };
        if let Err(e) = mirror.flush_access_times().await {
            tracing::warn!("cannot record access times: {e}");
        }
        if timed {
            if let Err(e) = mirror.flush_traffic().await {
                tracing::warn!("cannot record the traffic history: {e}");
            }
            if let Err(e) = mirror.refresh_upkeep_gauges().await {
                tracing::warn!("cannot read the pins and the last verify for /metrics: {e}");
            }
            match mirror.expire_negative().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(entries = n, "expired cached not-founds"),
                Err(e) => tracing::warn!("cannot expire cached not-founds: {e}"),
            }
        }
        if let Err(e) = mirror.evict_if_over().await {
            tracing::warn!("cannot evict: {e}");
        }
        if timed {
            mirror.release_memory_if_idle().await;
        }
    }
}
