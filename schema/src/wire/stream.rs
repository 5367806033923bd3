//! The Stream object of API.md: status, archival state and where an archive is.

use serde::{Deserialize, Serialize};

use super::Descriptor;

/// Where a stream is in its life, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Streaming,
    Terminated,
    Archived,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Streaming => "streaming",
            Status::Terminated => "terminated",
            Status::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "streaming" => Self::Streaming,
            "terminated" => Self::Terminated,
            "archived" => Self::Archived,
            _ => return None,
        })
    }
}

/// Archival progress of a stream (stored in `streams.archival`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "lowercase")]
pub enum Archival {
    None,
    Tasked,
    Partial,
    Complete,
    Failed,
}

impl Archival {
    pub fn as_str(self) -> &'static str {
        match self {
            Archival::None => "none",
            Archival::Tasked => "tasked",
            Archival::Partial => "partial",
            Archival::Complete => "complete",
            Archival::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "tasked" => Self::Tasked,
            "partial" => Self::Partial,
            "complete" => Self::Complete,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

text_column!(Archival, "archival state");

/// Why an archive task is due (stored in `archive_tasks.reason`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "lowercase")]
pub enum TaskReason {
    /// The stream was terminated: archive after `complete_delay`.
    Terminated,
    /// Terminated with entries still missing below the terminal index: archive what there
    /// is after `incomplete_delay`.
    Incomplete,
    /// Scheduled at registration, in case the stream is never terminated: archive after
    /// `pessimistic_delay`.
    Expired,
}

impl TaskReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskReason::Terminated => "terminated",
            TaskReason::Incomplete => "incomplete",
            TaskReason::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "terminated" => Self::Terminated,
            "incomplete" => Self::Incomplete,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

text_column!(TaskReason, "archive task reason");

/// Where an archived stream's files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveInfo {
    pub stream_url: String,
    pub index_url: String,
    pub data_url: String,
    pub log_entry_count: u64,
    pub complete: bool,
    pub archived_at: String,
}

/// The `state` object of a Stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamStateJson {
    pub status: Status,
    pub created: String,
    pub updated: String,
    pub next_index: i64,
    /// The sequence the entry at `next_index` gets: the lines (text), bytes (binary) or
    /// datagrams of the contiguous entries. Null when not known (streams archived by an
    /// older version).
    pub next_sequence: Option<i64>,
    pub terminal_index: i64,
    pub terminated_at: Option<String>,
    pub archival: Archival,
    pub archive: Option<ArchiveInfo>,
    pub archive_error: Option<String>,
    pub purged: bool,
}

/// The Stream object of API.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamJson {
    pub project: String,
    pub path: String,
    pub prefix: String,
    pub name: String,
    pub id: String,
    pub descriptor: Descriptor,
    pub state: StreamStateJson,
}
