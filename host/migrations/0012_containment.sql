-- A plugin's approval covers its manifest's terms (allowed hosts and limits) as well as its
-- component: the sha256 of those terms when the administrator approved them. Approvals from
-- before this have none, so those plugins wait for approval once more.
ALTER TABLE plugin_grants ADD COLUMN terms_sha256 TEXT;
