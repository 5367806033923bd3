//! The LogDog coordinator: the central authority of a LogDog deployment.
//!
//! - [`config`]: the TOML config, environment overrides and validation.
//! - [`server`]: start-up: storage, migrations, actors, HTTP.
//! - [`http`]: the routes of `docs/API.md`, one module per API group.
//! - [`auth`]: tokens, roles, project scopes and who may do what.
//! - [`archive`]: the archive format and the store archives are written to.
//! - [`client`]: the command-line clients (`stream`, `cat`, `tail`, `query`, `ls`) and
//!   the archivist, over the typed HTTP client.
//! - [`errors`]: the API error type and its mapping to HTTP.
//! - [`metrics`]: HTTP request metrics.
//!
//! The actors live in `logdog-actors`, storage and wire formats in `logdog-schema`.

/// jemalloc serves every allocation of a process that links this crate (`logdog`, the
/// examples, the tests). glibc's malloc hands each large buffer (a page of entries, a chunk
/// read from storage) back to the kernel when it is freed and takes fresh, zeroed pages for
/// the next: page faults were a quarter of a binary Get's CPU time. jemalloc keeps freed
/// pages for reuse and returns them after a few seconds unused.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod archive;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod errors;
pub mod http;
pub mod metrics;
pub mod server;
