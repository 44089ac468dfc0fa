-- reel session index, schema version 9.
-- Flows recorded while the body index is off (body_index_max 0, the
-- default) are no longer tracked one by one in body_todo: an 'open' row
-- when each flow started and a 'disabled' row when it ended cost a quarter
-- of the indexer's CPU per small flow, for an index nobody asked for.
-- Instead each run of the indexer with the index off keeps ranges of the
-- flow ids it indexed here, and a body filter reads every flow in a range
-- from the spool, as it reads those in body_todo. body_todo rows written
-- before this version ('disabled' among them) keep their meaning.
--   lo, hi   first and last flow id of the range (inclusive)
CREATE TABLE body_off (
    lo INTEGER PRIMARY KEY,
    hi INTEGER NOT NULL
);
