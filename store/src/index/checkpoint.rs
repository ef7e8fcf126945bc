//! WAL checkpoints on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the log past its threshold,
//! on the committing thread, while that thread holds the index's one writer. Copying a large
//! transaction's pages into the database file and syncing it took about as long as the
//! transaction itself: a PyPI page listing 15,000 files committed in about 120 ms without it and
//! 215 ms with it, and every commit behind it waited too. Here a commit only notes that the log
//! has grown past [`THRESHOLD_PAGES`] (SQLite's own default), and a thread with a connection of
//! its own runs a passive checkpoint, which neither waits for the writer nor blocks it. The log
//! is bounded as before: a writer starts it over from the beginning once a checkpoint has
//! copied all of it.
//!
//! Should the thread fail to start, the writer keeps SQLite's automatic checkpoint.

use std::ffi::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;

use super::{IndexError, err, lock, open_connection};

/// Pages in the log after a commit past which a checkpoint is due (SQLite's default for its
/// automatic checkpoint).
pub(super) const THRESHOLD_PAGES: c_int = 1000;

/// The checkpoint thread of one opened index; stopped (and waited for) when dropped.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// A commit took the log past the threshold since the last checkpoint began.
    due: bool,
    stop: bool,
    /// Checkpoints run, for tests.
    runs: u64,
}

impl Shared {
    fn nudge(&self) {
        lock(&self.state).due = true;
        self.wake.notify_all();
    }
}

impl Checkpointer {
    /// Start the thread for the index at `path` and hand `writer`'s checkpoints to it.
    pub(super) fn start(writer: &mut Connection, path: &Path) -> Result<Self, IndexError> {
        let conn = open_connection(path)?;
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .name("cairn-checkpoint".into())
                .spawn(move || run(&conn, &shared, &path))
        };
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::warn!(index = %path.display(), error = %e,
                    "could not start the checkpoint thread; commits checkpoint the log themselves");
                return Ok(Checkpointer {
                    shared,
                    thread: None,
                });
            }
        };
        let hook = Arc::clone(&shared);
        // Replaces SQLite's automatic checkpoint on this connection (which is itself a log hook).
        writer
            .wal_hook(Some(move |_: &mut Wal, pages: c_int| {
                if pages >= THRESHOLD_PAGES {
                    hook.nudge();
                }
                Ok(())
            }))
            .map_err(err("hand checkpoints to their thread"))?;
        Ok(Checkpointer { shared, thread })
    }

    /// How many checkpoints the thread has run.
    #[cfg(test)]
    pub(super) fn runs(&self) -> u64 {
        lock(&self.shared.state).runs
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic on that thread has been reported already; nothing is left to undo.
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, shared: &Shared, path: &Path) {
    loop {
        {
            let mut state = lock(&shared.state);
            while !state.due && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if state.stop {
                return;
            }
            state.due = false;
        }
        // Busy (another process checkpointing, or a reader holding the log's start) is no
        // fault: the next commit past the threshold asks again.
        if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            tracing::warn!(index = %path.display(), error = %e, "WAL checkpoint failed");
        }
        lock(&shared.state).runs += 1;
    }
}
