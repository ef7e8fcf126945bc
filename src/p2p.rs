//! The peer side of `cairn serve`: flags and `cairn.toml` keys into a [`NodeConfig`], the node
//! started beside the mirror and connected to it, and `cairn id` / `cairn peers`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_mirror::Mirror;
use cairn_node::{Node, NodeConfig, NodeError};
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
    if args.no_p2p || file.no_p2p.unwrap_or(false) {
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
        swarm_key: args.swarm_key.clone().or_else(|| file.swarm_key.clone()),
        allow_peers,
        mdns: !(args.no_mdns || file.no_mdns.unwrap_or(false)),
        identity_path: Some(data_dir.join(IDENTITY_FILE)),
        ..NodeConfig::default()
    }))
}

/// Start the node and connect it to `mirror`, unless `--no-p2p`.
pub async fn start(args: &P2pArgs, file: &FileSettings, mirror: &Mirror) -> Result<Option<Node>> {
    let Some(config) = config(args, file, &mirror.config().data_dir)? else {
        tracing::info!("p2p off (--no-p2p)");
        return Ok(None);
    };
    let policy = cairn_node::PeerPolicy {
        trust_metadata: args.trust_peer_metadata || file.trust_peer_metadata.unwrap_or(false),
    };
    let private = config.swarm_key.is_some();
    let pending = cairn_node::PendingMap::default();
    let source = cairn_node::block_source(mirror.blocks(), pending.clone());
    let node = match Node::start(config.clone(), source.clone()).await {
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
            Node::start(config, source).await
        }
        other => other,
    }
    .context("cannot start the p2p node")?;
    let peers = cairn_node::Peers::new(node.clone(), mirror.clone(), pending, policy)
        .context("cannot start the p2p node")?;
    let addresses = node.p2p_addrs().await.unwrap_or_default();
    tracing::info!(peer_id = %node.peer_id(), private, addresses = ?addresses, "p2p node started");
    peers.announce_held();
    mirror.set_peers(Arc::new(peers));
    Ok(Some(node))
}

/// Whether the operator chose the listen addresses (then failing to listen is an error).
fn listen_given(args: &P2pArgs, file: &FileSettings) -> bool {
    !args.p2p_listen.is_empty() || file.p2p_listen.as_ref().is_some_and(|l| !l.is_empty())
}

/// `cairn id`: the peer ID of the node whose data dir this is.
pub fn peer_id(data_dir: &Path) -> Result<PeerId> {
    let path = data_dir.join(IDENTITY_FILE);
    cairn_node::swarm::identity(&path).with_context(|| format!("node identity {}", path.display()))
}

/// `cairn peers`: ask the running node at `url`.
pub async fn print_peers(url: &Url, json: bool) -> Result<()> {
    let endpoint = url.join("api/v1/peers").context("node URL")?;
    let response = reqwest::Client::new()
        .get(endpoint.clone())
        .timeout(Duration::from_secs(5))
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
    let report: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("{endpoint} did not answer JSON"))?;
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
