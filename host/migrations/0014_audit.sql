-- The audit log (Admin → Activity): security-relevant events, who did them, when and from
-- which address. Names and addresses only, never a secret. `user_id` is not a foreign key, so
-- deleting an account keeps the record of what it did; `actor` keeps its name.
CREATE TABLE audit_events (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    user_id  INTEGER,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    subject  TEXT    NOT NULL DEFAULT '',
    address  TEXT
);
CREATE INDEX audit_events_by_time ON audit_events (at);
