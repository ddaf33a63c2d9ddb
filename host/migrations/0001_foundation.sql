-- Foundation schema: accounts, sessions, sources and the one table that holds every FHIR resource.
-- Migrations are append-only: once a file has shipped it is never edited; changes get a new file.
-- Timestamps are Unix seconds (INTEGER) so comparisons and expiry checks are plain integer math.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    -- Usernames compare case-insensitively so "Anna" and "anna" cannot both exist.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT    NOT NULL,
    -- PHC string from argon2id; never the password itself.
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Server-side sessions. The cookie carries a random 256-bit id; only its SHA-256 is stored, so a
-- copy of the database does not let anyone sign in.
CREATE TABLE sessions (
    id_hash      BLOB    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    -- Absolute expiry, fixed at sign-in; idle expiry is computed from last_seen_at.
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions (user_id);

-- A place records come from: a provider connection, an uploaded file, a device, manual entry.
-- Later migrations add connection details; deleting a source deletes its records.
CREATE TABLE sources (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX sources_by_user ON sources (user_id);

-- Every FHIR R4 resource of every type, one row each (design.md section 4). The key is the
-- resource's identity within its source, so a re-sync upserts in place; content_hash lets the
-- upsert skip rows whose JSON did not change. user_id is denormalised from the source so that
-- every page query can filter by owner without a join.
CREATE TABLE resources (
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source_id     INTEGER NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    content_hash  BLOB    NOT NULL,
    -- The resource's clinically meaningful date (effective, onset, period start...) as ISO 8601.
    sort_date     TEXT,
    -- A human title (code display, name) used for lists and search.
    sort_title    TEXT,
    json          TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (source_id, resource_type, resource_id)
);
CREATE INDEX resources_by_user_type_date ON resources (user_id, resource_type, sort_date);
