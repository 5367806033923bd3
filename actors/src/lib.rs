//! `logdog-actors`: the coordinator's actors and their messages.
//!
//! - [`lifecycle`]: the stream lifecycle as a pure state machine.
//! - [`stream`]: `StreamActor`, one per live stream, and its messages.
//! - [`directory`]: finds or starts the one actor of a stream.
//! - [`registry`]: the `Registry` actor for Butler prefixes.
//! - [`writer`]: the group-committing write executor.
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

pub use directory::{ArchivalTiming, Directory, StreamDeps, StreamKey};
pub use error::ActorError;
pub use registry::Registry;
pub use writer::Writer;
