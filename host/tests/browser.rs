//! Journeys in a real headless Chromium, driven over WebDriver: the first-run wizard, signing
//! out and in, an upload; and connecting a provider through the real SMART redirect flow (the
//! real peers: sekmet-fhir behind oauth2-mock-server) while the first sync's progress runs.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test says why and passes, except under CI (`CI` set), where a missing browser is a failure.

use crate::common;
use crate::peers;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use fantoccini::{ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub(crate) struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts chromedriver on a free port; returns it with its URL once it accepts connections.
pub(crate) fn start_chromedriver() -> (Driver, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

pub(crate) fn browser_available() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: install chromium and chromium-driver"
        );
        eprintln!(
            "SKIPPED: browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
    }
    present
}

pub(crate) async fn open_browser(webdriver: &str) -> fantoccini::Client {
    let user_data = tempfile::tempdir().unwrap().keep();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=420,900",
                format!("--user-data-dir={}", user_data.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .expect("a WebDriver session")
}

pub(crate) async fn fill(browser: &fantoccini::Client, id: &str, text: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("field #{id}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

pub(crate) async fn click(browser: &fantoccini::Client, locator: Locator<'_>) {
    browser
        .find(locator)
        .await
        .unwrap_or_else(|e| panic!("finding what to click: {e}"))
        .click()
        .await
        .unwrap();
}

pub(crate) async fn wait_for_text(browser: &fantoccini::Client, xpath: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("waiting for {xpath}: {e}"));
}

/// Whether the page shown fits the window's width, with nothing to scroll sideways to.
pub(crate) async fn fits_the_width(browser: &fantoccini::Client) -> bool {
    browser
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap()
        == serde_json::json!(true)
}

/// The elements that reach past the window's right edge, for a failure message.
pub(crate) async fn overflowing(browser: &fantoccini::Client) -> String {
    let found = browser
        .execute(
            "return Array.from(document.querySelectorAll('body *'))
               .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
               .slice(-3).map(e => e.outerHTML.slice(0, 160)).join(' | ');",
            vec![],
        )
        .await
        .unwrap();
    found.as_str().unwrap_or_default().to_string()
}

pub(crate) async fn save_screenshot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test]
async fn first_run_wizard_then_sign_out_and_sign_in_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start().await;
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;

    let result = async {
        // A new Fasten opens on the wizard.
        browser.goto(&format!("{}/", server.url)).await.unwrap();
        wait_for_text(&browser, "//h1[contains(., 'Welcome to Fasten')]").await;
        assert!(
            browser
                .current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/setup")
        );
        save_screenshot(&browser, "setup").await;
        fill(&browser, "username", "alice").await;
        fill(&browser, "display_name", "Alice Example").await;
        fill(&browser, "password", "alice-password-1").await;
        fill(&browser, "password_confirmation", "alice-password-1").await;
        click(&browser, Locator::XPath("//button[contains(., 'Create administrator')]")).await;
        wait_for_text(&browser, "//h1[contains(., 'Alice Example') and contains(., 'dashboard')]").await;
        save_screenshot(&browser, "dashboard").await;

        // Sign out, then back in.
        // Sign out sits in the account menu; the page presses it as a person would after
        // opening the menu.
        click(&browser, Locator::Css("#account-menu summary")).await;
        browser
            .execute("document.querySelector('form.signout button').click()", vec![])
            .await
            .unwrap();
        wait_for_text(&browser, "//h1[contains(., 'Sign in')]").await;
        assert!(
            browser.find(Locator::Id("whoami")).await.is_err(),
            "signed out"
        );
        fill(&browser, "username", "alice").await;
        fill(&browser, "password", "wrong-password!").await;
        click(&browser, Locator::Css("form button[type=submit]")).await;
        wait_for_text(
            &browser,
            "//*[@role='alert'][contains(., 'Wrong username or password.')]",
        )
        .await;
        fill(&browser, "password", "alice-password-1").await;
        click(&browser, Locator::Css("main form button[type=submit]")).await;
        wait_for_text(&browser, "//h1[contains(., 'Alice Example') and contains(., 'dashboard')]").await;
        let whoami = browser
            .find(Locator::Id("whoami"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(whoami, "Alice Example");
        save_screenshot(&browser, "signed-in").await;

        // Upload a Synthea patient through the Sources page and find the records in Explore.
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/fhir/synthea/Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json")
            .canonicalize()
            .unwrap();
        browser.goto(&format!("{}/sources", server.url)).await.unwrap();
        fill(&browser, "file", fixture.to_str().unwrap()).await;
        save_screenshot(&browser, "upload-form").await;
        // WebDriver refuses clicks it considers covered on this phone-sized window, so the
        // button is pressed from the page itself; htmx handles the submit as for a person.
        browser
            .execute("document.querySelector('#upload-form button').click()", vec![])
            .await
            .unwrap();
        wait_for_text(&browser, "//*[@id='import-report'][contains(., '104 new')]").await;
        save_screenshot(&browser, "uploaded").await;
        browser.find(Locator::LinkText("See the records")).await.unwrap().follow().await.unwrap();
        wait_for_text(&browser, "//p[contains(., '104 records in all')]").await;
        browser.find(Locator::LinkText("Observation")).await.unwrap().follow().await.unwrap();
        wait_for_text(&browser, "//h1[contains(., 'Observation')]").await;
        browser
            .find(Locator::Css("main table tbody tr td a"))
            .await
            .unwrap()
            .follow()
            .await
            .unwrap();
        wait_for_text(&browser, "//summary[contains(., 'Raw FHIR JSON')]").await;
        save_screenshot(&browser, "record").await;
    }
    .await;
    browser.close().await.unwrap();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_a_provider_signs_in_there_and_shows_the_sync_finish() {
    if !browser_available() || !peers::require() {
        return;
    }
    let fhir = peers::Sekmet::start().await;
    let patient = fhir
        .load_bundle(&peers::synthea(
            "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json",
        ))
        .await;
    let provider = peers::OAuthPeer::start(&[
        ("FHIR_UPSTREAM", fhir.base.as_str()),
        ("PATIENT_ID", patient.as_str()),
        ("CLIENT_ID", "fasten-browser"),
    ])
    .await;
    let server = TestServer::start_with(|c| {
        c.plugins.allow_http_loopback = true;
        c.plugins.allow_private_networks = true;
    })
    .await;
    server
        .client()
        .setup("alice", "Alice Example", "alice-password-1")
        .await;
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;

    let result = async {
        browser
            .goto(&format!("{}/login", server.url))
            .await
            .unwrap();
        fill(&browser, "username", "alice").await;
        fill(&browser, "password", "alice-password-1").await;
        click(&browser, Locator::Css("main form button[type=submit]")).await;
        wait_for_text(
            &browser,
            "//h1[contains(., 'Alice Example') and contains(., 'dashboard')]",
        )
        .await;

        browser
            .goto(&format!("{}/sources", server.url))
            .await
            .unwrap();
        // The live catalog search narrows the list as one types.
        fill(&browser, "provider-search", "smart sandbox").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while browser
            .find(Locator::Id("provider-epic-sandbox"))
            .await
            .is_ok()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the search never narrowed the list"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_for_text(
            &browser,
            "//*[@id='providers']//strong[contains(., 'SMART Health IT')]",
        )
        .await;
        save_screenshot(&browser, "catalog-search").await;

        // A custom endpoint: the peer's FHIR base and the client id registered there.
        browser
            .execute(
                "document.querySelector('#custom-endpoint').open = true",
                vec![],
            )
            .await
            .unwrap();
        fill(&browser, "fhir_base", &provider.fhir_base).await;
        fill(&browser, "client_id", "fasten-browser").await;
        fill(&browser, "display_name", "Peer Hospital").await;
        browser
            .execute(
                "document.querySelector('#custom-connect button').click()",
                vec![],
            )
            .await
            .unwrap();
        // The browser goes to the provider and comes back; the first sync runs in the
        // background while the page polls its progress, until it says it is done.
        wait_for_text(
            &browser,
            "//*[@id='sources-notice'][contains(., 'Connected')]",
        )
        .await;
        save_screenshot(&browser, "connected").await;
        // When it ends the page refreshes itself with the new counts.
        browser
            .wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::XPath(
                "//tr[contains(., 'Peer Hospital')]//*[contains(., 'Last sync: done')]",
            ))
            .await
            .expect("the sync finishes and the page says so");
        let records = browser
            .find(Locator::XPath(
                "//tr[contains(., 'Peer Hospital')]/td[@class='records']",
            ))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(records, "104", "every record of the patient arrived");
        save_screenshot(&browser, "synced").await;
        let row = browser
            .find(Locator::XPath("//tr[contains(., 'Peer Hospital')]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(row.contains("Connected"), "{row}");

        // The records are in Explore.
        browser
            .goto(&format!("{}/explore", server.url))
            .await
            .unwrap();
        wait_for_text(&browser, "//a[contains(., 'Observation')]").await;
        browser.goto(&format!("{}/jobs", server.url)).await.unwrap();
        wait_for_text(&browser, "//td[contains(., 'Peer Hospital')]").await;
        save_screenshot(&browser, "jobs").await;
    }
    .await;
    browser.close().await.unwrap();
    result
}

#[tokio::test]
async fn the_record_reads_well_dashboard_labs_history_and_summary() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start().await;
    server
        .client()
        .setup("alice", "Alice Example", "alice-password-1")
        .await;
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;

    let result = async {
        browser.goto(&format!("{}/login", server.url)).await.unwrap();
        fill(&browser, "username", "alice").await;
        fill(&browser, "password", "alice-password-1").await;
        click(&browser, Locator::Css("main form button[type=submit]")).await;
        wait_for_text(&browser, "//h1[contains(., 'Alice Example') and contains(., 'dashboard')]").await;

        // Import one Synthea patient.
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/fhir/synthea/Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json")
            .canonicalize()
            .unwrap();
        browser.goto(&format!("{}/sources", server.url)).await.unwrap();
        fill(&browser, "file", fixture.to_str().unwrap()).await;
        browser
            .execute("document.querySelector('#upload-form button').click()", vec![])
            .await
            .unwrap();
        wait_for_text(&browser, "//*[@id='import-report'][contains(., '104 new')]").await;

        // The dashboard's widgets load by themselves; the weight has a real chart.
        browser.goto(&format!("{}/", server.url)).await.unwrap();
        wait_for_text(
            &browser,
            "//section[@id='widget-vitals']//*[local-name()='svg']/*[local-name()='title'][contains(., 'Weight over time')]",
        )
        .await;
        wait_for_text(&browser, "//section[@id='widget-summary'][contains(., 'Paris Casper')]").await;
        save_screenshot(&browser, "dashboard-widgets").await;

        // A result on paper, entered by hand twice with its normal range, charts with the band.
        for (value, date) in [("35", "2023-01-10"), ("410", "2024-01-10")] {
            browser.goto(&format!("{}/records/new/lab", server.url)).await.unwrap();
            fill(&browser, "field-name", "Ferritin").await;
            fill(&browser, "field-value", value).await;
            fill(&browser, "field-unit", "ng/mL").await;
            browser
                .execute(
                    "document.getElementById('field-date').value = arguments[0]",
                    vec![serde_json::json!(date)],
                )
                .await
                .unwrap();
            fill(&browser, "field-low", "30").await;
            fill(&browser, "field-high", "400").await;
            browser
                .execute("document.querySelector('#manual-form button').click()", vec![])
                .await
                .unwrap();
            wait_for_text(&browser, "//h1[contains(., 'Ferritin')]").await;
        }
        browser.goto(&format!("{}/labs", server.url)).await.unwrap();
        wait_for_text(&browser, "//a[contains(., 'Total Cholesterol')]").await;
        browser.find(Locator::LinkText("Ferritin")).await.unwrap().follow().await.unwrap();
        wait_for_text(&browser, "//*[local-name()='rect'][@class='band']").await;
        save_screenshot(&browser, "labs-trend").await;

        // History lists the visits, newest first.
        browser.goto(&format!("{}/history", server.url)).await.unwrap();
        wait_for_text(&browser, "//main//*[contains(., '2020')]").await;
        save_screenshot(&browser, "history").await;

        // The search box in the navigation finds a condition by a word of its name.
        browser
            .execute(
                "const f = document.querySelector('form.nav-search'); \
                 f.querySelector('input[name=q]').value = 'obesity'; f.submit();",
                vec![],
            )
            .await
            .unwrap();
        wait_for_text(
            &browser,
            "//*[@id='results-Condition']//mark[contains(translate(., 'OBESITY', 'obesity'), 'obesity')]",
        )
        .await;
        save_screenshot(&browser, "search").await;

        // The printable summary for a doctor.
        browser.goto(&format!("{}/summary", server.url)).await.unwrap();
        wait_for_text(&browser, "//h2[contains(., 'Immunizations')]").await;
        wait_for_text(&browser, "//li[contains(., 'Influenza')]").await;
        save_screenshot(&browser, "summary").await;
    }
    .await;
    browser.close().await.unwrap();
    result
}

#[tokio::test]
async fn a_lab_csv_is_previewed_its_date_order_chosen_and_imported_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start().await;
    server
        .client()
        .setup("alice", "Alice Example", "alice-password-1")
        .await;
    let csv = server.data_dir.path().join("labs.csv");
    std::fs::write(
        &csv,
        "Test,LOINC,Result,Units,Reference Range,Date\n\
         Glucose,2345-7,95,mg/dL,70-99,03/05/2024\n\
         Glucose,2345-7,131,mg/dL,70-99,04/06/2024\n\
         Hemoglobin,718-7,,g/dL,12-16,04/06/2024\n",
    )
    .unwrap();
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;

    let result = async {
        browser
            .goto(&format!("{}/login", server.url))
            .await
            .unwrap();
        fill(&browser, "username", "alice").await;
        fill(&browser, "password", "alice-password-1").await;
        click(&browser, Locator::Css("main form button[type=submit]")).await;
        wait_for_text(
            &browser,
            "//h1[contains(., 'Alice Example') and contains(., 'dashboard')]",
        )
        .await;
        browser
            .goto(&format!("{}/sources", server.url))
            .await
            .unwrap();
        fill(&browser, "file", csv.to_str().unwrap()).await;
        browser
            .execute(
                "document.querySelector('#upload-form button').click()",
                vec![],
            )
            .await
            .unwrap();
        // 03/05 and 04/06 could be either order: the page asks.
        wait_for_text(
            &browser,
            "//*[@id='preview-ambiguous'][contains(., 'Ambiguous dates')]",
        )
        .await;
        save_screenshot(&browser, "csv-ambiguous").await;
        browser
            .execute(
                "document.querySelector('input[name=dates][value=dmy]').click();
                 document.querySelector('#preview-dates button').click()",
                vec![],
            )
            .await
            .unwrap();
        // The preview: results as they will be stored, the empty row named with its number.
        wait_for_text(
            &browser,
            "//*[@id='preview-rows']//td[contains(., '4 Jun 2024')]",
        )
        .await;
        wait_for_text(
            &browser,
            "//*[@id='preview-problems'][contains(., 'Row 4')]",
        )
        .await;
        save_screenshot(&browser, "csv-preview").await;
        browser
            .execute(
                "document.querySelector('#preview-confirm button').click()",
                vec![],
            )
            .await
            .unwrap();
        wait_for_text(&browser, "//*[@id='import-report'][contains(., '4 new')]").await;
        // The results are on the Labs page, the newest glucose flagged high.
        browser.goto(&format!("{}/labs", server.url)).await.unwrap();
        wait_for_text(&browser, "//main//*[contains(., 'Glucose')]").await;
        wait_for_text(&browser, "//main//*[contains(., '131')]").await;
        save_screenshot(&browser, "csv-labs").await;
    }
    .await;
    browser.close().await.unwrap();
    result
}

/// Signs in on the login page.
pub(crate) async fn sign_in(
    browser: &fantoccini::Client,
    url: &str,
    username: &str,
    password: &str,
) {
    browser.goto(&format!("{url}/login")).await.unwrap();
    fill(browser, "username", username).await;
    fill(browser, "password", password).await;
    click(browser, Locator::Css("main form button[type=submit]")).await;
}

/// Uploads a Synthea bundle on the Sources page shown, and waits for its report.
async fn upload_synthea(browser: &fantoccini::Client, name: &str, added: usize) {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/fhir/synthea")
        .join(name)
        .canonicalize()
        .unwrap();
    fill(browser, "file", fixture.to_str().unwrap()).await;
    browser
        .execute(
            "document.querySelector('#upload-form button').click()",
            vec![],
        )
        .await
        .unwrap();
    wait_for_text(
        browser,
        &format!("//*[@id='import-report'][contains(., '{added} new')]"),
    )
    .await;
}

/// Picks a person in the header's switcher.
async fn switch_to(browser: &fantoccini::Client, name: &str) {
    click(browser, Locator::Css("#switcher summary")).await;
    browser
        .find(Locator::XPath(&format!(
            "//*[@id='switcher']//a[contains(., '{name}')]"
        )))
        .await
        .unwrap()
        .follow()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_parent_adds_a_child_switches_between_them_and_shares_the_child_to_view() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start().await;
    let admin = server.client();
    admin
        .setup("alice", "Alice Example", "alice-password-1")
        .await;
    admin
        .create_user("grandpa", "grandpa-password-1", "member")
        .await;
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;

    let result = async {
        // 1. The parent adds a child on the family page.
        sign_in(&browser, &server.url, "alice", "alice-password-1").await;
        wait_for_text(
            &browser,
            "//h1[contains(., 'Alice Example') and contains(., 'dashboard')]",
        )
        .await;
        browser
            .goto(&format!("{}/people", server.url))
            .await
            .unwrap();
        fill(&browser, "name", "Leo Example").await;
        fill(&browser, "slug", "leo").await;
        browser
            .execute(
                "document.querySelector('#add-person button').click()",
                vec![],
            )
            .await
            .unwrap();
        wait_for_text(
            &browser,
            "//h1[contains(., 'Leo Example') and contains(., 'dashboard')]",
        )
        .await;
        save_screenshot(&browser, "family-child-added").await;

        // 2. A bundle for each, and the header switches between them.
        browser
            .goto(&format!("{}/people/leo/sources", server.url))
            .await
            .unwrap();
        upload_synthea(
            &browser,
            "Roberto_Graham_238a58eb-31dc-4054-82ee-0651ee76f391.json",
            363,
        )
        .await;
        switch_to(&browser, "Alice Example").await;
        wait_for_text(
            &browser,
            "//h1[contains(., 'Alice Example') and contains(., 'sources')]",
        )
        .await;
        upload_synthea(
            &browser,
            "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json",
            104,
        )
        .await;
        browser
            .goto(&format!("{}/people/alice/labs", server.url))
            .await
            .unwrap();
        switch_to(&browser, "Leo Example").await;
        wait_for_text(
            &browser,
            "//h1[contains(., 'Leo Example') and contains(., 'labs')]",
        )
        .await;
        assert!(
            browser
                .current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/people/leo/labs")
        );
        save_screenshot(&browser, "family-switched").await;

        // 3. Leo is shared with the grandparent's account, to view.
        browser
            .goto(&format!("{}/people/leo/person", server.url))
            .await
            .unwrap();
        fill(&browser, "username", "grandpa").await;
        browser
            .execute(
                "document.querySelector('#share-person button').click()",
                vec![],
            )
            .await
            .unwrap();
        wait_for_text(&browser, "//tr[@id='grant-grandpa'][contains(., 'see')]").await;
        browser
            .execute(
                "document.querySelector('form.signout button').click()",
                vec![],
            )
            .await
            .unwrap();
        wait_for_text(&browser, "//h1[contains(., 'Sign in')]").await;

        // 4. The grandparent sees Leo's labs, no upload form, and is refused an upload anyway.
        sign_in(&browser, &server.url, "grandpa", "grandpa-password-1").await;
        wait_for_text(&browser, "//h1[contains(., 'dashboard')]").await;
        browser
            .goto(&format!("{}/people/leo/labs", server.url))
            .await
            .unwrap();
        wait_for_text(
            &browser,
            "//h1[contains(., 'Leo Example') and contains(., 'labs')]",
        )
        .await;
        wait_for_text(&browser, "//main//table//a").await;
        browser
            .goto(&format!("{}/people/leo/sources", server.url))
            .await
            .unwrap();
        wait_for_text(&browser, "//*[@id='view-only']").await;
        assert!(browser.find(Locator::Id("upload-form")).await.is_err());
        save_screenshot(&browser, "family-viewer").await;
        let status = browser
            .execute(
                "const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
                 const form = new FormData();
                 form.append('file', new Blob(['{}'], {type: 'application/json'}), 'x.json');
                 return fetch(location.pathname + '/upload', {method: 'POST', body: form,
                   headers: {'X-CSRF-Token': token}}).then(r => r.status);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(status, serde_json::json!(403));

        // Every page of the journey fits a small and a common phone and uses a wide screen, with
        // no sideways scroll.
        for (width, name) in [(360, "phone"), (390, "phone-390"), (1280, "wide")] {
            browser.set_window_size(width, 900).await.unwrap();
            for page in [
                "/people",
                "/people/leo/",
                "/people/leo/labs",
                "/people/leo/person",
                "/people/leo/sources",
                "/people/leo/history",
                "/people/leo/profile",
                "/people/leo/summary",
                "/people/leo/explore/Immunization",
            ] {
                browser
                    .goto(&format!("{}{page}", server.url))
                    .await
                    .unwrap();
                wait_for_text(&browser, "//main//h1").await;
                // The dashboard's widgets arrive after the page: wait for them to settle.
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert!(
                    fits_the_width(&browser).await,
                    "{page} at {width} px scrolls sideways: {}",
                    overflowing(&browser).await
                );
            }
            browser
                .goto(&format!("{}/people/leo/", server.url))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            save_screenshot(&browser, &format!("family-dashboard-{name}")).await;
        }
    }
    .await;
    browser.close().await.unwrap();
    result
}

/// A FHIR base of 120 characters, as some health systems' are.
fn long_fhir_base() -> String {
    let base = format!(
        "https://fhir-myrecord.example-health-system.org/interconnect-fhir-oauth/api/FHIR/R4/{}",
        "tenant-0123456789abcdef"
    );
    let padded = format!("{base}{}", "x".repeat(120 - base.len()));
    assert_eq!(padded.len(), 120);
    padded
}

/// A source whose server has a long base and needs reconnecting, and a failed sync of it with
/// its message and details: what the Sources and Jobs pages must fit, the way a real one
/// would leave them (written to the database, since no test server has such a base).
async fn a_source_with_a_long_base(server: &TestServer) {
    let alice = server.person_id("alice").await;
    let now = fasten::store::unix_now();
    let db = &server.state.db;
    let source: i64 = sqlx::query_scalar(
        "INSERT INTO sources (person_id, kind, display_name, plugin_id, created_at, updated_at)
         VALUES (?, 'smart', 'Riverside Regional Medical Center and Affiliated Community Clinics', 'fhir', ?, ?)
         RETURNING id",
    )
    .bind(alice)
    .bind(now)
    .bind(now)
    .fetch_one(db)
    .await
    .unwrap();
    let base = long_fhir_base();
    sqlx::query(
        "INSERT INTO connections (source_id, fhir_base, authorize_url, token_url, client_id,
           client_auth, scopes_requested, status, status_message, connected_at, last_sync_at)
         VALUES (?, ?, ?, ?, 'fasten', 'none', 'patient/*.read', 'needs_reconnect', ?, ?, ?)",
    )
    .bind(source)
    .bind(&base)
    .bind(format!("{base}/oauth2/authorize"))
    .bind(format!("{base}/oauth2/token"))
    .bind(fasten::sources::tokens::RECONNECT_MESSAGE)
    .bind(now - 86_400)
    .bind(now - 3_600)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (kind, person_id, source_id, source_name, status, trigger, attempt,
           run_after, warnings, error, error_detail, created_at, started_at, finished_at)
         VALUES ('sync', ?, ?, 'Riverside Regional Medical Center and Affiliated Community Clinics',
           'failed', 'schedule', 2, ?, '[]', ?, ?, ?, ?, ?)",
    )
    .bind(alice)
    .bind(source)
    .bind(now - 600)
    .bind(fasten::sources::tokens::RECONNECT_MESSAGE)
    .bind(format!(
        "the provider refused: invalid_grant: the refresh token for {base} was revoked"
    ))
    .bind(now - 900)
    .bind(now - 600)
    .bind(now - 590)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn sources_and_jobs_fit_a_wide_screen_and_a_phone_with_a_long_server_address() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start().await;
    let client = server.client();
    client
        .setup("alice", "Alice Example", "alice-password-1")
        .await;
    a_source_with_a_long_base(&server).await;
    server
        .import_synthea(
            "alice",
            "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json",
        )
        .await;
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;
    let result = async {
        sign_in(&browser, &server.url, "alice", "alice-password-1").await;
        wait_for_text(&browser, "//main//h1").await;
        for (width, height, name) in [(1280, 800, "wide"), (390, 844, "phone")] {
            browser.set_window_size(width, height).await.unwrap();
            for page in ["sources", "jobs"] {
                browser
                    .goto(&format!("{}/people/alice/{page}", server.url))
                    .await
                    .unwrap();
                wait_for_text(&browser, "//main//h1").await;
                // The page does not scroll sideways, and neither does its table: every column,
                // the status and the buttons included, is in view.
                let widths = browser
                    .execute(
                        "const doc = document.documentElement;
                         const table = document.querySelector('table.cards');
                         return [doc.scrollWidth, doc.clientWidth,
                                 table.scrollWidth, table.clientWidth,
                                 Math.max(...[...table.querySelectorAll('tbody td')]
                                   .map(c => c.getBoundingClientRect().right))];",
                        vec![],
                    )
                    .await
                    .unwrap();
                let w: Vec<f64> = widths
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                browser
                    .execute(
                        "document.querySelector('table.cards').scrollIntoView()",
                        vec![],
                    )
                    .await
                    .unwrap();
                save_screenshot(&browser, &format!("{page}-long-base-{name}")).await;
                assert!(w[0] <= w[1], "{page} at {width} px scrolls sideways: {w:?}");
                assert!(w[2] <= w[3], "{page}'s table at {width} px scrolls: {w:?}");
                assert!(
                    w[4] <= w[1] + 0.5,
                    "{page}: a cell ends off-screen at {width} px: {w:?}"
                );
            }
            // The long address is all there, wrapped, with its full text on hover too.
            browser
                .goto(&format!("{}/people/alice/sources", server.url))
                .await
                .unwrap();
            let shown = browser
                .find(Locator::Css("#sources .fhir-base"))
                .await
                .unwrap();
            assert_eq!(shown.text().await.unwrap(), long_fhir_base());
            assert_eq!(
                shown.attr("title").await.unwrap().as_deref(),
                Some(long_fhir_base().as_str())
            );
        }
    }
    .await;
    browser.close().await.unwrap();
    result
}

#[tokio::test]
async fn the_plugins_page_shows_what_a_waiting_plugin_would_get_and_fits_a_phone() {
    if !browser_available() {
        return;
    }
    // A dropped-in plugin, waiting for approval, that also claims the bundled FHIR plugin's
    // `.json`.
    let registry = tempfile::tempdir().unwrap();
    let dir = registry.path().join("test-hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(
        std::path::Path::new(env!("BUILT_PLUGIN_ARTIFACTS"))
            .join("fasten_plugin_test_hostile.wasm"),
    )
    .unwrap();
    std::fs::write(dir.join("hostile.wasm"), &bytes).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            "id = \"test-hostile\"\nname = \"Hostile test plugin\"\nversion = \"0.1.0\"\n\
             api = \"fasten:connector@0.1\"\nkind = \"file\"\nartifact = \"hostile.wasm\"\n\
             sha256 = \"{}\"\n",
            fasten::plugins::sha256_hex(&bytes)
        ),
    )
    .unwrap();
    let registry_dir = registry.path().to_path_buf();
    let server = TestServer::start_with(|c| c.plugins.registry_dir = registry_dir).await;
    server
        .client()
        .setup("alice", "Alice Example", "alice-password-1")
        .await;
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;
    let result = async {
        sign_in(&browser, &server.url, "alice", "alice-password-1").await;
        wait_for_text(&browser, "//main//h1").await;
        for (width, name) in [(1280, "wide"), (390, "phone")] {
            browser.set_window_size(width, 900).await.unwrap();
            browser
                .goto(&format!("{}/admin/plugins", server.url))
                .await
                .unwrap();
            let waiting = browser
                .find(Locator::Id("plugin-test-hostile"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(waiting.contains("Waiting for your approval"), "{waiting}");
            assert!(waiting.contains(".hostile, .json"), "{waiting}");
            assert!(
                waiting.contains("64 MiB memory, 300 s per file"),
                "{waiting}"
            );
            // FHIR recognises its .json files by their content, so the newcomer (which declares
            // no signature) gets the .json files FHIR does not: no conflict to report.
            assert!(
                !waiting.contains("another plugin already imports this kind of file"),
                "{waiting}"
            );
            save_screenshot(&browser, &format!("admin-plugins-{name}")).await;
            assert!(
                fits_the_width(&browser).await,
                "/admin/plugins at {width} px scrolls sideways"
            );
        }
    }
    .await;
    browser.close().await.unwrap();
    result
}
