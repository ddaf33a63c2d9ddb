//! Results and vital signs as Observations and DiagnosticReports (C-CDA on FHIR "Results" and
//! "Vital Signs" mappings), and the Observation every other observation-like entry is built on
//! (social history, functional and mental status use [`observation`] and [`add_observation`]).
//!
//! - A Result Organizer is one DiagnosticReport (category LAB, or RAD for imaging) whose
//!   `result`s are one Observation per Result Observation in it; a lone Result Observation is
//!   one Observation.
//! - A Vital Signs Organizer is one Observation per Vital Sign Observation, with the LOINC code
//!   the FHIR vital-signs profile expects added beside the document's own. A systolic and a
//!   diastolic pressure measured together become one blood pressure panel (85354-9) with two
//!   components, as Fasten's other connectors write it. The organizer itself adds no panel: its
//!   members share their time, and a valueless 85353-1 panel would only repeat them.
//!
//! Values keep their decimals as written and their UCUM units; a non-UCUM unit is kept as the
//! unit's text. An Observation with no value says why in `dataAbsentReason`.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::{Mapped, concept_or_text, negated, put_identifiers};
use crate::Ctx;
use crate::datatypes::{When, concept, fhir_concept, observation_value, put, put_list, quantity};
use crate::xml::El;

pub(super) const LOINC: &str = "http://loinc.org";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const DATA_ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const RANGE_MEANING: &str = "http://terminology.hl7.org/CodeSystem/referencerange-meaning";
const ORDINAL_VALUE: &str = "http://hl7.org/fhir/StructureDefinition/ordinalValue";
const LOINC_OID: &str = "2.16.840.1.113883.6.1";
const CPT_OID: &str = "2.16.840.1.113883.6.12";

const SYSTOLIC: &str = "8480-6";
const DIASTOLIC: &str = "8462-4";

/// LOINC codes a vital sign may carry, with the code (and its display) of the FHIR vital-signs
/// profile it belongs to.
const VITAL_CODES: &[(&str, &str, &str)] = &[
    ("8480-6", "8480-6", "Systolic blood pressure"),
    ("8459-0", "8480-6", "Systolic blood pressure"),
    ("8460-8", "8480-6", "Systolic blood pressure"),
    ("8461-6", "8480-6", "Systolic blood pressure"),
    ("8462-4", "8462-4", "Diastolic blood pressure"),
    ("8453-3", "8462-4", "Diastolic blood pressure"),
    ("8454-1", "8462-4", "Diastolic blood pressure"),
    ("8455-8", "8462-4", "Diastolic blood pressure"),
    ("8867-4", "8867-4", "Heart rate"),
    ("8889-8", "8867-4", "Heart rate"),
    ("8893-0", "8867-4", "Heart rate"),
    ("9279-1", "9279-1", "Respiratory rate"),
    ("2708-6", "2708-6", "Oxygen saturation in Arterial blood"),
    ("2710-2", "2708-6", "Oxygen saturation in Arterial blood"),
    ("59408-5", "2708-6", "Oxygen saturation in Arterial blood"),
    ("8310-5", "8310-5", "Body temperature"),
    ("8331-1", "8310-5", "Body temperature"),
    ("8328-7", "8310-5", "Body temperature"),
    ("8302-2", "8302-2", "Body height"),
    ("8306-3", "8302-2", "Body height"),
    ("8308-9", "8302-2", "Body height"),
    ("29463-7", "29463-7", "Body weight"),
    ("3141-9", "29463-7", "Body weight"),
    ("8335-2", "29463-7", "Body weight"),
    ("39156-5", "39156-5", "Body mass index (BMI) [Ratio]"),
    ("9843-4", "9843-4", "Head Occipital-frontal circumference"),
    ("8287-5", "9843-4", "Head Occipital-frontal circumference"),
];

/// A Result Organizer as a DiagnosticReport with its Observations, or a lone Result Observation
/// as an Observation.
pub(crate) fn convert_result(ctx: &mut Ctx, statement: Node) -> Mapped {
    match statement.tag_name().name() {
        "observation" => {
            let imaging = is_imaging(statement, &[]);
            let resource = observation(ctx, statement, vec![result_category(imaging)], None)?;
            add_observation(ctx, statement, resource);
            Ok(())
        }
        "organizer" => report(ctx, statement),
        other => Err(format!(
            "a <{other}> is not a result organizer or observation"
        )),
    }
}

/// A Vital Signs Organizer (or a lone vital sign) as vital-signs Observations.
pub(crate) fn convert_vitals(ctx: &mut Ctx, statement: Node) -> Mapped {
    if statement.tag_name().name() == "observation" {
        return vital_sign(ctx, statement, None).map(|_| ());
    }
    if statement.tag_name().name() != "organizer" {
        return Err(format!(
            "a <{}> is not a vital signs organizer or observation",
            statement.tag_name().name()
        ));
    }
    let members = component_observations(statement);
    if members.is_empty() {
        return Err("the vital signs organizer holds no vital sign observation".into());
    }
    let systolic = members
        .iter()
        .copied()
        .find(|m| vital_code(*m) == Some(SYSTOLIC));
    let diastolic = members
        .iter()
        .copied()
        .find(|m| vital_code(*m) == Some(DIASTOLIC));
    let mut added = 0;
    let mut reasons = Vec::new();
    let pair = match (systolic, diastolic) {
        (Some(s), Some(d)) => match blood_pressure(ctx, s, d, statement) {
            Ok(()) => {
                added += 1;
                Some((s, d))
            }
            Err(reason) => {
                reasons.push(reason);
                None
            }
        },
        _ => None,
    };
    for member in members {
        if pair.is_some_and(|(s, d)| s == member || d == member) {
            continue;
        }
        match vital_sign(ctx, member, Some(statement)) {
            Ok(_) => added += 1,
            Err(reason) => reasons.push(reason),
        }
    }
    if added == 0 {
        return Err(reasons.join("; "));
    }
    for reason in reasons {
        ctx.warn(format!("a vital sign was not converted: {reason}"));
    }
    Ok(())
}

/// The `observation`s among an organizer's components.
pub(super) fn component_observations<'a, 'i>(organizer: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    organizer
        .children_named("component")
        .into_iter()
        .filter_map(|c| c.child("observation"))
        .collect()
}

/// A Result Organizer as a DiagnosticReport whose results are its observations.
fn report(ctx: &mut Ctx, organizer: Node) -> Mapped {
    let members = component_observations(organizer);
    let imaging = is_imaging(organizer, &members);
    let code = concept_or_text(ctx, organizer.child("code"), organizer);
    if members.is_empty() && code.is_none() {
        return Err("the result organizer has no code and holds no result observation".into());
    }
    let mut results = Vec::new();
    let mut statuses = Vec::new();
    let mut conclusions = Vec::new();
    let mut earliest: Option<String> = None;
    for member in &members {
        match observation(
            ctx,
            *member,
            vec![result_category(imaging)],
            Some(organizer),
        ) {
            Ok(resource) => {
                statuses.push(resource["status"].as_str().unwrap_or_default().to_string());
                if let Some(text) = resource.get("valueString").and_then(Value::as_str)
                    && (imaging || member.child("value").and_then(|v| v.xsi_type()) == Some("ED"))
                {
                    conclusions.push(text.to_string());
                }
                let start = When::of(member.child("effectiveTime")).first();
                if let Some(start) = start
                    && earliest.as_ref().is_none_or(|e| start < *e)
                {
                    earliest = Some(start);
                }
                results.push(json!({ "reference": add_observation(ctx, *member, resource) }));
            }
            Err(reason) => ctx.warn(format!("a result was not converted: {reason}")),
        }
    }
    let skipped = organizer
        .children_named("component")
        .into_iter()
        .filter(|c| c.child("observation").is_none())
        .count();
    if skipped > 0 {
        ctx.warn(format!(
            "{skipped} part(s) of a result organizer that are not observations were not converted"
        ));
    }

    let mut resource = Map::new();
    resource.insert("resourceType".into(), "DiagnosticReport".into());
    resource.insert(
        "id".into(),
        ctx.id_for("DiagnosticReport", organizer).into(),
    );
    put_identifiers(&mut resource, organizer);
    resource.insert(
        "status".into(),
        report_status(status_code(organizer), &statuses).into(),
    );
    let category = if imaging {
        fhir_concept(V2_0074, "RAD", "Radiology")
    } else {
        fhir_concept(V2_0074, "LAB", "Laboratory")
    };
    resource.insert("category".into(), json!([category]));
    let code = code
        .or_else(|| match members.as_slice() {
            [only] => concept_or_text(ctx, only.child("code"), *only),
            _ => None,
        })
        .unwrap_or_else(|| json!({ "text": ctx.section.clone() }));
    resource.insert("code".into(), code);
    resource.insert("subject".into(), ctx.subject());
    let when = When::of(organizer.child("effectiveTime"));
    if when.is_empty() {
        put(
            &mut resource,
            "effectiveDateTime",
            earliest.map(Value::from),
        );
    } else {
        put_effective(&mut resource, &when, "effective");
    }
    let issued = organizer
        .children_named("author")
        .into_iter()
        .find_map(|a| a.child("time").and_then(crate::datatypes::time_of))
        .filter(|t| t.contains('T'));
    put(&mut resource, "issued", issued.map(Value::from));
    put_list(&mut resource, "performer", performers(ctx, organizer));
    put_list(&mut resource, "result", results);
    if !conclusions.is_empty() {
        resource.insert("conclusion".into(), conclusions.join("\n\n").into());
    }
    ctx.add(Value::Object(resource));
    Ok(())
}

/// True when an organizer (or observation) reports imaging rather than laboratory tests: a CPT
/// radiology code (70010-79999), or a LOINC name that starts with an imaging modality.
fn is_imaging(statement: Node, members: &[Node]) -> bool {
    let imaging_code = |code: Node| -> bool {
        let mut coded = vec![code];
        coded.extend(code.children_named("translation"));
        coded.iter().any(|c| {
            let cpt_radiology = c.attr("codeSystem") == Some(CPT_OID)
                && c.attr("code")
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| (70010..=79999).contains(&n));
            let name = c
                .attr("displayName")
                .unwrap_or_default()
                .to_ascii_lowercase();
            let modality = [
                "xr ", "ct ", "mr ", "us ", "nm ", "mg ", "rf ", "pt ", "dxa ",
            ]
            .iter()
            .any(|m| name.starts_with(m));
            let words = [
                "x-ray",
                "xray",
                "radiograph",
                "ultrasound",
                "mammogra",
                "mri ",
            ]
            .iter()
            .any(|w| name.contains(w));
            cpt_radiology || modality || words
        })
    };
    std::iter::once(statement)
        .chain(members.iter().copied())
        .filter_map(|s| s.child("code"))
        .any(imaging_code)
}

fn result_category(imaging: bool) -> Value {
    if imaging {
        category("imaging")
    } else {
        category("laboratory")
    }
}

/// An Observation category (observation-category code system).
pub(super) fn category(code: &str) -> Value {
    let display = match code {
        "laboratory" => "Laboratory",
        "vital-signs" => "Vital Signs",
        "social-history" => "Social History",
        "survey" => "Survey",
        "exam" => "Exam",
        "imaging" => "Imaging",
        "activity" => "Activity",
        _ => code,
    };
    fhir_concept(OBSERVATION_CATEGORY, code, display)
}

/// The statusCode of a statement.
pub(super) fn status_code<'a>(statement: Node<'a, '_>) -> Option<&'a str> {
    statement.child("statusCode").and_then(|s| s.attr("code"))
}

/// DiagnosticReport.status from the organizer's statusCode and its results' statuses.
fn report_status(code: Option<&str>, results: &[String]) -> &'static str {
    match code {
        Some("completed") => "final",
        Some("active") if results.iter().any(|s| s == "final") => "partial",
        Some("active") => "preliminary",
        Some("aborted" | "cancelled") => "cancelled",
        Some("nullified") => "entered-in-error",
        Some("new" | "held" | "suspended") => "registered",
        _ if !results.is_empty() && results.iter().all(|s| s == "final") => "final",
        _ => "unknown",
    }
}

/// Observation.status from a statusCode; an active observation with no value yet is pending.
pub(super) fn observation_status(code: Option<&str>, has_value: bool) -> &'static str {
    match code {
        Some("completed") => "final",
        Some("active") if has_value => "preliminary",
        Some("active") => "registered",
        Some("aborted" | "cancelled") => "cancelled",
        Some("nullified") => "entered-in-error",
        Some("new" | "held" | "suspended") => "registered",
        _ if has_value => "final",
        _ => "unknown",
    }
}

/// Sets `{prefix}DateTime` for a single time (or a low equal to its high), else
/// `{prefix}Period`.
pub(super) fn put_effective(resource: &mut Map<String, Value>, when: &When, prefix: &str) {
    match (&when.at, &when.start, &when.end) {
        (None, Some(start), Some(end)) if start == end => {
            resource.insert(format!("{prefix}DateTime"), start.clone().into());
        }
        _ => when.set_choice(resource, prefix),
    }
}

/// The Observation for one C-CDA observation, not yet added: id, identifiers, status,
/// categories, code, subject, effective time (its own, else `parent`'s), performers, value (or
/// why there is none), interpretation, reference ranges, method and body site. `parent` is the
/// organizer or observation it belongs to. Err when it has neither a code nor any text.
pub(super) fn observation(
    ctx: &mut Ctx,
    node: Node,
    categories: Vec<Value>,
    parent: Option<Node>,
) -> Result<Map<String, Value>, String> {
    let code = concept_or_text(ctx, node.child("code"), node)
        .ok_or("the observation has no code and no text")?;
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Observation".into());
    resource.insert("id".into(), ctx.id_for("Observation", node).into());
    put_identifiers(&mut resource, node);

    let value = observation_value_of(ctx, node);
    let status = status_code(node).or_else(|| parent.and_then(status_code));
    resource.insert(
        "status".into(),
        observation_status(status, value.is_some()).into(),
    );
    put_list(&mut resource, "category", categories);
    resource.insert("code".into(), code);
    resource.insert("subject".into(), ctx.subject());
    let mut when = When::of(node.child("effectiveTime"));
    if when.is_empty()
        && let Some(parent) = parent
    {
        when = When::of(parent.child("effectiveTime"));
    }
    put_effective(&mut resource, &when, "effective");
    let mut performers = performers(ctx, node);
    if performers.is_empty()
        && let Some(parent) = parent
    {
        performers = self::performers(ctx, parent);
    }
    put_list(&mut resource, "performer", performers);

    match value {
        Some((_, value)) if negated(node) => {
            // "Not X": never a positive record of X.
            let what = value_text(&value).unwrap_or_else(|| "the value".into());
            resource.insert(
                "valueCodeableConcept".into(),
                json!({ "text": format!("Not {what}") }),
            );
        }
        Some((key, value)) => {
            resource.insert(key.into(), value);
        }
        None => {
            let reason = if negated(node) {
                ("not-performed", "Not Performed")
            } else {
                absent_reason(node, status)
            };
            resource.insert(
                "dataAbsentReason".into(),
                fhir_concept(DATA_ABSENT, reason.0, reason.1),
            );
        }
    }
    put_list(&mut resource, "interpretation", interpretations(ctx, node));
    put_list(&mut resource, "referenceRange", reference_ranges(ctx, node));
    put(
        &mut resource,
        "method",
        node.child("methodCode")
            .and_then(|m| concept(m, &ctx.narrative)),
    );
    put(
        &mut resource,
        "bodySite",
        node.child("targetSiteCode")
            .and_then(|s| concept(s, &ctx.narrative)),
    );
    Ok(resource)
}

/// The readable words of a value[x]: a concept's text or first display, a string, a quantity.
fn value_text(value: &Value) -> Option<String> {
    if let Some(text) = value.as_str() {
        return Some(text.to_string());
    }
    if let Some(text) = value["text"].as_str() {
        return Some(text.to_string());
    }
    if let Some(display) = value["coding"][0]["display"].as_str() {
        return Some(display.to_string());
    }
    if let Some(code) = value["coding"][0]["code"].as_str() {
        return Some(code.to_string());
    }
    value.get("value").map(|v| {
        let unit = value["unit"].as_str().unwrap_or_default();
        format!("{v} {unit}").trim().to_string()
    })
}

/// Why an observation has no value, from its value's (or its own) nullFlavor; a pending one is
/// "temporarily unknown".
fn absent_reason(node: Node, status: Option<&str>) -> (&'static str, &'static str) {
    let flavor = node
        .child("value")
        .and_then(|v| v.attr("nullFlavor"))
        .or_else(|| node.attr("nullFlavor"));
    match flavor {
        Some("ASKU") => ("asked-unknown", "Asked But Unknown"),
        Some("NAV") => ("temp-unknown", "Temporarily Unknown"),
        Some("NASK") => ("not-asked", "Not Asked"),
        Some("MSK") => ("masked", "Masked"),
        Some("NA" | "NI" | "UNK") if status == Some("active") => {
            ("temp-unknown", "Temporarily Unknown")
        }
        Some("NA") => ("not-applicable", "Not Applicable"),
        Some("NINF") => ("negative-infinity", "Negative Infinity (NINF)"),
        Some("PINF") => ("positive-infinity", "Positive Infinity (PINF)"),
        Some("NaN" | "NAN") => ("not-a-number", "Not a Number (NaN)"),
        Some("OTH") => ("unsupported", "Unsupported"),
        None if status == Some("active") => ("temp-unknown", "Temporarily Unknown"),
        _ => ("unknown", "Unknown"),
    }
}

/// The value[x] of an observation. An answer given both as a score (INT) and as a coded answer
/// (an assessment item) becomes the coded answer with the score as its coding's ordinalValue.
/// A PQ whose unit is not UCUM (`nullFlavor="OTH"` with a translation) keeps the number and the
/// unit's text.
pub(super) fn observation_value_of(ctx: &Ctx, node: Node) -> Option<(&'static str, Value)> {
    let values = node.children_named("value");
    let is_coded = |v: &Node| matches!(v.xsi_type(), Some("CD" | "CE" | "CV" | "CO" | "CS"));
    if values.len() > 1
        && let Some(coded) = values.iter().find(|v| is_coded(v))
        && let Some(mut answer) = concept(*coded, &ctx.narrative)
    {
        let score = values
            .iter()
            .filter(|v| matches!(v.xsi_type(), Some("INT" | "REAL")))
            .find_map(|v| v.attr("value").and_then(crate::datatypes::decimal));
        if let Some(score) = score
            && let Some(first) = answer["coding"].get_mut(0)
        {
            first["extension"] = json!([{ "url": ORDINAL_VALUE, "valueDecimal": score }]);
        }
        return Some(("valueCodeableConcept", answer));
    }
    values.into_iter().find_map(|v| {
        observation_value(v, &ctx.narrative).or_else(|| match v.xsi_type() {
            Some("PQ") => pq(v).map(|q| ("valueQuantity", q)),
            Some("IVL_PQ" | "IVL_INT") => ivl(v).map(|r| ("valueRange", r)),
            _ => None,
        })
    })
}

/// A PQ as a Quantity; a non-UCUM one (`nullFlavor="OTH"` with a `translation` holding the
/// value and the unit's text) keeps its value and the unit as text.
fn pq(node: Node) -> Option<Value> {
    quantity(node).or_else(|| {
        let translation = node.child("translation")?;
        let value = crate::datatypes::decimal(translation.attr("value")?)?;
        let mut q = Map::new();
        q.insert("value".into(), value);
        if let Some(unit) = translation
            .child("originalText")
            .map(|t| t.text_content())
            .filter(|t| !t.is_empty())
        {
            q.insert("unit".into(), unit.into());
        }
        Some(Value::Object(q))
    })
}

/// An IVL_PQ or IVL_INT as a Range (either bound may be missing).
fn ivl(node: Node) -> Option<Value> {
    let mut range = Map::new();
    put(&mut range, "low", node.child("low").and_then(pq));
    put(&mut range, "high", node.child("high").and_then(pq));
    (!range.is_empty()).then_some(Value::Object(range))
}

/// Each `interpretationCode` as a CodeableConcept.
fn interpretations(ctx: &Ctx, node: Node) -> Vec<Value> {
    node.children_named("interpretationCode")
        .into_iter()
        .filter_map(|i| concept(i, &ctx.narrative))
        .collect()
}

/// Each `referenceRange/observationRange`: low/high from an interval value, the text (or a
/// string or coded value's words) as text. A range marked normal (`N`) is typed normal; a range
/// for another interpretation (high, abnormal) says so in its text. Ranges with nothing usable
/// are left out (FHIR requires a low, a high or a text).
fn reference_ranges(ctx: &Ctx, node: Node) -> Vec<Value> {
    let mut ranges = Vec::new();
    for holder in node.children_named("referenceRange") {
        let Some(range) = holder.child("observationRange") else {
            continue;
        };
        let mut out = Map::new();
        let value = range.child("value");
        if let Some(bounds) = value
            .filter(|v| matches!(v.xsi_type(), Some("IVL_PQ" | "IVL_INT") | None))
            .and_then(ivl)
        {
            out.extend(bounds.as_object().cloned().unwrap_or_default());
        }
        let mut text = range
            .child("text")
            .and_then(|t| ctx.narrative.text_of(t))
            .or_else(|| {
                value.and_then(|v| match v.xsi_type() {
                    Some("ST" | "ED") => ctx.narrative.text_of(v),
                    Some("CD" | "CE" | "CV" | "CO") => concept(v, &ctx.narrative)
                        .and_then(|c| c["text"].as_str().map(str::to_string)),
                    _ => None,
                })
            });
        let interpretation = range.child("interpretationCode");
        match interpretation.and_then(|i| i.attr("code")) {
            Some("N") => {
                out.insert(
                    "type".into(),
                    fhir_concept(RANGE_MEANING, "normal", "Normal Range"),
                );
            }
            Some(code) => {
                let label = interpretation
                    .and_then(|i| i.attr("displayName"))
                    .unwrap_or(code)
                    .to_string();
                text = Some(match text {
                    Some(t) => format!("{label}: {t}"),
                    None => format!("{label} range"),
                });
            }
            None => {}
        }
        put(&mut out, "text", text.map(Value::from));
        if out.contains_key("low") || out.contains_key("high") || out.contains_key("text") {
            ranges.push(Value::Object(out));
        }
    }
    ranges
}

/// Who performed or recorded a statement, as references allowed in Observation.performer and
/// DiagnosticReport.performer: each performer (the person, else the organisation, such as the
/// lab that ran the tests), then each author that names a person or organisation.
pub(super) fn performers(ctx: &mut Ctx, node: Node) -> Vec<Value> {
    let mut found: Vec<String> = Vec::new();
    for performer in node.children_named("performer") {
        let Some(assigned) = performer.child("assignedEntity") else {
            continue;
        };
        let reference = if assigned.child("assignedPerson").is_some() {
            crate::header::practitioner(ctx, assigned)
        } else {
            assigned
                .child("representedOrganization")
                .and_then(|o| crate::header::organization(ctx, o))
                .or_else(|| crate::header::practitioner(ctx, assigned))
        };
        found.extend(reference);
    }
    for author in node.children_named("author") {
        if let Some(reference) = crate::header::author(ctx, author)
            && !reference.starts_with("Device/")
        {
            found.push(reference);
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for reference in found {
        if !unique.contains(&reference) {
            unique.push(reference);
        }
    }
    unique
        .into_iter()
        .map(|r| json!({ "reference": r }))
        .collect()
}

/// Adds an Observation built by [`observation`] for `node` and returns its reference. (A
/// document that reuses an `id` for different observations, as the HL7 examples do for a Glasgow
/// scale's three parts, is handled by [`Ctx::id_for`].)
pub(super) fn add_observation(ctx: &mut Ctx, node: Node, resource: Map<String, Value>) -> String {
    let id = ctx.id_for("Observation", node);
    add_with_id(ctx, id, resource)
}

/// Adds a resource under `id`. An Observation that needs no value (it has members or
/// components) loses the absent-value reason.
pub(super) fn add_with_id(ctx: &mut Ctx, id: String, mut resource: Map<String, Value>) -> String {
    if resource.contains_key("hasMember") || resource.contains_key("component") {
        resource.remove("dataAbsentReason");
    }
    resource.insert("id".into(), id.into());
    ctx.add(Value::Object(resource))
}

/// The LOINC code of a vital sign, as the vital-signs profile names it (a sitting systolic
/// pressure is a systolic pressure), from its code or a translation.
fn vital_code(observation: Node) -> Option<&'static str> {
    let code = observation.child("code")?;
    std::iter::once(code)
        .chain(code.children_named("translation"))
        .filter(|c| c.attr("codeSystem") == Some(LOINC_OID))
        .find_map(|c| {
            let own = c.attr("code")?;
            VITAL_CODES
                .iter()
                .find(|(source, _, _)| *source == own)
                .map(|(_, profile, _)| *profile)
        })
}

/// The code of a vital sign with the vital-signs profile's LOINC coding added when the
/// document used another code for it.
fn vital_concept(code: Value, observation: Node) -> Value {
    let Some(profile) = vital_code(observation) else {
        return code;
    };
    let mut code = code;
    let has = code["coding"].as_array().is_some_and(|codings| {
        codings
            .iter()
            .any(|c| c["system"] == LOINC && c["code"] == profile)
    });
    if !has {
        let display = VITAL_CODES
            .iter()
            .find(|(source, _, _)| *source == profile)
            .map(|(_, _, d)| *d)
            .unwrap_or_default();
        let coding = json!({ "system": LOINC, "code": profile, "display": display });
        match code.get_mut("coding").and_then(Value::as_array_mut) {
            Some(codings) => codings.push(coding),
            None => code["coding"] = json!([coding]),
        }
    }
    code
}

/// One vital sign as a vital-signs Observation.
fn vital_sign(ctx: &mut Ctx, member: Node, organizer: Option<Node>) -> Result<String, String> {
    let mut resource = observation(ctx, member, vec![category("vital-signs")], organizer)?;
    let code = resource.remove("code").unwrap_or(Value::Null);
    resource.insert("code".into(), vital_concept(code, member));
    Ok(add_observation(ctx, member, resource))
}

/// A systolic and a diastolic pressure as one blood pressure panel with two components.
fn blood_pressure(ctx: &mut Ctx, systolic: Node, diastolic: Node, organizer: Node) -> Mapped {
    let mut panel = observation(
        ctx,
        systolic,
        vec![category("vital-signs")],
        Some(organizer),
    )?;
    let diastolic_part = observation(ctx, diastolic, Vec::new(), Some(organizer))?;
    let mut components = Vec::new();
    for (part, node) in [(panel.clone(), systolic), (diastolic_part, diastolic)] {
        let mut component = Map::new();
        component.insert("code".into(), vital_concept(part["code"].clone(), node));
        for (key, value) in &part {
            if key.starts_with("value")
                || matches!(
                    key.as_str(),
                    "dataAbsentReason" | "interpretation" | "referenceRange"
                )
            {
                component.insert(key.clone(), value.clone());
            }
        }
        components.push(Value::Object(component));
    }
    panel.retain(|key, _| {
        !(key.starts_with("value")
            || matches!(
                key.as_str(),
                "dataAbsentReason" | "interpretation" | "referenceRange"
            ))
    });
    let mut identifiers = crate::datatypes::identifiers(systolic);
    identifiers.extend(crate::datatypes::identifiers(diastolic));
    put_list(&mut panel, "identifier", identifiers);
    panel.insert(
        "code".into(),
        json!({
            "coding": [{ "system": LOINC, "code": "85354-9",
                         "display": "Blood pressure panel with all children optional" }],
            "text": "Blood pressure",
        }),
    );
    panel.insert("component".into(), Value::Array(components));
    let id = crate::stable_id(
        "Observation",
        &format!(
            "blood-pressure|{}|{}",
            ctx.id_for("Observation", systolic),
            ctx.id_for("Observation", diastolic)
        ),
    );
    add_with_id(ctx, id, panel);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::tests::observation_coded;
    use crate::tests::{convert_example, of_type};
    use serde_json::Value;

    use crate::tests::{section_examples, wrap_example};

    #[test]
    fn a_panel_is_a_report_with_exact_values_ranges_and_interpretations() {
        let c = convert_example("Results/Basic_Metabolic_Panel_with_Troponin(C-CDA2.1).xml");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let reports = of_type(&c, "DiagnosticReport");
        assert_eq!(reports.len(), 3);
        let bmp = reports
            .iter()
            .find(|r| r["code"]["coding"][0]["code"] == "51990-0")
            .unwrap();
        assert_eq!(bmp["status"], "final");
        assert_eq!(bmp["category"][0]["coding"][0]["code"], "LAB");
        assert_eq!(bmp["code"]["text"], "Basic Metabolic Panel");
        assert_eq!(bmp["result"].as_array().unwrap().len(), 7);
        // No organizer time: the earliest result's.
        assert_eq!(bmp["effectiveDateTime"], "2012-10-02T09:08:00-05:00");

        let potassium = observation_coded(&c, "6298-4");
        assert_eq!(potassium["status"], "final");
        assert_eq!(potassium["category"][0]["coding"][0]["code"], "laboratory");
        assert_eq!(potassium["valueQuantity"]["value"].to_string(), "4.2");
        assert_eq!(potassium["valueQuantity"]["code"], "mmol/L");
        assert_eq!(
            potassium["valueQuantity"]["system"],
            "http://unitsofmeasure.org"
        );
        assert_eq!(potassium["interpretation"][0]["coding"][0]["code"], "N");
        let range = &potassium["referenceRange"][0];
        assert_eq!(range["low"]["value"].to_string(), "3.5");
        assert_eq!(range["high"]["value"].to_string(), "5.2");
        assert_eq!(range["text"], "3.5-5.2 mmol/L");
        assert_eq!(range["type"]["coding"][0]["code"], "normal");
        let troponin = observation_coded(&c, "6598-7");
        assert_eq!(
            troponin["referenceRange"][0]["low"]["value"].to_string(),
            "0.0"
        );
        assert_eq!(
            troponin["referenceRange"][0]["high"]["value"].to_string(),
            "0.1"
        );
        assert_eq!(troponin["valueQuantity"]["value"].to_string(), "0.01");
    }

    #[test]
    fn coded_string_and_comparator_values() {
        let c = convert_example(
            "Results/Result_panel_with_coded_values_of_negative-positive(C-CDA2.1).xml",
        );
        let gonorrhoeae = observation_coded(&c, "60256-5");
        assert_eq!(
            gonorrhoeae["valueCodeableConcept"]["coding"][0]["code"],
            "10828004"
        );
        assert_eq!(gonorrhoeae["interpretation"][0]["coding"][0]["code"], "A");
        assert_eq!(gonorrhoeae["referenceRange"].as_array().unwrap().len(), 2);
        assert_eq!(
            gonorrhoeae["referenceRange"][1]["text"],
            "Abnormal: A positive value is an abnormal result"
        );
        let report = of_type(&c, "DiagnosticReport")[0];
        assert_eq!(report["effectiveDateTime"], "2013-10-22T14:26:00-05:00");

        let c = convert_example(
            "Results/Result_with_an_unstructured_string_as_value_urine_color_(C-CDA2.1).xml",
        );
        assert_eq!(observation_coded(&c, "5778-6")["valueString"], "Amber");

        let c = convert_example("Results/Result_with_greater_than_a_specified_value(C-CDA2.1).xml");
        let glucose = observation_coded(&c, "32016-8");
        assert_eq!(glucose["valueQuantity"]["comparator"], ">");
        assert_eq!(glucose["valueQuantity"]["value"].to_string(), "500");
        assert_eq!(glucose["valueQuantity"]["code"], "mg/dL");
        assert_eq!(glucose["referenceRange"][1]["text"], "High range");

        let c = convert_example("Results/Results_with_less_than_specific_value(C-CDA2.1).xml");
        let bnp = observation_coded(&c, "42637-9");
        assert_eq!(bnp["valueRange"]["high"]["value"].to_string(), "5");
        assert_eq!(bnp["valueRange"]["low"]["value"].to_string(), "0");
    }

    #[test]
    fn multiple_text_ranges_are_kept() {
        let c = convert_example("Results/Lab_with_Multiple_Reference_Ranges(C-CDA2.1).xml");
        let ana = observation_coded(&c, "5048-4");
        assert_eq!(ana["valueString"], "Borderline, equal to 1:80");
        let texts: Vec<&str> = ana["referenceRange"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts,
            [
                "Negative, less than 1:80",
                "Abnormal: Borderline, equal to 1:80",
                "Abnormal: Positive, greater than 1:80"
            ]
        );
        assert_eq!(
            ana["referenceRange"][0]["type"]["coding"][0]["code"],
            "normal"
        );
        let report = of_type(&c, "DiagnosticReport")[0];
        assert_eq!(report["effectiveDateTime"], "2017-03-19T12:30:00-08:00");
        assert_eq!(report["issued"], Value::Null);
    }

    #[test]
    fn non_ucum_units_keep_their_text_and_pending_results_say_so() {
        let c = convert_example("Results/Results_Unit_Non-UCUM(C-CDA2.1).xml");
        let platelets = observation_coded(&c, "26515-7");
        assert_eq!(platelets["valueQuantity"]["value"].to_string(), "152");
        assert_eq!(platelets["valueQuantity"]["unit"], "THOUS/MCL");
        assert!(platelets["valueQuantity"].get("system").is_none());
        assert_eq!(
            platelets["referenceRange"][0]["low"]["value"].to_string(),
            "150"
        );
        assert_eq!(platelets["referenceRange"][0]["high"]["unit"], "THOUS/MCL");

        let c = convert_example("Results/Results_panel_with_pending_component(C-CDA2.1).xml");
        let report = of_type(&c, "DiagnosticReport")[0];
        assert_eq!(report["status"], "preliminary");
        let leukocytes = observation_coded(&c, "804-5");
        assert_eq!(leukocytes["status"], "registered");
        assert!(leukocytes.get("valueQuantity").is_none());
        assert_eq!(
            leukocytes["dataAbsentReason"]["coding"][0]["code"],
            "temp-unknown"
        );
        assert_eq!(leukocytes["effectiveDateTime"], "2012-08-06");
    }

    #[test]
    fn the_lab_that_performed_the_tests_is_the_performer() {
        let c = convert_example("Results/Result_with_lab_location(C-CDAR2.1).xml");
        let report = of_type(&c, "DiagnosticReport")[0];
        let performer = report["performer"][0]["reference"].as_str().unwrap();
        assert!(performer.starts_with("Organization/"), "{performer}");
        let lab = c
            .resources
            .iter()
            .find(|r| format!("Organization/{}", r["id"].as_str().unwrap()) == performer)
            .unwrap();
        assert_eq!(lab["name"], "Value Labs");
        assert_eq!(report["effectiveDateTime"], "2015-06-22");
        let gravity = observation_coded(&c, "5811-5");
        assert_eq!(gravity["valueQuantity"]["value"].to_string(), "1.015");
        assert!(gravity["valueQuantity"].get("unit").is_none());
        assert_eq!(
            gravity["referenceRange"][0]["high"]["value"].to_string(),
            "1.030"
        );
    }

    #[test]
    fn an_imaging_report_keeps_its_narrative_as_the_conclusion() {
        let c = convert_example("Results/Chest_X_ray_with_Narrative_Report(C-CDA2.1).xml");
        let report = of_type(&c, "DiagnosticReport")[0];
        assert_eq!(report["category"][0]["coding"][0]["code"], "RAD");
        let conclusion = report["conclusion"].as_str().unwrap();
        assert!(
            conclusion.starts_with("The lungs are clear."),
            "{conclusion}"
        );
        assert!(conclusion.contains("IMPRESSION: Cardiomegaly."));
        let xray = observation_coded(&c, "36643-5");
        assert_eq!(xray["category"][0]["coding"][0]["code"], "imaging");
        assert!(
            xray["performer"][0]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
    }

    #[test]
    fn a_lone_result_observation_is_an_observation() {
        let xml = r#"<section><templateId root="2.16.840.1.113883.10.20.22.2.3.1"/><title>Results</title><entry><observation classCode="OBS" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.22.4.2"/><id root="1.2.3" extension="x"/><code nullFlavor="UNK"><originalText>Hemoglobin</originalText></code><statusCode code="completed"/><effectiveTime value="20200101"/><value xsi:type="PQ" nullFlavor="UNK"/></observation></entry></section>"#;
        let c = crate::convert(wrap_example(xml).as_bytes()).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(of_type(&c, "DiagnosticReport").is_empty());
        let observation = of_type(&c, "Observation")[0];
        assert_eq!(observation["code"]["text"], "Hemoglobin");
        assert_eq!(
            observation["dataAbsentReason"]["coding"][0]["code"],
            "unknown"
        );
    }

    #[test]
    fn blood_pressure_is_one_panel_and_vital_signs_carry_profile_codes() {
        let c = convert_example(
            "Vital_Signs/Panel_of_Vital_Signs_(Oxygen_Concentration_Included)_(C-CDA2.1).xml",
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let panel = observation_coded(&c, "85354-9");
        assert_eq!(panel["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(panel["effectiveDateTime"], "2014-05-20T19:36:05-05:00");
        let components = panel["component"].as_array().unwrap();
        assert_eq!(components.len(), 2);
        assert_eq!(components[0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(components[0]["valueQuantity"]["value"].to_string(), "120");
        assert_eq!(components[0]["valueQuantity"]["code"], "mm[Hg]");
        assert_eq!(components[1]["code"]["coding"][0]["code"], "8462-4");
        assert_eq!(components[1]["valueQuantity"]["value"].to_string(), "80");
        assert!(panel.get("valueQuantity").is_none());
        // Systolic and diastolic are not repeated on their own.
        assert!(
            c.resources
                .iter()
                .all(|r| r["code"]["coding"][0]["code"] != "8480-6")
        );
        let weight = observation_coded(&c, "29463-7");
        assert_eq!(weight["valueQuantity"]["value"].to_string(), "108.863");
        let saturation = observation_coded(&c, "2710-2");
        let codes: Vec<&str> = saturation["code"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["2710-2", "2708-6"]);
        let temperature = observation_coded(&c, "8310-5");
        assert_eq!(temperature["valueQuantity"]["value"].to_string(), "37.2");
        assert_eq!(temperature["valueQuantity"]["code"], "Cel");
        // Ten vital signs, systolic and diastolic as one.
        assert_eq!(of_type(&c, "Observation").len(), 9);
    }

    #[test]
    fn every_vital_signs_example_converts_without_warnings() {
        for (name, text) in section_examples()
            .into_iter()
            .filter(|(n, _)| n.starts_with("Vital_Signs/") || n.starts_with("Results/"))
        {
            let c = crate::convert(text.as_bytes()).unwrap();
            assert!(c.warnings.is_empty(), "{name}: {:?}", c.warnings);
            for r in of_type(&c, "Observation") {
                assert!(
                    r["status"].is_string() && r["code"].is_object(),
                    "{name}: {r}"
                );
                let values = r
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| k.starts_with("value") || *k == "dataAbsentReason")
                    .count();
                let grouped = r.get("component").is_some() || r.get("hasMember").is_some();
                assert!(values == 1 || (grouped && values == 0), "{name}: {r}");
            }
        }
        let c = convert_example("Vital_Signs/Heart_Rate_Rhythm(C-CDA2.1).xml");
        let rhythm = observation_coded(&c, "8884-9");
        assert_eq!(rhythm["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(
            rhythm["valueCodeableConcept"]["coding"][0]["code"],
            "248651005"
        );
        let c = convert_example("Vital_Signs/Growth_Charts_Example.xml");
        let percentile = observation_coded(&c, "8289-1");
        assert!(
            percentile["referenceRange"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
    }
}
