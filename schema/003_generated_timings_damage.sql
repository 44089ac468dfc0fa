-- reel session index, schema version 3.
-- What a flow's row must say so that the record tells the truth:
--   response_generated  1 when reel itself sent the response the client got
--                       (a 400/407/408/431/502/504 answer); status and reason
--                       are then that response's
--   request_body_dropped, response_body_dropped
--                       body bytes seen on the wire but not stored because
--                       capture fell behind the disk (body_limit cuts are
--                       *_truncated, not this)
--   damaged             1 when part of the flow's record is known lost
--                       (a damaged spool frame held some of its records);
--                       flow_damage says what
ALTER TABLE flows ADD COLUMN response_generated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flows ADD COLUMN request_body_dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flows ADD COLUMN response_body_dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flows ADD COLUMN damaged INTEGER NOT NULL DEFAULT 0;
CREATE INDEX flows_damaged ON flows(damaged) WHERE damaged != 0;

-- Known holes in flows' records: one row per lost piece. direction is
-- 'request' or 'response' for body bytes (offset/length within the stored
-- body, length -1 when unknown), or 'flow' for other lost records.
CREATE TABLE flow_damage (
    flow_id   INTEGER NOT NULL,
    direction TEXT NOT NULL,
    offset    INTEGER NOT NULL DEFAULT 0,
    length    INTEGER NOT NULL DEFAULT -1,
    reason    TEXT NOT NULL,
    found_us  INTEGER NOT NULL
);
CREATE INDEX flow_damage_flow ON flow_damage(flow_id);
