//! Which indices a stream holds: disjoint runs, merged when they touch.

/// A run of consecutive indices `[start, end)`; `end_sequence` is the default sequence of
/// the entry at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub end_sequence: u64,
}

/// Disjoint spans, merged when they touch. A sorted `Vec`: a stream usually holds one
/// span, which costs 96 bytes here against a B-tree node's 368 (two of these per live
/// stream actor); the machine copies the set for every append anyway, so an insert's
/// shift costs no more than that copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// Sorted by start, disjoint, never touching.
    spans: Vec<Span>,
}

impl RangeSet {
    pub fn insert(&mut self, span: Span) {
        let mut i = self.spans.partition_point(|s| s.start < span.start);
        if self.spans.get(i).is_some_and(|s| s.start == span.start) {
            // Replaced, as a map keyed by start would.
            self.spans.remove(i);
        }
        let merge_prev = i > 0 && self.spans[i - 1].end == span.start;
        let merge_next = self.spans.get(i).is_some_and(|s| s.start == span.end);
        match (merge_prev, merge_next) {
            (true, true) => {
                let next = self.spans.remove(i);
                i -= 1;
                self.spans[i].end = next.end;
                self.spans[i].end_sequence = next.end_sequence;
            }
            (true, false) => {
                i -= 1;
                self.spans[i].end = span.end;
                self.spans[i].end_sequence = span.end_sequence;
            }
            (false, true) => self.spans[i].start = span.start,
            (false, false) => {
                // Most streams hold one span all their life: the first is given room for
                // itself only (a push would make room for four), later ones grow as usual.
                if self.spans.capacity() == 0 {
                    self.spans.reserve_exact(1);
                }
                self.spans.insert(i, span)
            }
        }
    }

    #[inline]
    pub fn contains(&self, index: u64) -> bool {
        let i = self.spans.partition_point(|s| s.start <= index);
        i > 0 && index < self.spans[i - 1].end
    }

    /// The span that ends exactly at `index`, if any.
    #[inline]
    pub fn ending_at(&self, index: u64) -> Option<Span> {
        let i = self.spans.partition_point(|s| s.start < index);
        (i > 0)
            .then(|| self.spans[i - 1])
            .filter(|s| s.end == index)
    }

    /// The run starting at 0, if index 0 is held.
    fn first_run(&self) -> Option<&Span> {
        self.spans.first().filter(|s| s.start == 0)
    }

    /// The end of the run starting at 0 (0 when index 0 is missing).
    #[inline]
    pub fn contiguous_end(&self) -> u64 {
        self.first_run().map_or(0, |s| s.end)
    }

    /// The default sequence at `contiguous_end` (0 when index 0 is missing).
    pub fn contiguous_end_sequence(&self) -> u64 {
        self.first_run().map_or(0, |s| s.end_sequence)
    }

    /// One past the highest index held, or 0.
    #[inline]
    pub fn end(&self) -> u64 {
        self.spans.last().map_or(0, |s| s.end)
    }

    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        self.spans.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// How many indices the spans hold.
    pub fn len(&self) -> u64 {
        self.spans.iter().map(|s| s.end - s.start).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Disjoint spans inserted in a scrambled order agree with a plain set of indices,
    /// and touching spans are merged into one.
    #[test]
    fn agrees_with_a_set_of_indices() {
        for seed in 0..50u64 {
            // Cut 0..400 into spans at pseudo-random points, then insert them scrambled.
            let mut cuts = vec![0u64];
            let mut x = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            while *cuts.last().unwrap() < 400 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                cuts.push((cuts.last().unwrap() + 1 + (x >> 59)).min(400));
            }
            let mut spans: Vec<Span> = cuts
                .windows(2)
                .map(|w| Span {
                    start: w[0],
                    end: w[1],
                    end_sequence: w[1] * 10,
                })
                .collect();
            for i in (1..spans.len()).rev() {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                spans.swap(i, (x >> 33) as usize % (i + 1));
            }
            // Leave some out, so gaps remain.
            let kept: Vec<Span> = spans
                .iter()
                .copied()
                .filter(|s| (s.start + seed) % 5 != 0)
                .collect();
            let mut set = RangeSet::default();
            let mut model = BTreeSet::new();
            for s in &kept {
                set.insert(*s);
                model.extend(s.start..s.end);
                for i in 0..=401 {
                    assert_eq!(set.contains(i), model.contains(&i), "seed {seed} index {i}");
                }
                assert_eq!(set.len(), model.len() as u64);
                assert_eq!(set.end(), model.last().map_or(0, |l| l + 1));
                let contiguous = (0..).take_while(|i| model.contains(i)).count() as u64;
                assert_eq!(set.contiguous_end(), contiguous);
                if contiguous > 0 {
                    assert_eq!(set.contiguous_end_sequence(), contiguous * 10);
                }
                // Spans stay sorted, disjoint and never touching.
                let v: Vec<&Span> = set.spans().collect();
                assert!(
                    v.windows(2).all(|w| w[0].end < w[1].start),
                    "seed {seed}: {v:?}"
                );
                for s in &v {
                    assert_eq!(set.ending_at(s.end), Some(**s));
                    assert_eq!(s.end_sequence, s.end * 10);
                }
            }
        }
    }
}
