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
//! - `replica`: cluster mode, the actor of a stream another node owns;
//! - `compaction`: the pure policy for merging small chunks;
//! - `handlers`: one `Handler` per message.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::dev::SendError;
use actix::prelude::*;
use futures::future::{FutureExt, Shared};
use logdog_schema::models::{ChunkRow, PrefixRow, StreamLifecycle, StreamRow, TagRow, TaskRow};
use logdog_schema::names::StreamPath;
use logdog_schema::store::{self, ChunkSpan, Claim, Fence};
use logdog_schema::wire::{now_us, Archival, ArchiveInfo, Descriptor, IncomingEntry, StreamJson};
use logdog_schema::{chunk, Store};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::directory::DirectoryInner;
use crate::error::{blocking, ActorError};
use crate::lifecycle::StreamMachine;
use crate::writer::{settle, AppendOp, TaskSchedule, WriteResult};

mod compaction;
mod deps;
mod handlers;
mod live;
pub mod messages;
mod outline;
mod replica;
mod state;
mod transitions;

pub use deps::{ArchivalTiming, ClusterNode, StreamDeps, StreamKey, TaskBell};
pub use messages::*;

use compaction::*;
use outline::*;
use replica::*;
use state::*;

type CommitFuture = Shared<Pin<Box<dyn Future<Output = WriteResult> + Send>>>;

pub struct StreamActor {
    /// Shared with the directory's entry for this actor.
    key: Arc<StreamKey>,
    path: StreamPath,
    generation: u64,
    /// The directory that started this actor, to leave when it stops (its entry is
    /// removed only while it is still this actor's: `generation`).
    directory: Weak<DirectoryInner>,
    deps: Arc<StreamDeps>,
    prefix: Option<PrefixInfo>,
    stream: Option<Loaded>,
    /// Why loading failed; every message answers 503 and the actor stops.
    load_error: Option<String>,
    /// Commits in flight, by batch: requests that repeat their entries wait on them.
    inflight: Vec<(u64, CommitFuture)>,
    compaction: CompactionWindow,
    last_active: Instant,
    /// Live viewers, by subscription id.
    subscribers: Vec<(u64, Recipient<LiveFrame>)>,
    /// Where the stream stands, as last published (see `publish`).
    published: Progress,
    /// Followers' view of `published`, made when the first follower comes (its shared
    /// state is a few hundred bytes an unfollowed stream's actor does without).
    progress: Option<tokio::sync::watch::Sender<Progress>>,
    /// Removed from the directory: answer `Retired` so callers go to a fresh actor.
    retired: bool,
    /// Cluster mode: this node's claim (node, epoch); every write is fenced by it.
    fence: Option<Arc<Fence>>,
    /// Cluster mode: a live node owns the stream; this actor is a replica for this node's
    /// viewers, and writes answer `Elsewhere` (see `replica`).
    elsewhere: Option<Box<Elsewhere>>,
    /// The stored section outline's upkeep (see `outline`).
    outline: OutlineUpkeep,
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
    /// The stream as a reader sees it: not found when there is none, or when it is purged
    /// and the reader may not see purged streams.
    fn visible(&self, see_purged: bool) -> Result<StreamJson, ActorError> {
        match &self.stream {
            Some(s) if !s.machine.is_purged() || see_purged => Ok(s.json(&self.key, &self.path)),
            _ => Err(ActorError::stream_not_found(&self.path)),
        }
    }

    pub(crate) fn new(
        key: Arc<StreamKey>,
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
            inflight: Vec::new(),
            compaction: CompactionWindow::default(),
            last_active: Instant::now(),
            subscribers: Vec::new(),
            published: Progress::default(),
            progress: None,
            retired: false,
            fence: None,
            elsewhere: None,
            outline: OutlineUpkeep::default(),
        }
    }

    /// Runs `f` in a write transaction fenced by this actor's claim (cluster mode).
    pub(super) fn fenced<T>(
        &self,
        f: impl FnOnce(&mut logdog_schema::AnyConnection) -> Result<T, logdog_schema::StoreError>,
    ) -> impl FnOnce(&mut logdog_schema::AnyConnection) -> Result<T, logdog_schema::StoreError>
    {
        let (fence, project, id) = (
            self.fence.clone(),
            self.key.project.clone(),
            self.key.id.clone(),
        );
        move |c| {
            if let Some(fence) = &fence {
                store::check_fence(c, &project, &id, fence)?;
            }
            f(c)
        }
    }

    fn store(&self) -> Store {
        self.deps.store.clone()
    }

    /// Answers for the messages every handler refuses the same way; a replica refuses
    /// everything but reads of its copy.
    fn gate(&mut self, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        if let Some(e) = self.owner_elsewhere(ctx) {
            self.last_active = Instant::now();
            return Err(e);
        }
        self.gate_read()
    }

    /// `gate` for reads a replica answers from its copy (Follow, Subscribe, Peek).
    fn gate_read(&mut self) -> Result<(), ActorError> {
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

/// In cluster mode, claims the stream for this node before anything is loaded.
fn claim(deps: &StreamDeps, key: &StreamKey) -> Result<Option<Claim>, logdog_schema::StoreError> {
    let Some(node) = &deps.cluster else {
        return Ok(None);
    };
    let timeout = node.node_timeout.as_micros() as i64;
    deps.store
        .write(|c| store::claim_stream(c, &key.project, &key.id, &node.node_id, timeout))
        .map(Some)
}

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
        let (deps, key, path) = (self.deps.clone(), self.key.clone(), self.path.clone());
        ctx.wait(
            async move {
                blocking(move || {
                    let claimed = claim(&deps, &key)?;
                    Ok((claimed, load(&deps.store, &key, &path)?))
                })
                .await
            }
            .into_actor(self)
            .map(|r, act, ctx| act.settle_claim(r, ctx)),
        );
        // One timer for both chores (each costs the actor an allocation): the outline's
        // update once per `OUTLINE_EVERY`, and the idle check.
        let check = (self.deps.idle_timeout / 2)
            .max(Duration::from_millis(10))
            .min(OUTLINE_EVERY);
        ctx.run_interval(check, |act, ctx| {
            if act.outline.due() {
                act.refresh_outline(ctx);
            }
            if act.inflight.is_empty()
                && !act.followed()
                && act.last_active.elapsed() >= act.deps.idle_timeout
            {
                act.retire(ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.live_stream_actors.dec();
        self.leave_directory();
        // Viewers still subscribed (the actor was deposed, or the prefix deleted) catch up
        // from storage and subscribe again, to a fresh actor.
        for (_, r) in self.subscribers.drain(..) {
            r.do_send(LiveFrame(Live::Lagged, Instant::now()));
        }
        if let Some(fence) = self.fence.take() {
            // Let the next claim, on any node, take the stream at once (a no-op when it
            // was taken over meanwhile: the release names this epoch).
            let (store, key) = (self.store(), self.key.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) =
                    store.write(|c| store::release_stream(c, &key.project, &key.id, &fence))
                {
                    tracing::debug!(error = %e, "releasing a stream claim failed; it lapses with the node");
                }
            });
        }
    }
}

impl StreamActor {
    /// Takes what the claim (cluster mode) and the load found: the owner's state, or a
    /// replica's when another live node owns the stream.
    pub(super) fn settle_claim(
        &mut self,
        r: Result<(Option<Claim>, Snapshot), ActorError>,
        ctx: &mut Context<Self>,
    ) {
        match r {
            Ok((Some(Claim::Elsewhere { advertise, .. }), snapshot)) => {
                self.become_replica(advertise, snapshot, ctx)
            }
            Ok((Some(Claim::Owned { epoch, takeover }), snapshot)) => {
                let node = self.deps.cluster.as_ref().expect("claimed in cluster mode");
                self.fence = Some(Arc::new(Fence {
                    node_id: node.node_id.clone(),
                    epoch,
                }));
                self.deps.metrics.claims.inc();
                if takeover {
                    self.deps.metrics.takeovers.inc();
                    tracing::info!(stream = %self.path, epoch, "took the stream over from a node that is not live");
                }
                self.take_snapshot(snapshot, ctx);
            }
            Ok((None, snapshot)) => self.take_snapshot(snapshot, ctx),
            Err(e) => self.load_failed(e.to_string(), ctx),
        }
    }

    fn load_failed(&mut self, e: String, ctx: &mut Context<Self>) {
        tracing::warn!(error = %e, stream = %self.path, "loading stream failed");
        self.load_error = Some(format!("cannot load stream: {e}"));
        self.retire(ctx);
    }

    /// Holds the stream as read from storage. The owner repairs a `next_index` left
    /// behind by a failed commit; viewers already subscribed (a replica that became the
    /// owner) are told how far the stream has come.
    fn take_snapshot(&mut self, (prefix, stream): Snapshot, ctx: &mut Context<Self>) {
        // The stored row's run, to repair it when the chunks say otherwise.
        let stored = stream
            .as_ref()
            .map(|(row, _)| (row.next_index, row.next_sequence));
        let stream = match stream
            .map(|(row, spans)| Loaded::from_row(row, &spans))
            .transpose()
        {
            Ok(s) => s,
            Err(e) => return self.load_failed(e.to_string(), ctx),
        };
        let before = self.stream.as_ref().map(|s| s.machine.next_index());
        self.prefix = prefix.map(PrefixInfo::from);
        if let Some(s) = &stream {
            let next = s.machine.next_index();
            self.compaction = CompactionWindow::at(next);
            let sequence = s.next_sequence();
            if self.elsewhere.is_none() && stored != Some((next as i64, sequence.map(|q| q as i64)))
            {
                // Repair a next_index left behind by a failed commit.
                let (project, id) = (self.key.project.clone(), self.key.id.clone());
                let fence = self.fence.clone();
                drop(self.deps.writer.run(move |c| {
                    if let Some(f) = &fence {
                        store::check_fence(c, &project, &id, f)?;
                    }
                    store::set_next_index(c, &project, &id, (next, sequence))
                }));
            }
        }
        self.stream = stream;
        if let Some(before) = before {
            let after = self.stream.as_ref().map_or(0, |s| s.machine.next_index());
            self.broadcast_entries(before, after, &[]);
        }
        // Followers and new subscribers start from where the stream stands.
        self.publish();
    }

    /// Removes this actor's entry from its directory, if the entry is still its own.
    fn leave_directory(&self) {
        if let Some(dir) = self.directory.upgrade() {
            dir.retire(&self.key, self.generation);
        }
    }

    /// Leaves the directory and stops; messages already queued answer `Retired`.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        self.retired = true;
        self.leave_directory();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An actor's task (a tokio task, 128-byte aligned, holding actix's context with the
    /// actor inline) is the largest allocation each live stream makes: at 10,000 streams
    /// every size class it crosses costs megabytes. Header, scheduler, id and trailer
    /// take about 112 bytes, so the context must stay within 1,024 - 128 bytes for the
    /// task to be a 1 KiB allocation.
    #[test]
    fn an_actor_task_fits_in_one_kibibyte() {
        let context =
            std::mem::size_of::<actix::dev::ContextFut<StreamActor, Context<StreamActor>>>();
        assert!(
            context <= 1024 - 128,
            "the stream actor's context is {context} bytes (the actor {})",
            std::mem::size_of::<StreamActor>()
        );
    }
}
