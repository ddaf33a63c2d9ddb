-- What was measured by each observation (its key: the LOINC code, else its name; a panel's
-- components each have their own), when, and whether it is a lab result, kept at ingest beside
-- the resource it came from and going with it (ON DELETE CASCADE). The Labs overview (each test's
-- count and newest result), the dashboard's vitals (the newest readings of one code) and its
-- recent lab results read this index instead of ranking every coded observation, which took a
-- second at 100,000 records.
CREATE TABLE observation_keys (
    user_id       INTEGER NOT NULL,
    source_id     INTEGER NOT NULL,
    resource_type TEXT    NOT NULL DEFAULT 'Observation' CHECK (resource_type = 'Observation'),
    resource_id   TEXT    NOT NULL,
    -- record::observations::Observation::key
    key           TEXT    NOT NULL,
    -- resources.sort_date of the observation
    sort_date     TEXT,
    -- record::labs::is_lab
    is_lab        INTEGER NOT NULL CHECK (is_lab IN (0, 1)),
    FOREIGN KEY (source_id, resource_type, resource_id)
        REFERENCES resources (source_id, resource_type, resource_id) ON DELETE CASCADE
);
CREATE INDEX observation_keys_by_key
    ON observation_keys (user_id, key, sort_date, is_lab, source_id, resource_id);
CREATE INDEX observation_keys_newest_labs
    ON observation_keys (user_id, sort_date) WHERE is_lab = 1;
CREATE INDEX observation_keys_by_resource ON observation_keys (source_id, resource_id);

-- Records stored before this table existed are added once, at the next start-up (reading an
-- observation needs Fasten's own code); this row says it was done.
CREATE TABLE observation_keys_backfill (done_at INTEGER NOT NULL);
