-- Each text stream's section outline (GitLab, GitHub Actions and Buildkite markup), as
-- `logdog_schema::sections::Outline::state_bytes` writes it: derived from the entries
-- [0, fed_to), so a row that is behind is caught up from storage, never trusted further.
-- `finished` once the stream's last entry is in it (or it was archived).
CREATE TABLE stream_sections (
    project TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    fed_to BIGINT NOT NULL,
    finished BOOLEAN NOT NULL,
    state BLOB NOT NULL,
    updated_us BIGINT NOT NULL,
    PRIMARY KEY (project, stream_id)
);
