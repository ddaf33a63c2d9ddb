-- People and family access. A *person* is someone whose records Fasten keeps; an *account* (the
-- `users` table) is someone who signs in. Everything that belonged to a user belongs to a person
-- now: sources and connections, resources and everything derived from them, jobs and dashboard
-- layouts. Accounts keep sessions, passwords and roles.
--
-- The upgrade moves no record: the old `users` table becomes `people` (renaming a table makes
-- every foreign key that pointed at it point at the new name), so each existing account's person
-- keeps the account's id and every `user_id` column already holds the right person. The accounts
-- are then copied into a new `users` table with the same ids, and the tables that belong to an
-- account (sessions, plugin decisions, OAuth flows in progress) are rebuilt to point at it.
-- Index names that still say "user" are kept: SQLite cannot rename an index, and rebuilding the
-- indexes of 100,000 records to rename them buys nothing.

ALTER TABLE users RENAME TO people;
ALTER TABLE people RENAME COLUMN username TO slug;
ALTER TABLE people RENAME COLUMN display_name TO name;

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    -- Usernames compare case-insensitively so "Anna" and "anna" cannot both exist.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT    NOT NULL,
    -- PHC string from argon2id; never the password itself.
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    -- The account's own person, created with it (or an existing person linked to a new account,
    -- a child grown up). A person has at most one account.
    person_id     INTEGER NOT NULL UNIQUE REFERENCES people (id),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
INSERT INTO users (id, username, display_name, password_hash, role, disabled, person_id,
                   created_at, updated_at)
SELECT p.id, p.slug, p.name, p.password_hash, p.role, p.disabled, p.id, p.created_at, p.updated_at
FROM people p;
-- A person's slug is the short name in their pages' URLs (/people/anna/labs): lowercase.
UPDATE people SET slug = lower(slug);
ALTER TABLE people DROP COLUMN password_hash;
ALTER TABLE people DROP COLUMN role;
ALTER TABLE people DROP COLUMN disabled;
-- YYYY-MM-DD as the family entered it; the records' own Patient may say otherwise.
ALTER TABLE people ADD COLUMN birth_date TEXT;

-- Who may see (view) or also change (manage) whose records. Whoever creates a person manages
-- them, and so does the person's own account; being an administrator grants nothing here.
CREATE TABLE person_access (
    person_id  INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    level      TEXT    NOT NULL CHECK (level IN ('view', 'manage')),
    granted_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (person_id, user_id)
) WITHOUT ROWID;
CREATE INDEX person_access_by_user ON person_access (user_id, person_id);
INSERT INTO person_access (person_id, user_id, level, granted_at)
SELECT person_id, id, 'manage', created_at FROM users;

-- Records, and everything kept beside them, belong to a person.
ALTER TABLE sources RENAME COLUMN user_id TO person_id;
ALTER TABLE resources RENAME COLUMN user_id TO person_id;
ALTER TABLE resource_tokens RENAME COLUMN user_id TO person_id;
ALTER TABLE search_docs RENAME COLUMN user_id TO person_id;
ALTER TABLE observation_keys RENAME COLUMN user_id TO person_id;
ALTER TABLE jobs RENAME COLUMN user_id TO person_id;
ALTER TABLE dashboard_layouts RENAME COLUMN user_id TO person_id;

-- Account tables, rebuilt to point at the accounts (after the rename they pointed at people).
CREATE TABLE sessions_new (
    id_hash      BLOB    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO sessions_new SELECT id_hash, user_id, created_at, last_seen_at, expires_at FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE plugin_grants_new (
    plugin_id     TEXT    PRIMARY KEY,
    enabled       INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    sha256        TEXT    NOT NULL,
    allowed_hosts TEXT    NOT NULL,
    decided_by    INTEGER REFERENCES users (id) ON DELETE SET NULL,
    decided_at    INTEGER NOT NULL
);
INSERT INTO plugin_grants_new SELECT plugin_id, enabled, sha256, allowed_hosts, decided_by, decided_at
FROM plugin_grants;
DROP TABLE plugin_grants;
ALTER TABLE plugin_grants_new RENAME TO plugin_grants;

-- A flow in progress lasts ten minutes at most; one caught by the upgrade is simply started again.
DROP TABLE oauth_pending;
CREATE TABLE oauth_pending (
    state_hash    BLOB    PRIMARY KEY,
    session_hash  BLOB    NOT NULL,
    -- The account that started the flow, and the person the connection will belong to.
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    person_id     INTEGER NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    source_id     INTEGER REFERENCES sources (id) ON DELETE CASCADE,
    connection    TEXT    NOT NULL,
    pkce_verifier BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
