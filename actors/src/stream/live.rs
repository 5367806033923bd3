//! Telling viewers: the followers' progress and the subscribers' frames, built once per
//! change and shared by every session.

use super::*;

impl StreamActor {
    /// Tells followers where the stream stands (only when that changed).
    pub(super) fn publish(&mut self) {
        let now = match &self.stream {
            Some(s) => Progress {
                next_index: s.machine.next_index(),
                terminal_index: s.machine.terminal_index(),
                archived: s.machine.is_archived(),
                gone: s.machine.is_purged(),
            },
            None => Progress {
                gone: true,
                ..Progress::default()
            },
        };
        let was = std::mem::replace(&mut self.published, now);
        if was == now {
            return;
        }
        if let Some(tx) = &self.progress {
            tx.send_replace(now);
        }
        let lifecycle_changed = (was.terminal_index, was.archived, was.gone)
            != (now.terminal_index, now.archived, now.gone);
        if lifecycle_changed && !self.subscribers.is_empty() {
            let stream = self.stream.as_ref().map(|s| s.json(&self.key, &self.path));
            let frame = logdog_schema::wire::state_frame(stream.as_ref());
            self.broadcast(Live::State {
                frame: frame.into(),
                progress: now,
            });
        }
    }

    /// Pushes one frame to every live subscriber without ever waiting: a full mailbox
    /// drops that subscriber from the live set and tells it (once) to catch up.
    pub(super) fn broadcast(&mut self, live: Live) {
        let at = Instant::now();
        self.subscribers
            .retain(|(_, r)| match r.try_send(LiveFrame(live.clone(), at)) {
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
    pub(super) fn broadcast_entries(
        &mut self,
        before: u64,
        after: u64,
        runs: &[Vec<logdog_schema::wire::Entry>],
    ) {
        if after <= before || self.subscribers.is_empty() {
            return;
        }
        let live = match covering(runs, before, after) {
            Some(entries) => Live::Entries {
                first: before,
                end: after,
                frame: logdog_schema::wire::entries_frame(entries).into(),
            },
            None => Live::Advanced { end: after },
        };
        self.broadcast(live);
    }
}

/// The entries of a commit's `runs` in `[before, after)`, in index order, if they are all
/// there (a commit that completes entries committed earlier holds only its own): what the
/// live frame and the outline in memory are built from.
pub(super) fn covering(
    runs: &[Vec<logdog_schema::wire::Entry>],
    before: u64,
    after: u64,
) -> Option<Vec<&logdog_schema::wire::Entry>> {
    let mut entries: Vec<&logdog_schema::wire::Entry> = runs
        .iter()
        .flatten()
        .filter(|e| (before..after).contains(&e.stream_index))
        .collect();
    entries.sort_by_key(|e| e.stream_index);
    entries.dedup_by_key(|e| e.stream_index);
    (entries.len() as u64 == after - before).then_some(entries)
}
