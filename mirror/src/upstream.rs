//! The HTTP client for one upstream registry: bounded concurrency, timeouts, and the rule that
//! only URLs under the configured base are ever fetched, on every hop of a redirect.
//!
//! Credentials: a base URL's user name and password are taken out of it when the upstream is
//! made and kept in memory only, so every URL derived from the base (and stored, logged,
//! exported or sent to peers) has none. They are sent as `Authorization: Basic` on the
//! requests Cairn shapes itself ([`Upstream::get`]) to the base's own origin; reqwest drops the
//! header on a redirect hop to another origin. A request a client shaped
//! ([`Upstream::forward`]) never carries them.

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

/// The text `url` (a URL or not) with the userinfo of a `scheme://user:pass@host` part removed.
/// Text that is not a URL with an authority comes back unchanged. For stored URL strings (index
/// rows, bundles, peers' answers), which may predate the rule or come from elsewhere.
pub fn strip_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return url.into();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!("{}{}", &url[..authority_start], &rest[at + 1..]).into(),
        None => url.into(),
    }
}

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
        let credentials = basic_auth(&base)?;
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
            .map_err(|e| Error::Internal(format!("cannot build HTTP client: {e}")))?;
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
            Ok(Err(e)) => Err(match refused_redirect(&e) {
                Some(refused) => Error::RedirectRefused {
                    url: redact(url),
                    to: refused.to.clone(),
                },
                None => Error::UpstreamFailed {
                    url: redact(url),
                    reason: describe(&e),
                },
            }),
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
        // Text that is not a URL (here, a port out of range) still loses its credentials.
        assert_eq!(
            redact_text("https://user:secret@registry.example:99999/"),
            "https://registry.example:99999/"
        );
    }

    #[test]
    fn join_refuses_dot_segments() {
        let u = upstream("https://registry.example/npm/");
        for path in [
            "-/npm/v1/security/../../../../lodash",
            "-/npm/v1/security/%2e%2e/%2e%2e/lodash",
            "-/npm/v1/security/%2E%2E/lodash",
            "-/npm/v1/security/.%2e/lodash",
            "a/./b",
            "..",
        ] {
            assert!(
                matches!(u.join(path), Err(Error::BadRequest(_))),
                "{path} should be refused"
            );
        }
        assert!(u.join("@types%2fnode").is_ok());
        assert!(u.join("-/v1/search?text=a/../b").is_ok());
    }

    #[test]
    fn credentials_are_taken_out_of_the_base() {
        let u = upstream("https://cairn:s3cret@registry.example/npm");
        assert_eq!(u.base().as_str(), "https://registry.example/npm/");
        let joined = u.join("lodash").expect("join");
        assert_eq!(joined.as_str(), "https://registry.example/npm/lodash");
        let header = u.credentials.as_ref().expect("credentials kept");
        assert!(header.is_sensitive());
        // base64("cairn:s3cret")
        assert_eq!(header.as_bytes(), b"Basic Y2Fpcm46czNjcmV0");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.shown(), "https://****:****@registry.example/npm/");
        let encoded = upstream("https://a%40b:p%3Aw@registry.example/");
        // base64("a@b:p:w")
        assert_eq!(
            encoded.credentials.as_ref().map(|h| h.as_bytes()),
            Some(&b"Basic YUBiOnA6dw=="[..])
        );
        assert!(upstream("https://registry.example/").credentials.is_none());
    }

    #[test]
    fn urls_with_userinfo_are_not_allowed() {
        let u = upstream("https://registry.example/npm/");
        let url = Url::parse("https://x:y@registry.example/npm/lodash").expect("url");
        assert!(!u.allows(&url));
    }

    #[test]
    fn strip_userinfo_removes_credentials_from_text() {
        for (text, stripped) in [
            (
                "https://cairn:s3cret@registry.example/npm/x",
                "https://registry.example/npm/x",
            ),
            ("http://token@h.example:8080", "http://h.example:8080"),
            (
                "https://registry.example/@scope/x",
                "https://registry.example/@scope/x",
            ),
            (
                "https://registry.example/x?u=a@b",
                "https://registry.example/x?u=a@b",
            ),
            ("derived from a@1/x.whl", "derived from a@1/x.whl"),
            ("", ""),
        ] {
            assert_eq!(strip_userinfo(text), stripped, "{text}");
        }
    }

    /// What a fake origin saw: (method, path, Authorization).
    type Seen = Arc<std::sync::Mutex<Vec<(String, String, Option<String>)>>>;

    /// A fake origin on 127.0.0.1 that records every request and answers with `answer`.
    async fn origin(
        answer: impl Fn(&str) -> axum::response::Response + Clone + Send + Sync + 'static,
    ) -> (Url, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url =
            Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
        let seen = Seen::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |request: http::Request<axum::body::Body>| {
            let (record, answer) = (record.clone(), answer.clone());
            async move {
                let auth = request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let path = request.uri().path().to_owned();
                record.lock().expect("seen").push((
                    request.method().to_string(),
                    path.clone(),
                    auth,
                ));
                answer(&path)
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, seen)
    }

    fn redirect(to: String) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        (http::StatusCode::FOUND, [(http::header::LOCATION, to)]).into_response()
    }

    #[tokio::test]
    async fn redirects_outside_the_allow_list_are_refused() {
        use axum::response::IntoResponse as _;
        let (inside, inside_seen) = origin(|_| "internal document".into_response()).await;
        let target = inside.join("secret").expect("url").to_string();
        let (up, up_seen) = origin(move |path| match path {
            "/npm/away" => redirect(target.clone()),
            "/npm/loop" => redirect("/npm/loop".to_owned()),
            _ => "ok".into_response(),
        })
        .await;
        let mut base = up.join("npm/").expect("base");
        base.set_username("cairn").expect("user");
        base.set_password(Some("s3cret")).expect("password");
        let u = Upstream::new(base, UpstreamLimits::default()).expect("upstream");
        let away = u.join("away").expect("url");
        match u.get(&away, None, None, None).await {
            Err(e @ Error::RedirectRefused { .. }) => {
                assert!(e.to_string().contains("/secret"), "{e}");
                assert_eq!(e.status(), http::StatusCode::BAD_GATEWAY);
            }
            other => panic!("expected a refused redirect, got {other:?}"),
        }
        let forwarded = u
            .forward(
                http::Method::POST,
                &away,
                &http::HeaderMap::new(),
                bytes::Bytes::new(),
            )
            .await;
        assert!(matches!(forwarded, Err(Error::RedirectRefused { .. })));
        assert!(
            inside_seen.lock().expect("seen").is_empty(),
            "the internal host was reached"
        );
        let looped = u.get(&u.join("loop").expect("url"), None, None, None).await;
        assert!(
            matches!(looped, Err(Error::UpstreamFailed { .. })),
            "{looped:?}"
        );
        // Cairn's own request carried the credentials; the client's forward did not.
        let seen = up_seen.lock().expect("seen").clone();
        assert_eq!(seen[0].2.as_deref(), Some("Basic Y2Fpcm46czNjcmV0"));
        assert_eq!(seen[1].0, "POST");
        assert_eq!(seen[1].2, None, "a forwarded request carried credentials");
    }

    #[tokio::test]
    async fn credentials_stay_on_the_base_origin() {
        use axum::response::IntoResponse as _;
        let (files, files_seen) = origin(|_| "file bytes".into_response()).await;
        let file = files.join("files/a.tgz").expect("url").to_string();
        let (up, up_seen) = origin(move |path| match path {
            "/npm/a.tgz" => redirect(file.clone()),
            _ => "ok".into_response(),
        })
        .await;
        let mut base = up.join("npm/").expect("base");
        base.set_username("cairn").expect("user");
        base.set_password(Some("s3cret")).expect("password");
        let u = Upstream::new(base, UpstreamLimits::default()).expect("upstream");
        u.add_prefixes(vec![files.join("files/").expect("prefix")]);
        let asked = u.join("a.tgz").expect("url");
        let response = u.get(&asked, None, None, None).await.expect("get");
        assert!(u.redirected_away(&asked, &response));
        assert_eq!(response.text().await.expect("body"), "file bytes");
        // Asked directly, a declared location gets no credentials either.
        let direct = files.join("files/a.tgz").expect("url");
        let response = u.get(&direct, None, None, None).await.expect("get");
        assert!(!u.redirected_away(&direct, &response));
        assert_eq!(
            up_seen.lock().expect("seen")[0].2.as_deref(),
            Some("Basic Y2Fpcm46czNjcmV0")
        );
        let files_seen = files_seen.lock().expect("seen").clone();
        assert_eq!(files_seen.len(), 2);
        assert!(
            files_seen.iter().all(|(_, _, auth)| auth.is_none()),
            "credentials left the base's origin: {files_seen:?}"
        );
    }
}
