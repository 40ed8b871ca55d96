-- Sessionary SQLite schema, version 2: refresh token families.
--
-- A family is the chain of refresh tokens that began with one issue, bound to
-- one session. Only SHA-256 hashes of tokens are stored. `successor` is the
-- current token sealed under a key derived from the previous token (which the
-- database never holds), for a retry within the grace window.

CREATE TABLE refresh_families (
    id                  BLOB    PRIMARY KEY,
    session_id          BLOB    NOT NULL,
    user_id             TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    generation          INTEGER NOT NULL,
    current_hash        BLOB    NOT NULL,
    rotated_at          INTEGER NOT NULL,
    previous_hash       BLOB,
    successor           BLOB,
    -- NULL while usable; else why it was revoked (`refresh_reused`, ...).
    revoked             TEXT
) STRICT, WITHOUT ROWID;

CREATE INDEX refresh_families_by_session ON refresh_families (session_id);
CREATE INDEX refresh_families_by_expiry ON refresh_families (absolute_expires_at);

-- Every token hash a family ever had (current, previous and spent), so that a
-- spent token of any age is recognised as reuse until the family is swept.
CREATE TABLE refresh_hashes (
    token_hash BLOB PRIMARY KEY,
    family_id  BLOB NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX refresh_hashes_by_family ON refresh_hashes (family_id);
