-- A record's date no longer falls back to meta.lastUpdated (when the server stored it, often the
-- day of the sync); Goals are dated by startDate, target.dueDate or statusDate; Goals are titled
-- by their description, and claims and explanations of benefit by what they bill for
-- (fhir::sort_date, fhir::title). The rows affected are derived again at the next start.
INSERT OR IGNORE INTO rederive_pending (source_id, resource_type, resource_id)
SELECT source_id, resource_type, resource_id FROM resources
WHERE resource_type IN ('Goal', 'Claim', 'ExplanationOfBenefit')
   OR (sort_date IS NOT NULL AND json_valid(json)
       AND sort_date = json_extract(json, '$.meta.lastUpdated'));

-- A failed job's message is for the family; what the provider or the plugin said (a status, an
-- error code, a resource path) is kept beside it and shown behind "Details".
ALTER TABLE jobs ADD COLUMN error_detail TEXT;

-- How long the provider said the access token lasts (expires_in), so it is renewed ahead of
-- its expiry by a margin in proportion (10%, at most a minute): a 30-second token is not
-- renewed the moment it arrives.
ALTER TABLE connections ADD COLUMN access_lifetime INTEGER;
