//! The swarm's Prometheus metrics, registered into the registry the bin hands the node (the
//! engine's, so that one `/metrics` shows everything). Names and labels are part of the
//! interface (README's `/metrics`; the end-to-end tests scrape them).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// A peer ID.
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `found` (at least one peer can serve it) or `none`.
    pub result: &'static str,
}

/// Buckets of [`NodeMetrics::provider_lookup_seconds`].
const LOOKUP_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every metric the swarm keeps. Cheap to clone (the families are shared).
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    /// Artifact bytes received from each peer (verified block by block, hedged duplicates
    /// included).
    pub peer_bytes: Family<PeerLabels, Counter>,
    /// Blocks a peer sent that did not hash to the CID asked for.
    pub bad_blocks: Family<PeerLabels, Counter>,
    /// Provider lookups for artifacts, by result.
    pub provider_lookups: Family<LookupLabels, Counter>,
    /// Time a provider lookup took, to its answer or its deadline.
    pub provider_lookup_seconds: Histogram,
}

impl Default for NodeMetrics {
    /// Metrics counted but exported nowhere (tests, tools).
    fn default() -> Self {
        NodeMetrics {
            peer_bytes: Family::default(),
            bad_blocks: Family::default(),
            provider_lookups: Family::default(),
            provider_lookup_seconds: Histogram::new(LOOKUP_BUCKETS),
        }
    }
}

impl NodeMetrics {
    /// The swarm's metrics, registered into `registry` (Cairn's carries the `cairn` prefix:
    /// `cairn_peer_received_bytes_total{peer}`, …). Register once per registry.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = NodeMetrics::default();
        registry.register(
            "peer_received_bytes",
            "Artifact bytes received from each peer",
            metrics.peer_bytes.clone(),
        );
        registry.register(
            "peer_bad_blocks",
            "Blocks from a peer that did not match their CID",
            metrics.bad_blocks.clone(),
        );
        registry.register(
            "provider_lookups",
            "DHT provider lookups for artifacts, by result",
            metrics.provider_lookups.clone(),
        );
        registry.register(
            "provider_lookup_seconds",
            "Time a provider lookup took, to its answer or deadline",
            metrics.provider_lookup_seconds.clone(),
        );
        metrics
    }

    /// Bytes received from `peer` so far.
    pub fn received_from(&self, peer: &str) -> u64 {
        self.peer_bytes
            .get_or_create(&PeerLabels {
                peer: peer.to_owned(),
            })
            .get()
    }

    /// Bad blocks `peer` has sent so far.
    pub fn bad_blocks_from(&self, peer: &str) -> u64 {
        self.bad_blocks
            .get_or_create(&PeerLabels {
                peer: peer.to_owned(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_keep_their_exported_names_and_labels() {
        let mut registry = Registry::with_prefix("cairn");
        let metrics = NodeMetrics::register(&mut registry);
        metrics
            .peer_bytes
            .get_or_create(&PeerLabels {
                peer: "12D3a".into(),
            })
            .inc_by(5);
        metrics
            .bad_blocks
            .get_or_create(&PeerLabels {
                peer: "12D3b".into(),
            })
            .inc();
        metrics
            .provider_lookups
            .get_or_create(&LookupLabels { result: "found" })
            .inc();
        metrics.provider_lookup_seconds.observe(0.02);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "cairn_peer_received_bytes_total{peer=\"12D3a\"} 5",
            "cairn_peer_bad_blocks_total{peer=\"12D3b\"} 1",
            "cairn_provider_lookups_total{result=\"found\"} 1",
            "cairn_provider_lookup_seconds_count 1",
            "cairn_provider_lookup_seconds_bucket{le=\"0.025\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert_eq!(metrics.received_from("12D3a"), 5);
        assert_eq!(metrics.bad_blocks_from("12D3b"), 1);
    }
}
