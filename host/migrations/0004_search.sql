-- Full-text search over the records, and the glossary's cache of MedlinePlus answers.

-- One row per searchable resource, its integer id being the rowid of its text in `search_fts`.
-- The row follows its resource by foreign key, so deleting a resource, or a whole source (which
-- cascades to its resources), deletes it too; the trigger below then drops the text. The FTS
-- rowid is not tied to resources' own rowid because VACUUM may renumber rowids of a table
-- without an INTEGER PRIMARY KEY.
CREATE TABLE search_docs (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL,
    source_id     INTEGER NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    FOREIGN KEY (source_id, resource_type, resource_id)
        REFERENCES resources (source_id, resource_type, resource_id) ON DELETE CASCADE,
    UNIQUE (source_id, resource_type, resource_id)
);
CREATE INDEX search_docs_by_user ON search_docs (user_id);

-- The text itself, in four columns so that a hit in the title can rank above one deep in a note:
-- the title, the names of the codes (every CodeableConcept's text and coding displays), notes
-- and comments, and document text (descriptions and decoded text attachments). unicode61 folds
-- case and accents; no stemming, so what is found is what was typed. Prefix indexes keep
-- "search as you type" prefix queries cheap.
CREATE VIRTUAL TABLE search_fts USING fts5(
    title, codes, notes, body,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

CREATE TRIGGER search_docs_delete AFTER DELETE ON search_docs BEGIN
    DELETE FROM search_fts WHERE rowid = old.id;
END;

-- Existing databases are indexed at start-up rather than here: the text comes from the same Rust
-- extraction as at ingest (base64 attachments, HTML stripped), which SQL alone cannot do.

-- MedlinePlus Connect answers per code, when the administrator turned the online glossary on.
-- A miss is stored too (summary NULL) so each code is asked at most once per refresh period.
CREATE TABLE glossary_cache (
    code_system TEXT    NOT NULL,
    code        TEXT    NOT NULL,
    title       TEXT,
    summary     TEXT,
    url         TEXT,
    fetched_at  INTEGER NOT NULL,
    PRIMARY KEY (code_system, code)
) WITHOUT ROWID;
