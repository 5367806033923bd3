//! Cluster mode: several coordinators on one PostgreSQL (`[cluster]` in the config).
//!
//! Membership: each running node has a `coordinators` row (a fresh node id every start)
//! and writes its heartbeat every `heartbeat_interval`, stamped with the database's clock;
//! a node silent for `node_timeout` is dead. A node joins at start-up (refused while a live
//! node advertises the same URL, so a restarted node replaces its previous run's row) and
//! leaves on a graceful stop. `GET /api/v1/cluster` lists the rows.
//!
//! Ownership: a stream's actor runs only on the node that claimed the stream
//! (`stream_owners`); the claim's lease is this membership, so each heartbeat renews every
//! lease the node holds. A node that has not written a heartbeat for `node_timeout` minus
//! one `heartbeat_interval` (cut off from PostgreSQL, paused) drops its stream actors
//! before the others may take their streams over; writes are fenced by epoch anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logdog_actors::Directory;
use logdog_schema::store::{self as db, NodeRow};
use logdog_schema::Store;
use tokio::sync::watch;

use crate::config::ClusterConfig;

/// How long the listener waits before connecting again after losing its connection.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

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
    /// Requests forwarded to a stream's owner (answered / not reached), and received
    /// from other nodes.
    pub forwards_ok: AtomicU64,
    pub forwards_failed: AtomicU64,
    pub forwarded_in: AtomicU64,
    /// Archive tasks' streams sealed by their owner at this node's request (sealed /
    /// not sealed now).
    pub seals_ok: AtomicU64,
    pub seals_failed: AtomicU64,
    /// Wake-ups received from the owners (`NOTIFY`), and times the listener connected.
    pub wakeups: AtomicU64,
    pub listens: AtomicU64,
    /// The client forwarded requests go out on.
    pub client: reqwest::Client,
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
            forwards_ok: AtomicU64::new(0),
            forwards_failed: AtomicU64::new(0),
            forwarded_in: AtomicU64::new(0),
            seals_ok: AtomicU64::new(0),
            seals_failed: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            listens: AtomicU64::new(0),
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                // Below the nodes' 5 s keep-alive, so an idle connection is dropped here
                // before the other node closes it under a request.
                .pool_idle_timeout(Duration::from_secs(2))
                .build()?,
        }))
    }

    /// How long this node may go without a committed heartbeat before it must assume its
    /// leases are lapsing: one interval short of `node_timeout`.
    pub fn safe_window(&self) -> Duration {
        self.config
            .node_timeout
            .saturating_sub(self.config.heartbeat_interval)
    }

    /// Drops every stream actor when the last committed heartbeat is older than the safe
    /// window: the other nodes may be taking their streams over.
    fn depose_if_stale(&self, directory: &Directory) {
        let since = self.since_last_beat();
        if since >= self.safe_window() && !directory.is_empty() {
            let n = directory.depose(|_| false);
            tracing::warn!(node = %self.node_id, streams = n, since_ms = since.as_millis() as u64,
                "no heartbeat committed within the safe window; dropped this node's stream actors");
        }
    }

    /// Writes the heartbeat every `heartbeat_interval` until `shutdown` turns true, and
    /// keeps this node's stream actors within its leases.
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        directory: Directory,
    ) {
        let me = self.clone();
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(me.config.heartbeat_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The beat runs beside the ticks: a heartbeat stuck on an unreachable database
            // (waiting for a connection, or on one that no longer answers) must not hold
            // back the check that drops this node's actors before its leases lapse.
            let mut beating: Option<actix_rt::task::JoinHandle<()>> = None;
            loop {
                // The check also wakes at the moment the safe window closes, not at the
                // next tick after it: a tick can come up to one interval late.
                let closes = me.safe_window_closes();
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tokio::time::sleep_until(closes), if !directory.is_empty() => {
                        me.depose_if_stale(&directory);
                        continue;
                    }
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                // A node that was paused or cut off finds out here, on time.
                me.depose_if_stale(&directory);
                if beating.as_ref().is_some_and(|b| !b.is_finished()) {
                    continue; // one heartbeat at a time
                }
                let (m, d) = (me.clone(), directory.clone());
                beating = Some(actix_rt::spawn(async move {
                    if !m.beat().await {
                        m.depose_if_stale(&d);
                    }
                }));
            }
        });
    }

    /// Relays the owners' wake-ups to this node's replicas (live tail on every node): one
    /// `LISTEN` connection to `database`, connected again when lost, after which every
    /// actor is woken (notifications sent meanwhile were missed).
    pub fn spawn_listener(
        self: &Arc<Self>,
        database: String,
        mut shutdown: watch::Receiver<bool>,
        directory: Directory,
    ) {
        let me = self.clone();
        actix_rt::spawn(async move {
            loop {
                tokio::select! {
                    r = me.listen(&database, &directory) => if let Err(e) = r {
                        tracing::warn!(node = %me.node_id, error = %e, "notification listener lost its connection; reconnecting");
                    },
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                tokio::select! {
                    _ = tokio::time::sleep(LISTEN_RETRY) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        });
    }

    /// One listening connection, until it fails.
    async fn listen(&self, database: &str, directory: &Directory) -> anyhow::Result<()> {
        use futures::StreamExt;
        let (client, mut connection) =
            tokio_postgres::connect(database, tokio_postgres::NoTls).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = actix_rt::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if tx.send(n).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        client
            .batch_execute(&format!("LISTEN {}", db::STREAM_CHANNEL))
            .await?;
        self.listens.fetch_add(1, Ordering::Relaxed);
        directory.wake_all();
        while let Some(n) = rx.recv().await {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            if let Some((project, id)) = db::parse_wakeup(n.payload()) {
                directory.wake(&logdog_actors::StreamKey {
                    project: project.to_owned(),
                    id: id.to_owned(),
                });
            }
        }
        drop(client);
        match driver.await {
            Ok(Err(e)) => Err(e.into()),
            _ => Err(anyhow::anyhow!("the connection closed")),
        }
    }

    /// One heartbeat; true when it committed. It is stamped as of when it was sent, so the
    /// safe window never counts time the statement spent waiting.
    async fn beat(&self) -> bool {
        let sent = self.started.elapsed().as_millis() as u64;
        let (s, id) = (self.store.clone(), self.node_id.clone());
        let result = tokio::task::spawn_blocking(move || s.write(|c| db::heartbeat(c, &id))).await;
        match result {
            Ok(Ok(true)) => {
                self.last_beat_ms.store(sent, Ordering::Relaxed);
                return true;
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
        false
    }

    /// When the safe window after the last committed heartbeat closes.
    fn safe_window_closes(&self) -> tokio::time::Instant {
        let last = Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        tokio::time::Instant::from_std(self.started + last + self.safe_window())
    }

    /// How long ago the last heartbeat committed (since start when none has yet).
    pub fn since_last_beat(&self) -> Duration {
        let last = Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Marks this node as left and releases its streams (a graceful stop), so the other
    /// nodes take them at once instead of after `node_timeout`.
    pub async fn leave(&self) {
        let (s, id) = (self.store.clone(), self.node_id.clone());
        let left = tokio::task::spawn_blocking(move || {
            s.write(|c| {
                db::release_node(c, &id)?;
                db::leave_cluster(c, &id)
            })
        });
        match left.await {
            Ok(Ok(())) => tracing::info!(node = %self.node_id, "left the cluster"),
            Ok(Err(e)) => {
                tracing::warn!(node = %self.node_id, error = %e, "could not record leaving the cluster")
            }
            Err(e) => {
                tracing::warn!(node = %self.node_id, error = %e, "could not record leaving the cluster")
            }
        }
    }

    /// Every node row (this node's included), with how many streams each owns.
    pub fn nodes(&self) -> Result<Vec<(NodeRow, i64)>, db::StoreError> {
        self.store.read(|c| {
            let nodes = db::cluster_nodes(c)?;
            let counts = db::owner_counts(c)?;
            Ok(nodes
                .into_iter()
                .map(|n| {
                    let owned = counts
                        .iter()
                        .find(|(id, _)| *id == n.node_id)
                        .map_or(0, |(_, k)| *k);
                    (n, owned)
                })
                .collect())
        })
    }
}
