-- Ingest: the token index beside `resources`, per-connection plugin state, and plugin approvals.

-- Tokens extracted from each resource for filtering and for the pages' queries: codes
-- ("system|code"), categories, status and references ("Type/id"). Rewritten with the resource.
CREATE TABLE resource_tokens (
    user_id       INTEGER NOT NULL,
    source_id     INTEGER NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('code', 'category', 'status', 'ref')),
    value         TEXT    NOT NULL,
    display       TEXT,
    FOREIGN KEY (source_id, resource_type, resource_id)
        REFERENCES resources (source_id, resource_type, resource_id) ON DELETE CASCADE
);
CREATE INDEX resource_tokens_by_resource ON resource_tokens (source_id, resource_type, resource_id);
CREATE INDEX resource_tokens_by_value ON resource_tokens (user_id, kind, value);

-- A plugin's small key/value store per source (a sync cursor, say), with a quota enforced by the host.
CREATE TABLE plugin_state (
    source_id INTEGER NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (source_id, key)
) WITHOUT ROWID;

-- An operator's decision about a dropped-in plugin: enabled or not, for which artifact, with
-- which hosts granted. Bundled plugins need no row.
CREATE TABLE plugin_grants (
    plugin_id     TEXT    PRIMARY KEY,
    enabled       INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    sha256        TEXT    NOT NULL,
    allowed_hosts TEXT    NOT NULL, -- JSON array
    decided_by    INTEGER REFERENCES users (id) ON DELETE SET NULL,
    decided_at    INTEGER NOT NULL
);

-- Upload sources are found again by plugin, so re-importing a file updates the same records.
ALTER TABLE sources ADD COLUMN plugin_id TEXT;
CREATE UNIQUE INDEX sources_one_upload_per_plugin ON sources (user_id, plugin_id) WHERE kind = 'upload';
