//! Stream ownership in a cluster (PostgreSQL only): the `stream_owners` rows.
//!
//! A node runs a stream's actor only after claiming the stream here. A claim takes the row
//! when it is new, released, held by this node already, or held by a node that is not live
//! (its heartbeat older than `node_timeout`, stopped, or gone); every claim of an existing
//! row increments the epoch. The lease is the owner's membership: one heartbeat renews all
//! of a node's leases. Every write of a stream actor calls [`check_fence`] first, which
//! locks the row (`FOR SHARE`) until the write commits: a takeover waits for that commit,
//! and a write after a takeover finds another node or epoch and fails.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};

use super::cluster::{pg, DB_NOW_US};
use super::{AnyConnection, StoreError};

/// What a stream actor holds: its node and the epoch it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub node_id: String,
    pub epoch: i64,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node owns the stream under `epoch`; `takeover` when a live-looking claim of
    /// another node was taken over (that node is dead or stopped).
    Owned { epoch: i64, takeover: bool },
    /// A live node owns it.
    Elsewhere { node_id: String, advertise: String },
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = Bool)]
    takeover: bool,
}

/// An owner row's holder and claim.
#[derive(QueryableByName)]
struct OwnerRow {
    #[diesel(sql_type = Text)]
    node_id: String,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = Bool)]
    released: bool,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Text)]
    node_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    advertise: Option<String>,
}

/// The condition under which the owner row `o` may be claimed by `$3` (with `$4` the node
/// timeout in microseconds).
const CLAIMABLE: &str = "o.released OR o.node_id = $3 OR NOT EXISTS (
        SELECT 1 FROM coordinators c WHERE c.node_id = o.node_id AND c.stopped_us IS NULL
        AND c.heartbeat_us >= (extract(epoch from clock_timestamp()) * 1000000)::bigint - $4)";

/// Claims `project`/`id` for `node_id`, in its own transaction (the caller's `write`).
pub fn claim_stream(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    node_id: &str,
    node_timeout_us: i64,
) -> Result<Claim, StoreError> {
    let c = pg(conn)?;
    let claimed: Vec<Claimed> = diesel::sql_query(format!(
        "WITH old AS (SELECT node_id, released FROM stream_owners WHERE project = $1 AND stream_id = $2)
         INSERT INTO stream_owners AS o (project, stream_id, node_id, epoch, claimed_us, released)
         VALUES ($1, $2, $3, 1, {DB_NOW_US}, FALSE)
         ON CONFLICT (project, stream_id) DO UPDATE
           SET node_id = EXCLUDED.node_id, epoch = o.epoch + 1,
               claimed_us = EXCLUDED.claimed_us, released = FALSE
           WHERE {CLAIMABLE}
         RETURNING o.epoch AS epoch,
           COALESCE((SELECT NOT old.released AND old.node_id <> $3 FROM old), FALSE) AS takeover"
    ))
    .bind::<Text, _>(project)
    .bind::<Text, _>(id)
    .bind::<Text, _>(node_id)
    .bind::<BigInt, _>(node_timeout_us)
    .load(c)?;
    if let Some(row) = claimed.into_iter().next() {
        return Ok(Claim::Owned {
            epoch: row.epoch,
            takeover: row.takeover,
        });
    }
    let holder: Vec<Holder> = diesel::sql_query(
        "SELECT o.node_id, c.advertise FROM stream_owners o
         LEFT JOIN coordinators c ON c.node_id = o.node_id
         WHERE o.project = $1 AND o.stream_id = $2",
    )
    .bind::<Text, _>(project)
    .bind::<Text, _>(id)
    .load(c)?;
    match holder.into_iter().next() {
        Some(Holder {
            node_id,
            advertise: Some(advertise),
        }) => Ok(Claim::Elsewhere { node_id, advertise }),
        _ => Err(StoreError::Unavailable(
            "the stream's owner changed during the claim; retry".into(),
        )),
    }
}

/// The channel every fenced write notifies on commit, with `project<TAB>stream_id`: a
/// wake-up for the other nodes' followers (never log data).
pub const STREAM_CHANNEL: &str = "logdog_streams";

/// Parses a [`STREAM_CHANNEL`] payload into (project, stream id).
pub fn parse_wakeup(payload: &str) -> Option<(&str, &str)> {
    payload.split_once('\t')
}

/// Locks the stream's owner row until the caller's transaction ends and checks that it
/// still names `fence`: `Err(Fenced)` when the stream was taken over (or released). The
/// same statement queues a `NOTIFY` on [`STREAM_CHANNEL`], which PostgreSQL delivers only
/// if the transaction commits (and once per stream however many writes it holds).
pub fn check_fence(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    fence: &Fence,
) -> Result<(), StoreError> {
    let c = pg(conn)?;
    let rows: Vec<OwnerRow> = diesel::sql_query(
        "SELECT o.node_id, o.epoch, o.released FROM stream_owners o,
           LATERAL (SELECT pg_notify($3, $1 || chr(9) || $2)) n
         WHERE o.project = $1 AND o.stream_id = $2 FOR SHARE OF o",
    )
    .bind::<Text, _>(project)
    .bind::<Text, _>(id)
    .bind::<Text, _>(STREAM_CHANNEL)
    .load(c)?;
    match rows.first() {
        Some(r) if r.node_id == fence.node_id && r.epoch == fence.epoch && !r.released => Ok(()),
        Some(r) => Err(StoreError::Fenced(format!(
            "this node no longer owns the stream (epoch {} held, now node {} epoch {})",
            fence.epoch, r.node_id, r.epoch
        ))),
        None => Err(StoreError::Fenced(
            "this node no longer owns the stream (its owner row is gone)".into(),
        )),
    }
}

/// Releases the stream if `fence` still holds it (its actor stopped): the next claim,
/// on any node, takes it at once.
pub fn release_stream(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
    fence: &Fence,
) -> Result<bool, StoreError> {
    let c = pg(conn)?;
    let n = diesel::sql_query(
        "UPDATE stream_owners SET released = TRUE
         WHERE project = $1 AND stream_id = $2 AND node_id = $3 AND epoch = $4",
    )
    .bind::<Text, _>(project)
    .bind::<Text, _>(id)
    .bind::<Text, _>(&fence.node_id)
    .bind::<BigInt, _>(fence.epoch)
    .execute(c)?;
    Ok(n == 1)
}

/// The streams `ids` of `project` were deleted (DeletePrefix): their owner rows go, so an
/// owner on another node is fenced at its next write, and every node is woken for them,
/// so replicas tell their viewers at once. On SQLite (one node) there is nothing to do.
pub fn forget_streams(
    conn: &mut AnyConnection,
    project: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    use diesel::sql_types::Array;
    let AnyConnection::Postgresql(c) = conn else {
        return Ok(());
    };
    for chunk in ids.chunks(500) {
        diesel::sql_query("DELETE FROM stream_owners WHERE project = $1 AND stream_id = ANY($2)")
            .bind::<Text, _>(project)
            .bind::<Array<Text>, _>(chunk)
            .execute(c)?;
        diesel::sql_query("SELECT pg_notify($3, $1 || chr(9) || id) FROM unnest($2::text[]) AS id")
            .bind::<Text, _>(project)
            .bind::<Array<Text>, _>(chunk)
            .bind::<Text, _>(STREAM_CHANNEL)
            .execute(c)?;
    }
    Ok(())
}

/// Releases every stream `node_id` holds (a graceful stop).
pub fn release_node(conn: &mut AnyConnection, node_id: &str) -> Result<usize, StoreError> {
    let c = pg(conn)?;
    Ok(diesel::sql_query(
        "UPDATE stream_owners SET released = TRUE WHERE node_id = $1 AND NOT released",
    )
    .bind::<Text, _>(node_id)
    .execute(c)?)
}

/// The streams `node_id` holds, as (project, stream id).
pub fn owned_by(
    conn: &mut AnyConnection,
    node_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        project: String,
        #[diesel(sql_type = Text)]
        stream_id: String,
    }
    let c = pg(conn)?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT project, stream_id FROM stream_owners WHERE node_id = $1 AND NOT released",
    )
    .bind::<Text, _>(node_id)
    .load(c)?;
    Ok(rows.into_iter().map(|r| (r.project, r.stream_id)).collect())
}

/// How many streams each node holds (unreleased claims), by node id.
pub fn owner_counts(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        node_id: String,
        #[diesel(sql_type = BigInt)]
        streams: i64,
    }
    let c = pg(conn)?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT node_id, count(*) AS streams FROM stream_owners WHERE NOT released GROUP BY node_id",
    )
    .load(c)?;
    Ok(rows.into_iter().map(|r| (r.node_id, r.streams)).collect())
}

/// The owner rows of a stream's (node, epoch), for tests and operators.
pub fn stream_owner(
    conn: &mut AnyConnection,
    project: &str,
    id: &str,
) -> Result<Option<(String, i64, bool)>, StoreError> {
    let c = pg(conn)?;
    let rows: Vec<OwnerRow> = diesel::sql_query(
        "SELECT node_id, epoch, released FROM stream_owners WHERE project = $1 AND stream_id = $2",
    )
    .bind::<Text, _>(project)
    .bind::<Text, _>(id)
    .load(c)?;
    Ok(rows
        .into_iter()
        .next()
        .map(|r| (r.node_id, r.epoch, r.released)))
}
