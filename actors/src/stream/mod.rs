//! `StreamActor`: one per live stream. It owns the stream's state (descriptor, prefix
//! secret hash, stored and in-flight entries, lifecycle) and serialises every transition:
//! register, append, terminate, purge.
//!
//! Appends never block the mailbox on storage: the actor plans the append, hands the new
//! entries to the `Writer`, and answers when the commit is durable while it keeps taking
//! messages. Register, terminate and purge are atomic (`AtomicResponse`): they wait for
//! the appends in flight and run their own transaction before the next message.
//!
//! - `mod.rs`: the actor (its state, start, load and retirement) and its helpers;
//! - [`messages`]: what callers send it and the live frames it sends;
//! - `state`: the prefix's secret and the loaded stream (row, descriptor, machine);
//! - `transitions`: appends, register, terminate, and lifecycle changes on a draft;
//! - `live`: followers' progress and subscribers' frames;
//! - `compaction`: the pure policy for merging small chunks;
//! - `handlers`: one `Handler` per message.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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

use crate::error::{blocking, ActorError};
use crate::lifecycle::StreamMachine;
use crate::writer::{settle, AppendOp, TaskSchedule, WriteResult};

mod compaction;
mod deps;
mod handlers;
mod live;
pub mod messages;
mod state;
mod transitions;

pub use deps::{ArchivalTiming, Retire, StreamDeps, StreamKey};
pub use messages::*;

use compaction::*;
use state::*;

type CommitFuture = Shared<Pin<Box<dyn Future<Output = WriteResult> + Send>>>;

pub struct StreamActor {
    key: StreamKey,
    path: StreamPath,
    generation: u64,
    /// Leaves the directory that started this actor.
    leave_directory: Retire,
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
    /// The stream, for a reader: not found when there is none, or when it is purged and
    /// the reader may not see purged streams.
    fn visible(&self, see_purged: bool) -> Result<&Loaded, ActorError> {
        match &self.stream {
            Some(s) if !s.machine.is_purged() || see_purged => Ok(s),
            _ => Err(ActorError::stream_not_found(&self.path)),
        }
    }

    pub(crate) fn new(
        key: StreamKey,
        path: StreamPath,
        generation: u64,
        leave_directory: Retire,
        deps: Arc<StreamDeps>,
    ) -> Self {
        Self {
            key,
            path,
            generation,
            leave_directory,
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

    /// Checks the secret of a write to the loaded stream.
    fn check_write(&self, secret: Option<&[u8]>) -> Result<(), ActorError> {
        let Some(prefix) = &self.prefix else {
            return Err(ActorError::FailedPrecondition(format!(
                "prefix {:?} is not registered",
                self.path.prefix
            )));
        };
        check_secret(prefix, secret, &self.path.prefix)?;
        if self.stream.as_ref().is_some_and(|s| s.machine.is_purged()) {
            return Err(ActorError::Conflict("stream has been purged".into()));
        }
        Ok(())
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
                                act.compaction = CompactionWindow::at(next);
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
        (self.leave_directory)(&self.key, self.generation);
    }
}

impl StreamActor {
    /// Leaves the directory and stops; messages already queued answer `Retired`.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        self.retired = true;
        (self.leave_directory)(&self.key, self.generation);
        ctx.stop();
    }
}
