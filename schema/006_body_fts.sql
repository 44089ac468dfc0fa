-- reel session index, schema version 6.
-- Indexed body search (src/session/bodyindex.c fills it from the indexer,
-- so live recording, recovery and repair agree; docs/filters.md).
--   body_text   the decoded text of a flow's request and response bodies,
--               each cut at body_index_max bytes; NULL for a side that is
--               not text (binary, undecodable) or has no body. Only flows
--               with some text have a row.
--   body_fts    FTS5 over body_text with the trigram tokenizer: a phrase
--               query finds any substring of 3 characters or more, case
--               folded, which is what `~b WORD` asks of a body.
--   body_todo   flows whose body text the FTS does not hold in full, so a
--               body filter must still read them from the spool: open
--               flows, text waiting for the FTS ('pending'), binary bodies,
--               bodies over body_index_max, WebSocket and TCP messages,
--               records the indexer lost track of, and every flow with a
--               body indexed before this version (reel repair rebuilds the
--               index and fills the FTS). reason says which.
-- A body term `~b WORDS` (no regex syntax) reads only the flows in
-- body_fts MATCH or in body_todo, then decides each on the spool as before.
CREATE TABLE body_text (
    flow_id INTEGER PRIMARY KEY,
    req     TEXT,
    resp    TEXT,
    fts     INTEGER NOT NULL DEFAULT 0  -- 1 once body_fts holds it
);
-- Text not yet in body_fts: the indexer adds it within a CPU budget
-- (an FTS5 trigram insert costs far more than the rest of indexing).
CREATE INDEX body_text_unindexed ON body_text(flow_id) WHERE fts = 0;
CREATE VIRTUAL TABLE body_fts USING fts5(req, resp, content='body_text', content_rowid='flow_id',
                                         tokenize='trigram', columnsize=0);
CREATE TABLE body_todo (
    flow_id INTEGER PRIMARY KEY,
    reason  TEXT NOT NULL  -- 'open', 'binary', 'cap', 'encoding', 'messages', 'lost', ...
);
INSERT INTO body_todo(flow_id, reason)
    SELECT id, 'indexed before body search' FROM flows
    WHERE state != 'complete' OR request_body_size > 0 OR response_body_size > 0 OR messages > 0;

-- A flow that leaves the index (retention, repair) leaves the FTS too.
CREATE TRIGGER flows_body_ad AFTER DELETE ON flows BEGIN
    INSERT INTO body_fts(body_fts, rowid, req, resp)
        SELECT 'delete', flow_id, req, resp FROM body_text WHERE flow_id = old.id AND fts = 1;
    DELETE FROM body_text WHERE flow_id = old.id;
    DELETE FROM body_todo WHERE flow_id = old.id;
END;
