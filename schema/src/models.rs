//! Row types, one per table.

use diesel::prelude::*;

use crate::schema::{archive_deletions, archive_tasks, log_chunks, prefixes, stream_tags, streams};
use crate::wire::{
    format_us, Archival, ArchiveInfo, Descriptor, Status, StreamJson, StreamStateJson, StreamType,
    TaskReason,
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = prefixes)]
pub struct PrefixRow {
    pub project: String,
    pub prefix: String,
    /// SHA-256 of the secret; the only form kept after the nonce-retry window.
    pub secret_hash: Vec<u8>,
    /// The plain secret, kept only while an op_nonce retry may still ask for it.
    pub secret: Option<Vec<u8>>,
    pub op_nonce: Option<Vec<u8>>,
    /// JSON array of strings.
    pub source_info: String,
    pub created_us: i64,
    pub expires_us: i64,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = streams)]
pub struct StreamRow {
    pub project: String,
    pub id: String,
    pub path: String,
    pub prefix: String,
    pub name: String,
    pub stream_type: StreamType,
    pub content_type: String,
    /// The resolved descriptor as JSON.
    pub descriptor: String,
    pub created_us: i64,
    pub updated_us: i64,
    /// Every entry below it is stored. Advanced by each commit that extends the run.
    pub next_index: i64,
    pub terminal_index: i64,
    pub terminated_us: Option<i64>,
    /// Set when an archive task is leased: no more appends.
    pub sealed: bool,
    pub archival: Archival,
    /// ArchiveInfo as JSON once archived.
    pub archive: Option<String>,
    pub archive_error: Option<String>,
    pub purged: bool,
    /// The sequence of the entry at `next_index`: lines (text), bytes (binary) or
    /// datagrams before it. None when not known (archived before it was kept).
    pub next_sequence: Option<i64>,
}

impl StreamRow {
    pub fn descriptor(&self) -> Result<Descriptor, serde_json::Error> {
        serde_json::from_str(&self.descriptor)
    }

    pub fn status(&self) -> Status {
        if matches!(self.archival, Archival::Partial | Archival::Complete) {
            Status::Archived
        } else if self.terminated_us.is_some() {
            Status::Terminated
        } else {
            Status::Streaming
        }
    }

    /// The API's Stream object for this row (with its already parsed descriptor).
    pub fn to_json(&self, descriptor: Descriptor) -> StreamJson {
        StreamJson {
            project: self.project.clone(),
            path: self.path.clone(),
            prefix: self.prefix.clone(),
            name: self.name.clone(),
            id: self.id.clone(),
            descriptor,
            state: StreamStateJson {
                status: self.status(),
                created: format_us(self.created_us),
                updated: format_us(self.updated_us),
                next_index: self.next_index,
                next_sequence: self.next_sequence,
                terminal_index: self.terminal_index,
                terminated_at: self.terminated_us.map(format_us),
                archival: self.archival,
                archive: self
                    .archive
                    .as_deref()
                    .and_then(|a| serde_json::from_str::<ArchiveInfo>(a).ok()),
                archive_error: self.archive_error.clone(),
                purged: self.purged,
            },
        }
    }
}

/// The lifecycle columns a transition rewrites.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = streams, treat_none_as_null = true)]
pub struct StreamLifecycle {
    pub updated_us: i64,
    pub terminal_index: i64,
    pub terminated_us: Option<i64>,
    pub sealed: bool,
    pub archival: Archival,
    pub archive: Option<String>,
    pub archive_error: Option<String>,
    pub purged: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = stream_tags)]
pub struct TagRow {
    pub project: String,
    pub stream_id: String,
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = log_chunks)]
pub struct ChunkRow {
    pub project: String,
    pub stream_id: String,
    pub first_index: i64,
    pub count: i64,
    /// Sum of the entries' payload sizes.
    pub bytes: i64,
    /// The sequence number the entry after this chunk gets by default.
    pub end_sequence: i64,
    /// The entries, encoded by `chunk::encode`.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = archive_tasks)]
pub struct TaskRow {
    pub task_id: String,
    pub project: String,
    pub stream_id: String,
    pub reason: TaskReason,
    pub due_us: i64,
    pub attempt: i32,
    pub lease_id: Option<String>,
    pub lease_expires_us: Option<i64>,
    pub last_error: Option<String>,
    pub created_us: i64,
}

/// A stream whose archive objects are still to be deleted (`archive_deletions`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = archive_deletions)]
pub struct DeletionRow {
    pub project: String,
    pub stream_id: String,
    pub due_us: i64,
    pub attempt: i32,
    pub last_error: Option<String>,
    pub created_us: i64,
}
