//! Who a FHIR `Patient` is, as far as telling two people apart needs: names and birth date.
//!
//! A file or a sync may be about someone else than the person it was meant for (the wrong
//! child's export, a server that sends another patient's records). "Clearly someone else" is
//! deliberately narrow, so a nickname or a married name never blocks an import: the birth dates
//! differ, or both the family and the given names do.

use serde_json::Value;
use std::collections::HashSet;

use super::read;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Lowercased family names of every name the Patient has.
    family: Vec<String>,
    /// Lowercased given names of every name.
    given: Vec<String>,
    pub birth_date: Option<String>,
    /// As a person reads it: "Fletcher Hyatt".
    pub display: String,
}

impl Identity {
    /// The identity of a Patient resource; `None` for any other resource.
    pub fn of(resource: &Value) -> Option<Identity> {
        if resource.get("resourceType")?.as_str()? != "Patient" {
            return None;
        }
        let names: Vec<&Value> = resource
            .get("name")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let lower = |v: &Value| v.as_str().map(|s| s.trim().to_lowercase());
        let family = names
            .iter()
            .filter_map(|n| n.get("family").and_then(lower))
            .filter(|s| !s.is_empty())
            .collect();
        let given = names
            .iter()
            .filter_map(|n| n.get("given").and_then(Value::as_array))
            .flatten()
            .filter_map(lower)
            .filter(|s| !s.is_empty())
            .collect();
        let display = names
            .first()
            .and_then(|n| {
                let text = n.get("text").and_then(Value::as_str).map(str::to_string);
                text.or_else(|| {
                    let given: Vec<&str> = n
                        .get("given")
                        .and_then(Value::as_array)
                        .map(|g| g.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let family = n.get("family").and_then(Value::as_str).unwrap_or("");
                    let full = format!("{} {family}", given.join(" "));
                    Some(full.trim().to_string()).filter(|s| !s.is_empty())
                })
            })
            .unwrap_or_else(|| "someone with no name".to_string());
        Some(Identity {
            family,
            given,
            birth_date: resource
                .get("birthDate")
                .and_then(Value::as_str)
                .map(str::to_string),
            display,
        })
    }

    /// The identity a family gave a person in Fasten ("Grandpa Roberto", born 1920-10-03), for
    /// a person with no Patient stored yet. Which word is the family name is anyone's guess, so
    /// every word counts as a name.
    pub fn of_person(name: &str, birth_date: Option<&str>) -> Identity {
        Identity {
            family: Vec::new(),
            given: name.split_whitespace().map(str::to_lowercase).collect(),
            birth_date: birth_date.map(str::to_string),
            display: name.to_string(),
        }
    }

    /// True when `other` is recognisably the same person: the same birth date and a name in
    /// common, or with no dates to compare, two names in common. Used to place each patient of
    /// a family's file with their person, so it errs towards "not sure".
    pub fn same_person(&self, other: &Identity) -> bool {
        let mine: std::collections::BTreeSet<&String> =
            self.family.iter().chain(&self.given).collect();
        let shared = other
            .family
            .iter()
            .chain(&other.given)
            .collect::<std::collections::BTreeSet<_>>()
            .intersection(&mine)
            .count();
        match (&self.birth_date, &other.birth_date) {
            (Some(a), Some(b)) => a == b && shared >= 1,
            _ => shared >= 2,
        }
    }

    /// True when `other` is clearly not the same person: both give a birth date and they differ,
    /// or both give names and neither a family nor a given name is shared.
    pub fn clearly_differs(&self, other: &Identity) -> bool {
        if let (Some(a), Some(b)) = (&self.birth_date, &other.birth_date)
            && a != b
        {
            return true;
        }
        let shares = |a: &[String], b: &[String]| a.iter().any(|x| b.contains(x));
        let named = |i: &Identity| !i.family.is_empty() && !i.given.is_empty();
        named(self)
            && named(other)
            && !shares(&self.family, &other.family)
            && !shares(&self.given, &other.given)
    }

    /// "Fletcher Hyatt, born 3 Jul 1915".
    pub fn describe(&self) -> String {
        match &self.birth_date {
            Some(date) => format!("{}, born {}", self.display, read::date(date)),
            None => self.display.clone(),
        }
    }
}

/// The ids of the Patients a resource refers to (`subject`, `patient`, `beneficiary`, a
/// performer who is the patient...): every `reference` ending in `Patient/<id>`, relative or
/// absolute, with or without `/_history/<version>`.
pub fn patient_references(resource: &Value) -> Vec<String> {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "reference"
                        && let Some(text) = child.as_str()
                        && let Some(id) = patient_id_of(text)
                        && !found.iter().any(|f| f == id)
                    {
                        found.push(id.to_string());
                    } else {
                        walk(child, found);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(resource, &mut found);
    found
}

/// `abc` of `Patient/abc`, `https://x/fhir/Patient/abc` or `Patient/abc/_history/2`.
fn patient_id_of(reference: &str) -> Option<&str> {
    let reference = reference.split("/_history/").next()?;
    let (before, id) = reference.rsplit_once("Patient/")?;
    let whole_segment = before.is_empty() || before.ends_with('/');
    (whole_segment && !id.is_empty() && !id.contains('/')).then_some(id)
}

/// What a sync keeps of what a server sent: the resources about `patient_id` (the connection's
/// patient), and resources about no patient that those refer to, directly or through each other
/// (an Encounter's Location, that Location's Organization). The rest is left out, and counted:
/// the host decides what belongs to whom, not the server.
///
/// A sync's records wait in a spool, so this takes two passes over them: [`PatientFilter::see`]
/// each record (it keeps only keys and references), then [`PatientFilter::finish`], then ask
/// [`Kept::keeps`] of each record as it is written.
#[derive(Debug)]
pub struct PatientFilter {
    patient_id: String,
    about_someone_else: usize,
    kept: HashSet<String>,
    /// Records about no patient: their key and what they refer to.
    unattached: Vec<(String, Vec<String>)>,
    referenced: HashSet<String>,
}

/// What a sync keeps of what a server sent (see [`PatientFilter`]).
#[derive(Debug)]
pub struct Kept {
    keys: HashSet<String>,
    /// Records about another patient (a server may ignore a search's patient filter).
    pub about_someone_else: usize,
    /// Records about no patient (a Practitioner, an Organization) that nothing kept refers to.
    pub unlinked: usize,
}

impl Kept {
    pub fn keeps(&self, p: &super::Prepared) -> bool {
        self.keys
            .contains(&format!("{}/{}", p.resource_type, p.resource_id))
    }
}

impl PatientFilter {
    pub fn new(patient_id: &str) -> PatientFilter {
        PatientFilter {
            patient_id: patient_id.to_string(),
            about_someone_else: 0,
            kept: HashSet::new(),
            unattached: Vec::new(),
            referenced: HashSet::new(),
        }
    }

    pub fn see(&mut self, p: &super::Prepared) {
        let key = format!("{}/{}", p.resource_type, p.resource_id);
        if p.resource_type == "Patient" {
            if p.resource_id == self.patient_id {
                self.kept.insert(key);
            } else {
                self.about_someone_else += 1;
            }
            return;
        }
        let (names_a_patient, names_ours) = {
            let mut about = references_of(p).filter_map(patient_id_of).peekable();
            (
                about.peek().is_some(),
                about.any(|id| id == self.patient_id),
            )
        };
        let refers_to = references_of(p).filter_map(local_key);
        if !names_a_patient {
            self.unattached.push((key, refers_to.collect()));
        } else if names_ours {
            self.referenced.extend(refers_to);
            self.kept.insert(key);
        } else {
            self.about_someone_else += 1;
        }
    }

    pub fn finish(mut self) -> Kept {
        // A repeated record counts once.
        self.unattached.sort();
        self.unattached.dedup_by(|a, b| a.0 == b.0);
        let about_someone_else = self.about_someone_else;
        // Whatever a kept record refers to is kept, until nothing more is reached.
        let mut unattached = self.unattached;
        loop {
            let (reached, rest): (Vec<_>, Vec<_>) = unattached
                .into_iter()
                .partition(|(key, _)| self.referenced.contains(key));
            unattached = rest;
            if reached.is_empty() {
                break;
            }
            for (key, refers_to) in reached {
                self.referenced.extend(refers_to);
                self.kept.insert(key);
            }
        }
        Kept {
            keys: self.kept,
            about_someone_else,
            unlinked: unattached.len(),
        }
    }
}

/// [`PatientFilter`] over resources in memory: the ones kept, and the counts.
pub fn keep_patient(
    resources: Vec<super::Prepared>,
    patient_id: &str,
) -> (Vec<super::Prepared>, Kept) {
    let mut filter = PatientFilter::new(patient_id);
    resources.iter().for_each(|p| filter.see(p));
    let kept = filter.finish();
    let resources = resources.into_iter().filter(|p| kept.keeps(p)).collect();
    (resources, kept)
}

/// The literal references a prepared resource makes: its `ref` tokens (see [`super::tokens`]),
/// so the JSON is not walked again.
fn references_of(p: &super::Prepared) -> impl Iterator<Item = &str> {
    p.tokens
        .iter()
        .filter(|t| t.kind == "ref")
        .map(|t| t.value.as_str())
}

/// `Type/id` of a reference wherever it points: `Location/1`, `https://x/fhir/Location/1` and
/// `Location/1/_history/2` are all `Location/1`.
fn local_key(reference: &str) -> Option<String> {
    let reference = reference.split("/_history/").next()?;
    let mut segments = reference.rsplit('/');
    let (id, kind) = (segments.next()?, segments.next()?);
    Some(format!("{kind}/{id}"))
}

/// Found a Patient that is clearly someone else than the person the records are for.
#[derive(Debug, Clone)]
pub struct OtherPatient {
    pub found: Identity,
    pub expected: Identity,
    /// The person's name in Fasten ("Leo").
    pub person_name: String,
    /// `expected` came from the same file or sync, not from the person's stored records: the
    /// input holds more than one person.
    pub within_input: bool,
}

impl OtherPatient {
    /// "This file is about Fletcher Hyatt, born 3 Jul 1915. Leo's records are about Roberto
    /// Graham, born 3 Oct 1920." `what` is "This file" or "This sync".
    pub fn sentence(&self, what: &str) -> String {
        if self.within_input {
            return format!(
                "{what} holds the records of more than one person: {} and {}. Import each \
                 person's records on their own page.",
                self.expected.describe(),
                self.found.describe()
            );
        }
        format!(
            "{what} is about {}. {}'s records are about {}.",
            self.found.describe(),
            self.person_name,
            self.expected.describe()
        )
    }
}

/// Checks every Patient written for a person against the one their records are already about,
/// or, for a person with none yet, the first one of this run.
pub struct PatientGuard {
    person_name: String,
    expected: Option<Identity>,
    /// `expected` is the first Patient of this run (the person had none).
    from_input: bool,
    /// The user chose to store it anyway.
    off: bool,
}

/// Who a person's records are about: the Patient of their oldest source that has one.
pub async fn stored_identity(
    db: &sqlx::SqlitePool,
    person_id: i64,
) -> sqlx::Result<Option<Identity>> {
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT json FROM resources WHERE person_id = ? AND resource_type = 'Patient'
         ORDER BY source_id, resource_id LIMIT 1",
    )
    .bind(person_id)
    .fetch_optional(db)
    .await?;
    Ok(stored
        .and_then(|j| serde_json::from_str::<Value>(&j).ok())
        .and_then(|v| Identity::of(&v)))
}

impl PatientGuard {
    /// The person's Patient: from their oldest source that has one.
    pub async fn load(
        db: &sqlx::SqlitePool,
        person_id: i64,
        anyway: bool,
    ) -> sqlx::Result<PatientGuard> {
        let person_name: String = sqlx::query_scalar("SELECT name FROM people WHERE id = ?")
            .bind(person_id)
            .fetch_optional(db)
            .await?
            .unwrap_or_default();
        Ok(PatientGuard {
            person_name,
            expected: stored_identity(db, person_id).await?,
            off: anyway,
            from_input: false,
        })
    }

    /// Refuses a batch holding a Patient that is clearly someone else.
    pub fn check(&mut self, batch: &[super::Prepared]) -> Result<(), Box<OtherPatient>> {
        if self.off {
            return Ok(());
        }
        for prepared in batch.iter().filter(|p| p.resource_type == "Patient") {
            let Some(found) = serde_json::from_str::<Value>(&prepared.json)
                .ok()
                .and_then(|v| Identity::of(&v))
            else {
                continue;
            };
            match &self.expected {
                Some(expected) if expected.clearly_differs(&found) => {
                    return Err(Box::new(OtherPatient {
                        found,
                        expected: expected.clone(),
                        person_name: self.person_name.clone(),
                        within_input: self.from_input,
                    }));
                }
                Some(_) => {}
                None => {
                    self.expected = Some(found);
                    self.from_input = true;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient(family: &str, given: &str, birth: Option<&str>) -> Identity {
        let mut p = json!({"resourceType": "Patient",
            "name": [{"family": family, "given": [given]}]});
        if let Some(b) = birth {
            p["birthDate"] = json!(b);
        }
        Identity::of(&p).unwrap()
    }

    #[test]
    fn another_birth_date_or_both_names_is_someone_else() {
        let roberto = patient("Graham", "Roberto", Some("1920-10-03"));
        assert!(roberto.clearly_differs(&patient("Hyatt", "Fletcher", Some("1915-07-03"))));
        assert!(roberto.clearly_differs(&patient("Graham", "Roberto", Some("1921-10-03"))));
        assert!(roberto.clearly_differs(&patient("Hyatt", "Fletcher", None)));
        assert_eq!(
            patient("Hyatt", "Fletcher", Some("1915-07-03")).describe(),
            "Fletcher Hyatt, born 3 Jul 1915"
        );
    }

    #[test]
    fn references_to_a_patient_are_found_wherever_they_are() {
        let observation = json!({"resourceType": "Observation",
            "subject": {"reference": "Patient/p1"},
            "performer": [{"reference": "https://x.org/fhir/Patient/p2/_history/3"},
                          {"reference": "Practitioner/d1"}],
            "focus": [{"reference": "NotPatient/p3"}],
            "note": [{"text": "Patient/p4 is not a reference"}]});
        let mut found = patient_references(&observation);
        found.sort();
        assert_eq!(found, vec!["p1", "p2"]);
        assert!(patient_references(&json!({"resourceType": "Organization"})).is_empty());
    }

    #[test]
    fn a_sync_keeps_its_patient_and_what_their_records_refer_to() {
        let prepare = |v: serde_json::Value| crate::fhir::prepare(&v.to_string()).unwrap();
        let resources = vec![
            prepare(json!({"resourceType": "Patient", "id": "me"})),
            prepare(json!({"resourceType": "Patient", "id": "other"})),
            // Reached through the Encounter's Location, which the kept Encounter refers to.
            prepare(json!({"resourceType": "Organization", "id": "o1", "name": "Clinic"})),
            prepare(
                json!({"resourceType": "Location", "id": "l1", "name": "Ward 3",
                "managingOrganization": {"reference": "Organization/o1"}}),
            ),
            prepare(
                json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
                "subject": {"reference": "https://x.example/fhir/Patient/me"},
                "location": [{"location": {"reference": "https://x.example/fhir/Location/l1/_history/3"}}]}),
            ),
            prepare(
                json!({"resourceType": "Goal", "id": "g2", "lifecycleStatus": "active",
                "description": {"text": "run"}, "subject": {"reference": "Patient/other"}}),
            ),
            // Nothing kept refers to this Practitioner.
            prepare(json!({"resourceType": "Practitioner", "id": "dr-nobody"})),
        ];
        let (resources, kept) = keep_patient(resources, "me");
        let mut ids: Vec<&str> = resources.iter().map(|p| p.resource_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec!["e1", "l1", "me", "o1"]);
        assert_eq!(kept.about_someone_else, 2);
        assert_eq!(kept.unlinked, 1);
    }

    #[test]
    fn a_family_member_is_recognised_by_birth_date_and_a_name() {
        let roberto = patient("Graham", "Roberto", Some("1920-10-03"));
        assert!(roberto.same_person(&Identity::of_person("Roberto Graham", Some("1920-10-03"))));
        assert!(roberto.same_person(&Identity::of_person("Grandpa Roberto", Some("1920-10-03"))));
        assert!(!roberto.same_person(&Identity::of_person("Roberto Graham", Some("1921-10-03"))));
        assert!(roberto.same_person(&Identity::of_person("Roberto Graham", None)));
        assert!(!roberto.same_person(&Identity::of_person("Grandpa", None)));
        assert!(!roberto.same_person(&patient("Hyatt", "Fletcher", Some("1915-07-03"))));
    }

    #[test]
    fn a_new_family_name_or_a_missing_date_is_still_the_same_person() {
        let anna = patient("Example", "Anna", Some("1980-01-02"));
        assert!(!anna.clearly_differs(&patient("Married", "Anna", Some("1980-01-02"))));
        assert!(!anna.clearly_differs(&patient("Example", "Annie", None)));
        assert!(!anna.clearly_differs(&patient("example", "ANNA", Some("1980-01-02"))));
        let nameless = Identity::of(&json!({"resourceType": "Patient"})).unwrap();
        assert!(!anna.clearly_differs(&nameless));
        assert!(Identity::of(&json!({"resourceType": "Observation"})).is_none());
    }
}
