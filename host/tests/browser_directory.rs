//! Issue 18's journey in a real headless Chromium: the administrator registers the family's Epic
//! app with `private_key_jwt` and downloads the provider directory; a member finds their hospital
//! by name, connects, signs in at a real verifying authorization server (oidc-provider, which
//! checks Fasten's client assertions against its JWK Set URL), and the records arrive. The member
//! never sees the client id.

use crate::browser::{
    browser_available, fits_the_width, open_browser, overflowing, save_screenshot, sign_in,
    start_chromedriver, wait_for_text,
};
use crate::common;
use crate::directory::{self, Lists};
use crate::peers;

use std::time::{Duration, Instant};

use common::{ADMIN, ADMIN_PASSWORD, TestServer};
use fantoccini::Locator;

const CLIENT_ID: &str = "springfield-family-app-93c1";
const MEMBER: &str = "bob";
const MEMBER_PASSWORD: &str = "bob-password-1";

/// Clicks what `locator` finds the way a person would reach it: scrolled into view first (a long
/// page's button may sit under the fold or behind the sticky header).
async fn press(browser: &fantoccini::Client, locator: Locator<'_>) {
    let element = browser
        .find(locator)
        .await
        .unwrap_or_else(|e| panic!("finding what to press: {e}"));
    browser
        .execute(
            "arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();",
            vec![serde_json::to_value(element).unwrap()],
        )
        .await
        .unwrap();
}

/// The text of the page shown, as the member could read it or view its source.
async fn page_source(browser: &fantoccini::Client) -> String {
    browser.source().await.unwrap()
}

#[tokio::test]
async fn an_administrator_registers_an_epic_app_and_a_member_connects_from_the_directory() {
    if !browser_available() || !peers::require() {
        return;
    }
    let fhir = peers::Sekmet::start().await;
    let patient = fhir.load_bundle(&peers::synthea(peers::PARIS_CASPER)).await;
    let lists = Lists::default();
    let lists_url = lists.serve().await;
    let server = TestServer::start_with(|c| {
        c.plugins.allow_http_loopback = true;
        c.plugins.allow_private_networks = true;
        let path = c.data_dir.join("directory-sources.toml");
        std::fs::write(
            &path,
            format!(
                "[[source]]\nid = \"epic\"\nname = \"Epic brands\"\nurl = \"{lists_url}/brands.json\"\n\
                 format = \"fhir-bundle\"\nplatform = \"epic\"\n"
            ),
        )
        .unwrap();
        c.directory.file = path;
    })
    .await;
    let provider = peers::OAuthPeer::start_oidc(&[
        ("CLIENT_ID", CLIENT_ID),
        ("JWKS_URI", &format!("{}/.well-known/jwks.json", server.url)),
        ("REDIRECT_URI", &format!("{}/sources/callback", server.url)),
        ("SIGNING_ALG", "ES384"),
        ("PATIENT_ID", &patient),
        ("FHIR_UPSTREAM", &fhir.base),
    ])
    .await;
    lists.put(
        "brands.json",
        directory::brands().replace(
            directory::SPRINGFIELD_BASE,
            &format!("{}/", provider.fhir_base),
        ),
    );
    let alice = server.client();
    alice.setup(ADMIN, "Alice", ADMIN_PASSWORD).await;
    alice
        .create_user(MEMBER, MEMBER_PASSWORD, "member")
        .await
        .assert_redirect("/admin/users?notice=created");

    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;
    let result = async {
        // --- the administrator: the Epic registration, then the directory ---
        sign_in(&browser, &server.url, ADMIN, ADMIN_PASSWORD).await;
        wait_for_text(&browser, "//main//h1").await;
        browser
            .goto(&format!("{}/admin/provider-apps/epic", server.url))
            .await
            .unwrap();
        // The page gives the exact values to register with Epic.
        wait_for_text(
            &browser,
            &format!(
                "//main[contains(., '{}/sources/callback') and contains(., '{}/.well-known/jwks.json')]",
                server.url, server.url
            ),
        )
        .await;
        save_screenshot(&browser, "provider-app-epic").await;
        crate::browser::fill(&browser, "client_id", CLIENT_ID).await;
        press(
            &browser,
            Locator::Css("input[name=client_auth][value=private_key_jwt]"),
        )
        .await;
        press(
            &browser,
            Locator::Css("#registration-form button[type=submit]"),
        )
        .await;
        wait_for_text(&browser, "//main[contains(., 'Epic')]").await;
        assert!(
            browser
                .current_url()
                .await
                .unwrap()
                .as_str()
                .ends_with("/admin/provider-apps?notice=saved"),
            "the registration was not saved: {}",
            page_source(&browser).await
        );

        browser
            .goto(&format!("{}/admin/directory", server.url))
            .await
            .unwrap();
        press(&browser, Locator::Css("#directory-refresh button")).await;
        wait_for_text(&browser, "//*[@id='directory-notice']").await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            browser
                .goto(&format!("{}/admin/directory", server.url))
                .await
                .unwrap();
            if browser
                .find(Locator::Css("#directory-refreshes tr.status-succeeded"))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                browser
                    .find(Locator::Css("#directory-refreshes tr.status-failed"))
                    .await
                    .is_err(),
                "the download failed: {}",
                page_source(&browser).await
            );
            assert!(Instant::now() < deadline, "the download never ended");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        save_screenshot(&browser, "admin-directory").await;

        // Admin pages fit a phone and a wide screen.
        for width in [360, 390, 1280] {
            browser.set_window_size(width, 900).await.unwrap();
            for page in [
                "/admin/provider-apps",
                "/admin/provider-apps/epic",
                "/admin/directory",
            ] {
                browser
                    .goto(&format!("{}{page}", server.url))
                    .await
                    .unwrap();
                wait_for_text(&browser, "//main//h1").await;
                assert!(
                    fits_the_width(&browser).await,
                    "{page} at {width} px scrolls sideways: {}",
                    overflowing(&browser).await
                );
            }
        }
        browser.set_window_size(420, 900).await.unwrap();

        // --- the member: find the hospital, connect, sign in there ---
        browser.delete_all_cookies().await.unwrap();
        sign_in(&browser, &server.url, MEMBER, MEMBER_PASSWORD).await;
        wait_for_text(&browser, "//main//h1").await;
        browser
            .goto(&format!("{}/sources", server.url))
            .await
            .unwrap();
        crate::browser::fill(&browser, "directory-search", "Springfield General").await;
        let result = "//*[@id='directory-results']/li[contains(., 'Springfield General Health')]";
        wait_for_text(&browser, result).await;
        let shown = browser
            .find(Locator::XPath(result))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(shown.contains("Springfield, IL"), "its town: {shown}");
        assert!(shown.contains("Epic"), "its platform: {shown}");
        save_screenshot(&browser, "directory-search").await;
        for width in [360, 390, 1280] {
            browser.set_window_size(width, 900).await.unwrap();
            assert!(
                fits_the_width(&browser).await,
                "Sources with directory results at {width} px scrolls sideways: {}",
                overflowing(&browser).await
            );
        }
        browser.set_window_size(420, 900).await.unwrap();
        let sources_page = page_source(&browser).await;
        assert!(
            !sources_page.contains(CLIENT_ID),
            "the member's page shows the client id"
        );
        assert!(
            browser
                .find(Locator::XPath(&format!(
                    "{result}//input[@name='client_id']"
                )))
                .await
                .is_err(),
            "the result asks for a client id"
        );
        press(
            &browser,
            Locator::XPath(&format!("{result}//button[@type='submit']")),
        )
        .await;
        // To the provider and back; the first sync runs while the page follows it.
        wait_for_text(
            &browser,
            "//*[@id='sources-notice'][contains(., 'Connected')]",
        )
        .await;
        browser
            .wait()
            .at_most(Duration::from_secs(90))
            .for_element(Locator::XPath(
                "//tr[contains(., 'Springfield General Health')]//*[contains(., 'Last sync: done')]",
            ))
            .await
            .expect("the sync finishes and the page says so");
        let records = browser
            .find(Locator::XPath(
                "//tr[contains(., 'Springfield General Health')]/td[@class='records']",
            ))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let records: u32 = records.parse().unwrap_or_default();
        assert!(records > 50, "the patient's records arrived: {records}");
        save_screenshot(&browser, "directory-connected").await;
        assert!(
            !page_source(&browser).await.contains(CLIENT_ID),
            "the member's Sources page shows the client id"
        );

        // Every token request carried a client assertion, which the server verified.
        let tokens = provider.token_events().await;
        assert!(!tokens.is_empty());
        for event in &tokens {
            assert_eq!(event["status"], 200, "{event}");
            assert_eq!(
                event["client_assertion_type"],
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            );
            assert_eq!(event["claims"]["iss"], CLIENT_ID);
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(300), result).await;
    browser.close().await.ok();
    outcome.expect("the journey finished in time");
}
