//! Keeping the stream's section outline (`stream_sections`) close behind its contiguous
//! end. The actor keeps the outline in memory at that end and feeds it each commit's
//! entries as they are broadcast (after the writer's acknowledgement, never in the append
//! path); at most once per `OUTLINE_EVERY` it saves it through the writer, and lets it go
//! once saved when no commit came for that long. When it holds none (a stream just
//! loaded or idle a while, or after a commit it could not follow: one that completed
//! entries committed earlier out of order), it catches the stored outline up from
//! storage on a blocking thread, keeping the commits that land meanwhile to feed once the
//! catch-up returns. Readers of the outline catch up the rest themselves, so this only
//! bounds what they read.

use super::live::covering;
use super::*;
use logdog_schema::store::StoredOutline;
use logdog_schema::wire::{Entry, StreamType};

/// How often a stream that is being written saves its outline.
pub(super) const OUTLINE_EVERY: Duration = Duration::from_secs(1);

/// Most payload bytes of commits kept while a catch-up from storage runs; past it they
/// are dropped and the next update catches up from storage again.
const PENDING_MAX_BYTES: u64 = 16 << 20;

/// The outline's bookkeeping in the actor.
#[derive(Debug, Default)]
pub(super) struct OutlineUpkeep {
    /// Entries were committed (or the stream completed) since the last update.
    pub(super) dirty: bool,
    /// A save or a catch-up is running.
    busy: bool,
    /// The outline at the stream's contiguous end, fed in memory; dropped once saved
    /// when a second passes without commits, so an idle stream's actor does not hold it.
    live: Option<Box<StoredOutline>>,
    /// While a catch-up runs: the commits since the end it catches up to (boxed: it is
    /// rarely there, and the actor is kept small).
    pending: Option<Box<Pending>>,
    /// How far the stored row is known to be, and whether it is finished.
    saved: (u64, bool),
    /// When the last update was due (None: not yet).
    last: Option<Instant>,
}

impl OutlineUpkeep {
    /// True once per `OUTLINE_EVERY`, on the first call after it has passed.
    pub(super) fn due(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < OUTLINE_EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// Commits kept while a catch-up from storage runs.
#[derive(Debug)]
struct Pending {
    /// The contiguous end the kept commits continue from.
    end: u64,
    /// Each commit's range `[before, after)` and entries.
    commits: Vec<(u64, u64, Vec<Vec<Entry>>)>,
    bytes: u64,
}

impl StreamActor {
    /// Follows a commit that moved the contiguous end from `before` to `after`, holding
    /// `runs` (the batch's entries): fed to the outline in memory, or kept for a catch-up
    /// that is running. A commit it cannot follow drops the outline in memory.
    pub(super) fn follow_outline(&mut self, before: u64, after: u64, runs: Vec<Vec<Entry>>) {
        let Some(s) = &self.stream else { return };
        if after <= before || s.descriptor.stream_type != StreamType::Text {
            return;
        }
        let timestamp = s.descriptor.timestamp;
        let up = &mut self.outline;
        if let Some(o) = &mut up.live {
            match covering(&runs, before, after) {
                Some(entries) if o.fed_to == before && !o.finished => {
                    for e in entries {
                        o.feed_wire_entry(e, timestamp);
                    }
                }
                _ => up.live = None,
            }
        } else if let Some(p) = &mut up.pending {
            let bytes: u64 = runs
                .iter()
                .flatten()
                .map(|e| e.content.payload_bytes())
                .sum();
            if p.end == before && p.bytes + bytes <= PENDING_MAX_BYTES {
                p.end = after;
                p.bytes += bytes;
                p.commits.push((before, after, runs));
            } else {
                up.pending = None;
            }
        }
    }

    /// Saves the outline if entries were committed since the last update, catching it up
    /// from storage first when it is not held in memory.
    pub(super) fn refresh_outline(&mut self, ctx: &mut Context<Self>) {
        if self.outline.busy || self.elsewhere.is_some() || self.retired {
            return;
        }
        if !self.outline.dirty {
            // Idle: the saved outline is as far as the one in memory, which goes.
            if self
                .outline
                .live
                .as_ref()
                .is_some_and(|o| (o.fed_to, o.finished) == self.outline.saved)
            {
                self.outline.live = None;
            }
            return;
        }
        let Some(s) = &self.stream else { return };
        self.outline.dirty = false;
        if s.descriptor.stream_type != StreamType::Text
            || s.machine.is_archived()
            || s.machine.is_purged()
        {
            // An archived stream's outline was finished with its archive.
            self.outline.live = None;
            return;
        }
        let end = s.machine.next_index();
        let complete = s.machine.terminal_index() == Some(end as i64 - 1);
        let timestamp = s.descriptor.timestamp;
        let (store, writer) = (self.store(), self.deps.writer.clone());
        let (project, id) = (self.key.project.clone(), self.key.id.clone());
        if let Some(o) = &mut self.outline.live {
            if complete && o.fed_to == end && !o.finished {
                o.finish();
            }
            let (fed_to, finished) = self.outline.saved;
            if o.fed_to <= fed_to && (finished || !o.finished) {
                return;
            }
            let snapshot = (**o).clone();
            self.outline.busy = true;
            let save = writer.run(move |c| {
                store::save_outline(c, &project, &id, &snapshot, now_us()).map(|_| ())
            });
            let saved = (o.fed_to, o.finished);
            ctx.spawn(async move { settle(save.await) }.into_actor(self).map(
                move |r, act, _| {
                    act.outline.busy = false;
                    match r {
                        Ok(()) => act.outline.saved = saved,
                        Err(e) => {
                            act.outline.dirty = true;
                            tracing::debug!(error = ?e, stream = %act.path, "saving the section outline failed; readers catch it up");
                        }
                    }
                },
            ));
            return;
        }
        self.outline.busy = true;
        self.outline.pending = Some(Box::new(Pending {
            end,
            commits: Vec::new(),
            bytes: 0,
        }));
        let update = async move {
            let (p, i) = (project.clone(), id.clone());
            let (mut o, advanced) = blocking(move || {
                store.read(|c| {
                    let mut o = store::get_outline(c, &p, &i)?.unwrap_or_default();
                    let advanced =
                        store::catch_up_outline(c, &p, &i, &mut o, end, timestamp, true)?;
                    Ok((o, advanced))
                })
            })
            .await?;
            let finish = complete && o.fed_to == end && !o.finished;
            if finish {
                o.finish();
            }
            if advanced || finish {
                let snapshot = o.clone();
                let save = writer.run(move |c| {
                    store::save_outline(c, &project, &id, &snapshot, now_us()).map(|_| ())
                });
                settle(save.await)?;
            }
            Ok::<StoredOutline, ActorError>(o)
        };
        ctx.spawn(update.into_actor(self).map(move |r, act, _| {
            act.outline.busy = false;
            let pending = act.outline.pending.take();
            let mut o = match r {
                Ok(o) => o,
                Err(e) => {
                    act.outline.dirty = true;
                    tracing::debug!(error = %e, stream = %act.path, "updating the section outline failed; readers catch it up");
                    return;
                }
            };
            act.outline.saved = (o.fed_to, o.finished);
            // Kept in memory from here on if it reached the end it was caught up to and
            // every commit since then was kept.
            let (Some(p), false, true) = (pending, o.finished, o.fed_to == end) else {
                act.outline.dirty = true;
                return;
            };
            for (before, after, runs) in &p.commits {
                match covering(runs, *before, *after) {
                    Some(entries) if o.fed_to == *before => {
                        for e in entries {
                            o.feed_wire_entry(e, timestamp);
                        }
                    }
                    _ => {
                        act.outline.dirty = true;
                        return;
                    }
                }
            }
            if o.fed_to != p.end {
                act.outline.dirty = true;
                return;
            }
            act.outline.dirty |= o.fed_to > end;
            act.outline.live = Some(Box::new(o));
        }));
    }
}
