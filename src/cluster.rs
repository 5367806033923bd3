//! Cluster mode: several coordinators on one PostgreSQL (`[cluster]` in the config).
//!
//! Membership: each running node has a `coordinators` row (a fresh node id every start)
//! and writes its heartbeat every `heartbeat_interval`, stamped with the database's clock;
//! a node silent for `node_timeout` is dead. A node joins at start-up (refused while a live
//! node advertises the same URL, so a restarted node replaces its previous run's row) and
//! leaves on a graceful stop. `GET /api/v1/cluster` lists the rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logdog_schema::store::{self as db, NodeRow};
use logdog_schema::Store;
use tokio::sync::watch;

use crate::config::ClusterConfig;

/// This node's membership.
pub struct Membership {
    pub node_id: String,
    pub advertise: String,
    pub config: ClusterConfig,
    store: Store,
    started: Instant,
    /// Milliseconds after `started` of the last heartbeat that committed.
    last_beat_ms: AtomicU64,
    pub heartbeat_failures: AtomicU64,
}

impl Membership {
    /// Joins the cluster: this node's row, written before it serves anything.
    pub async fn join(store: Store, config: &ClusterConfig) -> anyhow::Result<Arc<Self>> {
        let node_id = format!("{:016x}", rand::random::<u64>());
        let (s, id, url) = (store.clone(), node_id.clone(), config.advertise.clone());
        let timeout = config.node_timeout.as_micros() as i64;
        let joined = tokio::task::spawn_blocking(move || {
            s.write(|c| db::join_cluster(c, &id, &url, timeout))
        })
        .await??;
        if let Err(why) = joined {
            anyhow::bail!("cannot join the cluster: {why}");
        }
        tracing::info!(node = %node_id, advertise = %config.advertise, "joined the cluster");
        Ok(Arc::new(Self {
            node_id,
            advertise: config.advertise.clone(),
            config: config.clone(),
            store,
            started: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
            heartbeat_failures: AtomicU64::new(0),
        }))
    }

    /// Writes the heartbeat every `heartbeat_interval` until `shutdown` turns true.
    pub fn spawn_heartbeat(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let me = self.clone();
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(me.config.heartbeat_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                me.beat().await;
            }
        });
    }

    async fn beat(&self) {
        let (s, id) = (self.store.clone(), self.node_id.clone());
        let result = tokio::task::spawn_blocking(move || s.write(|c| db::heartbeat(c, &id))).await;
        match result {
            Ok(Ok(true)) => {
                self.last_beat_ms
                    .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            Ok(Ok(false)) => {
                // Our row was replaced: another process took this advertise URL while we
                // looked dead (paused, cut off). Say so; this node must not act as a member.
                self.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(node = %self.node_id, "this node's membership row is gone (declared dead and replaced)");
            }
            Ok(Err(e)) => {
                self.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.node_id, error = %e, "heartbeat failed");
            }
            Err(e) => {
                self.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.node_id, error = %e, "heartbeat task failed");
            }
        }
    }

    /// How long ago the last heartbeat committed (since start when none has yet).
    pub fn since_last_beat(&self) -> Duration {
        let last = Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Marks this node as left (a graceful stop).
    pub async fn leave(&self) {
        let (s, id) = (self.store.clone(), self.node_id.clone());
        match tokio::task::spawn_blocking(move || s.write(|c| db::leave_cluster(c, &id))).await {
            Ok(Ok(())) => tracing::info!(node = %self.node_id, "left the cluster"),
            Ok(Err(e)) => {
                tracing::warn!(node = %self.node_id, error = %e, "could not record leaving the cluster")
            }
            Err(e) => {
                tracing::warn!(node = %self.node_id, error = %e, "could not record leaving the cluster")
            }
        }
    }

    /// Every node row (this node's included).
    pub fn nodes(&self) -> Result<Vec<NodeRow>, db::StoreError> {
        self.store.read(db::cluster_nodes)
    }
}
