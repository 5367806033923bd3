ALTER TABLE streams DROP COLUMN next_sequence;
