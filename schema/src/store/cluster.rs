//! Cluster membership (PostgreSQL only): the `coordinators` rows and their heartbeats.
//! Every timestamp here is the database's clock (`clock_timestamp()`), so liveness never
//! depends on the nodes' own clocks agreeing.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::{AnyConnection, StoreError};

/// The database's clock in microseconds since the epoch.
pub(super) const DB_NOW_US: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// A coordinator's row, with the database's clock when it was read.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct NodeRow {
    #[diesel(sql_type = Text)]
    pub node_id: String,
    #[diesel(sql_type = Text)]
    pub advertise: String,
    #[diesel(sql_type = BigInt)]
    pub started_us: i64,
    #[diesel(sql_type = BigInt)]
    pub heartbeat_us: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub stopped_us: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub now_us: i64,
}

/// What a node is, as the others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Live,
    Dead,
    Stopped,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Live => "live",
            NodeState::Dead => "dead",
            NodeState::Stopped => "stopped",
        }
    }
}

impl NodeRow {
    pub fn state(&self, node_timeout_us: i64) -> NodeState {
        if self.stopped_us.is_some() {
            NodeState::Stopped
        } else if self.now_us - self.heartbeat_us > node_timeout_us {
            NodeState::Dead
        } else {
            NodeState::Live
        }
    }
}

pub(super) fn pg(conn: &mut AnyConnection) -> Result<&mut diesel::pg::PgConnection, StoreError> {
    match conn {
        AnyConnection::Postgresql(c) => Ok(c),
        AnyConnection::Sqlite(_) => Err(StoreError::Corrupt(
            "cluster membership needs PostgreSQL".into(),
        )),
    }
}

/// Joins the cluster as `node_id` advertising `advertise`, in a write transaction: refused
/// (`Ok(Err(why))`) while a live node advertises the same URL; earlier rows of that URL
/// (this node's previous runs) are replaced, and rows silent for a day are pruned.
pub fn join_cluster(
    conn: &mut AnyConnection,
    node_id: &str,
    advertise: &str,
    node_timeout_us: i64,
) -> Result<Result<(), String>, StoreError> {
    let c = pg(conn)?;
    // One joiner at a time, so two nodes started with one URL cannot both get in.
    diesel::sql_query("LOCK TABLE coordinators IN SHARE ROW EXCLUSIVE MODE").execute(c)?;
    let same: Vec<NodeRow> = diesel::sql_query(format!(
        "SELECT node_id, advertise, started_us, heartbeat_us, stopped_us, {DB_NOW_US} AS now_us
         FROM coordinators WHERE advertise = $1"
    ))
    .bind::<Text, _>(advertise)
    .load(c)?;
    if let Some(live) = same
        .iter()
        .find(|n| n.state(node_timeout_us) == NodeState::Live)
    {
        return Ok(Err(format!(
            "node {} already advertises {advertise} and is alive (heartbeat {} ms ago); each node needs its own advertise URL",
            live.node_id,
            (live.now_us - live.heartbeat_us) / 1000
        )));
    }
    diesel::sql_query("DELETE FROM coordinators WHERE advertise = $1")
        .bind::<Text, _>(advertise)
        .execute(c)?;
    diesel::sql_query(format!(
        "DELETE FROM coordinators WHERE heartbeat_us < {DB_NOW_US} - 86400000000"
    ))
    .execute(c)?;
    diesel::sql_query(format!(
        "INSERT INTO coordinators (node_id, advertise, started_us, heartbeat_us)
         VALUES ($1, $2, {DB_NOW_US}, {DB_NOW_US})"
    ))
    .bind::<Text, _>(node_id)
    .bind::<Text, _>(advertise)
    .execute(c)?;
    Ok(Ok(()))
}

/// Writes this node's heartbeat; false when its row is gone or it has left.
pub fn heartbeat(conn: &mut AnyConnection, node_id: &str) -> Result<bool, StoreError> {
    let c = pg(conn)?;
    let n = diesel::sql_query(format!(
        "UPDATE coordinators SET heartbeat_us = {DB_NOW_US}
         WHERE node_id = $1 AND stopped_us IS NULL"
    ))
    .bind::<Text, _>(node_id)
    .execute(c)?;
    Ok(n == 1)
}

/// Marks this node as gone on a graceful stop.
pub fn leave_cluster(conn: &mut AnyConnection, node_id: &str) -> Result<(), StoreError> {
    let c = pg(conn)?;
    diesel::sql_query(format!(
        "UPDATE coordinators SET stopped_us = {DB_NOW_US} WHERE node_id = $1"
    ))
    .bind::<Text, _>(node_id)
    .execute(c)?;
    Ok(())
}

/// Every node row, oldest start first.
pub fn cluster_nodes(conn: &mut AnyConnection) -> Result<Vec<NodeRow>, StoreError> {
    let c = pg(conn)?;
    Ok(diesel::sql_query(format!(
        "SELECT node_id, advertise, started_us, heartbeat_us, stopped_us, {DB_NOW_US} AS now_us
         FROM coordinators ORDER BY started_us, node_id"
    ))
    .load(c)?)
}
