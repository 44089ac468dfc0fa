-- reel session index, schema version 11.
-- The flows of a client connection (~conn N) are found from the range of
-- flow ids it spans instead of an index on flows.client_conn. Kept by the
-- indexer, that index cost a quarter of its CPU per flow under load: 50
-- keep-alive connections put each commit's entries in 50 places of it,
-- every one a page written to the WAL and again at the checkpoint. This
-- table gets one row per connection, updated once per commit.
--   conn        the client connection's number (flows.client_conn)
--   first_flow  the lowest id of a flow that came on it
--   last_flow   the highest
-- A filter reads the flows between the two and keeps those of the
-- connection. Retention does not narrow a range: flows it deleted leave
-- it wider, never wrong. A rebuild makes the table again from flows.
CREATE TABLE client_conns (
    conn INTEGER PRIMARY KEY,
    first_flow INTEGER NOT NULL,
    last_flow INTEGER NOT NULL
);
INSERT INTO client_conns(conn, first_flow, last_flow)
    SELECT client_conn, min(id), max(id) FROM flows
    WHERE client_conn IS NOT NULL GROUP BY client_conn;
DROP INDEX IF EXISTS flows_client_conn;
