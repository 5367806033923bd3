//! Archive tasks: at most one per stream, scheduled by transitions, leased by archivists.

use diesel::prelude::*;

use super::{AnyConnection, StoreError};
use crate::models::*;
use crate::schema::{archive_tasks, streams};
use crate::wire::TaskReason;

/// Moves a stream's archive task (creating it if it is gone) to a new due time and reason.
pub fn schedule_task(
    conn: &mut AnyConnection,
    project: &str,
    stream_id: &str,
    reason: TaskReason,
    due_us: i64,
    new_task_id: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    let updated = diesel::update(
        archive_tasks::table
            .filter(archive_tasks::project.eq(project))
            .filter(archive_tasks::stream_id.eq(stream_id)),
    )
    .set((
        archive_tasks::reason.eq(reason),
        archive_tasks::due_us.eq(due_us),
    ))
    .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(archive_tasks::table)
            .values(&TaskRow {
                task_id: new_task_id.to_owned(),
                project: project.to_owned(),
                stream_id: stream_id.to_owned(),
                reason,
                due_us,
                attempt: 0,
                lease_id: None,
                lease_expires_us: None,
                last_error: None,
                created_us: now_us,
            })
            .execute(conn)?;
    }
    Ok(())
}

pub fn get_task(
    conn: &mut AnyConnection,
    project: &str,
    stream_id: &str,
) -> Result<Option<TaskRow>, StoreError> {
    Ok(archive_tasks::table
        .filter(archive_tasks::project.eq(project))
        .filter(archive_tasks::stream_id.eq(stream_id))
        .select(TaskRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn get_task_by_id(
    conn: &mut AnyConnection,
    task_id: &str,
) -> Result<Option<TaskRow>, StoreError> {
    Ok(archive_tasks::table
        .find(task_id)
        .select(TaskRow::as_select())
        .first(conn)
        .optional()?)
}

/// Tasks due at `now_us` and not under a live lease, oldest due first.
fn due_tasks(
    conn: &mut AnyConnection,
    now_us: i64,
    limit: i64,
    projects: Option<&[String]>,
) -> Result<Vec<TaskRow>, StoreError> {
    let mut q = archive_tasks::table.into_boxed();
    if let Some(ps) = projects {
        q = q.filter(archive_tasks::project.eq_any(ps));
    }
    Ok(q.filter(archive_tasks::due_us.le(now_us))
        .filter(
            archive_tasks::lease_expires_us
                .is_null()
                .or(archive_tasks::lease_expires_us.lt(now_us)),
        )
        .order(archive_tasks::due_us.asc())
        .limit(limit)
        .select(TaskRow::as_select())
        .load(conn)?)
}

/// Takes a lease on a task if nobody holds a live one; false when another caller won.
fn take_lease(
    conn: &mut AnyConnection,
    task_id: &str,
    lease_id: &str,
    expires_us: i64,
    now_us: i64,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        archive_tasks::table.find(task_id).filter(
            archive_tasks::lease_expires_us
                .is_null()
                .or(archive_tasks::lease_expires_us.lt(now_us)),
        ),
    )
    .set((
        archive_tasks::lease_id.eq(Some(lease_id)),
        archive_tasks::lease_expires_us.eq(Some(expires_us)),
        archive_tasks::attempt.eq(archive_tasks::attempt + 1),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// What one leasing pass asks for.
pub struct LeaseWanted<'a> {
    pub now_us: i64,
    pub max_tasks: usize,
    /// Only tasks of these projects; None: every project.
    pub projects: Option<&'a [String]>,
    pub expires_us: i64,
    /// A task that has had this many attempts is not handed out again.
    pub max_attempts: i32,
}

/// A due task and its stream's path (None when the stream is gone).
pub type DueTask = (TaskRow, Option<String>);

/// What one leasing pass found: each task with its stream's path.
#[derive(Debug, Default)]
pub struct DueTasks {
    /// Leased now (their rows as leased: attempt counted, lease set).
    pub leased: Vec<(TaskRow, String)>,
    /// Past the attempt cap: their streams are to be failed, not archived again.
    pub exhausted: Vec<(TaskRow, String)>,
}

/// The tasks a leasing pass may take, with their streams' paths: a read, so that a pass
/// with nothing due (the common case, several times a second while archivists wait) never
/// takes the write lock.
pub fn due_tasks_with_paths(
    conn: &mut AnyConnection,
    want: &LeaseWanted,
) -> Result<Vec<DueTask>, StoreError> {
    let due = due_tasks(
        conn,
        want.now_us,
        (want.max_tasks * 2) as i64,
        want.projects,
    )?;
    due.into_iter()
        .map(|row| {
            let path = streams::table
                .find((&row.project, &row.stream_id))
                .select(streams::path)
                .first(conn)
                .optional()?;
            Ok((row, path))
        })
        .collect()
}

/// Takes the leases of a pass in one transaction: tasks whose stream is gone deleted,
/// tasks past the attempt cap set apart, and a lease (a conditional update: another
/// coordinator may have won meanwhile) on up to `max_tasks` of the others, `lease_id`
/// naming each. On PostgreSQL a task another pass has locked is skipped (`SKIP LOCKED`).
pub fn take_leases(
    conn: &mut AnyConnection,
    want: &LeaseWanted,
    candidates: &[DueTask],
    mut lease_id: impl FnMut() -> String,
) -> Result<DueTasks, StoreError> {
    let mut out = DueTasks::default();
    for (row, path) in candidates {
        if out.leased.len() >= want.max_tasks {
            break;
        }
        let Some(path) = path else {
            delete_task(conn, &row.task_id)?;
            continue;
        };
        if row.attempt >= want.max_attempts {
            out.exhausted.push((row.clone(), path.clone()));
            continue;
        }
        if locked_elsewhere(conn, &row.task_id)? {
            continue;
        }
        let id = lease_id();
        if take_lease(conn, &row.task_id, &id, want.expires_us, want.now_us)? {
            let mut row = row.clone();
            row.attempt += 1;
            row.lease_id = Some(id);
            row.lease_expires_us = Some(want.expires_us);
            out.leased.push((row, path.clone()));
        }
    }
    Ok(out)
}

/// On PostgreSQL, locks the task row for this transaction unless another transaction
/// (another node's leasing pass) holds it: `FOR UPDATE SKIP LOCKED`, so concurrent passes
/// on several coordinators take different tasks instead of queueing on the same rows.
/// SQLite has one writer at a time: never locked elsewhere.
fn locked_elsewhere(conn: &mut AnyConnection, task_id: &str) -> Result<bool, StoreError> {
    use diesel::sql_types::Text;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        #[allow(dead_code)]
        task_id: String,
    }
    match conn {
        AnyConnection::Postgresql(c) => {
            let rows: Vec<Row> = diesel::sql_query(
                "SELECT task_id FROM archive_tasks WHERE task_id = $1 FOR UPDATE SKIP LOCKED",
            )
            .bind::<Text, _>(task_id)
            .load(c)?;
            Ok(rows.is_empty())
        }
        AnyConnection::Sqlite(_) => Ok(false),
    }
}

/// A task and its stream's path (None when the stream is gone), read together.
pub fn task_with_path(
    conn: &mut AnyConnection,
    task_id: &str,
) -> Result<Option<(TaskRow, Option<String>)>, StoreError> {
    let Some(row) = get_task_by_id(conn, task_id)? else {
        return Ok(None);
    };
    let path = streams::table
        .find((&row.project, &row.stream_id))
        .select(streams::path)
        .first(conn)
        .optional()?;
    Ok(Some((row, path)))
}

/// Moves a live lease's expiry.
pub fn renew_lease(
    conn: &mut AnyConnection,
    task_id: &str,
    expires_us: i64,
) -> Result<(), StoreError> {
    diesel::update(archive_tasks::table.find(task_id))
        .set(archive_tasks::lease_expires_us.eq(Some(expires_us)))
        .execute(conn)?;
    Ok(())
}

/// Drops a task's lease and sets when it is due again (a retry, or a failed seal).
pub fn release_task(
    conn: &mut AnyConnection,
    task_id: &str,
    due_us: i64,
    error: Option<&str>,
) -> Result<(), StoreError> {
    diesel::update(archive_tasks::table.find(task_id))
        .set((
            archive_tasks::lease_id.eq(None::<String>),
            archive_tasks::lease_expires_us.eq(None::<i64>),
            archive_tasks::due_us.eq(due_us),
            archive_tasks::last_error.eq(error),
        ))
        .execute(conn)?;
    Ok(())
}

/// Gives a lease back without counting its attempt (cluster mode: the stream's owner is
/// another node, whose dispatcher hands the task out).
pub fn unlease_task(
    conn: &mut AnyConnection,
    task_id: &str,
    due_us: i64,
) -> Result<(), StoreError> {
    diesel::update(archive_tasks::table.find(task_id))
        .set((
            archive_tasks::lease_id.eq(None::<String>),
            archive_tasks::lease_expires_us.eq(None::<i64>),
            archive_tasks::due_us.eq(due_us),
            archive_tasks::attempt.eq(archive_tasks::attempt - 1),
        ))
        .execute(conn)?;
    Ok(())
}

/// Marks a task done (never due again), keeping its last lease so a repeated completion
/// with that lease can be recognised.
pub fn finish_task(
    conn: &mut AnyConnection,
    task_id: &str,
    error: Option<&str>,
) -> Result<(), StoreError> {
    diesel::update(archive_tasks::table.find(task_id))
        .set((
            archive_tasks::due_us.eq(TASK_DONE),
            archive_tasks::lease_expires_us.eq(None::<i64>),
            archive_tasks::last_error.eq(error),
        ))
        .execute(conn)?;
    Ok(())
}

/// The due time of a finished task.
pub const TASK_DONE: i64 = i64::MAX;

pub fn delete_task(conn: &mut AnyConnection, task_id: &str) -> Result<(), StoreError> {
    diesel::delete(archive_tasks::table.find(task_id)).execute(conn)?;
    Ok(())
}
