-- reel session index, schema version 2.
-- url_fts is kept in step by the indexer (src/session/index.c) instead of
-- per-row triggers: new flows go in with one INSERT ... SELECT per
-- transaction, which costs half the CPU of indexing a flow less than an
-- FTS5 insert per row. The delete trigger stays.
DROP TRIGGER IF EXISTS flows_fts_ai;
DROP TRIGGER IF EXISTS flows_fts_au;
