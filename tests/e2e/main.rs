//! End-to-end tests: the `cairn` binary in front of in-process fake upstreams on 127.0.0.1:0,
//! driven by the real clients (npm, yarn, pnpm, cargo, pip, uv), and swarms of nodes on 127.0.0.1
//! and in network namespaces. A missing client or tool is a failure, not a skip.

mod apt;
mod as_of;
mod auth;
mod bundle;
mod cargo;
mod container;
mod dashboard;
mod deploy;
mod fake_apt;
mod fake_cargo;
mod fake_npm;
mod fake_pypi;
mod fake_tuf;
mod fake_upstream;
mod gateway;
mod hardening_edge;
mod hardening_limits;
mod hardening_peers;
mod hardening_store;
mod hardening_upstream;
mod hints;
mod netns;
mod npm;
mod npm_clients;
mod p2p;
mod policy;
mod private;
mod provenance;
mod purge;
mod pypi;
mod pypi_lockfiles;
mod store_limits;
mod support;
mod swarm_eviction;
mod tls;
mod tools;
mod verify;
