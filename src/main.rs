//! `cairn`: the command line. Flags → settings → open the mirror with its adapters → serve.
//! Errors are one line on stderr and a non-zero exit.

mod apt;
mod barlog;
mod bundles;
mod descriptors;
mod discover;
mod lockfiles;
mod p2p;
mod prefetch;
mod pytarget;
mod settings;
mod setup;
mod yarnrc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_mirror::http::ConnectionLimits;
use cairn_mirror::{EcosystemSetup, Mirror, MirrorConfig};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::settings::{FileSettings, parse_duration, parse_size};

const DEFAULT_LISTEN: &str = "127.0.0.1:7777";

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

/// jemalloc hands freed memory back to the system on a timer (background threads), where
/// glibc's per-thread arenas keep it: after a cold install of ~470 npm packages the node idles at
/// 63 MB instead of 91 MB, most of it the bounded caches (BENCHMARKS.md). mimalloc was tried and
/// kept 314 MB.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    long_version = LONG_VERSION,
    about = "Content-addressed, peer-to-peer mirror and caching proxy for npm, cargo, PyPI and apt",
    after_help = "Start with `cairn serve`, then `cairn setup CLIENT` for each client. \
                  Durations take a unit (300s, 5m, 2h, 1d); sizes are bytes or K, M, G."
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// Where the store and index live [default: $XDG_DATA_HOME/cairn]
    #[arg(long, global = true, env = "CAIRN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config file [default: $XDG_CONFIG_HOME/cairn/cairn.toml]
    #[arg(long, global = true, env = "CAIRN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTP address: HOST:PORT, or a PORT on 127.0.0.1 [default: 127.0.0.1:7777]
    #[arg(long, global = true, env = "CAIRN_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: the HTTP proxy for npm, cargo, PyPI and apt clients, and the peer
    Serve(Box<Serve>),
    /// Print (or apply) a client's configuration for this node
    Setup {
        /// The client to configure
        client: setup::Client,
        /// The node's URL for this client [default: from --listen]
        #[arg(long)]
        url: Option<Url>,
        /// Run the client's own config commands instead of printing them
        #[arg(long)]
        apply: bool,
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
        python: pytarget::PythonTargetArgs,
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
        python: pytarget::PythonTargetArgs,
    },
    /// Read a CAR bundle into the store: all of it, verified, or nothing
    Import {
        /// The bundle, as `cairn export` wrote it (it may come from another machine: every
        /// document and artifact is checked as if upstream had sent it)
        #[arg(value_name = "FILE.car")]
        file: PathBuf,
        /// The apt archives the bundle may hold, as `serve` takes them
        #[command(flatten)]
        apt: AptArgs,
    },
    /// Print the root CID of the node's current state (and keep the snapshot)
    Snapshot,
    /// Keep a snapshot: the current state, or CID
    Pin {
        /// The snapshot to keep [default: the current state]
        #[arg(value_name = "CID")]
        root: Option<cid::Cid>,
    },
    /// Print this node's peer ID, then the addresses other nodes can give `--bootstrap` (the
    /// running node's real ports when it answers at --listen)
    Id,
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

/// The apt archives to serve (`serve`) or to check a bundle against (`import`).
#[derive(clap::Args, Debug, Default)]
struct AptArgs {
    /// An apt archive, served at /apt/NAME/ (repeatable) [default: every archive in apt's sources]
    #[arg(
        long,
        env = "CAIRN_APT_UPSTREAM",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
    apt_upstream: Vec<String>,
    /// The keyring an apt archive's Release files must be signed with (repeatable)
    /// [default: the source's Signed-By, else Debian's archive keyring]
    #[arg(
        long,
        env = "CAIRN_APT_KEYRING",
        value_name = "NAME=FILE",
        value_delimiter = ','
    )]
    apt_keyring: Vec<String>,
}

#[derive(Args, Default)]
struct Serve {
    /// Never contact an upstream registry
    #[arg(long, env = "CAIRN_OFFLINE")]
    offline: bool,
    /// npm upstream registry [default: npm's own `registry` setting]
    #[arg(long, env = "CAIRN_NPM_UPSTREAM", value_name = "URL")]
    npm_upstream: Option<String>,
    /// cargo upstream sparse index [default: from cargo's config or registry cache]
    #[arg(long, env = "CAIRN_CARGO_UPSTREAM", value_name = "URL")]
    cargo_upstream: Option<String>,
    /// PyPI upstream simple index [default: pip's index-url, else pip's default]
    #[arg(long, env = "CAIRN_PYPI_UPSTREAM", value_name = "URL")]
    pypi_upstream: Option<String>,
    #[command(flatten)]
    apt: AptArgs,
    /// The URL clients reach this node at [default: each request's Host]
    #[arg(long, env = "CAIRN_PUBLIC_URL", value_name = "URL")]
    public_url: Option<Url>,
    /// How long metadata is served before upstream is asked again (e.g. 300s, 5m) [default: 5m]
    #[arg(long, env = "CAIRN_METADATA_TTL", value_name = "DURATION")]
    metadata_ttl: Option<String>,
    /// How long an upstream "not found" is remembered before upstream is asked again
    /// [default: 1m]
    #[arg(long, env = "CAIRN_NEGATIVE_TTL", value_name = "DURATION")]
    negative_ttl: Option<String>,
    /// Metadata requests, and apart from them artifact downloads, in flight to one upstream at
    /// most [default: 64 each]
    #[arg(long, env = "CAIRN_UPSTREAM_CONCURRENCY", value_name = "N")]
    upstream_concurrency: Option<usize>,
    /// Longest wait for an upstream's headers or next bytes; an artifact body must also bring
    /// 16 KiB/s over each such window [default: 30s]
    #[arg(long, env = "CAIRN_UPSTREAM_TIMEOUT", value_name = "DURATION")]
    upstream_timeout: Option<String>,
    /// Longest a whole metadata exchange with upstream may take, and an artifact download may
    /// wait for a slot [default: 2m]
    #[arg(long, env = "CAIRN_UPSTREAM_DEADLINE", value_name = "DURATION")]
    upstream_deadline: Option<String>,
    /// Largest metadata document accepted, for every ecosystem (e.g. 256M) [default: npm 128M,
    /// PyPI 64M, cargo and apt 32M]
    #[arg(long, env = "CAIRN_MAX_DOCUMENT_SIZE", value_name = "SIZE")]
    max_document_size: Option<String>,
    /// Largest artifact downloaded; one whose listing declares its size is also held to that
    /// size [default: 8G]
    #[arg(long, env = "CAIRN_MAX_ARTIFACT_SIZE", value_name = "SIZE")]
    max_artifact_size: Option<String>,
    /// HTTP connections served at once; more wait to be accepted
    /// [default: what fits in the descriptor limit, at most 4096]
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Longest time a client may take to send a request's headers (also the keep-alive
    /// timeout) [default: 30s]
    #[arg(long, env = "CAIRN_HEADER_TIMEOUT", value_name = "DURATION")]
    header_timeout: Option<String>,
    /// Close a connection that has moved no bytes for this long with no request being handled
    /// [default: 60s]
    #[arg(long, env = "CAIRN_IDLE_TIMEOUT", value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_name = "text|json")]
    log_format: Option<String>,
    #[command(flatten)]
    p2p: p2p::P2pArgs,
}

fn main() {
    let cli = Cli::parse();
    // Blocking work (SQLite, file reads, hashing) is short; a bounded pool keeps thread count
    // and per-thread allocator arenas, and so memory, in check under load.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("cairn: {e:#}");
        std::process::exit(1);
    }
}

fn listen_addr(common: &Common, file: &FileSettings) -> Result<SocketAddr> {
    let text = common
        .listen
        .as_deref()
        .or(file.listen.as_deref())
        .unwrap_or(DEFAULT_LISTEN);
    settings::parse_listen(text, [127, 0, 0, 1].into())
}

fn data_dir(common: &Common, file: &FileSettings) -> PathBuf {
    common
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(settings::default_data_dir)
}

async fn run(cli: Cli) -> Result<()> {
    let creates_config = matches!(cli.command, Command::Setup { apply: true, .. });
    let file = settings::load(cli.common.config.as_deref(), creates_config)?;
    match cli.command {
        Command::Serve(serve_args) => serve(&cli.common, &file, *serve_args).await,
        Command::Setup { client, url, apply } => {
            let listen = listen_addr(&cli.common, &file)?;
            let url = match url {
                Some(url) => url,
                None => {
                    let host = if listen.ip().is_unspecified() {
                        SocketAddr::new([127, 0, 0, 1].into(), listen.port())
                    } else {
                        listen
                    };
                    Url::parse(&format!("http://{host}/{}", client.path())).context("node URL")?
                }
            };
            setup::run(
                client,
                &url,
                apply,
                cli.common.config.as_deref(),
                &file,
                &listen,
            )
            .await
        }
        Command::Status { json } => status(&cli.common, &file, json).await,
        Command::Prefetch {
            lockfiles,
            url,
            python,
            apt_sources,
        } => prefetch(&cli.common, &file, lockfiles, url, &python, &apt_sources).await,
        Command::Export {
            lockfiles,
            all,
            snapshot,
            output,
            python,
        } => {
            let selection = match (all, snapshot) {
                (true, _) => bundles::Selection::All,
                (_, Some(root)) => bundles::Selection::Snapshot(root),
                _ if lockfiles.is_empty() => {
                    anyhow::bail!("say what to export: --lockfile FILE…, --all or --snapshot CID")
                }
                _ => bundles::Selection::Lockfiles(lockfiles, python),
            };
            let data_dir = data_dir(&cli.common, &file);
            tokio::task::spawn_blocking(move || {
                bundles::export(&data_dir, base_ecosystems(), selection, &output)
            })
            .await
            .context("export")?
        }
        Command::Import { file: car, apt } => {
            let data_dir = data_dir(&cli.common, &file);
            let listen = listen_addr(&cli.common, &file)?;
            // The adapters check what the bundle holds as they check what upstream sends.
            let mut ecosystems = base_ecosystems();
            ecosystems.extend(
                apt_ecosystems(&apt, &file, &listen, None)?
                    .into_iter()
                    .map(|setup| setup.ecosystem),
            );
            tokio::task::spawn_blocking(move || bundles::import(&data_dir, &ecosystems, &car))
                .await
                .context("import")?
        }
        Command::Snapshot => {
            let data_dir = data_dir(&cli.common, &file);
            tokio::task::spawn_blocking(move || bundles::snapshot(&data_dir))
                .await
                .context("snapshot")?
        }
        Command::Id => {
            let data_dir = data_dir(&cli.common, &file);
            let node = Url::parse(&format!("http://{}/", listen_addr(&cli.common, &file)?))
                .context("node URL")?;
            p2p::print_id(&data_dir, &node, &file).await
        }
        Command::Peers { json, url } => {
            let url = match url {
                Some(url) => url,
                None => Url::parse(&format!("http://{}/", listen_addr(&cli.common, &file)?))
                    .context("node URL")?,
            };
            p2p::print_peers(&url, json).await
        }
        Command::Pin { root } => {
            let data_dir = data_dir(&cli.common, &file);
            tokio::task::spawn_blocking(move || bundles::pin(&data_dir, root))
                .await
                .context("pin")?
        }
    }
}

/// The log filter when neither `CAIRN_LOG` nor `RUST_LOG` is set. Kademlia warns "Failed to
/// trigger bootstrap: No known peers" whenever it bootstraps with an empty routing table, which
/// is every start of a node that has no peer yet (and every five minutes on a node alone): not
/// worth a warning. Its only other warning concerns record replication, which Cairn does not use
/// (it publishes provider records only).
const DEFAULT_LOG_FILTER: &str = "info,libp2p_kad::behaviour=error";

/// The ecosystems every node has (apt archives are configured).
fn base_ecosystems() -> Vec<Arc<dyn cairn_mirror::ecosystem::Ecosystem>> {
    vec![
        Arc::new(cairn_npm::Npm),
        Arc::new(cairn_cargo::Cargo),
        Arc::new(cairn_pypi::Pypi),
    ]
}

fn init_logging(format: &str) -> Result<()> {
    init_logging_to(format, DEFAULT_LOG_FILTER, std::io::stderr)
}

/// Logging to `writer` at `default` (a filter, unless `CAIRN_LOG` or `RUST_LOG` gives one).
fn init_logging_to<W>(format: &str, default: &str, writer: W) -> Result<()>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CAIRN_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => anyhow::bail!("invalid log format {other:?}: expected text or json"),
    }
    Ok(())
}

async fn serve(common: &Common, file: &FileSettings, args: Serve) -> Result<()> {
    init_logging(
        args.log_format
            .as_deref()
            .or(file.log_format.as_deref())
            .unwrap_or("text"),
    )?;
    let listen = listen_addr(common, file)?;
    let limits = connection_limits(file, &args)?;
    let mirror = open_mirror(common, file, &args, &listen).await?;
    let data_dir = mirror.config().data_dir.clone();
    if !mirror.config().offline {
        probe_upstreams(&mirror);
    }
    let node = p2p::start(&args.p2p, file, &mirror).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr().context("listen address")?;
    tracing::info!(address = %bound, data_dir = %data_dir.display(), offline = mirror.config().offline, "serving");
    // Tests and scripts read the bound address (`--listen 127.0.0.1:0`) from this line.
    println!("cairn listening on http://{bound}");
    run_server(mirror, listener, limits, node).await
}

/// The mirror `serve` runs, with every ecosystem whose upstream was found (flags, `cairn.toml`,
/// else the clients' own settings). `listen` is where clients will reach it (to refuse upstreams
/// that point back at it).
async fn open_mirror(
    common: &Common,
    file: &FileSettings,
    args: &Serve,
    listen: &SocketAddr,
) -> Result<Mirror> {
    let listen = *listen;
    let data_dir = data_dir(common, file);
    let public_url = match args.public_url.clone() {
        Some(url) => Some(url),
        None => file
            .public_url
            .as_deref()
            .map(Url::parse)
            .transpose()
            .context("invalid public-url in cairn.toml")?,
    };
    let mut config = MirrorConfig::new(data_dir.clone());
    config.offline = args.offline || file.offline.unwrap_or(false);
    config.public_url = public_url.clone();
    if let Some(ttl) = args
        .metadata_ttl
        .as_deref()
        .or(file.metadata_ttl.as_deref())
    {
        config.metadata_ttl = parse_duration(ttl).context("metadata-ttl")?;
    }
    if let Some(ttl) = args
        .negative_ttl
        .as_deref()
        .or(file.negative_ttl.as_deref())
    {
        config.negative_ttl = parse_duration(ttl).context("negative-ttl")?;
    }
    if let Some(n) = args.upstream_concurrency.or(file.upstream_concurrency) {
        config.limits.concurrency = n;
    }
    if let Some(t) = args
        .upstream_timeout
        .as_deref()
        .or(file.upstream_timeout.as_deref())
    {
        config.limits.read_timeout = parse_duration(t).context("upstream-timeout")?;
    }
    if let Some(t) = args
        .upstream_deadline
        .as_deref()
        .or(file.upstream_deadline.as_deref())
    {
        config.limits.deadline = parse_duration(t).context("upstream-deadline")?;
        if config.limits.deadline.is_zero() {
            anyhow::bail!("upstream-deadline must be above 0");
        }
    }
    if let Some(size) = args
        .max_document_size
        .as_deref()
        .or(file.max_document_size.as_deref())
    {
        config.max_document_bytes = Some(parse_size(size).context("max-document-size")?);
    }
    if let Some(size) = args
        .max_artifact_size
        .as_deref()
        .or(file.max_artifact_size.as_deref())
    {
        config.max_artifact_bytes = parse_size(size).context("max-artifact-size")?;
    }

    let npm_configured = args
        .npm_upstream
        .as_deref()
        .or(file.npm_upstream.as_deref());
    let npm_upstream = discover::npm(npm_configured, &listen, public_url.as_ref()).await;
    let cargo_configured = args
        .cargo_upstream
        .as_deref()
        .or(file.cargo_upstream.as_deref());
    let cargo_upstream = discover::cargo(cargo_configured, &listen, public_url.as_ref()).await;
    let pypi_configured = args
        .pypi_upstream
        .as_deref()
        .or(file.pypi_upstream.as_deref());
    let pypi_upstream = discover::pypi(pypi_configured, &listen, public_url.as_ref()).await;
    for (name, found) in [
        ("npm", &npm_upstream),
        ("cargo", &cargo_upstream),
        ("pypi", &pypi_upstream),
    ] {
        match found {
            Ok(found @ discover::Found::Configured(_)) => {
                tracing::info!(ecosystem = name, upstream = %found.shown(), "upstream (configured)")
            }
            Ok(found @ discover::Found::Discovered { from, .. }) => {
                tracing::info!(ecosystem = name, upstream = %found.shown(), from, "upstream (discovered)")
            }
            Err(why) => tracing::warn!(ecosystem = name, "off: {why}"),
        }
    }
    let mut ecosystems = vec![
        EcosystemSetup {
            ecosystem: Arc::new(cairn_npm::Npm),
            upstream: npm_upstream.map(|f| f.url().clone()),
        },
        EcosystemSetup {
            ecosystem: Arc::new(cairn_cargo::Cargo),
            upstream: cargo_upstream.map(|f| f.url().clone()),
        },
        EcosystemSetup {
            ecosystem: Arc::new(cairn_pypi::Pypi),
            upstream: pypi_upstream.map(|f| f.url().clone()),
        },
    ];
    ecosystems.extend(apt_ecosystems(
        &args.apt,
        file,
        &listen,
        public_url.as_ref(),
    )?);

    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    tokio::task::spawn_blocking(move || Mirror::open(config, ecosystems))
        .await
        .context("opening the store")?
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))
}

/// Check once, in the background, that each upstream's host resolves and takes a TCP
/// connection, so that a mistyped or unreachable upstream shows in the log at start rather
/// than at the first client's miss. No HTTP request is sent: the upstream sees nothing. Behind
/// a proxy (`HTTP(S)_PROXY`) a direct connection proves nothing, so there is no check.
fn probe_upstreams(mirror: &Mirror) {
    let proxied = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if proxied {
        return;
    }
    for (ecosystem, upstream) in mirror.upstreams() {
        let Ok(shown) = upstream else { continue };
        let Ok(url) = Url::parse(&shown) else {
            continue;
        };
        let (Some(host), Some(port)) = (
            url.host_str().map(str::to_owned),
            url.port_or_known_default(),
        ) else {
            continue;
        };
        tokio::spawn(async move {
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let reason = match tokio::time::timeout(
                Duration::from_secs(15),
                tokio::net::TcpStream::connect((host.as_str(), port)),
            )
            .await
            {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => format!("cannot connect to {host}:{port}: {e}"),
                Err(_) => format!("no connection to {host}:{port} within 15 s"),
            };
            tracing::warn!(
                ecosystem,
                upstream = %shown,
                "upstream does not answer ({reason}); check the URL (flag, cairn.toml or the client setting it was found in), or use --offline"
            );
        });
    }
}

/// The HTTP connection cap and timeouts, with the descriptor limit raised as far as it goes.
fn connection_limits(file: &FileSettings, args: &Serve) -> Result<ConnectionLimits> {
    let mut limits = ConnectionLimits::default();
    let descriptors = descriptors::raise_limit();
    limits.max_connections =
        descriptors::pick_cap(args.max_connections.or(file.max_connections), descriptors);
    if let Some(t) = args
        .header_timeout
        .as_deref()
        .or(file.header_timeout.as_deref())
    {
        limits.header_timeout = parse_duration(t).context("header-timeout")?;
    }
    if let Some(t) = args
        .idle_timeout
        .as_deref()
        .or(file.idle_timeout.as_deref())
    {
        limits.idle_timeout = parse_duration(t).context("idle-timeout")?;
    }
    if limits.header_timeout.is_zero() || limits.idle_timeout.is_zero() {
        anyhow::bail!("header-timeout and idle-timeout must be at least 1s");
    }
    tracing::info!(
        max_connections = limits.max_connections,
        descriptors,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        "connection limits"
    );
    Ok(limits)
}

/// Serve `mirror` on `listener` until SIGINT or SIGTERM, then shut down in order: stop
/// accepting and drain HTTP, let downloads under way finish (10 s at most, then abandon them),
/// stop the peer (so no Bitswap or resolve stream reads the store any more), record access
/// times, then close the store (WAL checkpoint).
async fn run_server(
    mirror: Mirror,
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    node: Option<cairn_node::Node>,
) -> Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let flusher = {
        let (mirror, shutdown) = (mirror.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = mirror.flush_access_times().await {
                            tracing::warn!("cannot record access times: {e}");
                        }
                        match mirror.expire_negative().await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(entries = n, "expired cached not-founds"),
                            Err(e) => tracing::warn!("cannot expire cached not-founds: {e}"),
                        }
                    }
                }
            }
        })
    };

    let router = cairn_mirror::http::router(mirror.clone());
    let server = tokio::spawn(cairn_mirror::http::serve(
        listener,
        router,
        limits,
        shutdown.clone().cancelled_owned(),
    ));
    shutdown.cancelled().await;
    tracing::info!("shutting down: draining connections (10 s at most)");
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("server error: {e}"),
        Ok(Err(e)) => tracing::warn!("server task failed: {e}"),
        Err(_) => tracing::warn!("connections still open after 10 s; closing them"),
    }
    mirror.finish_downloads(Duration::from_secs(10)).await;
    if let Some(node) = node {
        node.shutdown();
    }
    let _ = flusher.await;
    mirror.close().await.context("closing the store")?;
    tracing::info!("stopped");
    Ok(())
}

/// One ecosystem per apt archive, with its keyring loaded. A configured archive whose keyring
/// cannot be read is an error; a discovered one is left off with a warning.
fn apt_ecosystems(
    apt: &AptArgs,
    file: &FileSettings,
    listen: &SocketAddr,
    public_url: Option<&Url>,
) -> Result<Vec<EcosystemSetup>> {
    let configured = settings::pick(&apt.apt_upstream, &file.apt_upstream);
    let keyrings = settings::pick(&apt.apt_keyring, &file.apt_keyring);
    let archives = apt::archives(
        &configured,
        &keyrings,
        std::path::Path::new(apt::APT_ETC),
        listen,
        public_url,
    )?;
    if archives.is_empty() {
        tracing::warn!(
            ecosystem = "apt",
            "off: no archives in apt's sources; set --apt-upstream NAME=URL"
        );
    }
    let mut out = Vec::new();
    for archive in archives {
        let paths: Vec<&std::path::Path> = archive.keyrings.iter().map(|p| p.as_path()).collect();
        let keyring = match cairn_apt::Keyring::load(&paths) {
            Ok(keyring) => keyring,
            Err(e) if configured.is_empty() => {
                tracing::warn!(archive = %archive.name, "off: {e}; set --apt-keyring {}=FILE", archive.name);
                continue;
            }
            Err(e) => anyhow::bail!("apt archive {}: {e}", archive.name),
        };
        let ecosystem =
            cairn_apt::Archive::new(&archive.name, keyring).map_err(anyhow::Error::msg)?;
        tracing::info!(ecosystem = %format!("apt/{}", archive.name), upstream = %cairn_mirror::upstream::redact(&archive.upstream), from = %archive.from, keyring = %ecosystem.keyring().source(), "upstream");
        out.push(EcosystemSetup {
            ecosystem: Arc::new(ecosystem),
            upstream: Ok(archive.upstream),
        });
    }
    Ok(out)
}

/// `cairn prefetch`: through the node at `url` (or `--listen`) when one answers, else through a
/// node run in this process for the purpose, with the same settings `serve` would use. Only
/// that second case opens a data directory.
async fn prefetch(
    common: &Common,
    file: &FileSettings,
    lockfiles: Vec<String>,
    url: Option<Url>,
    python: &pytarget::PythonTargetArgs,
    apt_sources: &[PathBuf],
) -> Result<()> {
    let items = lockfiles::read_all(&lockfiles)?;
    let target = pypi_target(&items, python)?;
    let apt = if items.iter().any(|i| matches!(i, lockfiles::Item::Apt(_))) {
        Some(prefetch::AptScope {
            suites: apt::suites(apt_sources, std::path::Path::new(apt::APT_ETC))?,
            architectures: apt::machine_architectures(),
        })
    } else {
        None
    };
    let listen = listen_addr(common, file)?;
    let base = match &url {
        Some(url) => url.clone(),
        None => Url::parse(&format!("http://{listen}/")).context("node URL")?,
    };
    let answers = tokio::time::timeout(
        Duration::from_secs(2),
        reqwest::get(base.join("healthz").context("node URL")?),
    )
    .await
    .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()));
    if answers {
        return prefetch::run(base, items, apt, None, target.as_ref()).await;
    }
    if url.is_some() {
        // A node named explicitly is the one to warm: another one's data directory is not.
        anyhow::bail!("no Cairn node answers at {base} (GET /healthz)");
    }
    // No node there: run one here, on a free port, for the prefetch. Its log is for trouble
    // (warnings and errors, unless CAIRN_LOG says otherwise), written around the progress bar.
    let log = barlog::BarLog::default();
    init_logging_to("text", "warn,libp2p_kad::behaviour=error", log.clone()).ok();
    let local: SocketAddr = "127.0.0.1:0".parse().context("address")?;
    let mirror = open_mirror(common, file, &Serve::default(), &listen).await?;
    let listener = tokio::net::TcpListener::bind(local)
        .await
        .context("cannot listen on 127.0.0.1")?;
    let bound = listener.local_addr().context("listen address")?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(cairn_mirror::http::serve(
        listener,
        cairn_mirror::http::router(mirror.clone()),
        connection_limits(file, &Serve::default())?,
        stop.clone().cancelled_owned(),
    ));
    let base = Url::parse(&format!("http://{bound}/")).context("node URL")?;
    let result = prefetch::run(base, items, apt, Some(&log), target.as_ref()).await;
    stop.cancel();
    let _ = server.await;
    mirror.finish_downloads(Duration::from_secs(10)).await;
    mirror.close().await.context("closing the store")?;
    result
}

/// The Python target for `items`, said on stderr; not probed when no item is PyPI's.
fn pypi_target(
    items: &[lockfiles::Item],
    python: &pytarget::PythonTargetArgs,
) -> Result<Option<cairn_pypi::tags::Target>> {
    if !items.iter().any(|i| matches!(i, lockfiles::Item::Pypi(_))) {
        return Ok(None);
    }
    let target = python.target()?;
    match &target {
        Some(t) => eprintln!("pypi: files for {}", cairn_pypi::select::describe(t)),
        None => eprintln!("pypi: every file the lockfiles name (--all-platforms)"),
    }
    Ok(target)
}

fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        token.cancel();
    });
}

async fn status(common: &Common, file: &FileSettings, json: bool) -> Result<()> {
    let data_dir = data_dir(common, file);
    let listen = listen_addr(common, file)?;
    let index_path = data_dir.join("index.sqlite3");
    if !index_path.exists() {
        anyhow::bail!(
            "no Cairn store in {} (run `cairn serve` first)",
            data_dir.display()
        );
    }
    let dir = data_dir.clone();
    let stats = tokio::task::spawn_blocking(move || {
        let store = cairn_mirror::store::Store::attach(&dir)?;
        let stats = store.index().stats()?;
        Ok::<_, cairn_mirror::error::StoreError>(stats)
    })
    .await
    .context("reading the index")?
    .context("reading the index")?;
    let running = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(listen),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    // As `serve` would find them without flags: environment, then `cairn.toml`, then the
    // clients' own settings.
    let setting = |env: &str, key: &Option<String>| std::env::var(env).ok().or(key.clone());
    let npm_setting = setting("CAIRN_NPM_UPSTREAM", &file.npm_upstream);
    let cargo_setting = setting("CAIRN_CARGO_UPSTREAM", &file.cargo_upstream);
    let pypi_setting = setting("CAIRN_PYPI_UPSTREAM", &file.pypi_upstream);
    let npm = discover::npm(npm_setting.as_deref(), &listen, None).await;
    let cargo = discover::cargo(cargo_setting.as_deref(), &listen, None).await;
    let pypi = discover::pypi(pypi_setting.as_deref(), &listen, None).await;
    let mut upstreams: Vec<serde_json::Value> = [
        ("npm", "--npm-upstream URL", npm),
        ("cargo", "--cargo-upstream URL", cargo),
        ("pypi", "--pypi-upstream URL", pypi),
    ]
    .into_iter()
    .map(|(name, flag, found)| match found {
        Ok(found) => serde_json::json!({
            "ecosystem": name,
            "url": found.shown(),
            "from": match &found {
                discover::Found::Configured(_) => "configured",
                discover::Found::Discovered { from, .. } => from,
            },
        }),
        Err(why) => serde_json::json!({ "ecosystem": name, "off": why, "enable": flag }),
    })
    .collect();
    let from_env = |env: &str| -> Vec<String> {
        std::env::var(env)
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let apt_configured = settings::pick(&from_env("CAIRN_APT_UPSTREAM"), &file.apt_upstream);
    let apt_keyrings = settings::pick(&from_env("CAIRN_APT_KEYRING"), &file.apt_keyring);
    match apt::archives(
        &apt_configured,
        &apt_keyrings,
        std::path::Path::new(apt::APT_ETC),
        &listen,
        None,
    ) {
        Ok(archives) if archives.is_empty() => upstreams.push(serde_json::json!({
            "ecosystem": "apt",
            "off": "no archives in apt's sources",
            "enable": "--apt-upstream NAME=URL",
        })),
        Ok(archives) => upstreams.extend(archives.into_iter().map(|a| {
            serde_json::json!({
                "ecosystem": format!("apt/{}", a.name),
                "url": cairn_mirror::upstream::redact(&a.upstream),
                "from": a.from,
            })
        })),
        Err(e) => upstreams.push(serde_json::json!({
            "ecosystem": "apt",
            "off": format!("{e:#}"),
            "enable": "--apt-upstream NAME=URL",
        })),
    }
    if json {
        let report = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "data_dir": data_dir,
            "listen": listen.to_string(),
            "running": running,
            "upstreams": upstreams,
            "stats": stats,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("status report")?
        );
        return Ok(());
    }
    let width = upstreams
        .iter()
        .filter_map(|u| u["ecosystem"].as_str())
        .map(|name| name.len() + 1)
        .chain([9])
        .max()
        .unwrap_or(9);
    println!("{:<width$} {}", "data dir:", data_dir.display());
    println!(
        "{:<width$} {} ({listen})",
        "server:",
        if running { "running" } else { "not running" }
    );
    for u in &upstreams {
        let name = format!("{}:", u["ecosystem"].as_str().unwrap_or("?"));
        match (u["url"].as_str(), u["off"].as_str()) {
            (Some(url), _) => println!(
                "{name:<width$} ← {url} (from {})",
                u["from"].as_str().unwrap_or("?")
            ),
            // The reason names the flag that turns the ecosystem on (also in the JSON's
            // `enable`).
            (None, Some(why)) if why.contains("--") => println!("{name:<width$} off: {why}"),
            (None, Some(why)) => println!(
                "{name:<width$} off: {why}; turn it on with {}",
                u["enable"].as_str().unwrap_or("its upstream flag")
            ),
            (None, None) => {}
        }
    }
    if stats.is_empty() {
        println!("{:<width$} empty", "cache:");
    }
    for s in stats {
        println!(
            "{:<width$} {} artifacts ({}), {} metadata documents",
            format!("{}:", s.ecosystem),
            s.artifacts,
            cairn_mirror::units::size(s.artifact_bytes),
            s.metadata_documents
        );
    }
    Ok(())
}
