//! Clients of the coordinator. They reach it only through the HTTP API — the embedded
//! archivist too, over loopback — so the standalone and embedded workers are one code.
//!
//! - [`api`]: the typed HTTP client and retry policy the commands share.
//! - [`stream`]: `logdog stream` (with its [`outbox`] and spool file).
//! - [`read`]: `logdog cat`, `tail`, `query` and `ls`.
//! - [`archivist`]: the Archivist worker.

pub mod api;
pub mod archivist;
pub mod outbox;
pub mod read;
pub mod stream;
