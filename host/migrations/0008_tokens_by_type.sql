-- The dashboard's list widgets (active medications, conditions, allergies) ask for one type's
-- records with one status. "active" is also the status of every Claim and ExplanationOfBenefit,
-- so at 100,000 records the old (user_id, kind, value) index matched 31,000 rows that each had to
-- be read to learn its type; with the type in the index only the 900 wanted rows are touched.
-- Every query that used the old index uses this one the same way (it is a prefix).
DROP INDEX resource_tokens_by_value;
CREATE INDEX resource_tokens_by_value ON resource_tokens (user_id, kind, value, resource_type);
