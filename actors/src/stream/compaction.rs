//! The compaction policy: clients that append one entry per request leave a chunk per
//! entry; once enough small chunks lie side by side, the actor asks the writer to merge
//! them into one. Pure: the actor feeds it each commit's chunks and runs what it returns.

/// A chunk below this many payload bytes counts as small for compaction.
pub(super) const SMALL_CHUNK_BYTES: u64 = 64 << 10;
/// Compact once this many small chunks lie side by side.
pub(super) const COMPACT_AFTER_CHUNKS: u32 = 32;
/// Never build a compacted chunk larger than this.
pub(super) const MAX_COMPACTED_BYTES: u64 = 1 << 20;

/// Small chunks committed side by side since the last compaction: `[start, end)`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct CompactionWindow {
    start: u64,
    end: u64,
    chunks: u32,
    bytes: u64,
}

impl CompactionWindow {
    /// An empty window at index `at` (nothing before it is merged again).
    pub(super) fn at(at: u64) -> Self {
        Self {
            start: at,
            end: at,
            chunks: 0,
            bytes: 0,
        }
    }

    /// Notes the chunks a commit stored, as (first index, count, payload bytes), with
    /// `next` the stream's contiguous end. Returns the range `[start, end)` to merge once
    /// `COMPACT_AFTER_CHUNKS` small chunks line up, and starts afresh after it. A chunk
    /// that is not at the window's end or beyond `next` is not counted; a large one, or
    /// one that would make the merge too large, starts the window after it.
    pub(super) fn observe(&mut self, chunks: &[(u64, u64, u64)], next: u64) -> Option<(u64, u64)> {
        for &(first, count, bytes) in chunks {
            if first != self.end || first + count > next {
                continue;
            }
            if bytes >= SMALL_CHUNK_BYTES || self.bytes + bytes > MAX_COMPACTED_BYTES {
                *self = Self::at(first + count);
                continue;
            }
            self.end = first + count;
            self.chunks += 1;
            self.bytes += bytes;
        }
        if self.chunks < COMPACT_AFTER_CHUNKS {
            return None;
        }
        let range = (self.start, self.end);
        *self = Self::at(self.end);
        Some(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_chunks_side_by_side_are_merged_in_one_range() {
        let mut w = CompactionWindow::at(0);
        for i in 0..COMPACT_AFTER_CHUNKS as u64 - 1 {
            assert_eq!(w.observe(&[(i, 1, 100)], i + 1), None);
        }
        let last = COMPACT_AFTER_CHUNKS as u64 - 1;
        assert_eq!(w.observe(&[(last, 1, 100)], last + 1), Some((0, last + 1)));
        assert_eq!(w, CompactionWindow::at(last + 1), "afresh after the merge");
    }

    #[test]
    fn a_large_chunk_or_a_full_merge_starts_over_after_it() {
        let mut w = CompactionWindow::at(0);
        w.observe(&[(0, 1, 10), (1, 1, 10)], 2);
        assert_eq!(w.observe(&[(2, 5, SMALL_CHUNK_BYTES)], 7), None);
        assert_eq!(w, CompactionWindow::at(7));
        let mut w = CompactionWindow::at(0);
        let big = SMALL_CHUNK_BYTES - 1;
        let mut first = 0;
        while w.bytes + big <= MAX_COMPACTED_BYTES {
            w.observe(&[(first, 1, big)], first + 1);
            first += 1;
        }
        w.observe(&[(first, 1, big)], first + 1);
        assert_eq!(w, CompactionWindow::at(first + 1), "too large to merge");
    }

    #[test]
    fn chunks_out_of_place_or_past_the_contiguous_end_do_not_count() {
        let mut w = CompactionWindow::at(10);
        w.observe(&[(3, 1, 10), (20, 1, 10)], 30);
        assert_eq!(w, CompactionWindow::at(10), "not at the window's end");
        w.observe(&[(10, 5, 10)], 12);
        assert_eq!(
            w,
            CompactionWindow::at(10),
            "beyond next_index: a gap before it"
        );
    }
}
