//! What a stream actor holds: its prefix's secret and expiry, and the loaded stream (row,
//! descriptor, lifecycle machine).

use super::*;

#[derive(Debug, Clone)]
pub(super) struct PrefixInfo {
    pub(super) secret_hash: Vec<u8>,
    pub(super) expires_us: i64,
}

impl From<PrefixRow> for PrefixInfo {
    fn from(r: PrefixRow) -> Self {
        Self {
            secret_hash: r.secret_hash,
            expires_us: r.expires_us,
        }
    }
}

/// A registered stream: its row (static columns and lifecycle) and its machine.
pub(super) struct Loaded {
    /// The stream's row. Its `descriptor` (the JSON text) is emptied once parsed into
    /// `descriptor`: a live actor keeps the parsed form only.
    pub(super) row: StreamRow,
    pub(super) descriptor: Descriptor,
    pub(super) machine: StreamMachine,
    /// False for a stream archived before `next_sequence` was kept (no chunks to tell).
    pub(super) sequence_known: bool,
}

impl Loaded {
    pub(super) fn from_row(mut row: StreamRow, spans: &[ChunkSpan]) -> Result<Self, ActorError> {
        let descriptor: Descriptor = row
            .descriptor()
            .map_err(|e| ActorError::Internal(format!("stored descriptor is invalid: {e}")))?;
        row.descriptor = String::new();
        let m = StreamMachine::restore(descriptor.stream_type, descriptor.timestamp, &row, spans);
        let sequence_known =
            !(spans.is_empty() && row.next_index > 0 && row.next_sequence.is_none());
        Ok(Self {
            row,
            descriptor,
            machine: m,
            sequence_known,
        })
    }

    /// The row as it stands with the machine's state applied.
    pub(super) fn current_row(&self) -> StreamRow {
        let m = &self.machine;
        let lc = self.lifecycle();
        StreamRow {
            next_index: m.next_index() as i64,
            next_sequence: self.next_sequence().map(|s| s as i64),
            terminal_index: lc.terminal_index,
            terminated_us: lc.terminated_us,
            sealed: lc.sealed,
            archival: lc.archival,
            purged: lc.purged,
            ..self.row.clone()
        }
    }

    pub(super) fn json(&self) -> StreamJson {
        self.current_row().to_json(self.descriptor.clone())
    }

    pub(super) fn next_sequence(&self) -> Option<u64> {
        self.sequence_known.then(|| self.machine.next_sequence())
    }

    pub(super) fn lifecycle(&self) -> StreamLifecycle {
        let m = &self.machine;
        StreamLifecycle {
            updated_us: self.row.updated_us,
            terminal_index: m.terminal_index().unwrap_or(-1),
            terminated_us: m.terminated_us(),
            sealed: m.is_sealed(),
            archival: m.archival(),
            archive: self.row.archive.clone(),
            archive_error: self.row.archive_error.clone(),
            purged: m.is_purged(),
        }
    }
}
