//! What a stream actor holds: its prefix's secret and expiry, and the loaded stream
//! (descriptor, lifecycle machine, the rest of its row).

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

/// A registered stream: the parsed descriptor, its lifecycle machine, and the few columns
/// of its row that neither of them holds. The row's names (project, id, path, prefix,
/// name) are the actor's key and path, and its content type is the descriptor's, so they
/// are kept once (`json` puts the row back together).
#[derive(Clone)]
pub(super) struct Loaded {
    /// Boxed: the actor's task is allocated with the actor inline, and a few bytes over a
    /// size class cost the next one.
    pub(super) descriptor: Box<Descriptor>,
    pub(super) machine: StreamMachine,
    pub(super) created_us: i64,
    pub(super) updated_us: i64,
    /// ArchiveInfo as JSON, once archived.
    pub(super) archive: Option<String>,
    pub(super) archive_error: Option<String>,
    /// False for a stream archived before `next_sequence` was kept (no chunks to tell).
    pub(super) sequence_known: bool,
}

impl Loaded {
    /// The stream as stored: its row (whose descriptor is parsed) and its chunks' spans.
    pub(super) fn from_row(row: StreamRow, spans: &[ChunkSpan]) -> Result<Self, ActorError> {
        let descriptor: Descriptor = row
            .descriptor()
            .map_err(|e| ActorError::Internal(format!("stored descriptor is invalid: {e}")))?;
        Ok(Self::new(descriptor, row, spans))
    }

    /// The stream of `row`, whose descriptor is `descriptor`.
    pub(super) fn new(descriptor: Descriptor, row: StreamRow, spans: &[ChunkSpan]) -> Self {
        let m = StreamMachine::restore(descriptor.stream_type, descriptor.timestamp, &row, spans);
        let sequence_known =
            !(spans.is_empty() && row.next_index > 0 && row.next_sequence.is_none());
        Self {
            descriptor: Box::new(descriptor),
            machine: m,
            created_us: row.created_us,
            updated_us: row.updated_us,
            archive: row.archive,
            archive_error: row.archive_error,
            sequence_known,
        }
    }

    /// The stream as the API shows it: the row put back together from the actor's key and
    /// path, the descriptor and the machine's state.
    pub(super) fn json(&self, key: &StreamKey, path: &StreamPath) -> StreamJson {
        let m = &self.machine;
        let lc = self.lifecycle();
        StreamRow {
            project: key.project.clone(),
            id: key.id.clone(),
            path: path.to_string(),
            prefix: path.prefix.clone(),
            name: path.name.clone(),
            stream_type: self.descriptor.stream_type,
            content_type: self.descriptor.content_type.clone(),
            descriptor: String::new(),
            created_us: self.created_us,
            updated_us: lc.updated_us,
            next_index: m.next_index() as i64,
            next_sequence: self.next_sequence().map(|s| s as i64),
            terminal_index: lc.terminal_index,
            terminated_us: lc.terminated_us,
            sealed: lc.sealed,
            archival: lc.archival,
            archive: lc.archive,
            archive_error: lc.archive_error,
            purged: lc.purged,
        }
        .to_json((*self.descriptor).clone())
    }

    pub(super) fn next_sequence(&self) -> Option<u64> {
        self.sequence_known.then(|| self.machine.next_sequence())
    }

    pub(super) fn lifecycle(&self) -> StreamLifecycle {
        let m = &self.machine;
        StreamLifecycle {
            updated_us: self.updated_us,
            terminal_index: m.terminal_index().unwrap_or(-1),
            terminated_us: m.terminated_us(),
            sealed: m.is_sealed(),
            archival: m.archival(),
            archive: self.archive.clone(),
            archive_error: self.archive_error.clone(),
            purged: m.is_purged(),
        }
    }
}
