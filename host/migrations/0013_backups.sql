-- Every backup made, by the schedule or by `fasten backup`, so the administrator sees how old the
-- newest one is. A row is written when the backup has finished, so a snapshot never holds a row
-- saying that it is still running.
CREATE TABLE backups (
    id           INTEGER PRIMARY KEY,
    -- 'schedule' or 'cli'.
    trigger      TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('succeeded', 'failed')),
    path         TEXT    NOT NULL,
    bytes        INTEGER NOT NULL DEFAULT 0,
    records      INTEGER NOT NULL DEFAULT 0,
    key_included INTEGER NOT NULL DEFAULT 0 CHECK (key_included IN (0, 1)),
    error        TEXT,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    -- Set when the schedule removed the file to keep only the newest `[backup] keep`.
    removed_at   INTEGER
);
CREATE INDEX backups_by_time ON backups (finished_at);
