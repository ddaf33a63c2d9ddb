//! The document header: the patient (`recordTarget`), the people and organisations who wrote or
//! keep it (`author`, `custodian`, `legalAuthenticator`), the visit it is about
//! (`componentOf/encompassingEncounter`), and the document itself as a `DocumentReference`.

use roxmltree::Node;
use serde_json::{Map, Value, json};

use crate::Ctx;
use crate::datatypes::{
    self, When, address, concept, contact_point, human_name, identifiers, put, put_contacts,
    put_list, put_telecoms,
};
use crate::xml::{El, path};

/// Adds the Patient, the authors, the encompassing encounter and the document's
/// DocumentReference. The Patient comes first so every later resource can refer to it.
pub(crate) fn convert_header(ctx: &mut Ctx, root: Node) {
    let role = path(root, &["recordTarget", "patientRole"]);
    let patient = match role {
        Some(role) => patient(ctx, role),
        None => {
            ctx.warn("the document names no patient (recordTarget); its records are filed under a patient with no details");
            json!({
                "resourceType": "Patient",
                "id": ctx.id_in_document("Patient", "recordTarget"),
            })
        }
    };
    ctx.patient = ctx.add(patient);

    let authors: Vec<Value> = root
        .children_named("author")
        .into_iter()
        .filter_map(|a| author(ctx, a))
        .map(|r| json!({ "reference": r }))
        .collect();
    let custodian = path(
        root,
        &[
            "custodian",
            "assignedCustodian",
            "representedCustodianOrganization",
        ],
    )
    .and_then(|o| organization(ctx, o));
    let authenticator =
        path(root, &["legalAuthenticator", "assignedEntity"]).and_then(|e| practitioner(ctx, e));

    if let Some(encounter) = path(root, &["componentOf", "encompassingEncounter"]) {
        ctx.encounter = Some(encompassing_encounter(ctx, encounter));
    }
    document_reference(ctx, root, authors, custodian, authenticator);
}

/// `recordTarget/patientRole` as a Patient.
fn patient(ctx: &Ctx, role: Node) -> Value {
    let mut patient = Map::new();
    patient.insert("resourceType".into(), "Patient".into());
    patient.insert("id".into(), ctx.id_for("Patient", role).into());
    put_list(&mut patient, "identifier", identifiers(role));
    let person = role.child("patient");
    if let Some(person) = person {
        put_list(
            &mut patient,
            "name",
            person
                .children_named("name")
                .into_iter()
                .filter_map(human_name)
                .collect(),
        );
    }
    put_telecoms(&mut patient, role);
    let Some(person) = person else {
        put_list(
            &mut patient,
            "address",
            role.children_named("addr")
                .into_iter()
                .filter_map(address)
                .collect(),
        );
        return Value::Object(patient);
    };
    if let Some(gender) = person
        .child("administrativeGenderCode")
        .and_then(|g| g.attr("code"))
        .and_then(|code| match code {
            "M" => Some("male"),
            "F" => Some("female"),
            "UN" => Some("other"),
            _ => None,
        })
    {
        patient.insert("gender".into(), gender.into());
    }
    // A birth date is a date: the time of birth, when given, is not kept.
    put(
        &mut patient,
        "birthDate",
        person
            .child("birthTime")
            .and_then(datatypes::time_of)
            .map(|t| t.chars().take(10).collect::<String>().into()),
    );
    let deceased = person
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "deceasedInd")
        .and_then(|d| d.attr("value"));
    let deceased_time = person
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "deceasedTime")
        .and_then(datatypes::time_of);
    if let Some(time) = deceased_time {
        patient.insert("deceasedDateTime".into(), time.into());
    } else if let Some(flag) = deceased {
        patient.insert("deceasedBoolean".into(), (flag == "true").into());
    }
    put_list(
        &mut patient,
        "address",
        role.children_named("addr")
            .into_iter()
            .filter_map(address)
            .collect(),
    );
    put(
        &mut patient,
        "maritalStatus",
        person
            .child("maritalStatusCode")
            .and_then(|m| concept(m, &ctx.narrative)),
    );
    let languages: Vec<Value> = person
        .children_named("languageCommunication")
        .into_iter()
        .filter_map(|l| {
            let code = l.child("languageCode")?.attr("code")?;
            let mut communication = json!({
                "language": { "coding": [{ "system": "urn:ietf:bcp:47", "code": code }] }
            });
            if let Some(preferred) = l.child("preferenceInd").and_then(|p| p.attr("value")) {
                communication["preferred"] = (preferred == "true").into();
            }
            Some(communication)
        })
        .collect();
    put_list(&mut patient, "communication", languages);
    let contacts: Vec<Value> = person
        .children_named("guardian")
        .into_iter()
        .filter_map(|g| {
            let mut contact = Map::new();
            put(
                &mut contact,
                "relationship",
                g.child("code")
                    .and_then(|c| concept(c, &ctx.narrative))
                    .map(|c| json!([c])),
            );
            put(
                &mut contact,
                "name",
                path(g, &["guardianPerson", "name"]).and_then(human_name),
            );
            put_list(
                &mut contact,
                "telecom",
                g.children_named("telecom")
                    .into_iter()
                    .filter_map(contact_point)
                    .collect(),
            );
            put(&mut contact, "address", g.child("addr").and_then(address));
            (!contact.is_empty()).then_some(Value::Object(contact))
        })
        .collect();
    put_list(&mut patient, "contact", contacts);
    if let Some(org) = role.child("providerOrganization") {
        // Named inline: the Patient comes before any other resource, so it cannot refer to one.
        if let Some(name) = org
            .child("name")
            .map(|n| n.text_content())
            .filter(|n| !n.is_empty())
        {
            patient.insert("managingOrganization".into(), json!({ "display": name }));
        }
    }
    Value::Object(patient)
}

/// An `author` (a person, or a device such as the EHR itself) as a reference to the resource
/// added for it.
pub(crate) fn author(ctx: &mut Ctx, author: Node) -> Option<String> {
    let assigned = author.child("assignedAuthor")?;
    if assigned.child("assignedPerson").is_some() {
        return practitioner(ctx, assigned);
    }
    if let Some(device) = assigned.child("assignedAuthoringDevice") {
        let mut resource = Map::new();
        resource.insert("resourceType".into(), "Device".into());
        resource.insert("id".into(), ctx.id_for("Device", assigned).into());
        let name = [
            device
                .child("manufacturerModelName")
                .map(|n| n.text_content()),
            device.child("softwareName").map(|n| n.text_content()),
        ]
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .collect::<Vec<_>>();
        if name.is_empty() {
            return None;
        }
        resource.insert(
            "deviceName".into(),
            json!([{ "name": name.join(" "), "type": "model-name" }]),
        );
        put(
            &mut resource,
            "owner",
            assigned
                .child("representedOrganization")
                .and_then(|o| organization(ctx, o))
                .map(|r| json!({ "reference": r })),
        );
        return Some(ctx.add(Value::Object(resource)));
    }
    assigned
        .child("representedOrganization")
        .and_then(|o| organization(ctx, o))
}

/// An `assignedAuthor` or `assignedEntity` (or a performer's) as a Practitioner, with a
/// PractitionerRole when it names a specialty or an organisation. Returns the Practitioner's
/// reference; None when it names no person.
pub(crate) fn practitioner(ctx: &mut Ctx, assigned: Node) -> Option<String> {
    let person = assigned.child("assignedPerson");
    let names: Vec<Value> = person
        .map(|p| {
            p.children_named("name")
                .into_iter()
                .filter_map(human_name)
                .collect()
        })
        .unwrap_or_default();
    let ids = identifiers(assigned);
    if names.is_empty() && ids.is_empty() {
        return None;
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Practitioner".into());
    resource.insert("id".into(), ctx.id_for("Practitioner", assigned).into());
    put_list(&mut resource, "identifier", ids);
    put_list(&mut resource, "name", names);
    put_contacts(&mut resource, assigned);
    let reference = ctx.add(Value::Object(resource));

    let specialty = assigned
        .child("code")
        .and_then(|c| concept(c, &ctx.narrative));
    let organization = assigned
        .child("representedOrganization")
        .and_then(|o| organization(ctx, o));
    if specialty.is_some() || organization.is_some() {
        let mut role = Map::new();
        role.insert("resourceType".into(), "PractitionerRole".into());
        role.insert(
            "id".into(),
            crate::stable_id(
                "PractitionerRole",
                &format!("{reference}|{}", organization.as_deref().unwrap_or("")),
            )
            .into(),
        );
        role.insert("practitioner".into(), json!({ "reference": reference }));
        put(
            &mut role,
            "organization",
            organization.map(|o| json!({ "reference": o })),
        );
        put(&mut role, "specialty", specialty.map(|s| json!([s])));
        ctx.add(Value::Object(role));
    }
    Some(reference)
}

/// A `representedOrganization` (or custodian, provider or location organisation) as an
/// Organization; None when it has neither a name nor an id.
pub(crate) fn organization(ctx: &mut Ctx, org: Node) -> Option<String> {
    let name = org
        .child("name")
        .map(|n| n.text_content())
        .filter(|n| !n.is_empty());
    let ids = identifiers(org);
    if name.is_none() && ids.is_empty() {
        return None;
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Organization".into());
    resource.insert("id".into(), ctx.id_for("Organization", org).into());
    put_list(&mut resource, "identifier", ids);
    put(&mut resource, "name", name.map(Value::from));
    put_contacts(&mut resource, org);
    Some(ctx.add(Value::Object(resource)))
}

/// `encompassingEncounter` as an Encounter.
fn encompassing_encounter(ctx: &mut Ctx, encounter: Node) -> String {
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "Encounter".into());
    resource.insert("id".into(), ctx.id_for("Encounter", encounter).into());
    put_list(&mut resource, "identifier", identifiers(encounter));
    let when = When::of(encounter.child("effectiveTime"));
    // A visit with an end is over; one without is still going on (an admission, say).
    let finished = when.end.is_some() || when.at.is_some();
    resource.insert(
        "status".into(),
        if finished { "finished" } else { "in-progress" }.into(),
    );
    resource.insert("class".into(), encounter_class(encounter.child("code")));
    put(
        &mut resource,
        "type",
        encounter
            .child("code")
            .and_then(|c| concept(c, &ctx.narrative))
            .map(|c| json!([c])),
    );
    resource.insert("subject".into(), ctx.subject());
    put(&mut resource, "period", when.period());
    let participants: Vec<Value> = encounter
        .children_named("encounterParticipant")
        .into_iter()
        .chain(path(encounter, &["responsibleParty"]))
        .filter_map(|p| {
            let assigned = p.child("assignedEntity")?;
            let reference = practitioner(ctx, assigned)?;
            Some(json!({ "individual": { "reference": reference } }))
        })
        .collect();
    put_list(&mut resource, "participant", participants);
    if let Some(disposition) = encounter
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "dischargeDispositionCode")
        .and_then(|d| concept(d, &ctx.narrative))
    {
        resource.insert(
            "hospitalization".into(),
            json!({ "dischargeDisposition": disposition }),
        );
    }
    let location = path(encounter, &["location", "healthCareFacility"]);
    if let Some(facility) = location {
        let name = path(facility, &["location", "name"])
            .or_else(|| path(facility, &["serviceProviderOrganization", "name"]))
            .map(|n| n.text_content())
            .filter(|n| !n.is_empty());
        if let Some(name) = name {
            resource.insert(
                "location".into(),
                json!([{ "location": { "display": name } }]),
            );
        }
        if let Some(org) = facility
            .child("serviceProviderOrganization")
            .and_then(|o| organization(ctx, o))
        {
            resource.insert("serviceProvider".into(), json!({ "reference": org }));
        }
    }
    ctx.add(Value::Object(resource))
}

/// The encounter class, which FHIR requires: from an ActCode code if the document gives one,
/// else "ambulatory" (the C-CDA on FHIR default for a visit of unknown kind).
pub(crate) fn encounter_class(code: Option<Node>) -> Value {
    const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    let given = code.and_then(|c| {
        let system = c.attr("codeSystem")?;
        let code = c.attr("code")?;
        (system == "2.16.840.1.113883.5.4").then(|| {
            json!({
                "system": ACT_CODE,
                "code": code,
                "display": c.attr("displayName").unwrap_or(code),
            })
        })
    });
    given.unwrap_or_else(|| json!({ "system": ACT_CODE, "code": "AMB", "display": "ambulatory" }))
}

/// The document as a DocumentReference, and its original XML as the Binary it points to. The
/// Binary itself is added by the caller, which has the bytes ([`crate::original`]).
fn document_reference(
    ctx: &mut Ctx,
    root: Node,
    authors: Vec<Value>,
    custodian: Option<String>,
    authenticator: Option<String>,
) {
    let title = root
        .child("title")
        .map(|t| t.text_content())
        .filter(|t| !t.is_empty());
    let doc_type = root.child("code").and_then(|c| concept(c, &ctx.narrative));
    let title = title.or_else(|| {
        doc_type
            .as_ref()
            .and_then(|t| t["text"].as_str())
            .map(str::to_string)
    });
    let id = ctx
        .document
        .trim_start_matches("DocumentReference/")
        .to_string();
    let mut resource = Map::new();
    resource.insert("resourceType".into(), "DocumentReference".into());
    resource.insert("id".into(), id.into());
    put(
        &mut resource,
        "masterIdentifier",
        root.child("id").and_then(datatypes::identifier),
    );
    resource.insert("status".into(), "current".into());
    resource.insert("docStatus".into(), "final".into());
    put(&mut resource, "type", doc_type);
    resource.insert(
        "category".into(),
        json!([{ "coding": [{
            "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
            "code": "clinical-note",
            "display": "Clinical Note"
        }] }]),
    );
    resource.insert("subject".into(), ctx.subject());
    // `date` is an instant: only a time with its zone qualifies.
    if let Some(time) = ctx.document_time.as_ref().filter(|t| t.len() > 10) {
        resource.insert("date".into(), time.clone().into());
    }
    put_list(&mut resource, "author", authors);
    put(
        &mut resource,
        "authenticator",
        authenticator.map(|r| json!({ "reference": r })),
    );
    put(
        &mut resource,
        "custodian",
        custodian.map(|r| json!({ "reference": r })),
    );
    put(&mut resource, "description", title.clone().map(Value::from));
    if let Some(confidentiality) = root
        .child("confidentialityCode")
        .and_then(|c| concept(c, &ctx.narrative))
    {
        resource.insert("securityLabel".into(), json!([confidentiality]));
    }
    let file_title = format!(
        "{}.xml",
        title.as_deref().unwrap_or("Health record document")
    );
    let mut attachment = json!({
        "contentType": "application/xml",
        "url": format!("Binary/{}", crate::binary_id(&ctx.document_key)),
        "title": file_title,
    });
    if let Some(time) = &ctx.document_time {
        attachment["creation"] = time.clone().into();
    }
    resource.insert(
        "content".into(),
        json!([{
            "attachment": attachment,
            "format": {
                "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                "code": format_code(root),
            }
        }]),
    );
    let mut context = Map::new();
    if let Some(encounter) = &ctx.encounter {
        context.insert("encounter".into(), json!([{ "reference": encounter }]));
    }
    let service = When::of(path(
        root,
        &["documentationOf", "serviceEvent", "effectiveTime"],
    ));
    if let Some(period) = service
        .period()
        .or_else(|| ctx.document_time.as_ref().map(|t| json!({ "start": t })))
    {
        context.insert("period".into(), period);
    }
    if !context.is_empty() {
        resource.insert("context".into(), Value::Object(context));
    }
    ctx.add(Value::Object(resource));
}

/// The IHE format code of a C-CDA: R2.1 or R1.1, structured or not.
fn format_code(root: Node) -> &'static str {
    let unstructured = path(root, &["component", "nonXMLBody"]).is_some();
    let r21 = root.children_named("templateId").iter().any(|t| {
        t.attr("extension")
            .is_some_and(|e| e.starts_with("2015") || e.starts_with("2014"))
    });
    match (unstructured, r21) {
        (true, true) => "urn:hl7-org:sdwg:ccda-nonXMLBody:2.1",
        (true, false) => "urn:hl7-org:sdwg:ccda-nonXMLBody:1.1",
        (false, true) => "urn:hl7-org:sdwg:ccda-structuredBody:2.1",
        (false, false) => "urn:hl7-org:sdwg:ccda-structuredBody:1.1",
    }
}
