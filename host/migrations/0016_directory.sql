-- The provider directory: the vendors' published lists of patient-access FHIR endpoints
-- (plugin-registry/directory.toml), downloaded only when an administrator asks, searched as
-- members type on the Sources page. It belongs to the whole Fasten, not to a person.

-- One choice a member can connect to: a FHIR base of one source. Every organisation of that
-- source behind the same base (an Epic brand's facilities) is one choice, so a search never
-- offers the same sign-in twice. `name` is the brand's (the organisation that names the endpoint
-- itself rather than through `partOf`).
CREATE TABLE directory_endpoints (
    id        INTEGER PRIMARY KEY,
    -- A source id from directory.toml.
    source    TEXT    NOT NULL,
    -- A catalog platform id: how to sign in and sync.
    platform  TEXT    NOT NULL,
    -- No trailing '/', as connections store it.
    fhir_base TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    UNIQUE (source, fhir_base)
);

-- Every organisation behind a choice, as searched: a brand, each facility folded into it, or an
-- Oracle practice. `city`, `state` and `zip` are its first address (what a result shows);
-- `places` holds all of them for search.
CREATE TABLE directory_orgs (
    id          INTEGER PRIMARY KEY,
    endpoint_id INTEGER NOT NULL REFERENCES directory_endpoints (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    aliases     TEXT    NOT NULL DEFAULT '',
    city        TEXT,
    state       TEXT,
    zip         TEXT,
    places      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX directory_orgs_by_endpoint ON directory_orgs (endpoint_id);

-- Search as you type over name, aliases and places, kept in step by the triggers below (an
-- external-content table, so a refresh of one source re-indexes only that source's rows).
-- unicode61 folds case and accents; prefix indexes keep a half-typed word cheap.
CREATE VIRTUAL TABLE directory_fts USING fts5(
    name, aliases, places,
    content = 'directory_orgs', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

CREATE TRIGGER directory_orgs_insert AFTER INSERT ON directory_orgs BEGIN
    INSERT INTO directory_fts (rowid, name, aliases, places)
    VALUES (new.id, new.name, new.aliases, new.places);
END;

CREATE TRIGGER directory_orgs_delete AFTER DELETE ON directory_orgs BEGIN
    INSERT INTO directory_fts (directory_fts, rowid, name, aliases, places)
    VALUES ('delete', old.id, old.name, old.aliases, old.places);
END;

-- Every refresh of one source, by an administrator, `fasten directory refresh` or the schedule:
-- Admin → Provider directory lists them, so a refresh that kept the previous directory says
-- why. (The jobs table is a person's; a directory refresh is nobody's.) A row is 'running' while
-- it downloads; one left so by a stopped Fasten is marked failed at the next start.
CREATE TABLE directory_refreshes (
    id          INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    -- 'admin', 'cli' or 'schedule'.
    trigger     TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    -- Searchable organisations and distinct endpoints stored (succeeded) or read (failed).
    entries     INTEGER,
    choices     INTEGER,
    bytes       INTEGER,
    error       TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX directory_refreshes_by_source ON directory_refreshes (source, status, id);
