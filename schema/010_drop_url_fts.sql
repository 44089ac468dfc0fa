-- reel session index, schema version 10.
-- url_fts (schema 1, filled by the indexer since schema 2) is gone: no
-- reader ever queried it. Filters match URLs with regexes on flows.url
-- (~u, ~d, ...), and word tokens cannot answer a substring regex, so the
-- index could not have served them either. Keeping it cost every recorded
-- flow a tenth of the indexer's CPU and bytes on disk.
DROP TRIGGER IF EXISTS flows_fts_ad;
DROP TRIGGER IF EXISTS flows_fts_ai;
DROP TRIGGER IF EXISTS flows_fts_au;
DROP TABLE IF EXISTS url_fts;
