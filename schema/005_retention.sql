-- reel session index, schema version 5.
-- Retention: segments dropped on purpose (retention_max_bytes / _age /
-- _flows, or replaced by `reel compact`), one row per segment. Recovery,
-- verify and repair treat a segment listed here as gone on purpose, not as
-- damage. `reel show` sums it up.
CREATE TABLE retention (
    segment  INTEGER PRIMARY KEY,  -- spool/%08u.zst, deleted
    time_us  INTEGER NOT NULL,     -- when it was dropped
    flows    INTEGER NOT NULL,     -- flows dropped with it (index rows deleted)
    bytes    INTEGER NOT NULL,     -- size of the segment file
    reason   TEXT NOT NULL         -- 'max_bytes', 'max_age', 'max_flows' or 'compact'
);

-- Flows retention dropped that still have records in a segment that is
-- kept (a flow that straddled a segment boundary): their records there
-- are leftovers, ignored by verify and repair and removed by `reel compact`.
CREATE TABLE retired_flows (
    flow_id INTEGER PRIMARY KEY
);

-- Retention finds a segment's flows by segment.
CREATE INDEX flow_frames_segment ON flow_frames(segment);
