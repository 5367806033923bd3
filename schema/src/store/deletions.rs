//! Archive deletions: the streams whose archive objects are still to be removed from their
//! store. Queued in the transaction that purges a stream or deletes its prefix; removed
//! when the deletion succeeded, rescheduled with the store's error when it did not.

use diesel::prelude::*;

use super::{AnyConnection, StoreError};
use crate::models::DeletionRow;
use crate::schema::{archive_deletions, streams};
use crate::wire::Archival;

/// Queues the archive deletion of those of `ids` (streams of `project`) that archival ever
/// reached; a stream already queued is due again now. Returns how many were queued.
pub fn queue_deletions(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[String],
    now_us: i64,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for chunk in ids.chunks(500) {
        let archived: Vec<String> = streams::table
            .filter(streams::project.eq(project))
            .filter(streams::id.eq_any(chunk))
            .filter(streams::archival.ne(Archival::None))
            .select(streams::id)
            .load(conn)?;
        if archived.is_empty() {
            continue;
        }
        diesel::delete(
            archive_deletions::table
                .filter(archive_deletions::project.eq(project))
                .filter(archive_deletions::stream_id.eq_any(&archived)),
        )
        .execute(conn)?;
        // One row at a time: a multi-row insert is not portable through MultiConnection.
        for stream_id in archived {
            queued += diesel::insert_into(archive_deletions::table)
                .values(&DeletionRow {
                    project: project.to_owned(),
                    stream_id,
                    due_us: now_us,
                    attempt: 0,
                    last_error: None,
                    created_us: now_us,
                })
                .execute(conn)?;
        }
    }
    Ok(queued)
}

/// Deletions due at `now_us`, oldest due first.
pub fn due_deletions(
    conn: &mut AnyConnection,
    now_us: i64,
    limit: i64,
) -> Result<Vec<DeletionRow>, StoreError> {
    Ok(archive_deletions::table
        .filter(archive_deletions::due_us.le(now_us))
        .order((archive_deletions::due_us, archive_deletions::stream_id))
        .limit(limit)
        .select(DeletionRow::as_select())
        .load(conn)?)
}

/// Every queued deletion (for `/metrics` and the tests).
pub fn pending_deletions(conn: &mut AnyConnection) -> Result<Vec<DeletionRow>, StoreError> {
    Ok(archive_deletions::table
        .order((archive_deletions::project, archive_deletions::stream_id))
        .select(DeletionRow::as_select())
        .load(conn)?)
}

/// The deletion of `row` succeeded: forgotten, unless it was queued again meanwhile.
pub fn finish_deletion(conn: &mut AnyConnection, row: &DeletionRow) -> Result<(), StoreError> {
    diesel::delete(
        archive_deletions::table
            .find((&row.project, &row.stream_id))
            .filter(archive_deletions::created_us.eq(row.created_us)),
    )
    .execute(conn)?;
    Ok(())
}

/// The deletion of `row` failed with `error`: due again at `due_us`.
pub fn retry_deletion(
    conn: &mut AnyConnection,
    row: &DeletionRow,
    due_us: i64,
    error: &str,
) -> Result<(), StoreError> {
    diesel::update(
        archive_deletions::table
            .find((&row.project, &row.stream_id))
            .filter(archive_deletions::created_us.eq(row.created_us)),
    )
    .set((
        archive_deletions::due_us.eq(due_us),
        archive_deletions::attempt.eq(row.attempt + 1),
        archive_deletions::last_error.eq(Some(error)),
    ))
    .execute(conn)?;
    Ok(())
}

/// How many deletions are queued.
pub fn count_deletions(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(archive_deletions::table.count().get_result(conn)?)
}
