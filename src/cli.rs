//! The command line: every subcommand and flag, as clap parses them. Each flag's environment
//! variable is read here too (clap's `env`); `cairn.toml` and the defaults are layered on top in
//! `settings`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use url::Url;

/// `cairn --version`: the release, and the formats and protocols it speaks, which decide whether
/// two nodes (or a bundle and a node) understand each other.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nregistries: npm, cargo sparse index, PyPI simple (PEP 503/691/658), apt (InRelease, by-hash)",
    "\nIPFS: CIDv1 (raw, dag-pb UnixFS with 1 MiB raw leaves, dag-cbor snapshots), CAR v1, \
     trustless gateway",
    "\npeers: libp2p (TCP+noise+yamux, QUIC), Kademlia /cairn/kad/1.0.0, Bitswap 1.2.0, \
     /cairn/resolve/1.0.0, /cairn/metadata/1.0.0"
);

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    long_version = LONG_VERSION,
    about = "Content-addressed, peer-to-peer mirror and caching proxy for npm, cargo, PyPI and apt",
    after_help = "Start with `cairn serve`, then `cairn setup CLIENT` for each client. \
                  Durations take a unit (300s, 5m, 2h, 1d); sizes are bytes or K, M, G."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Common {
    /// Where the store and index live [default: $XDG_DATA_HOME/cairn]
    #[arg(long, global = true, env = "CAIRN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file [default: $XDG_CONFIG_HOME/cairn/cairn.toml]
    #[arg(long, global = true, env = "CAIRN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP address: HOST:PORT, or a PORT on 127.0.0.1 [default: 127.0.0.1:7777]
    #[arg(long, global = true, env = "CAIRN_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the node: the HTTP proxy for npm, cargo, PyPI and apt clients, and the peer
    Serve(Box<Serve>),
    /// Print (or apply) a client's configuration for this node
    Setup {
        /// The client to configure
        client: crate::ecosystems::Client,
        /// The node's URL for this client [default: from --listen]
        #[arg(long)]
        url: Option<Url>,
        /// Run the client's own config commands instead of printing them
        #[arg(long)]
        apply: bool,
        /// The CA certificate (PEM) the node's TLS certificate chains to, for clients that
        /// must be told to trust it (a private CA)
        #[arg(long, value_name = "FILE")]
        ca_file: Option<std::path::PathBuf>,
        /// An access token for a node serving with --auth required (`cairn token create`)
        #[arg(
            long,
            env = "CAIRN_TOKEN",
            value_name = "SECRET",
            hide_env_values = true
        )]
        token: Option<String>,
        /// Point the client at the node's view of its registry as of this instant
        /// (2026-08-19T12:00:00Z or 2026-08-19): versions published later are not offered, so
        /// resolutions are the same whenever they run (npm, cargo and PyPI clients)
        #[arg(long, value_name = "INSTANT")]
        as_of: Option<String>,
    },
    /// What the node holds, where each ecosystem's upstream is, and whether it is running
    Status {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Fetch everything lockfiles pin (with its metadata) into the node's cache
    Prefetch {
        /// A lockfile: package-lock.json, npm-shrinkwrap.json, yarn.lock, pnpm-lock.yaml,
        /// Cargo.lock, requirements*.txt, uv.lock, or KIND:FILE (npm:, cargo:, pypi:, apt: for
        /// a package list or `dpkg --get-selections` output)
        #[arg(long = "lockfile", value_name = "[KIND:]FILE", required = true)]
        lockfiles: Vec<String>,
        /// The node to warm, which must answer [default: the one at --listen, else this
        /// process runs one on the data directory]
        #[arg(long)]
        url: Option<Url>,
        #[command(flatten)]
        python: crate::pytarget::PythonTargetArgs,
        /// apt sources naming the suites apt package lists are resolved in, whose indexes are
        /// fetched too (repeatable; `*.sources` or one-line format) [default: this machine's]
        #[arg(long = "apt-sources", value_name = "FILE")]
        apt_sources: Vec<PathBuf>,
    },
    /// Write a CAR bundle: a snapshot and every block needed to serve it offline
    Export {
        /// Only what these lockfiles need
        #[arg(long = "lockfile", value_name = "[KIND:]FILE", conflicts_with_all = ["all", "snapshot"])]
        lockfiles: Vec<String>,
        /// Everything the node holds
        #[arg(long, conflicts_with = "snapshot")]
        all: bool,
        /// A snapshot taken earlier (`cairn snapshot`)
        #[arg(long, value_name = "CID")]
        snapshot: Option<cid::Cid>,
        /// The CAR file to write
        #[arg(short = 'o', long = "output", value_name = "FILE.car")]
        output: PathBuf,
        /// Which Python files the lockfiles' entries take (as `prefetch` did)
        #[command(flatten)]
        python: crate::pytarget::PythonTargetArgs,
    },
    /// Read a CAR bundle into the store: all of it, verified, or nothing
    Import {
        /// The bundle, as `cairn export` wrote it (it may come from another machine: every
        /// document and artifact is checked as if upstream had sent it)
        #[arg(value_name = "FILE.car")]
        file: PathBuf,
        /// Pin the bundle's snapshot once it is in: what it brought is never evicted
        #[arg(long)]
        pin: bool,
        /// The apt archives the bundle may hold, as `serve` takes them
        #[command(flatten)]
        apt: AptArgs,
    },
    /// Print the root CID of the node's current state (and keep the snapshot)
    Snapshot,
    /// Keep a snapshot (never evicted): the current state, CID, or what lockfiles need
    Pin {
        /// The snapshot to keep [default: the current state]
        #[arg(value_name = "CID", conflicts_with = "lockfiles")]
        root: Option<cid::Cid>,
        /// Keep exactly what these lockfiles need (as `export` resolves them)
        #[arg(long = "lockfile", value_name = "[KIND:]FILE")]
        lockfiles: Vec<String>,
        /// Which Python files the lockfiles' entries take (as `prefetch` did)
        #[command(flatten)]
        python: crate::pytarget::PythonTargetArgs,
    },
    /// Stop keeping a pinned snapshot: its artifacts may be evicted again
    Unpin {
        #[arg(value_name = "CID")]
        root: cid::Cid,
    },
    /// List the pinned snapshots, with what each keeps
    Pins {
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print this node's peer ID, then the addresses other nodes can give `--bootstrap` (the
    /// running node's real ports when it answers at --listen)
    Id,
    /// Exit 0 when the node at --listen answers GET /healthz with ok within 5 s, 1 otherwise
    /// (a container's HEALTHCHECK: the image has no curl)
    Health {
        /// The node's URL [default: from --listen, 127.0.0.1 for every address, https with
        /// tls-cert]
        #[arg(long)]
        url: Option<Url>,
    },
    /// Hand the data directory and everything in it to the user the node runs as (a container
    /// platform's init step, run as root: images built FROM scratch have no chown)
    ChownStore {
        /// The owner: UID or UID:GID
        #[arg(long, value_name = "UID[:GID]")]
        user: String,
    },
    /// Drop packages' cached files and documents at once, so the next request fetches them
    /// from upstream (through the node at --listen when one answers, else in the data directory)
    Purge {
        /// ECOSYSTEM:NAME or ECOSYSTEM:NAME@VERSION: npm:left-pad, npm:left-pad@1.3.0, pypi:litellm,
        /// cargo:serde@1.0.0, apt:ARCHIVE/SOURCE (an apt archive's pool files of one source
        /// package)
        #[arg(value_name = "SPEC", required = true)]
        specs: Vec<String>,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove what nothing needs: files no row names, rows whose file is gone, leftovers in
    /// tmp/ (beside a running node too)
    Gc {
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
        /// Files younger than this are kept (a commit writes its file a moment before its row)
        #[arg(long, value_name = "DUR", default_value = "1h")]
        min_age: String,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Read every stored file again and check it against its CIDs; damaged files are moved
    /// aside and never served again (through the node at --listen when one answers)
    Verify {
        /// Fetch each damaged file again (from peers, then upstream) and verify it
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Access tokens for a node serving with --auth required
    #[command(subcommand)]
    Token(TokenCommand),
    /// What the running node's supply-chain policy decides
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The peers the running node is connected to, with their round-trip times
    Peers {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
        /// The node [default: the one at --listen]
        #[arg(long)]
        url: Option<Url>,
    },
}

/// `cairn policy …`: the running node's supply-chain policy.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Which rule decides on each ECOSYSTEM:NAME@VERSION (npm:axios@1.14.1), and why
    Explain {
        #[arg(required = true, value_name = "PACKAGE")]
        packages: Vec<String>,
        /// Print the explanations as JSON
        #[arg(long)]
        json: bool,
    },
    /// List every version the lockfiles pin that the policy refuses; fails when there is one
    Check {
        /// A lockfile, FILE or KIND:FILE as for prefetch (repeatable)
        #[arg(long = "lockfile", required = true, value_name = "[KIND:]FILE")]
        lockfiles: Vec<String>,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

/// `cairn token …`: access tokens, kept in the data directory as the SHA-256 of each secret.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown this once; only its hash is kept)
    Create {
        /// A name for it (who or what uses it): letters, digits, `.`, `_`, `-`
        name: String,
        /// It stops working after this long: 90d, 12h, … [default: never]
        #[arg(long, value_name = "DUR")]
        expires: Option<String>,
        /// It may also use the routes that change the node's state (purge, repair)
        #[arg(long)]
        admin: bool,
    },
    /// The tokens, with their rights and expiry (never their secrets)
    List {
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a token: a node stops accepting it within half a second
    Revoke { name: String },
}

/// The apt archives to serve (`serve`) or to check a bundle against (`import`).
#[derive(clap::Args, Debug, Default)]
pub struct AptArgs {
    /// An apt archive, served at /apt/NAME/ (repeatable) [default: every archive in apt's sources]
    #[arg(
        long,
        env = "CAIRN_APT_UPSTREAM",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
    pub apt_upstream: Vec<String>,
    /// The keyring an apt archive's Release files must be signed with (repeatable)
    /// [default: the source's Signed-By, else Debian's archive keyring]
    #[arg(
        long,
        env = "CAIRN_APT_KEYRING",
        value_name = "NAME=FILE",
        value_delimiter = ','
    )]
    pub apt_keyring: Vec<String>,
}

#[derive(Args, Default)]
pub struct Serve {
    /// Never contact an upstream registry
    #[arg(long, env = "CAIRN_OFFLINE")]
    pub offline: bool,
    /// npm upstream registry [default: npm's own `registry` setting]
    #[arg(long, env = "CAIRN_NPM_UPSTREAM", value_name = "URL")]
    pub npm_upstream: Option<String>,
    /// An npm scope routed to its own registry, and to no other (repeatable) [default: npm's
    /// own scoped-registry settings]
    #[arg(
        long,
        env = "CAIRN_NPM_SCOPE",
        value_name = "@SCOPE=URL",
        value_delimiter = ','
    )]
    pub npm_scope: Vec<String>,
    /// cargo upstream sparse index [default: from cargo's config or registry cache]
    #[arg(long, env = "CAIRN_CARGO_UPSTREAM", value_name = "URL")]
    pub cargo_upstream: Option<String>,
    /// A cargo alternative registry (a sparse index), served at /cargo/NAME/index/
    /// (repeatable) [default: the sparse [registries.NAME] of cargo's config]
    #[arg(
        long,
        env = "CAIRN_CARGO_REGISTRY",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
    pub cargo_registry: Vec<String>,
    /// PyPI upstream simple index [default: pip's index-url, else pip's default]
    #[arg(long, env = "CAIRN_PYPI_UPSTREAM", value_name = "URL")]
    pub pypi_upstream: Option<String>,
    /// A PyPI index beside the main one, which takes the projects --pypi-route sends it
    /// (repeatable) [default: pip's extra-index-url settings, each named by its host and port]
    #[arg(
        long,
        env = "CAIRN_PYPI_INDEX",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
    pub pypi_index: Vec<String>,
    /// The PyPI projects whose normalised names match PATTERN (`*` for any run of
    /// characters) come from index NAME, and from no other (repeatable)
    #[arg(
        long,
        env = "CAIRN_PYPI_ROUTE",
        value_name = "PATTERN=NAME",
        value_delimiter = ','
    )]
    pub pypi_route: Vec<String>,
    #[command(flatten)]
    pub apt: AptArgs,
    /// The URL clients reach this node at [default: each request's Host]
    #[arg(long, env = "CAIRN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<Url>,
    /// How long metadata is served before upstream is asked again (e.g. 300s, 5m) [default: 5m]
    #[arg(long, env = "CAIRN_METADATA_TTL", value_name = "DURATION")]
    pub metadata_ttl: Option<String>,
    /// How long an upstream "not found" is remembered before upstream is asked again
    /// [default: 1m]
    #[arg(long, env = "CAIRN_NEGATIVE_TTL", value_name = "DURATION")]
    pub negative_ttl: Option<String>,
    /// Metadata requests, and apart from them artifact downloads, in flight to one upstream at
    /// most [default: 64 each]
    #[arg(long, env = "CAIRN_UPSTREAM_CONCURRENCY", value_name = "N")]
    pub upstream_concurrency: Option<usize>,
    /// Longest wait for an upstream's headers or next bytes; an artifact body must also bring
    /// 16 KiB/s over each such window [default: 30s]
    #[arg(long, env = "CAIRN_UPSTREAM_TIMEOUT", value_name = "DURATION")]
    pub upstream_timeout: Option<String>,
    /// Longest a whole metadata exchange with upstream may take, and an artifact download may
    /// wait for a slot [default: 2m]
    #[arg(long, env = "CAIRN_UPSTREAM_DEADLINE", value_name = "DURATION")]
    pub upstream_deadline: Option<String>,
    /// Memory for the in-memory caches: the bytes of hot artifacts (a quarter, at most
    /// 16M) and rendered documents (the rest) (e.g. 64M) [default: 112M]
    #[arg(long, env = "CAIRN_MEMORY_BUDGET", value_name = "SIZE")]
    pub memory_budget: Option<String>,
    /// Largest metadata document accepted, for every ecosystem (e.g. 256M) [default: npm 128M,
    /// PyPI 64M, cargo and apt 32M]
    #[arg(long, env = "CAIRN_MAX_DOCUMENT_SIZE", value_name = "SIZE")]
    pub max_document_size: Option<String>,
    /// Largest artifact downloaded; one whose listing declares its size is also held to that
    /// size [default: 8G]
    #[arg(long, env = "CAIRN_MAX_ARTIFACT_SIZE", value_name = "SIZE")]
    pub max_artifact_size: Option<String>,
    /// Most bytes of artifacts the store keeps: past it, the least recently used are evicted
    /// (pinned ones never) [default: no limit]
    #[arg(long, env = "CAIRN_MAX_SIZE", value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Most bytes of npm's artifacts the store keeps: past it, npm's least recently used are
    /// evicted (pinned ones never), beside --max-size [default: no limit]
    #[arg(long, env = "CAIRN_MAX_SIZE_NPM", value_name = "SIZE")]
    pub max_size_npm: Option<String>,
    /// As --max-size-npm, for cargo's crates [default: no limit]
    #[arg(long, env = "CAIRN_MAX_SIZE_CARGO", value_name = "SIZE")]
    pub max_size_cargo: Option<String>,
    /// As --max-size-npm, for PyPI's files [default: no limit]
    #[arg(long, env = "CAIRN_MAX_SIZE_PYPI", value_name = "SIZE")]
    pub max_size_pypi: Option<String>,
    /// As --max-size-npm, for every apt archive's files together [default: no limit]
    #[arg(long, env = "CAIRN_MAX_SIZE_APT", value_name = "SIZE")]
    pub max_size_apt: Option<String>,
    /// Free space kept on the store's disk, as a SIZE or a share (`5%`): a download that would
    /// leave less evicts least recently used artifacts first [default: 5%]
    #[arg(long, env = "CAIRN_MIN_FREE", value_name = "SIZE|N%")]
    pub min_free: Option<String>,
    /// HTTP connections served at once; more wait to be accepted
    /// [default: what fits in the descriptor limit, at most 4096]
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Longest time a client may take to send a request's headers (also the keep-alive
    /// timeout) [default: 30s]
    #[arg(long, env = "CAIRN_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,
    /// Close a connection that has moved no bytes for this long with no request being handled
    /// [default: 60s]
    #[arg(long, env = "CAIRN_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain; with --tls-key.
    /// Read again when it changes: a renewal needs no restart
    #[arg(
        long,
        env = "CAIRN_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Who may use the node: off (anyone who reaches it) or required (a token from `cairn
    /// token create` on every route but /healthz) [default: off]
    #[arg(long, env = "CAIRN_AUTH", value_name = "off|required")]
    pub auth: Option<String>,
    /// With --auth required, /metrics needs an admin token too (by default any token)
    #[arg(long, env = "CAIRN_ADMIN_METRICS")]
    pub admin_metrics: bool,
    /// The PEM private key of --tls-cert
    #[arg(
        long,
        env = "CAIRN_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<String>,
    #[command(flatten)]
    pub p2p: crate::p2p::P2pArgs,
    #[command(flatten)]
    pub policy: crate::policy::PolicyArgs,
}

impl Serve {
    /// The `--max-size-ECOSYSTEM` flag (or its variable) of `ecosystem` (`npm`, `cargo`,
    /// `pypi`, `apt`; see `settings::ECOSYSTEM_LIMITS`).
    pub fn max_size_of(&self, ecosystem: &str) -> Option<&str> {
        match ecosystem {
            "npm" => self.max_size_npm.as_deref(),
            "cargo" => self.max_size_cargo.as_deref(),
            "pypi" => self.max_size_pypi.as_deref(),
            "apt" => self.max_size_apt.as_deref(),
            _ => None,
        }
    }

    /// The `--ECOSYSTEM-upstream` flag (or its variable) named by its key (`npm-upstream`, …).
    pub fn upstream(&self, key: &str) -> Option<&str> {
        match key {
            "npm-upstream" => self.npm_upstream.as_deref(),
            "cargo-upstream" => self.cargo_upstream.as_deref(),
            "pypi-upstream" => self.pypi_upstream.as_deref(),
            _ => None,
        }
    }
}
