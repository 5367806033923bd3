//! `logdog-actors`: the coordinator's actors and their messages.
//!
//! - [`lifecycle`]: the stream lifecycle as a pure state machine.
//! - [`stream`]: `StreamActor`, one per live stream, and its messages.
//! - [`directory`]: finds or starts the one actor of a stream.
//! - [`registry`]: the `Registry` actor for Butler prefixes.
//! - [`dispatcher`]: the `Dispatcher` actor: archive tasks, leases, long polls.
//! - [`writer`]: the group-committing write executor.
//! - [`error`]: `ActorError`, what the actors answer instead of a value.
//! - [`metrics`]: the actors' Prometheus counters and gauges.
//!
//! This crate knows nothing of HTTP.

pub mod directory;
pub mod dispatcher;
pub mod error;
pub mod lifecycle;
pub mod metrics;
pub mod registry;
pub mod stream;
pub mod writer;

pub use directory::Directory;
pub use error::ActorError;
pub use registry::Registry;
pub use stream::{ArchivalTiming, StreamDeps, StreamKey};
pub use writer::Writer;
