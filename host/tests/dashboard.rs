//! The dashboard over HTTP: widgets load on their own with the imported patient's facts, the
//! layout can be customised and is kept, and each user sees only their own records.

use crate::common;

use common::TestServer;
use reqwest::StatusCode;

/// The order in which widget sections appear on the dashboard.
fn widget_order(body: &str) -> Vec<String> {
    body.match_indices("id=\"widget-")
        .filter_map(|(at, _)| {
            let rest = &body[at + "id=\"widget-".len()..];
            let id = &rest[..rest.find('"')?];
            (!id.ends_with("-title")).then(|| id.to_string())
        })
        .collect()
}

#[tokio::test]
async fn widgets_show_the_patients_vitals_labs_visits_and_lists() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, common::PARIS).await;
    let page = alice.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(widget_order(&page.body)[..3], ["summary", "vitals", "labs"]);
    assert!(
        page.body
            .contains("hx-get=\"/people/alice/dashboard/widgets/vitals\"")
    );

    let summary = alice.get("/dashboard/widgets/summary").await;
    assert!(summary.body.contains("Paris Casper"), "{}", summary.body);
    assert!(
        summary.body.contains("104 records from 1 source"),
        "{}",
        summary.body
    );

    // Weight with a real chart (an SVG with an accessible title and one point per value).
    let vitals = alice.get("/dashboard/widgets/vitals").await;
    assert!(vitals.body.contains(">Weight</a>"), "{}", vitals.body);
    assert!(vitals.body.contains("<svg"), "{}", vitals.body);
    assert!(vitals.body.contains("Weight over time"));
    assert!(
        vitals.body.contains("<strong>93.83 kg</strong>"),
        "{}",
        vitals.body
    );

    let labs = alice.get("/dashboard/widgets/labs").await;
    assert!(labs.body.contains("Cholesterol"), "{}", labs.body);
    let visits = alice.get("/dashboard/widgets/encounters").await;
    assert!(
        visits.body.contains("/history/encounter/"),
        "{}",
        visits.body
    );
    let conditions = alice.get("/dashboard/widgets/conditions").await;
    assert!(conditions.body.contains("obesity"), "{}", conditions.body);
    let shots = alice.get("/dashboard/widgets/immunizations").await;
    assert!(shots.body.contains("Influenza"), "{}", shots.body);
    assert!(shots.body.contains("5 doses since 2012"), "{}", shots.body);
    assert_eq!(
        shots.body.matches("<li data-ref=").count(),
        3,
        "one line per vaccine"
    );
    assert_eq!(
        alice.get("/dashboard/widgets/no-such-widget").await.status,
        StatusCode::NOT_FOUND
    );

    // Another member sees none of it.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    assert!(bob.get("/").await.body.contains("has no records yet"));
    let vitals = bob.get("/dashboard/widgets/vitals").await;
    assert!(
        vitals.body.contains("No vital signs recorded"),
        "{}",
        vitals.body
    );
    assert!(
        !bob.get("/dashboard/widgets/summary")
            .await
            .body
            .contains("Paris")
    );
}

#[tokio::test]
async fn the_layout_can_be_chosen_ordered_and_is_kept() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, common::PARIS).await;
    let reply = alice
        .submit(
            "/dashboard/customize",
            "/dashboard/customize",
            &[
                ("show", "labs"),
                ("position_labs", "2"),
                ("show", "summary"),
                ("position_summary", "1"),
                ("show", "vitals"),
                ("position_vitals", "3"),
            ],
        )
        .await;
    reply.assert_redirect("/people/alice/");
    assert_eq!(
        widget_order(&alice.get("/").await.body),
        ["summary", "labs", "vitals"]
    );
    // The form shows the saved choice, hidden widgets unticked.
    let form = alice.get("/dashboard/customize").await;
    assert!(
        form.body.contains("value=\"types\" id=\"show-types\">"),
        "{}",
        form.body
    );
    // Another user's layout is their own.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    server.import_synthea("bob", common::PARIS).await;
    assert_eq!(widget_order(&bob.get("/").await.body).len(), 9);
}

/// Prescriptions as Epic sends them name their medicine by reference (with a display) or carry
/// it inside (`contained`); the lists, search and the doctor's summary must name the medicine.
/// Imaging studies without a procedure are named by what was imaged. Records stored before
/// Fasten could read them that way are derived again by an upgrade.
#[tokio::test]
async fn medicines_and_images_are_named_everywhere_also_after_an_upgrade() {
    let (server, alice) = TestServer::with_admin().await;
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1",
                "name": [{"given": ["Ann"], "family": "Epic"}]}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "active",
                "intent": "order", "subject": {"reference": "Patient/p1"},
                "authoredOn": "2024-03-01",
                "category": [{"coding": [{"code": "outpatient", "display": "Outpatient"}],
                              "text": "Outpatient"}],
                "medicationReference": {"reference": "Medication/eA1",
                    "display": "atorvastatin (LIPITOR) 40 MG tablet"},
                "dosageInstruction": [{"text": "Take 1 tablet by mouth daily"}]}},
            {"resource": {"resourceType": "MedicationStatement", "id": "s1", "status": "active",
                "subject": {"reference": "Patient/p1"},
                "contained": [{"resourceType": "Medication", "id": "med1",
                    "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": "197361", "display": "amlodipine 5 MG Oral Tablet"}]}}],
                "medicationReference": {"reference": "#med1"}}},
            {"resource": {"resourceType": "ImagingStudy", "id": "x1", "status": "available",
                "subject": {"reference": "Patient/p1"}, "started": "2024-02-01",
                "series": [{"uid": "1.2.3", "modality": {"code": "US", "display": "Ultrasound"},
                    "bodySite": {"code": "261179002", "display": "thoracic"}}]}}
        ]
    });
    server
        .import_bundle(common::ADMIN, "epic.json", &bundle)
        .await;

    let named_everywhere = |alice: common::Client| async move {
        let widget = alice.get("/dashboard/widgets/medications").await.body;
        assert!(
            widget.contains("atorvastatin (LIPITOR) 40 MG tablet"),
            "{widget}"
        );
        assert!(widget.contains("amlodipine 5 MG Oral Tablet"), "{widget}");
        assert!(!widget.contains("Outpatient"), "{widget}");
        let summary = alice.get("/summary").await.body;
        assert!(summary.contains("atorvastatin (LIPITOR) 40 MG tablet"));
        assert!(summary.contains("amlodipine 5 MG Oral Tablet"));
        let found = alice.get("/search?q=amlodipine").await.body;
        assert!(found.contains("/explore/MedicationStatement/s1"), "{found}");
        let images = alice.get("/explore/ImagingStudy").await.body;
        assert!(images.contains("Ultrasound (thoracic)"), "{images}");
    };
    named_everywhere(alice).await;

    // As stored by a version before this one: titled by the category or not at all, without the
    // contained medicine's code or search text; then the upgrade migration runs at start-up.
    let db = &server.state.db;
    for statement in [
        "UPDATE resources SET sort_title = 'Outpatient' WHERE resource_id = 'm1'",
        "UPDATE resources SET sort_title = NULL WHERE resource_id IN ('s1', 'x1')",
        "DELETE FROM resource_tokens WHERE resource_id = 's1' AND kind = 'code'",
        "DELETE FROM search_docs WHERE resource_type LIKE 'Medication%'",
        "DROP TABLE rederive_pending",
        "DELETE FROM _sqlx_migrations WHERE description LIKE 'rederive%'",
    ] {
        sqlx::query(statement).execute(db).await.unwrap();
    }
    let data_dir = server.stop().await;
    let server = TestServer::start_in(data_dir, |_| {}).await;
    let alice = server.client();
    alice.login(common::ADMIN, common::ADMIN_PASSWORD).await;
    named_everywhere(alice).await;
    let db = &server.state.db;
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rederive_pending")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(pending, 0, "the list is emptied once done");
    let code: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM resource_tokens WHERE resource_id = 's1' AND kind = 'code'
         AND value = 'http://www.nlm.nih.gov/research/umls/rxnorm|197361'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(code, 1);
}

/// Roberto Graham died in 1987, and his last labs sent some tests twice on one day.
#[tokio::test]
async fn the_dashboard_reads_right_for_a_late_relative() {
    let (server, alice) = TestServer::with_admin().await;
    server
        .import_synthea(
            common::ADMIN,
            "Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json",
        )
        .await;
    let summary = alice.get("/dashboard/widgets/summary").await.body;
    assert!(
        summary.contains("born 3 Oct 1920, died 19 Oct 1987"),
        "{summary}"
    );
    assert!(!summary.contains("years)"), "no age for someone who died");

    let labs = alice.get("/dashboard/widgets/labs").await.body;
    let rows = labs.matches("<tr>").count();
    assert_eq!(rows, 10, "{labs}");
    for test in ["Chloride", "Potassium", "Urea Nitrogen"] {
        assert_eq!(labs.matches(&format!(">{test}</a>")).count(), 1, "{labs}");
    }
}

/// A prescription that points to a separate Medication (no display) is named by it, also when
/// the Medication comes in a later import than the prescription.
#[tokio::test]
async fn a_medicine_stored_apart_names_its_prescriptions() {
    let (server, alice) = TestServer::with_admin().await;
    let request = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "id": "rx1", "status": "active",
            "intent": "order", "authoredOn": "2024-05-01",
            "medicationReference": {"reference": "Medication/med-9"}}}
    ]});
    server
        .import_bundle(common::ADMIN, "request.json", &request)
        .await;
    let widget = alice.get("/dashboard/widgets/medications").await.body;
    assert!(
        widget.contains(">MedicationRequest</a>"),
        "not named yet: {widget}"
    );

    let medication = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Medication", "id": "med-9",
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "314076", "display": "lisinopril 10 MG Oral Tablet"}]}}}
    ]});
    server
        .import_bundle(common::ADMIN, "medication.json", &medication)
        .await;
    let widget = alice.get("/dashboard/widgets/medications").await.body;
    assert!(
        widget.contains(">lisinopril 10 MG Oral Tablet</a>"),
        "{widget}"
    );
    let card = alice.get("/explore/MedicationRequest/rx1").await.body;
    assert!(card.contains("lisinopril 10 MG Oral Tablet"), "{card}");
    assert!(
        alice
            .get("/summary")
            .await
            .body
            .contains("<strong>lisinopril 10 MG Oral Tablet</strong>")
    );
    let found = alice.get("/search?q=lisinopril").await.body;
    assert!(found.contains("/explore/MedicationRequest/rx1"), "{found}");

    // Written the other way round, in one import: named at once.
    let both = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "id": "rx2", "status": "active",
            "intent": "order", "medicationReference": {"reference": "Medication/med-10"}}},
        {"resource": {"resourceType": "Medication", "id": "med-10",
            "code": {"text": "metformin 500 MG Oral Tablet"}}}
    ]});
    server
        .import_bundle(common::ADMIN, "both.json", &both)
        .await;
    let widget = alice.get("/dashboard/widgets/medications").await.body;
    assert!(
        widget.contains(">metformin 500 MG Oral Tablet</a>"),
        "{widget}"
    );
}

/// A stored record that no longer reads as FHIR does not stop the upgrade, and is kept as it was.
#[tokio::test]
async fn re_deriving_keeps_a_record_that_no_longer_reads() {
    let (server, _alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, common::PARIS).await;
    let db = &server.state.db;
    for statement in [
        "UPDATE resources SET json = '{\"resourceType\": \"NoSuchType\"}'
         WHERE resource_id = (SELECT MIN(resource_id) FROM resources WHERE resource_type = 'Condition')",
        "INSERT INTO rederive_pending (source_id, resource_type, resource_id)
         SELECT source_id, resource_type, resource_id FROM resources
         WHERE resource_type IN ('Condition', 'Immunization')",
    ] {
        sqlx::query(statement).execute(db).await.unwrap();
    }
    let before: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT json, sort_title FROM resources WHERE json LIKE '%NoSuchType%'")
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(before.len(), 1);
    let rederived = fasten::fhir::ingest::rederive_pending(db).await.unwrap();
    let conditions = server
        .stored(server.user_id(common::ADMIN).await, "Condition")
        .await;
    let immunizations = server
        .stored(server.user_id(common::ADMIN).await, "Immunization")
        .await;
    assert_eq!(
        rederived as usize,
        conditions.len() - 1 + immunizations.len()
    );
    let after: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT json, sort_title FROM resources WHERE json LIKE '%NoSuchType%'")
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(after, before, "kept as it was");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rederive_pending")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(pending, 0);
}
