//! The store: one r2d2 pool over SQLite or PostgreSQL through a diesel `MultiConnection`,
//! embedded migrations, and the queries the actors run.
//!
//! Every call blocks: callers run them on blocking threads (the `Writer` thread,
//! `spawn_blocking`, `web::block`), never on an actor's or an HTTP worker's thread.
//! Write transactions on SQLite are `BEGIN IMMEDIATE`, so a writer waits on the busy
//! timeout instead of failing when it upgrades a read lock.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::models::*;
use crate::schema::{archive_tasks, log_chunks, prefixes, stream_tags, streams};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

// ---------------------------------------------------------------------------------------
// Long keys on PostgreSQL
//
// PostgreSQL's B-tree entries hold about 2.7 KB; paths, prefixes and tag values may be
// 4 KB. Its indexes hold the first 2,000 characters of a path or prefix and the first 500
// of a tag value (migrations/postgres/…_long_keys), so every query
// on those columns also states its condition on the truncated key: an equality as an
// equality of truncations, a range as the (wider) range of truncations, and an order as
// (truncation, full value), which is the same order. SQLite indexes whole values; the
// equalities are added there too (a check on rows already found), ranges and orders only
// on PostgreSQL.

fn is_postgres(conn: &AnyConnection) -> bool {
    matches!(conn, AnyConnection::Postgresql(_))
}

type Key = diesel::expression::SqlLiteral<diesel::sql_types::Text>;

/// A column PostgreSQL indexes by its first `chars` characters.
struct LongKey {
    column: &'static str,
    chars: usize,
}

impl LongKey {
    /// The indexed expression, spelled as the migration spells it (literal constants, so
    /// the planner matches the index).
    fn indexed(&self) -> Key {
        diesel::dsl::sql(&format!("substr({}, 1, {})", self.column, self.chars))
    }

    /// `value` cut as the column is cut.
    fn cut(&self, value: &str) -> String {
        value.chars().take(self.chars).collect()
    }

    /// `column = value` implies this.
    fn eq(&self, value: &str) -> diesel::dsl::Eq<Key, String> {
        self.indexed().eq(self.cut(value))
    }

    /// `column >= value` (or `>`) implies this.
    fn ge(&self, value: &str) -> diesel::dsl::GtEq<Key, String> {
        self.indexed().ge(self.cut(value))
    }

    /// `column < value` (or `<=`) implies this.
    fn le(&self, value: &str) -> diesel::dsl::LtEq<Key, String> {
        self.indexed().le(self.cut(value))
    }

    /// `column` starting with `start` (an ASCII name) implies this.
    fn starts_with(
        &self,
        start: &str,
    ) -> diesel::dsl::And<diesel::dsl::GtEq<Key, String>, diesel::dsl::LtEq<Key, String>> {
        self.ge(start).and(self.le(&prefix_upper_bound(start)))
    }
}

/// Prefixes and paths are ASCII: 2,000 bytes.
const PREFIX_KEY: LongKey = LongKey {
    column: "\"prefixes\".\"prefix\"",
    chars: 2000,
};
const PATH_KEY: LongKey = LongKey {
    column: "\"streams\".\"path\"",
    chars: 2000,
};
/// Tag values are UTF-8, up to four bytes a character.
const TAG_VALUE_KEY: LongKey = LongKey {
    column: "\"stream_tags\".\"value\"",
    chars: 500,
};

/// A connection to either backend; queries written once with diesel's DSL run on both.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database a store talks to, chosen from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is too busy; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Query(diesel::result::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A key too long for the database's index (PostgreSQL's B-tree entries hold about
    /// 2.7 KB): the request asks for something this backend cannot store.
    #[error("{0}")]
    KeyTooLong(String),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Database errors that mean the storage is away or full (answered 503, retried by
/// clients), not that the query was wrong: SQLite's busy, full and I/O errors, and
/// PostgreSQL's lost connections, shutdowns and full disks.
fn is_outage(message: &str) -> bool {
    const OUTAGES: [&str; 14] = [
        "database is locked",
        "database or disk is full",
        "disk I/O error",
        "unable to open database file",
        "readonly database",
        "No space left on device",
        "could not extend file",
        "could not write",
        "terminating connection",
        "shutting down",
        "starting up",
        "server closed the connection",
        "connection to server",
        "could not connect",
    ];
    OUTAGES.iter().any(|o| message.contains(o))
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match &e {
            E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, _) => {
                StoreError::Unavailable(e.to_string())
            }
            E::DatabaseError(_, info) if is_outage(info.message()) => {
                StoreError::Unavailable(e.to_string())
            }
            E::DatabaseError(_, info)
                if info.message().contains("index row size")
                    || info.message().contains("index row requires") =>
            {
                StoreError::KeyTooLong(
                    "a prefix, name or tag value is too long for this database's index \
                     (PostgreSQL indexes keys of up to about 2,700 bytes); use a shorter one"
                        .into(),
                )
            }
            _ => StoreError::Query(e),
        }
    }
}

impl From<r2d2::PoolError> for StoreError {
    fn from(e: r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Opens connections of the backend the URL names (never guessing from a failed attempt).
#[derive(Debug)]
pub struct Manager {
    backend: Backend,
    url: String,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        let conn = match self.backend {
            Backend::Postgres => AnyConnection::Postgresql(
                PgConnection::establish(&self.url).map_err(r2d2::Error::ConnectionError)?,
            ),
            Backend::Sqlite => {
                let mut c =
                    SqliteConnection::establish(&self.url).map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the writer; FULL makes an acknowledged
                // commit survive power loss.
                c.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                ))
                .map_err(r2d2::Error::QueryError)?;
                AnyConnection::Sqlite(c)
            }
        };
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        conn.is_broken()
    }
}

pub type PooledConn = r2d2::PooledConnection<Manager>;

/// The pool and what it talks to. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
    /// Whether the database answered the health check lately (see `watch_health`): while
    /// it does not, calls fail at once with `Unavailable` instead of waiting out the pool.
    healthy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The connection string, for the health check's own connection.
    url: std::sync::Arc<str>,
}

/// Splits a database setting into backend and connection string: `postgres://` and
/// `postgresql://` URLs are PostgreSQL; `sqlite://PATH` and anything else a SQLite path.
pub fn parse_database_url(url: &str) -> (Backend, String) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        (Backend::Postgres, url.to_owned())
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        (Backend::Sqlite, path.to_owned())
    } else {
        (Backend::Sqlite, url.to_owned())
    }
}

impl Store {
    /// Opens a pool on `url` (creating a SQLite file's folder) without migrating.
    pub fn open(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let (backend, conn_str) = parse_database_url(url);
        if backend == Backend::Sqlite {
            if let Some(dir) = std::path::Path::new(&conn_str).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
        }
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(Manager {
                backend,
                url: conn_str.clone(),
            })?;
        Ok(Self {
            pool,
            backend,
            healthy: std::sync::Arc::new(true.into()),
            url: conn_str.into(),
        })
    }

    /// Starts a thread that pings the database every `interval` on a connection of its
    /// own (reconnecting when it broke), so an outage is noticed within about `interval`
    /// and the end of one as quickly. Stops when every clone of the store is gone.
    pub fn watch_health(&self, interval: Duration) {
        let manager_url = self.url.to_string();
        let backend = self.backend;
        let healthy = std::sync::Arc::downgrade(&self.healthy);
        std::thread::Builder::new()
            .name("logdog-db-health".into())
            .spawn(move || {
                let manager = Manager {
                    backend,
                    url: manager_url,
                };
                let mut conn: Option<AnyConnection> = None;
                while let Some(flag) = healthy.upgrade() {
                    let ok = match conn.as_mut() {
                        Some(c) => c.ping().is_ok(),
                        None => false,
                    } || {
                        conn = manager.connect().ok();
                        conn.as_mut().is_some_and(|c| c.ping().is_ok())
                    };
                    let was = flag.swap(ok, std::sync::atomic::Ordering::Relaxed);
                    if was != ok {
                        if ok {
                            tracing::warn!("database reachable again");
                        } else {
                            tracing::error!("database unreachable; answering 503 until it is back");
                            conn = None;
                        }
                    }
                    drop(flag);
                    std::thread::sleep(interval);
                }
            })
            .expect("spawn the health thread");
    }

    /// Fails at once while the health check says the database is away.
    fn check_health(&self) -> Result<(), StoreError> {
        if self.healthy.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the database is unreachable".into(),
            ))
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every pending migration; returns how many ran.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.pool.get()?;
        let ran = match &mut *conn {
            AnyConnection::Sqlite(c) => {
                c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len())
            }
            AnyConnection::Postgresql(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len()),
        };
        ran.map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))
    }

    /// True when the database answers and no migration is pending.
    pub fn ready(&self) -> Result<(), StoreError> {
        self.check_health()?;
        let mut conn = self.pool.get()?;
        let pending = match &mut *conn {
            AnyConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
            AnyConnection::Postgresql(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
        };
        match pending {
            Ok(false) => Ok(()),
            Ok(true) => Err(StoreError::Unavailable("migrations pending".into())),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Runs `f` on a pooled connection, outside any transaction.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_health()?;
        let mut conn = self.pool.get()?;
        f(&mut conn)
    }

    /// Runs `f` in a write transaction (SQLite: `BEGIN IMMEDIATE`); commits on `Ok`.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_health()?;
        let mut conn = self.pool.get()?;
        let conn = &mut *conn;
        match conn {
            AnyConnection::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
            }
            AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
        }
        let result = f(conn);
        let end = match (&result, conn) {
            (Ok(_), AnyConnection::Sqlite(c)) => AnsiTransactionManager::commit_transaction(c),
            (Ok(_), AnyConnection::Postgresql(c)) => AnsiTransactionManager::commit_transaction(c),
            (Err(_), AnyConnection::Sqlite(c)) => AnsiTransactionManager::rollback_transaction(c),
            (Err(_), AnyConnection::Postgresql(c)) => {
                AnsiTransactionManager::rollback_transaction(c)
            }
        };
        match (result, end) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), _) => Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Prefixes

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
    Ok(Some(ids))
}

// ---------------------------------------------------------------------------------------
// Streams

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

/// Moves a stream's archive task (creating it if it is gone) to a new due time and reason.
pub fn schedule_task(
    conn: &mut AnyConnection,
    project: &str,
    stream_id: &str,
    reason: &str,
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
                reason: reason.to_owned(),
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
pub fn due_tasks(
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
pub fn take_lease(
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

/// How many entries of a stream are stored in intermediate storage.
pub fn stored_entry_count(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
) -> Result<u64, StoreError> {
    let counts: Vec<i64> = log_chunks::table
        .filter(log_chunks::project.eq(project))
        .filter(log_chunks::stream_id.eq(id))
        .select(log_chunks::count)
        .load(conn)?;
    Ok(counts.into_iter().map(|c| c as u64).sum())
}

/// Releases a stream's intermediate data (after its archive is written).
pub fn delete_chunks(conn: &mut AnyConnection, project: &str, id: &str) -> Result<(), StoreError> {
    diesel::delete(
        log_chunks::table
            .filter(log_chunks::project.eq(project))
            .filter(log_chunks::stream_id.eq(id)),
    )
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

/// The paths of every stream of a prefix.
pub fn stream_paths_under(
    conn: &mut AnyConnection,
    project: &str,
    prefix: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(streams_of_prefix(conn, project, prefix)
        .select(streams::path)
        .load(conn)?)
}

/// The streams of one prefix: on PostgreSQL a range of indexed paths (`prefix/+/…`).
fn streams_of_prefix<'a>(
    conn: &AnyConnection,
    project: &'a str,
    prefix: &'a str,
) -> streams::BoxedQuery<'a, <AnyConnection as Connection>::Backend> {
    let mut q = streams::table
        .filter(streams::project.eq(project))
        .filter(streams::prefix.eq(prefix))
        .into_boxed();
    if is_postgres(conn) {
        let start = format!("{prefix}{}", crate::names::PATH_SEP);
        q = q.filter(PATH_KEY.starts_with(&start));
    }
    q
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

// ---------------------------------------------------------------------------------------
// Log chunks

/// A stored run of entries, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    pub first_index: u64,
    pub count: u64,
    pub bytes: u64,
    pub end_sequence: u64,
}

/// The spans of the chunks that end above `from_index`, in index order.
pub fn chunk_spans(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    from_index: u64,
) -> Result<Vec<ChunkSpan>, StoreError> {
    let rows: Vec<(i64, i64, i64, i64)> = log_chunks::table
        .filter(log_chunks::project.eq(project))
        .filter(log_chunks::stream_id.eq(id))
        .filter((log_chunks::first_index + log_chunks::count).gt(from_index as i64))
        .order(log_chunks::first_index.asc())
        .select((
            log_chunks::first_index,
            log_chunks::count,
            log_chunks::bytes,
            log_chunks::end_sequence,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(f, c, b, s)| ChunkSpan {
            first_index: f as u64,
            count: c as u64,
            bytes: b as u64,
            end_sequence: s as u64,
        })
        .collect())
}

/// The chunks holding entries in `[from_index, to_index)`, in index order, payload included.
pub fn read_chunks(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    from_index: u64,
    to_index: u64,
    max_rows: i64,
) -> Result<Vec<ChunkRow>, StoreError> {
    Ok(log_chunks::table
        .filter(log_chunks::project.eq(project))
        .filter(log_chunks::stream_id.eq(id))
        .filter((log_chunks::first_index + log_chunks::count).gt(from_index as i64))
        .filter(log_chunks::first_index.lt(to_index as i64))
        .order(log_chunks::first_index.asc())
        .limit(max_rows)
        .select(ChunkRow::as_select())
        .load(conn)?)
}

pub fn insert_chunk(conn: &mut AnyConnection, row: &ChunkRow) -> Result<(), StoreError> {
    diesel::insert_into(log_chunks::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Replaces the chunks of `[first, end)` by one chunk holding all their entries. Only
/// the owner of the stream calls it, so nothing is inserted in that range meanwhile.
pub fn compact_chunks(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    first: u64,
    end: u64,
) -> Result<usize, StoreError> {
    let rows = read_chunks(conn, project, id, first, end, i64::MAX)?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.first_index as u64 >= first && (r.first_index + r.count) as u64 <= end)
        .collect();
    if rows.len() < 2 {
        return Ok(0);
    }
    let mut entries = Vec::new();
    let (mut bytes, mut end_sequence) = (0, 0);
    for r in &rows {
        entries
            .extend(crate::chunk::decode(&r.data).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        bytes += r.bytes;
        end_sequence = r.end_sequence;
    }
    // The merged run must be contiguous, or it is not one chunk.
    if entries
        .windows(2)
        .any(|w| w[1].stream_index != w[0].stream_index + 1)
    {
        return Ok(0);
    }
    let first_index = rows[0].first_index;
    diesel::delete(
        log_chunks::table
            .filter(log_chunks::project.eq(project))
            .filter(log_chunks::stream_id.eq(id))
            .filter(
                log_chunks::first_index
                    .eq_any(rows.iter().map(|r| r.first_index).collect::<Vec<_>>()),
            ),
    )
    .execute(conn)?;
    insert_chunk(
        conn,
        &ChunkRow {
            project: project.to_owned(),
            stream_id: id.to_owned(),
            first_index,
            count: entries.len() as i64,
            bytes,
            end_sequence,
            data: crate::chunk::encode(&entries),
        },
    )?;
    Ok(rows.len())
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

/// Which entries a read wants.
#[derive(Debug, Clone, Copy)]
pub struct ReadRange {
    pub from: u64,
    /// Exclusive upper bound.
    pub end: u64,
    pub count: usize,
    /// Entries are added while their payload total stays within it (the first always).
    pub bytes: u64,
    /// Stop at the first missing index; otherwise skip gaps.
    pub contiguous: bool,
}

/// Reads the entries `range` asks for, a page of chunks at a time.
pub fn read_entries(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    range: ReadRange,
) -> Result<Vec<crate::wire::Entry>, StoreError> {
    let ReadRange {
        from,
        end,
        count,
        bytes,
        contiguous,
    } = range;
    const PAGE_ROWS: i64 = 16;
    let mut out = Vec::new();
    let (mut cur, mut total) = (from, 0u64);
    while out.len() < count && cur < end {
        let rows = read_chunks(conn, project, id, cur, end, PAGE_ROWS)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let entries =
                crate::chunk::decode(&row.data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            for e in entries {
                if e.stream_index < cur {
                    continue;
                }
                if e.stream_index >= end
                    || (contiguous && e.stream_index != cur)
                    || out.len() >= count
                {
                    return Ok(out);
                }
                let size = e.content.payload_bytes();
                if !out.is_empty() && total + size > bytes {
                    return Ok(out);
                }
                total += size;
                cur = e.stream_index + 1;
                out.push(e);
            }
        }
    }
    Ok(out)
}

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
    /// "streaming", "terminated" or "archived".
    pub status: Option<String>,
    pub stream_type: Option<String>,
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
    let archived = ["partial", "complete"];
    let mut q = streams::table
        .filter(streams::project.eq(&f.project))
        .select(StreamRow::as_select())
        .into_boxed();
    let postgres = is_postgres(conn);
    if let Some(p) = &f.prefix {
        q = q.filter(streams::prefix.eq(p));
        if postgres {
            let start = format!("{p}{}", crate::names::PATH_SEP);
            q = q.filter(PATH_KEY.starts_with(&start));
        }
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
    match f.status.as_deref() {
        Some("streaming") => {
            q = q
                .filter(streams::terminated_us.is_null())
                .filter(streams::archival.ne_all(archived));
        }
        Some("terminated") => {
            q = q
                .filter(streams::terminated_us.is_not_null())
                .filter(streams::archival.ne_all(archived));
        }
        Some("archived") => q = q.filter(streams::archival.eq_any(archived)),
        _ => {}
    }
    if let Some(t) = &f.stream_type {
        q = q.filter(streams::stream_type.eq(t.clone()));
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
    Ok(q.limit(limit).load(conn)?)
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

// ---------------------------------------------------------------------------------------
// Databases for tests and `logdog migrate`

/// Replaces the database name of a PostgreSQL URL.
pub fn postgres_url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// Creates a database on the server `server_url` points at.
pub fn create_postgres_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    let mut c =
        PgConnection::establish(server_url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    c.batch_execute(&format!("CREATE DATABASE \"{name}\""))?;
    Ok(())
}

/// Drops a database, disconnecting whoever still uses it.
pub fn drop_postgres_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    let mut c =
        PgConnection::establish(server_url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(parse_database_url("postgres://u@h/db").0, Backend::Postgres);
        assert_eq!(
            parse_database_url("postgresql://u@h/db").0,
            Backend::Postgres
        );
        assert_eq!(
            parse_database_url("sqlite:///abs/x.db"),
            (Backend::Sqlite, "/abs/x.db".into())
        );
        assert_eq!(
            parse_database_url("data/x.db"),
            (Backend::Sqlite, "data/x.db".into())
        );
        assert_eq!(
            postgres_url_with_database("postgres://p@127.0.0.1:5432/test", "x"),
            "postgres://p@127.0.0.1:5432/x"
        );
        assert_eq!(
            postgres_url_with_database("postgres://p@h/test?sslmode=disable", "x"),
            "postgres://p@h/x?sslmode=disable"
        );
        assert_eq!(
            postgres_url_with_database("postgres://p@h", "x"),
            "postgres://p@h/x"
        );
    }

    #[test]
    fn sqlite_store_migrates_and_round_trips_a_prefix() {
        let dir = std::env::temp_dir().join(format!("logdog-store-{}", std::process::id()));
        let store = Store::open(dir.join("t.db").to_str().unwrap(), 2).unwrap();
        assert_eq!(store.migrate().unwrap(), 2);
        store.ready().unwrap();
        let row = PrefixRow {
            project: "p".into(),
            prefix: "a/b".into(),
            secret_hash: vec![1; 32],
            secret: None,
            op_nonce: None,
            source_info: "[]".into(),
            created_us: 1,
            expires_us: 2,
        };
        store.write(|c| insert_prefix(c, &row)).unwrap();
        let got = store.read(|c| get_prefix(c, "p", "a/b")).unwrap().unwrap();
        assert_eq!(got.secret_hash, vec![1; 32]);
        // A failed transaction leaves nothing behind.
        let err = store.write(|c| {
            insert_prefix(
                c,
                &PrefixRow {
                    prefix: "c".into(),
                    ..row.clone()
                },
            )?;
            insert_prefix(c, &row)
        });
        assert!(err.is_err());
        assert!(store.read(|c| get_prefix(c, "p", "c")).unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
