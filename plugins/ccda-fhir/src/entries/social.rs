//! Social history, functional status and mental status as Observations.
//!
//! - Smoking Status (4.78) is an Observation coded 72166-2 (Tobacco smoking status) with its
//!   SNOMED value; Tobacco Use (4.85), Social History Observations (4.38), Birth Sex (4.200),
//!   caregiver, home environment and belief observations keep their own code and value. All are
//!   category social-history.
//! - A Pregnancy Observation (4.15.3.8, coded only as an ASSERTION) is the Observation 82810-3
//!   Pregnancy status, valued pregnant, not pregnant (negated) or unknown (nullFlavor), with an
//!   estimated delivery date as a component.
//! - An Assessment Scale Observation (4.69: PHQ-9, Glasgow coma scale, WE CARE) is an
//!   Observation of category survey with its score, and each of its supporting observations
//!   (4.86) an Observation of its own, listed as `hasMember`; an item answered both with a score
//!   and a coded answer keeps the answer with the score as the coding's ordinalValue.
//! - Functional and mental status observations (4.67, 4.68, 4.74, 4.128...) are Observations of
//!   category exam, with US Core's functional-status or cognitive-status category beside it; an
//!   organizer (4.66, 4.75) is a panel Observation whose members are its observations.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::results::{
    self, LOINC, add_observation, add_with_id, category, component_observations, put_effective,
};
use super::{Mapped, concept_or_text, negated, put_identifiers, related};
use crate::datatypes::{When, fhir_concept, put_list};
use crate::xml::El;
use crate::{Ctx, Kind};

const US_CORE_CATEGORY: &str = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category";
const SNOMED: &str = "http://snomed.info/sct";
const SMOKING_STATUS: &str = "2.16.840.1.113883.10.20.22.4.78";
const PREGNANCY: &str = "2.16.840.1.113883.10.20.15.3.8";
const ASSESSMENT_SCALE: &str = "2.16.840.1.113883.10.20.22.4.69";
const SUPPORTING: &str = "2.16.840.1.113883.10.20.22.4.86";
const CAREGIVER: &str = "2.16.840.1.113883.10.20.22.4.72";
const ACT_CODE_OID: &str = "2.16.840.1.113883.5.4";

/// A Social History section entry.
pub(crate) fn convert(ctx: &mut Ctx, statement: Node) -> Mapped {
    let categories = |node: Node| {
        let mut list = vec![category("social-history")];
        if is_assessment(node) {
            list.push(category("survey"));
        }
        list
    };
    convert_with(ctx, statement, &categories, "Social history")
}

/// A Functional Status or Mental Status section entry.
pub(crate) fn convert_status(ctx: &mut Ctx, statement: Node, kind: Kind) -> Mapped {
    let (us_core, display, fallback) = if kind == Kind::MentalStatus {
        ("cognitive-status", "Cognitive Status", "Mental status")
    } else {
        (
            "functional-status",
            "Functional Status",
            "Functional status",
        )
    };
    let categories = move |node: Node| {
        let base = if is_assessment(node) {
            category("survey")
        } else {
            category("exam")
        };
        vec![base, fhir_concept(US_CORE_CATEGORY, us_core, display)]
    };
    convert_with(ctx, statement, &categories, fallback)
}

type Categories<'c> = &'c dyn Fn(Node) -> Vec<Value>;

fn convert_with(ctx: &mut Ctx, statement: Node, categories: Categories, fallback: &str) -> Mapped {
    match statement.tag_name().name() {
        "observation" => entry_observation(ctx, statement, categories, None).map(|_| ()),
        "organizer" => panel(ctx, statement, categories, fallback),
        other => Err(format!(
            "a <{other}> is not an observation or organizer Fasten converts in this section"
        )),
    }
}

/// An assessment scale or one of its items.
fn is_assessment(node: Node) -> bool {
    node.has_template(&[ASSESSMENT_SCALE, SUPPORTING])
}

/// One observation (with any assessment items under it) as an Observation; returns its
/// reference.
fn entry_observation(
    ctx: &mut Ctx,
    node: Node,
    categories: Categories,
    parent: Option<Node>,
) -> Result<String, String> {
    if node.has_template(&[PREGNANCY]) {
        return pregnancy(ctx, node, categories(node), parent);
    }
    let mut resource = results::observation(ctx, node, categories(node), parent)?;
    let code = node.child("code");
    if code.is_some_and(is_assertion) {
        // An ASSERTION says nothing by itself: the value is what is asserted.
        let text = if node.has_template(&[CAREGIVER]) {
            "Caregiver characteristics"
        } else {
            "Assertion"
        };
        resource["code"]["text"] = text.into();
    }
    if node.has_template(&[SMOKING_STATUS]) && resource["code"].get("text").is_none() {
        resource["code"]["text"] = "Tobacco smoking status".into();
    }
    if node.has_template(&[SMOKING_STATUS])
        && code.is_none_or(|c| c.attr("code") != Some("72166-2"))
    {
        // R1.1 documents code smoking status as an ASSERTION; FHIR uses 72166-2.
        let mut smoking = json!({
            "coding": [{ "system": LOINC, "code": "72166-2", "display": "Tobacco smoking status" }],
            "text": "Tobacco smoking status",
        });
        if let Some(codings) = resource["code"]["coding"].as_array()
            && let Some(list) = smoking["coding"].as_array_mut()
        {
            list.extend(codings.iter().filter(|c| c["code"] != "ASSERTION").cloned());
        }
        resource.insert("code".into(), smoking);
    }
    let items: Vec<Node> = related(node, Some("COMP"))
        .into_iter()
        .filter(|s| s.tag_name().name() == "observation")
        .filter(|s| node.has_template(&[ASSESSMENT_SCALE]) || s.has_template(&[SUPPORTING]))
        .collect();
    let mut members = Vec::new();
    for item in items {
        match entry_observation(ctx, item, categories, Some(node)) {
            Ok(reference) => members.push(json!({ "reference": reference })),
            Err(reason) => ctx.warn(format!("an assessment item was not converted: {reason}")),
        }
    }
    put_list(&mut resource, "hasMember", members);
    Ok(add_observation(ctx, node, resource))
}

/// A Pregnancy Observation as Pregnancy status: pregnant, not pregnant or unknown.
fn pregnancy(
    ctx: &mut Ctx,
    node: Node,
    categories: Vec<Value>,
    parent: Option<Node>,
) -> Result<String, String> {
    let mut resource = results::observation(ctx, node, categories, parent)?;
    resource.retain(|key, _| !key.starts_with("value") && key != "dataAbsentReason");
    resource.insert(
        "code".into(),
        json!({
            "coding": [{ "system": LOINC, "code": "82810-3", "display": "Pregnancy status" }],
            "text": "Pregnancy status",
        }),
    );
    let asserted = results::observation_value_of(ctx, node);
    let value = if node.is_null() || asserted.is_none() {
        fhir_concept(SNOMED, "261665006", "Unknown")
    } else if negated(node) {
        fhir_concept(SNOMED, "60001007", "Not pregnant")
    } else {
        match asserted {
            Some((_, value)) if value["coding"][0]["code"] == "77386006" => {
                let mut value = value;
                value["text"] = "Pregnant".into();
                value
            }
            Some((_, value)) => value,
            None => fhir_concept(SNOMED, "261665006", "Unknown"),
        }
    };
    resource.insert("valueCodeableConcept".into(), value);
    // Estimated delivery date and other details.
    let mut components = Vec::new();
    for detail in related(node, None)
        .into_iter()
        .filter(|s| s.tag_name().name() == "observation")
    {
        let Some(code) = concept_or_text(ctx, detail.child("code"), detail) else {
            continue;
        };
        if let Some((key, value)) = results::observation_value_of(ctx, detail) {
            let mut component = Map::new();
            component.insert("code".into(), code);
            component.insert(key.into(), value);
            components.push(Value::Object(component));
        }
    }
    put_list(&mut resource, "component", components);
    Ok(add_observation(ctx, node, resource))
}

/// An organizer as a panel Observation whose members are its observations.
fn panel(ctx: &mut Ctx, organizer: Node, categories: Categories, fallback: &str) -> Mapped {
    let members = component_observations(organizer);
    if members.is_empty() {
        return Err("the organizer holds no observation".into());
    }
    let mut references = Vec::new();
    let mut reasons = Vec::new();
    let mut earliest: Option<String> = None;
    for member in members {
        match entry_observation(ctx, member, categories, Some(organizer)) {
            Ok(reference) => {
                references.push(json!({ "reference": reference }));
                if let Some(start) = When::of(member.child("effectiveTime")).first()
                    && earliest.as_ref().is_none_or(|e| start < *e)
                {
                    earliest = Some(start);
                }
            }
            Err(reason) => reasons.push(reason),
        }
    }
    if references.is_empty() {
        return Err(reasons.join("; "));
    }
    for reason in reasons {
        ctx.warn(format!("an observation was not converted: {reason}"));
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Observation".into());
    put_identifiers(&mut resource, organizer);
    resource.insert(
        "status".into(),
        results::observation_status(results::status_code(organizer), true).into(),
    );
    put_list(&mut resource, "category", categories(organizer));
    let code = concept_or_text(ctx, organizer.child("code"), organizer)
        .unwrap_or_else(|| json!({ "text": fallback }));
    resource.insert("code".into(), code);
    resource.insert("subject".into(), ctx.subject());
    let when = When::of(organizer.child("effectiveTime"));
    if when.is_empty() {
        if let Some(earliest) = earliest {
            resource.insert("effectiveDateTime".into(), earliest.into());
        }
    } else {
        put_effective(&mut resource, &when, "effective");
    }
    let performers = results::performers(ctx, organizer);
    put_list(&mut resource, "performer", performers);
    resource.insert("hasMember".into(), Value::Array(references));
    let id = ctx.id_for("Observation", organizer);
    add_with_id(ctx, id, resource);
    Ok(())
}

/// True when a code is the HL7 ActCode ASSERTION.
fn is_assertion(code: Node) -> bool {
    code.attr("code") == Some("ASSERTION")
        && code.attr("codeSystem").is_none_or(|s| s == ACT_CODE_OID)
}

#[cfg(test)]
mod tests {
    use crate::tests::convert_example;
    use crate::tests::observation_coded;
    use serde_json::Value;

    use crate::tests::wrap_example;

    fn observations(c: &crate::Conversion) -> Vec<&Value> {
        c.resources
            .iter()
            .filter(|r| r["resourceType"] == "Observation")
            .collect()
    }

    /// A bare entry example inside a Social History section.
    fn in_social_history(name: &str) -> crate::Conversion {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/testdata/ccda/sections")
            .join(name);
        let entry = std::fs::read_to_string(path).unwrap();
        let section = format!(
            "<section><templateId root=\"2.16.840.1.113883.10.20.22.2.17\"/><code code=\"29762-2\" codeSystem=\"2.16.840.1.113883.6.1\"/><title>Social History</title><entry>{entry}</entry></section>"
        );
        crate::convert(wrap_example(&section).as_bytes()).unwrap()
    }

    #[test]
    fn smoking_status_and_tobacco_use() {
        let c = convert_example("Social_History/Current_Smoking_Status(C-CDA2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let status = observation_coded(&c, "72166-2");
        assert_eq!(status["status"], "final");
        assert_eq!(status["category"][0]["coding"][0]["code"], "social-history");
        assert_eq!(
            status["valueCodeableConcept"]["coding"][0],
            serde_json::json!({"system": "http://snomed.info/sct", "code": "449868002", "display": "Smokes tobacco daily"})
        );
        assert_eq!(status["effectiveDateTime"], "2014-06-06T10:32:00-05:00");
        assert!(
            status["performer"][0]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
        let use_ = observation_coded(&c, "11367-0");
        assert_eq!(use_["effectivePeriod"]["start"], "1992");
        assert_eq!(
            use_["valueCodeableConcept"]["coding"][0]["code"],
            "160604004"
        );

        let c = convert_example("Social_History/Former_Smoking_Status(C-CDA2.1).xml");
        assert_eq!(
            observation_coded(&c, "11367-0")["effectivePeriod"],
            serde_json::json!({"start": "1994", "end": "2011-03"})
        );
        let c = convert_example("Social_History/Electronic_Cigarette_Status(C-CDA2.1).xml");
        let vaping = observation_coded(&c, "66547-1");
        assert_eq!(
            vaping["effectivePeriod"],
            serde_json::json!({"end": "2018-08"})
        );
        assert_eq!(
            vaping["valueCodeableConcept"]["coding"][0]["code"],
            "735240008"
        );
    }

    #[test]
    fn two_observations_sharing_an_id_stay_two() {
        let c = convert_example("Social_History/Sexual_Orientation_Gender_Identity(C-CDA2.1).xml");
        assert_eq!(observations(&c).len(), 2);
        assert_eq!(
            observation_coded(&c, "76690-7")["valueCodeableConcept"]["coding"][0]["code"],
            "42035005"
        );
        assert_eq!(
            observation_coded(&c, "76691-5")["valueCodeableConcept"]["coding"][0]["code"],
            "407377005"
        );
    }

    #[test]
    fn pregnancy_negated_or_unknown_is_never_pregnant() {
        let c = convert_example("Social_History/Not_Pregnant_(C-CDAR2.1).xml");
        let status = observation_coded(&c, "82810-3");
        assert_eq!(
            status["valueCodeableConcept"]["coding"][0]["code"],
            "60001007"
        );
        assert_eq!(status["effectiveDateTime"], "2011-04-10");
        let c = convert_example("Social_History/Unknown_if_Pregnant.xml");
        let status = observation_coded(&c, "82810-3");
        assert_eq!(
            status["valueCodeableConcept"]["coding"][0]["code"],
            "261665006"
        );
        assert_eq!(observations(&c).len(), 1);
    }

    #[test]
    fn birth_sex_is_an_observation() {
        let c = in_social_history("Social_History/Birth_Sex(C-CDA2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let sex = observation_coded(&c, "76689-9");
        assert_eq!(sex["valueCodeableConcept"]["coding"][0]["code"], "F");
        assert_eq!(
            sex["valueCodeableConcept"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender"
        );
        assert_eq!(sex["category"][0]["coding"][0]["code"], "social-history");
    }

    #[test]
    fn an_assessment_is_a_survey_with_its_items_as_members() {
        let c = convert_example("Mental_Status/Patient_Health_Questionnaire_PHQ-9(C-CDAR2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let phq9 = observation_coded(&c, "44249-1");
        assert_eq!(phq9["valueInteger"], 12);
        assert_eq!(phq9["category"][0]["coding"][0]["code"], "survey");
        assert_eq!(phq9["category"][1]["coding"][0]["code"], "cognitive-status");
        assert_eq!(phq9["interpretation"][0]["coding"][0]["code"], "H");
        assert_eq!(phq9["referenceRange"][0]["high"]["value"], 4);
        assert_eq!(phq9["hasMember"].as_array().unwrap().len(), 11);
        let item = observation_coded(&c, "44259-0");
        let answer = &item["valueCodeableConcept"]["coding"][0];
        assert_eq!(answer["code"], "LA6570-1");
        assert_eq!(answer["extension"][0]["valueDecimal"], 2);
        assert_eq!(item["effectiveDateTime"], "2015-06-22");

        let c = convert_example("Functional_Status/Glasgow_coma_scale(C-CDAR2.1).xml");
        let gcs = observation_coded(&c, "35088-4");
        assert_eq!(gcs["valueInteger"], 9);
        assert_eq!(gcs["category"][1]["coding"][0]["code"], "functional-status");
        // The three parts share one id in the example, yet stay three.
        assert_eq!(gcs["hasMember"].as_array().unwrap().len(), 4);
        assert_eq!(observations(&c).len(), 5);
        let eyes = observation_coded(&c, "9267-6");
        assert_eq!(eyes["effectiveDateTime"], "2012-02-14");

        let c = convert_example("Social_History/WE_Care_Assessment(C-CDA2.1).xml");
        let we_care = observation_coded(&c, "96447-8");
        assert!(we_care.get("dataAbsentReason").is_none());
        assert!(we_care["hasMember"].as_array().unwrap().len() > 5);
    }

    #[test]
    fn functional_and_mental_status_findings() {
        let c = convert_example(
            "Functional_Status/Functional_Impairment_Dependent_on_Walking_Stick_(C-CDAR2.1).xml",
        );
        let finding = observation_coded(&c, "54522-8");
        assert_eq!(finding["category"][0]["coding"][0]["code"], "exam");
        assert_eq!(
            finding["valueCodeableConcept"]["coding"][0]["code"],
            "105504002"
        );
        assert_eq!(
            finding["effectivePeriod"]["start"],
            "2012-08-15T17:32:15-05:00"
        );
        let c = convert_example("Mental_Status/Memory_Impairment(C-CDAR2.1).xml");
        let memory = observation_coded(&c, "373930000");
        assert_eq!(memory["code"]["coding"][1]["code"], "75275-8");
        assert_eq!(
            memory["valueCodeableConcept"]["coding"][0]["code"],
            "386807006"
        );
    }

    #[test]
    fn an_organizer_is_a_panel_of_its_members() {
        let xml = r#"<section><templateId root="2.16.840.1.113883.10.20.22.2.56"/><title>Mental Status</title><entry><organizer classCode="CLUSTER" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.22.4.75"/><id root="1.2.3.4"/><code code="d3" displayName="Communication" codeSystem="2.16.840.1.113883.6.254"/><statusCode code="completed"/><component><observation classCode="OBS" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.22.4.74"/><id root="5.6.7"/><code code="75275-8" codeSystem="2.16.840.1.113883.6.1"/><statusCode code="completed"/><effectiveTime value="20130731"/><value xsi:type="CD" code="286569004" displayName="Difficulty understanding own emotions" codeSystem="2.16.840.1.113883.6.96"/></observation></component><component><observation classCode="OBS" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.22.4.74"/><id root="5.6.7"/><code code="75275-8" codeSystem="2.16.840.1.113883.6.1"/><statusCode code="completed"/><effectiveTime value="20130730"/><value xsi:type="CD" code="288760009" displayName="Difficulty communicating thoughts" codeSystem="2.16.840.1.113883.6.96"/></observation></component></organizer></entry></section>"#;
        let c = crate::convert(wrap_example(xml).as_bytes()).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(observations(&c).len(), 3);
        let panel = observation_coded(&c, "d3");
        assert_eq!(panel["status"], "final");
        assert_eq!(panel["hasMember"].as_array().unwrap().len(), 2);
        assert_eq!(panel["effectiveDateTime"], "2013-07-30");
        assert!(panel.get("dataAbsentReason").is_none());
    }

    #[test]
    fn a_negated_finding_is_not_a_positive_record() {
        let xml = r#"<section><templateId root="2.16.840.1.113883.10.20.22.2.17"/><title>Social History</title><entry><observation classCode="OBS" moodCode="EVN" negationInd="true"><templateId root="2.16.840.1.113883.10.20.22.4.38"/><id root="9.9.9"/><code code="229819007" codeSystem="2.16.840.1.113883.6.96" displayName="Tobacco use and exposure"/><statusCode code="completed"/><value xsi:type="CD" code="77176002" codeSystem="2.16.840.1.113883.6.96" displayName="Smoker"/></observation></entry></section>"#;
        let c = crate::convert(wrap_example(xml).as_bytes()).unwrap();
        let observation = observation_coded(&c, "229819007");
        assert_eq!(
            observation["valueCodeableConcept"],
            serde_json::json!({"text": "Not Smoker"})
        );
    }
}
