-- reel session index, schema version 12.
-- Nothing in the tables changes. From this version on, a spool frame holds
-- up to 4 MiB of records (at most 8 MiB; docs/format.md section 2), where
-- it held up to 256 KiB (at most 1 MiB): the larger frames compress the
-- same traffic to about 15% less. A reel of schema 11 or older reads a
-- frame over 1 MiB as damage, and its recovery would set such frames
-- aside; it refuses a session of a newer schema instead, and so this
-- version is raised.
SELECT 1;
