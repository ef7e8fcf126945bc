//! The HTTP client for one upstream registry: bounded concurrency, timeouts, and the rule that
//! only URLs under the configured base are ever fetched.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use crate::error::Error;

/// Limits applied to every upstream.
#[derive(Clone, Debug)]
pub struct UpstreamLimits {
    /// Metadata requests in flight to one upstream at most; artifact downloads have a pool of
    /// the same size of their own, so neither kind can starve the other.
    pub concurrency: usize,
    pub connect_timeout: Duration,
    /// Longest wait for response headers, and longest silence between body chunks.
    pub read_timeout: Duration,
    /// Longest a whole metadata exchange may take (waiting for a slot, headers and body), and
    /// longest an artifact download may wait for a slot.
    pub deadline: Duration,
    /// Slowest an artifact body may arrive: each `read_timeout` window must bring at least
    /// this many bytes per second on average.
    pub min_artifact_rate: u64,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits {
            concurrency: 64,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
            min_artifact_rate: 16 << 10,
        }
    }
}

/// One configured upstream.
#[derive(Clone)]
pub struct Upstream {
    base: Url,
    /// Download locations the upstream's own metadata declares (see
    /// `Ecosystem::download_prefixes`), shared by every clone.
    prefixes: Arc<RwLock<Vec<Url>>>,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    /// Slots for artifact downloads, apart from metadata's.
    artifact_permits: Arc<Semaphore>,
    limits: UpstreamLimits,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({})", redact(&self.base))
    }
}

/// `url` with any user name and password replaced, for logs and messages.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() {
        let _ = shown.set_username("****");
    }
    if shown.password().is_some() {
        let _ = shown.set_password(Some("****"));
    }
    shown.to_string()
}

impl Upstream {
    /// An upstream rooted at `base` (a trailing `/` is added when missing).
    pub fn new(mut base: Url, limits: UpstreamLimits) -> Result<Self, Error> {
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(limits.connect_timeout)
            .read_timeout(limits.read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Internal(format!("cannot build HTTP client: {e}")))?;
        Ok(Upstream {
            base,
            prefixes: Arc::new(RwLock::new(Vec::new())),
            client,
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            artifact_permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            limits,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn limits(&self) -> &UpstreamLimits {
        &self.limits
    }

    /// The URL of `path` (percent-encoded, relative) under the base.
    pub fn join(&self, path: &str) -> Result<Url, Error> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Error::BadRequest(format!("{path}: {e}")))?;
        self.check(&url)?;
        Ok(url)
    }

    /// True when `url` is under the base (or a declared download prefix): same scheme, host and
    /// port, the path below it, and no `..` segment.
    pub fn allows(&self, url: &Url) -> bool {
        let under = |prefix: &Url| {
            url.scheme() == prefix.scheme()
                && url.host_str() == prefix.host_str()
                && url.port_or_known_default() == prefix.port_or_known_default()
                && url.path().starts_with(prefix.path())
        };
        let no_dot_segments = !url
            .path()
            .split('/')
            .any(|s| s == ".." || s.eq_ignore_ascii_case("%2e%2e"));
        no_dot_segments
            && (under(&self.base)
                || self
                    .prefixes
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .any(under))
    }

    /// Allow downloads under `prefixes`, as the upstream's own metadata declares them.
    pub fn add_prefixes(&self, prefixes: Vec<Url>) {
        let mut known = self.prefixes.write().unwrap_or_else(|p| p.into_inner());
        for prefix in prefixes {
            if !known.contains(&prefix) {
                tracing::info!(base = %redact(&self.base), prefix = %redact(&prefix), "download location declared by upstream");
                known.push(prefix);
            }
        }
    }

    /// Fail unless `url` is under the base or a declared prefix.
    pub fn check(&self, url: &Url) -> Result<(), Error> {
        if self.allows(url) {
            Ok(())
        } else {
            Err(Error::NotUnderUpstream { url: redact(url) })
        }
    }

    /// Wait for a metadata (or passthrough) slot; hold it for the whole exchange. (The
    /// semaphore is never closed, so `None` cannot happen in practice; it would only mean "no
    /// limit".) Callers bound the whole exchange, this wait included, by `limits().deadline`.
    pub async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// Wait (at most `limits().deadline`) for an artifact download slot, from a pool apart
    /// from metadata's; hold it for the whole download. `url` is for the error.
    pub async fn artifact_permit(&self, url: &Url) -> Result<OwnedSemaphorePermit, Error> {
        let deadline = self.limits.deadline;
        match tokio::time::timeout(deadline, self.artifact_permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Error::Internal("artifact download slots closed".to_owned())),
            Err(_) => Err(Error::UpstreamFailed {
                url: redact(url),
                reason: format!(
                    "no download slot came free within the {} upstream deadline (all {} are \
                     taken; see --upstream-concurrency and --upstream-deadline)",
                    crate::limits::duration(deadline),
                    self.limits.concurrency.max(1)
                ),
            }),
        }
    }

    /// Send a GET for `url` (checked to be under the base) with optional validators. Returns
    /// the response whatever its status. Cancel-safe.
    pub async fn get(
        &self,
        url: &Url,
        etag: Option<&str>,
        last_modified: Option<&str>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, Error> {
        self.check(url)?;
        let mut request = self.client.get(url.clone());
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = last_modified {
            request = request.header(http::header::IF_MODIFIED_SINCE, lm);
        }
        if let Some(accept) = accept {
            request = request.header(http::header::ACCEPT, accept);
        }
        self.send(url, request).await
    }

    /// Forward a request (method, body and a few headers) to `url` under the base.
    pub async fn forward(
        &self,
        method: http::Method,
        url: &Url,
        headers: &http::HeaderMap,
        body: bytes::Bytes,
    ) -> Result<reqwest::Response, Error> {
        self.check(url)?;
        let mut request = self.client.request(method, url.clone()).body(body);
        for name in [
            http::header::CONTENT_TYPE,
            http::header::CONTENT_ENCODING,
            http::header::ACCEPT,
        ] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        self.send(url, request).await
    }

    async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        match tokio::time::timeout(self.limits.read_timeout, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(Error::UpstreamFailed {
                url: redact(url),
                reason: describe(&e),
            }),
            Err(_) => Err(Error::UpstreamFailed {
                url: redact(url),
                reason: format!("no response within {:?}", self.limits.read_timeout),
            }),
        }
    }
}

/// A reqwest error as one line with its causes.
pub fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(base: &str) -> Upstream {
        Upstream::new(Url::parse(base).expect("url"), UpstreamLimits::default()).expect("new")
    }

    #[test]
    fn only_urls_under_the_base_are_allowed() {
        let u = upstream("https://registry.example/npm");
        for (url, allowed) in [
            ("https://registry.example/npm/lodash", true),
            ("https://registry.example:443/npm/a/-/a-1.tgz", true),
            ("https://registry.example/other/lodash", false),
            ("http://registry.example/npm/lodash", false),
            ("https://evil.example/npm/lodash", false),
            ("https://registry.example/npm/%2e%2e/admin", false),
        ] {
            let url = Url::parse(url).expect("url");
            assert_eq!(u.allows(&url), allowed, "{url}");
        }
    }

    #[test]
    fn declared_prefixes_are_allowed() {
        let u = upstream("https://index.example/");
        let dl = Url::parse("https://files.example/crates/x/1.0.0/download").expect("url");
        assert!(!u.allows(&dl));
        u.clone().add_prefixes(vec![
            Url::parse("https://files.example/crates/").expect("url"),
        ]);
        assert!(u.allows(&dl), "clones share prefixes");
        assert!(!u.allows(&Url::parse("https://files.example/other").expect("url")));
    }

    #[test]
    fn credentials_are_redacted() {
        let url = Url::parse("https://user:secret@registry.example/").expect("url");
        assert_eq!(redact(&url), "https://****:****@registry.example/");
    }
}
