-- Provider connections (SMART-on-FHIR), the OAuth flows in progress, and background jobs.

-- A source that syncs from a provider's API has one connection row. Tokens and the client secret
-- are sealed by the vault (AEAD, key derived from the instance secret): a copy of the database
-- alone does not give access to anyone's records at a provider.
CREATE TABLE connections (
    source_id          INTEGER PRIMARY KEY REFERENCES sources (id) ON DELETE CASCADE,
    -- The catalog entry it came from; NULL for a custom endpoint.
    catalog_id         TEXT,
    fhir_base          TEXT    NOT NULL,
    authorize_url      TEXT    NOT NULL,
    token_url          TEXT    NOT NULL,
    client_id          TEXT    NOT NULL,
    client_secret      BLOB,
    -- How the client authenticates at the token endpoint.
    client_auth        TEXT    NOT NULL CHECK (client_auth IN ('none', 'basic', 'post')),
    scopes_requested   TEXT    NOT NULL,
    -- What the provider granted; it may be narrower than what was asked.
    scopes_granted     TEXT,
    patient_id         TEXT,
    access_token       BLOB,
    refresh_token      BLOB,
    access_expires_at  INTEGER,
    -- Only some providers say when the refresh token ends (refresh_expires_in, or a JWT's exp).
    refresh_expires_at INTEGER,
    status             TEXT    NOT NULL CHECK (status IN ('connected', 'needs_reconnect')),
    -- Why the connection needs attention, in words for the page.
    status_message     TEXT,
    -- The catalog platform's quirks, as the (key, value) pairs given to the plugin's sync.
    sync_settings      TEXT    NOT NULL DEFAULT '[]',
    -- When the scheduler queues the next sync (`[sync] every` after the last one ended); NULL
    -- while a sync is queued or running, or when scheduled sync is off.
    next_sync_at       INTEGER,
    last_sync_at       INTEGER,
    -- The plugin's checkpoint from the last successful sync (incremental sync).
    sync_cursor        TEXT,
    connected_at       INTEGER NOT NULL
);
CREATE INDEX connections_due ON connections (next_sync_at) WHERE next_sync_at IS NOT NULL;

-- An authorization request sent to a provider and not yet answered. The state sent is random;
-- only its SHA-256 is kept, bound to the browser session that started the flow. A row is used
-- once (deleted when the callback arrives) and expires after ten minutes.
CREATE TABLE oauth_pending (
    state_hash    BLOB    PRIMARY KEY,
    session_hash  BLOB    NOT NULL,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Set when reconnecting an existing source; NULL when the callback creates a new one.
    source_id     INTEGER REFERENCES sources (id) ON DELETE CASCADE,
    -- The connection being made (endpoints, client id, sealed secret...), as JSON.
    connection    TEXT    NOT NULL,
    pkce_verifier BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Background work. The queue lives here so that it survives a restart: a job that was running
-- when the process died is marked 'interrupted' at start and queued again as a new job.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('sync')),
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source_id        INTEGER REFERENCES sources (id) ON DELETE SET NULL,
    -- Kept so the history still names a source after it was deleted.
    source_name      TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                         'warnings', 'failed', 'cancelled', 'interrupted')),
    -- What started it: 'connect', 'manual', 'schedule' or 'restart'.
    trigger          TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 1,
    -- A queued job waits until this time (retries back off).
    run_after        INTEGER NOT NULL,
    progress_done    INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER,
    added            INTEGER NOT NULL DEFAULT 0,
    updated          INTEGER NOT NULL DEFAULT 0,
    unchanged        INTEGER NOT NULL DEFAULT 0,
    warnings         TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE INDEX jobs_by_user ON jobs (user_id, id);
CREATE INDEX jobs_waiting ON jobs (run_after) WHERE status = 'queued';
