//! The `Directory`: finds or starts the one `StreamActor` of a stream.
//!
//! Actors live on a few dedicated arbiters, not on the HTTP worker that first asked.
//! Exactly one actor runs per stream even when requests race (DashMap's entry API). An
//! idle actor removes its own entry (only if it is still its own: a generation number)
//! and stops; a caller that meets it stopping retries once with a fresh actor, which
//! reloads the stream's state from storage.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use dashmap::DashMap;
use logdog_schema::names::StreamPath;

use crate::error::ActorError;
use crate::stream::{Depose, StreamActor, StreamDeps, StreamKey, Wake};

/// Tells an actor to stop (outside the generic `send`, whose bounds would shadow this one).
fn depose(addr: &Addr<StreamActor>) {
    addr.do_send(Depose);
}

/// Tells an actor its stream changed in storage.
fn wake(addr: &Addr<StreamActor>) {
    addr.do_send(Wake);
}

pub(crate) struct DirectoryInner {
    /// The key is shared with the actor (`StreamActor::key`): one copy of the names.
    actors: DashMap<Arc<StreamKey>, (u64, Addr<StreamActor>)>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    generation: AtomicU64,
    pub(crate) deps: Arc<StreamDeps>,
}

impl DirectoryInner {
    /// Removes `key` if its entry still belongs to `generation`.
    pub(crate) fn retire(&self, key: &StreamKey, generation: u64) {
        self.actors.remove_if(key, |_, (g, _)| *g == generation);
    }
}

#[derive(Clone)]
pub struct Directory {
    inner: Arc<DirectoryInner>,
    /// The arbiters' threads, stopped by `stop`.
    arbiters: Arc<Vec<Arbiter>>,
}

impl Directory {
    /// Starts `threads` arbiters for stream actors. Must run inside an actix System.
    pub fn new(deps: StreamDeps, threads: usize) -> Self {
        let arbiters: Vec<Arbiter> = (0..threads.max(1)).map(|_| Arbiter::new()).collect();
        let inner = Arc::new(DirectoryInner {
            actors: DashMap::new(),
            arbiters: arbiters.iter().map(|a| a.handle()).collect(),
            next_arbiter: AtomicUsize::new(0),
            generation: AtomicU64::new(1),
            deps: Arc::new(deps),
        });
        Self {
            inner,
            arbiters: Arc::new(arbiters),
        }
    }

    /// Stops every stream actor's arbiter (at shutdown, after the HTTP server stopped);
    /// the writer commits what was queued and exits once the actors are gone.
    pub fn stop(&self) {
        for a in self.arbiters.iter() {
            a.stop();
        }
    }

    pub fn deps(&self) -> &StreamDeps {
        &self.inner.deps
    }

    /// How many stream actors run.
    pub fn len(&self) -> usize {
        self.inner.actors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.actors.is_empty()
    }

    /// Cluster mode: stops every stream actor whose key `keep` refuses (all of them when
    /// this node may have lost its leases), without touching storage. Answers how many.
    pub fn depose(&self, keep: impl Fn(&StreamKey) -> bool) -> usize {
        let gone: Vec<(Arc<StreamKey>, Addr<StreamActor>)> = self
            .inner
            .actors
            .iter()
            .filter(|e| !keep(e.key()))
            .map(|e| (e.key().clone(), e.value().1.clone()))
            .collect();
        for (key, addr) in &gone {
            self.inner.actors.remove_if(key, |_, (_, a)| a == addr);
            addr.do_send(Depose);
        }
        gone.len()
    }

    /// Cluster mode: another node committed a change to `key` (a notification): its
    /// actor here, if one runs and is a replica, reads it and tells its viewers.
    pub fn wake(&self, key: &StreamKey) {
        if let Some(addr) = self.live(key) {
            wake(&addr);
        }
    }

    /// Wakes every actor (the notification listener reconnected and may have missed some).
    pub fn wake_all(&self) {
        let all: Vec<Addr<StreamActor>> = self.inner.actors.iter().map(|e| e.1.clone()).collect();
        for addr in &all {
            wake(addr);
        }
    }

    /// The live actor of a stream, if one runs.
    pub fn live(&self, key: &StreamKey) -> Option<Addr<StreamActor>> {
        self.inner.actors.get(key).map(|e| e.1.clone())
    }

    /// The actor of `project`/`path`, started if none runs.
    pub fn get(&self, project: &str, path: &StreamPath) -> Addr<StreamActor> {
        let key = StreamKey {
            project: project.to_owned(),
            id: path.id(),
        };
        if let Some(live) = self.live(&key) {
            return live;
        }
        let key = Arc::new(key);
        let entry = self.inner.actors.entry(key.clone()).or_insert_with(|| {
            let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
            let i =
                self.inner.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.inner.arbiters.len();
            let directory: Weak<DirectoryInner> = Arc::downgrade(&self.inner);
            let (path, deps) = (path.clone(), self.inner.deps.clone());
            let addr = StreamActor::start_in_arbiter(&self.inner.arbiters[i], move |_| {
                StreamActor::new(key, path, generation, directory, deps)
            });
            (generation, addr)
        });
        entry.1.clone()
    }

    /// Like `send`, for reads: when no actor runs for the stream and storage has no such
    /// stream, answers 404 without starting one, so reads of made-up streams cost one
    /// lookup and leave nothing behind.
    pub async fn send_existing<M, T>(
        &self,
        project: &str,
        path: &StreamPath,
        msg: M,
    ) -> Result<T, ActorError>
    where
        M: Message<Result = Result<T, ActorError>> + Clone + Send + 'static,
        T: Send + 'static,
        StreamActor: Handler<M>,
        <StreamActor as Actor>::Context: ToEnvelope<StreamActor, M>,
    {
        let key = StreamKey {
            project: project.to_owned(),
            id: path.id(),
        };
        if self.live(&key).is_none() {
            let store = self.inner.deps.store.clone();
            let exists = crate::error::blocking(move || {
                store.read(|c| logdog_schema::store::get_stream(c, &key.project, &key.id))
            })
            .await?
            .is_some();
            if !exists {
                return Err(ActorError::stream_not_found(path));
            }
        }
        self.send(project, path, msg).await
    }

    /// Sends `msg` to the stream's actor, retrying once if that actor was stopping.
    pub async fn send<M, T>(
        &self,
        project: &str,
        path: &StreamPath,
        msg: M,
    ) -> Result<T, ActorError>
    where
        M: Message<Result = Result<T, ActorError>> + Clone + Send + 'static,
        T: Send + 'static,
        StreamActor: Handler<M>,
        <StreamActor as Actor>::Context: ToEnvelope<StreamActor, M>,
    {
        let mut last = ActorError::Unavailable("stream owner unavailable".into());
        for _ in 0..2 {
            let addr = self.get(project, path);
            match addr.send(msg.clone()).await {
                Ok(Err(ActorError::Deposed(m))) => {
                    // Another node took the stream over: drop this actor; the retry
                    // claims afresh and finds the new owner.
                    depose(&addr);
                    last = ActorError::Deposed(m);
                    let key = StreamKey {
                        project: project.to_owned(),
                        id: path.id(),
                    };
                    self.inner.actors.remove_if(&key, |_, (_, a)| *a == addr);
                }
                Ok(Err(ActorError::Retired)) | Err(MailboxError::Closed) => {
                    last = ActorError::Unavailable("stream owner was stopping".into());
                    // Make sure the next `get` does not hand out the same actor.
                    let key = StreamKey {
                        project: project.to_owned(),
                        id: path.id(),
                    };
                    self.inner.actors.remove_if(&key, |_, (_, a)| *a == addr);
                }
                Ok(r) => return r,
                Err(e) => return Err(e.into()),
            }
        }
        Err(last)
    }
}
