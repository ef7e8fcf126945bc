//! `cairn chown-store --user UID[:GID]`: hand the data directory, and everything in it, to the
//! user the node runs as. For container platforms that create the store's directory as root
//! (a Kubernetes `hostPath`) and images that have no `chown` of their own (Cairn's is built
//! `FROM scratch`): an init step runs it as root with only `CAP_CHOWN`. Symbolic links are
//! changed themselves, never followed.

use std::os::unix::fs::{MetadataExt, lchown};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::Common;
use crate::settings::{self, FileSettings};

/// `UID` or `UID:GID` (the group defaults to the user's number).
fn parse_owner(text: &str) -> Result<(u32, u32)> {
    let number = |part: &str| {
        part.parse::<u32>()
            .with_context(|| format!("--user {text}: expected UID or UID:GID, numbers"))
    };
    match text.split_once(':') {
        Some((uid, gid)) => Ok((number(uid)?, number(gid)?)),
        None => {
            let uid = number(text)?;
            Ok((uid, uid))
        }
    }
}

/// Change the owner of `path` and, when it is a directory, of everything below it; returns
/// how many entries changed.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<u64> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mut changed = 0;
    if meta.uid() != uid || meta.gid() != gid {
        lchown(path, Some(uid), Some(gid))
            .with_context(|| format!("changing the owner of {}", path.display()))?;
        changed += 1;
    }
    if meta.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            changed += chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(changed)
}

pub fn run(common: &Common, file: &FileSettings, user: &str) -> Result<()> {
    let (uid, gid) = parse_owner(user)?;
    let dir = settings::data_dir(common.data_dir.as_deref(), file);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if !std::fs::symlink_metadata(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .is_dir()
    {
        bail!("{} is not a directory", dir.display());
    }
    let changed = chown_tree(&dir, uid, gid)?;
    println!(
        "{} is {uid}:{gid}'s ({changed} entries changed)",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_numbers() {
        assert_eq!(parse_owner("10001").expect("uid"), (10001, 10001));
        assert_eq!(parse_owner("10001:20").expect("uid:gid"), (10001, 20));
        for bad in ["cairn", "1:", ":1", "-1", "1:2:3", ""] {
            assert!(parse_owner(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tree_is_handed_over_without_following_links() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = tmp.path().join("store");
        std::fs::create_dir_all(store.join("blobs/ab")).expect("dirs");
        std::fs::write(store.join("blobs/ab/file"), b"x").expect("file");
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"keep").expect("outside");
        std::os::unix::fs::symlink(&outside, store.join("link")).expect("link");
        let (uid, gid) = (4242, 4343);
        let changed = chown_tree(&store, uid, gid).expect("chown as root");
        assert_eq!(
            changed, 5,
            "the directory, two below it, the file and the link"
        );
        for path in ["", "blobs", "blobs/ab", "blobs/ab/file", "link"] {
            let meta = std::fs::symlink_metadata(store.join(path)).expect("meta");
            assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{path}");
        }
        let kept = std::fs::metadata(&outside).expect("outside");
        assert_ne!(kept.uid(), uid, "the link's target is not the store's");
        assert_eq!(chown_tree(&store, uid, gid).expect("again"), 0);
    }
}
