//! `Cursor`: where one viewer stands, the pure part of a watch session. It knows what was
//! sent (`next`), the highest contiguous end heard of (`known_end`), the terminal index,
//! and since when the viewer has been behind; it decides what to read, whether a live
//! frame continues what was sent, when the viewer is done, and when it has lagged. The
//! session actor does the sending, reading and closing; this holds every rule, so the rules
//! are tested without sockets or actors.

use std::time::{Duration, Instant};

use logdog_actors::stream::Progress;
use logdog_schema::store::ReadRange;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cursor {
    /// The first index this viewer has not been sent.
    next: u64,
    /// The highest contiguous end heard of.
    known_end: u64,
    terminal: Option<i64>,
    /// The stream is archived: replay what is stored (skipping gaps), then end.
    archived: bool,
    /// Last time the viewer was sent entries.
    last_progress: Instant,
    /// Since when the viewer has been behind (None while caught up).
    behind_since: Option<Instant>,
}

impl Cursor {
    pub(super) fn new(from: u64, archived: bool, now: Instant) -> Self {
        Self {
            next: from,
            known_end: 0,
            terminal: None,
            archived,
            last_progress: now,
            behind_since: None,
        }
    }

    /// The first index the viewer has not been sent: where it resumes.
    pub(super) fn next(&self) -> u64 {
        self.next
    }

    pub(super) fn terminal(&self) -> Option<i64> {
        self.terminal
    }

    pub(super) fn archived(&self) -> bool {
        self.archived
    }

    pub(super) fn behind_since(&self) -> Option<Instant> {
        self.behind_since
    }

    /// Learns of a contiguous end `end` from a frame the stream actor sent at `at`; the
    /// viewer is behind from then if it has not been sent that far.
    pub(super) fn note_end(&mut self, end: u64, at: Instant) {
        if end > self.next && self.behind_since.is_none() {
            self.behind_since = Some(at);
        }
        self.known_end = self.known_end.max(end);
    }

    /// Learns where the stream stands (a subscription's answer or a state frame).
    pub(super) fn note_progress(&mut self, p: &Progress, at: Instant) {
        self.note_end(p.next_index, at);
        self.archived |= p.archived;
        if p.terminal_index.is_some() {
            self.terminal = p.terminal_index;
        }
    }

    /// Dropped from the live set at `at` (a full mailbox): behind until it catches up.
    pub(super) fn dropped(&mut self, at: Instant) {
        self.behind_since.get_or_insert(at);
    }

    /// Nothing to read: the viewer has everything known (never for an archived stream,
    /// whose replay runs until storage has nothing more).
    pub(super) fn caught_up(&self) -> bool {
        !self.archived && self.next >= self.known_end
    }

    /// Caught up and in the live set: not behind any more.
    pub(super) fn settle(&mut self) {
        self.behind_since = None;
    }

    /// The next page to read from storage: contiguous up to `known_end`, or for an
    /// archived stream whatever is stored from `next` on.
    pub(super) fn next_read(&self, count: usize, bytes: u64) -> ReadRange {
        ReadRange {
            from: self.next,
            end: if self.archived {
                u64::MAX >> 1
            } else {
                self.known_end
            },
            count,
            bytes,
            contiguous: !self.archived,
        }
    }

    /// Whether a live frame of entries `[first, …)` continues exactly what was sent.
    pub(super) fn continues(&self, first: u64) -> bool {
        first == self.next
    }

    /// Entries up to `end` (exclusive) were sent at `now`.
    pub(super) fn sent(&mut self, end: u64, now: Instant) {
        self.next = end.max(self.next);
        self.last_progress = now;
        if self.next >= self.known_end {
            self.behind_since = None;
        }
    }

    /// The terminal index, once the viewer has been sent it: time for `end`.
    pub(super) fn finished(&self) -> Option<i64> {
        self.terminal.filter(|t| self.next as i64 > *t)
    }

    /// The `end` frame's index when an archive's replay ran out: the terminal index, or
    /// the last entry sent.
    pub(super) fn replay_end(&self) -> i64 {
        self.terminal.unwrap_or(self.next as i64 - 1)
    }

    /// Behind and without progress for longer than `lag_timeout`, counted from the later
    /// of its last send and the moment it fell behind.
    pub(super) fn lagged(&self, now: Instant, lag_timeout: Duration) -> bool {
        self.behind_since.is_some_and(|behind| {
            now.saturating_duration_since(self.last_progress.max(behind)) > lag_timeout
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn progress(next_index: u64, terminal_index: Option<i64>) -> Progress {
        Progress {
            next_index,
            terminal_index,
            ..Progress::default()
        }
    }

    #[test]
    fn a_viewer_reads_up_to_the_known_end_then_follows_live_frames() {
        let t0 = Instant::now();
        let mut c = Cursor::new(2, false, t0);
        c.note_progress(&progress(10, None), t0);
        assert!(!c.caught_up());
        assert_eq!(c.behind_since(), Some(t0));
        let r = c.next_read(1000, 4096);
        assert_eq!((r.from, r.end, r.contiguous), (2, 10, true));
        c.sent(10, t0 + S);
        assert!(c.caught_up());
        assert_eq!(c.behind_since(), None, "caught up");
        // A live frame continues exactly at `next`; one from further on does not.
        assert!(c.continues(10) && !c.continues(11));
        c.note_end(12, t0 + S);
        c.sent(12, t0 + S);
        assert_eq!((c.next(), c.next_read(1, 1).end), (12, 12));
    }

    #[test]
    fn the_end_comes_after_the_terminal_entry() {
        let t0 = Instant::now();
        let mut c = Cursor::new(0, false, t0);
        c.note_progress(&progress(3, Some(2)), t0);
        assert_eq!(c.terminal(), Some(2));
        c.sent(2, t0);
        assert_eq!(c.finished(), None, "entry 2 not sent yet");
        c.sent(3, t0);
        assert_eq!(c.finished(), Some(2));
        // A later progress without a terminal index keeps the one known.
        c.note_progress(&progress(3, None), t0);
        assert_eq!(c.terminal(), Some(2));
    }

    #[test]
    fn an_archived_stream_is_replayed_from_storage_with_gaps() {
        let t0 = Instant::now();
        let mut c = Cursor::new(5, true, t0);
        assert!(
            !c.caught_up(),
            "an archive is read until storage has nothing more"
        );
        let r = c.next_read(10, 100);
        assert_eq!((r.from, r.contiguous), (5, false));
        assert!(r.end > 1 << 53);
        assert_eq!(c.replay_end(), 4);
        c.note_progress(&progress(9, Some(8)), t0);
        assert_eq!(c.replay_end(), 8);
        // A stream archived while watched switches to the replay.
        let mut live = Cursor::new(0, false, t0);
        live.note_progress(
            &Progress {
                archived: true,
                ..progress(4, Some(3))
            },
            t0,
        );
        assert!(!live.next_read(1, 1).contiguous);
    }

    #[test]
    fn lag_counts_from_the_later_of_falling_behind_and_the_last_send() {
        let t0 = Instant::now();
        let mut c = Cursor::new(0, false, t0);
        assert!(!c.lagged(t0 + 100 * S, S), "never behind");
        c.note_end(10, t0 + S);
        assert!(!c.lagged(t0 + S + S / 2, S));
        assert!(c.lagged(t0 + 3 * S, S));
        // Progress (short of the end) restarts the count; catching up ends it.
        c.sent(5, t0 + 3 * S);
        assert!(!c.lagged(t0 + 3 * S + S / 2, S));
        assert!(c.lagged(t0 + 5 * S, S));
        c.sent(10, t0 + 5 * S);
        assert!(!c.lagged(t0 + 100 * S, S));
        // Dropped from the live set: behind from then, unless behind already.
        c.dropped(t0 + 6 * S);
        assert_eq!(c.behind_since(), Some(t0 + 6 * S));
        c.dropped(t0 + 7 * S);
        assert_eq!(c.behind_since(), Some(t0 + 6 * S));
        c.settle();
        assert_eq!(c.behind_since(), None);
    }
}
