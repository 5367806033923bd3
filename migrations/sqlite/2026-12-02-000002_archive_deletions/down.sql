DROP TABLE archive_deletions;
