//! The dashboard over HTTP: widgets load on their own with the imported patient's facts, the
//! layout can be customised and is kept, and each user sees only their own records.

mod common;

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
    assert!(page.body.contains("hx-get=\"/dashboard/widgets/vitals\""));

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
    assert_eq!(
        alice.get("/dashboard/widgets/no-such-widget").await.status,
        StatusCode::NOT_FOUND
    );

    // Another member sees none of it.
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1").await;
    assert!(bob.get("/").await.body.contains("You have no records yet"));
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
    reply.assert_redirect("/");
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
