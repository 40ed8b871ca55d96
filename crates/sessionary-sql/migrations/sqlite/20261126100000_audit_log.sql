-- Sessionary SQLite schema, version 3: the audit log.
--
-- Security-relevant events (sign-in, step-up, binding mismatch, ends, refresh
-- reuse, failed verifications...) with UTC time (ms since the epoch), session
-- id, user and client IP; never a token or a token hash. `seq` is the paging
-- cursor: AUTOINCREMENT so a number is never given twice, even after the
-- retention sweep deleted the newest rows.

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    session_id BLOB,
    user_id    TEXT,
    ip         TEXT,
    detail     TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_log_by_user ON audit_log (user_id, seq) WHERE user_id IS NOT NULL;
CREATE INDEX audit_log_by_session ON audit_log (session_id, seq) WHERE session_id IS NOT NULL;
CREATE INDEX audit_log_by_time ON audit_log (at);
