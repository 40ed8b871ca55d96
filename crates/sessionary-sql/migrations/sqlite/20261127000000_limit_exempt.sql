-- Sessionary SQLite schema, version 4: sessions the concurrent-session limit
-- neither counts nor evicts (an OpenID Connect app session under a counted
-- central session). Set at creation, never changed.
ALTER TABLE sessions ADD COLUMN exempt_from_limit INTEGER NOT NULL DEFAULT 0;
