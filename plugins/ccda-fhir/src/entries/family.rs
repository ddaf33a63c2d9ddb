//! Family history as FamilyMemberHistory (C-CDA on FHIR "Family History" mapping).
//!
//! A Family History Organizer (4.45) is one relative: one FamilyMemberHistory, with the
//! relationship (v3 RoleCode: FTH, MTH, BRO...), name, sex, birth and death of its
//! `subject/relatedSubject`, and one condition per Family History Observation (4.46): the
//! observation's value as the code, the Age Observation (4.31) as onsetAge (else its time as the
//! onset), and a Family History Death Observation (4.47) as contributedToDeath with its value as
//! the outcome. Two relatives with the same relationship are two organizers and so two
//! resources. A negated observation is not a condition: "no known problems" is said as such,
//! and a negated disease ("does not have asthma") becomes a note.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::results::component_observations;
use super::{Mapped, concept_or_text, negated, put_identifiers, related};
use crate::Ctx;
use crate::datatypes::{When, concept, fhir_concept, human_name, put, put_list, quantity, time_of};
use crate::xml::El;

const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
const GENDER: &str = "http://hl7.org/fhir/administrative-gender";
const AGE_OBSERVATION: &str = "2.16.840.1.113883.10.20.22.4.31";
const DEATH_OBSERVATION: &str = "2.16.840.1.113883.10.20.22.4.47";
const SNOMED_OID: &str = "2.16.840.1.113883.6.96";

/// A Family History Organizer, or a lone Family History Observation, as a FamilyMemberHistory.
pub(crate) fn convert(ctx: &mut Ctx, statement: Node) -> Mapped {
    match statement.tag_name().name() {
        "organizer" => {
            let observations = component_observations(statement);
            history(ctx, statement, &observations)
        }
        "observation" => history(ctx, statement, &[statement]),
        other => Err(format!(
            "a <{other}> is not a family history organizer or observation"
        )),
    }
}

/// One relative's history: `holder` (the organizer, or a lone observation) names the relative in
/// its `subject`; `observations` are the relative's conditions.
fn history(ctx: &mut Ctx, holder: Node, observations: &[Node]) -> Mapped {
    let relative = holder
        .child("subject")
        .and_then(|s| s.child("relatedSubject"));
    let person = relative.and_then(|r| r.child("subject"));

    let mut resource = Map::new();
    resource.insert("resourceType".into(), "FamilyMemberHistory".into());
    resource.insert(
        "id".into(),
        ctx.id_for("FamilyMemberHistory", holder).into(),
    );
    put_identifiers(&mut resource, holder);
    resource.insert("status".into(), "completed".into());
    resource.insert("patient".into(), ctx.subject());
    let relationship = relative
        .and_then(|r| r.child("code"))
        .and_then(|c| concept(c, &ctx.narrative))
        .unwrap_or_else(|| fhir_concept(ROLE_CODE, "FAMMEMB", "family member"));
    resource.insert("relationship".into(), relationship);
    put(
        &mut resource,
        "name",
        person
            .and_then(|p| p.child("name"))
            .and_then(name_text)
            .map(Value::from),
    );
    put(
        &mut resource,
        "sex",
        person
            .and_then(|p| p.child("administrativeGenderCode"))
            .and_then(|g| sex(ctx, g)),
    );
    put(
        &mut resource,
        "bornDate",
        person
            .and_then(|p| p.child("birthTime"))
            .and_then(time_of)
            .map(|t| date_part(&t).into()),
    );

    let mut conditions = Vec::new();
    let mut notes = Vec::new();
    for observation in observations {
        match condition(ctx, *observation) {
            Some(Entry::Condition(c)) => conditions.push(c),
            Some(Entry::Absent(text)) => notes.push(json!({ "text": text })),
            None => ctx.warn(
                "a family history observation with no condition code or text was not converted",
            ),
        }
    }
    let died_of_a_condition = conditions
        .iter()
        .any(|c| c["contributedToDeath"] == Value::Bool(true));
    let deceased_time = person
        .and_then(|p| p.child("deceasedTime"))
        .and_then(time_of);
    let deceased_flag = person
        .and_then(|p| p.child("deceasedInd"))
        .and_then(|d| d.attr("value"));
    if let Some(time) = deceased_time {
        resource.insert("deceasedDate".into(), date_part(&time).into());
    } else if deceased_flag == Some("true") || died_of_a_condition {
        resource.insert("deceasedBoolean".into(), true.into());
    } else if deceased_flag == Some("false") {
        resource.insert("deceasedBoolean".into(), false.into());
    }
    put_list(&mut resource, "note", notes);
    put_list(&mut resource, "condition", conditions);
    ctx.add(Value::Object(resource));
    Ok(())
}

/// What one Family History Observation says.
enum Entry {
    Condition(Value),
    /// A negated observation: the relative does not have this.
    Absent(String),
}

fn condition(ctx: &mut Ctx, observation: Node) -> Option<Entry> {
    let value = observation.child("value").filter(|v| {
        !v.is_null() || v.child("originalText").is_some() || v.child("translation").is_some()
    });
    if negated(observation) {
        let generic = value.is_some_and(|v| {
            v.attr("code") == Some("55607006") && v.attr("codeSystem") == Some(SNOMED_OID)
        });
        if generic {
            // "Problem" negated: no known problems.
            return Some(Entry::Condition(json!({
                "code": fhir_concept(
                    "http://snomed.info/sct",
                    "160245001",
                    "No current problems or disability"
                ),
            })));
        }
        let what = concept_or_text(ctx, value, observation)?;
        let text = what["text"]
            .as_str()
            .or_else(|| what["coding"][0]["display"].as_str())
            .or_else(|| what["coding"][0]["code"].as_str())
            .unwrap_or("this condition")
            .to_string();
        return Some(Entry::Absent(format!("Does not have: {text}")));
    }
    let code = concept_or_text(ctx, value, observation)?;
    let mut condition = Map::new();
    condition.insert("code".into(), code);
    let details = related(observation, None);
    if let Some(death) = details
        .iter()
        .find(|s| s.has_template(&[DEATH_OBSERVATION]))
    {
        put(
            &mut condition,
            "outcome",
            death
                .child("value")
                .and_then(|v| concept(v, &ctx.narrative)),
        );
        condition.insert("contributedToDeath".into(), true.into());
    }
    let age = details
        .iter()
        .find(|s| s.has_template(&[AGE_OBSERVATION]))
        .and_then(|a| a.child("value"))
        .and_then(quantity)
        .map(age_units);
    if let Some(age) = age {
        condition.insert("onsetAge".into(), age);
    } else if let Some(period) = When::of(observation.child("effectiveTime")).period() {
        condition.insert("onsetPeriod".into(), period);
    }
    Some(Entry::Condition(Value::Object(condition)))
}

/// An age Quantity with a readable unit ("a" is years in UCUM).
fn age_units(mut age: Value) -> Value {
    let readable = match age["code"].as_str() {
        Some("a") => "years",
        Some("mo") => "months",
        Some("wk") => "weeks",
        Some("d") => "days",
        Some("h") => "hours",
        _ => return age,
    };
    age["unit"] = readable.into();
    age
}

/// A name as one string: "Lucas Valieri", or the unstructured text.
fn name_text(name: Node) -> Option<String> {
    let parsed = human_name(name)?;
    if let Some(text) = parsed["text"].as_str() {
        return Some(text.to_string());
    }
    let mut parts: Vec<String> = parsed["given"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(family) = parsed["family"].as_str() {
        parts.push(family.to_string());
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// An administrativeGenderCode as FamilyMemberHistory.sex (FHIR AdministrativeGender), keeping
/// the document's own coding beside it.
fn sex(ctx: &Ctx, gender: Node) -> Option<Value> {
    let (code, display) = match gender.attr("code")? {
        "M" => ("male", "Male"),
        "F" => ("female", "Female"),
        "UN" => ("other", "Other"),
        _ => ("unknown", "Unknown"),
    };
    let mut codings = vec![json!({ "system": GENDER, "code": code, "display": display })];
    if let Some(own) = concept(gender, &ctx.narrative)
        && let Some(list) = own["coding"].as_array()
    {
        codings.extend(list.iter().cloned());
    }
    Some(json!({ "coding": codings, "text": display }))
}

/// The date of a FHIR date or dateTime (FamilyMemberHistory's born and deceased are dates).
fn date_part(time: &str) -> String {
    time.split('T').next().unwrap_or(time).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::tests::section_examples;

    fn histories(name: &str) -> (Vec<Value>, Vec<String>) {
        let (_, text) = section_examples()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no example {name}"));
        let c = crate::convert(text.as_bytes()).unwrap();
        let found = c
            .resources
            .into_iter()
            .filter(|r| r["resourceType"] == "FamilyMemberHistory")
            .collect();
        (found, c.warnings)
    }

    #[test]
    fn a_deceased_father_and_a_living_mother() {
        let (found, warnings) = histories(
            "Family_History/Normal_Family_History_Father_deceased_Mother_alive(C-CDA2.1).xml",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(found.len(), 2);
        let father = &found[0];
        assert_eq!(father["status"], "completed");
        assert_eq!(father["relationship"]["coding"][0]["code"], "FTH");
        assert_eq!(
            father["relationship"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
        );
        assert_eq!(father["name"], "Lucas Valieri");
        assert_eq!(father["sex"]["coding"][0]["code"], "male");
        assert_eq!(father["deceasedDate"], "2003-01");
        assert!(father.get("bornDate").is_none());
        let stroke = &father["condition"][0];
        assert_eq!(stroke["code"]["coding"][0]["code"], "230690007");
        assert_eq!(stroke["contributedToDeath"], true);
        assert_eq!(stroke["outcome"]["coding"][0]["code"], "419099009");
        assert_eq!(
            stroke["onsetAge"],
            json!({"value": 72, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"})
        );
        assert_eq!(
            father["condition"][1]["code"]["coding"][0]["code"],
            "59621000"
        );

        let mother = &found[1];
        assert_eq!(mother["relationship"]["coding"][0]["code"], "MTH");
        assert_eq!(mother["sex"]["coding"][0]["code"], "female");
        assert_eq!(mother["deceasedBoolean"], false);
        // Negated "Problem": no known problems, not a problem called "Problem".
        assert_eq!(mother["condition"].as_array().unwrap().len(), 1);
        assert_eq!(
            mother["condition"][0]["code"]["coding"][0]["code"],
            "160245001"
        );
    }

    #[test]
    fn two_brothers_are_two_histories() {
        let (found, _) = histories(
            "Family_History/Family_History_two_individuals_same_relationship_to_the_patient(C-CDA2.1).xml",
        );
        assert_eq!(found.len(), 2);
        assert_ne!(found[0]["id"], found[1]["id"]);
        assert_eq!(found[0]["name"], "James");
        assert_eq!(found[1]["name"], "Gerald");
        assert_eq!(found[0]["bornDate"], "1982");
        assert_eq!(found[0]["condition"].as_array().unwrap().len(), 2);
        assert_eq!(
            found[1]["condition"][0]["code"]["coding"][0]["code"],
            "195967001"
        );
    }

    #[test]
    fn a_negated_disease_is_a_note_not_a_condition() {
        let (found, _) = histories("Family_History/Family_History_generic(C-CDA2.1).xml");
        assert_eq!(found.len(), 1);
        let relative = &found[0];
        assert_eq!(relative["relationship"]["coding"][0]["code"], "FAMMEMB");
        let conditions = relative["condition"].as_array().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0]["code"]["coding"][0]["code"], "56265001");
        let note = relative["note"][0]["text"].as_str().unwrap();
        assert!(note.starts_with("Does not have: "), "{note}");
        assert!(!note.contains("Heart"), "{note}");
    }
}
