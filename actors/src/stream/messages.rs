//! The stream actor's messages: what callers send it, and the live frames it sends its
//! subscribers.

use super::*;

/// RegisterStream. Answers the stream and whether it was created.
#[derive(Message, Clone)]
#[rtype(result = "Result<(StreamJson, bool), ActorError>")]
pub struct Register {
    pub secret: Option<Vec<u8>>,
    /// The resolved descriptor, or why the request's descriptor is invalid.
    pub descriptor: Result<Descriptor, String>,
    pub terminal_index: Option<i64>,
}

/// LoadStream.
#[derive(Message, Clone)]
#[rtype(result = "Result<StreamJson, ActorError>")]
pub struct Load {
    /// Admins see purged streams; everyone else gets 404.
    pub see_purged: bool,
}

/// A request's payload, handed to the stream actor once without copying. The directory
/// may send a message twice (when the first actor it reached was stopping), so messages
/// are `Clone`; clones share the payload, and the handler takes it out once it has passed
/// the checks that can send a message on to another actor.
#[derive(Debug)]
pub struct Handoff<T>(Arc<std::sync::Mutex<Option<T>>>);

impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Handoff<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(value))))
    }

    /// The payload, or None when a clone of this message already took it.
    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Append entries. Answered once they are durable.
#[derive(Message, Clone)]
#[rtype(result = "Result<AppendOk, ActorError>")]
pub struct Append {
    pub secret: Option<Vec<u8>>,
    /// The parsed entries, or why the body is invalid (reported after the secret and
    /// existence checks, as API.md orders errors).
    pub entries: Handoff<Result<Vec<IncomingEntry>, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOk {
    pub next_index: u64,
    pub accepted: u64,
    pub duplicates: u64,
}

/// Append raw text: one entry per line, numbered from one past the highest stored index.
#[derive(Message, Clone)]
#[rtype(result = "Result<AppendOk, ActorError>")]
pub struct AppendText {
    pub secret: Option<Vec<u8>>,
    /// The body split into lines, or why it is invalid (e.g. not UTF-8).
    pub lines: Handoff<Result<Vec<logdog_schema::wire::Line>, String>>,
}

/// TerminateStream. `Ok(None)` terminal index: at the highest stored index.
#[derive(Message, Clone)]
#[rtype(result = "Result<StreamJson, ActorError>")]
pub struct Terminate {
    pub secret: Option<Vec<u8>>,
    pub terminal_index: Result<Option<i64>, String>,
}

/// Purge: mark the stream purged and release its data.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Purge;

/// How far a stream has come, for followers. Followers wait on a `watch` channel, which
/// holds only the latest value: a slow follower never makes the actor buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Every entry below it is stored.
    pub next_index: u64,
    /// Set once terminated (-1: terminated empty).
    pub terminal_index: Option<i64>,
    /// Archived: nothing more will ever be stored.
    pub archived: bool,
    /// Purged or deleted: followers should stop.
    pub gone: bool,
}

impl Progress {
    /// True when no entry at or after `next` will ever become readable.
    pub fn finished_at(&self, next: u64) -> bool {
        self.gone
            || self.terminal_index.is_some_and(|t| next as i64 > t)
            || (self.archived && next >= self.next_index)
    }
}

/// Subscribe to a stream's progress (and get its state). The actor stays alive while
/// anyone holds a receiver.
#[derive(Message, Clone)]
#[rtype(result = "Result<(StreamJson, tokio::sync::watch::Receiver<Progress>), ActorError>")]
pub struct Follow {
    pub see_purged: bool,
}

/// What a stream actor pushes to live viewers. Each frame is encoded once and the same
/// bytes are shared by every subscriber.
#[derive(Debug, Clone)]
pub enum Live {
    /// `{"type":"entries",...}` for the newly contiguous entries `[first, end)`: the JSON,
    /// encoded once and shared (a reference count) by every viewer's session.
    Entries {
        first: u64,
        end: u64,
        frame: bytes::Bytes,
    },
    /// Entries up to `end` became contiguous but are not in memory: read them from storage.
    Advanced { end: u64 },
    /// `{"type":"state",...}` after a lifecycle change.
    State {
        frame: bytestring::ByteString,
        progress: Progress,
    },
    /// The subscriber's mailbox was full: it was dropped from the live set and must catch
    /// up from storage, then subscribe again.
    Lagged,
}

/// A live frame and when the stream actor sent it (so a viewer that runs late can tell how
/// long it has been behind).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LiveFrame(pub Live, pub Instant);

/// Join the live set. Frames go to `recipient` with `try_send` (never buffered without
/// bound); the answer is the stream's `state` frame and where it stands now.
#[derive(Message, Clone)]
#[rtype(result = "Result<(bytestring::ByteString, Progress), ActorError>")]
pub struct Subscribe {
    pub id: u64,
    pub recipient: Recipient<LiveFrame>,
    pub see_purged: bool,
}

/// Leave the live set.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Unsubscribe {
    pub id: u64,
}

/// An archive task was leased: terminate the stream at its highest stored index if it is
/// not terminated, and refuse further entries. Idempotent.
#[derive(Message, Clone)]
#[rtype(result = "Result<StreamJson, ActorError>")]
pub struct Seal;

/// The archive is written: record it and release the intermediate data. Idempotent.
#[derive(Message, Clone)]
#[rtype(result = "Result<StreamJson, ActorError>")]
pub struct MarkArchived {
    pub archive: ArchiveInfo,
    /// The terminal index the archivist archived up to; must be the stream's.
    pub terminal_index: i64,
    /// Entries in the archive: at least every stored one.
    pub log_entry_count: u64,
    /// The task to mark done in the same transaction.
    pub task_id: String,
}

/// Archival failed for good (after the attempt cap).
#[derive(Message, Clone)]
#[rtype(result = "Result<StreamJson, ActorError>")]
pub struct MarkFailed {
    pub error: String,
    pub task_id: String,
}

/// The stream's prefix was deleted: forget everything and stop.
#[derive(Message, Clone)]
#[rtype(result = "Result<(), ActorError>")]
pub struct PrefixDeleted;

/// Cluster mode: another node owns the stream now (a write was fenced, or this node missed
/// its heartbeats); the actor stops without touching storage.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Depose;

/// The stream as this node's actor knows it, for a reader that will follow it: the
/// owner's state, or in cluster mode a replica's copy (at most one notification behind).
/// `Load` answers the owner's state; `Peek` never leaves the node.
#[derive(Message, Clone)]
#[rtype(result = "Result<StreamJson, ActorError>")]
pub struct Peek {
    pub see_purged: bool,
}

/// Cluster mode: the owner committed a change to the stream (a PostgreSQL notification).
/// A replica reads it from storage and tells its viewers; the owner ignores it.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Wake;
