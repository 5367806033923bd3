-- PostgreSQL's B-tree entries hold about 2.7 KB, and names, prefixes and tag values may be
-- 4 KB. Keys that can be that long are indexed by their first 2,000 characters (ordering
-- and ranges; queries add the matching substr() condition and order by (substr, full
-- value)) and, where they must be unique, by their SHA-256.

-- Prefixes: unique by hash (names are ASCII without backslashes, so the text-to-bytea
-- cast is one-to-one), looked up and listed through the truncated key.
ALTER TABLE prefixes DROP CONSTRAINT prefixes_pkey;
CREATE UNIQUE INDEX prefixes_by_hash ON prefixes (project, sha256(prefix::bytea));
CREATE INDEX prefixes_by_prefix ON prefixes (project, substr(prefix, 1, 2000));

-- Streams: the id is the SHA-256 of the path, so the primary key already makes paths
-- unique; a prefix's streams are a range of paths (`prefix/+/…`).
DROP INDEX streams_by_path;
DROP INDEX streams_by_prefix;
CREATE INDEX streams_by_path ON streams (project, substr(path, 1, 2000));

-- Tag values (UTF-8, up to 4 bytes a character): 500 characters fit.
DROP INDEX stream_tags_by_key_value;
CREATE INDEX stream_tags_by_key_value ON stream_tags (project, key, substr(value, 1, 500));
