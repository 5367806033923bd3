-- Cluster membership: one row per running coordinator (a new node_id each start), its
-- heartbeat written from the database's clock, so nodes need no synchronised clocks.
-- A node whose heartbeat is older than node_timeout is dead; stopped_us marks a node that
-- left on a graceful stop. Only PostgreSQL serves a cluster.
CREATE TABLE coordinators (
    node_id TEXT PRIMARY KEY,
    advertise TEXT NOT NULL,
    started_us BIGINT NOT NULL,
    heartbeat_us BIGINT NOT NULL,
    stopped_us BIGINT
);
CREATE INDEX coordinators_by_advertise ON coordinators (advertise);
