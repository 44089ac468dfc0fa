-- reel session index, schema version 8.
-- The connection a flow came on (FlowStart.client_conn/stream_id in the
-- spool, so repair restores them), to see which flows shared one:
--   client_conn  the client connection's number, counted from 1 in each
--                run of the proxy; NULL when not known (imports, old flows)
--   stream_id    its HTTP/2 stream on that connection; NULL for HTTP/1
--                and tunnels
ALTER TABLE flows ADD COLUMN client_conn INTEGER;
ALTER TABLE flows ADD COLUMN stream_id INTEGER;
CREATE INDEX flows_client_conn ON flows(client_conn) WHERE client_conn IS NOT NULL;
