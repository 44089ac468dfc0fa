-- reel session index, schema version 4.
-- WebSocket and raw TCP flows are recorded message by message (Message
-- records): how many a flow has so far. A flow whose request was upgraded
-- to WebSocket gets kind 'websocket' when its first message is indexed.
ALTER TABLE flows ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
