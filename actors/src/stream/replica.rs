//! Cluster mode: the actor of a stream another node owns.
//!
//! Writes and `Load` answer `Elsewhere` (the HTTP layer forwards them to the owner). For
//! the viewers of this node the actor is a replica: it holds the stream as stored, and on
//! every wake-up (the owner's `NOTIFY` after a commit, relayed by the node's listener, or
//! the periodic check) it reads what changed from PostgreSQL once and fans it out to its
//! own subscribers and followers exactly as the owner does: viewers on every node get the
//! same contiguous frames.
//!
//! A replica nobody follows stops after [`ELSEWHERE_FOR`] (so a burst of forwarded writes
//! costs one claim). One that is followed stays; a write that reaches it after that long
//! claims the stream again first, and when the owner is gone the replica becomes the owner
//! in place, keeping its viewers.

use super::*;

/// How long an actor that found the stream owned by another node trusts that answer:
/// after it, the next write claims again (and an unfollowed replica stops).
pub(super) const ELSEWHERE_FOR: Duration = Duration::from_millis(200);

/// A replica re-reads the stream this often even without a wake-up (a notification lost
/// while the listener reconnected, a prefix deleted on another node).
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// A wake-up reads at most this many new entries to send as one frame; past it, viewers
/// are told to read from storage themselves.
const LIVE_READ_MAX: usize = 2000;

/// The owner as this actor last saw it.
pub(super) struct Elsewhere {
    pub(super) advertise: String,
    /// When the claim that found it ran.
    checked: Instant,
    /// A claim is under way.
    checking: bool,
    /// A refresh is under way; `dirty` when a wake-up came meanwhile.
    refreshing: bool,
    dirty: bool,
}

impl StreamActor {
    pub(super) fn followed(&self) -> bool {
        self.progress
            .as_ref()
            .is_some_and(|tx| tx.receiver_count() > 0)
            || !self.subscribers.is_empty()
    }

    /// Becomes the replica of a stream `advertise` owns, from a snapshot read after the
    /// claim found it.
    pub(super) fn become_replica(
        &mut self,
        advertise: String,
        snapshot: Snapshot,
        ctx: &mut Context<Self>,
    ) {
        self.elsewhere = Some(Box::new(Elsewhere {
            advertise,
            checked: Instant::now(),
            checking: false,
            refreshing: false,
            dirty: false,
        }));
        self.take_snapshot(snapshot, ctx);
        ctx.run_later(ELSEWHERE_FOR, |act, ctx| {
            if act.elsewhere.is_some() && !act.followed() {
                act.retire(ctx);
            }
        });
        ctx.run_interval(REFRESH_EVERY, |act, ctx| {
            if act.followed() {
                act.refresh(ctx);
            }
        });
    }

    /// The answer to a write while a replica: `Elsewhere`, after claiming again when the
    /// last claim is old (the owner may have gone; then this actor becomes the owner, and
    /// the messages after this one see it).
    pub(super) fn owner_elsewhere(&mut self, ctx: &mut Context<Self>) -> Option<ActorError> {
        let e = self.elsewhere.as_mut()?;
        let err = ActorError::Elsewhere(e.advertise.clone());
        if e.checking || e.checked.elapsed() < ELSEWHERE_FOR {
            return Some(err);
        }
        e.checking = true;
        let (deps, key, path) = (self.deps.clone(), self.key.clone(), self.path.clone());
        ctx.wait(
            async move {
                blocking(move || {
                    let claimed = claim(&deps, &key)?;
                    let snapshot = match claimed {
                        Some(Claim::Owned { .. }) => load(&deps.store, &key, &path)?,
                        _ => (None, None),
                    };
                    Ok((claimed, snapshot))
                })
                .await
            }
            .into_actor(self)
            .map(|r, act, ctx| match r {
                Ok((Some(Claim::Elsewhere { advertise, .. }), _)) => {
                    if let Some(e) = &mut act.elsewhere {
                        e.advertise = advertise;
                        e.checked = Instant::now();
                        e.checking = false;
                    }
                }
                Ok((claimed, snapshot)) => {
                    tracing::info!(stream = %act.path, "the stream's owner is gone: this node's replica becomes the owner");
                    act.elsewhere = None;
                    act.settle_claim(Ok((claimed, snapshot)), ctx);
                }
                Err(e) => {
                    tracing::debug!(error = %e, stream = %act.path, "claiming again failed");
                    if let Some(e) = &mut act.elsewhere {
                        e.checking = false;
                    }
                }
            }),
        );
        Some(err)
    }

    /// Reads the stream again and tells viewers what changed (the new entries read once,
    /// encoded once). At most one read runs; wake-ups meanwhile cause one more.
    pub(super) fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(e) = &mut self.elsewhere else {
            return;
        };
        if e.refreshing {
            e.dirty = true;
            return;
        }
        e.refreshing = true;
        let known = self.stream.as_ref().map(|s| s.machine.next_index());
        let live = !self.subscribers.is_empty();
        let (store, key, path) = (self.store(), self.key.clone(), self.path.clone());
        let read = blocking(move || {
            let snapshot = load(&store, &key, &path)?;
            let end = snapshot.1.as_ref().map(|(row, _)| row.next_index as u64);
            let entries = match (known, end) {
                (Some(from), Some(end)) if live && end > from => store.read(|c| {
                    store::read_entries(
                        c,
                        &key.project,
                        &key.id,
                        store::ReadRange {
                            from,
                            end,
                            count: LIVE_READ_MAX,
                            bytes: u64::MAX,
                            contiguous: true,
                        },
                    )
                })?,
                _ => Vec::new(),
            };
            Ok((snapshot, entries))
        });
        ctx.spawn(read.into_actor(self).map(move |r, act, ctx| {
            let Some(e) = &mut act.elsewhere else {
                return; // became the owner meanwhile; its own snapshot is newer
            };
            e.refreshing = false;
            let again = std::mem::take(&mut e.dirty);
            match r {
                Ok(((prefix, stream), entries)) => {
                    match stream
                        .map(|(row, spans)| Loaded::from_row(row, &spans))
                        .transpose()
                    {
                        Ok(stream) => {
                            let before = known.unwrap_or(0);
                            let after = stream.as_ref().map_or(0, |s| s.machine.next_index());
                            act.prefix = prefix.map(PrefixInfo::from);
                            act.stream = stream;
                            act.broadcast_entries(before, after, &[entries]);
                            act.publish();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, stream = %act.path, "replica: stored stream unreadable")
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, stream = %act.path, "replica: reading the stream failed; the next wake-up retries")
                }
            }
            if again {
                act.refresh(ctx);
            }
        }));
    }
}

impl Handler<Wake> for StreamActor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        if self.followed() {
            self.refresh(ctx);
        }
    }
}

impl Handler<Peek> for StreamActor {
    type Result = Result<StreamJson, ActorError>;

    fn handle(&mut self, msg: Peek, _: &mut Context<Self>) -> Self::Result {
        self.gate_read()?;
        self.visible(msg.see_purged)
    }
}
