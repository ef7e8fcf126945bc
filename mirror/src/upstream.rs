//! The HTTP client for one upstream registry: bounded concurrency, timeouts, and the rule that
//! only URLs under the configured base are ever fetched, on every hop of a redirect.
//!
//! Credentials ([`Credentials`]): given apart from the URL (a client's configuration names
//! them), or as the base URL's user name and password, which are taken out of it when the
//! upstream is made. Either way they are kept in memory only, so every URL derived from the base
//! (and stored, logged, exported or sent to peers) has none. They are sent as `Authorization`
//! (Basic or Bearer) on the requests Cairn shapes itself ([`Upstream::get`]) to the base's own
//! origin; reqwest drops the header on a redirect hop to another origin. A request a client
//! shaped ([`Upstream::forward`]) never carries them. An upstream with credentials is
//! [`Upstream::private`]: what it sends is not shared with an open swarm.
//!
//! [`routing`]: which of an ecosystem's upstreams a package name goes to.

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

/// Most redirect hops followed for one request.
const MAX_REDIRECTS: usize = 10;

pub mod routing;

/// An upstream's credentials, as a client's configuration gives them. Never printed: `Debug`
/// shows the kind only.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP Basic: a user name and a password.
    Basic { user: String, password: String },
    /// A token sent as `Authorization: Bearer`.
    Bearer(String),
    /// A token sent as the whole `Authorization` value, as cargo sends registry tokens.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { .. } => f.write_str("Basic(****)"),
            Credentials::Bearer(_) => f.write_str("Bearer(****)"),
            Credentials::Token(_) => f.write_str("Token(****)"),
        }
    }
}

impl Credentials {
    /// The `Authorization` value, marked sensitive so that it is never printed.
    fn header(&self) -> Result<http::HeaderValue, String> {
        use base64::Engine as _;
        let text = match self {
            Credentials::Basic { user, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            Credentials::Bearer(token) => format!("Bearer {token}"),
            Credentials::Token(token) => token.clone(),
        };
        let mut value = http::HeaderValue::from_str(&text)
            .map_err(|_| "the credentials hold a character HTTP headers cannot carry".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// One configured upstream.
#[derive(Clone)]
pub struct Upstream {
    /// Without user name or password (those are in `credentials`).
    base: Url,
    /// `Authorization` for requests to the base's origin, from the configured URL's userinfo.
    credentials: Option<http::HeaderValue>,
    /// Download locations the upstream's own metadata declares (see
    /// `DocumentFacts::download_prefixes`), shared by every clone.
    prefixes: Arc<RwLock<Vec<Url>>>,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    /// Slots for artifact downloads, apart from metadata's.
    artifact_permits: Arc<Semaphore>,
    limits: UpstreamLimits,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({})", self.shown())
    }
}

/// A redirect hop that left the upstream's allow-list: the request fails with this.
#[derive(Debug, thiserror::Error)]
#[error("redirect to {to}, which is not under the upstream")]
struct RedirectRefused {
    to: String,
}

/// `url` without user name or password, for anything stored, exported or sent to peers.
pub fn without_credentials(url: &Url) -> Url {
    let mut clean = url.clone();
    if !clean.username().is_empty() || clean.password().is_some() {
        let _ = clean.set_password(None);
        let _ = clean.set_username("");
    }
    clean
}

/// The text `url` with the userinfo of a `scheme://user:pass@host` part removed (for stored
/// URL strings); owned by the peering contract, whose documents carry such URLs.
pub use cairn_peering::strip_userinfo;

/// Text that may be a URL with credentials (a setting that did not parse), for messages.
pub fn redact_text(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) => redact(&url),
        Err(_) => strip_userinfo(text).into_owned(),
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
    /// An upstream rooted at `base` (a trailing `/` is added when missing). A user name and
    /// password in `base` are kept apart, in memory only (see the module doc).
    pub fn new(base: Url, limits: UpstreamLimits) -> Result<Self, Error> {
        Upstream::with_credentials(base, None, limits)
    }

    /// [`Upstream::new`] with `credentials` for the base's origin; a user name and password in
    /// `base` win over them.
    pub fn with_credentials(
        base: Url,
        credentials: Option<&Credentials>,
        limits: UpstreamLimits,
    ) -> Result<Self, Error> {
        let credentials = match (basic_auth(&base)?, credentials) {
            (Some(from_url), _) => Some(from_url),
            (None, Some(given)) => {
                Some(
                    given
                        .header()
                        .map_err(|reason| Error::BadUpstreamCredentials {
                            url: redact(&base),
                            reason,
                        })?,
                )
            }
            (None, None) => None,
        };
        let mut base = without_credentials(&base);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let prefixes: Arc<RwLock<Vec<Url>>> = Arc::new(RwLock::new(Vec::new()));
        let policy = {
            let (base, prefixes) = (base.clone(), prefixes.clone());
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    let hops = attempt.previous().len();
                    attempt.error(format!("more than {hops} redirects"))
                } else if under_upstream(&base, &prefixes, attempt.url()) {
                    attempt.follow()
                } else {
                    let to = redact(attempt.url());
                    attempt.error(RedirectRefused { to })
                }
            })
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .redirect(policy)
            .connect_timeout(limits.connect_timeout)
            .read_timeout(limits.read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Upstream {
            base,
            credentials,
            prefixes,
            client,
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            artifact_permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            limits,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// True when the upstream is sent credentials: what it serves is private to this node (and
    /// a private swarm).
    pub fn private(&self) -> bool {
        self.credentials.is_some()
    }

    pub fn limits(&self) -> &UpstreamLimits {
        &self.limits
    }

    /// The base for logs and status: `****:****@` stands for credentials when there are some.
    pub fn shown(&self) -> String {
        let mut shown = self.base.clone();
        if self.credentials.is_some() {
            let _ = shown.set_username("****");
            let _ = shown.set_password(Some("****"));
        }
        shown.to_string()
    }

    /// The URL of `path` (percent-encoded, relative) under the base. A path with a dot
    /// segment (`..`, `.`, or their percent-encoded forms) is refused before it is joined, since
    /// joining would resolve it away.
    pub fn join(&self, path: &str) -> Result<Url, Error> {
        let path_part = path.split(['?', '#']).next().unwrap_or("");
        if path_part.split('/').any(is_dot_segment) {
            return Err(Error::BadRequest(format!(
                "{path}: dot segments are not allowed in an upstream path"
            )));
        }
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
        under_upstream(&self.base, &self.prefixes, url)
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
            Ok(Err(_)) => Err(Error::SlotsClosed),
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

    /// True when `response` (to a request for `asked`) was redirected to an origin that is
    /// neither `asked`'s nor the base's: its bytes are then not handed to clients before they
    /// verify.
    pub fn redirected_away(&self, asked: &Url, response: &reqwest::Response) -> bool {
        let origin = response.url().origin();
        origin != asked.origin() && origin != self.base.origin()
    }

    /// Send a GET for `url` (checked to be under the base) with optional validators, and the
    /// upstream's credentials when `url` is on the base's origin. A user name or password in
    /// `url` itself is never sent. Returns the response whatever its status. Cancel-safe.
    pub async fn get(
        &self,
        url: &Url,
        etag: Option<&str>,
        last_modified: Option<&str>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, Error> {
        let url = &without_credentials(url);
        self.check(url)?;
        let mut request = self.client.get(url.clone());
        if let Some(credentials) = &self.credentials
            && url.origin() == self.base.origin()
        {
            request = request.header(http::header::AUTHORIZATION, credentials.clone());
        }
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

    /// Forward a request (method, body and a few headers) to `url` under the base. The client
    /// shaped it, so it never carries the upstream's credentials (nor the client's).
    pub async fn forward(
        &self,
        method: http::Method,
        url: &Url,
        headers: &http::HeaderMap,
        body: bytes::Bytes,
    ) -> Result<reqwest::Response, Error> {
        let url = &without_credentials(url);
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
            Ok(Err(e)) => Err(
                match refused_redirect(&e).map(|refused| refused.to.clone()) {
                    Some(to) => Error::RedirectRefused {
                        url: redact(url),
                        to,
                    },
                    None => Error::UpstreamRequest {
                        url: redact(url),
                        source: e,
                    },
                },
            ),
            Err(_) => Err(Error::UpstreamFailed {
                url: redact(url),
                reason: format!("no response within {:?}", self.limits.read_timeout),
            }),
        }
    }
}

/// The redirect hop the policy refused, if that is what `e` is.
fn refused_redirect(e: &reqwest::Error) -> Option<&RedirectRefused> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<RedirectRefused>() {
            return Some(refused);
        }
        source = s.source();
    }
    None
}

/// True for `.` and `..`, percent-encoded or not (`%2e`, `.%2E`, …).
fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let decoded = lower.replace("%2e", ".");
    decoded == "." || decoded == ".."
}

/// True when `url` is under `base` or one of `prefixes`, with no dot segment and no userinfo.
fn under_upstream(base: &Url, prefixes: &RwLock<Vec<Url>>, url: &Url) -> bool {
    let under = |prefix: &Url| {
        url.scheme() == prefix.scheme()
            && url.host_str() == prefix.host_str()
            && url.port_or_known_default() == prefix.port_or_known_default()
            && url.path().starts_with(prefix.path())
    };
    let clean = !url.path().split('/').any(is_dot_segment)
        && url.username().is_empty()
        && url.password().is_none();
    clean
        && (under(base)
            || prefixes
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(under))
}

/// The `Authorization: Basic` value for the user name and password in `url`, if it has any
/// (percent-decoded, as a browser would send them). Marked sensitive so it is never printed.
fn basic_auth(url: &Url) -> Result<Option<http::HeaderValue>, Error> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| Error::BadUpstreamCredentials {
                url: redact(url),
                reason: "the user name or password is not UTF-8 once decoded".to_owned(),
            })
    };
    let user = decode(url.username())?;
    let password = decode(url.password().unwrap_or(""))?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = http::HeaderValue::from_str(&format!("Basic {token}")).map_err(|e| {
        Error::BadUpstreamCredentials {
            url: redact(url),
            reason: e.to_string(),
        }
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
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
mod tests;
