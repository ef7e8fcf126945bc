//! The peer side of `cairn serve`: flags and `cairn.toml` keys into a [`NodeConfig`], the node
//! started over the store (before the engine, which takes it as its peers), and `cairn id` /
//! `cairn peers`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_mirror::store::Store;
use cairn_node::{NodeConfig, NodeError, NodeMetrics, Peers};
use clap::Args;
use libp2p::{Multiaddr, PeerId};
use url::Url;

use crate::settings::{self, FileSettings};

/// Where the node's libp2p key lives, under the data dir.
const IDENTITY_FILE: &str = "node.key";

/// Listened on when neither `--p2p-listen` nor `p2p-listen` says otherwise.
const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/7778", "/ip4/0.0.0.0/udp/7778/quic-v1"];

#[derive(Args, Default, Clone)]
pub struct P2pArgs {
    /// libp2p listen address (repeatable) [default: TCP and QUIC on port 7778, every interface]
    #[arg(
        long = "p2p-listen",
        env = "CAIRN_P2P_LISTEN",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    p2p_listen: Vec<String>,
    /// A peer to join through, ending in /p2p/PEERID (repeatable)
    #[arg(
        long,
        env = "CAIRN_BOOTSTRAP",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    bootstrap: Vec<String>,
    /// A private swarm: only nodes with this IPFS swarm.key connect (turns QUIC off)
    #[arg(long, env = "CAIRN_SWARM_KEY", value_name = "FILE")]
    swarm_key: Option<PathBuf>,
    /// Connect only to these peers (repeatable)
    #[arg(
        long,
        env = "CAIRN_ALLOW_PEER",
        value_name = "PEERID",
        value_delimiter = ','
    )]
    allow_peer: Vec<String>,
    /// Do not discover peers on the local network
    #[arg(long, env = "CAIRN_NO_MDNS")]
    no_mdns: bool,
    /// No peer at all: serve from the cache and upstream only
    #[arg(long, env = "CAIRN_NO_P2P")]
    no_p2p: bool,
    /// Take metadata from any peer when upstream is unreachable, even without a swarm key
    #[arg(long, env = "CAIRN_TRUST_PEER_METADATA")]
    trust_peer_metadata: bool,
}

/// The flags (else `cairn.toml`) as a node configuration; `None` with `--no-p2p`.
fn config(args: &P2pArgs, file: &FileSettings, data_dir: &Path) -> Result<Option<NodeConfig>> {
    if settings::switch(args.no_p2p, file.no_p2p) {
        return Ok(None);
    }
    let mut listen = settings::pick(&args.p2p_listen, &file.p2p_listen);
    if listen.is_empty() {
        listen = DEFAULT_LISTEN.iter().map(|a| (*a).to_owned()).collect();
    }
    let multiaddrs = |what: &str, list: Vec<String>| -> Result<Vec<Multiaddr>> {
        list.iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .with_context(|| format!("invalid {what} address {a:?} (expected a multiaddr such as /ip4/10.0.0.5/tcp/7778)"))
            })
            .collect()
    };
    let allow_peers = settings::pick(&args.allow_peer, &file.allow_peer)
        .iter()
        .map(|p| {
            p.parse::<PeerId>()
                .with_context(|| format!("invalid --allow-peer {p:?}: not a peer ID"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(NodeConfig {
        listen: multiaddrs("--p2p-listen", listen)?,
        bootstrap: multiaddrs(
            "--bootstrap",
            settings::pick(&args.bootstrap, &file.bootstrap),
        )?,
        swarm_key: settings::value(args.swarm_key.clone(), file.swarm_key.clone()),
        allow_peers,
        mdns: !settings::switch(args.no_mdns, file.no_mdns),
        identity_path: Some(data_dir.join(IDENTITY_FILE)),
        ..NodeConfig::default()
    }))
}

/// Start the node over `store` unless `--no-p2p`: it serves the store's holdings to peers and
/// announces each artifact the store comes to hold (downloads, imports by any process), and
/// counts into `metrics`. The result is the engine's peers.
pub async fn start(
    args: &P2pArgs,
    file: &FileSettings,
    store: &Store,
    metrics: NodeMetrics,
    data_dir: &Path,
) -> Result<Option<Peers>> {
    let Some(config) = config(args, file, data_dir)? else {
        tracing::info!("p2p off (--no-p2p)");
        return Ok(None);
    };
    let policy = cairn_node::PeerPolicy {
        trust_metadata: settings::switch(args.trust_peer_metadata, file.trust_peer_metadata),
    };
    let private = config.swarm_key.is_some();
    // An open swarm is never shown what came from an upstream that was sent credentials.
    let content = if private {
        store.holdings()
    } else {
        store.open_holdings()
    };
    let start = |config| Peers::start(config, content.clone(), policy, metrics.clone());
    let peers = match start(config.clone()).await {
        Err(NodeError::Listen { address, reason }) if !listen_given(args, file) => {
            // Another node (or program) has the default port: take any free one.
            tracing::warn!(%address, "cannot listen on the default p2p port ({reason}); using a free port");
            let config = NodeConfig {
                listen: DEFAULT_LISTEN
                    .iter()
                    .filter_map(|a| a.replace("7778", "0").parse().ok())
                    .collect(),
                ..config
            };
            start(config).await
        }
        other => other,
    }
    .context("cannot start the p2p node")?;
    let node = peers.node();
    let addresses = node.p2p_addrs().await.unwrap_or_default();
    tracing::info!(peer_id = %node.peer_id(), private, addresses = ?addresses, "p2p node started");
    Ok(Some(peers))
}

/// Whether the operator chose the listen addresses (then failing to listen is an error).
fn listen_given(args: &P2pArgs, file: &FileSettings) -> bool {
    !args.p2p_listen.is_empty() || file.p2p_listen.as_ref().is_some_and(|l| !l.is_empty())
}

/// The peer ID of the node whose data dir this is (its key is created if there is none).
pub fn peer_id(data_dir: &Path) -> Result<PeerId> {
    let path = data_dir.join(IDENTITY_FILE);
    cairn_node::swarm::identity(&path).with_context(|| format!("node identity {}", path.display()))
}

/// `cairn id`: the peer ID, then the addresses another node can give `--bootstrap`, one a
/// line. The node running at `node_url` (when it is this one) knows its real ports; otherwise
/// the configured listen addresses are printed, a wildcard spelled out per interface.
pub async fn print_id(data_dir: &Path, node_url: &Url, file: &FileSettings) -> Result<()> {
    let id = peer_id(data_dir)?;
    println!("{id}");
    if let Some(addresses) = running_addresses(node_url, data_dir, &id).await {
        for address in addresses {
            println!("{address}");
        }
        return Ok(());
    }
    let mut listen = file.p2p_listen.clone().unwrap_or_default();
    if listen.is_empty() {
        listen = DEFAULT_LISTEN.iter().map(|a| (*a).to_owned()).collect();
    }
    let hosts = interface_addresses();
    let mut any_free_port = false;
    for text in listen {
        let address: Multiaddr = text
            .parse()
            .with_context(|| format!("invalid p2p-listen address {text:?} in cairn.toml"))?;
        any_free_port |= address.iter().any(|p| {
            matches!(
                p,
                libp2p::multiaddr::Protocol::Tcp(0) | libp2p::multiaddr::Protocol::Udp(0)
            )
        });
        for expanded in spell_out(&address, &hosts) {
            println!("{expanded}/p2p/{id}");
        }
    }
    eprintln!(
        "cairn: no node with this peer ID answers at {node_url}; these are the addresses \
         `cairn serve` listens on{}",
        if any_free_port {
            " (port 0 is a free port chosen at start: run `cairn id` while it serves)"
        } else {
            ""
        }
    );
    Ok(())
}

/// The listen addresses of the node answering at `url`, if it is the node `id`: those on other
/// hosts' reach first, loopback last.
async fn running_addresses(url: &Url, data_dir: &Path, id: &PeerId) -> Option<Vec<String>> {
    let report = peers_report(url, data_dir, Duration::from_secs(2))
        .await
        .ok()?;
    if report["peer_id"].as_str() != Some(id.to_string().as_str()) {
        return None;
    }
    let mut addresses: Vec<String> = report["listen"]
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    addresses.sort_by_key(|a| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/"));
    Some(addresses)
}

/// This host's IPv4 and IPv6 addresses, loopback last.
fn interface_addresses() -> Vec<std::net::IpAddr> {
    let mut found: Vec<(bool, std::net::IpAddr)> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_link_local())
        .map(|i| (i.is_loopback(), i.ip()))
        .collect();
    found.sort();
    found.dedup();
    found.into_iter().map(|(_, ip)| ip).collect()
}

/// `address` with a wildcard host (`0.0.0.0`, `::`) replaced by each of `hosts` of its family.
fn spell_out(address: &Multiaddr, hosts: &[std::net::IpAddr]) -> Vec<Multiaddr> {
    use libp2p::multiaddr::Protocol;
    let mut parts = address.iter();
    let replace = match parts.next() {
        Some(Protocol::Ip4(ip)) if ip.is_unspecified() => Some(true),
        Some(Protocol::Ip6(ip)) if ip.is_unspecified() => Some(false),
        _ => None,
    };
    let Some(v4) = replace else {
        return vec![address.clone()];
    };
    hosts
        .iter()
        .filter(|ip| ip.is_ipv4() == v4)
        .map(|ip| {
            let mut spelled = Multiaddr::empty();
            spelled.push(match ip {
                std::net::IpAddr::V4(ip) => Protocol::Ip4(*ip),
                std::net::IpAddr::V6(ip) => Protocol::Ip6(*ip),
            });
            for part in address.iter().skip(1) {
                spelled.push(part);
            }
            spelled
        })
        .collect()
}

/// `GET /api/v1/peers` of the node at `url`, within `timeout`.
async fn peers_report(url: &Url, data_dir: &Path, timeout: Duration) -> Result<serde_json::Value> {
    let endpoint = url.join("api/v1/peers").context("node URL")?;
    let response = reqwest::Client::new()
        .get(endpoint.clone())
        .headers(crate::commands::local_node::token_headers(data_dir)?)
        .timeout(timeout)
        .send()
        .await
        .with_context(|| format!("no Cairn node answers at {url} (is `cairn serve` running?)"))?;
    if !response.status().is_success() {
        anyhow::bail!("{endpoint} answered {}", response.status());
    }
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading {endpoint}"))?;
    serde_json::from_slice(&body).with_context(|| format!("{endpoint} did not answer JSON"))
}

/// `cairn peers`: ask the running node at `url`.
pub async fn print_peers(url: &Url, data_dir: &Path, json: bool) -> Result<()> {
    let report = peers_report(url, data_dir, Duration::from_secs(5)).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("peers report")?
        );
        return Ok(());
    }
    if report.get("p2p") == Some(&serde_json::Value::Bool(false)) {
        println!("p2p is off on this node (--no-p2p)");
        return Ok(());
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    println!("peer id: {}", text(&report["peer_id"]));
    if report["private"].as_bool() == Some(true) {
        println!("swarm:   private (swarm key)");
    }
    for address in report["listen"].as_array().into_iter().flatten() {
        println!("listen:  {}", text(address));
    }
    let peers = report["peers"].as_array().cloned().unwrap_or_default();
    if peers.is_empty() {
        println!("peers:   none connected");
    }
    for peer in peers {
        let rtt = peer["rtt_ms"]
            .as_f64()
            .map_or("rtt ?".to_owned(), |ms| format!("rtt {ms:.2} ms"));
        println!(
            "peer:    {}  {}  {rtt}",
            text(&peer["peer"]),
            text(&peer["address"])
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_mirror::Mirror;

    #[test]
    fn a_wildcard_listen_address_is_spelled_out_per_interface() {
        let hosts: Vec<std::net::IpAddr> = vec![
            [10, 0, 0, 5].into(),
            [127, 0, 0, 1].into(),
            "fd00::5".parse().expect("v6"),
        ];
        let spelled = |text: &str| -> Vec<String> {
            spell_out(&text.parse().expect("multiaddr"), &hosts)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            spelled("/ip4/0.0.0.0/tcp/7778"),
            ["/ip4/10.0.0.5/tcp/7778", "/ip4/127.0.0.1/tcp/7778"]
        );
        assert_eq!(
            spelled("/ip6/::/udp/7778/quic-v1"),
            ["/ip6/fd00::5/udp/7778/quic-v1"]
        );
        assert_eq!(
            spelled("/ip4/192.168.1.2/tcp/9"),
            ["/ip4/192.168.1.2/tcp/9"]
        );
    }

    #[test]
    fn flags_become_a_node_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = P2pArgs {
            p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            no_mdns: true,
            ..P2pArgs::default()
        };
        let node = config(&args, &FileSettings::default(), dir.path())
            .expect("valid")
            .expect("p2p on");
        assert_eq!(node.listen.len(), 1);
        assert!(!node.mdns);
        assert_eq!(node.identity_path, Some(dir.path().join(IDENTITY_FILE)));

        let off = P2pArgs {
            no_p2p: true,
            ..P2pArgs::default()
        };
        assert!(
            config_is_none(&off, dir.path()),
            "--no-p2p turns the node off"
        );

        let bad = P2pArgs {
            bootstrap: vec!["not-an-address".into()],
            ..P2pArgs::default()
        };
        let err =
            config(&bad, &FileSettings::default(), dir.path()).expect_err("invalid bootstrap");
        assert!(err.to_string().contains("--bootstrap"), "{err}");
    }

    fn config_is_none(args: &P2pArgs, dir: &Path) -> bool {
        matches!(config(args, &FileSettings::default(), dir), Ok(None))
    }

    /// The mirror as `serve` builds it over `dir` (no ecosystem), with the node unless `no_p2p`.
    async fn build(dir: &Path, no_p2p: bool) -> Mirror {
        let args = P2pArgs {
            p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            no_mdns: true,
            no_p2p,
            ..P2pArgs::default()
        };
        let config = cairn_mirror::MirrorConfig::new(dir.into());
        crate::commands::serve::build_mirror(config, vec![], &FileSettings::default(), Some(&args))
            .await
            .expect("mirror")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_swarms_metrics_are_in_the_mirrors_exposition_with_p2p_on_or_off() {
        for no_p2p in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mirror = build(dir.path(), no_p2p).await;
            assert_eq!(mirror.peer_source().is_none(), no_p2p);
            // Counter families show once counted; the histogram, registered by the node's
            // metrics only, shows from the start.
            let text = mirror.metrics().encode();
            let family = "# TYPE cairn_provider_lookup_seconds histogram";
            assert!(
                text.lines().any(|l| l == family),
                "no {family:?} (no_p2p: {no_p2p}) in:\n{text}"
            );
            if let Some(peers) = mirror.peer_source() {
                peers.shutdown();
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mirror_and_its_node_are_freed_when_the_mirror_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mirror = build(dir.path(), false).await;
        let peers = mirror
            .peer_source()
            .expect("the mirror has its peers")
            .clone();
        peers.shutdown();
        drop(peers);
        drop(mirror);
        // The data directory's lock goes with the last handle on the store, which the node's
        // holdings share: were the node holding the mirror, or its tasks the store, it would
        // never go.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match Mirror::open(cairn_mirror::MirrorConfig::new(dir.path().into()), vec![]) {
                Ok(_) => break,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "the store is still held: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[test]
    fn defaults_listen_on_tcp_and_quic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = config(&P2pArgs::default(), &FileSettings::default(), dir.path())
            .expect("valid")
            .expect("p2p on");
        assert_eq!(node.listen.len(), 2);
        assert!(node.mdns);
    }
}
