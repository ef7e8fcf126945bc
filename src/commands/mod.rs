//! One module per subcommand. Each takes the parsed flags and `cairn.toml`, resolves its
//! settings through `settings`, and reaches the ecosystems through their table
//! (`ecosystems`).

pub mod chown_store;
pub mod export;
pub mod gc;
pub mod health;
pub mod id;
pub mod import;
pub mod local_node;
pub mod peers;
pub mod pin;
pub mod policy;
pub mod prefetch;
pub mod purge;
pub mod serve;
pub mod setup;
pub mod snapshot;
pub mod status;
pub mod token;
pub mod verify;
