//! Access tokens as the node checks them (`--auth required`). The store keeps each token as the
//! SHA-256 of its secret; the node holds that table in memory, read again every
//! [`RELOAD_EVERY`] (the upkeep of `Serving`), so a token `cairn token revoke` deletes stops
//! working within that time and a check on a request is a hash and a map lookup. Beside the
//! operator's tokens, a node requiring tokens makes one admin secret for this machine's own
//! commands (`purge`, `verify`) and writes it to the data directory's `admin-token`, readable by
//! its owner only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Mirror, blocking, now_ms};
use crate::error::Error;

/// How often the tokens are read again from the store.
pub const RELOAD_EVERY: Duration = Duration::from_millis(500);

/// Bytes of randomness in a secret.
const SECRET_BYTES: usize = 32;

/// Every secret begins so, which makes one easy to recognise (and to find in a leak).
pub const SECRET_PREFIX: &str = "cairn_";

/// Who a valid token says the caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`local` for the node's own admin secret).
    pub name: String,
    /// May use the routes that change the node's state.
    pub admin: bool,
    expires_at: Option<i64>,
}

/// The tokens a node accepts, by the SHA-256 of their secrets.
#[derive(Default)]
pub(crate) struct Tokens {
    by_hash: RwLock<Arc<HashMap<[u8; 32], Caller>>>,
    /// The node's own admin secret's hash (see the module doc).
    local: RwLock<Option<[u8; 32]>>,
}

/// A new secret: [`SECRET_PREFIX`] and 32 random bytes in hex.
pub fn new_secret() -> Result<String, Error> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(Error::NoRandomness)?;
    Ok(format!("{SECRET_PREFIX}{}", hex::encode(bytes)))
}

/// The SHA-256 of a secret, as the store keeps it.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Mirror {
    /// Whether every route but `/healthz` needs a token (`--auth required`).
    pub fn auth_required(&self) -> bool {
        self.inner.config.auth_required
    }

    /// Whether `/metrics` needs an admin token (`--admin-metrics`, with `--auth required`).
    pub fn admin_metrics(&self) -> bool {
        self.inner.config.admin_metrics
    }

    /// The caller a presented secret names, if it is a live token's.
    pub fn caller(&self, secret: &str) -> Option<Caller> {
        let hash = secret_hash(secret);
        let tokens = &self.inner.tokens;
        if *tokens.local.read().unwrap_or_else(|p| p.into_inner()) == Some(hash) {
            return Some(Caller {
                name: "local".to_owned(),
                admin: true,
                expires_at: None,
            });
        }
        let by_hash = tokens
            .by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        by_hash
            .get(&hash)
            .filter(|c| c.expires_at.is_none_or(|at| now_ms() < at))
            .cloned()
    }

    /// Read the tokens again from the store.
    pub async fn reload_tokens(&self) -> Result<(), Error> {
        let index = self.inner.index.clone();
        let rows = blocking(move || Ok(index.tokens()?)).await?;
        let by_hash: HashMap<[u8; 32], Caller> = rows
            .into_iter()
            .map(|t| {
                (
                    t.hash,
                    Caller {
                        name: t.name,
                        admin: t.admin,
                        expires_at: t.expires_at,
                    },
                )
            })
            .collect();
        *self
            .inner
            .tokens
            .by_hash
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(by_hash);
        Ok(())
    }

    /// Make this node's own admin secret and write it to the data directory for this machine's
    /// commands; the path written.
    pub async fn make_local_secret(&self) -> Result<std::path::PathBuf, Error> {
        let secret = new_secret()?;
        let hash = secret_hash(&secret);
        let store = self.inner.store.clone();
        let path = blocking(move || Ok(store.write_admin_token(&secret)?)).await?;
        *self
            .inner
            .tokens
            .local
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(hash);
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_prefixed_and_hashed_as_sha256() {
        let a = new_secret().expect("secret");
        let b = new_secret().expect("secret");
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), SECRET_PREFIX.len() + 64);
        assert_eq!(
            hex::encode(secret_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
