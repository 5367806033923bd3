//! Prefixes: registration, lookup, listing, and DeletePrefix with everything under it.

use diesel::prelude::*;

use super::long_keys::*;
use super::query::prefix_upper_bound;
use super::streams::streams_of_prefix;
use super::{AnyConnection, StoreError};
use crate::models::*;
use crate::schema::{archive_tasks, log_chunks, prefixes, stream_tags, streams};

pub fn get_prefix(
    conn: &mut AnyConnection,
    project: &str,
    prefix: &str,
) -> Result<Option<PrefixRow>, StoreError> {
    Ok(prefixes::table
        .find((project, prefix))
        .filter(PREFIX_KEY.eq(prefix))
        .select(PrefixRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn insert_prefix(conn: &mut AnyConnection, row: &PrefixRow) -> Result<(), StoreError> {
    diesel::insert_into(prefixes::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Forgets plain secrets kept for op_nonce retries of prefixes created before `before_us`.
pub fn forget_retry_secrets(conn: &mut AnyConnection, before_us: i64) -> Result<usize, StoreError> {
    Ok(diesel::update(
        prefixes::table
            .filter(prefixes::secret.is_not_null())
            .filter(prefixes::created_us.lt(before_us)),
    )
    .set(prefixes::secret.eq(None::<Vec<u8>>))
    .execute(conn)?)
}

/// Expires a prefix and removes its streams' metadata, data and tasks. Returns the ids
/// of the removed streams, or `None` when the prefix does not exist.
pub fn delete_prefix(
    conn: &mut AnyConnection,
    project: &str,
    prefix: &str,
    now_us: i64,
) -> Result<Option<Vec<String>>, StoreError> {
    let updated = diesel::update(
        prefixes::table
            .find((project, prefix))
            .filter(PREFIX_KEY.eq(prefix)),
    )
    .set((
        prefixes::expires_us.eq(now_us),
        prefixes::secret.eq(None::<Vec<u8>>),
        prefixes::op_nonce.eq(None::<Vec<u8>>),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Ok(None);
    }
    let ids: Vec<String> = streams_of_prefix(conn, project, prefix)
        .select(streams::id)
        .load(conn)?;
    // Their archives go too, retried until the store has removed them.
    super::queue_deletions(conn, project, &ids, now_us)?;
    super::delete_outlines(conn, project, &ids)?;
    for chunk in ids.chunks(500) {
        diesel::delete(
            stream_tags::table
                .filter(stream_tags::project.eq(project))
                .filter(stream_tags::stream_id.eq_any(chunk)),
        )
        .execute(conn)?;
        diesel::delete(
            log_chunks::table
                .filter(log_chunks::project.eq(project))
                .filter(log_chunks::stream_id.eq_any(chunk)),
        )
        .execute(conn)?;
        diesel::delete(
            archive_tasks::table
                .filter(archive_tasks::project.eq(project))
                .filter(archive_tasks::stream_id.eq_any(chunk)),
        )
        .execute(conn)?;
        diesel::delete(
            streams::table
                .filter(streams::project.eq(project))
                .filter(streams::id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    super::forget_streams(conn, project, &ids)?;
    Ok(Some(ids))
}

/// Registered prefixes equal to `under` or below `under/` (all when None), after `after`,
/// ordered by prefix.
pub fn list_prefixes(
    conn: &mut AnyConnection,
    project: &str,
    under: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<PrefixRow>, StoreError> {
    let mut q = prefixes::table
        .filter(prefixes::project.eq(project))
        .select(PrefixRow::as_select())
        .into_boxed();
    let postgres = is_postgres(conn);
    if let Some(u) = under {
        let below = format!("{u}/");
        q = q.filter(
            prefixes::prefix.eq(u.to_owned()).or(prefixes::prefix
                .ge(below.clone())
                .and(prefixes::prefix.lt(prefix_upper_bound(&below)))),
        );
        if postgres {
            // `u` itself and `u/…` all start with `u`.
            q = q.filter(PREFIX_KEY.starts_with(u));
        }
    }
    if let Some(a) = after {
        q = q.filter(prefixes::prefix.gt(a.to_owned()));
        if postgres {
            q = q.filter(PREFIX_KEY.ge(a));
        }
    }
    let q = if postgres {
        q.order((PREFIX_KEY.indexed().asc(), prefixes::prefix.asc()))
    } else {
        q.order(prefixes::prefix.asc())
    };
    Ok(q.limit(limit).load(conn)?)
}
