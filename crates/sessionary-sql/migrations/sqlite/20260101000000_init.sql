-- Sessionary SQLite schema, version 1.
--
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC). Ids and token
-- hashes are raw BLOBs (16 and 32 bytes). Sealed data is stored as the BLOB the
-- key ring produced; the store never sees plaintext or tokens.

-- One row per live (or expired, not yet swept) session.
-- `seq` is an explicit INTEGER PRIMARY KEY so creation order survives VACUUM.
-- `expires_at` = min(last_seen_at + idle_timeout_ms, absolute_expires_at),
-- kept by every write, so sweeps use an index.
CREATE TABLE sessions (
    seq                 INTEGER PRIMARY KEY,
    id                  BLOB    NOT NULL UNIQUE,
    token_hash          BLOB    NOT NULL UNIQUE,
    user_id             TEXT,
    roles               TEXT    NOT NULL,
    aal                 INTEGER NOT NULL,
    auth_time           INTEGER,
    created_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    idle_timeout_ms     INTEGER NOT NULL,
    touch_interval_ms   INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    remember            INTEGER NOT NULL,
    device_ip           TEXT,
    device_user_agent   TEXT,
    device_label        TEXT,
    version             INTEGER NOT NULL,
    csrf_secret         BLOB    NOT NULL,
    counters            TEXT    NOT NULL,
    data                BLOB    NOT NULL
) STRICT;

CREATE INDEX sessions_by_user ON sessions (user_id, created_at, id) WHERE user_id IS NOT NULL;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Why a token stopped working, kept until `keep_until`.
CREATE TABLE tombstones (
    token_hash BLOB    PRIMARY KEY,
    session_id BLOB    NOT NULL,
    user_id    TEXT,
    reason     TEXT    NOT NULL,
    ended_at   INTEGER NOT NULL,
    keep_until INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX tombstones_by_keep_until ON tombstones (keep_until);

-- User-scope data shared by all of a user's sessions.
CREATE TABLE user_data (
    user_id TEXT    PRIMARY KEY,
    version INTEGER NOT NULL,
    data    BLOB    NOT NULL
) STRICT;

-- Data of a user's expired session, kept for the user's next session.
CREATE TABLE restorable (
    user_id    TEXT    PRIMARY KEY,
    session_id BLOB    NOT NULL,
    data       BLOB    NOT NULL,
    keep_until INTEGER NOT NULL
) STRICT;

CREATE INDEX restorable_by_keep_until ON restorable (keep_until);
