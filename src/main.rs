//! `cairn`: the command line. Flags → settings → open the mirror with its adapters → serve.
//! Errors are one line on stderr and a non-zero exit.

mod apt;
mod bundles;
mod descriptors;
mod discover;
mod lockfiles;
mod p2p;
mod prefetch;
mod settings;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_mirror::server::ConnectionLimits;
use cairn_mirror::{EcosystemSetup, Mirror, MirrorConfig};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::settings::{FileSettings, parse_duration, parse_size};

const DEFAULT_LISTEN: &str = "127.0.0.1:7777";

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
    about = "Content-addressed, peer-to-peer package mirror"
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
    #[arg(long, global = true, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Config file [default: $XDG_CONFIG_HOME/cairn/cairn.toml]
    #[arg(long, global = true, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:7777]
    #[arg(long, global = true, env = "CAIRN_LISTEN")]
    listen: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy
    Serve(Box<Serve>),
    /// Print (or apply) a client's configuration for this node
    Setup {
        client: setup::Client,
        /// The node's URL for this client [default: from --listen]
        #[arg(long)]
        url: Option<Url>,
        /// Run the client's own config commands instead of printing them
        #[arg(long)]
        apply: bool,
    },
    /// What the node holds
    Status {
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
    },
    /// Read a CAR bundle into the store: all of it, verified, or nothing
    Import {
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
        #[arg(value_name = "CID")]
        root: Option<cid::Cid>,
    },
    /// Print this node's peer ID (its key is created in the data dir if there is none)
    Id,
    /// The peers the running node is connected to, with their round-trip times
    Peers {
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
    #[arg(long, env = "CAIRN_NPM_UPSTREAM")]
    npm_upstream: Option<String>,
    /// cargo upstream sparse index [default: from cargo's config or registry cache]
    #[arg(long, env = "CAIRN_CARGO_UPSTREAM")]
    cargo_upstream: Option<String>,
    /// PyPI upstream simple index [default: pip's index-url, else pip's default]
    #[arg(long, env = "CAIRN_PYPI_UPSTREAM")]
    pypi_upstream: Option<String>,
    #[command(flatten)]
    apt: AptArgs,
    /// The URL clients reach this node at [default: each request's Host]
    #[arg(long, env = "CAIRN_PUBLIC_URL")]
    public_url: Option<Url>,
    /// How long metadata is served before upstream is asked again (e.g. 300s, 5m)
    #[arg(long, env = "CAIRN_METADATA_TTL")]
    metadata_ttl: Option<String>,
    /// How long an upstream "not found" is remembered before upstream is asked again
    /// [default: 1m]
    #[arg(long, env = "CAIRN_NEGATIVE_TTL")]
    negative_ttl: Option<String>,
    /// Metadata requests, and apart from them artifact downloads, in flight to one upstream at
    /// most [default: 64 each]
    #[arg(long, env = "CAIRN_UPSTREAM_CONCURRENCY")]
    upstream_concurrency: Option<usize>,
    /// Longest wait for an upstream's headers or next bytes; an artifact body must also bring
    /// 16 KiB/s over each such window [default: 30s]
    #[arg(long, env = "CAIRN_UPSTREAM_TIMEOUT")]
    upstream_timeout: Option<String>,
    /// Longest a whole metadata exchange with upstream may take, and an artifact download may
    /// wait for a slot [default: 2m]
    #[arg(long, env = "CAIRN_UPSTREAM_DEADLINE")]
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
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Longest time a client may take to send a request's headers (also the keep-alive
    /// timeout) [default: 30s]
    #[arg(long, env = "CAIRN_HEADER_TIMEOUT")]
    header_timeout: Option<String>,
    /// Close a connection that has moved no bytes for this long with no request being handled
    /// [default: 60s]
    #[arg(long, env = "CAIRN_IDLE_TIMEOUT")]
    idle_timeout: Option<String>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "CAIRN_LOG_FORMAT")]
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
    text.parse()
        .with_context(|| format!("invalid listen address {text:?} (expected e.g. 127.0.0.1:7777)"))
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
            apt_sources,
        } => prefetch(&cli.common, &file, lockfiles, url, &apt_sources).await,
        Command::Export {
            lockfiles,
            all,
            snapshot,
            output,
        } => {
            let selection = match (all, snapshot) {
                (true, _) => bundles::Selection::All,
                (_, Some(root)) => bundles::Selection::Snapshot(root),
                _ if lockfiles.is_empty() => {
                    anyhow::bail!("say what to export: --lockfile FILE…, --all or --snapshot CID")
                }
                _ => bundles::Selection::Lockfiles(lockfiles),
            };
            let data_dir = data_dir(&cli.common, &file);
            tokio::task::spawn_blocking(move || bundles::export(&data_dir, selection, &output))
                .await
                .context("export")?
        }
        Command::Import { file: car, apt } => {
            let data_dir = data_dir(&cli.common, &file);
            let listen = listen_addr(&cli.common, &file)?;
            // The adapters check what the bundle holds as they check what upstream sends.
            let mut ecosystems: Vec<Arc<dyn cairn_mirror::ecosystem::Ecosystem>> = vec![
                Arc::new(cairn_npm::Npm),
                Arc::new(cairn_cargo::Cargo),
                Arc::new(cairn_pypi::Pypi),
            ];
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
            println!("{}", p2p::peer_id(&data_dir)?);
            Ok(())
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

fn init_logging(format: &str) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CAIRN_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
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
    let node = p2p::start(&args.p2p, file, &mirror).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr().context("listen address")?;
    tracing::info!(address = %bound, data_dir = %data_dir.display(), offline = mirror.config().offline, "serving");
    // Tests and scripts read the bound address (`--listen 127.0.0.1:0`) from this line.
    println!("cairn listening on http://{bound}");
    let result = run_server(mirror, listener, limits).await;
    if let Some(node) = node {
        node.shutdown();
    }
    result
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

/// Serve `mirror` on `listener` until SIGINT or SIGTERM, then shut down in order.
async fn run_server(
    mirror: Mirror,
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
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

    let router = cairn_mirror::server::router(mirror.clone());
    let server = tokio::spawn(cairn_mirror::server::serve(
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
    apt_sources: &[PathBuf],
) -> Result<()> {
    let items = lockfiles::read_all(&lockfiles)?;
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
        return prefetch::run(base, items, apt).await;
    }
    if url.is_some() {
        // A node named explicitly is the one to warm: another one's data directory is not.
        anyhow::bail!("no Cairn node answers at {base} (GET /healthz)");
    }
    // No node there: run one here, on a free port, for the prefetch.
    init_logging("text").ok();
    let local: SocketAddr = "127.0.0.1:0".parse().context("address")?;
    let mirror = open_mirror(common, file, &Serve::default(), &listen).await?;
    let listener = tokio::net::TcpListener::bind(local)
        .await
        .context("cannot listen on 127.0.0.1")?;
    let bound = listener.local_addr().context("listen address")?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(cairn_mirror::server::serve(
        listener,
        cairn_mirror::server::router(mirror.clone()),
        connection_limits(file, &Serve::default())?,
        stop.clone().cancelled_owned(),
    ));
    let base = Url::parse(&format!("http://{bound}/")).context("node URL")?;
    let result = prefetch::run(base, items, apt).await;
    stop.cancel();
    let _ = server.await;
    mirror.close().await.context("closing the store")?;
    result
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
    let stats = tokio::task::spawn_blocking(move || {
        cairn_mirror::index::Index::open(&index_path).and_then(|i| i.stats())
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
    let npm = discover::npm(file.npm_upstream.as_deref(), &listen, None).await;
    let cargo = discover::cargo(file.cargo_upstream.as_deref(), &listen, None).await;
    let pypi = discover::pypi(file.pypi_upstream.as_deref(), &listen, None).await;
    if json {
        let report = serde_json::json!({
            "data_dir": data_dir,
            "listen": listen.to_string(),
            "running": running,
            "upstreams": {
                "npm": npm.as_ref().map(|f| f.shown()).map_err(Clone::clone),
                "cargo": cargo.as_ref().map(|f| f.shown()).map_err(Clone::clone),
                "pypi": pypi.as_ref().map(|f| f.shown()).map_err(Clone::clone),
            },
            "stats": stats,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("status report")?
        );
        return Ok(());
    }
    println!("data dir: {}", data_dir.display());
    println!(
        "server:   {} ({listen})",
        if running { "running" } else { "not running" }
    );
    for (name, found) in [("npm", npm), ("cargo", cargo), ("pypi", pypi)] {
        match found {
            Ok(found) => println!("{:<9} ← {}", format!("{name}:"), found.shown()),
            Err(why) => println!("{:<9} off: {why}", format!("{name}:")),
        }
    }
    if stats.is_empty() {
        println!("cache:    empty");
    }
    for s in stats {
        println!(
            "{:<9} {} artifacts ({:.1} MiB), {} metadata documents",
            format!("{}:", s.ecosystem),
            s.artifacts,
            s.artifact_bytes as f64 / (1 << 20) as f64,
            s.metadata_documents
        );
    }
    Ok(())
}
