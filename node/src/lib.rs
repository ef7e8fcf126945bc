//! Cairn's embedded libp2p peer.
pub mod bitswap;
