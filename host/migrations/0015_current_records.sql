-- Which conditions, medications, allergies and vaccinations are current is now decided in one
-- place (fhir::read::is_current) and kept beside each record as a `current` token, so Profile,
-- the dashboard, the summary and the IPS document agree.

-- SQLite cannot change a CHECK constraint in place: the token table is rebuilt with the new kind.
CREATE TABLE resource_tokens_new (
    person_id     INTEGER NOT NULL,
    source_id     INTEGER NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('code', 'category', 'status', 'current', 'ref')),
    value         TEXT    NOT NULL,
    display       TEXT,
    FOREIGN KEY (source_id, resource_type, resource_id)
        REFERENCES resources (source_id, resource_type, resource_id) ON DELETE CASCADE
);
INSERT INTO resource_tokens_new (person_id, source_id, resource_type, resource_id, kind, value, display)
SELECT person_id, source_id, resource_type, resource_id, kind, value, display FROM resource_tokens;
DROP TABLE resource_tokens;
ALTER TABLE resource_tokens_new RENAME TO resource_tokens;
CREATE INDEX resource_tokens_by_resource ON resource_tokens (source_id, resource_type, resource_id);
CREATE INDEX resource_tokens_by_value ON resource_tokens (person_id, kind, value, resource_type);

-- Existing records get the token at the next start.
INSERT OR IGNORE INTO rederive_pending (source_id, resource_type, resource_id)
SELECT source_id, resource_type, resource_id FROM resources
WHERE resource_type IN ('Condition', 'MedicationRequest', 'MedicationStatement',
                        'AllergyIntolerance', 'Immunization');
