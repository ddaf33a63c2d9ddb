-- Lists an administrator added to the provider directory on Admin → Provider directory, beside
-- the operator's directory.toml. Each is a source like the file's, with the id 'added-<id>'
-- (in directory_endpoints.source and directory_refreshes.source). AUTOINCREMENT: a removed
-- list's id is never given to another, whose standing would otherwise show the old downloads.
CREATE TABLE directory_added_sources (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    name      TEXT    NOT NULL,
    -- Always a FHIR Bundle ('fhir-bundle'), as Url::to_string writes it.
    url       TEXT    NOT NULL UNIQUE,
    -- A catalog platform id with an entry whose FHIR base the user supplies.
    platform  TEXT    NOT NULL,
    added_at  INTEGER NOT NULL
);
