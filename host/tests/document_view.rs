//! A C-CDA document's page in Explore shows the document as it reads: its title, author and
//! date, then each section's narrative, tables as tables, through the host's allow-list
//! (`fasten::record::ccda_view`). Checked over HTTP, and in Chromium at a phone's and a wide
//! screen's width, where the page never scrolls sideways and a wide table scrolls in its own box.

use crate::browser::{
    browser_available, fits_the_width, open_browser, save_screenshot, sign_in, start_chromedriver,
    wait_for_text,
};
use crate::common;

use common::{ADMIN, ADMIN_PASSWORD, TestServer};
use fantoccini::Locator;
use reqwest::StatusCode;

fn ccd() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/ccda/CCD-1.xml"),
    )
    .unwrap()
}

/// CCD-1.xml emailed as an attachment, as a clinic would send it: the email plugin keeps it as a
/// Binary with its own DocumentReference. Answers the path of that document's page.
async fn emailed_ccd(server: &TestServer, client: &common::Client) -> String {
    let email = crate::fuzz::email_with_attachment("text/xml", "CCD-1.xml", &ccd());
    let reply = common::upload(client, "visit.eml", email).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    document_page(server).await
}

/// CCD-1.xml uploaded on its own, read by the `ccda` plugin. Answers the path of its page.
async fn uploaded_ccd(server: &TestServer, client: &common::Client) -> String {
    let reply = common::upload(client, "CCD-1.xml", ccd()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    document_page(server).await
}

/// The page of the first stored DocumentReference whose first file is a Binary.
async fn document_page(server: &TestServer) -> String {
    let ids: Vec<(String, String)> = sqlx::query_as(
        "SELECT resource_id, json FROM resources WHERE resource_type = 'DocumentReference'
         ORDER BY resource_id",
    )
    .fetch_all(&server.state.db)
    .await
    .unwrap();
    let id = ids
        .iter()
        .find(|(_, json)| {
            let document: serde_json::Value = serde_json::from_str(json).unwrap();
            document["content"][0]["attachment"]["url"]
                .as_str()
                .is_some_and(|url| url.starts_with("Binary/"))
        })
        .map(|(id, _)| id.clone())
        .expect("a DocumentReference with a Binary");
    format!("/people/{ADMIN}/explore/DocumentReference/{id}")
}

/// What CCD-1.xml's page must show, whichever way the document arrived.
fn assert_reads_as_the_document(body: &str) {
    for expected in [
        "class=\"ccda-view\"",
        // The sections, as headings, with their narrative tables.
        "<h3>ALLERGIES AND ADVERSE REACTIONS</h3>",
        "<h3>MEDICATIONS</h3>",
        "<table>",
        "<td>",
    ] {
        assert!(body.contains(expected), "{expected} missing from the page");
    }
    // The document's own file is still there to download.
    assert!(body.contains("/attachments/0"), "the download link is gone");
    // Nothing in the document runs or reaches out.
    let view = &body[body.find("class=\"ccda-view\"").unwrap()..];
    for banned in [
        "<script",
        "<img",
        "<iframe",
        " style=",
        " href=\"http",
        " onclick",
    ] {
        assert!(!view.contains(banned), "{banned} in the document's view");
    }
}

#[tokio::test]
async fn an_emailed_ccda_reads_as_a_document_in_explore() {
    let (server, alice) = TestServer::with_admin().await;
    let page = emailed_ccd(&server, &alice).await;
    let reply = alice.get(&page).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_reads_as_the_document(&reply.body);
}

// The `ccda` plugin's DocumentReference's file is the Binary of the original XML, shown the
// same way.
#[tokio::test]
async fn an_uploaded_ccda_reads_as_a_document_in_explore() {
    let (server, alice) = TestServer::with_admin().await;
    let page = uploaded_ccd(&server, &alice).await;
    let reply = alice.get(&page).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_reads_as_the_document(&reply.body);
}

#[tokio::test]
async fn a_ccda_document_fits_a_phone_and_a_wide_screen_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let (server, alice) = TestServer::with_admin().await;
    let page = uploaded_ccd(&server, &alice).await;
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;
    let result = async {
        sign_in(&browser, &server.url, ADMIN, ADMIN_PASSWORD).await;
        wait_for_text(&browser, "//main//h1").await;
        for (width, name) in [(360, "phone"), (1280, "wide")] {
            browser.set_window_size(width, 900).await.unwrap();
            browser
                .goto(&format!("{}{page}", server.url))
                .await
                .unwrap();
            wait_for_text(&browser, "//article[@class='ccda-view']//h3").await;
            browser
                .execute(
                    "document.querySelectorAll('.ccda-view h3')[1].scrollIntoView()",
                    vec![],
                )
                .await
                .unwrap();
            save_screenshot(&browser, &format!("ccda-document-{name}")).await;
            assert!(
                fits_the_width(&browser).await,
                "the document's page scrolls sideways at {width} px"
            );
            // Its sections are tables and headings the browser built, not escaped markup.
            let tables = browser
                .find_all(Locator::Css(".ccda-view .narrative table"))
                .await
                .unwrap();
            assert!(tables.len() > 5, "{} tables", tables.len());
            // On a phone the widest table scrolls inside its own box.
            let wider: bool = browser
                .execute(
                    "return [...document.querySelectorAll('.ccda-view table')]
                       .some(t => t.scrollWidth > t.clientWidth + 1);",
                    vec![],
                )
                .await
                .unwrap()
                .as_bool()
                .unwrap();
            if width == 360 {
                assert!(
                    wider,
                    "no table is wider than a phone: the test shows nothing"
                );
            }
        }
    }
    .await;
    browser.close().await.unwrap();
    result
}
