//! The Kademlia DHT: a server-mode node under a private protocol name, whose provider records
//! are keyed by multihash (docs/protocols.md) and bounded in number.

use std::time::Duration;

use cid::Cid;
use libp2p::{PeerId, StreamProtocol, kad};

use super::records::{Bounds, CompactStore};

/// Provider records are valid this long; servers expire them after it (docs/protocols.md).
pub const PROVIDER_RECORD_TTL: Duration = Duration::from_secs(48 * 3600);

/// This node republishes its provider records this often, well within their TTL.
pub const PROVIDER_PUBLICATION_INTERVAL: Duration = Duration::from_secs(22 * 3600);

/// Longest one DHT query (an announcement, a provider lookup) runs.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Provider keys held in the DHT store, this node's and other nodes' together. An artifact
/// takes two (flat and root CIDs), so this covers a few hundred thousand artifacts across the
/// swarm; each key costs a few hundred bytes (`records.rs`), so the store stays under about
/// 200 MB however many peers provide.
const MAX_PROVIDER_KEYS: usize = 1 << 19;

/// Providers kept per key (Kademlia's replication factor): more are ignored, against floods.
const MAX_PROVIDERS_PER_KEY: usize = 20;

/// Largest value record kept (Cairn publishes none).
const MAX_VALUE_BYTES: usize = 64 << 10;

/// Value records (Cairn publishes none; other peers may put some).
const MAX_VALUE_RECORDS: usize = 4096;

/// The DHT of node `peer_id`, speaking `protocol`, in server mode.
pub(super) fn kademlia(peer_id: PeerId, protocol: StreamProtocol) -> kad::Behaviour<CompactStore> {
    let mut config = kad::Config::new(protocol);
    config
        .set_query_timeout(QUERY_TIMEOUT)
        .set_provider_record_ttl(Some(PROVIDER_RECORD_TTL))
        .set_provider_publication_interval(Some(PROVIDER_PUBLICATION_INTERVAL));
    let store = CompactStore::new(
        peer_id,
        Bounds {
            max_records: MAX_VALUE_RECORDS,
            max_value_bytes: MAX_VALUE_BYTES,
            max_provider_keys: MAX_PROVIDER_KEYS,
            max_providers_per_key: MAX_PROVIDERS_PER_KEY,
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, config);
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// The DHT key of `cid`: its multihash, so a raw and a dag-pb CID of one digest share it.
pub(super) fn kad_key(cid: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}
