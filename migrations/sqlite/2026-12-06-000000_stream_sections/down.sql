DROP TABLE stream_sections;
