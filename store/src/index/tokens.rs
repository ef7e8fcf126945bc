//! The `tokens` table: the access tokens `cairn token` creates, each kept as the SHA-256 of its
//! secret (the secret itself is shown once, at creation, and stored nowhere). A revoked token's
//! row is deleted.

use rusqlite::{ErrorCode, params};

use super::{Index, IndexError, err, lock};

/// One access token, as the index keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// The operator's name for it (unique).
    pub name: String,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    /// May use the routes that change the node's state.
    pub admin: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch; `None`: never expires.
    pub expires_at: Option<i64>,
}

impl TokenRecord {
    /// Whether the token is still valid at `now_ms`.
    pub fn live_at(&self, now_ms: i64) -> bool {
        self.expires_at.is_none_or(|at| now_ms < at)
    }
}

impl Index {
    /// Add a token. `Ok(false)` when a token of that name exists (nothing is changed).
    pub fn create_token(&self, token: &TokenRecord) -> Result<bool, IndexError> {
        let conn = lock(&self.writer);
        let added = conn.execute(
            "INSERT INTO tokens (name, hash, admin, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                token.name,
                token.hash.as_slice(),
                token.admin,
                token.created_at,
                token.expires_at
            ],
        );
        match added {
            Ok(_) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Ok(false)
            }
            Err(e) => Err(err("create a token")(e)),
        }
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, IndexError> {
        self.read(|conn| {
            let what = "list the tokens";
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, hash, admin, created_at, expires_at FROM tokens ORDER BY name",
                )
                .map_err(err(what))?;
            stmt.query_map([], |row| {
                let hash: Vec<u8> = row.get(1)?;
                let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Blob,
                        "a token hash is not 32 bytes".into(),
                    )
                })?;
                Ok(TokenRecord {
                    name: row.get(0)?,
                    hash,
                    admin: row.get(2)?,
                    created_at: row.get(3)?,
                    expires_at: row.get(4)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(err(what))
        })
    }

    /// Delete the token `name`; whether there was one.
    pub fn revoke_token(&self, name: &str) -> Result<bool, IndexError> {
        let conn = lock(&self.writer);
        conn.execute("DELETE FROM tokens WHERE name = ?1", params![name])
            .map(|n| n > 0)
            .map_err(err("revoke a token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, byte: u8, expires_at: Option<i64>) -> TokenRecord {
        TokenRecord {
            name: name.to_owned(),
            hash: [byte; 32],
            admin: byte % 2 == 1,
            created_at: 1_000,
            expires_at,
        }
    }

    #[test]
    fn tokens_are_created_once_by_name_listed_and_revoked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::open(&dir.path().join("index.sqlite3")).expect("open");
        let ci = token("ci", 1, None);
        let laptop = token("laptop", 2, Some(5_000));
        assert!(index.create_token(&ci).expect("create"));
        assert!(index.create_token(&laptop).expect("create"));
        assert!(
            !index.create_token(&token("ci", 3, None)).expect("create"),
            "a second token named ci is refused"
        );
        assert_eq!(index.tokens().expect("list"), [ci.clone(), laptop.clone()]);
        assert!(laptop.live_at(4_999) && !laptop.live_at(5_000));
        assert!(ci.live_at(i64::MAX));

        assert!(index.revoke_token("laptop").expect("revoke"));
        assert!(
            !index.revoke_token("laptop").expect("revoke"),
            "gone already"
        );
        assert_eq!(index.tokens().expect("list"), [ci]);
    }
}
