-- The dashboard's list widgets (active medications, conditions, allergies) ask for one type's
-- records with one status. "active" is also the status of every Claim and ExplanationOfBenefit,
-- so at 100,000 records the old (user_id, kind, value) index matched 31,000 rows that each had to
-- be read to learn its type; with the type in the index only the 900 wanted rows are touched.
-- Every query that used the old index uses this one the same way (it is a prefix).
DROP INDEX resource_tokens_by_value;
CREATE INDEX resource_tokens_by_value ON resource_tokens (user_id, kind, value, resource_type);

-- History lists each visit once even when two sources hold it (the copy from the oldest source):
-- with the source in the index, that check and the page count read no table rows.
DROP INDEX resources_by_user_type_id;
CREATE INDEX resources_by_user_type_id ON resources (user_id, resource_type, resource_id, source_id);

-- Immunizations are listed one line per vaccine (profile::immunizations): counting the doses
-- of each reads only this small index, not every dose's row.
CREATE INDEX immunizations_by_vaccine
    ON resources (user_id, resource_type, sort_title, sort_date, source_id, resource_id)
    WHERE resource_type = 'Immunization';
