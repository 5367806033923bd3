DROP TABLE archive_tasks;
DROP TABLE log_chunks;
DROP TABLE stream_tags;
DROP TABLE streams;
DROP TABLE prefixes;
