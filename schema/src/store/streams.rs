//! Stream rows: registration, lifecycle updates, the contiguous end (`next_index`,
//! `next_sequence`), purges, and a prefix's streams.

use diesel::prelude::*;

use super::long_keys::*;
use super::{AnyConnection, StoreError};
use crate::models::*;
use crate::schema::{archive_tasks, log_chunks, stream_tags, streams};

pub fn get_stream(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
) -> Result<Option<StreamRow>, StoreError> {
    Ok(streams::table
        .find((project, id))
        .select(StreamRow::as_select())
        .first(conn)
        .optional()?)
}

/// Whether the stream exists and is not purged: the writer's check before each append,
/// which reads one column instead of the whole row.
pub fn stream_is_live(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let purged: Option<bool> = streams::table
        .find((project, id))
        .select(streams::purged)
        .first(conn)
        .optional()?;
    Ok(purged == Some(false))
}

/// Inserts a new stream with its tags and its first archive task, in the caller's transaction.
pub fn insert_stream(
    conn: &mut AnyConnection,
    row: &StreamRow,
    tags: &[TagRow],
    task: &TaskRow,
) -> Result<(), StoreError> {
    diesel::insert_into(streams::table)
        .values(row)
        .execute(conn)?;
    for tag in tags {
        diesel::insert_into(stream_tags::table)
            .values(tag)
            .execute(conn)?;
    }
    diesel::insert_into(archive_tasks::table)
        .values(task)
        .execute(conn)?;
    Ok(())
}

/// Rewrites a stream's lifecycle columns.
pub fn update_lifecycle(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    change: &StreamLifecycle,
) -> Result<(), StoreError> {
    diesel::update(streams::table.find((project, id)))
        .set(change)
        .execute(conn)?;
    Ok(())
}

/// Marks a stream purged and releases its intermediate data and archive task.
pub fn purge_stream(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    diesel::update(streams::table.find((project, id)))
        .set((streams::purged.eq(true), streams::updated_us.eq(now_us)))
        .execute(conn)?;
    super::queue_deletions(conn, project, &[id.to_owned()], now_us)?;
    super::delete_outlines(conn, project, &[id.to_owned()])?;
    diesel::delete(
        log_chunks::table
            .filter(log_chunks::project.eq(project))
            .filter(log_chunks::stream_id.eq(id)),
    )
    .execute(conn)?;
    diesel::delete(
        archive_tasks::table
            .filter(archive_tasks::project.eq(project))
            .filter(archive_tasks::stream_id.eq(id)),
    )
    .execute(conn)?;
    Ok(())
}

/// The ids of every stream of a prefix.
pub fn stream_ids_under(
    conn: &mut AnyConnection,
    project: &str,
    prefix: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(streams_of_prefix(conn, project, prefix)
        .select(streams::id)
        .load(conn)?)
}

/// The streams of one prefix.
pub(super) fn streams_of_prefix<'a>(
    conn: &AnyConnection,
    project: &'a str,
    prefix: &'a str,
) -> StreamQuery<'a> {
    let q = streams::table
        .filter(streams::project.eq(project))
        .into_boxed();
    in_prefix(q, prefix, is_postgres(conn))
}

/// A boxed query over `streams`.
pub(super) type StreamQuery<'a> = streams::BoxedQuery<'a, <AnyConnection as Connection>::Backend>;

/// Narrows `q` to the streams of `prefix`: on PostgreSQL also a range of the indexed
/// paths (`prefix/+/…`), which is what lets its index answer.
pub(super) fn in_prefix<'a>(
    q: StreamQuery<'a>,
    prefix: &'a str,
    postgres: bool,
) -> StreamQuery<'a> {
    let q = q.filter(streams::prefix.eq(prefix));
    if postgres {
        let start = format!("{prefix}{}", crate::names::PATH_SEP);
        q.filter(PATH_KEY.starts_with(&start))
    } else {
        q
    }
}

pub fn stream_tags(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
) -> Result<Vec<TagRow>, StoreError> {
    Ok(stream_tags::table
        .filter(stream_tags::project.eq(project))
        .filter(stream_tags::stream_id.eq(id))
        .select(TagRow::as_select())
        .load(conn)?)
}

/// Moves `next_index` from `old` to `new` (and `next_sequence` to `sequence`, the
/// sequence at `new`), but only if no earlier commit it relies on is missing (the column
/// is at least `old`) and it would not move backwards.
pub fn advance_next_index(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    (old, new, sequence): (u64, u64, u64),
    now_us: i64,
) -> Result<(), StoreError> {
    diesel::update(
        streams::table
            .find((project, id))
            .filter(streams::next_index.ge(old as i64))
            .filter(streams::next_index.lt(new as i64)),
    )
    .set((
        streams::next_index.eq(new as i64),
        streams::next_sequence.eq(Some(sequence as i64)),
        streams::updated_us.eq(now_us),
    ))
    .execute(conn)?;
    Ok(())
}

/// Sets `next_index` and `next_sequence` outright (used when the owner recomputes them
/// after loading).
pub fn set_next_index(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    (next, sequence): (u64, Option<u64>),
) -> Result<(), StoreError> {
    diesel::update(streams::table.find((project, id)))
        .set((
            streams::next_index.eq(next as i64),
            streams::next_sequence.eq(sequence.map(|s| s as i64)),
        ))
        .execute(conn)?;
    Ok(())
}
