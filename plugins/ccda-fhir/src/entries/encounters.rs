//! Encounters (C-CDA on FHIR "Encounters" mapping).
//!
//! An Encounter Activity is an Encounter: its kind (`class` from an ActCode code or
//! translation, else from the CPT evaluation and management code, else ambulatory), every code
//! it gives as `type` (several CPT codes for one visit are all kept), when, who saw the patient,
//! where (a Location), why (Indications), the discharge disposition, and its diagnoses: each
//! Encounter Diagnosis (or hospital admission/discharge diagnosis) becomes a Condition of
//! category `encounter-diagnosis` made by the problems mapping, so a Problem Observation also
//! listed in the Problems section is one Condition.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::plans::reasons;
use super::problems::{self, Category};
use super::{Mapped, negated, performers, put_identifiers, related};
use crate::Ctx;
use crate::datatypes::{When, address, concept, put, put_list, put_telecoms};
use crate::xml::El;

const ENCOUNTER_DIAGNOSIS: &str = "2.16.840.1.113883.10.20.22.4.80";
const DISCHARGE_DIAGNOSIS: &str = "2.16.840.1.113883.10.20.22.4.33";
const ADMISSION_DIAGNOSIS: &str = "2.16.840.1.113883.10.20.22.4.34";
const PROBLEM_OBSERVATION: &str = "2.16.840.1.113883.10.20.22.4.4";
/// The QRDA rank of a diagnosis (1 = principal).
const RANK: &str = "2.16.840.1.113883.10.20.24.3.166";
const ACT_CODE_OID: &str = "2.16.840.1.113883.5.4";
/// The HL7 ActEncounterCode value set, which some documents give as the code system.
const ACT_ENCOUNTER_CODE_VS: &str = "2.16.840.1.113883.1.11.13955";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const CPT_OID: &str = "2.16.840.1.113883.6.12";

/// An Encounter Activity (or, in a planned mood, a Planned Encounter) from the Encounters
/// section.
pub(crate) fn convert(ctx: &mut Ctx, statement: Node) -> Mapped {
    if super::procedures::is_planned(statement) {
        return super::plans::convert_planned(ctx, statement);
    }
    if statement.tag_name().name() != "encounter" {
        return Err(format!(
            "a <{}> is not an encounter",
            statement.tag_name().name()
        ));
    }
    let id = ctx.id_for("Encounter", statement);
    let reference = format!("Encounter/{id}");
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Encounter".into());
    resource.insert("id".into(), id.into());
    put_identifiers(&mut resource, statement);

    let when = When::of(statement.child("effectiveTime"));
    let status = if negated(statement) {
        "cancelled"
    } else {
        match statement.child("statusCode").and_then(|s| s.attr("code")) {
            Some("completed") => "finished",
            Some("active") => "in-progress",
            Some("cancelled" | "aborted") => "cancelled",
            Some("new") => "planned",
            Some("nullified") => "entered-in-error",
            // A visit with an end (or a single time) is over; one with only a start goes on.
            _ if when.end.is_some() || when.at.is_some() => "finished",
            _ if when.start.is_some() => "in-progress",
            _ => "unknown",
        }
    };
    resource.insert("status".into(), status.into());
    let code = statement.child("code");
    resource.insert("class".into(), class_of(code));

    // Every code the visit gives: its own, and the CPT codes of acts it refers to (one visit
    // billed with several evaluation and management codes).
    let mut types: Vec<Value> = code
        .and_then(|c| concept(c, &ctx.narrative))
        .into_iter()
        .collect();
    for act in related(statement, Some("REFR"))
        .into_iter()
        .filter(|s| s.tag_name().name() == "act" && s.template_ids().is_empty())
    {
        if let Some(extra) = act
            .child("code")
            .filter(|c| c.attr("codeSystem") == Some(CPT_OID))
            .and_then(|c| concept(c, &ctx.narrative))
            && !types.contains(&extra)
        {
            types.push(extra);
        }
    }
    put_list(&mut resource, "type", types);
    resource.insert("subject".into(), ctx.subject());
    put(&mut resource, "period", when.period());
    let participants: Vec<Value> = performers(ctx, statement)
        .into_iter()
        .filter(|r| r.starts_with("Practitioner/") || r.starts_with("PractitionerRole/"))
        .map(|r| json!({ "individual": { "reference": r } }))
        .collect();
    put_list(&mut resource, "participant", participants);
    let found = reasons(ctx, statement);
    put_list(&mut resource, "reasonCode", found.codes);
    put_list(&mut resource, "reasonReference", found.references);

    // Diagnoses: the problems mapping makes the Conditions, with this encounter as theirs.
    let outer = ctx.encounter.replace(reference.clone());
    let mut diagnoses = Vec::new();
    for holder in related(statement, None) {
        let role = if holder.has_template(&[DISCHARGE_DIAGNOSIS]) {
            Some(("DD", "Discharge diagnosis"))
        } else if holder.has_template(&[ADMISSION_DIAGNOSIS]) {
            Some(("AD", "Admission diagnosis"))
        } else if holder.has_template(&[ENCOUNTER_DIAGNOSIS, PROBLEM_OBSERVATION]) {
            None
        } else {
            continue;
        };
        if let Err(reason) = problems::convert(ctx, holder, Category::EncounterDiagnosis) {
            ctx.warn(format!(
                "a diagnosis of an encounter was not converted: {reason}"
            ));
            continue;
        }
        for observation in problem_observations(holder) {
            let condition = format!("Condition/{}", ctx.id_for("Condition", observation));
            if !ctx.has(&condition) {
                continue;
            }
            let mut diagnosis = Map::new();
            diagnosis.insert("condition".into(), json!({ "reference": condition }));
            if let Some((code, display)) = role {
                diagnosis.insert(
                    "use".into(),
                    crate::datatypes::fhir_concept(
                        "http://terminology.hl7.org/CodeSystem/diagnosis-role",
                        code,
                        display,
                    ),
                );
            }
            put(
                &mut diagnosis,
                "rank",
                related(observation, Some("REFR"))
                    .into_iter()
                    .find(|s| s.has_template(&[RANK]))
                    .and_then(|s| s.child("value"))
                    .and_then(|v| v.attr("value"))
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|rank| *rank > 0)
                    .map(Value::from),
            );
            diagnoses.push(Value::Object(diagnosis));
        }
    }
    ctx.encounter = outer;
    put_list(&mut resource, "diagnosis", diagnoses);

    let mut hospitalization = Map::new();
    put(
        &mut hospitalization,
        "dischargeDisposition",
        statement
            .child("dischargeDispositionCode")
            .and_then(|d| concept(d, &ctx.narrative)),
    );
    let places = |kind: &str| -> Vec<Node> {
        statement
            .children_named("participant")
            .into_iter()
            .filter(|p| p.attr("typeCode") == Some(kind))
            .filter_map(|p| p.child("participantRole"))
            .collect()
    };
    put(
        &mut hospitalization,
        "destination",
        places("DST")
            .into_iter()
            .find_map(|r| location(ctx, r))
            .map(|r| json!({ "reference": r })),
    );
    if !hospitalization.is_empty() {
        resource.insert("hospitalization".into(), Value::Object(hospitalization));
    }
    put_list(
        &mut resource,
        "location",
        places("LOC")
            .into_iter()
            .filter_map(|r| location(ctx, r))
            .map(|r| json!({ "location": { "reference": r } }))
            .collect(),
    );
    ctx.add(Value::Object(resource));
    Ok(())
}

/// The Problem Observations under a diagnosis act (through nested concern acts), or the
/// observation itself.
fn problem_observations<'a, 'i>(holder: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    if holder.tag_name().name() == "observation" {
        return vec![holder];
    }
    related(holder, None)
        .into_iter()
        .flat_map(|s| match s.tag_name().name() {
            "observation" => vec![s],
            "act" => problem_observations(s),
            _ => Vec::new(),
        })
        .collect()
}

/// The encounter class: an ActCode code (or translation; some documents name the
/// ActEncounterCode value set as the system), else the kind of visit its CPT evaluation and
/// management code bills, else ambulatory.
fn class_of(code: Option<Node>) -> Value {
    const KNOWN: &[(&str, &str)] = &[
        ("AMB", "ambulatory"),
        ("EMER", "emergency"),
        ("FLD", "field"),
        ("HH", "home health"),
        ("IMP", "inpatient encounter"),
        ("ACUTE", "inpatient acute"),
        ("NONAC", "inpatient non-acute"),
        ("OBSENC", "observation encounter"),
        ("PRENC", "pre-admission"),
        ("SS", "short stay"),
        ("VR", "virtual"),
    ];
    let act_code = |c: Node| -> Option<Value> {
        let system = c.attr("codeSystem")?;
        let code = c.attr("code")?;
        if system != ACT_CODE_OID && system != ACT_ENCOUNTER_CODE_VS {
            return None;
        }
        let (code, display) = KNOWN.iter().find(|(k, _)| *k == code)?;
        Some(json!({ "system": ACT_CODE, "code": code, "display": display }))
    };
    let Some(code) = code else {
        return crate::header::encounter_class(None);
    };
    if let Some(class) = std::iter::once(code)
        .chain(code.children_named("translation"))
        .find_map(act_code)
    {
        return class;
    }
    let by_cpt = (code.attr("codeSystem") == Some(CPT_OID))
        .then(|| code.attr("code")?.parse::<u32>().ok())
        .flatten()
        .and_then(|cpt| match cpt {
            99221..=99239 => Some(("IMP", "inpatient encounter")),
            99217..=99220 => Some(("OBSENC", "observation encounter")),
            99281..=99288 => Some(("EMER", "emergency")),
            99341..=99350 => Some(("HH", "home health")),
            _ => None,
        });
    match by_cpt {
        Some((code, display)) => json!({ "system": ACT_CODE, "code": code, "display": display }),
        None => crate::header::encounter_class(Some(code)),
    }
}

/// A Service Delivery Location (`participantRole classCode="SDLOC"`) as a Location; None
/// when it has no name, address or kind.
pub(super) fn location(ctx: &mut Ctx, role: Node) -> Option<String> {
    let name = role
        .child("playingEntity")
        .and_then(|p| p.child("name"))
        .map(|n| n.text_content())
        .filter(|n| !n.is_empty());
    let kind = role.child("code").and_then(|c| concept(c, &ctx.narrative));
    let addr = role.children_named("addr").into_iter().find_map(address);
    if name.is_none() && kind.is_none() && addr.is_none() {
        return None;
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Location".into());
    resource.insert("id".into(), ctx.id_for("Location", role).into());
    put_identifiers(&mut resource, role);
    put(&mut resource, "name", name.map(Value::from));
    put(&mut resource, "type", kind.map(|k| json!([k])));
    put_telecoms(&mut resource, role);
    put(&mut resource, "address", addr);
    Some(ctx.add(Value::Object(resource)))
}

#[cfg(test)]
mod tests {
    use crate::tests::{convert_example, of_type};
    use serde_json::Value;

    fn reference(r: &Value) -> String {
        format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        )
    }

    #[test]
    fn an_encounter_with_its_diagnoses_place_and_reason() {
        let c = convert_example("Encounters/Outpatient_Encounter_with_Diagnoses(C-CDA_R2.1).xml");
        let encounters = of_type(&c, "Encounter");
        let e = encounters
            .iter()
            .find(|e| e["type"][0]["coding"][0]["code"] == "99213")
            .unwrap();
        assert_eq!(e["status"], "finished");
        assert_eq!(e["class"]["code"], "AMB");
        assert_eq!(e["type"][0]["text"], "Office outpatient visit");
        assert_eq!(e["period"]["start"], "2012-08-15T10:00:00-08:00");
        let condition = of_type(&c, "Condition")[0];
        assert_eq!(
            e["diagnosis"][0]["condition"]["reference"],
            reference(condition)
        );
        assert_eq!(
            condition["category"][0]["coding"][0]["code"],
            "encounter-diagnosis"
        );
        assert_eq!(condition["code"]["coding"][0]["code"], "64109004");
        assert_eq!(condition["encounter"]["reference"], reference(e));
        let location = of_type(&c, "Location")[0];
        assert_eq!(location["name"], "Get Well Clinic");
        assert_eq!(location["type"][0]["coding"][0]["code"], "1160-1");
        assert_eq!(location["address"]["city"], "Portland");
        assert_eq!(
            e["location"][0]["location"]["reference"],
            reference(location)
        );
        assert!(
            e["participant"][0]["individual"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_hospital_stay_with_ranked_discharge_diagnoses_and_disposition() {
        let c = convert_example(
            "Encounters/Hospital_Discharge_Encounter_with_Billable_Diagnoses(C-CDA2.1).xml",
        );
        let e = of_type(&c, "Encounter")
            .into_iter()
            .find(|e| e["type"][0]["coding"][0]["code"] == "99238")
            .unwrap();
        assert_eq!(e["class"]["code"], "IMP", "from the ActCode translation");
        assert_eq!(e["type"][0]["coding"][1]["code"], "IMP");
        assert_eq!(e["period"]["end"], "2014-10-31T15:04:00-05:00");
        assert_eq!(
            e["hospitalization"]["dischargeDisposition"]["coding"][0]["code"],
            "04"
        );
        let diagnoses = e["diagnosis"].as_array().unwrap();
        assert_eq!(diagnoses.len(), 2);
        assert_eq!(diagnoses[0]["use"]["coding"][0]["code"], "DD");
        assert_eq!(diagnoses[0]["rank"], 1);
        assert_eq!(diagnoses[1]["rank"], 2);
        // A nullFlavor diagnosis keeps its ICD-9 translation and its narrative text.
        let conditions = of_type(&c, "Condition");
        assert_eq!(conditions[0]["code"]["coding"][0]["code"], "428.0");
        assert!(conditions[0]["code"]["text"].as_str().is_some());
    }

    #[test]
    fn several_cpt_codes_and_a_value_set_class() {
        let c = convert_example("Encounters/Multiple_CPT_EM_Codes_Single_Encounter(C-CDAR2.1).xml");
        let e = of_type(&c, "Encounter")
            .into_iter()
            .find(|e| e["type"][0]["coding"][0]["code"] == "AMB")
            .unwrap();
        assert_eq!(e["class"]["code"], "AMB");
        let codes: Vec<&str> = e["type"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["AMB", "99408", "99394", "99213"]);
        assert_eq!(e["diagnosis"].as_array().unwrap().len(), 3);
        assert_eq!(e["identifier"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn discharge_to_another_place_and_an_indication() {
        let c = convert_example(
            "Encounters/Inpatient_Encounter_Discharged_to_Rehab_Location(C-CDA2.1).xml",
        );
        let e = of_type(&c, "Encounter")
            .into_iter()
            .find(|e| e["type"][0]["coding"][0]["code"] == "99221")
            .unwrap();
        assert_eq!(e["class"]["code"], "IMP");
        assert_eq!(e["reasonCode"][0]["coding"][0]["code"], "233604007");
        let destination = e["hospitalization"]["destination"]["reference"]
            .as_str()
            .unwrap();
        let rehab = of_type(&c, "Location")
            .into_iter()
            .find(|l| reference(l) == destination)
            .unwrap();
        assert_eq!(rehab["name"], "Sunnyview Rehab Hospital");
        assert_eq!(
            e["hospitalization"]["dischargeDisposition"]["coding"][1]["code"],
            "HOSSVR"
        );
    }
}
