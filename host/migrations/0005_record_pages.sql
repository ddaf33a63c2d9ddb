-- Each user's dashboard: which widgets show, in which order (a JSON array of widget ids). No row
-- means the default layout, so a new widget in a later version shows up for everyone who never
-- customised theirs.
CREATE TABLE dashboard_layouts (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    widgets    TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Pages open one record by its type and id among all of a user's sources (Explore, History,
-- manual entry): without this index that lookup scans every record of the type.
CREATE INDEX resources_by_user_type_id ON resources (user_id, resource_type, resource_id);
