//! Medical equipment, insurance and care teams (C-CDA on FHIR "Medical Equipment", "Payers" and
//! "Care Team" mappings).
//!
//! - A Non-Medicinal Supply Activity is a Device (what it is, its UDI) and a DeviceUseStatement
//!   (that the patient uses it, since when). A Procedure Activity Procedure with an implanted
//!   device is a Procedure whose `focalDevice` is the Device. A Medical Equipment Organizer is
//!   its members.
//! - A Coverage Activity holds one Policy Activity per plan; each is a Coverage paid by the
//!   payer's Organization.
//! - A Care Team Organizer is a CareTeam whose members are Practitioners.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use super::{Mapped, first_author, negated, put_identifiers, related, statement_of};
use crate::Ctx;
use crate::datatypes::{When, concept, fhir_concept, identifier, put, put_list, ts};
use crate::xml::{El, path};

const POLICY: &str = "2.16.840.1.113883.10.20.22.4.61";
const PAYER_PERFORMER: &str = "2.16.840.1.113883.10.20.22.4.87";
const CARE_TEAM_MEMBER: &str = "2.16.840.1.113883.10.20.22.4.500.1";
const CARE_TEAM_TYPE: &str = "2.16.840.1.113883.10.20.22.4.500.2";
/// The FDA's root for a UDI as a whole (`id/@extension` is the human-readable form).
const FDA_UDI: &str = "2.16.840.1.113883.3.3719";
const UDI_ORGANIZER: &str = "2.16.840.1.113883.10.20.22.4.311";

/// An entry of the Medical Equipment section: a supply, an implant procedure, or an organizer
/// of them.
pub(crate) fn convert_device(ctx: &mut Ctx, statement: Node) -> Mapped {
    match statement.tag_name().name() {
        "organizer" => {
            let members: Vec<Node> = statement
                .children_named("component")
                .into_iter()
                .filter_map(statement_of)
                .collect();
            if members.is_empty() {
                return Err("the equipment organizer holds no supply or procedure".into());
            }
            let mut reasons = Vec::new();
            let mut added = 0;
            for member in members {
                match convert_device(ctx, member) {
                    Ok(()) => added += 1,
                    Err(reason) => reasons.push(reason),
                }
            }
            if added == 0 {
                return Err(reasons.join("; "));
            }
            Ok(())
        }
        "supply" if statement.attr("moodCode").is_none_or(|m| m == "EVN") => supply(ctx, statement),
        "procedure" | "act" | "observation" | "supply" | "encounter" => {
            if negated(statement) && !devices_of(statement).is_empty() {
                return Err(
                    "it states that the patient has no implanted device (a negation, not a device)"
                        .into(),
                );
            }
            super::procedures::convert(ctx, statement)
        }
        other => Err(format!(
            "Fasten does not convert a <{other}> in the medical equipment section"
        )),
    }
}

/// A Non-Medicinal Supply Activity: the Device and a DeviceUseStatement saying the patient
/// uses it.
fn supply(ctx: &mut Ctx, statement: Node) -> Mapped {
    if negated(statement) {
        return Err("it states that the patient does not use this equipment".into());
    }
    let roles: Vec<Node> = statement
        .children_named("participant")
        .into_iter()
        .filter(|p| matches!(p.attr("typeCode"), Some("PRD") | Some("DEV") | None))
        .filter_map(|p| p.child("participantRole"))
        .collect();
    let devices: Vec<String> = roles.iter().filter_map(|r| device(ctx, *r, &[])).collect();
    if devices.is_empty() {
        return Err("the supply names no device (no code, text or UDI)".into());
    }
    let when = When::of(statement.child("effectiveTime"));
    let status = match statement.child("statusCode").and_then(|s| s.attr("code")) {
        Some("completed") => "completed",
        Some("aborted" | "cancelled") => "stopped",
        Some("held" | "suspended") => "on-hold",
        Some("new") => "intended",
        Some("nullified") => "entered-in-error",
        Some(_) => "active",
        None if when.end.is_some() => "completed",
        None => "active",
    };
    let (_, recorded) = first_author(ctx, statement);
    let use_id = ctx.id_for("DeviceUseStatement", statement);
    for device in devices {
        let mut resource = Map::new();
        resource.insert("resourceType".into(), "DeviceUseStatement".into());
        // Some documents give several supplies one id: the device tells them apart.
        resource.insert(
            "id".into(),
            crate::stable_id("DeviceUseStatement", &format!("{use_id}|{device}")).into(),
        );
        put_identifiers(&mut resource, statement);
        resource.insert("status".into(), status.into());
        resource.insert("subject".into(), ctx.subject());
        when.set_choice(&mut resource, "timing");
        put(
            &mut resource,
            "recordedOn",
            recorded.clone().map(Value::from),
        );
        resource.insert("device".into(), json!({ "reference": device }));
        ctx.add(Value::Object(resource));
    }
    Ok(())
}

/// The `participantRole`s of a statement's devices (`participant typeCode="DEV"`).
pub(super) fn devices_of<'a, 'i>(statement: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    statement
        .children_named("participant")
        .into_iter()
        .filter(|p| p.attr("typeCode") == Some("DEV"))
        .filter_map(|p| p.child("participantRole"))
        .collect()
}

/// A Product Instance (`participantRole` with a `playingDevice`) as a Device belonging to the
/// patient: its kind, its UDI (with the parts of a GS1 UDI: device identifier, lot, serial,
/// dates), its maker. None when it says nothing that identifies the device.
/// `details` are what a UDI Organizer adds (see [`udi_details`]); the UDI itself wins.
pub(super) fn device(
    ctx: &mut Ctx,
    role: Node,
    details: &[(&'static str, Value)],
) -> Option<String> {
    let playing = role.child("playingDevice");
    let code = playing.and_then(|d| d.child("code"));
    let kind = code.and_then(|c| concept(c, &ctx.narrative));
    let udi = role
        .children_named("id")
        .into_iter()
        .find(|i| !i.is_null() && i.attr("root") == Some(FDA_UDI) && i.attr("extension").is_some())
        .and_then(|i| i.attr("extension"));
    let model = playing
        .and_then(|d| d.child("manufacturerModelName"))
        .map(|n| n.text_content())
        .filter(|n| !n.is_empty());
    if kind.is_none() && udi.is_none() && model.is_none() {
        return None;
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Device".into());
    // Documents reuse one participantRole id for different devices: the kind tells them apart.
    let kind_key = code
        .map(|c| {
            format!(
                "{}|{}|{}",
                c.attr("codeSystem").unwrap_or(""),
                c.attr("code").unwrap_or(""),
                kind.as_ref().and_then(|k| k["text"].as_str()).unwrap_or("")
            )
        })
        .unwrap_or_default();
    resource.insert(
        "id".into(),
        crate::stable_id(
            "Device",
            &format!("{}|{kind_key}", ctx.id_for("Device", role)),
        )
        .into(),
    );
    put_list(
        &mut resource,
        "identifier",
        role.children_named("id")
            .into_iter()
            .filter(|i| i.attr("root") != Some(FDA_UDI))
            .filter_map(identifier)
            .collect(),
    );
    if let Some(udi) = udi {
        let mut carrier = Map::new();
        let parts = gs1_parts(udi);
        let part = |ai: &str| parts.iter().find(|(a, _)| a == ai).map(|(_, v)| v.clone());
        put(
            &mut carrier,
            "deviceIdentifier",
            part("01").map(Value::from),
        );
        carrier.insert(
            "issuer".into(),
            "http://hl7.org/fhir/NamingSystem/fda-udi".into(),
        );
        carrier.insert(
            "jurisdiction".into(),
            "http://hl7.org/fhir/NamingSystem/fda-udi".into(),
        );
        carrier.insert("carrierHRF".into(), udi.into());
        resource.insert("udiCarrier".into(), json!([carrier]));
        put(&mut resource, "lotNumber", part("10").map(Value::from));
        put(&mut resource, "serialNumber", part("21").map(Value::from));
        put(
            &mut resource,
            "manufactureDate",
            part("11").and_then(|d| yymmdd(&d)).map(Value::from),
        );
        put(
            &mut resource,
            "expirationDate",
            part("17").and_then(|d| yymmdd(&d)).map(Value::from),
        );
    }
    put(
        &mut resource,
        "manufacturer",
        role.child("scopingEntity")
            .and_then(|s| s.child("desc"))
            .map(|d| d.text_content())
            .filter(|d| !d.is_empty())
            .map(Value::from),
    );
    if let Some(model) = model {
        resource.insert(
            "deviceName".into(),
            json!([{ "name": model, "type": "model-name" }]),
        );
    }
    for (key, value) in details {
        if !resource.contains_key(*key) {
            resource.insert((*key).into(), value.clone());
        }
    }
    put(&mut resource, "type", kind);
    resource.insert("patient".into(), ctx.subject());
    Some(ctx.add(Value::Object(resource)))
}

/// What a UDI Organizer under a statement (the parts of a UDI as observations) says about its
/// device, as Device fields: brand name, model, company, lot, serial, dates.
pub(super) fn udi_details(ctx: &Ctx, statement: Node) -> Vec<(&'static str, Value)> {
    let mut found = Vec::new();
    for organizer in related(statement, None)
        .into_iter()
        .filter(|s| s.has_template(&[UDI_ORGANIZER]))
    {
        for part in organizer
            .children_named("component")
            .into_iter()
            .filter_map(statement_of)
        {
            let Some(value) = part.child("value") else {
                continue;
            };
            let text = || {
                value
                    .attr("extension")
                    .map(str::to_string)
                    .or_else(|| ctx.narrative.text_of(value))
            };
            let code = part.child("code").and_then(|c| c.attr("code"));
            match code {
                Some("C101672") => {
                    if let Some(t) = text() {
                        found.push(("lotNumber", t.into()));
                    }
                }
                Some("C101671") => {
                    if let Some(t) = text() {
                        found.push(("serialNumber", t.into()));
                    }
                }
                Some("C71898") => {
                    if let Some(t) = text() {
                        found.push((
                            "deviceName",
                            json!([{ "name": t, "type": "udi-label-name" }]),
                        ));
                    }
                }
                Some("C99285") => {
                    if let Some(t) = text() {
                        found.push(("modelNumber", t.into()));
                    }
                }
                Some("C54131") => {
                    if let Some(t) = text() {
                        found.push(("manufacturer", t.into()));
                    }
                }
                Some("C101669") => {
                    if let Some(t) = value.attr("value").and_then(ts) {
                        found.push(("manufactureDate", t.into()));
                    }
                }
                Some("C101670") => {
                    if let Some(t) = value.attr("value").and_then(ts) {
                        found.push(("expirationDate", t.into()));
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// The GS1 application identifiers of a human-readable UDI: `(01)00848486001048(10)ABC999`
/// → [("01", "00848486001048"), ("10", "ABC999")]. Empty for other issuers' formats.
fn gs1_parts(udi: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let mut rest = udi.trim();
    while let Some(after) = rest.strip_prefix('(') {
        let Some((ai, tail)) = after.split_once(')') else {
            break;
        };
        let end = tail.find('(').unwrap_or(tail.len());
        parts.push((ai.to_string(), tail[..end].trim().to_string()));
        rest = &tail[end..];
    }
    parts
}

/// A GS1 date (YYMMDD) as a FHIR date; day 00 means the month only.
fn yymmdd(text: &str) -> Option<String> {
    if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (yy, mm, dd) = (&text[0..2], &text[2..4], &text[4..6]);
    let month: u32 = mm.parse().ok()?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if dd == "00" {
        return Some(format!("20{yy}-{mm}"));
    }
    ts(&format!("20{yy}{mm}{dd}"))
}

/// A Coverage Activity: one Coverage per Policy Activity in it.
pub(crate) fn convert_coverage(ctx: &mut Ctx, statement: Node) -> Mapped {
    let policies: Vec<Node> = if statement.has_template(&[POLICY]) {
        vec![statement]
    } else {
        related(statement, Some("COMP"))
            .into_iter()
            .filter(|s| s.tag_name().name() == "act")
            .collect()
    };
    if policies.is_empty() {
        return Err("the coverage activity holds no policy".into());
    }
    let mut reasons = Vec::new();
    let mut added = 0;
    for policy in policies {
        match coverage(ctx, policy) {
            Ok(()) => added += 1,
            Err(reason) => reasons.push(reason),
        }
    }
    if added == 0 {
        return Err(reasons.join("; "));
    }
    Ok(())
}

/// One Policy Activity as a Coverage.
fn coverage(ctx: &mut Ctx, policy: Node) -> Mapped {
    // The payer: the performer marked as such, else the one whose role is PAYOR, else the
    // first performer that is an organisation.
    let performers = policy.children_named("performer");
    let payer = performers
        .iter()
        .find(|p| p.has_template(&[PAYER_PERFORMER]))
        .or_else(|| {
            performers.iter().find(|p| {
                path(**p, &["assignedEntity", "code"]).and_then(|c| c.attr("code")) == Some("PAYOR")
            })
        })
        .or_else(|| {
            performers.iter().find(|p| {
                path(**p, &["assignedEntity", "representedOrganization"]).is_some()
                    && path(**p, &["assignedEntity", "assignedPerson"]).is_none()
            })
        })
        .and_then(|p| p.child("assignedEntity"));
    let payor = payer.and_then(|assigned| {
        assigned
            .child("representedOrganization")
            .and_then(|o| crate::header::organization(ctx, o))
            .or_else(|| crate::header::organization(ctx, assigned))
    });
    let Some(payor) = payor else {
        return Err("the policy names no payer organisation".into());
    };
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Coverage".into());
    resource.insert("id".into(), ctx.id_for("Coverage", policy).into());
    put_identifiers(&mut resource, policy);
    resource.insert("status".into(), "active".into());
    // The policy's code is the kind of coverage (Source of Payment Typology, or an HL7
    // coverage type); a role code there is a misuse and says nothing about the plan.
    put(
        &mut resource,
        "type",
        policy
            .child("code")
            .filter(|c| {
                !matches!(
                    c.attr("codeSystem"),
                    Some("2.16.840.1.113883.5.110" | "2.16.840.1.113883.5.111")
                )
            })
            .and_then(|c| concept(c, &ctx.narrative)),
    );
    let participants = policy.children_named("participant");
    let covered = participants
        .iter()
        .find(|p| p.attr("typeCode") == Some("COV"));
    let holder = participants
        .iter()
        .find(|p| p.attr("typeCode") == Some("HLD"));
    let member_id = |p: Option<&Node>| -> Option<String> {
        p.and_then(|p| p.child("participantRole"))
            .and_then(|r| {
                r.children_named("id")
                    .into_iter()
                    .find(|i| !i.is_null() && i.attr("extension").is_some())
            })
            .and_then(|i| i.attr("extension"))
            .map(str::to_string)
    };
    put(
        &mut resource,
        "subscriberId",
        member_id(holder)
            .or_else(|| member_id(covered))
            .map(Value::from),
    );
    let relationship = covered
        .and_then(|c| path(*c, &["participantRole", "code"]))
        .and_then(|c| c.attr("code"))
        .map(|code| match code {
            "SELF" | "ONESELF" => ("self", "Self"),
            "SPS" | "SPSE" | "HUSB" | "WIFE" | "DOMPART" => ("spouse", "Spouse"),
            "CHILD" | "SON" | "DAU" | "SONC" | "DAUC" | "CHLDADOPT" | "CHLDFOST" | "STPCHLD"
            | "NCHILD" => ("child", "Child"),
            "FAMDEP" | "HANDIC" | "DEPEN" => ("other", "Other"),
            _ => ("other", "Other"),
        });
    if let Some((code, display)) = relationship {
        resource.insert(
            "relationship".into(),
            fhir_concept(
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                code,
                display,
            ),
        );
        if code == "self" {
            resource.insert("subscriber".into(), ctx.subject());
        }
    }
    resource.insert("beneficiary".into(), ctx.subject());
    let period = covered
        .and_then(|c| c.child("time"))
        .and_then(|t| When::of(Some(t)).period())
        .or_else(|| When::of(policy.child("effectiveTime")).period());
    put(&mut resource, "period", period);
    resource.insert("payor".into(), json!([{ "reference": payor }]));
    ctx.add(Value::Object(resource));
    Ok(())
}

/// A Care Team Organizer as a CareTeam.
pub(crate) fn convert_care_team(ctx: &mut Ctx, statement: Node) -> Mapped {
    if statement.tag_name().name() != "organizer" {
        return Err(format!(
            "a <{}> is not a care team organizer",
            statement.tag_name().name()
        ));
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "CareTeam".into());
    resource.insert("id".into(), ctx.id_for("CareTeam", statement).into());
    put_identifiers(&mut resource, statement);
    let status = match statement.child("statusCode").and_then(|s| s.attr("code")) {
        Some("active") => Some("active"),
        Some("completed" | "inactive" | "aborted") => Some("inactive"),
        Some("suspended" | "held") => Some("suspended"),
        Some("new" | "proposed") => Some("proposed"),
        Some("nullified") => Some("entered-in-error"),
        _ => None,
    };
    put(&mut resource, "status", status.map(Value::from));
    let members: Vec<Node> = statement
        .children_named("component")
        .into_iter()
        .filter_map(statement_of)
        .collect();
    put_list(
        &mut resource,
        "category",
        members
            .iter()
            .filter(|m| m.has_template(&[CARE_TEAM_TYPE]))
            .filter_map(|m| m.child("value"))
            .filter_map(|v| concept(v, &ctx.narrative))
            .collect(),
    );
    // The team's name is the text its code points to ("My Care Team").
    let name = statement
        .child("code")
        .and_then(|c| c.child("originalText"))
        .and_then(|t| ctx.narrative.text_of(t));
    put(&mut resource, "name", name.map(Value::from));
    resource.insert("subject".into(), ctx.subject());
    put(
        &mut resource,
        "period",
        When::of(statement.child("effectiveTime")).period(),
    );
    let mut participants = Vec::new();
    for member in members
        .iter()
        .filter(|m| m.has_template(&[CARE_TEAM_MEMBER]) || m.tag_name().name() == "act")
        .filter(|m| !m.has_template(&[CARE_TEAM_TYPE]))
    {
        for performer in member.children_named("performer") {
            let Some(assigned) = performer.child("assignedEntity") else {
                continue;
            };
            let organization = assigned
                .child("representedOrganization")
                .and_then(|o| crate::header::organization(ctx, o));
            let Some(who) = crate::header::practitioner(ctx, assigned).or(organization.clone())
            else {
                continue;
            };
            let mut participant = Map::new();
            put(
                &mut participant,
                "role",
                performer
                    .child("functionCode")
                    .and_then(|f| concept(f, &ctx.narrative))
                    .map(|r| json!([r])),
            );
            participant.insert("member".into(), json!({ "reference": who }));
            if who.starts_with("Practitioner/")
                && let Some(organization) = organization
            {
                participant.insert("onBehalfOf".into(), json!({ "reference": organization }));
            }
            put(
                &mut participant,
                "period",
                When::of(member.child("effectiveTime")).period(),
            );
            participants.push(Value::Object(participant));
        }
    }
    put_list(&mut resource, "participant", participants);
    if resource.get("participant").is_none() && resource.get("name").is_none() {
        return Err("the care team names no member".into());
    }
    ctx.add(Value::Object(resource));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::tests::{convert_example, of_type};

    #[test]
    fn supplies_are_devices_the_patient_uses() {
        let c = convert_example(
            "Medical_Equipment/Non-Medicinal_Supply_-_Cane_and_Eyeglasses_(C-CDAR2.1).xml",
        );
        let devices = of_type(&c, "Device");
        // Both supplies carry the same id; the cane is not lost.
        assert_eq!(devices.len(), 2, "{devices:?}");
        assert_eq!(devices[0]["type"]["coding"][0]["code"], "50121007");
        assert_eq!(devices[0]["type"]["text"], "Eye Glasses");
        assert_eq!(devices[1]["type"]["coding"][0]["code"], "87405001");
        let uses = of_type(&c, "DeviceUseStatement");
        assert_eq!(uses.len(), 2);
        assert_eq!(uses[0]["status"], "active");
        assert_eq!(uses[0]["timingPeriod"]["start"], "2000-01-13");
        assert!(uses[0]["timingPeriod"].get("end").is_none());
        assert_eq!(
            uses[1]["device"]["reference"],
            format!("Device/{}", devices[1]["id"].as_str().unwrap())
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn implants_keep_their_udi() {
        let c = convert_example("Medical_Equipment/Implant_UDI_Organizer_(C-CDA_R2.1).xml");
        let device = of_type(&c, "Device")[0];
        let carrier = &device["udiCarrier"][0];
        assert_eq!(carrier["deviceIdentifier"], "00848486001048");
        assert_eq!(
            carrier["carrierHRF"],
            "(01)00848486001048(11)181015(10)ABC999(21)bi12342222(17)221015"
        );
        assert_eq!(device["lotNumber"], "ABC999");
        assert_eq!(device["serialNumber"], "bi12342222");
        assert_eq!(device["manufactureDate"], "2018-10-15");
        assert_eq!(device["expirationDate"], "2022-10-15");
        assert_eq!(device["type"]["coding"][0]["code"], "2282003");
        let procedure = of_type(&c, "Procedure")[0];
        assert_eq!(
            procedure["focalDevice"][0]["manipulated"]["reference"],
            format!("Device/{}", device["id"].as_str().unwrap())
        );

        let c = convert_example("Medical_Equipment/Implant_UDI_Unknown_(C-CDA_R2.1).xml");
        let device = of_type(&c, "Device")[0];
        // No UDI (nullFlavor): the device is named by its narrative.
        assert!(device.get("udiCarrier").is_none());
        assert!(device["type"]["text"].as_str().is_some());
        let procedure = of_type(&c, "Procedure")[0];
        assert_eq!(procedure["code"]["coding"][0]["code"], "25267002");
        assert_eq!(procedure["performedPeriod"]["start"], "2012");

        let c = convert_example("Medical_Equipment/Multiple_Implants_(C-CDA_R2.1).xml");
        assert_eq!(of_type(&c, "Device").len(), 2);
        assert_eq!(
            of_type(&c, "Procedure").len(),
            1,
            "one procedure, two implants"
        );
    }

    #[test]
    fn no_implanted_devices_is_not_a_device() {
        let c = convert_example("Medical_Equipment/No_Implanted_Devices(C-CDA2.1).xml");
        assert!(of_type(&c, "Device").is_empty());
        assert!(of_type(&c, "Procedure").is_empty());
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("no implanted device"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn a_policy_is_a_coverage_paid_by_its_payer() {
        let c = crate::tests::convert_document("CCD-1.xml");
        let coverages = of_type(&c, "Coverage");
        assert_eq!(coverages.len(), 1);
        let coverage = coverages[0];
        assert_eq!(coverage["status"], "active");
        assert_eq!(coverage["type"]["coding"][0]["code"], "81");
        assert_eq!(
            coverage["type"]["coding"][0]["system"],
            "https://nahdo.org/sopt"
        );
        assert_eq!(coverage["subscriberId"], "1138345");
        assert_eq!(coverage["relationship"]["coding"][0]["code"], "self");
        let patient = c
            .resources
            .iter()
            .find(|r| r["resourceType"] == "Patient")
            .unwrap();
        assert_eq!(
            coverage["beneficiary"]["reference"],
            format!("Patient/{}", patient["id"].as_str().unwrap())
        );
        let payor = coverage["payor"][0]["reference"].as_str().unwrap();
        let organization = c
            .resources
            .iter()
            .find(|r| format!("Organization/{}", r["id"].as_str().unwrap()) == payor)
            .unwrap();
        assert_eq!(organization["name"], "Good Health Insurance");
    }

    #[test]
    fn a_care_team_names_its_members_and_their_roles() {
        let c = convert_example("Care_Team/Care_Team_Organizer_Example.xml");
        let team = of_type(&c, "CareTeam")[0];
        assert_eq!(team["status"], "active");
        assert_eq!(team["name"], "My Care Team");
        assert_eq!(team["period"]["start"], "2018-10-08T14:26:00-05:00");
        let member = &team["participant"][0];
        assert_eq!(member["role"][0]["coding"][0]["code"], "PCP");
        let practitioner = member["member"]["reference"].as_str().unwrap();
        let practitioner = c
            .resources
            .iter()
            .find(|r| format!("Practitioner/{}", r["id"].as_str().unwrap()) == practitioner)
            .unwrap();
        assert_eq!(practitioner["name"][0]["family"], "Smith");
        assert!(
            member["onBehalfOf"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Organization/")
        );
    }
}
