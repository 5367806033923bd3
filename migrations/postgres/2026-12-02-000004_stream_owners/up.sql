-- Stream ownership in a cluster: which node runs a stream's actor, and under which epoch.
-- A stream's lease is its owner's membership: it holds while the owner's heartbeat in
-- `coordinators` is younger than node_timeout, so one heartbeat statement renews every
-- lease a node holds. A claim takes a row that is released, or held by a node that is
-- dead, stopped or gone, and increments the epoch, so every takeover is a new epoch.
-- Every write of a stream actor first locks its row (FOR SHARE) and checks node and
-- epoch: a deposed owner never commits. Rows stay after release so epochs only grow.
CREATE TABLE stream_owners (
    project TEXT COLLATE "C" NOT NULL,
    stream_id TEXT COLLATE "C" NOT NULL,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    claimed_us BIGINT NOT NULL,
    released BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (project, stream_id)
);
CREATE INDEX stream_owners_by_node ON stream_owners (node_id) WHERE NOT released;
