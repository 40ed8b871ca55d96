-- Sessionary PostgreSQL schema, version 1: the tables of SQLite's migrations
-- 1-3 in one step (sessions, tombstones, user data, restorable data, refresh
-- token families, the audit log).
--
-- Timestamps are BIGINT milliseconds since the Unix epoch (UTC). Ids and token
-- hashes are raw BYTEA (16 and 32 bytes). Sealed data is stored as the BYTEA
-- the key ring produced; the store never sees plaintext or tokens. Roles and
-- counters are JSON text, as on SQLite (one codec for both).

-- One row per live (or expired, not yet swept) session. `seq` is the order
-- rows were stored in (bulk ends report in that order). `expires_at` =
-- min(last_seen_at + idle_timeout_ms, absolute_expires_at), kept by every
-- write, so sweeps and lists use an index.
CREATE TABLE sessions (
    seq                 BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                  BYTEA    NOT NULL UNIQUE,
    token_hash          BYTEA    NOT NULL UNIQUE,
    user_id             TEXT,
    roles               TEXT     NOT NULL,
    aal                 SMALLINT NOT NULL,
    auth_time           BIGINT,
    created_at          BIGINT   NOT NULL,
    last_seen_at        BIGINT   NOT NULL,
    idle_timeout_ms     BIGINT   NOT NULL,
    touch_interval_ms   BIGINT   NOT NULL,
    absolute_expires_at BIGINT   NOT NULL,
    expires_at          BIGINT   NOT NULL,
    remember            BOOLEAN  NOT NULL,
    device_ip           TEXT,
    device_user_agent   TEXT,
    device_label        TEXT,
    version             BIGINT   NOT NULL,
    csrf_secret         BYTEA    NOT NULL,
    counters            TEXT     NOT NULL,
    data                BYTEA    NOT NULL
);

CREATE INDEX sessions_by_user ON sessions (user_id, created_at, id) WHERE user_id IS NOT NULL;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Why a token stopped working, kept until `keep_until`.
CREATE TABLE tombstones (
    token_hash BYTEA  PRIMARY KEY,
    session_id BYTEA  NOT NULL,
    user_id    TEXT,
    reason     TEXT   NOT NULL,
    ended_at   BIGINT NOT NULL,
    keep_until BIGINT NOT NULL
);

CREATE INDEX tombstones_by_keep_until ON tombstones (keep_until);

-- User-scope data shared by all of a user's sessions.
CREATE TABLE user_data (
    user_id TEXT   PRIMARY KEY,
    version BIGINT NOT NULL,
    data    BYTEA  NOT NULL
);

-- Data of a user's expired session, kept for the user's next session.
CREATE TABLE restorable (
    user_id    TEXT   PRIMARY KEY,
    session_id BYTEA  NOT NULL,
    data       BYTEA  NOT NULL,
    keep_until BIGINT NOT NULL
);

CREATE INDEX restorable_by_keep_until ON restorable (keep_until);

-- Refresh token families: the chain of refresh tokens that began with one
-- issue, bound to one session. Only SHA-256 hashes of tokens are stored.
-- `successor` is the current token sealed under a key derived from the
-- previous token (which the database never holds), for a retry within the
-- grace window. `revoked` is NULL while usable, else why it was revoked.
CREATE TABLE refresh_families (
    id                  BYTEA  PRIMARY KEY,
    session_id          BYTEA  NOT NULL,
    user_id             TEXT   NOT NULL,
    created_at          BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    generation          BIGINT NOT NULL,
    current_hash        BYTEA  NOT NULL,
    rotated_at          BIGINT NOT NULL,
    previous_hash       BYTEA,
    successor           BYTEA,
    revoked             TEXT
);

CREATE INDEX refresh_families_by_session ON refresh_families (session_id);
CREATE INDEX refresh_families_by_expiry ON refresh_families (absolute_expires_at);

-- Every token hash a family ever had (current, previous and spent), so that a
-- spent token of any age is recognised as reuse until the family is swept.
CREATE TABLE refresh_hashes (
    token_hash BYTEA PRIMARY KEY,
    family_id  BYTEA NOT NULL
);

CREATE INDEX refresh_hashes_by_family ON refresh_hashes (family_id);

-- The audit log: security-relevant events with UTC time (ms since the epoch),
-- session id, user and client IP; never a token or a token hash. `seq` is the
-- paging cursor, from an identity sequence, so a number is never given twice,
-- even after the retention sweep; appends are serialised (an advisory lock),
-- so numbers are also committed in order and a reader paging by `seq` never
-- skips an entry committed late.
CREATE TABLE audit_log (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    session_id BYTEA,
    user_id    TEXT,
    ip         TEXT,
    detail     TEXT   NOT NULL
);

CREATE INDEX audit_log_by_user ON audit_log (user_id, seq) WHERE user_id IS NOT NULL;
CREATE INDEX audit_log_by_session ON audit_log (session_id, seq) WHERE session_id IS NOT NULL;
CREATE INDEX audit_log_by_time ON audit_log (at);
