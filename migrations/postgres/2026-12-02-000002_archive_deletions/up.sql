-- Archives still to be removed from their store: written in the transaction that purges a
-- stream or deletes its prefix, removed once every store has deleted the stream's objects,
-- so a store that is away when the stream goes is asked again, never forgotten.
CREATE TABLE archive_deletions (
    project TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    due_us BIGINT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (project, stream_id)
);
CREATE INDEX archive_deletions_by_due ON archive_deletions (due_us);
