//! Medications as MedicationStatement or MedicationRequest, each with its Medication (C-CDA on
//! FHIR "Medications" mapping).
//!
//! A Medication Activity in mood EVN says the patient takes or took the medication: a
//! MedicationStatement. In another mood (INT, RQO…) it is an intention or an order: a
//! MedicationRequest. The drug (`consumable/manufacturedProduct/manufacturedMaterial`) becomes a
//! Medication, identified by its code, so the same drug named twice is one Medication.
//!
//! The dosage keeps the dose (or dose range), the route, the period (`effectiveTime` low/high),
//! the frequency (`PIVL_TS` → repeat frequency/period; `EIVL_TS` → repeat.when, "at bedtime"),
//! "as needed" (`precondition`), the free-text sig and the patient instructions.
//!
//! Negation is kept: a negated statement ("Medication Refused") is a MedicationStatement with
//! status not-taken and its reason, or a MedicationRequest with doNotPerform. "No medications"
//! (negated, with no drug named) is a MedicationStatement coded with the IPS "no known
//! medications" concept, never a drug.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::{
    Mapped, concept_or_text, entity_concept, first_author, negated, only_types, put_identifiers,
    related,
};
use crate::Ctx;
use crate::datatypes::{When, concept, decimal, fhir_concept, put, put_list, quantity, range};
use crate::xml::{El, path};

const ABSENT_UNKNOWN: &str = "http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips";
/// The Free Text Sig (4.147) and its code.
const FREE_TEXT_SIG: &[&str] = &["2.16.840.1.113883.10.20.22.4.147"];
const SIG_CODE: &str = "76662-6";
const INSTRUCTION: &[&str] = &["2.16.840.1.113883.10.20.22.4.20"];
const COMMENT_CODE: &str = "48767-8";
/// SNOMED CT "Drug or medicament": the drug of "no medications".
const ANY_DRUG: &str = "410942007";

/// The Comment Activities (`act` coded 48767-8) of a statement as FHIR notes.
pub(super) fn comment_notes(ctx: &Ctx, statement: Node) -> Vec<Value> {
    related(statement, None)
        .into_iter()
        .filter(|s| {
            s.tag_name().name() == "act"
                && s.child("code").and_then(|c| c.attr("code")) == Some(COMMENT_CODE)
        })
        .filter_map(|s| s.child("text").and_then(|t| ctx.narrative.text_of(t)))
        .map(|text| json!({ "text": text }))
        .collect()
}

/// A Medication Activity (or a discharge medication act, or an organizer of them) as a
/// MedicationStatement or MedicationRequest with its Medication.
pub(crate) fn convert(ctx: &mut Ctx, statement: Node) -> Mapped {
    if statement.tag_name().name() == "substanceAdministration" {
        return medication_activity(ctx, statement);
    }
    // A Discharge Medication act or a medication organizer: each activity it holds.
    let inner: Vec<Node> = related(statement, None)
        .into_iter()
        .chain(
            statement
                .children_named("component")
                .into_iter()
                .filter_map(super::statement_of),
        )
        .filter(|s| matches!(s.tag_name().name(), "substanceAdministration" | "act"))
        .collect();
    if inner.is_empty() {
        return Err(format!(
            "a <{}> that holds no medication activity",
            statement.tag_name().name()
        ));
    }
    let mut reasons = Vec::new();
    let mut added = 0;
    for activity in inner {
        match convert(ctx, activity) {
            Ok(()) => added += 1,
            Err(reason) => reasons.push(reason),
        }
    }
    if added == 0 {
        return Err(reasons.join("; "));
    }
    Ok(())
}

fn material<'a, 'i>(statement: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    path(
        statement,
        &["consumable", "manufacturedProduct", "manufacturedMaterial"],
    )
}

/// True when the drug is not named: the "no medications" statement names "Drug or medicament"
/// or nothing at all.
fn names_no_drug(material: Option<Node>) -> bool {
    let Some(code) = material.and_then(|m| m.child("code")) else {
        return true;
    };
    let generic = |c: Node| c.attr("code") == Some(ANY_DRUG);
    if generic(code) {
        return true;
    }
    code.is_null()
        && code.child("originalText").is_none()
        && code.children_named("translation").into_iter().all(generic)
}

fn medication_activity(ctx: &mut Ctx, statement: Node) -> Mapped {
    let material = material(statement);
    if names_no_drug(material)
        && (negated(statement) || statement.is_null())
        && material.and_then(|m| m.child("name")).is_none()
    {
        return no_medications(ctx, statement);
    }
    if statement.is_null() {
        return Err(
            "the document says there is no information about this medication (nullFlavor)".into(),
        );
    }
    let medication =
        medication(ctx, statement, material).ok_or("it names no drug: no code, name or text")?;
    let statement_like = matches!(statement.attr("moodCode"), Some("EVN") | None);
    let mut resource = Map::new();
    let resource_type = if statement_like {
        "MedicationStatement"
    } else {
        "MedicationRequest"
    };
    resource.insert("resourceType".into(), resource_type.into());
    resource.insert("id".into(), ctx.id_for(resource_type, statement).into());
    put_identifiers(&mut resource, statement);
    let status = statement
        .child("statusCode")
        .and_then(|s| s.attr("code"))
        .unwrap_or("");
    let negation = negated(statement);
    let reasons: Vec<Value> = related(statement, Some("RSON"))
        .into_iter()
        .chain(related(statement, None).into_iter().filter(|s| {
            s.child("code").and_then(|c| c.attr("code")) == Some("77301-0")
                && s.parent().and_then(|p| p.attr("typeCode")) != Some("RSON")
        }))
        .filter(|s| s.tag_name().name() == "observation")
        .filter_map(|s| {
            let value = s.child("value").filter(|v| !v.is_null());
            concept_or_text(ctx, value, s)
        })
        .collect();
    if statement_like {
        let status = if negation {
            "not-taken"
        } else {
            match status {
                "active" => "active",
                "completed" => "completed",
                "aborted" | "cancelled" => "stopped",
                "suspended" | "held" => "on-hold",
                "nullified" => "entered-in-error",
                "new" => "intended",
                _ => "unknown",
            }
        };
        resource.insert("status".into(), status.into());
        if negation {
            put_list(&mut resource, "statusReason", reasons);
        } else {
            put_list(&mut resource, "reasonCode", reasons);
        }
    } else {
        let status = match status {
            "active" => "active",
            "completed" => "completed",
            "aborted" => "stopped",
            "cancelled" => "cancelled",
            "suspended" | "held" => "on-hold",
            "nullified" => "entered-in-error",
            "new" => "draft",
            _ => "unknown",
        };
        resource.insert("status".into(), status.into());
        let intent = match statement.attr("moodCode") {
            Some("RQO") => "order",
            Some("PRP" | "PRMS") => "proposal",
            _ => "plan",
        };
        resource.insert("intent".into(), intent.into());
        if negation {
            resource.insert("doNotPerform".into(), true.into());
        }
        put_list(&mut resource, "reasonCode", reasons);
    }
    resource.insert(
        "medicationReference".into(),
        json!({ "reference": medication }),
    );
    resource.insert("subject".into(), ctx.subject());

    let period = effective_period(statement);
    let (author, time) = first_author(ctx, statement);
    if statement_like {
        period.set_choice(&mut resource, "effective");
        put(&mut resource, "dateAsserted", time.map(Value::from));
        put(
            &mut resource,
            "informationSource",
            only_types(
                author,
                &["Practitioner", "PractitionerRole", "Organization"],
            ),
        );
    } else {
        put(&mut resource, "authoredOn", time.map(Value::from));
        put(&mut resource, "requester", author);
        put(
            &mut resource,
            "dispenseRequest",
            dispense_request(statement),
        );
    }
    put_list(&mut resource, "note", comment_notes(ctx, statement));
    let dosage = dosage(ctx, statement, &period);
    if !dosage.is_empty() {
        let key = if statement_like {
            "dosage"
        } else {
            "dosageInstruction"
        };
        resource.insert(key.into(), json!([Value::Object(dosage)]));
    }
    ctx.add(Value::Object(resource));
    Ok(())
}

/// "No medications" (or no information about them) as a MedicationStatement coded with the IPS
/// absent/unknown concepts.
fn no_medications(ctx: &mut Ctx, statement: Node) -> Mapped {
    let known_none = negated(statement) && !statement.is_null();
    let (code, display, status) = if known_none {
        ("no-known-medications", "No known medications", "active")
    } else {
        (
            "no-medication-info",
            "No information about medications",
            "unknown",
        )
    };
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "MedicationStatement".into());
    resource.insert(
        "id".into(),
        ctx.id_for("MedicationStatement", statement).into(),
    );
    put_identifiers(&mut resource, statement);
    resource.insert("status".into(), status.into());
    resource.insert(
        "medicationCodeableConcept".into(),
        fhir_concept(ABSENT_UNKNOWN, code, display),
    );
    resource.insert("subject".into(), ctx.subject());
    let (author, time) = first_author(ctx, statement);
    put(&mut resource, "dateAsserted", time.map(Value::from));
    put(
        &mut resource,
        "informationSource",
        only_types(
            author,
            &["Practitioner", "PractitionerRole", "Organization"],
        ),
    );
    ctx.add(Value::Object(resource));
    Ok(())
}

/// The Medication for the drug, added once per drug. Returns its reference; None when the drug
/// has no code, name or text.
fn medication(ctx: &mut Ctx, statement: Node, material: Option<Node>) -> Option<String> {
    let code_node = material.and_then(|m| m.child("code"));
    let name = material
        .and_then(|m| m.child("name"))
        .map(|n| n.text_content())
        .filter(|n| !n.is_empty());
    let mut code = code_node
        .and_then(|c| concept(c, &ctx.narrative))
        .or_else(|| name.clone().map(crate::datatypes::text_concept))
        .or_else(|| concept_or_text(ctx, None, statement))?;
    if code.get("text").is_none()
        && let Some(name) = &name
    {
        code["text"] = name.clone().into();
    }
    let product = path(statement, &["consumable", "manufacturedProduct"]);
    let lot = material
        .and_then(|m| m.child("lotNumberText"))
        .map(|l| l.text_content())
        .filter(|l| !l.is_empty());
    let manufacturer_node = product.and_then(|p| p.child("manufacturerOrganization"));
    let manufacturer_name = manufacturer_node
        .and_then(|o| o.child("name"))
        .map(|n| n.text_content())
        .unwrap_or_default();

    // Identity: the coded drug (with its maker and lot, which make it another product), else
    // its words.
    let key = match code_node.filter(|c| c.attr("code").is_some()) {
        Some(c) => format!(
            "code:{}|{}|{}|{}",
            c.attr("codeSystem").unwrap_or(""),
            c.attr("code").unwrap_or(""),
            manufacturer_name,
            lot.as_deref().unwrap_or("")
        ),
        None => format!(
            "content:{}|{}|{}",
            code,
            manufacturer_name,
            lot.as_deref().unwrap_or("")
        ),
    };
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Medication".into());
    resource.insert("id".into(), crate::stable_id("Medication", &key).into());
    resource.insert("code".into(), code);
    put(
        &mut resource,
        "form",
        statement
            .child("administrationUnitCode")
            .or_else(|| material.and_then(|m| m.child("formCode")))
            .and_then(|f| concept(f, &ctx.narrative)),
    );
    put(
        &mut resource,
        "manufacturer",
        manufacturer_node
            .and_then(|o| crate::header::organization(ctx, o))
            .map(|r| json!({ "reference": r })),
    );
    put(
        &mut resource,
        "batch",
        lot.map(|l| json!({ "lotNumber": l })),
    );
    put_list(
        &mut resource,
        "ingredient",
        ingredients(ctx, statement, material),
    );
    Some(ctx.add(Value::Object(resource)))
}

/// The ingredients of a drug mixture (`pharm:ingredient`) and the drug vehicle
/// (`participant` coded 412307009), which is not active.
fn ingredients(ctx: &Ctx, statement: Node, material: Option<Node>) -> Vec<Value> {
    let mut found = Vec::new();
    for ingredient in material
        .map(|m| m.children_named("ingredient"))
        .unwrap_or_default()
    {
        let Some(item) = ingredient
            .child("ingredientSubstance")
            .and_then(|s| entity_concept(ctx, s))
        else {
            continue;
        };
        let mut entry = Map::new();
        entry.insert("itemCodeableConcept".into(), item);
        entry.insert(
            "isActive".into(),
            (ingredient.attr("classCode") != Some("BASE")).into(),
        );
        if let Some(q) = ingredient.child("quantity").filter(|q| !q.is_null()) {
            let numerator = q.child("numerator").and_then(quantity);
            let denominator = q.child("denominator").and_then(quantity);
            if let (Some(n), Some(d)) = (numerator, denominator) {
                entry.insert(
                    "strength".into(),
                    json!({ "numerator": n, "denominator": d }),
                );
            }
        }
        found.push(Value::Object(entry));
    }
    for participant in statement.children_named("participant") {
        let Some(role) = participant.child("participantRole") else {
            continue;
        };
        let vehicle = role.child("code").and_then(|c| c.attr("code")) == Some("412307009")
            || role.has_template(&["2.16.840.1.113883.10.20.22.4.24"]);
        if !vehicle {
            continue;
        }
        let Some(item) = role
            .child("playingEntity")
            .and_then(|e| entity_concept(ctx, e))
        else {
            continue;
        };
        found.push(json!({ "itemCodeableConcept": item, "isActive": false }));
    }
    found
}

/// The first `effectiveTime` that is a time or an interval (not a frequency).
fn effective_period(statement: Node) -> When {
    let node = statement
        .children_named("effectiveTime")
        .into_iter()
        .find(|e| matches!(e.xsi_type(), None | Some("IVL_TS" | "TS")));
    When::of(node)
}

/// The dosage: text (free-text sig), patient instructions, timing, as-needed, route, site and
/// dose. Empty when the document says none of them.
fn dosage(ctx: &mut Ctx, statement: Node, period: &When) -> Map<String, Value> {
    let mut dosage = Map::new();
    let sig = related(statement, None).into_iter().find(|s| {
        s.tag_name().name() == "substanceAdministration"
            && (s.has_template(FREE_TEXT_SIG)
                || s.child("code").and_then(|c| c.attr("code")) == Some(SIG_CODE))
    });
    put(
        &mut dosage,
        "text",
        sig.and_then(|s| s.child("text"))
            .and_then(|t| ctx.narrative.text_of(t))
            .map(Value::from),
    );
    let instructions: Vec<String> = related(statement, None)
        .into_iter()
        .filter(|s| {
            s.tag_name().name() == "act"
                && (s.has_template(INSTRUCTION)
                    || (s.attr("moodCode") == Some("INT")
                        && s.parent().and_then(|p| p.attr("typeCode")) == Some("SUBJ")))
        })
        .filter_map(|s| {
            s.child("text")
                .and_then(|t| ctx.narrative.text_of(t))
                .or_else(|| {
                    s.child("code")
                        .and_then(|c| c.child("originalText"))
                        .and_then(|t| ctx.narrative.text_of(t))
                })
        })
        .collect();
    if !instructions.is_empty() {
        dosage.insert("patientInstruction".into(), instructions.join("\n").into());
    }
    if let Some(timing) = timing(ctx, statement, period) {
        dosage.insert("timing".into(), timing);
    }
    if let Some(precondition) = statement.child("precondition") {
        let criterion = precondition.child("criterion");
        match criterion
            .and_then(|c| c.child("value"))
            .filter(|v| !v.is_null() || v.child("originalText").is_some())
            .and_then(|v| concept(v, &ctx.narrative))
            .or_else(|| {
                criterion
                    .and_then(|c| c.child("text"))
                    .and_then(|t| ctx.narrative.text_of(t))
                    .map(crate::datatypes::text_concept)
            }) {
            Some(reason) => dosage.insert("asNeededCodeableConcept".into(), reason),
            None => dosage.insert("asNeededBoolean".into(), true.into()),
        };
    }
    put(
        &mut dosage,
        "site",
        statement
            .child("approachSiteCode")
            .and_then(|s| concept(s, &ctx.narrative)),
    );
    put(
        &mut dosage,
        "route",
        statement
            .child("routeCode")
            .and_then(|r| concept(r, &ctx.narrative)),
    );
    let mut dose_and_rate = Map::new();
    if let Some(dose) = statement.child("doseQuantity") {
        if dose.child("low").is_some() || dose.child("high").is_some() {
            put(&mut dose_and_rate, "doseRange", range(dose));
        } else {
            put(&mut dose_and_rate, "doseQuantity", quantity(dose));
        }
    }
    if let Some(rate) = statement.child("rateQuantity") {
        if rate.child("low").is_some() || rate.child("high").is_some() {
            put(&mut dose_and_rate, "rateRange", range(rate));
        } else {
            put(&mut dose_and_rate, "rateQuantity", quantity(rate));
        }
    }
    if !dose_and_rate.is_empty() {
        dosage.insert("doseAndRate".into(), json!([Value::Object(dose_and_rate)]));
    }
    if let Some(max) = statement.child("maxDoseQuantity") {
        let numerator = max.child("numerator").and_then(quantity);
        let denominator = max.child("denominator").and_then(quantity);
        if let (Some(n), Some(d)) = (numerator, denominator) {
            dosage.insert(
                "maxDosePerPeriod".into(),
                json!({ "numerator": n, "denominator": d }),
            );
        }
    }
    dosage
}

/// UCUM time units FHIR's Timing accepts.
fn time_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "s",
        "min" => "min",
        "h" => "h",
        "d" => "d",
        "wk" => "wk",
        "mo" => "mo",
        "a" => "a",
        _ => return None,
    })
}

/// A decimal written as HL7 allows (".5").
fn number(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('.') {
        return decimal(&format!("0.{rest}"));
    }
    decimal(text)
}

/// The effectiveTime's period as a Timing: bounds from the first effectiveTime (or one event),
/// frequency from a PIVL_TS, an event ("at bedtime") from an EIVL_TS.
fn timing(ctx: &mut Ctx, statement: Node, period: &When) -> Option<Value> {
    let mut timing = Map::new();
    let mut repeat = Map::new();
    if let Some(at) = &period.at {
        timing.insert("event".into(), json!([at]));
    } else if let Some(bounds) = period.period() {
        repeat.insert("boundsPeriod".into(), bounds);
    }
    for frequency in statement.children_named("effectiveTime") {
        match frequency.xsi_type() {
            // `periodic` fills `repeat` when it can.
            Some("PIVL_TS") if !periodic(frequency, &mut repeat) => {
                ctx.warn("a medication's frequency was left out: its period has no value or no time unit FHIR knows");
            }
            Some("EIVL_TS") => {
                let event = frequency.child("event").and_then(|e| e.attr("code"));
                match event.filter(|e| EVENT_TIMING.contains(e)) {
                    Some(event) => {
                        repeat.insert("when".into(), json!([event]));
                        if !matches!(event, "C" | "CM" | "CD" | "CV")
                            && let Some(minutes) = frequency
                                .child("offset")
                                .and_then(|o| o.child("low").or(Some(o)))
                                .and_then(offset_minutes)
                        {
                            repeat.insert("offset".into(), minutes.into());
                        }
                    }
                    None => ctx.warn(format!(
                        "a medication's timing event {:?} was left out: FHIR has no such event",
                        event.unwrap_or("")
                    )),
                }
            }
            _ => {}
        }
    }
    if !repeat.is_empty() {
        timing.insert("repeat".into(), Value::Object(repeat));
    }
    (!timing.is_empty()).then_some(Value::Object(timing))
}

/// HL7 TimingEvent codes that FHIR's `Timing.repeat.when` accepts.
const EVENT_TIMING: &[&str] = &[
    "HS", "WAKE", "C", "CM", "CD", "CV", "AC", "ACM", "ACD", "ACV", "PC", "PCM", "PCD", "PCV",
];

/// A PQ offset as whole minutes.
fn offset_minutes(node: Node) -> Option<u64> {
    let value: f64 = node.attr("value")?.parse().ok()?;
    let factor = match node.attr("unit")? {
        "min" => 1.0,
        "h" => 60.0,
        "d" => 1440.0,
        "s" => 1.0 / 60.0,
        _ => return None,
    };
    let minutes = value * factor;
    (minutes >= 0.0 && minutes.fract() == 0.0).then_some(minutes as u64)
}

/// A PIVL_TS into `repeat`: "every 6 h" is frequency 1 per 6 h; with
/// `institutionSpecified="true"` it means "4 times a day" (frequency 4 per 1 d); a range
/// ("every 4 to 6 h") sets periodMax. False when the period says nothing usable.
fn periodic(pivl: Node, repeat: &mut Map<String, Value>) -> bool {
    let Some(period) = pivl.child("period") else {
        return false;
    };
    let (low, high) = if period.child("low").is_some() || period.child("high").is_some() {
        (period.child("low"), period.child("high"))
    } else {
        (Some(period), None)
    };
    let Some(low) = low else {
        return false;
    };
    let Some(unit) = low.attr("unit").and_then(time_unit) else {
        return false;
    };
    let Some(value) = low.attr("value").and_then(number) else {
        return false;
    };
    let institution = pivl.attr("institutionSpecified") == Some("true");
    let as_number = value.as_f64().unwrap_or(0.0);
    if as_number <= 0.0 {
        return false;
    }
    // "Times a day": 24 / hours, or 1 / days when that is a whole number.
    let per_day = match unit {
        "h" => 24.0 / as_number,
        "d" => 1.0 / as_number,
        _ => 0.0,
    };
    if institution && high.is_none() && per_day >= 1.0 && per_day.fract() == 0.0 {
        repeat.insert("frequency".into(), (per_day as u64).into());
        repeat.insert("period".into(), 1.into());
        repeat.insert("periodUnit".into(), "d".into());
        return true;
    }
    repeat.insert("frequency".into(), 1.into());
    repeat.insert("period".into(), value);
    repeat.insert("periodUnit".into(), unit.into());
    if let Some(max) = high
        .filter(|h| h.attr("unit").and_then(time_unit) == Some(unit))
        .and_then(|h| h.attr("value"))
        .and_then(number)
    {
        repeat.insert("periodMax".into(), max);
    }
    true
}

/// The Medication Supply Order (`supply` in mood INT) as the request's dispense details.
fn dispense_request(statement: Node) -> Option<Value> {
    let supply = related(statement, Some("REFR"))
        .into_iter()
        .find(|s| s.tag_name().name() == "supply" && s.attr("moodCode") == Some("INT"))?;
    let mut dispense = Map::new();
    if let Some(repeats) = supply
        .child("repeatNumber")
        .and_then(|r| r.attr("value"))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|r| *r >= 1)
    {
        // C-CDA counts every dispense; FHIR counts the repeats after the first.
        dispense.insert("numberOfRepeatsAllowed".into(), (repeats - 1).into());
    }
    put(
        &mut dispense,
        "quantity",
        supply.child("quantity").and_then(quantity),
    );
    put(
        &mut dispense,
        "validityPeriod",
        When::of(supply.child("effectiveTime")).period(),
    );
    (!dispense.is_empty()).then_some(Value::Object(dispense))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::tests::{convert_example, section_examples};

    struct Converted {
        resources: Vec<Value>,
        warnings: Vec<String>,
    }

    impl Converted {
        fn of(&self, resource_type: &str) -> Vec<&Value> {
            self.resources
                .iter()
                .filter(|r| r["resourceType"] == resource_type)
                .collect()
        }

        /// The Medication a statement or request refers to.
        fn medication_of(&self, resource: &Value) -> &Value {
            let reference = resource["medicationReference"]["reference"]
                .as_str()
                .unwrap();
            self.resources
                .iter()
                .find(|r| format!("Medication/{}", r["id"].as_str().unwrap()) == reference)
                .unwrap()
        }
    }

    fn example(name: &str) -> Converted {
        let conversion = convert_example(&format!("Medications/{name}"));
        Converted {
            resources: conversion.resources,
            warnings: conversion.warnings,
        }
    }

    #[test]
    fn a_taken_medication_at_one_time_is_a_statement() {
        let c =
            example("Single_administration_of_medication_at_single_point_in_time(C-CDA2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let s = c.of("MedicationStatement")[0];
        assert_eq!(s["status"], "completed");
        assert_eq!(s["effectiveDateTime"], "2013-09-11T16:03:00-07:00");
        assert_eq!(s["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"], 2);
        assert_eq!(s["dosage"][0]["route"]["coding"][0]["code"], "C38288");
        let m = c.medication_of(s);
        assert_eq!(
            m["code"]["coding"][0]["system"],
            "http://www.nlm.nih.gov/research/umls/rxnorm"
        );
        assert_eq!(m["code"]["coding"][0]["code"], "243670");
        assert!(
            s["subject"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    }

    #[test]
    fn an_intended_medication_is_a_plan_with_frequency_and_prn_reason() {
        let c = example("Med_oral_liquid_PRN(C-CDA2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let r = c.of("MedicationRequest")[0];
        assert_eq!(r["intent"], "plan");
        assert_eq!(r["status"], "active");
        let dosage = &r["dosageInstruction"][0];
        let repeat = &dosage["timing"]["repeat"];
        assert_eq!(repeat["boundsPeriod"]["start"], "2017-12-21");
        assert_eq!(repeat["boundsPeriod"]["end"], "2017-12-31");
        assert_eq!(repeat["period"], 4);
        assert_eq!(repeat["periodMax"], 6);
        assert_eq!(repeat["periodUnit"], "h");
        assert_eq!(
            dosage["asNeededCodeableConcept"]["coding"][0]["code"],
            "49727002"
        );
        assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["unit"], "mL");
    }

    #[test]
    fn qid_as_needed_with_ndc_translation() {
        let c = example("Med_oral_QID_with_PRN(C-CDA2.1).xml");
        let r = c.of("MedicationRequest")[0];
        let dosage = &r["dosageInstruction"][0];
        // institutionSpecified every 6 h is four times a day.
        assert_eq!(dosage["timing"]["repeat"]["frequency"], 4);
        assert_eq!(dosage["timing"]["repeat"]["period"], 1);
        assert_eq!(dosage["timing"]["repeat"]["periodUnit"], "d");
        // The precondition names no reason: as needed, yes.
        assert_eq!(dosage["asNeededBoolean"], true);
        let m = c.medication_of(r);
        let systems: Vec<&str> = m["code"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["system"].as_str().unwrap())
            .collect();
        assert_eq!(
            systems,
            [
                "http://www.nlm.nih.gov/research/umls/rxnorm",
                "http://hl7.org/fhir/sid/ndc"
            ]
        );
    }

    #[test]
    fn at_bedtime_is_a_timing_event() {
        let c = example("Med_at_bedtime(C-CDAR2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let s = c.of("MedicationStatement")[0];
        assert_eq!(s["status"], "active");
        assert_eq!(s["effectivePeriod"]["start"], "2009-01-09");
        let dosage = &s["dosage"][0];
        assert_eq!(dosage["timing"]["repeat"]["when"][0], "HS");
        assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["value"], 40);
        assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["code"], "[IU]");
        assert!(dosage["text"].as_str().is_some(), "{dosage}");
        let m = c.medication_of(s);
        assert!(
            m["manufacturer"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Organization/")
        );
    }

    #[test]
    fn indications_instructions_and_sig() {
        let c = example("Med_oral_with_indications_and_instructions(C-CDA2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let statements = c.of("MedicationStatement");
        assert_eq!(statements.len(), 3);
        // One drug, one Medication.
        assert_eq!(c.of("Medication").len(), 1);
        assert_eq!(
            statements[0]["dosage"][0]["asNeededCodeableConcept"]["coding"][0]["code"],
            "57676002"
        );
        assert!(
            statements[1]["dosage"][0]["patientInstruction"]
                .as_str()
                .is_some()
        );
        assert_eq!(
            statements[2]["reasonCode"][0]["coding"][0]["code"],
            "57676002"
        );
        for s in statements {
            assert!(s["dosage"][0]["text"].as_str().is_some(), "{s}");
        }
    }

    #[test]
    fn free_text_sig_with_an_unnamed_drug_keeps_the_narrative() {
        let c = example("Free_Text_Medication_SIG_(C-CDAR2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let s = c.of("MedicationStatement")[0];
        let m = c.medication_of(s);
        assert!(m["code"]["text"].as_str().is_some(), "{m}");
        assert!(s["dosage"][0]["text"].as_str().is_some());
        // The unknown dose is left out rather than invented.
        assert!(s["dosage"][0].get("doseAndRate").is_none());
    }

    #[test]
    fn a_refused_medication_is_not_taken_with_its_reason() {
        let c = example("Medication_Refused(C-CDAR2.1).xml");
        let s = c.of("MedicationStatement")[0];
        assert_eq!(s["status"], "not-taken");
        assert_eq!(s["statusReason"][0]["coding"][0]["code"], "105480006");
        assert!(s["note"][0]["text"].as_str().is_some());
        assert_eq!(c.medication_of(s)["code"]["coding"][0]["code"], "314076");
    }

    #[test]
    fn no_medications_is_not_a_drug() {
        let c = example("No_Medications(C-CDA2.1).xml");
        assert!(c.of("Medication").is_empty());
        let s = c.of("MedicationStatement")[0];
        assert_eq!(
            s["medicationCodeableConcept"]["coding"][0]["code"],
            "no-known-medications"
        );
        assert_eq!(s["status"], "active");
    }

    #[test]
    fn a_mixture_keeps_every_ingredient_and_its_frequency() {
        let c = example("Drug_Mixture_(C-CDAR2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let r = c.of("MedicationRequest")[0];
        let m = c.medication_of(r);
        let ingredients = m["ingredient"].as_array().unwrap();
        assert_eq!(ingredients.len(), 3);
        assert_eq!(
            ingredients[1]["strength"]["numerator"]["value"].to_string(),
            "0.2"
        );
        assert_eq!(ingredients[2]["isActive"], false);
        assert!(m["code"]["text"].as_str().unwrap().contains("lidocaine"));
        let repeat = &r["dosageInstruction"][0]["timing"]["repeat"];
        assert_eq!(repeat["frequency"], 2);
        assert_eq!(repeat["periodUnit"], "d");
    }

    #[test]
    fn a_drug_vehicle_is_an_inactive_ingredient_and_the_dose_is_relative() {
        let c = example("Med_Relative_Dose_IV_Drug(C-CDA2.1).xml");
        let r = c.of("MedicationRequest")[0];
        let dosage = &r["dosageInstruction"][0];
        assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["unit"], "mg/kg");
        assert_eq!(dosage["timing"]["event"][0], "2018-02-15");
        assert_eq!(r["reasonCode"][0]["coding"][0]["code"], "363406005");
        let m = c.medication_of(r);
        assert_eq!(
            m["ingredient"][0]["itemCodeableConcept"]["coding"][0]["code"],
            "1807639"
        );
        assert_eq!(m["ingredient"][0]["isActive"], false);
    }

    #[test]
    fn an_organizer_of_varied_doses_is_each_dose() {
        let c = example("Withdrawn_Antibiotics_with_varied_dosing(C-CDA2.1).xml");
        let requests = c.of("MedicationRequest");
        assert_eq!(requests.len(), 2);
        assert_eq!(c.of("Medication").len(), 1);
        let doses: Vec<&Value> = requests
            .iter()
            .map(|r| &r["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"])
            .collect();
        assert_eq!(doses, [&Value::from(2), &Value::from(1)]);
    }

    #[test]
    fn every_medication_example_converts_without_warnings() {
        for (name, text) in section_examples() {
            if !name.starts_with("Medications/") {
                continue;
            }
            let conversion = crate::convert(text.as_bytes()).unwrap();
            assert!(
                conversion.warnings.is_empty(),
                "{name}: {:?}",
                conversion.warnings
            );
        }
    }
}
