-- The sequence the next contiguous entry gets: lines so far for text streams, bytes for
-- binary ones, datagrams for datagram ones. NULL where it is not known (streams archived
-- before this column, whose chunks are gone).
ALTER TABLE streams ADD COLUMN next_sequence BIGINT;
UPDATE streams SET next_sequence = CASE
    WHEN next_index = 0 THEN 0
    ELSE (SELECT c.end_sequence FROM log_chunks c
          WHERE c.project = streams.project AND c.stream_id = streams.id
            AND c.first_index < streams.next_index
          ORDER BY c.first_index DESC LIMIT 1)
END;
