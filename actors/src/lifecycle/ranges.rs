//! Which indices a stream holds: disjoint runs, merged when they touch.

use std::collections::BTreeMap;

/// A run of consecutive indices `[start, end)`; `end_sequence` is the default sequence of
/// the entry at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub end_sequence: u64,
}

/// Disjoint spans, merged when they touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start → span
    spans: BTreeMap<u64, Span>,
}

impl RangeSet {
    pub fn insert(&mut self, span: Span) {
        let mut span = span;
        // Merge with the span ending at our start.
        if let Some((&s, prev)) = self.spans.range(..span.start).next_back() {
            if prev.end == span.start {
                span.start = s;
                self.spans.remove(&s);
            }
        }
        // Merge with the span starting at our end.
        if let Some(next) = self.spans.remove(&span.end) {
            span.end = next.end;
            span.end_sequence = next.end_sequence;
        }
        self.spans.insert(span.start, span);
    }

    #[inline]
    pub fn contains(&self, index: u64) -> bool {
        self.spans
            .range(..=index)
            .next_back()
            .is_some_and(|(_, s)| index < s.end)
    }

    /// The span that ends exactly at `index`, if any.
    #[inline]
    pub fn ending_at(&self, index: u64) -> Option<Span> {
        self.spans
            .range(..index)
            .next_back()
            .map(|(_, s)| *s)
            .filter(|s| s.end == index)
    }

    /// The end of the run starting at 0 (0 when index 0 is missing).
    #[inline]
    pub fn contiguous_end(&self) -> u64 {
        self.spans.get(&0).map_or(0, |s| s.end)
    }

    /// The default sequence at `contiguous_end` (0 when index 0 is missing).
    pub fn contiguous_end_sequence(&self) -> u64 {
        self.spans.get(&0).map_or(0, |s| s.end_sequence)
    }

    /// One past the highest index held, or 0.
    #[inline]
    pub fn end(&self) -> u64 {
        self.spans.values().next_back().map_or(0, |s| s.end)
    }

    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        self.spans.values()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// How many indices the spans hold.
    pub fn len(&self) -> u64 {
        self.spans.values().map(|s| s.end - s.start).sum()
    }
}
