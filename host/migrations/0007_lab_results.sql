-- The Labs overview needs, per test, how many results there are and the newest one. Working that
-- out from every coded observation took a second at 100,000 records, so each lab result's test
-- key (LOINC code, else its name; a panel's components each have their own) is kept here at
-- ingest, beside the resource it came from, and goes with it (ON DELETE CASCADE).
CREATE TABLE lab_results (
    user_id       INTEGER NOT NULL,
    source_id     INTEGER NOT NULL,
    resource_type TEXT    NOT NULL DEFAULT 'Observation' CHECK (resource_type = 'Observation'),
    resource_id   TEXT    NOT NULL,
    -- record::observations::Observation::key
    key           TEXT    NOT NULL,
    -- resources.sort_date of the observation
    sort_date     TEXT,
    FOREIGN KEY (source_id, resource_type, resource_id)
        REFERENCES resources (source_id, resource_type, resource_id) ON DELETE CASCADE
);
CREATE INDEX lab_results_by_key ON lab_results (user_id, key, sort_date, source_id, resource_id);
CREATE INDEX lab_results_by_resource ON lab_results (source_id, resource_id);

-- Records stored before this table existed are added once, at the next start-up (deciding what
-- is a lab result needs Fasten's own code); this row says it was done.
CREATE TABLE lab_results_backfill (done_at INTEGER NOT NULL);
