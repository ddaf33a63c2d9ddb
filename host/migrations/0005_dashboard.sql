-- Each user's dashboard: which widgets show, in which order (a JSON array of widget ids). No row
-- means the default layout, so a new widget in a later version shows up for everyone who never
-- customised theirs.
CREATE TABLE dashboard_layouts (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    widgets    TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
