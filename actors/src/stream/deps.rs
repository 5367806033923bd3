//! The stream's own vocabulary: its key, what every stream actor shares, and how an actor
//! leaves whoever started it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::Recipient;

use logdog_schema::Store;

use crate::metrics::ActorMetrics;
use crate::writer::Writer;

/// Identifies a stream: ids are unique only within a project.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub project: String,
    pub id: String,
}

/// Archival timing the stream actors apply when they schedule tasks.
#[derive(Debug, Clone)]
pub struct ArchivalTiming {
    pub complete_delay: Duration,
    pub incomplete_delay: Duration,
    pub pessimistic_delay: Duration,
}

/// What every stream actor shares.
pub struct StreamDeps {
    pub store: Store,
    pub writer: Writer,
    pub archival: ArchivalTiming,
    /// A stream actor with nothing to do for this long stops.
    pub idle_timeout: Duration,
    pub metrics: ActorMetrics,
    /// Cluster mode: this node, for claiming streams before their actors start.
    pub cluster: Option<ClusterNode>,
    /// Rung when an archive task is scheduled.
    pub task_bell: TaskBell,
}

/// Tells this node's dispatcher when an archive task it scheduled falls due, so a waiting
/// archivist leases it then rather than at the dispatcher's next poll. The dispatcher
/// connects itself when it starts; until then (and for tasks other nodes schedule) the
/// poll finds them.
#[derive(Clone, Default)]
pub struct TaskBell(Arc<OnceLock<Recipient<crate::dispatcher::TaskDue>>>);

impl TaskBell {
    pub fn connect(&self, to: Recipient<crate::dispatcher::TaskDue>) {
        let _ = self.0.set(to);
    }

    /// A task falls due at `due_us` (microseconds since the epoch).
    pub fn ring(&self, due_us: i64) {
        if let Some(to) = self.0.get() {
            to.do_send(crate::dispatcher::TaskDue { due_us });
        }
    }
}

/// This node as a stream owner in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub node_id: String,
    /// A node whose heartbeat is older than this is dead: its streams may be taken over.
    pub node_timeout: Duration,
}
