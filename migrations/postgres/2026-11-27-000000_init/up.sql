-- Prefixes registered by Butlers. The plain secret is kept only for the op_nonce retry window.
CREATE TABLE prefixes (
    project     TEXT COLLATE "C"    NOT NULL,
    prefix      TEXT COLLATE "C"    NOT NULL,
    secret_hash BYTEA    NOT NULL,
    secret      BYTEA,
    op_nonce    BYTEA,
    source_info TEXT    NOT NULL DEFAULT '[]',
    created_us  BIGINT  NOT NULL,
    expires_us  BIGINT  NOT NULL,
    PRIMARY KEY (project, prefix)
);

-- One row per stream: descriptor and lifecycle state.
CREATE TABLE streams (
    project        TEXT COLLATE "C"    NOT NULL,
    id             TEXT COLLATE "C"    NOT NULL,
    path           TEXT COLLATE "C"    NOT NULL,
    prefix         TEXT COLLATE "C"    NOT NULL,
    name           TEXT COLLATE "C"    NOT NULL,
    stream_type    TEXT    NOT NULL,
    content_type   TEXT    NOT NULL,
    descriptor     TEXT    NOT NULL,
    created_us     BIGINT  NOT NULL,
    updated_us     BIGINT  NOT NULL,
    next_index     BIGINT  NOT NULL DEFAULT 0,
    terminal_index BIGINT  NOT NULL DEFAULT -1,
    terminated_us  BIGINT,
    sealed         BOOLEAN NOT NULL DEFAULT FALSE,
    archival       TEXT    NOT NULL DEFAULT 'none',
    archive        TEXT,
    archive_error  TEXT,
    purged         BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (project, id)
);
CREATE UNIQUE INDEX streams_by_path ON streams (project, path);
CREATE INDEX streams_by_prefix ON streams (project, prefix, path);

-- Tags in their own table so Query can filter on them with an index.
CREATE TABLE stream_tags (
    project   TEXT COLLATE "C" NOT NULL,
    stream_id TEXT COLLATE "C" NOT NULL,
    key       TEXT COLLATE "C" NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (project, stream_id, key)
);
CREATE INDEX stream_tags_by_key_value ON stream_tags (project, key, value);

-- Intermediate log data: one row per committed run of consecutive entries.
CREATE TABLE log_chunks (
    project      TEXT COLLATE "C"   NOT NULL,
    stream_id    TEXT COLLATE "C"   NOT NULL,
    first_index  BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    end_sequence BIGINT NOT NULL,
    data         BYTEA   NOT NULL,
    PRIMARY KEY (project, stream_id, first_index)
);

-- At most one archive task per stream, written with the transition that schedules it.
CREATE TABLE archive_tasks (
    task_id          TEXT    NOT NULL PRIMARY KEY,
    project          TEXT COLLATE "C"    NOT NULL,
    stream_id        TEXT COLLATE "C"    NOT NULL,
    reason           TEXT    NOT NULL,
    due_us           BIGINT  NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_id         TEXT,
    lease_expires_us BIGINT,
    last_error       TEXT,
    created_us       BIGINT  NOT NULL
);
CREATE UNIQUE INDEX archive_tasks_by_stream ON archive_tasks (project, stream_id);
CREATE INDEX archive_tasks_by_due ON archive_tasks (due_us);
