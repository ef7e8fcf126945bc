//! Access tokens: the operator's (rows of the index, each the SHA-256 of its secret), and the
//! node's admin secret for this machine's own commands: `admin-token` in the data directory,
//! readable and writable by its owner only, written whole (a temporary file renamed into place)
//! so that a command never reads half of it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::Store;
use crate::error::StoreError;

/// The file's name in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

impl Store {
    /// Add an access token ([`crate::index::Index::create_token`]); `false` when one of that
    /// name exists.
    pub fn create_token(&self, token: &crate::index::TokenRecord) -> Result<bool, StoreError> {
        Ok(self.index.create_token(token)?)
    }

    /// Delete the access token `name`; whether there was one.
    pub fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.index.revoke_token(name)?)
    }

    /// Write `secret` to the data directory's [`ADMIN_TOKEN_FILE`] (mode 0600); its path.
    pub fn write_admin_token(&self, secret: &str) -> Result<PathBuf, StoreError> {
        let path = self.root.join(ADMIN_TOKEN_FILE);
        let temp = self
            .root
            .join(format!("{ADMIN_TOKEN_FILE}.{}", std::process::id()));
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(secret.as_bytes())?;
                file.sync_all()
            });
        if let Err(e) = written.and_then(|()| fs::rename(&temp, &path)) {
            let _ = fs::remove_file(&temp);
            return Err(StoreError::io("write the admin token", &path, e));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_admin_token_is_written_whole_for_its_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let path = store.write_admin_token("cairn_first").expect("write");
        let path2 = store
            .write_admin_token("cairn_second")
            .expect("write again");
        assert_eq!(path, path2);
        assert_eq!(fs::read_to_string(&path).expect("read"), "cairn_second");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
