//! Query: streams by prefix, path range, tags, status and type, ordered by path.

use diesel::prelude::*;

use super::long_keys::*;
use super::{AnyConnection, StoreError};
use crate::models::*;
use crate::schema::{stream_tags, streams};
use crate::wire::{Archival, Status, StreamType};

/// Upper bound for a range scan over names that start with `literal` (names are ASCII
/// below 0x7f, so appending 0x7f bounds every continuation bytewise).
pub fn prefix_upper_bound(literal: &str) -> String {
    format!("{literal}\u{7f}")
}

/// Query's filters that run in the database. The name glob is matched by the caller
/// (only its literal beginning narrows the scan here).
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    pub project: String,
    pub prefix: Option<String>,
    /// Paths must start with this (the glob's literal beginning, joined to the prefix).
    pub path_starts_with: Option<String>,
    /// (key, value): value None means "key present".
    pub tags: Vec<(String, Option<String>)>,
    pub status: Option<Status>,
    pub stream_type: Option<StreamType>,
    pub content_type: Option<String>,
    /// None: both.
    pub purged: Option<bool>,
    /// Only paths after this one (the cursor).
    pub after: Option<String>,
}

/// One page of streams matching `f`, ordered by path (bytewise).
pub fn query_streams(
    conn: &mut AnyConnection,
    f: &StreamFilter,
    limit: i64,
) -> Result<Vec<StreamRow>, StoreError> {
    let archived = [Archival::Partial, Archival::Complete];
    let mut q = streams::table
        .filter(streams::project.eq(&f.project))
        .into_boxed();
    let postgres = is_postgres(conn);
    if let Some(p) = &f.prefix {
        q = super::streams::in_prefix(q, p, postgres);
    }
    if let Some(start) = &f.path_starts_with {
        q = q
            .filter(streams::path.ge(start.clone()))
            .filter(streams::path.lt(prefix_upper_bound(start)));
        if postgres {
            q = q.filter(PATH_KEY.starts_with(start));
        }
    }
    if let Some(after) = &f.after {
        q = q.filter(streams::path.gt(after.clone()));
        if postgres {
            q = q.filter(PATH_KEY.ge(after));
        }
    }
    for (key, value) in &f.tags {
        let with_key = stream_tags::table
            .filter(stream_tags::project.eq(f.project.clone()))
            .filter(stream_tags::key.eq(key.clone()));
        q = match value {
            Some(v) => q.filter(
                streams::id.eq_any(
                    with_key
                        .filter(stream_tags::value.eq(v.clone()))
                        .filter(TAG_VALUE_KEY.eq(v))
                        .select(stream_tags::stream_id),
                ),
            ),
            None => q.filter(streams::id.eq_any(with_key.select(stream_tags::stream_id))),
        };
    }
    match f.status {
        Some(Status::Streaming) => {
            q = q
                .filter(streams::terminated_us.is_null())
                .filter(streams::archival.ne_all(archived));
        }
        Some(Status::Terminated) => {
            q = q
                .filter(streams::terminated_us.is_not_null())
                .filter(streams::archival.ne_all(archived));
        }
        Some(Status::Archived) => q = q.filter(streams::archival.eq_any(archived)),
        None => {}
    }
    if let Some(t) = &f.stream_type {
        q = q.filter(streams::stream_type.eq(*t));
    }
    if let Some(c) = &f.content_type {
        q = q.filter(streams::content_type.eq(c.clone()));
    }
    if let Some(p) = f.purged {
        q = q.filter(streams::purged.eq(p));
    }
    let q = if postgres {
        q.order((PATH_KEY.indexed().asc(), streams::path.asc()))
    } else {
        q.order(streams::path.asc())
    };
    Ok(q.select(StreamRow::as_select()).limit(limit).load(conn)?)
}
