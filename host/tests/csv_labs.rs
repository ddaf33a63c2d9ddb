//! Lab results from CSV files through the real `csv-labs` plugin: the upload shows a preview
//! (results as they will be stored, problems with row numbers) and stores nothing until the user
//! confirms; the results then join the Labs page. The CSVs are made from the laboratory
//! Observations of the Synthea bundles in three portal layouts (`common/lab_csv.rs`).

use crate::common;

use common::lab_csv::{Layout, lab_csv, lab_observations};
use common::{Client, PARIS, Reply, TestServer};
use reqwest::StatusCode;
use serde_json::Value;

fn paris() -> Value {
    serde_json::from_slice(&std::fs::read(common::synthea(PARIS)).unwrap()).unwrap()
}

/// A page's text as a person reads it (the templates escape '/' too).
fn readable(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// The preview's token, from its Import form.
fn token(preview: &str) -> String {
    let marker = "name=\"token\" value=\"";
    let start = preview
        .find(marker)
        .unwrap_or_else(|| panic!("no token in: {preview}"))
        + marker.len();
    preview[start..start + 24].to_string()
}

/// Posts one of the preview's forms as htmx does.
async fn answer(client: &Client, action: &str, fields: &[(&str, &str)]) -> Reply {
    let mut fields = fields.to_vec();
    let csrf = client.csrf_token("/sources").await;
    fields.push(("csrf_token", &csrf));
    let own = client.own_person_path().await;
    let response = client
        .http
        .post(format!("{}{own}{action}", client.base))
        .header("HX-Request", "true")
        .form(&fields)
        .send()
        .await
        .unwrap();
    Reply {
        status: response.status(),
        location: None,
        body: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn a_portal_csv_is_previewed_then_imported_into_labs_with_every_value_as_exported() {
    let (server, client) = TestServer::with_admin().await;
    let alice = server.user_id(common::ADMIN).await;
    let bundle = paris();
    let expected = lab_observations(&bundle);
    assert!(expected.len() > 20, "Paris has lab results to export");

    for layout in [Layout::UsPortal, Layout::EuLab, Layout::TabbedWithPreamble] {
        let csv = lab_csv(&bundle, layout);
        let preview = common::upload(&client, "results.csv", csv.into_bytes()).await;
        assert_eq!(
            preview.status,
            StatusCode::OK,
            "{layout:?}: {}",
            preview.body
        );
        assert!(
            preview.body.contains("id=\"preview-rows\""),
            "{layout:?}: {}",
            preview.body
        );
        // The preview names the first result as it will be stored, and stores nothing.
        assert!(
            readable(&preview.body).contains(&expected[0].name),
            "{layout:?}"
        );
        assert_eq!(
            server.stored(alice, "Observation").await.len(),
            0,
            "{layout:?}"
        );

        let imported = answer(
            &client,
            "/sources/upload/confirm",
            &[("token", &token(&preview.body)), ("dates", "")],
        )
        .await;
        assert_eq!(
            imported.status,
            StatusCode::OK,
            "{layout:?}: {}",
            imported.body
        );
        assert!(imported.body.contains("import-report"), "{}", imported.body);

        // Every exported value came back with its LOINC code, number, UCUM unit and date.
        let stored = server.stored(alice, "Observation").await;
        for row in &expected {
            let found = stored.iter().any(|o| {
                o["code"]["coding"][0]["code"] == row.loinc.as_str()
                    && o["valueQuantity"]["value"].as_f64() == Some(row.value)
                    && o["valueQuantity"]["code"] == row.ucum.as_str()
                    && o["effectiveDateTime"] == row.effective(layout).as_str()
            });
            assert!(found, "{layout:?}: {row:?} not stored as exported");
        }
        // Each layout's results are the same tests on the same dates: layouts differ in their
        // times only, so the UsPortal and EuLab imports (dates only) update each other's rows.
        sqlx::query("DELETE FROM resources WHERE person_id = ?")
            .bind(alice)
            .execute(&server.state.db)
            .await
            .unwrap();
    }

    // Imported once more, the results are on the Labs page.
    let preview = common::upload(
        &client,
        "results.csv",
        lab_csv(&bundle, Layout::UsPortal).into_bytes(),
    )
    .await;
    answer(
        &client,
        "/sources/upload/confirm",
        &[("token", &token(&preview.body))],
    )
    .await;
    let labs = client.get("/labs").await;
    assert!(
        readable(&labs.body).contains(&expected[0].name),
        "{}",
        labs.body
    );
    // And the import is on the Jobs page as an upload of this file.
    let jobs = client.get("/jobs").await;
    assert!(jobs.body.contains("results.csv"), "{}", jobs.body);
    assert!(jobs.body.contains("upload"), "{}", jobs.body);
}

#[tokio::test]
async fn ambiguous_dates_ask_for_the_order_and_the_answer_decides_the_stored_dates() {
    let (server, client) = TestServer::with_admin().await;
    let alice = server.user_id(common::ADMIN).await;
    let csv = "Test,Result,Units,Date\nGlucose,95,mg/dL,03/05/2024\nGlucose,101,mg/dL,04/06/2024\n";
    let first = common::upload(&client, "glucose.csv", csv.as_bytes().to_vec()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(
        first.body.contains("id=\"preview-ambiguous\""),
        "{}",
        first.body
    );
    assert!(first.body.contains("Ambiguous dates"), "{}", first.body);
    let token = token(&first.body);

    let day_first = answer(
        &client,
        "/sources/upload/preview",
        &[("token", &token), ("dates", "dmy")],
    )
    .await;
    assert!(
        day_first.body.contains("id=\"preview-rows\""),
        "{}",
        day_first.body
    );
    assert!(
        day_first.body.contains(">3 May 2024</time>"),
        "{}",
        day_first.body
    );
    let imported = answer(
        &client,
        "/sources/upload/confirm",
        &[("token", &token), ("dates", "dmy")],
    )
    .await;
    assert!(imported.body.contains("import-report"), "{}", imported.body);
    let mut dates: Vec<String> = server
        .stored(alice, "Observation")
        .await
        .iter()
        .map(|o| o["effectiveDateTime"].as_str().unwrap().to_string())
        .collect();
    dates.sort();
    assert_eq!(dates, ["2024-05-03", "2024-06-04"]);

    // The confirmed file is gone: its token no longer works.
    let again = answer(&client, "/sources/upload/confirm", &[("token", &token)]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
}

#[tokio::test]
async fn row_problems_are_listed_with_row_numbers_and_bad_files_store_nothing() {
    let (server, client) = TestServer::with_admin().await;
    let alice = server.user_id(common::ADMIN).await;

    let csv = "Test,Result,Units,Reference Range,Date\n\
               Hemoglobin,13.9,g/dL,12.0-16.0,2024-03-05\n\
               Glucose,,mg/dL,70-99,2024-03-05\n\
               Potassium,<5,mmol/L,3.5-5.1,2024-03-05\n";
    let preview = common::upload(&client, "mixed.csv", csv.as_bytes().to_vec()).await;
    assert!(
        preview.body.contains("id=\"preview-problems\""),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("Row 3"), "{}", preview.body);
    assert!(preview.body.contains("Glucose"), "{}", preview.body);
    assert!(
        readable(&preview.body).contains("13.9 g/dL"),
        "{}",
        preview.body
    );
    assert!(
        readable(&preview.body).contains("< 5 mmol/L"),
        "{}",
        preview.body
    );
    // Cancel: nothing stored, and the file is gone.
    let cancelled = answer(
        &client,
        "/sources/upload/cancel",
        &[("token", &token(&preview.body))],
    )
    .await;
    assert!(
        cancelled.body.contains("import-cancelled"),
        "{}",
        cancelled.body
    );
    assert_eq!(server.stored(alice, "Observation").await.len(), 0);
    let uploads = server.data_dir.path().join("uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    for (name, bytes, says) in [
        (
            "novalue.csv",
            b"Test,Units,Date\nGlucose,mg/dL,2024-03-05\n".to_vec(),
            "no value column",
        ),
        (
            "photo.csv",
            vec![
                0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D',
                b'R',
            ],
            "does not look like a CSV",
        ),
        (
            "oneline.csv",
            b"Glucose 95 mg/dL on 2024-03-05\nHemoglobin 13.9 g/dL on 2024-03-05\n".to_vec(),
            "could not find the column names",
        ),
    ] {
        let reply = common::upload(&client, name, bytes).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {}",
            reply.body
        );
        assert!(reply.body.contains(says), "{name}: {}", reply.body);
        assert!(
            reply.body.contains("Nothing from this file was stored"),
            "{name}: {}",
            reply.body
        );
    }
    assert_eq!(server.stored(alice, "Observation").await.len(), 0);
}
