-- Records whose derived columns (title, date, tokens, observation keys, search text) must be
-- derived again from their JSON because the code that derives them changed. A migration lists
-- them here; the server derives them at its next start (fhir::ingest::rederive_pending) and
-- empties the list. Rows of a deleted source go with it.
CREATE TABLE rederive_pending (
    source_id     INTEGER NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    PRIMARY KEY (source_id, resource_type, resource_id)
) WITHOUT ROWID;

-- Medication records that point to their medicine (medicationReference, as Epic's do) instead of
-- naming it were stored untitled, or titled by their category ("Outpatient"), and a contained
-- medicine's codes were not among the record's codes (fhir::title, fhir::tokens).
INSERT INTO rederive_pending (source_id, resource_type, resource_id)
SELECT source_id, resource_type, resource_id FROM resources
WHERE resource_type IN ('MedicationRequest', 'MedicationStatement',
                        'MedicationAdministration', 'MedicationDispense')
  AND json_valid(json)
  AND json_type(json, '$.medicationReference') IS NOT NULL;

-- Imaging studies that name no procedure were untitled; they are now "Ultrasound (thoracic)"
-- from their first series, or named by procedureCode.
INSERT INTO rederive_pending (source_id, resource_type, resource_id)
SELECT source_id, resource_type, resource_id FROM resources
WHERE resource_type = 'ImagingStudy' AND sort_title IS NULL;
