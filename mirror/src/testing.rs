//! Helpers for tests of this crate and of the crates built on it (hidden from the docs).

pub use cairn_store::testing::{commit_keeping_leaves, noise};
