-- reel session index, schema version 1.
-- Applied by src/session/index.c when PRAGMA user_version < 1. Every later
-- change is a new file NNN_<what>.sql that moves user_version forward by one;
-- files are applied in order inside one transaction each and never edited
-- once released. docs/format.md documents every table and column.

-- Session metadata: name, created_us, format, writer version.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per flow. Written by the recorder only, except `marked`, which the
-- CLI owns. Times are microseconds since the Unix epoch, NULL when unknown.
CREATE TABLE flows (
    id                    INTEGER PRIMARY KEY,  -- Record.flow_id
    uuid                  TEXT NOT NULL,
    kind                  TEXT NOT NULL DEFAULT 'http',   -- 'http' | 'tunnel'
    source                TEXT,                -- 'proxy', 'har-import', ...
    state                 TEXT NOT NULL DEFAULT 'open',   -- 'open' | 'complete' | 'error' | 'interrupted'
    start_us              INTEGER NOT NULL,
    request_end_us        INTEGER,
    response_start_us     INTEGER,
    end_us                INTEGER,
    client_addr           TEXT,
    server_addr           TEXT,
    scheme                TEXT,
    method                TEXT,
    host                  TEXT,
    port                  INTEGER,
    path                  TEXT,
    url                   TEXT,
    http_version          TEXT,
    status                INTEGER,
    reason                TEXT,
    request_body_size     INTEGER NOT NULL DEFAULT 0,
    response_body_size    INTEGER NOT NULL DEFAULT 0,
    request_truncated     INTEGER NOT NULL DEFAULT 0,
    response_truncated    INTEGER NOT NULL DEFAULT 0,
    request_content_type  TEXT,
    response_content_type TEXT,
    error                 TEXT,
    marked                INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX flows_host ON flows(host);
CREATE INDEX flows_status ON flows(status);
CREATE INDEX flows_start ON flows(start_us);
-- Flows that are not complete are few: this keeps the recovery UPDATE of
-- open flows and the per-state counts of `reel show` off a full scan.
CREATE INDEX flows_unfinished ON flows(state) WHERE state != 'complete';

-- Every zstd frame (block) of the spool that has been indexed.
CREATE TABLE frames (
    segment   INTEGER NOT NULL,   -- segment number, spool/%08u.zst
    offset    INTEGER NOT NULL,   -- byte offset of the frame in the segment
    clen      INTEGER NOT NULL,   -- compressed length of the frame
    rlen      INTEGER NOT NULL,   -- decompressed length
    nrecords  INTEGER NOT NULL,
    PRIMARY KEY (segment, offset)
) WITHOUT ROWID;

-- Which frames hold records of which flow: reading flow N decompresses only
-- these frames and keeps the records whose flow_id is N.
CREATE TABLE flow_frames (
    flow_id INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    offset  INTEGER NOT NULL,
    PRIMARY KEY (flow_id, segment, offset)
) WITHOUT ROWID;

-- User data: lives in SQLite only and survives `reel repair`.
CREATE TABLE annotations (
    id         INTEGER PRIMARY KEY,
    flow_id    INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    text       TEXT NOT NULL
);
CREATE INDEX annotations_flow ON annotations(flow_id);

CREATE TABLE tags (
    flow_id INTEGER NOT NULL,
    tag     TEXT NOT NULL,
    PRIMARY KEY (flow_id, tag)
) WITHOUT ROWID;
CREATE INDEX tags_tag ON tags(tag, flow_id);

-- Marks are user data too, kept apart from `flows` so that rebuilding the
-- index from the spool never loses them; flows.marked mirrors this table.
CREATE TABLE marks (
    flow_id    INTEGER PRIMARY KEY,
    created_us INTEGER NOT NULL
);

-- The session's hot config overlay and its history.
CREATE TABLE config_overlay (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE config_history (
    id        INTEGER PRIMARY KEY,
    time_us   INTEGER NOT NULL,
    key       TEXT NOT NULL,
    old_value TEXT,          -- NULL: was not set in the overlay
    new_value TEXT,          -- NULL: unset
    actor     TEXT NOT NULL  -- "user@host pid N"
);

-- Byte ranges of the spool found damaged by `reel repair` and skipped; verify
-- reports them as known damage instead of failing on them again.
CREATE TABLE damage (
    segment  INTEGER NOT NULL,
    offset   INTEGER NOT NULL,
    length   INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    found_us INTEGER NOT NULL,
    PRIMARY KEY (segment, offset)
) WITHOUT ROWID;

-- Full-text search over URLs and annotation text (external content tables,
-- kept in step by the triggers below). URLs are indexed by token only
-- (detail=none: no positions), which answers "which flows mention this
-- token" at a fraction of the cost of a full index on every recorded flow.
CREATE VIRTUAL TABLE url_fts USING fts5(url, content='flows', content_rowid='id',
                                        detail=none, columnsize=0);
CREATE TRIGGER flows_fts_ai AFTER INSERT ON flows WHEN new.url IS NOT NULL BEGIN
    INSERT INTO url_fts(rowid, url) VALUES (new.id, new.url);
END;
CREATE TRIGGER flows_fts_au AFTER UPDATE OF url ON flows WHEN old.url IS NOT new.url BEGIN
    INSERT INTO url_fts(url_fts, rowid, url) SELECT 'delete', old.id, old.url WHERE old.url IS NOT NULL;
    INSERT INTO url_fts(rowid, url) SELECT new.id, new.url WHERE new.url IS NOT NULL;
END;
CREATE TRIGGER flows_fts_ad AFTER DELETE ON flows WHEN old.url IS NOT NULL BEGIN
    INSERT INTO url_fts(url_fts, rowid, url) VALUES ('delete', old.id, old.url);
END;

CREATE VIRTUAL TABLE annotation_fts USING fts5(text, content='annotations', content_rowid='id');
CREATE TRIGGER annotations_fts_ai AFTER INSERT ON annotations BEGIN
    INSERT INTO annotation_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER annotations_fts_ad AFTER DELETE ON annotations BEGIN
    INSERT INTO annotation_fts(annotation_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
