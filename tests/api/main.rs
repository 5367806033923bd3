//! Integration tests over real HTTP, on SQLite and (with LOGDOG_TEST_DATABASE_URL) on
//! PostgreSQL. Each module is one area of the API.

mod common;

mod archival;
mod archivist;
mod auth;
mod browser;
mod cli;
mod cluster;
mod concurrency;
mod errors;
mod hardening;
mod idempotency;
mod readme;
mod reads;
mod restart;
mod s3;
mod search;
mod sections;
mod shutdown;
mod watch;
mod web;
mod write_path;
