//! One read model: Profile, the dashboard widgets, "Summary for my doctor" and the IPS document
//! say the same thing about the same records. Lists are compared by their `data-list` and
//! `data-ref` attributes, not by words.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common;
use common::{Client, TestServer};

/// The lists Profile shows, with the LOINC code of the same IPS section.
const LISTS: &[(&str, &str)] = &[
    ("conditions", "11450-4"),
    ("medications", "10160-0"),
    ("allergies", "48765-2"),
    ("immunizations", "11369-6"),
];

/// The HTML of the element carrying `data-list="name"`, up to the end of that list.
fn list_html<'a>(page: &'a str, name: &str) -> Option<&'a str> {
    let start = page.find(&format!("data-list=\"{name}\""))?;
    let rest = &page[start..];
    Some(&rest[..rest.find("</ul>").unwrap_or(rest.len())])
}

/// Every `data-ref` in a list: each line's record and the records it stands for.
fn refs(list: &str) -> BTreeSet<String> {
    attribute_values(list, " data-ref=\"").into_iter().collect()
}

/// The record of each line (`<li data-ref>`), in order.
fn line_refs(list: &str) -> Vec<String> {
    attribute_values(list, "<li data-ref=\"")
}

fn attribute_values(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &html[at + prefix.len()..];
            // As the browser reads the attribute: minijinja escapes "/" in what it prints.
            rest[..rest.find('"').unwrap()]
                .replace("&#x2f;", "/")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The records of each IPS section, as "Type/id", by section code.
fn ips_sections(bundle: &Value) -> Vec<(String, BTreeSet<String>)> {
    let entries = bundle["entry"].as_array().unwrap();
    let by_url = |url: &str| {
        let resource = &entries
            .iter()
            .find(|e| e["fullUrl"] == url)
            .unwrap_or_else(|| panic!("{url} is not in the bundle"))["resource"];
        format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        )
    };
    let composition = &entries[0]["resource"];
    composition["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|section| {
            let code = section["code"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_string();
            let records = section["entry"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|e| by_url(e["reference"].as_str().unwrap()))
                .collect();
            (code, records)
        })
        .collect()
}

/// Checks that Profile, the dashboard widgets, the summary page and the IPS document agree on
/// the person's current lists, and returns Profile's sets.
async fn assert_pages_agree(client: &Client, label: &str) -> Vec<BTreeSet<String>> {
    let profile = client.get("/profile").await.body;
    let summary = client.get("/summary").await.body;
    let ips: Value = serde_json::from_str(&client.get("/summary/ips.json").await.body).unwrap();
    let sections = ips_sections(&ips);
    let mut found = Vec::new();
    for (list, code) in LISTS {
        let on_profile = list_html(&profile, list).map(refs).unwrap_or_default();
        let in_ips = sections
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, records)| records.clone())
            .unwrap();
        assert_eq!(
            on_profile, in_ips,
            "{label}: {list} on Profile and in the IPS"
        );
        let on_summary = list_html(&summary, list).map(refs).unwrap_or_default();
        assert_eq!(
            on_profile, on_summary,
            "{label}: {list} on Profile and the summary page"
        );

        let widget = client.get(&format!("/dashboard/widgets/{list}")).await.body;
        let widget_lines = list_html(&widget, list).map(line_refs).unwrap_or_default();
        let profile_lines = list_html(&profile, list).map(line_refs).unwrap_or_default();
        assert!(
            profile_lines.starts_with(&widget_lines),
            "{label}: the {list} widget {widget_lines:?} is not the start of Profile's {profile_lines:?}"
        );
        assert_eq!(
            widget_lines.is_empty(),
            profile_lines.is_empty(),
            "{label}: {list}"
        );
        found.push(on_profile);
    }
    found
}

#[tokio::test]
async fn each_synthea_patient_has_the_same_current_lists_on_every_page() {
    let dir = common::synthea("");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 5);
    let mut non_empty = [0usize; 4];
    for file in files {
        let label = file.file_name().unwrap().to_string_lossy().into_owned();
        let (server, alice) = TestServer::with_admin().await;
        server.import_path(common::ADMIN, &file).await;
        let lists = assert_pages_agree(&alice, &label).await;
        for (count, list) in non_empty.iter_mut().zip(&lists) {
            *count += usize::from(!list.is_empty());
        }
    }
    // The comparison compared something: the patients have current problems, medicines,
    // vaccinations (and allergies are rarer in Synthea).
    assert!(
        non_empty[0] >= 3 && non_empty[1] >= 2 && non_empty[3] >= 3,
        "{non_empty:?}"
    );
}

#[tokio::test]
async fn every_status_edge_is_decided_once() {
    let (server, alice) = TestServer::with_admin().await;
    let patient = json!({"resourceType": "Patient", "id": "edge", "name": [{"family": "Edge", "given": ["Eda"]}]});
    let subject = json!({"reference": "Patient/edge"});
    let coded = |code: &str| json!({"coding": [{"code": code}]});
    let condition = |id: &str, extra: Value| {
        let mut c = json!({"resourceType": "Condition", "id": id, "subject": subject,
                           "code": {"text": format!("Problem {id}")}});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let medication = |id: &str, status: &str| {
        json!({"resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
               "subject": subject, "medicationCodeableConcept": {"text": format!("Medicine {id}")}})
    };
    let allergy = |id: &str, extra: Value| {
        let mut a = json!({"resourceType": "AllergyIntolerance", "id": id, "patient": subject,
                           "code": {"text": format!("Allergen {id}")}});
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a
    };
    let dose = |id: &str, status: &str, date: &str| {
        json!({"resourceType": "Immunization", "id": id, "status": status, "patient": subject,
               "occurrenceDateTime": date, "vaccineCode": {"text": "Influenza"}})
    };
    let resources = vec![
        patient.clone(),
        condition("c-active", json!({"clinicalStatus": coded("active")})),
        condition("c-no-status", json!({})),
        condition(
            "c-abated",
            json!({"clinicalStatus": coded("active"), "abatementDateTime": "2024-01-01"}),
        ),
        condition("c-resolved", json!({"clinicalStatus": coded("resolved")})),
        condition(
            "c-error",
            json!({"clinicalStatus": coded("active"), "verificationStatus": coded("entered-in-error")}),
        ),
        medication("m-active", "active"),
        medication("m-on-hold", "on-hold"),
        medication("m-stopped", "stopped"),
        medication("m-error", "entered-in-error"),
        allergy("a-active", json!({"clinicalStatus": coded("active")})),
        allergy("a-resolved", json!({"clinicalStatus": coded("resolved")})),
        allergy("a-refuted", json!({"verificationStatus": coded("refuted")})),
        dose("i-1", "completed", "2022-10-01"),
        dose("i-2", "completed", "2023-10-01"),
        dose("i-not-done", "not-done", "2024-10-01"),
        dose("i-error", "entered-in-error", "2024-11-01"),
    ];
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()});
    server
        .import_bundle(common::ADMIN, "edges.json", &bundle)
        .await;

    let lists = assert_pages_agree(&alice, "edges").await;
    let set = |refs: &[&str]| refs.iter().map(|r| r.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        lists[0],
        set(&["Condition/c-active", "Condition/c-no-status"])
    );
    assert_eq!(
        lists[1],
        set(&["MedicationRequest/m-active", "MedicationRequest/m-on-hold"])
    );
    assert_eq!(lists[2], set(&["AllergyIntolerance/a-active"]));
    assert_eq!(lists[3], set(&["Immunization/i-1", "Immunization/i-2"]));

    // The paused medicine says so, in words.
    let profile = alice.get("/profile").await.body;
    let medications = list_html(&profile, "medications").unwrap();
    assert!(medications.contains("(on hold)"), "{medications}");
}
