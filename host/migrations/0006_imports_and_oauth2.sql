-- File imports become jobs too (upload page, `fasten import`, the inbox folder), so every import
-- leaves a record of what it stored or why it stored nothing; and connections to plain OAuth2
-- APIs (a wearable's) keep the token-endpoint quirks of their provider.

-- SQLite cannot change a CHECK constraint in place: the table is rebuilt with the same rows.
CREATE TABLE jobs_new (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('sync', 'import')),
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source_id        INTEGER REFERENCES sources (id) ON DELETE SET NULL,
    source_name      TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                         'warnings', 'failed', 'cancelled', 'interrupted')),
    -- What started it: 'connect', 'manual', 'schedule' or 'restart' for a sync; 'upload', 'cli'
    -- or 'inbox' for an import.
    trigger          TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 1,
    run_after        INTEGER NOT NULL,
    progress_done    INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER,
    added            INTEGER NOT NULL DEFAULT 0,
    updated          INTEGER NOT NULL DEFAULT 0,
    unchanged        INTEGER NOT NULL DEFAULT 0,
    warnings         TEXT    NOT NULL DEFAULT '[]',
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    -- The imported file's name (imports only).
    file_name        TEXT
);
INSERT INTO jobs_new (id, kind, user_id, source_id, source_name, status, trigger, attempt,
    run_after, progress_done, progress_total, added, updated, unchanged, warnings, error,
    cancel_requested, created_at, started_at, finished_at)
SELECT id, kind, user_id, source_id, source_name, status, trigger, attempt, run_after,
    progress_done, progress_total, added, updated, unchanged, warnings, error, cancel_requested,
    created_at, started_at, finished_at
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_by_user ON jobs (user_id, id);
CREATE INDEX jobs_waiting ON jobs (run_after) WHERE status = 'queued';

-- JSON: extra form fields for the token endpoint and whether its answer is wrapped in an
-- envelope (see catalog.toml, `token_params` and `token_envelope`). '{}' for SMART servers.
ALTER TABLE connections ADD COLUMN oauth_quirks TEXT NOT NULL DEFAULT '{}';
