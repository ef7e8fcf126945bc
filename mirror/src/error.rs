//! Errors, classified by origin: the client's request (4xx), the upstream (502/504), or Cairn
//! itself (500). [`Error::status`] is the one place that maps them to HTTP.

use http::StatusCode;

use crate::blocks::{BlockError, BlockErrorKind};
use crate::cid::FlatCid;

pub use cairn_store::error::{DigestMismatch, IndexError, StoreError};

/// What went wrong serving a request. Messages name the subject; see [`Error::status`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The supply-chain policy refuses the file: the reason names the rule, the package and
    /// the dates.
    #[error("{0}")]
    PolicyRefused(String),
    #[error("upstream {url} answered {status}")]
    UpstreamStatus { url: String, status: StatusCode },
    #[error("upstream {url} failed: {reason}")]
    UpstreamFailed { url: String, reason: String },
    /// The request to upstream failed (connection, TLS, protocol): the client's error is the
    /// HTTP client's, with every cause in the message.
    #[error("upstream {url} failed: {}", crate::upstream::describe(.source))]
    UpstreamRequest {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "offline: {what} is not cached (or is stale) and --offline forbids contacting upstream"
    )]
    Offline { what: String },
    #[error("no peer could supply {what} ({reason}), and {why_not_upstream}")]
    NoSource {
        what: String,
        reason: String,
        why_not_upstream: String,
    },
    #[error(
        "{what}: {holders} connected peer(s) hold it, but {why}; upstream was not asked: {why_not_upstream}"
    )]
    PeerMetadataRefused {
        what: String,
        holders: usize,
        why: String,
        why_not_upstream: String,
    },
    #[error("{ecosystem} has no upstream configured: {hint}")]
    NoUpstream { ecosystem: String, hint: String },
    #[error("refusing to fetch {url}: it is not under a configured upstream")]
    NotUnderUpstream { url: String },
    #[error("upstream {url} redirected to {to}, which is not under a configured upstream")]
    RedirectRefused { url: String, to: String },
    #[error("upstream {url} answered more than the {limit}-byte limit for a passthrough")]
    PassthroughTooLarge { url: String, limit: u64 },
    #[error("upstream {url}: unusable credentials: {reason}")]
    BadUpstreamCredentials { url: String, reason: String },
    #[error("malformed metadata from {url}: {reason}")]
    BadMetadata { url: String, reason: String },
    /// Upstream (or a peer) sent more than a limit allows; nothing of it is stored.
    #[error("{what} is larger than {limit}, the limit of {setting}")]
    TooLarge {
        what: String,
        /// The limit, written for people (`128 MiB`).
        limit: String,
        /// Where the limit comes from (a flag, or what a listing declared).
        setting: String,
    },
    #[error("{0}")]
    DigestMismatch(StoreError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A task the engine ran (a blocking job, an artifact writer, a relay) panicked or was
    /// cancelled.
    #[error("internal error: {what} failed: {source}")]
    Task {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// An upstream URL kept in the index does not parse any more.
    #[error("internal error: stored URL {url}: {source}")]
    StoredUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// A response header Cairn made is not a valid header value.
    #[error("internal error: header value of {what}: {source}")]
    Header {
        what: String,
        #[source]
        source: http::header::InvalidHeaderValue,
    },
    /// One of Cairn's own JSON reports could not be written.
    #[error("internal error: {what}: {source}")]
    Report {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An adapter could not render what Cairn asked of it from what it holds.
    #[error("internal error: {what}: {source}")]
    Adapter {
        what: String,
        #[source]
        source: crate::ecosystem::AdapterError,
    },
    /// The ecosystems the engine was opened with do not fit together.
    #[error("cannot register {0}")]
    Registration(String),
    #[error("internal error: ecosystem {0} is not registered")]
    NotRegistered(String),
    #[error("internal error: {key}: unsupported digest in {flat}")]
    UnsupportedDigest { key: String, flat: FlatCid },
    /// A download task went away before upstream's headers came (it was abandoned at
    /// shutdown, or failed).
    #[error("internal error: the download of {flat} ended before upstream answered")]
    DownloadEnded { flat: FlatCid },
    /// The writer a download feeds stopped taking bytes.
    #[error("internal error: the writer of {key} stopped")]
    WriterStopped { key: String },
    /// A download that must be held back until it verifies (it was redirected to another
    /// origin) outgrew what may be held in memory while the store has no room.
    #[error(
        "internal error: a download redirected to another origin must be held back until it \
         verifies, and over {limit_mib} MiB cannot be without room in the store"
    )]
    TooBigToHoldBack { limit_mib: usize },
    /// A document record without a body reached rendering.
    #[error("internal error: {key} has no body to render")]
    NoBodyToRender { key: String },
    /// The file stored for an artifact failed its check again right after it was fetched.
    #[error(
        "internal error: {ecosystem} {key}: the stored file was damaged again right after it \
         was fetched"
    )]
    DamagedAgain { ecosystem: String, key: String },
    /// The upstream's pool of artifact download slots was closed.
    #[error("internal error: artifact download slots closed")]
    SlotsClosed,
    #[error("internal error: cannot {op} {what}: {source}")]
    Io {
        op: &'static str,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A stored block or DAG is damaged or deeper than Cairn walks.
    #[error("internal error: {0}")]
    Block(#[source] crate::blocks::BlockError),
    #[error("internal error: cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The client of an unkept stream went away: nobody is told.
    #[error("the client went away")]
    ClientGone,
    /// The node is shutting down and gave up waiting for this download.
    #[error("{key}: download abandoned, the node is shutting down")]
    Abandoned { key: String },
    /// The system gave no randomness for a secret.
    #[error("internal error: cannot draw a random secret: {0}")]
    NoRandomness(#[source] getrandom::Error),
    /// The request needs a valid access token and came without one.
    #[error("{0}")]
    Unauthorized(String),
    /// One failure shared by every caller of a single-flight operation.
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),
    /// The failure of a download this request waited on, with the status it had.
    #[error("{message}")]
    Relayed { status: StatusCode, message: String },
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DigestMismatch { .. } => Error::DigestMismatch(e),
            StoreError::Index(e) => Error::Index(e),
            other => Error::Store(other),
        }
    }
}

impl Error {
    /// True when the store's disk is full (or would be by this download).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Store(e) => e.is_disk_full(),
            Error::Shared(e) => e.is_disk_full(),
            _ => false,
        }
    }

    /// The HTTP status a client gets for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            // The node's own policy refuses copies it can see: no retry can change that, and a
            // 403 is what clients do not retry (they do retry a 5xx, for over a minute).
            Error::Forbidden(_) | Error::PeerMetadataRefused { .. } | Error::PolicyRefused(_) => {
                StatusCode::FORBIDDEN
            }
            Error::UpstreamStatus { status, .. } if status.is_client_error() => *status,
            // Upstream is down or unreachable: the gateway could not get an answer.
            Error::UpstreamStatus { status, .. } if status.is_server_error() => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Error::UpstreamFailed { .. }
            | Error::UpstreamRequest { .. }
            | Error::Offline { .. }
            | Error::NoUpstream { .. }
            | Error::NoSource { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Abandoned { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // Upstream answered, but with something Cairn will not pass on.
            Error::UpstreamStatus { .. }
            | Error::BadMetadata { .. }
            | Error::TooLarge { .. }
            | Error::NotUnderUpstream { .. }
            | Error::RedirectRefused { .. }
            | Error::PassthroughTooLarge { .. }
            | Error::DigestMismatch(_) => StatusCode::BAD_GATEWAY,
            Error::Store(e) if e.is_disk_full() => StatusCode::INSUFFICIENT_STORAGE,
            Error::Store(_)
            | Error::Index(_)
            | Error::Task { .. }
            | Error::StoredUrl { .. }
            | Error::Header { .. }
            | Error::Report { .. }
            | Error::Adapter { .. }
            | Error::NotRegistered(_)
            | Error::Registration(_)
            | Error::UnsupportedDigest { .. }
            | Error::DownloadEnded { .. }
            | Error::WriterStopped { .. }
            | Error::TooBigToHoldBack { .. }
            | Error::NoBodyToRender { .. }
            | Error::DamagedAgain { .. }
            | Error::SlotsClosed
            | Error::NoRandomness(_)
            | Error::Io { .. }
            | Error::HttpClient(_)
            | Error::Block(_)
            | Error::ClientGone
            | Error::BadUpstreamCredentials { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Shared(inner) => inner.status(),
            Error::Relayed { status, .. } => *status,
        }
    }
}

impl From<BlockError> for Error {
    fn from(e: BlockError) -> Self {
        let message = e.to_string();
        match e.kind() {
            BlockErrorKind::Missing { .. } => return Error::NotFound(message),
            BlockErrorKind::TooLarge { .. }
            | BlockErrorKind::RangeOutside { .. }
            | BlockErrorKind::UnsupportedHash { .. } => return Error::BadRequest(message),
            BlockErrorKind::Corrupt { .. }
            | BlockErrorKind::Decode { .. }
            | BlockErrorKind::TooDeep { .. } => return Error::Block(e),
            BlockErrorKind::Store(_) | BlockErrorKind::Index(_) => {}
        }
        match e.into_kind() {
            BlockErrorKind::Store(e) => Error::from(e),
            BlockErrorKind::Index(e) => Error::Index(e),
            other => Error::Block(other.into()),
        }
    }
}
