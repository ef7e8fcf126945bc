//! The Kademlia DHT: a server-mode node under a private protocol name, whose provider records
//! are keyed by multihash (docs/protocols.md) and bounded in number.

use std::time::Duration;

use cid::Cid;
use libp2p::{PeerId, StreamProtocol, kad};

/// Provider records are valid this long; servers expire them after it (docs/protocols.md).
pub const PROVIDER_RECORD_TTL: Duration = Duration::from_secs(48 * 3600);

/// This node republishes its provider records this often, well within their TTL.
pub const PROVIDER_PUBLICATION_INTERVAL: Duration = Duration::from_secs(22 * 3600);

/// Longest one DHT query (an announcement, a provider lookup) runs.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Provider keys held in the DHT store, this node's and other nodes' together. An artifact
/// takes two (flat and root CIDs), so this covers a few hundred thousand artifacts across the
/// swarm; each key costs a few hundred bytes.
const MAX_PROVIDER_KEYS: usize = 1 << 20;

/// Value records (Cairn publishes none; other peers may put some).
const MAX_VALUE_RECORDS: usize = 4096;

/// The DHT of node `peer_id`, speaking `protocol`, in server mode.
pub(super) fn kademlia(
    peer_id: PeerId,
    protocol: StreamProtocol,
) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut config = kad::Config::new(protocol);
    config
        .set_query_timeout(QUERY_TIMEOUT)
        .set_provider_record_ttl(Some(PROVIDER_RECORD_TTL))
        .set_provider_publication_interval(Some(PROVIDER_PUBLICATION_INTERVAL));
    let store = kad::store::MemoryStore::with_config(
        peer_id,
        kad::store::MemoryStoreConfig {
            max_records: MAX_VALUE_RECORDS,
            max_provided_keys: MAX_PROVIDER_KEYS,
            ..kad::store::MemoryStoreConfig::default()
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
