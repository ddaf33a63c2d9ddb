//! Medical history, visit and condition pages, and the profile, checked against a real Synthea
//! patient the way a family member would read them, with isolation between users.

use crate::common;

use common::{Client, TestServer};
use reqwest::StatusCode;

const PARIS: &str = "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json";
const FLETCHER: &str = "Fletcher_Hyatt_fe0562b5-f517-4951-8366-32fdab088930.json";
/// Paris's newest visit: a check-up on 1 Oct 2020 where obesity was diagnosed.
const NEWEST_VISIT: &str = "03dad44d-1b3f-43af-a033-da99a273f247";
/// His emergency room visit of 1 Jul 2012: a thigh laceration, sutured.
const ER_VISIT: &str = "3a21c2c1-22eb-4ba4-b529-88da37b50fe6";
const LACERATION: &str = "5d73bc3f-7f5d-4353-bbcb-379bc3068332";

async fn page(client: &Client, path: &str) -> String {
    let reply = client.get(path).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    reply.body
}

/// The part of a page from the element with this id on, to check what one section lists.
fn section<'a>(body: &'a str, id: &str) -> &'a str {
    let start = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let rest = &body[start..];
    let end = rest.find("</section>").unwrap_or(rest.len());
    &rest[..end]
}

#[tokio::test]
async fn history_lists_visits_newest_first_with_what_each_produced() {
    let (server, alice) = TestServer::with_admin().await;
    assert!(page(&alice, "/history").await.contains("Nothing here yet"));
    server.import_synthea(common::ADMIN, PARIS).await;

    let history = page(&alice, "/history").await;
    assert!(history.contains("7 visits"), "{history}");
    let newest = history.find("1 Oct 2020").expect("newest visit's date");
    let oldest = history.find("1 Jul 2012").expect("oldest visit's date");
    assert!(newest < oldest, "newest first");
    assert!(history.contains("Encounter for check up"));
    assert!(history.contains("Emergency room admission"));
    assert!(
        history.contains("Encounter for check up</a>"),
        "SNOMED tags are not shown"
    );
    assert!(history.contains("BERKSHIRE MEDICAL CENTER INC - 1"));
    assert!(history.contains("Lloyd Effertz"));
    assert!(history.contains(&format!("/history/encounter/{NEWEST_VISIT}")));
    // The linked records show under their visit.
    assert!(history.contains("Laceration of thigh"));
    assert!(history.contains("Suture open wound"));
    assert!(!history.contains("Claim"), "billing records are left out");

    // The emergency visit's page lists the condition and procedure that reference it, linked to
    // Explore, and the prescription written there.
    let visit = page(&alice, &format!("/history/encounter/{ER_VISIT}")).await;
    assert!(visit.contains("Emergency room admission"), "{visit}");
    assert!(visit.contains("Emergency"));
    assert!(visit.contains("1 Jul 2012"));
    assert!(visit.contains("Conditions"));
    assert!(visit.contains(&format!("/explore/Condition/{LACERATION}")));
    assert!(visit.contains("Laceration of thigh"));
    assert!(visit.contains("Procedures"));
    assert!(visit.contains("Suture open wound"));
    assert!(visit.contains("Acetaminophen 325 MG Oral Tablet"));

    // The check-up's page shows its measurements with their values.
    let checkup = page(&alice, &format!("/history/encounter/{NEWEST_VISIT}")).await;
    assert!(
        checkup.contains("Body mass index 30+ - obesity"),
        "{checkup}"
    );
    assert!(checkup.contains("Results"));
    assert!(checkup.contains("Body Height"));
    assert!(checkup.contains("Influenza, seasonal, injectable, preservative free"));
}

#[tokio::test]
async fn filters_narrow_the_history() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, PARIS).await;

    let history = page(&alice, "/history").await;
    for year in ["2020", "2018", "2016", "2014", "2012"] {
        assert!(
            history.contains(&format!("<option value=\"{year}\">{year}</option>")),
            "{year} offered: {history}"
        );
    }
    let year = page(&alice, "/history?year=2016&type=&condition=").await;
    assert!(year.contains("2 visits match"), "{year}");
    assert!(year.contains("25 Aug 2016"));
    assert!(year.contains("22 Sep 2016"));
    assert!(year.contains("Viral sinusitis"));
    assert!(!year.contains("1 Oct 2020"));
    assert!(year.contains("<option value=\"2016\" selected>"));

    let emergencies = page(
        &alice,
        "/history?type=Emergency+room+admission+%28procedure%29",
    )
    .await;
    assert!(emergencies.contains("1 visit matches"), "{emergencies}");
    assert!(emergencies.contains("1 Jul 2012"));

    let laceration = page(&alice, &format!("/history?condition={LACERATION}")).await;
    assert!(laceration.contains("1 visit matches"), "{laceration}");
    assert!(laceration.contains(&format!("/history/encounter/{ER_VISIT}")));
    assert!(!laceration.contains(&format!("/history/encounter/{NEWEST_VISIT}")));

    let nothing = page(&alice, "/history?year=1999").await;
    assert!(nothing.contains("No visits match these filters"));
}

#[tokio::test]
async fn a_condition_page_lists_its_visits() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, PARIS).await;

    let condition = page(&alice, &format!("/conditions/{LACERATION}")).await;
    assert!(
        condition.contains("<h1>Laceration of thigh</h1>"),
        "{condition}"
    );
    assert!(condition.contains("resolved"));
    assert!(condition.contains("1 Jul 2012"), "onset");
    assert!(condition.contains("15 Jul 2012"), "abatement");
    let visits = section(&condition, "condition-visits");
    assert!(visits.contains(&format!("/history/encounter/{ER_VISIT}")));
    assert!(visits.contains("Emergency room admission"));
    assert!(
        condition.contains("Suture open wound"),
        "the procedure done for it"
    );
    assert_eq!(
        alice.get("/conditions/no-such-condition").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn long_histories_are_paged() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, FLETCHER).await;
    let first = page(&alice, "/history").await;
    assert!(first.contains("127 visits"), "{first}");
    assert!(first.contains("Page 1 of 7"));
    assert_eq!(first.matches("<article class=\"encounter\"").count(), 20);
    assert!(first.contains("page=2"));
    let last = page(&alice, "/history?page=7").await;
    assert_eq!(last.matches("<article class=\"encounter\"").count(), 7);
    assert!(last.contains("Page 7 of 7"));
}

#[tokio::test]
async fn the_profile_shows_who_and_the_short_lists() {
    let (server, alice) = TestServer::with_admin().await;
    assert!(page(&alice, "/profile").await.contains("Nothing here yet"));
    assert!(page(&alice, "/").await.contains(">Profile</a>"));
    server.import_synthea(common::ADMIN, PARIS).await;

    let profile = page(&alice, "/profile").await;
    let about = section(&profile, "demographics");
    assert!(about.contains("Paris Casper"), "{about}");
    assert!(about.contains("24 Feb 1972 (age "));
    assert!(about.contains("from Uploaded files (FHIR)"));
    assert!(about.contains("Male"));
    assert!(about.contains("204 Stehr Row, Adams"));
    assert!(about.contains("555-355-3506"));
    assert!(about.contains("English"));
    assert!(about.contains("Medical Record Number"));
    assert!(!about.contains("999-37-3544"), "SSN is masked");

    // One line per vaccine, newest first: which vaccines, how many doses, the latest when.
    let immunizations = section(&profile, "immunizations");
    assert_eq!(
        immunizations.matches("<li data-ref=").count(),
        3,
        "{immunizations}"
    );
    let flu = immunizations
        .find("preservative free</a> <strong>5 doses since 2012</strong>")
        .expect("five flu shots");
    let latest_flu = immunizations.find("1 Oct 2020").expect("latest flu shot");
    let hep = immunizations
        .find("Hep A, adult</a> <strong>2 doses since 2012</strong>")
        .expect("two Hep A doses");
    let td = immunizations.find("Td (adult)").expect("one Td");
    assert!(
        flu < latest_flu && latest_flu < hep && hep < td,
        "newest first"
    );
    assert!(
        !immunizations.contains("13 Sep 2012"),
        "only the latest dose's date"
    );

    let conditions = section(&profile, "conditions");
    assert!(
        conditions.contains("Body mass index 30+ - obesity"),
        "{conditions}"
    );
    assert!(!conditions.contains("Laceration of thigh"), "resolved");
    assert!(!conditions.contains("Viral sinusitis"), "resolved");
    // His one prescription was stopped.
    let medications = section(&profile, "medications");
    assert!(
        medications.contains("No active prescriptions"),
        "{medications}"
    );
    assert!(section(&profile, "allergies").contains("No allergies"));
}

#[tokio::test]
async fn allergies_and_active_medications_are_listed() {
    let (server, alice) = TestServer::with_admin().await;
    server
        .import_synthea(
            common::ADMIN,
            "Norma_Pagan_c5c29bde-5877-42ae-b786-17ce70275691.json",
        )
        .await;
    let profile = page(&alice, "/profile").await;
    let allergies = section(&profile, "allergies");
    assert!(allergies.contains("Allergy to mould"), "{allergies}");
    assert!(allergies.contains("low risk"));
    let medications = section(&profile, "medications");
    assert!(
        medications.contains("Trinessa 28 Day Pack"),
        "{medications}"
    );
    assert!(medications.contains("Fexofenadine hydrochloride 30 MG Oral Tablet"));
    assert!(!medications.contains("Amoxicillin"), "stopped");
    let conditions = section(&profile, "conditions");
    assert!(conditions.contains("Perennial allergic rhinitis"));
    assert!(!conditions.contains("Otitis media"));
}

/// Only doses given count (the read model's current vaccinations, as on the summary): a dose
/// recorded by mistake or not given is left out of Profile, though Explore keeps it.
#[tokio::test]
async fn vaccines_count_only_the_doses_given() {
    let (server, alice) = TestServer::with_admin().await;
    let dose = |id: &str, status: &str, date: &str| {
        serde_json::json!({"resource": {"resourceType": "Immunization", "id": id,
            "status": status, "occurrenceDateTime": date,
            "vaccineCode": {"text": "Influenza"}, "patient": {"reference": "Patient/p"}}})
    };
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        dose("f1", "completed", "2021-10-01"),
        dose("f2", "completed", "2022-10-01"),
        dose("f3", "entered-in-error", "2024-10-01"),
        dose("f4", "not-done", "2023-10-01"),
    ]});
    server
        .import_bundle(common::ADMIN, "shots.json", &bundle)
        .await;
    let profile = page(&alice, "/profile").await;
    let shots = section(&profile, "immunizations");
    assert_eq!(shots.matches("<li data-ref=").count(), 1, "{shots}");
    assert!(
        !shots.contains("not done") && !shots.contains("2023"),
        "{shots}"
    );
    assert!(
        shots.contains("Influenza</a> <strong>2 doses since 2021</strong>"),
        "two doses given: {shots}"
    );
    assert!(shots.contains("1 Oct 2022"), "the latest dose given");
    assert!(!shots.contains("2024"), "the mistaken dose is left out");
}

#[tokio::test]
async fn other_users_see_none_of_it() {
    let (server, alice) = TestServer::with_admin().await;
    server.import_synthea(common::ADMIN, PARIS).await;
    alice.create_user("bob", "bob-password-1", "member").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1")
        .await
        .assert_redirect("/");

    let history = page(&bob, "/history").await;
    assert!(history.contains("Nothing here yet"), "{history}");
    assert!(!history.contains(ER_VISIT));
    let filtered = page(&bob, &format!("/history?condition={LACERATION}")).await;
    assert!(!filtered.contains(ER_VISIT));
    assert!(!filtered.contains("Laceration"));
    for path in [
        format!("/history/encounter/{ER_VISIT}"),
        format!("/conditions/{LACERATION}"),
    ] {
        assert_eq!(bob.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let profile = page(&bob, "/profile").await;
    assert!(profile.contains("Nothing here yet"));
    assert!(!profile.contains("Paris"));

    // Signed out, the pages ask for a sign-in.
    let stranger = server.client();
    for path in ["/history", "/profile", &format!("/conditions/{LACERATION}")] {
        assert_eq!(
            stranger.get(path).await.status,
            StatusCode::SEE_OTHER,
            "{path}"
        );
    }
}
