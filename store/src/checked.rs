//! Stored artifact files whose every byte was checked moments ago (hashed as they were
//! written, or every leaf against its CID on a whole read), and each file as it was then: a
//! read within [`FOR`] that finds the file unchanged need not hash its leaves again, whether
//! it serves a client (`cairn-mirror`'s `verified.rs`) or a peer ([`crate::blocks`]).
//!
//! Hashing every leaf of every response takes a core at a few hundred responses a second of an
//! 8 MiB file (BENCHMARKS.md, "Large files from the cache"), and a fifth of a sender's CPU in a
//! peer transfer. What the check guards against is a
//! stored file that changed after it was written: damaged on disk, truncated or overwritten by
//! hand or by another program. Any write to a file through the filesystem moves its status
//! change time (`ctime`), which no program can set back; replacing it gives another inode.
//! So a file whose device, inode, size, modification and status change times are those it had
//! when all its leaves were checked has not been written since. What that cannot see is damage
//! below the filesystem (a bad sector that the disk's own checksum misses); the window for it
//! is [`FOR`], after which the next read checks every leaf again, and `cairn verify` reads
//! every file. Small files are served from memory once checked, and never need this.
//!
//! File times are kept to the clock tick, so on older kernels a write within the tick of the
//! file's previous change may leave them as they were. Since Linux 6.13, on ext4, xfs, btrfs
//! and tmpfs, a file whose times were looked at (as taking a stamp does) gets a finer time at
//! its next change, so even a write right after a stamp was taken shows.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cid::FlatCid;

/// How long a check stands for a file that has not changed.
pub const FOR: Duration = Duration::from_secs(60);

/// Files remembered at most.
const MAX: usize = 4096;

/// What identifies a file's contents as written: a write or a replacement changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of the open `file` now.
    pub fn of_file(file: &std::fs::File) -> std::io::Result<Stamp> {
        file.metadata().map(|meta| Stamp::of(&meta))
    }

    /// True when the open `file` is still as this stamp describes it (false when it cannot be
    /// looked at).
    pub fn describes(&self, file: &std::fs::File) -> bool {
        Stamp::of_file(file).is_ok_and(|now| now == *self)
    }

    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The files checked moments ago, by flat CID; one per store, shared by its clones.
#[derive(Default)]
pub struct CheckedFiles {
    files: Mutex<HashMap<FlatCid, (Stamp, Instant)>>,
}

impl CheckedFiles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FlatCid, (Stamp, Instant)>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every leaf of `flat`'s file, as `stamp` describes it, was just checked.
    pub fn record(&self, flat: FlatCid, stamp: Stamp) {
        let mut files = self.lock();
        if files.len() >= MAX && !files.contains_key(&flat) {
            files.retain(|_, (_, at)| at.elapsed() < FOR);
            if files.len() >= MAX {
                // Forgetting them all is cheaper than ordering them, and costs one more
                // checked read of each hot file.
                files.clear();
            }
        }
        files.insert(flat, (stamp, Instant::now()));
    }

    /// True when `flat`'s file, now as `stamp` describes it, was checked whole within [`FOR`]
    /// and has not changed since.
    pub fn stands(&self, flat: &FlatCid, stamp: &Stamp) -> bool {
        let mut files = self.lock();
        match files.get(flat) {
            Some((was, at)) if was == stamp && at.elapsed() < FOR => true,
            Some(_) => {
                files.remove(flat);
                false
            }
            None => false,
        }
    }

    /// Forget `flat` (found damaged, or dropped).
    pub fn forget(&self, flat: &FlatCid) {
        self.lock().remove(flat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{Algorithm, Digest};
    use std::io::Write;

    fn flat(n: u32) -> FlatCid {
        Digest::of(Algorithm::Sha256, &n.to_le_bytes()).flat_cid()
    }

    fn stamp(path: &std::path::Path) -> Stamp {
        Stamp::of(&std::fs::metadata(path).expect("stat"))
    }

    /// A file in a directory of its own.
    fn blob() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"leaves").expect("write");
        (dir, path)
    }

    #[test]
    fn a_check_stands_until_the_file_is_written_or_replaced() {
        let (dir, path) = blob();
        let checked = CheckedFiles::default();
        assert!(!checked.stands(&flat(1), &stamp(&path)), "never checked");
        checked.record(flat(1), stamp(&path));
        assert!(checked.stands(&flat(1), &stamp(&path)));
        assert!(!checked.stands(&flat(2), &stamp(&path)), "another file");

        // Overwritten in place with bytes of the same length: its status change time moves.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"LEAVES"))
            .expect("overwrite");
        assert!(!checked.stands(&flat(1), &stamp(&path)), "written since");
        assert!(
            !checked.stands(&flat(1), &stamp(&path)),
            "and forgotten: it must be checked again"
        );

        // Replaced by another file (a new inode).
        checked.record(flat(1), stamp(&path));
        let other = dir.path().join("other");
        std::fs::write(&other, b"LEAVES").expect("write");
        std::fs::rename(&other, &path).expect("replace");
        assert!(!checked.stands(&flat(1), &stamp(&path)), "replaced");

        checked.record(flat(1), stamp(&path));
        checked.forget(&flat(1));
        assert!(!checked.stands(&flat(1), &stamp(&path)), "forgotten");
    }

    #[test]
    fn a_check_lapses() {
        let (_dir, path) = blob();
        let checked = CheckedFiles::default();
        let long_ago = Instant::now()
            .checked_sub(FOR)
            .expect("an instant a minute ago");
        checked.lock().insert(flat(1), (stamp(&path), long_ago));
        assert!(!checked.stands(&flat(1), &stamp(&path)));
    }

    #[test]
    fn the_memory_of_checks_is_bounded() {
        let (_dir, path) = blob();
        let checked = CheckedFiles::default();
        for n in 0..(MAX as u32 * 3) {
            checked.record(flat(n), stamp(&path));
            assert!(checked.lock().len() <= MAX);
        }
    }
}
