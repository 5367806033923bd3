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

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;
/// A connection checkpoints the write-ahead log itself once it holds this many pages
/// (64 MiB of 4 KiB pages): a backstop, as `Store::checkpoint_in_background` keeps it
/// far smaller.
const SQLITE_AUTOCHECKPOINT_PAGES: u32 = 16_384;
/// The background checkpoint's pause after one that copied pages, and after one that
/// found nothing to copy.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(20);
const CHECKPOINT_IDLE: Duration = Duration::from_millis(250);

mod chunks;
mod cluster;
mod databases;
mod deletions;
mod long_keys;
mod owners;
mod prefixes;
mod query;
mod sections;
mod streams;
mod tasks;

pub use chunks::*;
pub use cluster::*;
pub use databases::*;
pub use deletions::*;
pub use owners::*;
pub use prefixes::*;
pub use query::*;
pub use sections::*;
pub use streams::*;
pub use tasks::*;

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
    /// A stream actor's write refused because its node no longer owns the stream (cluster
    /// mode): another node took it over, or it was released.
    #[error("{0}")]
    Fenced(String),
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
            E::DeserializationError(cause) => {
                // "Error deserializing field 'archival': unknown archival state \"x\"".
                let mut message = cause.to_string();
                let mut source = cause.source();
                while let Some(e) = source {
                    message = format!("{message}: {e}");
                    source = e.source();
                }
                StoreError::Corrupt(message)
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
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA mmap_size = 1073741824; \
                     PRAGMA wal_autocheckpoint = {SQLITE_AUTOCHECKPOINT_PAGES};"
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

#[derive(diesel::QueryableByName)]
struct CheckpointRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    checkpointed: i32,
}

/// Runs a passive checkpoint; returns the log's length in pages and how many of them are
/// now in the database file.
fn wal_checkpoint(conn: &mut AnyConnection) -> Result<(i32, i32), StoreError> {
    let AnyConnection::Sqlite(c) = conn else {
        return Ok((0, 0));
    };
    let row: CheckpointRow = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(c)?;
    Ok((row.log, row.checkpointed))
}

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

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
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

    /// SQLite: starts a thread that copies the write-ahead log into the database file
    /// (`PRAGMA wal_checkpoint(PASSIVE)`) on a connection of its own every 20 ms while
    /// it grows (every 250 ms when it does not), so the committing connection, which would
    /// otherwise do it inside a commit every 1,000 pages (reading the log back, writing
    /// and syncing the database file), only appends to the log and syncs it. A passive
    /// checkpoint never waits for writers or readers and changes nothing a commit has
    /// made durable. Stops when every clone of the store is gone; without it, connections
    /// still checkpoint on their own past `SQLITE_AUTOCHECKPOINT_PAGES`. No-op on
    /// PostgreSQL.
    pub fn checkpoint_in_background(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let manager = Manager {
            backend: self.backend,
            url: self.url.to_string(),
        };
        let alive = std::sync::Arc::downgrade(&self.healthy);
        std::thread::Builder::new()
            .name("logdog-checkpoint".into())
            .spawn(move || {
                let mut conn: Option<AnyConnection> = None;
                // The log's length and how much of it is copied, after the last checkpoint.
                let mut last = (0, 0);
                while alive.upgrade().is_some() {
                    if conn.is_none() {
                        conn = manager.connect().ok();
                    }
                    let pause = match conn.as_mut().map(wal_checkpoint) {
                        Some(Ok(state)) if state != last => {
                            last = state;
                            CHECKPOINT_BUSY
                        }
                        Some(Ok(_)) => CHECKPOINT_IDLE,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "checkpoint failed; trying again");
                            conn = None;
                            CHECKPOINT_IDLE * 10
                        }
                        None => CHECKPOINT_IDLE * 10,
                    };
                    std::thread::sleep(pause);
                }
            })
            .expect("spawn the checkpoint thread");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::PrefixRow;

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
        assert_eq!(store.migrate().unwrap(), 4);
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

    /// Stored enums are read strictly: an archival state, stream type or task reason that
    /// is none of the known ones fails the read as corrupt data instead of becoming a
    /// default (an unknown archival state read as `none` would reopen an archived stream).
    #[test]
    fn unknown_stored_enums_are_corrupt_not_defaults() {
        use crate::models::{StreamRow, TaskRow};
        use crate::wire::{Archival, StreamType, TaskReason};
        use diesel::RunQueryDsl;
        let dir = std::env::temp_dir().join(format!("logdog-enums-{}", std::process::id()));
        let store = Store::open(dir.join("t.db").to_str().unwrap(), 2).unwrap();
        store.migrate().unwrap();
        let row = StreamRow {
            project: "p".into(),
            id: "x".into(),
            path: "a/+/b".into(),
            prefix: "a".into(),
            name: "b".into(),
            stream_type: StreamType::Datagram,
            content_type: "application/x-logdog-datagram".into(),
            descriptor: "{}".into(),
            created_us: 0,
            updated_us: 0,
            next_index: 0,
            terminal_index: -1,
            terminated_us: None,
            sealed: false,
            archival: Archival::Tasked,
            archive: None,
            archive_error: None,
            purged: false,
            next_sequence: Some(0),
        };
        let task = TaskRow {
            task_id: "t".into(),
            project: "p".into(),
            stream_id: "x".into(),
            reason: TaskReason::Expired,
            due_us: 1,
            attempt: 0,
            lease_id: None,
            lease_expires_us: None,
            last_error: None,
            created_us: 0,
        };
        store.write(|c| insert_stream(c, &row, &[], &task)).unwrap();
        assert_eq!(store.read(|c| get_stream(c, "p", "x")).unwrap(), Some(row));
        assert_eq!(
            store
                .read(|c| get_task_by_id(c, "t"))
                .unwrap()
                .unwrap()
                .reason,
            TaskReason::Expired
        );
        for (sql, what) in [
            ("UPDATE streams SET archival = 'archivd'", "archival state"),
            (
                "UPDATE streams SET archival = 'none', stream_type = 'video'",
                "stream type",
            ),
        ] {
            store
                .write(|c| Ok(diesel::sql_query(sql).execute(c).map(|_| ())?))
                .unwrap();
            match store.read(|c| get_stream(c, "p", "x")) {
                Err(StoreError::Corrupt(m)) => assert!(m.contains(what), "{m}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
        store
            .write(|c| {
                Ok(
                    diesel::sql_query("UPDATE archive_tasks SET reason = 'bored'")
                        .execute(c)
                        .map(|_| ())?,
                )
            })
            .unwrap();
        assert!(matches!(
            store.read(|c| get_task_by_id(c, "t")),
            Err(StoreError::Corrupt(m)) if m.contains("archive task reason")
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
