//! `StreamActor`: one per live stream. It owns the stream's state (descriptor, prefix
//! secret hash, stored and in-flight entries, lifecycle) and serialises every transition:
//! register, append, terminate, purge.
//!
//! Appends never block the mailbox on storage: the actor plans the append, hands the new
//! entries to the `Writer`, and answers when the commit is durable while it keeps taking
//! messages. Register, terminate and purge are atomic (`AtomicResponse`): they wait for
//! the appends in flight and run their own transaction before the next message.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::dev::SendError;
use actix::prelude::*;
use futures::future::{FutureExt, Shared};
use logdog_schema::models::{ChunkRow, PrefixRow, StreamLifecycle, StreamRow, TagRow, TaskRow};
use logdog_schema::names::StreamPath;
use logdog_schema::store::{self, ChunkSpan};
use logdog_schema::wire::{now_us, Archival, ArchiveInfo, Descriptor, IncomingEntry, StreamJson};
use logdog_schema::{chunk, Store};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::directory::{DirectoryInner, StreamDeps, StreamKey};
use crate::error::{blocking, ActorError};
use crate::lifecycle::{Span, StreamMachine};
use crate::writer::{settle, AppendOp, TaskSchedule, WriteResult};

/// A chunk below this many payload bytes counts as small for compaction.
const SMALL_CHUNK_BYTES: u64 = 64 << 10;
/// Compact once this many small chunks lie side by side.
const COMPACT_AFTER_CHUNKS: u32 = 32;
/// Never build a compacted chunk larger than this.
const MAX_COMPACTED_BYTES: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------
// Messages

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

/// Append entries. Answered once they are durable.
#[derive(Message, Clone)]
#[rtype(result = "Result<AppendOk, ActorError>")]
pub struct Append {
    pub secret: Option<Vec<u8>>,
    /// The parsed entries, or why the body is invalid (reported after the secret and
    /// existence checks, as API.md orders errors).
    pub entries: Arc<Result<Vec<IncomingEntry>, String>>,
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
    pub lines: Arc<Result<Vec<logdog_schema::wire::Line>, String>>,
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
    /// `{"type":"entries",...}` for the newly contiguous entries `[first, end)`.
    Entries {
        first: u64,
        end: u64,
        frame: bytestring::ByteString,
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
/// bound); the answer is the stream and where it stands now.
#[derive(Message, Clone)]
#[rtype(result = "Result<(StreamJson, Progress), ActorError>")]
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

// ---------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone)]
struct PrefixInfo {
    secret_hash: Vec<u8>,
    expires_us: i64,
}

impl From<PrefixRow> for PrefixInfo {
    fn from(r: PrefixRow) -> Self {
        Self {
            secret_hash: r.secret_hash,
            expires_us: r.expires_us,
        }
    }
}

/// A registered stream: its row (static columns and lifecycle) and its machine.
struct Loaded {
    row: StreamRow,
    descriptor: Descriptor,
    machine: StreamMachine,
    /// False for a stream archived before `next_sequence` was kept (no chunks to tell).
    sequence_known: bool,
}

impl Loaded {
    fn from_row(row: StreamRow, spans: &[ChunkSpan]) -> Result<Self, ActorError> {
        let descriptor: Descriptor = row
            .descriptor()
            .map_err(|e| ActorError::Internal(format!("stored descriptor is invalid: {e}")))?;
        let mut m = StreamMachine::new(descriptor.stream_type, descriptor.timestamp);
        if row.terminated_us.is_some() {
            m.terminal_index = Some(row.terminal_index);
            m.terminated_us = row.terminated_us;
        }
        m.sealed = row.sealed;
        m.archival = Archival::parse(&row.archival).unwrap_or(Archival::None);
        m.purged = row.purged;
        // Everything below the stored next_index is there; the chunks loaded start at
        // or before its last entry, so their spans carry the sequence to continue from.
        if let Some(first) = spans.first() {
            if first.first_index > 0 && (first.first_index as i64) <= row.next_index {
                m.stored.insert(Span {
                    start: 0,
                    end: first.first_index,
                    end_sequence: 0,
                });
            }
        } else if row.next_index > 0 {
            // No chunks (archived): the stored column says where the sequence stands.
            m.stored.insert(Span {
                start: 0,
                end: row.next_index as u64,
                end_sequence: row.next_sequence.unwrap_or(0) as u64,
            });
        }
        for s in spans {
            m.stored.insert(Span {
                start: s.first_index,
                end: s.first_index + s.count,
                end_sequence: s.end_sequence,
            });
        }
        let sequence_known =
            !(spans.is_empty() && row.next_index > 0 && row.next_sequence.is_none());
        Ok(Self {
            row,
            descriptor,
            machine: m,
            sequence_known,
        })
    }

    /// The row as it stands with the machine's state applied.
    fn current_row(&self) -> StreamRow {
        let m = &self.machine;
        let lc = self.lifecycle();
        StreamRow {
            next_index: m.next_index() as i64,
            next_sequence: self.next_sequence().map(|s| s as i64),
            terminal_index: lc.terminal_index,
            terminated_us: lc.terminated_us,
            sealed: lc.sealed,
            archival: lc.archival,
            purged: lc.purged,
            ..self.row.clone()
        }
    }

    fn json(&self) -> StreamJson {
        self.current_row().to_json(self.descriptor.clone())
    }

    fn next_sequence(&self) -> Option<u64> {
        self.sequence_known.then(|| self.machine.next_sequence())
    }

    fn lifecycle(&self) -> StreamLifecycle {
        let m = &self.machine;
        StreamLifecycle {
            updated_us: self.row.updated_us,
            terminal_index: m.terminal_index.unwrap_or(-1),
            terminated_us: m.terminated_us,
            sealed: m.sealed,
            archival: m.archival.as_str().to_owned(),
            archive: self.row.archive.clone(),
            archive_error: self.row.archive_error.clone(),
            purged: m.purged,
        }
    }
}

/// Small chunks committed side by side since the last compaction.
#[derive(Debug, Default, Clone, Copy)]
struct CompactionWindow {
    start: u64,
    end: u64,
    chunks: u32,
    bytes: u64,
}

type CommitFuture = Shared<Pin<Box<dyn Future<Output = WriteResult> + Send>>>;

pub struct StreamActor {
    key: StreamKey,
    path: StreamPath,
    generation: u64,
    directory: Weak<DirectoryInner>,
    deps: Arc<StreamDeps>,
    prefix: Option<PrefixInfo>,
    stream: Option<Loaded>,
    /// Why loading failed; every message answers 503 and the actor stops.
    load_error: Option<String>,
    /// Commits in flight, by batch: requests that repeat their entries wait on them.
    inflight: HashMap<u64, CommitFuture>,
    compaction: CompactionWindow,
    last_active: Instant,
    /// Live viewers, by subscription id.
    subscribers: HashMap<u64, Recipient<LiveFrame>>,
    /// Followers' view of the stream; published after every change.
    progress: tokio::sync::watch::Sender<Progress>,
    /// Removed from the directory: answer `Retired` so callers go to a fresh actor.
    retired: bool,
}

fn hash_secret(secret: &[u8]) -> Vec<u8> {
    Sha256::digest(secret).to_vec()
}

fn check_secret(prefix: &PrefixInfo, secret: Option<&[u8]>, name: &str) -> Result<(), ActorError> {
    let ok = secret.is_some_and(|s| bool::from(hash_secret(s).ct_eq(&prefix.secret_hash)));
    if ok {
        Ok(())
    } else {
        Err(ActorError::PermissionDenied(format!(
            "wrong or missing secret for prefix {name:?}"
        )))
    }
}

fn task_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

type Reply<T> = ResponseActFuture<StreamActor, Result<T, ActorError>>;

fn reply<T: 'static>(r: Result<T, ActorError>) -> Reply<T> {
    Box::pin(fut::ready(r))
}

impl StreamActor {
    pub(crate) fn new(
        key: StreamKey,
        path: StreamPath,
        generation: u64,
        directory: Weak<DirectoryInner>,
        deps: Arc<StreamDeps>,
    ) -> Self {
        Self {
            key,
            path,
            generation,
            directory,
            deps,
            prefix: None,
            stream: None,
            load_error: None,
            inflight: HashMap::new(),
            compaction: CompactionWindow::default(),
            last_active: Instant::now(),
            subscribers: HashMap::new(),
            progress: tokio::sync::watch::channel(Progress::default()).0,
            retired: false,
        }
    }

    fn store(&self) -> Store {
        self.deps.store.clone()
    }

    /// Answers for the messages every handler refuses the same way.
    fn gate(&mut self) -> Result<(), ActorError> {
        self.last_active = Instant::now();
        if self.retired {
            return Err(ActorError::Retired);
        }
        if let Some(e) = &self.load_error {
            return Err(ActorError::Unavailable(e.clone()));
        }
        Ok(())
    }

    /// The error for a write to a stream this actor does not have: 412 when the prefix
    /// is missing, 403 for a wrong secret, else 404. Reads the prefix afresh, since it
    /// may have been registered since this actor loaded.
    fn missing_stream(&mut self, secret: Option<Vec<u8>>) -> Reply<()> {
        let (store, project, prefix) = (
            self.store(),
            self.key.project.clone(),
            self.path.prefix.clone(),
        );
        let path = self.path.to_string();
        Box::pin(
            async move {
                blocking(move || store.read(|c| store::get_prefix(c, &project, &prefix))).await
            }
            .into_actor(self)
            .map(move |row, act, _| {
                let row = row?;
                let Some(row) = row else {
                    return Err(ActorError::FailedPrecondition(format!(
                        "prefix {:?} is not registered",
                        act.path.prefix
                    )));
                };
                let info = PrefixInfo::from(row);
                check_secret(&info, secret.as_deref(), &act.path.prefix)?;
                act.prefix = Some(info);
                Err(ActorError::NotFound(format!("stream {path:?} not found")))
            }),
        )
    }

    /// Checks the secret of a write to the loaded stream.
    fn check_write(&self, secret: Option<&[u8]>) -> Result<(), ActorError> {
        let Some(prefix) = &self.prefix else {
            return Err(ActorError::FailedPrecondition(format!(
                "prefix {:?} is not registered",
                self.path.prefix
            )));
        };
        check_secret(prefix, secret, &self.path.prefix)?;
        if self.stream.as_ref().is_some_and(|s| s.machine.purged) {
            return Err(ActorError::Conflict("stream has been purged".into()));
        }
        Ok(())
    }

    /// Waits for every commit in flight and records their outcomes.
    fn settle_inflight(&mut self) -> impl ActorFuture<Self, Output = ()> {
        let pending: Vec<(u64, CommitFuture)> =
            self.inflight.iter().map(|(b, f)| (*b, f.clone())).collect();
        async move {
            let mut out = Vec::new();
            for (b, f) in pending {
                out.push((b, f.await));
            }
            out
        }
        .into_actor(self)
        .map(|results, act, _| {
            for (b, r) in results {
                act.finish_batch(b, &r);
            }
        })
    }

    fn finish_batch(&mut self, batch: u64, result: &WriteResult) {
        self.inflight.remove(&batch);
        if let Some(s) = &mut self.stream {
            s.machine.commit_result(batch, result.is_ok());
        }
        self.publish();
    }

    /// Tells followers where the stream stands (only when that changed).
    fn publish(&mut self) {
        let now = match &self.stream {
            Some(s) => Progress {
                next_index: s.machine.next_index(),
                terminal_index: s.machine.terminal_index,
                archived: s.machine.is_archived(),
                gone: s.machine.purged,
            },
            None => Progress {
                gone: true,
                ..Progress::default()
            },
        };
        let mut lifecycle_changed = false;
        self.progress.send_if_modified(|p| {
            let changed = *p != now;
            lifecycle_changed = (p.terminal_index, p.archived, p.gone)
                != (now.terminal_index, now.archived, now.gone);
            *p = now;
            changed
        });
        if lifecycle_changed && !self.subscribers.is_empty() {
            let stream = self.stream.as_ref().map(Loaded::json);
            let frame = serde_json::json!({"type": "state", "stream": stream}).to_string();
            self.broadcast(Live::State {
                frame: frame.into(),
                progress: now,
            });
        }
    }

    /// Pushes one frame to every live subscriber without ever waiting: a full mailbox
    /// drops that subscriber from the live set and tells it (once) to catch up.
    fn broadcast(&mut self, live: Live) {
        let at = Instant::now();
        self.subscribers
            .retain(|_, r| match r.try_send(LiveFrame(live.clone(), at)) {
                Ok(()) => true,
                Err(SendError::Full(_)) => {
                    r.do_send(LiveFrame(Live::Lagged, at));
                    false
                }
                Err(SendError::Closed(_)) => false,
            });
    }

    /// Tells viewers that `[before, after)` became contiguous, with the entries when this
    /// batch holds them all (encoded once), else as a pointer to storage.
    fn broadcast_entries(
        &mut self,
        before: u64,
        after: u64,
        runs: &[Vec<logdog_schema::wire::Entry>],
    ) {
        if after <= before || self.subscribers.is_empty() {
            return;
        }
        let entries: Vec<&logdog_schema::wire::Entry> = runs
            .iter()
            .flatten()
            .filter(|e| (before..after).contains(&e.stream_index))
            .collect();
        let live = if entries.len() as u64 == after - before {
            let frame = logdog_schema::wire::entries_frame(entries);
            Live::Entries {
                first: before,
                end: after,
                frame: frame.into(),
            }
        } else {
            Live::Advanced { end: after }
        };
        self.broadcast(live);
    }

    /// After a batch committed: note its chunks and compact once enough small ones line up.
    fn after_commit(&mut self, chunks: &[(u64, u64, u64)]) {
        let Some(s) = &mut self.stream else { return };
        s.row.updated_us = now_us();
        let next = s.machine.next_index();
        let w = &mut self.compaction;
        for &(first, count, bytes) in chunks {
            if first != w.end || first + count > next {
                continue;
            }
            if bytes >= SMALL_CHUNK_BYTES || w.bytes + bytes > MAX_COMPACTED_BYTES {
                *w = CompactionWindow {
                    start: first + count,
                    end: first + count,
                    chunks: 0,
                    bytes: 0,
                };
                continue;
            }
            w.end = first + count;
            w.chunks += 1;
            w.bytes += bytes;
        }
        if w.chunks >= COMPACT_AFTER_CHUNKS {
            let (start, end) = (w.start, w.end);
            *w = CompactionWindow {
                start: end,
                end,
                chunks: 0,
                bytes: 0,
            };
            let (project, id) = (self.key.project.clone(), self.key.id.clone());
            let done = self
                .deps
                .writer
                .run(move |c| store::compact_chunks(c, &project, &id, start, end).map(|_| ()));
            actix::spawn(async move {
                if let Ok(Err(e)) = done.await {
                    tracing::warn!(?e, "chunk compaction failed");
                }
            });
        }
    }

    /// Terminates the stream (after the commits in flight), persisting the transition and
    /// the archive task it schedules in one transaction.
    fn terminate(&mut self, requested: Option<i64>) -> Reply<StreamJson> {
        Box::pin(self.settle_inflight().then(move |_, act, _| {
            let Some(s) = &act.stream else {
                return reply(Err(ActorError::NotFound("stream not found".into())));
            };
            let mut next = Loaded {
                row: s.row.clone(),
                descriptor: s.descriptor.clone(),
                machine: s.machine.clone(),
                sequence_known: s.sequence_known,
            };
            let now = now_us();
            match next.machine.terminate(requested, now) {
                Err(e) => return reply(Err(e.into())),
                Ok(false) => return reply(Ok(s.json())),
                Ok(true) => {}
            }
            next.row.updated_us = now;
            let (reason, delay) = if next.machine.is_complete() {
                ("terminated", act.deps.archival.complete_delay)
            } else {
                ("incomplete", act.deps.archival.incomplete_delay)
            };
            let due = now + delay.as_micros() as i64;
            let (store, project, id, change) = (
                act.store(),
                act.key.project.clone(),
                act.key.id.clone(),
                next.lifecycle(),
            );
            let write = blocking(move || {
                store.write(|c| {
                    store::update_lifecycle(c, &project, &id, &change)?;
                    store::schedule_task(c, &project, &id, reason, due, &task_id(), now)
                })
            });
            Box::pin(write.into_actor(act).map(move |r, act, _| {
                r?;
                if let Some(s) = &mut act.stream {
                    s.row.updated_us = next.row.updated_us;
                    s.machine.terminal_index = next.machine.terminal_index;
                    s.machine.terminated_us = next.machine.terminated_us;
                }
                act.publish();
                Ok(act
                    .stream
                    .as_ref()
                    .map(Loaded::json)
                    .expect("stream is loaded"))
            }))
        }))
    }

    /// Plans and submits an append; answers once it and every commit it repeats are durable.
    fn append(&mut self, entries: &[IncomingEntry]) -> Reply<AppendOk> {
        let Some(s) = &mut self.stream else {
            return reply(Err(ActorError::NotFound("stream not found".into())));
        };
        let plan = match s.machine.plan_append(entries, now_us()) {
            Ok(p) => p,
            Err(e) => return reply(Err(e.into())),
        };
        let mut waits: Vec<(u64, CommitFuture)> = plan
            .waits_for
            .iter()
            .filter_map(|b| self.inflight.get(b).map(|f| (*b, f.clone())))
            .collect();
        let mut own = None;
        if let Some(batch) = plan.batch {
            let mut chunks = Vec::with_capacity(plan.runs.len());
            let mut meta = Vec::with_capacity(plan.runs.len());
            let mut bytes = 0;
            for run in &plan.runs {
                let run_bytes: u64 = run.iter().map(|e| e.content.payload_bytes()).sum();
                let last = run.last().expect("runs are not empty");
                chunks.push(ChunkRow {
                    project: self.key.project.clone(),
                    stream_id: self.key.id.clone(),
                    first_index: run[0].stream_index as i64,
                    count: run.len() as i64,
                    bytes: run_bytes as i64,
                    end_sequence: (last.sequence + last.content.sequence_units()) as i64,
                    data: chunk::encode(run),
                });
                meta.push((run[0].stream_index, run.len() as u64, run_bytes));
                bytes += run_bytes;
            }
            // A terminated stream that this batch completes is due for archival sooner.
            let schedule = match s.machine.terminal_index {
                Some(t) if plan.end_after as i64 == t + 1 && plan.end_before < plan.end_after => {
                    Some(TaskSchedule {
                        reason: "terminated",
                        due_us: now_us() + self.deps.archival.complete_delay.as_micros() as i64,
                        new_task_id: task_id(),
                    })
                }
                _ => None,
            };
            let op = AppendOp {
                project: self.key.project.clone(),
                stream_id: self.key.id.clone(),
                chunks,
                advance: (plan.end_after > plan.end_before).then_some((
                    plan.end_before,
                    plan.end_after,
                    plan.sequence_after,
                )),
                schedule,
                entries: plan.accepted,
                bytes,
            };
            let rx = self.deps.writer.append(op);
            let fut: Pin<Box<dyn Future<Output = WriteResult> + Send>> = Box::pin(rx.map(settle));
            let shared = fut.shared();
            self.inflight.insert(batch, shared.clone());
            waits.push((batch, shared));
            own = Some((batch, meta, plan.runs));
        }
        let (accepted, duplicates) = (plan.accepted, plan.duplicates);
        Box::pin(
            async move {
                let mut out = Vec::with_capacity(waits.len());
                for (b, f) in waits {
                    out.push((b, f.await));
                }
                out
            }
            .into_actor(self)
            .map(move |results, act, _| {
                let before = act.stream.as_ref().map_or(0, |s| s.machine.next_index());
                let mut failure = None;
                for (b, r) in &results {
                    act.finish_batch(*b, r);
                    if let Err(e) = r {
                        failure.get_or_insert(e.clone());
                    }
                }
                if let Some(e) = failure {
                    return Err(e.into());
                }
                if let Some((_, meta, runs)) = own {
                    act.after_commit(&meta);
                    let after = act.stream.as_ref().map_or(0, |s| s.machine.next_index());
                    act.broadcast_entries(before, after, &runs);
                }
                let next_index = act.stream.as_ref().map_or(0, |s| s.machine.next_index());
                Ok(AppendOk {
                    next_index,
                    accepted,
                    duplicates,
                })
            }),
        )
    }

    fn create(
        &mut self,
        descriptor: Descriptor,
        terminal_index: Option<i64>,
    ) -> Reply<(StreamJson, bool)> {
        let now = now_us();
        let row = StreamRow {
            project: self.key.project.clone(),
            id: self.key.id.clone(),
            path: self.path.to_string(),
            prefix: self.path.prefix.clone(),
            name: self.path.name.clone(),
            stream_type: descriptor.stream_type.as_str().to_owned(),
            content_type: descriptor.content_type.clone(),
            descriptor: serde_json::to_string(&descriptor).expect("descriptor serialises"),
            created_us: now,
            updated_us: now,
            next_index: 0,
            terminal_index: -1,
            terminated_us: None,
            sealed: false,
            archival: Archival::None.as_str().to_owned(),
            archive: None,
            archive_error: None,
            purged: false,
            next_sequence: Some(0),
        };
        let mut loaded = match Loaded::from_row(row, &[]) {
            Ok(l) => l,
            Err(e) => return reply(Err(e)),
        };
        let timing = &self.deps.archival;
        let (reason, due) = match terminal_index {
            Some(t) if t >= 0 => {
                if let Err(e) = loaded.machine.terminate(Some(t), now) {
                    return reply(Err(e.into()));
                }
                (
                    "incomplete",
                    now + timing.incomplete_delay.as_micros() as i64,
                )
            }
            _ => ("expired", now + timing.pessimistic_delay.as_micros() as i64),
        };
        let lc = loaded.lifecycle();
        loaded.row.terminal_index = lc.terminal_index;
        loaded.row.terminated_us = lc.terminated_us;
        let tags: Vec<TagRow> = descriptor
            .tags
            .iter()
            .map(|(k, v)| TagRow {
                project: self.key.project.clone(),
                stream_id: self.key.id.clone(),
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let task = TaskRow {
            task_id: task_id(),
            project: self.key.project.clone(),
            stream_id: self.key.id.clone(),
            reason: reason.to_owned(),
            due_us: due,
            attempt: 0,
            lease_id: None,
            lease_expires_us: None,
            last_error: None,
            created_us: now,
        };
        let (store, row) = (self.store(), loaded.row.clone());
        let write = blocking(move || store.write(|c| store::insert_stream(c, &row, &tags, &task)));
        Box::pin(write.into_actor(self).map(move |r, act, _| {
            r?;
            let json = loaded.json();
            act.stream = Some(loaded);
            act.publish();
            Ok((json, true))
        }))
    }
}

/// The prefix row, and the stream row with the spans of its chunks from next_index − 1 on.
type Snapshot = (Option<PrefixRow>, Option<(StreamRow, Vec<ChunkSpan>)>);

/// What a new actor reads before it takes its first message.
fn load(
    store: &Store,
    key: &StreamKey,
    path: &StreamPath,
) -> Result<Snapshot, logdog_schema::StoreError> {
    store.read(|c| {
        let prefix = store::get_prefix(c, &key.project, &path.prefix)?;
        let Some(row) = store::get_stream(c, &key.project, &key.id)? else {
            return Ok((prefix, None));
        };
        let from = (row.next_index as u64).saturating_sub(1);
        let spans = store::chunk_spans(c, &key.project, &key.id, from)?;
        Ok((prefix, Some((row, spans))))
    })
}

impl Actor for StreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.deps.metrics.live_stream_actors.inc();
        let (store, key, path) = (self.store(), self.key.clone(), self.path.clone());
        ctx.wait(
            async move { blocking(move || load(&store, &key, &path)).await }
                .into_actor(self)
                .map(|r, act, ctx| {
                    match r.and_then(|(p, s)| {
                        Ok((
                            p,
                            s.map(|(row, spans)| Loaded::from_row(row, &spans))
                                .transpose()?,
                        ))
                    }) {
                        Ok((prefix, stream)) => {
                            act.prefix = prefix.map(PrefixInfo::from);
                            if let Some(s) = &stream {
                                let next = s.machine.next_index();
                                act.compaction = CompactionWindow {
                                    start: next,
                                    end: next,
                                    chunks: 0,
                                    bytes: 0,
                                };
                                let sequence = s.next_sequence();
                                if next as i64 != s.row.next_index
                                    || sequence.map(|q| q as i64) != s.row.next_sequence
                                {
                                    // Repair a next_index left behind by a failed commit.
                                    let (project, id) =
                                        (act.key.project.clone(), act.key.id.clone());
                                    drop(act.deps.writer.run(move |c| {
                                        store::set_next_index(c, &project, &id, (next, sequence))
                                    }));
                                }
                            }
                            act.stream = stream;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, stream = %act.path, "loading stream failed");
                            act.load_error = Some(format!("cannot load stream: {e}"));
                            act.retire(ctx);
                        }
                    }
                }),
        );
        let check = (self.deps.idle_timeout / 2).max(Duration::from_millis(10));
        ctx.run_interval(check, |act, ctx| {
            let followed = act.progress.receiver_count() > 0 || !act.subscribers.is_empty();
            if act.inflight.is_empty()
                && !followed
                && act.last_active.elapsed() >= act.deps.idle_timeout
            {
                act.retire(ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.live_stream_actors.dec();
        if let Some(dir) = self.directory.upgrade() {
            dir.retire(&self.key, self.generation);
        }
    }
}

impl StreamActor {
    /// Leaves the directory and stops; messages already queued answer `Retired`.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        self.retired = true;
        if let Some(dir) = self.directory.upgrade() {
            dir.retire(&self.key, self.generation);
        }
        ctx.stop();
    }
}

impl Handler<Register> for StreamActor {
    type Result = AtomicResponse<Self, Result<(StreamJson, bool), ActorError>>;

    /// Creates the stream, or confirms an identical registration.
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate() {
            return AtomicResponse::new(reply(Err(e)));
        }
        let (store, project, prefix) = (
            self.store(),
            self.key.project.clone(),
            self.path.prefix.clone(),
        );
        let fresh = async move {
            blocking(move || store.read(|c| store::get_prefix(c, &project, &prefix))).await
        };
        AtomicResponse::new(Box::pin(fresh.into_actor(self).then(move |row, act, _| {
            let row = match row {
                Ok(r) => r,
                Err(e) => return reply(Err(e)),
            };
            let Some(row) = row else {
                return reply(Err(ActorError::FailedPrecondition(format!(
                    "prefix {:?} is not registered",
                    act.path.prefix
                ))));
            };
            act.prefix = Some(PrefixInfo::from(row));
            let prefix = act.prefix.as_ref().expect("just set");
            let is_new = act.stream.is_none();
            if is_new && prefix.expires_us <= now_us() {
                return reply(Err(ActorError::FailedPrecondition(format!(
                    "prefix {:?} has expired",
                    act.path.prefix
                ))));
            }
            if let Err(e) = act.check_write(msg.secret.as_deref()) {
                return reply(Err(e));
            }
            let descriptor = match msg.descriptor {
                Ok(d) => d,
                Err(m) => return reply(Err(ActorError::Invalid(m))),
            };
            if let Some(t) = msg.terminal_index {
                if t < -1 {
                    return reply(Err(ActorError::Invalid(format!(
                        "terminal_index must be -1 or more, got {t}"
                    ))));
                }
            }
            match &act.stream {
                None => act.create(descriptor, msg.terminal_index),
                Some(s) => {
                    let d = &s.descriptor;
                    if d.stream_type != descriptor.stream_type
                        || d.content_type != descriptor.content_type
                    {
                        return reply(Err(ActorError::AlreadyExists(format!(
                            "stream {:?} exists with stream_type {} and content_type {:?}",
                            s.row.path,
                            d.stream_type.as_str(),
                            d.content_type
                        ))));
                    }
                    match msg.terminal_index {
                        Some(t) if t >= 0 => {
                            Box::pin(act.terminate(Some(t)).map(|r, _, _| r.map(|j| (j, false))))
                        }
                        _ => reply(Ok((s.json(), false))),
                    }
                }
            }
        })))
    }
}

impl Handler<Load> for StreamActor {
    type Result = Result<StreamJson, ActorError>;

    fn handle(&mut self, msg: Load, _: &mut Context<Self>) -> Self::Result {
        self.gate()?;
        match &self.stream {
            Some(s) if !s.machine.purged || msg.see_purged => Ok(s.json()),
            _ => Err(ActorError::NotFound(format!(
                "stream {:?} not found",
                self.path.to_string()
            ))),
        }
    }
}

impl Handler<Follow> for StreamActor {
    type Result = Result<(StreamJson, tokio::sync::watch::Receiver<Progress>), ActorError>;

    fn handle(&mut self, msg: Follow, _: &mut Context<Self>) -> Self::Result {
        self.gate()?;
        match &self.stream {
            Some(s) if !s.machine.purged || msg.see_purged => {
                Ok((s.json(), self.progress.subscribe()))
            }
            _ => Err(ActorError::NotFound(format!(
                "stream {:?} not found",
                self.path.to_string()
            ))),
        }
    }
}

impl Handler<Subscribe> for StreamActor {
    type Result = Result<(StreamJson, Progress), ActorError>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        self.gate()?;
        match &self.stream {
            Some(s) if !s.machine.purged || msg.see_purged => {
                let json = s.json();
                self.subscribers.insert(msg.id, msg.recipient);
                Ok((json, *self.progress.borrow()))
            }
            _ => Err(ActorError::NotFound(format!(
                "stream {:?} not found",
                self.path.to_string()
            ))),
        }
    }
}

impl Handler<Unsubscribe> for StreamActor {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> Self::Result {
        self.subscribers.remove(&msg.id);
        Ok(())
    }
}

impl Handler<Append> for StreamActor {
    type Result = ResponseActFuture<Self, Result<AppendOk, ActorError>>;

    fn handle(&mut self, msg: Append, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate() {
            return reply(Err(e));
        }
        if self.stream.is_none() {
            return Box::pin(
                self.missing_stream(msg.secret)
                    .map(|r, _, _| r.map(|_| unreachable!())),
            );
        }
        if let Err(e) = self.check_write(msg.secret.as_deref()) {
            return reply(Err(e));
        }
        match &*msg.entries {
            Err(m) => reply(Err(ActorError::Invalid(m.clone()))),
            Ok(entries) => self.append(entries),
        }
    }
}

impl Handler<AppendText> for StreamActor {
    type Result = ResponseActFuture<Self, Result<AppendOk, ActorError>>;

    /// Numbers the lines from one past the highest stored (or in-flight) index.
    fn handle(&mut self, msg: AppendText, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate() {
            return reply(Err(e));
        }
        let Some(s) = &self.stream else {
            return Box::pin(
                self.missing_stream(msg.secret)
                    .map(|r, _, _| r.map(|_| unreachable!())),
            );
        };
        if let Err(e) = self.check_write(msg.secret.as_deref()) {
            return reply(Err(e));
        }
        let lines = match &*msg.lines {
            Ok(lines) => lines,
            Err(m) => return reply(Err(ActorError::Invalid(m.clone()))),
        };
        let first = (s.machine.highest_index() + 1) as u64;
        let last = first + (lines.len() as u64).saturating_sub(1);
        if last > logdog_schema::wire::MAX_STREAM_INDEX {
            return reply(Err(ActorError::Invalid(format!(
                "these lines would be numbered up to {last}, above 2^53 - 1"
            ))));
        }
        let entries: Vec<IncomingEntry> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| IncomingEntry {
                stream_index: first + i as u64,
                prefix_index: None,
                sequence: None,
                time_offset_us: None,
                content: logdog_schema::wire::Content::Text(vec![line.clone()]),
            })
            .collect();
        if entries.is_empty() {
            let next_index = s.machine.next_index();
            return reply(Ok(AppendOk {
                next_index,
                accepted: 0,
                duplicates: 0,
            }));
        }
        self.append(&entries)
    }
}

impl Handler<Terminate> for StreamActor {
    type Result = AtomicResponse<Self, Result<StreamJson, ActorError>>;

    fn handle(&mut self, msg: Terminate, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate() {
            return AtomicResponse::new(reply(Err(e)));
        }
        if self.stream.is_none() {
            return AtomicResponse::new(Box::pin(
                self.missing_stream(msg.secret)
                    .map(|r, _, _| r.map(|_| unreachable!())),
            ));
        }
        if let Err(e) = self.check_write(msg.secret.as_deref()) {
            return AtomicResponse::new(reply(Err(e)));
        }
        match msg.terminal_index {
            Err(m) => AtomicResponse::new(reply(Err(ActorError::Invalid(m)))),
            Ok(t) => AtomicResponse::new(self.terminate(t)),
        }
    }
}

impl Handler<Purge> for StreamActor {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    fn handle(&mut self, _: Purge, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate() {
            return AtomicResponse::new(reply(Err(e)));
        }
        if self.stream.is_none() {
            let path = self.path.to_string();
            return AtomicResponse::new(reply(Err(ActorError::NotFound(format!(
                "stream {path:?} not found"
            )))));
        }
        AtomicResponse::new(Box::pin(self.settle_inflight().then(|_, act, _| {
            let (store, project, id) = (act.store(), act.key.project.clone(), act.key.id.clone());
            let now = now_us();
            let write =
                blocking(move || store.write(|c| store::purge_stream(c, &project, &id, now)));
            write.into_actor(act).map(move |r, act, _| {
                r?;
                if let Some(s) = &mut act.stream {
                    s.machine.purged = true;
                    s.row.updated_us = now;
                }
                act.publish();
                Ok(())
            })
        })))
    }
}

impl StreamActor {
    /// Persists a lifecycle change computed on a copy (plus `extra` in the same
    /// transaction), then adopts it and tells viewers.
    fn transition(
        &mut self,
        next: Loaded,
        extra: impl FnOnce(&mut logdog_schema::AnyConnection) -> Result<(), logdog_schema::StoreError>
            + Send
            + 'static,
    ) -> Reply<StreamJson> {
        let (store, project, id, change) = (
            self.store(),
            self.key.project.clone(),
            self.key.id.clone(),
            next.lifecycle(),
        );
        let write = blocking(move || {
            store.write(|c| {
                store::update_lifecycle(c, &project, &id, &change)?;
                extra(c)
            })
        });
        Box::pin(write.into_actor(self).map(move |r, act, _| {
            r?;
            let json = next.json();
            act.stream = Some(next);
            act.publish();
            Ok(json)
        }))
    }

    /// A copy of the loaded stream to compute a transition on.
    fn draft(&self) -> Result<Loaded, ActorError> {
        let s = self.stream.as_ref().ok_or_else(|| {
            ActorError::NotFound(format!("stream {:?} not found", self.path.to_string()))
        })?;
        let mut row = s.row.clone();
        row.updated_us = now_us();
        Ok(Loaded {
            row,
            descriptor: s.descriptor.clone(),
            machine: s.machine.clone(),
            sequence_known: s.sequence_known,
        })
    }
}

impl Handler<Seal> for StreamActor {
    type Result = AtomicResponse<Self, Result<StreamJson, ActorError>>;

    fn handle(&mut self, _: Seal, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate() {
            return AtomicResponse::new(reply(Err(e)));
        }
        AtomicResponse::new(Box::pin(self.settle_inflight().then(|_, act, _| {
            let mut next = match act.draft() {
                Ok(n) => n,
                Err(e) => return reply(Err(e)),
            };
            if next.machine.is_archived() {
                return reply(Err(ActorError::Conflict(
                    "stream is already archived".into(),
                )));
            }
            if next.machine.sealed && next.machine.archival == Archival::Tasked {
                return reply(Ok(next.json()));
            }
            let now = next.row.updated_us;
            if !next.machine.is_terminated() {
                if let Err(e) = next.machine.terminate(None, now) {
                    return reply(Err(e.into()));
                }
            }
            next.machine.sealed = true;
            next.machine.archival = Archival::Tasked;
            act.transition(next, |_| Ok(()))
        })))
    }
}

impl Handler<MarkArchived> for StreamActor {
    type Result = AtomicResponse<Self, Result<StreamJson, ActorError>>;

    fn handle(&mut self, msg: MarkArchived, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate() {
            return AtomicResponse::new(reply(Err(e)));
        }
        let mut next = match self.draft() {
            Ok(n) => n,
            Err(e) => return AtomicResponse::new(reply(Err(e))),
        };
        if next.machine.is_archived() {
            return AtomicResponse::new(reply(Ok(next.json())));
        }
        let terminal = next.machine.terminal_index.unwrap_or(-1);
        if !next.machine.sealed || terminal != msg.terminal_index {
            return AtomicResponse::new(reply(Err(ActorError::Conflict(format!(
                "the archive ends at {} but the stream's terminal index is {terminal}",
                msg.terminal_index
            )))));
        }
        next.machine.archival = if msg.archive.complete {
            Archival::Complete
        } else {
            Archival::Partial
        };
        next.row.archive =
            Some(serde_json::to_string(&msg.archive).expect("archive info serialises"));
        next.row.archive_error = None;
        let (project, id, task) = (self.key.project.clone(), self.key.id.clone(), msg.task_id);
        AtomicResponse::new(self.transition(next, move |c| {
            store::delete_chunks(c, &project, &id)?;
            store::finish_task(c, &task, None)
        }))
    }
}

impl Handler<MarkFailed> for StreamActor {
    type Result = AtomicResponse<Self, Result<StreamJson, ActorError>>;

    fn handle(&mut self, msg: MarkFailed, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate() {
            return AtomicResponse::new(reply(Err(e)));
        }
        let mut next = match self.draft() {
            Ok(n) => n,
            Err(e) => return AtomicResponse::new(reply(Err(e))),
        };
        next.machine.archival = Archival::Failed;
        next.row.archive_error = Some(msg.error.clone());
        let (task, error) = (msg.task_id, msg.error);
        AtomicResponse::new(
            self.transition(next, move |c| store::finish_task(c, &task, Some(&error))),
        )
    }
}

impl Handler<PrefixDeleted> for StreamActor {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, _: PrefixDeleted, ctx: &mut Context<Self>) -> Self::Result {
        self.stream = None;
        self.prefix = None;
        self.publish();
        self.retire(ctx);
        Ok(())
    }
}
