//! The node running on this machine, as the upkeep commands (`purge`, `verify`) reach it: at
//! `--listen` through loopback (the node's operator routes answer only loopback clients), over
//! HTTP or HTTPS, when it answers `/healthz` in time, presenting `CAIRN_TOKEN` or the admin
//! secret a node requiring tokens leaves in the data directory ([`token_headers`]). When none answers, those commands work on the data directory themselves.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;

/// How long a node at `--listen` has to answer `/healthz` before the data directory is used.
const PROBE: Duration = Duration::from_secs(2);

/// The headers that present this machine's token to a node requiring tokens: `CAIRN_TOKEN`
/// when set, else the admin secret the node serving `data_dir` left there; none without either.
pub fn token_headers(data_dir: &Path) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    let secret_file = data_dir.join(cairn_mirror::store::ADMIN_TOKEN_FILE);
    let (secret, from) = match std::env::var("CAIRN_TOKEN") {
        Ok(secret) if !secret.is_empty() => (secret, "CAIRN_TOKEN".to_owned()),
        _ => match std::fs::read_to_string(&secret_file) {
            Ok(secret) => (secret, secret_file.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(headers),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", secret_file.display()));
            }
        },
    };
    let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.trim()))
        .map_err(|_| anyhow::anyhow!("{from} is not a token"))?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(headers)
}

/// A node answering on this machine: its base URL and a client with `timeout` per request.
pub struct LocalNode {
    pub client: reqwest::Client,
    pub base: Url,
}

impl LocalNode {
    /// The node listening at `listen` (one on every interface is reached through loopback),
    /// when it answers. A node requiring tokens wrote its admin secret to `data_dir`: it is
    /// presented with every request.
    pub async fn find(
        listen: SocketAddr,
        data_dir: &Path,
        timeout: Duration,
    ) -> Result<Option<LocalNode>> {
        let host = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        // Over loopback the certificate of a node serving HTTPS names its public name, not
        // 127.0.0.1: it is not checked there (the bytes never leave this machine, as with
        // plain HTTP). On any other address of this machine it is.
        let loopback = listen.ip().is_loopback() || listen.ip().is_unspecified();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(token_headers(data_dir)?)
            .danger_accept_invalid_certs(loopback)
            .build()
            .context("HTTP client")?;
        for scheme in ["http", "https"] {
            let base =
                Url::parse(&format!("{scheme}://{host}:{}/", listen.port())).context("node URL")?;
            let answers = tokio::time::timeout(
                PROBE,
                client.get(base.join("healthz").context("node URL")?).send(),
            )
            .await
            .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()));
            if answers {
                return Ok(Some(LocalNode { client, base }));
            }
        }
        Ok(None)
    }

    /// Send `method` to `path` below the node and read its JSON answer as `T`; a refusal is an
    /// error with the node's own message. `what` names the request in errors.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        what: &str,
    ) -> Result<T> {
        let base = &self.base;
        let url = base.join(path).with_context(|| format!("URL of {what}"))?;
        let response = self
            .client
            .request(method, url)
            .send()
            .await
            .with_context(|| format!("asking the node at {base} for {what}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading the node's answer to {what}"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("the node at {base} refused {what}: {status}: {message}");
        }
        serde_json::from_slice(&body).with_context(|| format!("the node's report of {what}"))
    }
}
