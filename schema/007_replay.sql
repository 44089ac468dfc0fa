-- reel session index, schema version 7.
-- `reel replay` records each re-sent request as a new flow linked to the
-- flow it replays (FlowStart.replay_of in the spool, so repair restores it):
--   replay_of       id of the replayed flow; NULL for a flow that is not a replay
--   replay_session  name of the replayed flow's session; NULL: this session
ALTER TABLE flows ADD COLUMN replay_of INTEGER;
ALTER TABLE flows ADD COLUMN replay_session TEXT;
CREATE INDEX flows_replay_of ON flows(replay_of) WHERE replay_of IS NOT NULL;
