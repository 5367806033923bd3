DROP INDEX stream_tags_by_key_value;
CREATE INDEX stream_tags_by_key_value ON stream_tags (project, key, value);

DROP INDEX streams_by_path;
CREATE UNIQUE INDEX streams_by_path ON streams (project, path);
CREATE INDEX streams_by_prefix ON streams (project, prefix, path);

DROP INDEX prefixes_by_prefix;
DROP INDEX prefixes_by_hash;
ALTER TABLE prefixes ADD PRIMARY KEY (project, prefix);
