//! Bitswap.
pub mod message;
