//! The node's identity: its ed25519 key, persisted so that its peer ID survives restarts.

use std::path::Path;

use libp2p::PeerId;
use libp2p::identity::Keypair;

use super::NodeError;

/// The peer ID of the key at `path`, creating the key if there is none (what `cairn id` prints
/// and the node started with the same `identity_path` will use).
pub fn identity(path: &Path) -> Result<PeerId, NodeError> {
    Ok(load_or_create_identity(path)?.public().to_peer_id())
}

/// Load the node's key from `path`, or create an ed25519 key there (mode 0600, written to a
/// temporary file and renamed so a crash leaves no half key).
pub(super) fn load_or_create_identity(path: &Path) -> Result<Keypair, NodeError> {
    let io = |action, source| NodeError::Identity {
        action,
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| NodeError::BadIdentity {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| NodeError::BadIdentity {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
            }
            let temp = path.with_extension("tmp");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temp).map_err(|e| io("create", e))?;
            std::io::Write::write_all(&mut file, &bytes).map_err(|e| io("write", e))?;
            file.sync_all().map_err(|e| io("sync", e))?;
            std::fs::rename(&temp, path).map_err(|e| io("rename into place", e))?;
            Ok(keypair)
        }
        Err(e) => Err(io("read", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_then_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node").join("identity.key");
        let first = load_or_create_identity(&path).expect("created");
        let second = load_or_create_identity(&path).expect("loaded");
        assert_eq!(first.public(), second.public());
        std::fs::write(&path, b"junk").expect("overwrite");
        let err = load_or_create_identity(&path).expect_err("junk key");
        assert!(err.to_string().contains("identity.key"), "{err}");
    }
}
