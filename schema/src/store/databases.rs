//! Databases for tests and `logdog migrate`: URLs, creating and dropping PostgreSQL databases.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;

use super::StoreError;

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
