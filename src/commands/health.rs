//! `cairn health`: whether the node at `--listen` answers `GET /healthz`, for a container's
//! HEALTHCHECK (the image has no shell or curl) and scripts. It reads no store and looks for no
//! upstream: it exits 0 when the node says `ok` within the time given, and 1 with a one-line
//! reason otherwise.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use url::Url;

use crate::cli::Common;
use crate::settings::{self, FileSettings};

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(common: &Common, file: &FileSettings, url: Option<Url>) -> Result<()> {
    let base = match url {
        Some(url) => url,
        None => {
            let listen = settings::listen(common.listen.as_deref(), file)?;
            settings::local_url(listen, file)?
        }
    };
    let url = base.join("healthz").context("the health URL")?;
    // The node's own certificate may name another host than the loopback address asked here,
    // or chain to a private CA: a liveness probe of this machine's node does not check it.
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .danger_accept_invalid_certs(loopback)
        .build()
        .context("an HTTP client")?;
    let response = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() || body.trim() != "ok" {
        bail!(
            "{url} answered {status}: {}",
            body.chars().take(200).collect::<String>()
        );
    }
    println!("ok");
    Ok(())
}
