//! `cairn serve`: open the mirror with every ecosystem of the table whose upstream is found,
//! start the peer beside it, serve HTTP until SIGINT or SIGTERM, then shut down in order.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_mirror::http::ConnectionLimits;
use cairn_mirror::{EcosystemSetup, Mirror, MirrorConfig};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::cli::{Common, Serve};
use crate::ecosystems;
use crate::settings::{self, FileSettings};

pub async fn run(common: &Common, file: &FileSettings, args: Serve) -> Result<()> {
    crate::logging::init(
        settings::value(args.log_format.as_deref(), file.log_format.as_deref()).unwrap_or("text"),
    )?;
    // Taken from the start: a stop that comes while the node starts is a clean one too.
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone()).context("cannot handle SIGINT and SIGTERM")?;
    let listen = settings::listen(common.listen.as_deref(), file)?;
    let limits = connection_limits(file, &args)?;
    let policy = crate::policy::build(&args.policy, file.policy.as_ref()).context("policy")?;
    let mirror = open_mirror(common, file, &args, &listen, Some(&args.p2p)).await?;
    tracing::info!(target: crate::logging::TARGET, policy = %crate::policy::describe(&policy), "supply-chain policy");
    mirror.set_policy(policy);
    crate::policy::spawn_reload(mirror.clone(), args.policy.clone(), common.config.clone());
    let data_dir = mirror.config().data_dir.clone();
    if !mirror.config().offline {
        probe_upstreams(&mirror);
    }
    if mirror.auth_required() {
        mirror
            .reload_tokens()
            .await
            .context("cannot read the access tokens")?;
        let secret = mirror
            .make_local_secret()
            .await
            .context("cannot write this machine's admin token")?;
        tracing::info!(target: crate::logging::TARGET, admin_token = %secret.display(), "access tokens required on every route but /healthz");
    } else if !listen.ip().is_loopback() {
        tracing::warn!(target: crate::logging::TARGET,
            address = %listen,
            "serving without access tokens on an address other hosts reach: anyone who reaches \
             it may use this node and its upstreams' credentials (serve with --auth required)"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr().context("listen address")?;
    tracing::info!(target: crate::logging::TARGET, address = %bound, data_dir = %data_dir.display(), offline = mirror.config().offline, "serving");
    // Tests and scripts read the bound address (`--listen 127.0.0.1:0`) from this line.
    let scheme = if limits.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("cairn listening on {scheme}://{bound}");
    run_server(mirror, listener, limits, shutdown).await
}

/// The mirror's settings: each flag (or its variable), else `cairn.toml`, else the default.
pub fn mirror_config(common: &Common, file: &FileSettings, args: &Serve) -> Result<MirrorConfig> {
    let mut config = MirrorConfig::new(settings::data_dir(common.data_dir.as_deref(), file));
    config.offline = settings::switch(args.offline, file.offline);
    config.auth_required = settings::auth(args.auth.as_deref(), file.auth.as_deref())?;
    config.admin_metrics = settings::switch(args.admin_metrics, file.admin_metrics);
    config.public_url = match args.public_url.clone() {
        Some(url) => Some(url),
        None => file
            .public_url
            .as_deref()
            .map(Url::parse)
            .transpose()
            .context("invalid public-url in cairn.toml")?,
    };
    let duration = |key, given: &Option<String>, file: &Option<String>| {
        settings::duration(key, given.as_deref(), file.as_deref())
    };
    let size = |key, given: &Option<String>, file: &Option<String>| {
        settings::size(key, given.as_deref(), file.as_deref())
    };
    if let Some(ttl) = duration("metadata-ttl", &args.metadata_ttl, &file.metadata_ttl)? {
        config.metadata_ttl = ttl;
    }
    if let Some(ttl) = duration("negative-ttl", &args.negative_ttl, &file.negative_ttl)? {
        config.negative_ttl = ttl;
    }
    if let Some(n) = settings::value(args.upstream_concurrency, file.upstream_concurrency) {
        config.limits.concurrency = n;
    }
    if let Some(t) = duration(
        "upstream-timeout",
        &args.upstream_timeout,
        &file.upstream_timeout,
    )? {
        config.limits.read_timeout = t;
    }
    if let Some(t) = duration(
        "upstream-deadline",
        &args.upstream_deadline,
        &file.upstream_deadline,
    )? {
        config.limits.deadline = t;
        if config.limits.deadline.is_zero() {
            anyhow::bail!("upstream-deadline must be above 0");
        }
    }
    if let Some(bytes) = size("memory-budget", &args.memory_budget, &file.memory_budget)? {
        config.set_memory_budget(usize::try_from(bytes).unwrap_or(usize::MAX));
    }
    if let Some(bytes) = size(
        "max-document-size",
        &args.max_document_size,
        &file.max_document_size,
    )? {
        config.max_document_bytes = Some(bytes);
    }
    if let Some(bytes) = size(
        "max-artifact-size",
        &args.max_artifact_size,
        &file.max_artifact_size,
    )? {
        config.max_artifact_bytes = bytes;
    }
    if let Some(bytes) = size("max-size", &args.max_size, &file.max_size)? {
        if bytes == 0 {
            anyhow::bail!("max-size must be above 0");
        }
        config.max_store_bytes = Some(bytes);
    }
    for (ecosystem, key) in settings::ECOSYSTEM_LIMITS {
        // `parse_size` refuses 0 and garbage; the error names the setting.
        let limit = settings::size(
            key,
            args.max_size_of(ecosystem),
            file.max_size_of(ecosystem),
        )?;
        if let Some(bytes) = limit {
            config
                .max_ecosystem_bytes
                .insert(ecosystem.to_owned(), bytes);
        }
    }
    if let Some(text) = settings::value(args.min_free.as_deref(), file.min_free.as_deref()) {
        config.min_free = settings::parse_min_free(text).context("min-free")?;
    }
    Ok(config)
}

/// The mirror `serve` runs, with every ecosystem whose upstream was found (flags, `cairn.toml`,
/// else the clients' own settings). `listen` is where clients will reach it (to refuse upstreams
/// that point back at it).
/// The mirror `serve` runs: its configuration and ecosystems from the flags and `cairn.toml`,
/// the store opened, then the node started over the store (unless `p2p` is `None` or turns it
/// off), then the engine built with the node as its peers.
pub async fn open_mirror(
    common: &Common,
    file: &FileSettings,
    args: &Serve,
    listen: &SocketAddr,
    p2p: Option<&crate::p2p::P2pArgs>,
) -> Result<Mirror> {
    let config = mirror_config(common, file, args)?;
    let public_url = config.public_url.clone();
    let chosen = ecosystems::Chosen {
        upstream: &|key| settings::value(args.upstream(key), file.upstream(key)).map(str::to_owned),
        routes: ecosystems::RouteSettings {
            npm_scope: settings::pick(&args.npm_scope, &file.npm_scope),
            pypi_index: settings::pick(&args.pypi_index, &file.pypi_index),
            pypi_route: settings::pick(&args.pypi_route, &file.pypi_route),
        },
        cargo_registry: settings::pick(&args.cargo_registry, &file.cargo_registry),
        apt_upstream: settings::pick(&args.apt.apt_upstream, &file.apt_upstream),
        apt_keyring: settings::pick(&args.apt.apt_keyring, &file.apt_keyring),
    };
    let setups = ecosystems::setups(&chosen, listen, public_url.as_ref()).await?;
    build_mirror(config, setups, file, p2p).await
}

/// Open the store under `config.data_dir`, start the node over it (unless `p2p` is `None` or
/// turns it off), then build the engine with the node as its peers and its metrics beside the
/// engine's.
pub async fn build_mirror(
    config: MirrorConfig,
    setups: Vec<EcosystemSetup>,
    file: &FileSettings,
    p2p: Option<&crate::p2p::P2pArgs>,
) -> Result<Mirror> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let in_dir = || format!("cannot open the store in {}", data_dir.display());
    let store = {
        let data_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || cairn_mirror::store::Store::open(&data_dir))
            .await
            .context("opening the store")?
            .with_context(in_dir)?
    };
    // Registered with p2p off too, so that `/metrics` shows the same families either way.
    let metrics = cairn_mirror::metrics::Metrics::default();
    let node_metrics = metrics.register(cairn_node::NodeMetrics::register);
    crate::memory::export(&metrics);
    let peers = match p2p {
        Some(args) => crate::p2p::start(args, file, &store, node_metrics, &data_dir).await?,
        None => None,
    };
    let mut builder = Mirror::builder(config, setups)
        .store(store)
        .metrics(metrics);
    if let Some(peers) = peers {
        builder = builder.peers(std::sync::Arc::new(peers));
    }
    tokio::task::spawn_blocking(move || builder.build())
        .await
        .context("opening the store")?
        .with_context(in_dir)
}

/// The HTTP connection cap and timeouts, with the descriptor limit raised as far as it goes.
pub fn connection_limits(file: &FileSettings, args: &Serve) -> Result<ConnectionLimits> {
    let mut limits = ConnectionLimits::default();
    let descriptors = crate::descriptors::raise_limit();
    limits.max_connections = crate::descriptors::pick_cap(
        settings::value(args.max_connections, file.max_connections),
        descriptors,
    );
    let duration = |key, given: &Option<String>, file: &Option<String>| {
        settings::duration(key, given.as_deref(), file.as_deref())
    };
    if let Some(t) = duration("header-timeout", &args.header_timeout, &file.header_timeout)? {
        limits.header_timeout = t;
    }
    if let Some(t) = duration("idle-timeout", &args.idle_timeout, &file.idle_timeout)? {
        limits.idle_timeout = t;
    }
    if limits.header_timeout.is_zero() || limits.idle_timeout.is_zero() {
        anyhow::bail!("header-timeout and idle-timeout must be at least 1s");
    }
    limits.tls = match (
        settings::value(args.tls_cert.as_ref(), file.tls_cert.as_ref()),
        settings::value(args.tls_key.as_ref(), file.tls_key.as_ref()),
    ) {
        (Some(cert), Some(key)) => {
            let files = cairn_mirror::http::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            // Loaded once here, so that a bad file stops `serve` with its name.
            files.load()?;
            Some(files)
        }
        (None, None) => None,
        _ => anyhow::bail!("tls-cert and tls-key go together: give both, or neither"),
    };
    tracing::info!(target: crate::logging::TARGET,
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
/// Serve until SIGINT or SIGTERM, then stop in order (see `cairn_mirror::serving`).
async fn run_server(
    mirror: Mirror,
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> Result<()> {
    let serving = mirror.serve(listener, limits);
    shutdown.cancelled().await;
    tracing::info!(target: crate::logging::TARGET, "shutting down: draining connections, then downloads ({GRACE:?} each at most)");
    serving.shutdown(GRACE).await.context("closing the store")?;
    tracing::info!(target: crate::logging::TARGET, "stopped");
    Ok(())
}

/// How long shutdown waits for open connections, then for downloads under way.
const GRACE: Duration = Duration::from_secs(10);

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
        let ecosystem = ecosystem.to_owned();
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
            tracing::warn!(target: crate::logging::TARGET,
                ecosystem,
                upstream = %shown,
                "upstream does not answer ({reason}); check the URL (flag, cairn.toml or the client setting it was found in), or use --offline"
            );
        });
    }
}

/// Cancel `token` on the first SIGINT or SIGTERM. The handlers are in place when this returns
/// (a signal that comes before the task first runs is not lost).
fn spawn_signal_handler(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        token.cancel();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    /// `cairn serve ARGS…`'s flags, as clap parses them.
    fn serve_args(args: &[&str]) -> (Common, Serve) {
        let cli = Cli::try_parse_from(["cairn", "serve"].iter().chain(args)).expect("flags");
        match cli.command {
            Command::Serve(serve) => (cli.common, *serve),
            _ => unreachable!("parsed `serve`"),
        }
    }

    #[test]
    fn serve_flags_beat_cairn_toml_which_beats_the_defaults() {
        let file: FileSettings = toml::from_str(
            "data-dir = \"/from/file\"\nmetadata-ttl = \"2m\"\nnegative-ttl = \"3m\"\n\
             offline = true\nmax-artifact-size = \"1G\"\nupstream-concurrency = 7\n",
        )
        .expect("cairn.toml");
        let (common, args) = serve_args(&[
            "--data-dir",
            "/from/flag",
            "--metadata-ttl",
            "10s",
            "--max-artifact-size",
            "2G",
        ]);
        let config = mirror_config(&common, &file, &args).expect("config");
        assert_eq!(config.data_dir, std::path::Path::new("/from/flag"));
        assert_eq!(config.metadata_ttl, Duration::from_secs(10));
        assert_eq!(config.max_artifact_bytes, 2 << 30);
        // No flag: the file's.
        assert_eq!(config.negative_ttl, Duration::from_secs(180));
        assert!(config.offline);
        assert_eq!(config.limits.concurrency, 7);
        // Each ecosystem's upstream flag is found by its table key.
        let (_, args) = serve_args(&["--cargo-upstream", "http://flag.invalid/"]);
        assert_eq!(
            args.upstream("cargo-upstream"),
            Some("http://flag.invalid/")
        );
        assert_eq!(args.upstream("npm-upstream"), None);
        for (_, registry) in ecosystems::registries() {
            let (_, args) = serve_args(&[&format!("--{}", registry.key), "http://x.invalid/"]);
            assert_eq!(args.upstream(registry.key), Some("http://x.invalid/"));
        }
        // Neither: the defaults.
        let (common, args) = serve_args(&[]);
        let defaults = mirror_config(&common, &FileSettings::default(), &args).expect("defaults");
        let built_in = MirrorConfig::new(defaults.data_dir.clone());
        assert_eq!(defaults.metadata_ttl, built_in.metadata_ttl);
        assert_eq!(defaults.max_document_bytes, None);
        assert!(!defaults.offline);
    }

    #[test]
    fn a_memory_budget_is_split_between_the_caches_and_layers_like_the_others() {
        let (common, args) = serve_args(&[]);
        let defaults = mirror_config(&common, &FileSettings::default(), &args).expect("defaults");
        let built_in = MirrorConfig::new(defaults.data_dir.clone());
        assert_eq!(
            (defaults.render_cache_bytes, defaults.content_cache_bytes),
            (built_in.render_cache_bytes, built_in.content_cache_bytes)
        );
        let file: FileSettings = toml::from_str("memory-budget = \"64M\"\n").expect("cairn.toml");
        let from_file = mirror_config(&common, &file, &args).expect("from the file");
        assert_eq!(from_file.render_cache_bytes, 48 << 20);
        assert_eq!(from_file.content_cache_bytes, 16 << 20);
        let (common, args) = serve_args(&["--memory-budget", "16M"]);
        let given = mirror_config(&common, &file, &args).expect("the flag wins");
        assert_eq!(
            given.render_cache_bytes + given.content_cache_bytes,
            16 << 20
        );
        let (common, args) = serve_args(&["--memory-budget", "lots"]);
        let bad = mirror_config(&common, &file, &args).expect_err("not a size");
        assert!(format!("{bad:#}").contains("memory-budget"), "{bad:#}");
    }

    #[test]
    fn ecosystem_size_limits_layer_like_the_others_and_only_given_ones_are_set() {
        let file: FileSettings =
            toml::from_str("max-size-npm = \"1G\"\nmax-size-apt = \"3G\"\nmax-size = \"2G\"\n")
                .expect("cairn.toml");
        let (common, args) = serve_args(&["--max-size-npm", "20M", "--max-size-pypi", "5G"]);
        let config = mirror_config(&common, &file, &args).expect("config");
        let limits: Vec<(&str, u64)> = config
            .max_ecosystem_bytes
            .iter()
            .map(|(e, b)| (e.as_str(), *b))
            .collect();
        // The flag beats the file; the file's apt limit stays; cargo has none.
        assert_eq!(
            limits,
            [("apt", 3 << 30), ("npm", 20 << 20), ("pypi", 5 << 30)]
        );
        // Above the global limit is allowed: it just never binds.
        assert_eq!(config.max_store_bytes, Some(2 << 30));
        for (ecosystem, key) in settings::ECOSYSTEM_LIMITS {
            let (_, args) = serve_args(&[&format!("--{key}"), "7M"]);
            assert_eq!(args.max_size_of(ecosystem), Some("7M"), "{key}");
            let file: FileSettings = toml::from_str(&format!("{key} = \"7M\"")).expect("toml");
            assert_eq!(file.max_size_of(ecosystem), Some("7M"), "{key}");
        }
    }

    #[test]
    fn bad_ecosystem_size_limits_name_their_setting() {
        for bad in [
            "0",
            "0G",
            "-1G",
            "garbage",
            "20 gigs",
            "99999999999999T",
            "1G; rm -rf /",
            "",
        ] {
            let (common, args) = serve_args(&[&format!("--max-size-cargo={bad}")]);
            let e = mirror_config(&common, &FileSettings::default(), &args).expect_err(bad);
            assert_eq!(e.to_string(), "max-size-cargo", "{bad:?}");
            assert!(format!("{e:#}").contains("invalid size"), "{bad:?}: {e:#}");
            let file: FileSettings =
                toml::from_str(&format!("max-size-apt = {bad:?}")).expect("toml");
            let (common, args) = serve_args(&[]);
            let e = mirror_config(&common, &file, &args).expect_err(bad);
            assert_eq!(e.to_string(), "max-size-apt", "{bad:?}");
        }
        // An ecosystem with no limit setting is an unknown key, named.
        let e = toml::from_str::<FileSettings>("max-size-foo = \"1G\"").expect_err("unknown");
        assert!(e.to_string().contains("max-size-foo"), "{e}");
        // A limit that is not a string is refused too.
        assert!(toml::from_str::<FileSettings>("max-size-npm = 0").is_err());
    }

    #[test]
    fn bad_serve_settings_name_their_key() {
        let (common, args) = serve_args(&["--upstream-deadline", "0"]);
        let e = mirror_config(&common, &FileSettings::default(), &args).expect_err("zero");
        assert_eq!(e.to_string(), "upstream-deadline must be above 0");
        let file: FileSettings = toml::from_str("negative-ttl = \"5 minutes\"").expect("toml");
        let (common, args) = serve_args(&[]);
        let e = mirror_config(&common, &file, &args).expect_err("bad duration");
        assert_eq!(e.to_string(), "negative-ttl");
        let file: FileSettings = toml::from_str("idle-timeout = \"0\"").expect("toml");
        let e = connection_limits(&file, &args).expect_err("zero timeout");
        assert!(e.to_string().contains("idle-timeout"), "{e}");
    }
}
