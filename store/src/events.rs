//! What the store tells its subscribers: an artifact committed by this process, imported by
//! this process or by another one writing the same data directory (`cairn import` beside a
//! running `cairn serve`), or evicted or purged by this process. Subscribers get a [`tokio::sync::broadcast`] receiver; one that falls
//! more than [`CAPACITY`] events behind is told it lagged (and should look at the index again).
//!
//! Commits are sent as they happen. Imports reach every process the same way, through the
//! index's `events` table, written in the import's own transaction: a thread polls it every
//! [`POLL_EVERY`] (a `PRAGMA data_version` read when nothing changed) once the first subscriber
//! comes, and stops when the store is gone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::cid::{FlatCid, RootCid};
use crate::error::StoreError;
use crate::index::events::{EventFeed, EventKind, EventRow};

/// Events a subscriber may fall behind by before it is told it lagged.
pub const CAPACITY: usize = 4096;
/// How often the `events` table is looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Polls between two trims of old event rows.
const TRIM_EVERY: u32 = 600;

/// A change in what the store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    /// An artifact this process downloaded (or derived), verified and committed.
    Committed {
        ecosystem: String,
        key: String,
        flat: FlatCid,
        root: RootCid,
        /// From an upstream that was sent credentials.
        private: bool,
    },
    /// An artifact a bundle brought, imported by this process or another one.
    Imported {
        ecosystem: String,
        key: String,
        flat: FlatCid,
        root: RootCid,
        /// Marked private in the bundle's snapshot.
        private: bool,
    },
    /// An artifact file this process evicted (under every key that named it), or dropped as
    /// damaged.
    Evicted {
        flat: FlatCid,
        root: RootCid,
        size: u64,
    },
    /// An artifact file this process purged (`cairn purge`: under every key that named it).
    Purged {
        flat: FlatCid,
        root: RootCid,
        size: u64,
    },
}

impl StoreEvent {
    /// The flat and root CIDs of the artifact the event is about.
    pub fn cids(&self) -> (FlatCid, RootCid) {
        match self {
            StoreEvent::Committed { flat, root, .. }
            | StoreEvent::Imported { flat, root, .. }
            | StoreEvent::Evicted { flat, root, .. }
            | StoreEvent::Purged { flat, root, .. } => (*flat, *root),
        }
    }
}

impl From<EventRow> for StoreEvent {
    fn from(row: EventRow) -> Self {
        match row.kind {
            EventKind::Imported => StoreEvent::Imported {
                ecosystem: row.ecosystem,
                key: row.key,
                flat: row.flat,
                root: row.root,
                private: row.private,
            },
        }
    }
}

/// The subscribers of one store (shared by its clones) and the feed from the `events` table.
pub(crate) struct Events {
    sender: broadcast::Sender<StoreEvent>,
    index_path: PathBuf,
    feed_started: AtomicBool,
    /// Serialises starting the feed, so that no subscriber returns before it runs.
    starting: Mutex<()>,
}

impl Events {
    pub(crate) fn new(index_path: PathBuf) -> Arc<Self> {
        Arc::new(Events {
            sender: broadcast::channel(CAPACITY).0,
            index_path,
            feed_started: AtomicBool::new(false),
            starting: Mutex::new(()),
        })
    }

    /// Tell every subscriber (none is fine).
    pub(crate) fn emit(&self, event: StoreEvent) {
        let _ = self.sender.send(event);
    }

    /// A receiver of every event from now on; the first one starts the feed from the `events`
    /// table (from its newest row: what was imported before is in the index already).
    pub(crate) fn subscribe(
        self: &Arc<Self>,
    ) -> Result<broadcast::Receiver<StoreEvent>, StoreError> {
        let receiver = self.sender.subscribe();
        let _starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if !self.feed_started.load(Ordering::Acquire) {
            let feed = EventFeed::open(&self.index_path)?;
            let events = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("cairn-store-events".into())
                .spawn(move || follow(feed, events))
                .map_err(|e| StoreError::io("start the event feed of", &self.index_path, e))?;
            self.feed_started.store(true, Ordering::Release);
        }
        Ok(receiver)
    }
}

/// Poll `feed` until the store is gone, sending what it reads.
fn follow(mut feed: EventFeed, events: Weak<Events>) {
    let mut polls = 0u32;
    loop {
        std::thread::sleep(POLL_EVERY);
        let Some(events) = events.upgrade() else {
            return;
        };
        match feed.poll() {
            Ok(rows) => rows
                .into_iter()
                .for_each(|row| events.emit(StoreEvent::from(row))),
            Err(e) => tracing::warn!("cannot read the store's events: {e}"),
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(TRIM_EVERY)
            && let Err(e) = feed.trim()
        {
            tracing::warn!("cannot trim the store's events: {e}");
        }
    }
}
