//! `logdog-schema`: storage and wire formats for the LogDog coordinator.
//!
//! - [`names`]: LogDog's naming rules (projects, prefixes, stream names, paths, tags).
//! - [`wire`]: descriptors, log entries and streams in JSON and in stored form.
//! - [`chunk`]: the binary encoding of a run of entries.
//! - [`schema`], [`models`]: the diesel tables and their rows.
//! - [`store`]: the r2d2 pool over SQLite or PostgreSQL, migrations, and the queries.
//!
//! This crate knows nothing of actors or HTTP.

pub mod chunk;
pub mod models;
pub mod names;
pub mod schema;
pub mod sections;
pub mod store;
pub mod wire;

pub use store::{AnyConnection, Backend, Store, StoreError};
