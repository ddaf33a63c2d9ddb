//! Allergies and intolerances as AllergyIntolerance (C-CDA on FHIR "Allergies" mapping).
//!
//! An Allergy Concern Act wraps one or more Allergy-Intolerance Observations; each observation
//! is one AllergyIntolerance. The substance is the observation's participant (`playingEntity`
//! code), the type and category come from the observation's `value` ("Allergy to food"...), the
//! reactions from its Reaction Observations (with their Severity), and the clinical status from
//! the Allergy Status Observation, else from whether it has ended, else from the concern.
//!
//! Negation is kept as negation:
//! - "No known allergies" (a negated observation with no substance) becomes an
//!   AllergyIntolerance coded "No known allergy" (or drug, food, environmental allergy), never an
//!   allergy to a substance;
//! - a negated substance ("not allergic to peanuts") is that substance with verification status
//!   refuted;
//! - a nullified statement is entered-in-error.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::medications::comment_notes;
use super::{Mapped, concept_or_text, first_author, negated, put_identifiers, related};
use super::{entity_concept, only_types};
use crate::Ctx;
use crate::datatypes::{When, concept, fhir_concept, put, put_list};
use crate::xml::{El, path};

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
const SNOMED: &str = "http://snomed.info/sct";
const SNOMED_OID: &str = "2.16.840.1.113883.6.96";

const ALLERGY_OBSERVATION: &[&str] = &[
    "2.16.840.1.113883.10.20.22.4.7",
    "2.16.840.1.113883.10.20.24.3.90",
];
const REACTION: &[&str] = &["2.16.840.1.113883.10.20.22.4.9"];
const SEVERITY: &[&str] = &["2.16.840.1.113883.10.20.22.4.8"];
const ALLERGY_STATUS: &[&str] = &["2.16.840.1.113883.10.20.22.4.28"];
const CRITICALITY: &[&str] = &["2.16.840.1.113883.10.20.22.4.145"];

/// "No known …" codes a document may put in the observation's value instead of negating it.
const NO_KNOWN_CODES: &[&str] = &["716186003", "409137002", "429625007", "428607008"];

/// SNOMED CT codes for "any substance" that documents negate to say "no known allergies":
/// Substance, Drug or medicament, Pharmaceutical / biologic product.
const GENERIC_SUBSTANCES: &[&str] = &["105590001", "410942007", "373873005"];

/// An Allergy Concern Act (or a bare Allergy-Intolerance Observation) as one AllergyIntolerance
/// per allergy observation in it.
pub(crate) fn convert(ctx: &mut Ctx, statement: Node) -> Mapped {
    if statement.tag_name().name() == "observation" {
        return allergy(ctx, statement, None, &[]).map(|_| ());
    }
    let observations: Vec<Node> = related(statement, None)
        .into_iter()
        .filter(|s| s.tag_name().name() == "observation" && is_allergy_observation(*s))
        .collect();
    if observations.is_empty() {
        if statement.is_null() {
            return Err(no_information());
        }
        return Err("the allergy concern holds no allergy observation".into());
    }
    // Reactions some documents hang on the concern instead of the observation: they belong to
    // the allergy when the concern has only one.
    let concern_reactions: Vec<Node> = if observations.len() == 1 {
        related(statement, None)
            .into_iter()
            .filter(|s| is_reaction(*s))
            .collect()
    } else {
        Vec::new()
    };
    let mut reasons = Vec::new();
    let mut added = 0;
    for observation in observations {
        match allergy(ctx, observation, Some(statement), &concern_reactions) {
            Ok(_) => added += 1,
            Err(reason) => reasons.push(reason),
        }
    }
    if added == 0 {
        return Err(reasons.join("; "));
    }
    Ok(())
}

fn no_information() -> String {
    "the document says no allergy information was recorded (nullFlavor), so there is no allergy to keep".into()
}

fn is_allergy_observation(observation: Node) -> bool {
    if observation.has_template(ALLERGY_OBSERVATION) {
        return true;
    }
    // Untemplated: anything that is not one of the allergy's own parts.
    !(is_reaction(observation)
        || is_severity(observation)
        || is_status(observation)
        || is_criticality(observation)
        || code_of(observation) == Some("48767-8"))
}

fn code_of<'a>(statement: Node<'a, '_>) -> Option<&'a str> {
    statement.child("code").and_then(|c| c.attr("code"))
}

fn is_reaction(s: Node) -> bool {
    s.tag_name().name() == "observation"
        && (s.has_template(REACTION)
            || s.parent()
                .is_some_and(|r| r.attr("typeCode") == Some("MFST") && !is_severity(s)))
}

fn is_severity(s: Node) -> bool {
    s.has_template(SEVERITY) || code_of(s) == Some("SEV")
}

fn is_status(s: Node) -> bool {
    s.has_template(ALLERGY_STATUS) || code_of(s) == Some("33999-4")
}

fn is_criticality(s: Node) -> bool {
    s.has_template(CRITICALITY) || code_of(s) == Some("82606-5")
}

/// The code of the observation's `value` when it is SNOMED CT (or has no system).
fn value_code<'a>(observation: Node<'a, '_>) -> Option<&'a str> {
    let value = observation.child("value")?;
    if value
        .attr("codeSystem")
        .is_some_and(|system| system != SNOMED_OID)
    {
        return None;
    }
    value.attr("code")
}

/// The substance's code element (`participant/participantRole/playingEntity/code`) and the
/// playing entity.
fn substance<'a, 'i>(observation: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    observation
        .children_named("participant")
        .into_iter()
        .find_map(|p| path(p, &["participantRole", "playingEntity"]))
}

/// The "No known allergy" concept for the kind of allergy an observation's value names.
fn no_known_concept(value: Option<&str>) -> Value {
    let (code, display) = match value {
        Some(code) if NO_KNOWN_CODES.contains(&code) => (code, no_known_display(code)),
        Some("416098002" | "419511003" | "59037007") => ("409137002", "No known drug allergy"),
        Some("414285001" | "235719002" | "418471000") => ("429625007", "No known food allergy"),
        Some("426232007") => ("428607008", "No known environmental allergy"),
        _ => ("716186003", "No known allergy"),
    };
    fhir_concept(SNOMED, code, display)
}

fn no_known_display(code: &str) -> &'static str {
    match code {
        "409137002" => "No known drug allergy",
        "429625007" => "No known food allergy",
        "428607008" => "No known environmental allergy",
        _ => "No known allergy",
    }
}

/// FHIR's type (allergy or intolerance) for the observation's value.
fn allergy_type(value: Option<&str>) -> Option<&'static str> {
    match value? {
        "419199007" | "414285001" | "416098002" | "426232007" => Some("allergy"),
        "59037007" | "235719002" => Some("intolerance"),
        _ => None,
    }
}

/// FHIR's category for the observation's value.
fn category(value: Option<&str>) -> Option<&'static str> {
    match value? {
        "414285001" | "235719002" | "418471000" => Some("food"),
        "416098002" | "419511003" | "59037007" => Some("medication"),
        "426232007" => Some("environment"),
        _ => None,
    }
}

/// One Allergy-Intolerance Observation as an AllergyIntolerance. `concern` is the act around it;
/// `concern_reactions` are reactions the concern holds for it.
fn allergy(
    ctx: &mut Ctx,
    observation: Node,
    concern: Option<Node>,
    concern_reactions: &[Node],
) -> Result<String, String> {
    let value = value_code(observation);
    let entity = substance(observation);
    let named = entity.and_then(|e| entity_concept(ctx, e));
    let negation = negated(observation);
    let no_known_value = value.is_some_and(|v| NO_KNOWN_CODES.contains(&v));
    // A substance code that names no particular substance ("Substance", "Drug or medicament").
    let generic = entity
        .and_then(|e| e.child("code"))
        .and_then(|c| c.attr("code"))
        .is_some_and(|c| GENERIC_SUBSTANCES.contains(&c));
    // "No known allergies": negated with no particular substance, or the value says so itself.
    let no_known = (negation && (named.is_none() || generic)) || (no_known_value && !negation);
    let refuted = negation && !no_known;
    if observation.is_null() && named.is_none() && !negation {
        return Err(no_information());
    }

    let code = if no_known {
        no_known_concept(value)
    } else {
        named
            .or_else(|| concept_or_text(ctx, None, observation))
            .or_else(|| {
                observation
                    .child("value")
                    .filter(|v| !v.is_null() || v.child("originalText").is_some())
                    .and_then(|v| concept(v, &ctx.narrative))
            })
            .ok_or("the allergy names no substance, and has no code or text")?
    };

    let mut resource = Map::new();
    resource.insert("resourceType".into(), "AllergyIntolerance".into());
    resource.insert(
        "id".into(),
        ctx.id_for("AllergyIntolerance", observation).into(),
    );
    put_identifiers(&mut resource, observation);

    let when = When::of(observation.child("effectiveTime"));
    let nullified = [Some(observation), concern]
        .into_iter()
        .flatten()
        .any(|s| s.child("statusCode").and_then(|c| c.attr("code")) == Some("nullified"));
    if nullified {
        resource.insert(
            "verificationStatus".into(),
            fhir_concept(VERIFICATION, "entered-in-error", "Entered in Error"),
        );
    } else {
        // R4 requires a clinical status unless the record is entered-in-error (ait-1), so a
        // refuted allergy is inactive.
        let (status, display) = if refuted {
            ("inactive", "Inactive")
        } else if no_known {
            ("active", "Active")
        } else {
            clinical_status(observation, concern, &when)
        };
        resource.insert(
            "clinicalStatus".into(),
            fhir_concept(CLINICAL, status, display),
        );
        let (verification, display) = if refuted {
            ("refuted", "Refuted")
        } else {
            ("confirmed", "Confirmed")
        };
        resource.insert(
            "verificationStatus".into(),
            fhir_concept(VERIFICATION, verification, display),
        );
    }
    if !no_known {
        put(&mut resource, "type", allergy_type(value).map(Value::from));
        put(
            &mut resource,
            "category",
            category(value).map(|c| json!([c])),
        );
    }
    put(
        &mut resource,
        "criticality",
        related(observation, None)
            .into_iter()
            .filter(|s| is_criticality(*s))
            .find_map(|s| s.child("value").and_then(|v| v.attr("code")))
            .and_then(|code| match code {
                "CRITH" => Some("high"),
                "CRITL" => Some("low"),
                "CRITU" => Some("unable-to-assess"),
                _ => None,
            })
            .map(Value::from),
    );
    resource.insert("code".into(), code);
    resource.insert("patient".into(), ctx.subject());
    if !no_known {
        if let Some(onset) = when.first() {
            resource.insert("onsetDateTime".into(), onset.into());
        }
        if let Some(end) = &when.end {
            resource.insert(
                "extension".into(),
                json!([{
                    "url": "http://hl7.org/fhir/StructureDefinition/allergyintolerance-abatement",
                    "valueDateTime": end,
                }]),
            );
        }
    }

    let (author, time) = first_author(ctx, observation);
    let (author, time) = match (author, time, concern) {
        (None, None, Some(concern)) => first_author(ctx, concern),
        other => (other.0, other.1),
    };
    let recorded =
        time.or_else(|| concern.and_then(|c| When::of(c.child("effectiveTime")).first()));
    put(&mut resource, "recordedDate", recorded.map(Value::from));
    put(&mut resource, "recorder", only_types(author, super::PEOPLE));

    if !no_known {
        let reactions = reactions(ctx, observation, concern, concern_reactions);
        put_list(&mut resource, "reaction", reactions);
    }
    let mut notes = comment_notes(ctx, observation);
    if let Some(concern) = concern {
        notes.extend(comment_notes(ctx, concern));
    }
    put_list(&mut resource, "note", notes);
    Ok(ctx.add(Value::Object(resource)))
}

/// The clinical status: the Allergy Status Observation, else resolved when the allergy has
/// ended, else the concern's status.
fn clinical_status(
    observation: Node,
    concern: Option<Node>,
    when: &When,
) -> (&'static str, &'static str) {
    let from_status = related(observation, None)
        .into_iter()
        .filter(|s| is_status(*s))
        .find_map(|s| s.child("value").and_then(|v| v.attr("code")))
        .and_then(|code| match code {
            "55561003" => Some(("active", "Active")),
            "73425007" => Some(("inactive", "Inactive")),
            "413322009" => Some(("resolved", "Resolved")),
            _ => None,
        });
    if let Some(status) = from_status {
        return status;
    }
    if when.end.is_some() {
        return ("resolved", "Resolved");
    }
    let concern_status = concern
        .and_then(|c| c.child("statusCode"))
        .and_then(|s| s.attr("code"));
    match concern_status {
        Some("completed") => ("resolved", "Resolved"),
        Some("suspended" | "aborted") => ("inactive", "Inactive"),
        _ if concern.is_some_and(|c| When::of(c.child("effectiveTime")).end.is_some()) => {
            ("resolved", "Resolved")
        }
        _ => ("active", "Active"),
    }
}

/// FHIR's reaction severity for a Severity Observation's value.
fn severity(statement: Node) -> Option<&'static str> {
    related(statement, None)
        .into_iter()
        .filter(|s| is_severity(*s))
        .find_map(|s| s.child("value").and_then(|v| v.attr("code")))
        .and_then(|code| match code {
            "255604002" => Some("mild"),
            "6736007" | "371923003" => Some("moderate"),
            "24484000" | "371924009" | "399166001" => Some("severe"),
            _ => None,
        })
}

/// Each Reaction Observation as a reaction. A severity given for the whole allergy (on the
/// observation or the concern) applies to the reactions that have none of their own.
fn reactions(
    ctx: &mut Ctx,
    observation: Node,
    concern: Option<Node>,
    concern_reactions: &[Node],
) -> Vec<Value> {
    let overall = severity(observation).or_else(|| concern.and_then(severity));
    let mut found = Vec::new();
    let mut skipped = 0;
    let candidates: Vec<Node> = related(observation, None)
        .into_iter()
        .filter(|s| is_reaction(*s))
        .chain(concern_reactions.iter().copied())
        .collect();
    for reaction in candidates {
        let value = reaction
            .child("value")
            .filter(|v| !v.is_null() || v.child("originalText").is_some());
        let Some(manifestation) = concept_or_text(ctx, value, reaction) else {
            skipped += 1;
            continue;
        };
        let mut entry = Map::new();
        entry.insert("manifestation".into(), json!([manifestation]));
        put(
            &mut entry,
            "onset",
            When::of(reaction.child("effectiveTime"))
                .first()
                .map(Value::from),
        );
        put(
            &mut entry,
            "severity",
            severity(reaction).or(overall).map(Value::from),
        );
        found.push(Value::Object(entry));
    }
    if skipped > 0 {
        ctx.warn(format!(
            "{skipped} reaction(s) of an allergy were left out: they name no manifestation (no code and no text)"
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::tests::{section_examples, wrap_example};

    fn example(name: &str) -> String {
        section_examples()
            .into_iter()
            .find(|(n, _)| n == &format!("Allergies/{name}"))
            .unwrap_or_else(|| panic!("no example {name}"))
            .1
    }

    fn allergies_of(document: &str) -> (Vec<Value>, Vec<String>) {
        let conversion = crate::convert(document.as_bytes()).unwrap();
        let found = conversion
            .resources
            .into_iter()
            .filter(|r| r["resourceType"] == "AllergyIntolerance")
            .collect();
        (found, conversion.warnings)
    }

    fn only(name: &str) -> Value {
        let (found, warnings) = allergies_of(&example(name));
        assert_eq!(found.len(), 1, "{name}: {found:?} {warnings:?}");
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        found.into_iter().next().unwrap()
    }

    #[test]
    fn food_allergy_with_reaction_severity_and_onset() {
        let a = only("Allergy_to_food_egg(C-CDA2.1).xml");
        assert_eq!(a["code"]["coding"][0]["system"], "http://snomed.info/sct");
        assert_eq!(a["code"]["coding"][0]["code"], "102263004");
        // The original text resolves through the narrative reference.
        assert_eq!(a["code"]["text"], "Egg");
        assert_eq!(a["category"][0], "food");
        assert_eq!(a["type"], "allergy");
        assert_eq!(a["clinicalStatus"]["coding"][0]["code"], "active");
        assert_eq!(a["verificationStatus"]["coding"][0]["code"], "confirmed");
        assert_eq!(a["onsetDateTime"], "1998");
        assert_eq!(a["recordedDate"], "2014-01-04");
        assert!(
            a["recorder"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
        assert_eq!(
            a["reaction"][0]["manifestation"][0]["coding"][0]["code"],
            "247472004"
        );
        assert_eq!(a["reaction"][0]["severity"], "moderate");
        assert!(
            a["patient"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    }

    #[test]
    fn drug_allergies_keep_rxnorm_and_each_reaction() {
        let a = only("Allergy_to_specific_drug_Penicillin(C-CDA2.1).xml");
        assert_eq!(
            a["code"]["coding"][0]["system"],
            "http://www.nlm.nih.gov/research/umls/rxnorm"
        );
        assert_eq!(a["code"]["coding"][0]["code"], "7980");
        assert_eq!(a["category"][0], "medication");
        assert_eq!(a["reaction"][0]["severity"], "severe");

        let codeine = only("Allergy_to_specific_drug_Codeine(C-CDA2.1).xml");
        assert_eq!(codeine["type"], "intolerance");
        assert_eq!(codeine["code"]["text"], "Codeine");
        let reactions = codeine["reaction"].as_array().unwrap();
        assert!(reactions.len() >= 2, "{reactions:?}");
        assert_eq!(reactions[0]["severity"], "severe");
        assert_eq!(reactions[0]["onset"], "2012-01-29");
        assert_eq!(reactions[1]["severity"], "mild");
    }

    #[test]
    fn reactions_on_the_concern_belong_to_its_allergy() {
        let a = only("Withdrawn_Allergy_to_specific_drug_Epinephrine(C-CDA2.1).xml");
        assert_eq!(a["code"]["coding"][0]["code"], "3992");
        let codes: Vec<&str> = a["reaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["manifestation"][0]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["25569003", "26079004"]);
        assert_eq!(a["reaction"][1]["severity"], "moderate");
    }

    #[test]
    fn free_text_allergen_keeps_its_translation_and_words() {
        let a = only("Free-text_Allergy_to_clinical_trial_drug(C-CDA2.1).xml");
        let coding = &a["code"]["coding"][0];
        assert_eq!(coding["code"], "C95733");
        assert_eq!(coding["system"], "http://ncimeta.nci.nih.gov");
        assert!(a["code"]["text"].as_str().unwrap().len() > 2, "{a}");
        // It ended the same day: resolved, with its abatement.
        assert_eq!(a["clinicalStatus"]["coding"][0]["code"], "resolved");
        assert_eq!(a["extension"][0]["valueDateTime"], "2018-04-01");
    }

    #[test]
    fn latex_is_a_substance_with_no_category() {
        let a = only("Allergy_to_specific_substance_latex(C-CDA2.1).xml");
        assert_eq!(a["code"]["coding"][0]["code"], "111088007");
        assert!(a.get("category").is_none());
    }

    #[test]
    fn no_known_allergies_are_not_an_allergy_to_a_substance() {
        let a = only("No_Known_Allergies_with_Author_Timestamp(C-CDA2.1).xml");
        assert_eq!(a["code"]["coding"][0]["code"], "716186003");
        assert_eq!(a["code"]["coding"].as_array().unwrap().len(), 1);
        assert_eq!(a["verificationStatus"]["coding"][0]["code"], "confirmed");
        assert_eq!(a["clinicalStatus"]["coding"][0]["code"], "active");
        assert!(a.get("reaction").is_none() && a.get("category").is_none());

        let drugs = only("No_Known_Medication_Allergies(C-CDA2.1).xml");
        assert_eq!(drugs["code"]["coding"][0]["code"], "409137002");
        assert_eq!(drugs["code"]["text"], "No known drug allergy");
    }

    #[test]
    fn a_negated_generic_substance_is_no_known_allergy() {
        let (_, bytes) = crate::tests::documents()
            .into_iter()
            .find(|(n, _)| n == "CCD-2.xml")
            .unwrap();
        let (found, _) = allergies_of(std::str::from_utf8(&bytes).unwrap());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["code"]["coding"][0]["code"], "716186003");
        assert_eq!(found[0]["clinicalStatus"]["coding"][0]["code"], "active");
        assert_eq!(
            found[0]["verificationStatus"]["coding"][0]["code"],
            "confirmed"
        );
    }

    #[test]
    fn a_negated_substance_is_refuted() {
        let a = only("Not_Allergic_to_Peanuts(C-CDAR2.1).xml");
        assert_eq!(a["code"]["coding"][0]["code"], "762952008");
        assert_eq!(a["verificationStatus"]["coding"][0]["code"], "refuted");
        assert_ne!(a["clinicalStatus"]["coding"][0]["code"], "active");
    }

    #[test]
    fn a_nullified_allergy_is_entered_in_error_with_no_clinical_status() {
        let text = example("Allergy_to_specific_drug_Penicillin(C-CDA2.1).xml").replacen(
            "<statusCode code=\"active\"/>",
            "<statusCode code=\"nullified\"/>",
            1,
        );
        let (found, _) = allergies_of(&text);
        assert_eq!(
            found[0]["verificationStatus"]["coding"][0]["code"],
            "entered-in-error"
        );
        assert!(found[0].get("clinicalStatus").is_none());
    }

    #[test]
    fn a_concern_with_no_information_is_a_warning() {
        let entry = r#"<act classCode="ACT" moodCode="EVN" nullFlavor="NI">
            <templateId root="2.16.840.1.113883.10.20.22.4.30"/>
            <code code="CONC" codeSystem="2.16.840.1.113883.5.6"/>
            <statusCode code="active"/></act>"#;
        let section = format!(
            "<section><templateId root=\"2.16.840.1.113883.10.20.22.2.6.1\"/><code code=\"48765-2\" codeSystem=\"2.16.840.1.113883.6.1\"/><title>Allergies</title><text>No information</text><entry>{entry}</entry></section>"
        );
        let (found, warnings) = allergies_of(&wrap_example(&section));
        assert!(found.is_empty());
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("no allergy information")),
            "{warnings:?}"
        );
    }

    #[test]
    fn allergies_in_the_example_documents() {
        for (name, bytes) in crate::tests::documents() {
            let conversion = crate::convert(&bytes).unwrap();
            for w in &conversion.warnings {
                assert!(!w.to_lowercase().contains("allerg"), "{name}: {w}");
            }
        }
    }
}
