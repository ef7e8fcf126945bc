//! `cairn-ecosystem`: the contract between the mirror and a registry adapter, and the toolkit
//! adapters share (a JSON span scanner, `Accept` negotiation, sizes for messages). It depends on
//! no I/O crate: adapters built on it cannot fetch, store or listen.
//!
//! An adapter only translates: it classifies request paths, says which artifacts a metadata
//! document names (with the digests the registry published), and renders documents for clients.
//! It does no I/O. The mirror does all fetching, caching and verification, so rules such as
//! "fetch only under a configured upstream" and "verify before storing" hold in one place.
//!
//! Lookups go store → (peers, later) → upstream. Keys are the adapter's own names: a metadata key
//! names one upstream document (`lodash`, `@types/node`); an artifact key names one immutable file
//! (`lodash/-/lodash-4.17.21.tgz`). Keys are namespaced by [`Ecosystem::name`] in the index.

pub mod json;
pub mod negotiate;
pub mod time;
pub mod units;

/// The digests adapters name artifacts with.
pub use cairn_ipld::digest;

use bytes::Bytes;
pub use http::{Method, StatusCode};
use url::Url;

use crate::digest::Digest;

/// [`Ecosystem::max_document_bytes`] unless an adapter says otherwise.
pub const DEFAULT_MAX_DOCUMENT: u64 = 32 << 20;

/// A request as an adapter sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// The raw (still percent-encoded) path below the ecosystem's prefix, without a leading `/`.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The `Accept` header, if any.
    pub accept: Option<&'a str>,
}

static GET: Method = Method::GET;

impl<'a> Request<'a> {
    /// A plain `GET` of `path`, with no query and no `Accept`.
    pub fn get(path: &'a str) -> Self {
        Request {
            method: &GET,
            path,
            query: None,
            accept: None,
        }
    }
}

/// What a request is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A metadata document: cached as upstream sent it, rendered as `variant` when served.
    Metadata(MetadataRoute),
    /// One part of a metadata document (npm's manifest of one version or dist-tag): the
    /// document is looked up exactly as for [`Route::Metadata`] (same key, same freshness, stale
    /// copies served the same way) and [`Ecosystem::render_part`] cuts `part` out of it. A part
    /// the document does not have is a 404.
    Part {
        document: MetadataRoute,
        part: String,
    },
    /// An immutable artifact. Its digest comes from the metadata document `metadata` names.
    Artifact(ArtifactRoute),
    /// Sent to upstream as it is and never cached (npm's audit endpoints). The adapter names
    /// the one `method` the endpoint takes (a request with another is refused) and the exact
    /// `upstream_path`; such a request never carries the upstream's credentials.
    Passthrough {
        method: Method,
        upstream_path: String,
    },
    /// Answered by Cairn itself.
    Local {
        content_type: &'static str,
        body: Bytes,
    },
    /// A permanent redirect to another path below the ecosystem's prefix (PyPI's normalised
    /// project names).
    Redirect { path: String },
    /// The list of the documents this node holds (PyPI's simple root, which an upstream
    /// lists in hundreds of thousands and no installer reads): the mirror reads their keys from
    /// its index, at most [`MAX_HELD_LISTED`], and [`Ecosystem::render_held`] renders them as
    /// `variant`. Never cached, never fetched upstream.
    Held { variant: &'static str },
    /// A request the registry protocol has but a read-only mirror does not take (npm's
    /// publish, login, whoami), answered with `status` and `message` in the error body. The
    /// server replaces [`UPSTREAM_MARK`] in the message with the upstream's URL, so the client is
    /// told where to go instead.
    Refused { status: StatusCode, message: String },
}

/// Check a document served as upstream sent it (a registry's signing keys, a file's
/// provenance): a JSON object of at most `limit` bytes. Errors name `key`.
pub fn check_json_object(key: &str, body: &[u8], limit: usize) -> Result<(), AdapterError> {
    if body.len() > limit {
        return Err(AdapterError(format!(
            "{key}: {} bytes, over the {limit}-byte limit for such documents",
            body.len()
        )));
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(AdapterError(format!("{key}: not a JSON object"))),
        Err(e) => Err(AdapterError(format!("{key}: not valid JSON: {e}"))),
    }
}

/// Most document keys a [`Route::Held`] list names.
pub const MAX_HELD_LISTED: usize = 100_000;

/// Stands for the upstream's URL in a [`Route::Refused`] message.
pub const UPSTREAM_MARK: &str = "{upstream}";

/// A metadata document, named by the adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataRoute {
    /// Index key of the document.
    pub key: String,
    /// Path of the document relative to the upstream base URL (already percent-encoded).
    pub upstream_path: String,
    /// The representation to render: the adapter's own names (`full`, `abbreviated`, …).
    pub variant: &'static str,
    /// The `Accept` header to send upstream (the stored form is then the same whatever the
    /// client asked for); `None` sends none.
    pub upstream_accept: Option<&'static str>,
    /// Another document the adapter needs to read this one (cargo's `config.json` for an index
    /// file: it says where downloads live). The mirror fetches it like any metadata and passes
    /// it to [`Ecosystem::read`] as [`MetadataDoc::context`].
    pub context: Option<Box<MetadataRoute>>,
}

/// An artifact, named by the adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRoute {
    /// Index key of the artifact.
    pub key: String,
    /// Where this artifact's digest is published.
    pub listed_by: Listing,
    /// How to make the artifact from another one when upstream does not publish it (PyPI's
    /// core metadata, extracted from the wheel).
    pub derive: Option<Derive>,
    /// True when the artifact is itself a listing of other artifacts' digests (apt's `Packages`
    /// and `Sources` files), to be read by [`Ecosystem::listing`] once verified. For a key that
    /// did not come in a request, [`Ecosystem::key_route`] says it.
    pub listing: bool,
}

/// Where an artifact's digest comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// The metadata document whose [`Ecosystem::read`] lists it (an npm packument, a cargo
    /// index file, a PyPI page). The key names one immutable file.
    Document(MetadataRoute),
    /// Whatever file this document lists under the key *now* (apt's `Packages.xz` beside its
    /// `InRelease`): the key is a mutable name, resolved through the document (fresh or stale
    /// as for any metadata) on every request, and the file is cached by its content.
    Current(MetadataRoute),
    /// Listed by artifacts that are themselves listings ([`ArtifactRoute::listing`], read by
    /// [`Ecosystem::listing`]: apt's `Packages` names the digest of every `.deb`). Known once such a listing has been fetched.
    Listings,
}

impl Listing {
    /// The document this listing names, if it is one.
    pub fn document(&self) -> Option<&MetadataRoute> {
        match self {
            Listing::Document(route) | Listing::Current(route) => Some(route),
            Listing::Listings => None,
        }
    }
}

/// Reads a verified artifact: what a [`Derive`] function is given.
pub trait ArtifactReader: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> ArtifactReader for T {}

/// An artifact computed from another (pure: it reads only the reader it is given).
#[derive(Clone, Debug)]
pub struct Derive {
    /// Index key of the source artifact (listed by the same document).
    pub source: String,
    pub function: fn(&mut dyn ArtifactReader) -> Result<Vec<u8>, AdapterError>,
}

/// Two derivations are the same when they read the same source: an adapter has one function per
/// kind of derived artifact, and function addresses are not comparable.
impl PartialEq for Derive {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Derive {}

/// An artifact a metadata document names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRef {
    /// Index key, as [`ArtifactRoute::key`] would name it.
    pub key: String,
    /// Where upstream serves it (absolute; resolved against the document's URL).
    pub url: Url,
    /// The digest the registry published for the whole file.
    pub digest: Digest,
    pub size: Option<u64>,
    /// The version of the package the file belongs to, as the registry spells it (what policy
    /// rules name), when the document says.
    pub version: Option<String>,
    /// When the registry says the file (or its version) was published, in milliseconds since the
    /// Unix epoch, when the document says (npm's `time`, cargo's `pubtime`, PyPI's
    /// `upload-time`).
    pub published: Option<i64>,
    /// Upstream marked it yanked (a PyPI file under PEP 592, a cargo index line): still
    /// served to what pins it, not offered to new resolutions, unless the policy refuses it.
    pub yanked: bool,
    /// The package the file belongs to, where that is not the key of the document listing it
    /// (apt: a `Packages` stanza's `Package`, a `Sources` one's source package).
    pub package: Option<String>,
}

/// What a metadata document says, as [`Ecosystem::read`] finds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentFacts {
    /// The artifacts it names, with the digests the registry published.
    pub artifacts: Vec<ArtifactRef>,
    /// Download locations, besides the upstream's base URL, that it declares (cargo's
    /// `config.json` `dl`; the file host of PyPI's project pages). The mirror fetches artifacts
    /// only under the base and these prefixes. Most registries serve everything under the base
    /// and declare none.
    pub download_prefixes: Vec<Url>,
}

impl DocumentFacts {
    /// Facts of a document that names `artifacts` and declares no download location.
    pub fn artifacts(artifacts: Vec<ArtifactRef>) -> Self {
        DocumentFacts {
            artifacts,
            download_prefixes: Vec::new(),
        }
    }
}

/// What of a node's cache belongs to one package, or to one version of it, as
/// [`Ecosystem::package_scope`] names it (for the operator's `cairn purge`). Keys only: the
/// mirror finds what is held under them.
pub struct PackageScope {
    /// Metadata documents that are the package's own, dropped whole with the references they
    /// list (so the next request fetches them, and the digests they list, from upstream).
    pub documents: Vec<String>,
    /// Documents whose listed artifacts (the references each recorded) are candidates.
    pub listed_by: Vec<String>,
    /// Artifact keys beginning with one of these are candidates too (files cached under a
    /// document that is gone, or listed by listing artifacts such as apt's `Packages`).
    pub artifact_prefixes: Vec<String>,
    /// Of the candidate artifact keys, those that belong (all of them for a whole package; one
    /// version's files for `NAME@VERSION`).
    pub owns: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl PackageScope {
    /// The scope of a whole package: its documents, what they list and every artifact key under
    /// `prefix`.
    pub fn whole(document: &str, prefix: String) -> Self {
        PackageScope {
            documents: vec![document.to_owned()],
            listed_by: vec![document.to_owned()],
            artifact_prefixes: vec![prefix],
            owns: Box::new(|_| true),
        }
    }
}

impl std::fmt::Debug for PackageScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageScope")
            .field("documents", &self.documents)
            .field("listed_by", &self.listed_by)
            .field("artifact_prefixes", &self.artifact_prefixes)
            .finish_non_exhaustive()
    }
}

/// Longest version accepted in a package selector.
pub const MAX_VERSION_LEN: usize = 256;

/// Check a version given in a package selector (`NAME@VERSION`): not empty, bounded, printable
/// ASCII without `/` (a version names files, never a path).
pub fn check_version(version: &str) -> Result<(), BadRequest> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
        && version != "."
        && version != "..";
    if ok {
        Ok(())
    } else {
        Err(BadRequest(format!(
            "version {version:?} is not a version (printable ASCII without `/`, at most {MAX_VERSION_LEN} bytes)"
        )))
    }
}

/// A fetched metadata document.
#[derive(Clone, Copy, Debug)]
pub struct MetadataDoc<'a> {
    pub key: &'a str,
    /// Where it was fetched from.
    pub url: &'a Url,
    /// Exactly the upstream bytes.
    pub body: &'a [u8],
    /// The document [`MetadataRoute::context`] named, when there is one (given to
    /// [`Ecosystem::read`] only).
    pub context: Option<&'a MetadataDoc<'a>>,
}

/// A document rendered for clients.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub body: Bytes,
    pub content_type: &'static str,
}

/// A request path an adapter refuses (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// A metadata document an adapter cannot read (answered with 502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError(pub String);

// The message is the whole error (hand-written rather than derived: the contract keeps the
// adapters free of proc-macro crates).
impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AdapterError {}

/// One registry protocol. Used as `Arc<dyn Ecosystem>`.
pub trait Ecosystem: Send + Sync + 'static {
    /// The ecosystem's identity: its index namespace and metric label (`npm`, `apt/debian`).
    /// Where it is served (its mount, the path prefix) is the engine's registration, not the
    /// adapter's.
    fn name(&self) -> &str;

    /// Classify a request. Hostile names (`..`, NUL, over-long) are a [`BadRequest`]; a path
    /// the protocol does not know is `Ok(None)` (404).
    fn route(&self, request: &Request<'_>) -> Result<Option<Route>, BadRequest>;

    /// The route a key of this adapter's ([`MetadataRoute::key`], [`ArtifactRoute::key`])
    /// comes from, as a `GET` of it would give: how keys that did not arrive in a request (a
    /// bundle's) are checked. The mirror accepts such a key only when this route names it again.
    /// `Ok(None)` or an error: no request names it. The default routes the key itself as the
    /// path, which suits adapters whose keys are their decoded paths; an adapter whose keys are
    /// not overrides it.
    fn key_route(&self, key: &str) -> Result<Option<Route>, BadRequest> {
        self.route(&Request::get(key))
    }

    /// The package name a metadata key routes by ([`Route::Metadata`] keys are matched against
    /// the routed upstreams' name patterns through it). The default is the key itself, which
    /// suits adapters whose document keys are package names; an adapter with other documents
    /// about one package (npm's attestations of one version) names the package.
    fn routing_name<'k>(&self, key: &'k str) -> &'k str {
        key
    }

    /// Read a fetched document once: the artifacts it names with their digests, and the
    /// download locations it declares. Called once per fetched version of a document, before it
    /// is stored (an error means the document is malformed, and it is not stored), and for a
    /// stored document whose declared locations the mirror needs again (after a restart).
    fn read(&self, doc: &MetadataDoc<'_>) -> Result<DocumentFacts, AdapterError>;

    /// True when a miss of `key` (a document or an artifact) on a node that is `--offline` is
    /// answered 404 rather than 504. A 504 says the gateway could not reach upstream, which clients read as
    /// "try again later"; some read a 404 as "try the next name" instead (apt, for the index
    /// files it can fetch under several names and compressions: docs/protocols.md).
    fn offline_miss_is_not_found(&self, key: &str) -> bool {
        let _ = key;
        false
    }

    /// The artifacts a verified listing artifact ([`ArtifactRoute::listing`]) names, with their digests, handed to `each`
    /// one by one as they are read (a listing may name hundreds of thousands: the mirror indexes
    /// them in batches, never holding them all). `url` is where it was fetched from (names in it
    /// are relative to the archive it belongs to). An error from `each` ends the reading and is
    /// returned.
    fn listing(
        &self,
        key: &str,
        url: &Url,
        file: &mut dyn ArtifactReader,
        each: &mut dyn FnMut(ArtifactRef) -> Result<(), AdapterError>,
    ) -> Result<(), AdapterError> {
        let _ = (key, url, file, each);
        Ok(())
    }

    /// The largest metadata document this ecosystem accepts, from upstream or from a peer
    /// (`--max-document-size` overrides it for every ecosystem). A document is held whole while
    /// it is read and rendered, so this bounds the memory one costs.
    fn max_document_bytes(&self) -> u64 {
        DEFAULT_MAX_DOCUMENT
    }

    /// Render `doc` as `variant`, with artifact URLs pointing at `base` (the proxy's own URL for
    /// this ecosystem, ending in `/`). Must be deterministic: the result is cached and its ETag
    /// derived from the inputs.
    fn render(
        &self,
        doc: &MetadataDoc<'_>,
        variant: &'static str,
        base: &Url,
    ) -> Result<Rendered, AdapterError>;

    /// The document as upstream sent it, without the artifacts `refused` names and what
    /// belongs only to them (npm's versions, with `time` and `dist-tags` kept consistent;
    /// cargo's index lines; PyPI's files), rendered in its place when a supply-chain policy
    /// refuses some. `Ok(None)`: the adapter does not filter; the refused files are still
    /// refused when asked for.
    fn without(
        &self,
        doc: &MetadataDoc<'_>,
        refused: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Vec<u8>>, AdapterError> {
        let _ = (doc, refused);
        Ok(None)
    }

    /// `rendered` (of `variant`), for a node whose clients must present an access token: an
    /// adapter whose clients send one only when the registry says so says it here (cargo's
    /// `config.json` `"auth-required": true`). By default unchanged. Deterministic, as
    /// [`Ecosystem::render`].
    fn for_token_clients(
        &self,
        variant: &'static str,
        rendered: Rendered,
    ) -> Result<Rendered, AdapterError> {
        let _ = variant;
        Ok(rendered)
    }

    /// What of the cache belongs to the package `name` (as users spell it: the adapter
    /// normalises it the way its routes do), or only to its version `version`: the operator's
    /// `cairn purge`. A name or version the protocol cannot have is a [`BadRequest`] naming it.
    /// Adapters that name no packages keep the default, an error.
    fn package_scope(&self, name: &str, version: Option<&str>) -> Result<PackageScope, BadRequest> {
        let _ = (name, version);
        Err(BadRequest(format!(
            "{} names no packages to purge",
            self.name()
        )))
    }

    /// The path below the ecosystem's prefix that clients are pointed at (PyPI's `simple/`,
    /// cargo's `index/`), named in the hint a request under no ecosystem gets.
    fn client_root(&self) -> &'static str {
        ""
    }

    /// Render the list of held documents a [`Route::Held`] asks for (`keys`, sorted), with
    /// links under `base`. Adapters that route no such list keep the default, an error.
    fn render_held(
        &self,
        keys: &[String],
        variant: &'static str,
        base: &Url,
    ) -> Result<Rendered, AdapterError> {
        let _ = (keys, variant, base);
        Err(AdapterError(format!(
            "{} lists no held documents",
            self.name()
        )))
    }

    /// Render one part of `doc` (named by a [`Route::Part`] this adapter routed) as `variant`,
    /// with artifact URLs pointing at `base`; `Ok(None)` when the document has no such part.
    /// Deterministic, like [`Ecosystem::render`]. Adapters that route no parts keep the default.
    fn render_part(
        &self,
        doc: &MetadataDoc<'_>,
        variant: &'static str,
        part: &str,
        base: &Url,
    ) -> Result<Option<Rendered>, AdapterError> {
        let _ = (doc, variant, part, base);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    #[test]
    fn selector_versions_are_bounded_printable_and_never_paths() {
        for good in ["1.3.0", "1.0.0-beta.1+build", "2:1.2-3~deb12u1"] {
            assert!(super::check_version(good).is_ok(), "{good}");
        }
        let long = "1".repeat(super::MAX_VERSION_LEN + 1);
        for bad in ["", "..", "1/2", "1\\2", "1 2", "1\n", long.as_str()] {
            assert!(super::check_version(bad).is_err(), "{bad:?}");
        }
    }

    /// The workspace pins url's IDNA back end to the ASCII-only one (Cargo.toml): hosts are
    /// configured upstreams, written as ASCII, and the Unicode tables were most of an adapter's
    /// dependency tree. A non-ASCII host is refused, not mapped; punycode and case folding work.
    #[test]
    fn urls_take_ascii_hosts_only() {
        assert!(Url::parse("https://b\u{fc}cher.example/simple/").is_err());
        let url = Url::parse("https://XN--BCHER-KVA.Example/simple/").expect("punycode host");
        assert_eq!(url.host_str(), Some("xn--bcher-kva.example"));
    }
}
