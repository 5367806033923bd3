//! The stream lifecycle as a pure state machine: which entries are stored or in flight,
//! what an append may add, and the transitions streaming → terminated → (sealed) →
//! archived. No I/O: the `StreamActor` wraps it with storage and notifications.

use std::collections::BTreeMap;

use logdog_schema::models::StreamRow;
use logdog_schema::store::ChunkSpan;
use logdog_schema::wire::{Archival, Entry, IncomingEntry, StreamType};

mod ranges;
#[cfg(test)]
mod tests;

pub use ranges::{RangeSet, Span};

/// Why the machine refused an event; the actor maps it to an API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

/// The new entries an append adds, split into runs of consecutive indices (one chunk each).
#[derive(Debug, Clone, PartialEq)]
pub struct AppendPlan {
    /// The batch the runs belong to, when there are any.
    pub batch: Option<u64>,
    pub runs: Vec<Vec<Entry>>,
    pub accepted: u64,
    pub duplicates: u64,
    /// Batches still in flight that hold entries this request repeated: the answer waits
    /// for them too.
    pub waits_for: Vec<u64>,
    /// The contiguous end (stored or in flight) before and after this batch, and the
    /// sequence at `end_after`.
    pub end_before: u64,
    pub end_after: u64,
    pub sequence_after: u64,
}

/// What the machine knows about one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMachine {
    stream_type: StreamType,
    /// Descriptor timestamp: `time_offset` defaults count from it.
    timestamp_us: i64,
    /// Set once terminated; -1 for a stream terminated empty.
    terminal_index: Option<i64>,
    terminated_us: Option<i64>,
    sealed: bool,
    archival: Archival,
    purged: bool,
    /// Entries whose commit succeeded.
    stored: RangeSet,
    /// Entries handed to the writer, by batch.
    inflight: BTreeMap<u64, Vec<Span>>,
    next_batch: u64,
}

impl StreamMachine {
    pub fn new(stream_type: StreamType, timestamp_us: i64) -> Self {
        Self {
            stream_type,
            timestamp_us,
            terminal_index: None,
            terminated_us: None,
            sealed: false,
            archival: Archival::None,
            purged: false,
            stored: RangeSet::default(),
            inflight: BTreeMap::new(),
            next_batch: 1,
        }
    }

    /// The machine of a stored stream: its row's lifecycle columns, and the spans of its
    /// chunks from `next_index − 1` on (everything below `next_index` is stored; without
    /// chunks, as after archival, the row's `next_sequence` says where the sequence
    /// stands). The row's enums were checked when it was read: an unknown stored archival
    /// state fails the read (`StoreError::Corrupt`), it never becomes a default.
    pub fn restore(
        stream_type: StreamType,
        timestamp_us: i64,
        row: &StreamRow,
        spans: &[ChunkSpan],
    ) -> Self {
        let mut m = Self::new(stream_type, timestamp_us);
        if row.terminated_us.is_some() {
            m.terminal_index = Some(row.terminal_index);
            m.terminated_us = row.terminated_us;
        }
        m.sealed = row.sealed;
        m.archival = row.archival;
        m.purged = row.purged;
        if let Some(first) = spans.first() {
            if first.first_index > 0 && (first.first_index as i64) <= row.next_index {
                m.stored.insert(Span {
                    start: 0,
                    end: first.first_index,
                    end_sequence: 0,
                });
            }
        } else if row.next_index > 0 {
            m.stored.insert(Span {
                start: 0,
                end: row.next_index as u64,
                end_sequence: row.next_sequence.unwrap_or(0) as u64,
            });
        }
        for s in spans {
            m.stored.insert(Span {
                start: s.first_index,
                end: s.first_index + s.count,
                end_sequence: s.end_sequence,
            });
        }
        m
    }

    pub fn stream_type(&self) -> StreamType {
        self.stream_type
    }

    /// The terminal index once terminated (-1: terminated empty).
    pub fn terminal_index(&self) -> Option<i64> {
        self.terminal_index
    }

    pub fn terminated_us(&self) -> Option<i64> {
        self.terminated_us
    }

    /// Sealed for archival: no more appends.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    pub fn archival(&self) -> Archival {
        self.archival
    }

    pub fn is_purged(&self) -> bool {
        self.purged
    }

    /// Every entry below it is stored.
    pub fn next_index(&self) -> u64 {
        self.stored.contiguous_end()
    }

    /// The default sequence of the entry at `next_index`.
    pub fn next_sequence(&self) -> u64 {
        self.stored.contiguous_end_sequence()
    }

    /// Stored and in-flight entries together.
    fn predicted(&self) -> RangeSet {
        let mut all = self.stored.clone();
        for span in self.inflight.values().flatten() {
            all.insert(*span);
        }
        all
    }

    /// The highest index stored or in flight, or -1.
    pub fn highest_index(&self) -> i64 {
        self.predicted().end() as i64 - 1
    }

    pub fn is_terminated(&self) -> bool {
        self.terminated_us.is_some()
    }

    pub fn is_archived(&self) -> bool {
        matches!(self.archival, Archival::Partial | Archival::Complete)
    }

    /// Terminated, and every entry up to the terminal index stored.
    pub fn is_complete(&self) -> bool {
        self.terminal_index
            .is_some_and(|t| self.next_index() as i64 == t + 1)
    }

    /// Checks an append and turns its new entries into runs, marking them in flight.
    /// Nothing changes when it returns an error.
    pub fn plan_append(
        &mut self,
        mut incoming: Vec<IncomingEntry>,
        arrival_us: i64,
    ) -> Result<AppendPlan, LifecycleError> {
        if self.is_archived() {
            return Err(LifecycleError::Conflict("stream is archived".into()));
        }
        if self.sealed {
            return Err(LifecycleError::Conflict(
                "stream is sealed for archival; it accepts no more entries".into(),
            ));
        }
        for e in &incoming {
            if e.content.stream_type() != self.stream_type {
                return Err(LifecycleError::Invalid(format!(
                    "entry {} is {} but the stream is {}",
                    e.stream_index,
                    e.content.stream_type().as_str(),
                    self.stream_type.as_str()
                )));
            }
            if let Some(t) = self.terminal_index {
                if e.stream_index as i64 > t {
                    return Err(LifecycleError::Conflict(format!(
                        "entry {} is beyond the terminal index {t}",
                        e.stream_index
                    )));
                }
            }
        }
        // Stable, as requests list them: the first of two entries with one index wins.
        incoming.sort_by_key(|e| e.stream_index);

        let mut known = self.predicted();
        let end_before = known.contiguous_end();
        let mut waits_for = Vec::new();
        let mut duplicates = 0;
        let mut runs: Vec<Vec<Entry>> = Vec::new();
        let mut fresh = RangeSet::default();
        // The run of new entries being taken, not yet in `known` and `fresh`: a request's
        // consecutive entries (the usual batch) cost two span inserts, not two per entry.
        let mut taking: Option<Span> = None;
        let default_offset = (arrival_us - self.timestamp_us).max(0);
        for e in incoming {
            let i = e.stream_index;
            if taking.is_some_and(|t| t.start <= i && i < t.end) || known.contains(i) {
                duplicates += 1;
                if !self.stored.contains(i) {
                    if let Some((&b, _)) = self
                        .inflight
                        .iter()
                        .find(|(_, spans)| spans.iter().any(|s| s.start <= i && i < s.end))
                    {
                        if !waits_for.contains(&b) {
                            waits_for.push(b);
                        }
                    }
                }
                continue;
            }
            let sequence = match e.sequence {
                Some(s) => s,
                None if i == 0 => 0,
                None => match taking {
                    Some(t) if t.end == i => t.end_sequence,
                    _ => known.ending_at(i).map(|s| s.end_sequence).ok_or_else(|| {
                        LifecycleError::Invalid(format!(
                            "entry {i} is above next_index and its predecessor is not stored: it must carry sequence"
                        ))
                    })?,
                },
            };
            let entry = Entry {
                stream_index: i,
                prefix_index: e.prefix_index,
                sequence,
                time_offset_us: e.time_offset_us.unwrap_or(default_offset),
                content: e.content,
            };
            let end_sequence = sequence + entry.content.sequence_units();
            match &mut taking {
                Some(t) if t.end == i => {
                    t.end = i + 1;
                    t.end_sequence = end_sequence;
                }
                _ => {
                    if let Some(t) = taking.take() {
                        known.insert(t);
                        fresh.insert(t);
                    }
                    taking = Some(Span {
                        start: i,
                        end: i + 1,
                        end_sequence,
                    });
                }
            }
            match runs.last_mut() {
                Some(run) if run.last().is_some_and(|l| l.stream_index + 1 == i) => run.push(entry),
                _ => runs.push(vec![entry]),
            }
        }
        if let Some(t) = taking {
            known.insert(t);
            fresh.insert(t);
        }
        let accepted = runs.iter().map(|r| r.len() as u64).sum();
        let batch = if runs.is_empty() {
            None
        } else {
            let b = self.next_batch;
            self.next_batch += 1;
            self.inflight.insert(b, fresh.spans().copied().collect());
            Some(b)
        };
        Ok(AppendPlan {
            batch,
            runs,
            accepted,
            duplicates,
            waits_for,
            end_before,
            end_after: known.contiguous_end(),
            sequence_after: known.contiguous_end_sequence(),
        })
    }

    /// Records the outcome of a batch's commit. Calling it twice is harmless.
    pub fn commit_result(&mut self, batch: u64, committed: bool) {
        if let Some(spans) = self.inflight.remove(&batch) {
            if committed {
                for s in spans {
                    self.stored.insert(s);
                }
            }
        }
        if self.inflight.is_empty() {
            // An emptied B-tree keeps its root node (368 bytes here); an idle stream's
            // machine should not.
            self.inflight = BTreeMap::new();
        }
    }

    /// Seals the stream for archival (its archive task was leased): terminated at its
    /// highest index if it was not, no more appends. Ok(false) when it already is sealed
    /// and tasked (a repeated lease); a conflict once archived.
    pub fn seal(&mut self, now_us: i64) -> Result<bool, LifecycleError> {
        if self.is_archived() {
            return Err(LifecycleError::Conflict(
                "stream is already archived".into(),
            ));
        }
        if self.sealed && self.archival == Archival::Tasked {
            return Ok(false);
        }
        if !self.is_terminated() {
            self.terminate(None, now_us)?;
        }
        self.sealed = true;
        self.archival = Archival::Tasked;
        Ok(true)
    }

    /// Records the archive: complete or partial. Ok(false) when already archived; a
    /// conflict unless the stream is sealed, the archive ends at its terminal index and
    /// holds at least every stored entry (`log_entry_count`).
    pub fn mark_archived(
        &mut self,
        archive_terminal_index: i64,
        complete: bool,
        log_entry_count: u64,
    ) -> Result<bool, LifecycleError> {
        if self.is_archived() {
            return Ok(false);
        }
        let terminal = self.terminal_index.unwrap_or(-1);
        if !self.sealed || terminal != archive_terminal_index {
            return Err(LifecycleError::Conflict(format!(
                "the archive ends at {archive_terminal_index} but the stream's terminal index is {terminal}"
            )));
        }
        let stored = self.stored.len();
        if log_entry_count < stored {
            return Err(LifecycleError::Conflict(format!(
                "the archive holds {log_entry_count} entries but {stored} are stored"
            )));
        }
        self.archival = if complete {
            Archival::Complete
        } else {
            Archival::Partial
        };
        Ok(true)
    }

    /// Archival gave up (the attempt cap): the stream stays readable from its chunks.
    pub fn mark_failed(&mut self) {
        self.archival = Archival::Failed;
    }

    /// Purged (admin): readers that may not see purged streams find none.
    pub fn purge(&mut self) {
        self.purged = true;
    }

    /// Terminates the stream. `requested` None means at the highest stored index.
    /// Returns whether anything changed (false for an idempotent repeat).
    pub fn terminate(
        &mut self,
        requested: Option<i64>,
        now_us: i64,
    ) -> Result<bool, LifecycleError> {
        if let Some(t) = requested {
            if t < 0 {
                return Err(LifecycleError::Invalid(format!(
                    "terminal_index must be 0 or more, got {t}"
                )));
            }
            if t as u64 > logdog_schema::wire::MAX_STREAM_INDEX {
                return Err(LifecycleError::Invalid(format!(
                    "terminal_index {t} is above 2^53 - 1"
                )));
            }
        }
        if let Some(current) = self.terminal_index {
            return match requested {
                None => Ok(false),
                Some(t) if t == current => Ok(false),
                Some(t) => Err(LifecycleError::Conflict(format!(
                    "stream is already terminated at index {current}, not {t}"
                ))),
            };
        }
        if self.is_archived() {
            return Err(LifecycleError::Conflict("stream is archived".into()));
        }
        let highest = self.highest_index();
        let t = requested.unwrap_or(highest);
        if t < highest {
            return Err(LifecycleError::Conflict(format!(
                "terminal index {t} is below entry {highest}, which is already stored"
            )));
        }
        self.terminal_index = Some(t);
        self.terminated_us = Some(now_us);
        Ok(true)
    }
}
