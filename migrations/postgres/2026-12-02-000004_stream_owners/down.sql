DROP TABLE stream_owners;
