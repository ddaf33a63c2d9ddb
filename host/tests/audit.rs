//! The audit log: every security-relevant action a family member or the operator takes shows on
//! Admin → Activity with who, when and from where, and no event holds a password, token or key.

use crate::browser::{
    browser_available, fits_the_width, open_browser, save_screenshot, sign_in, start_chromedriver,
    wait_for_text,
};
use crate::common;
use crate::smart_mock::{self, SmartMock};
use crate::sync_errors::{connect, finished_job, start_fasten};

use common::{ADMIN, ADMIN_PASSWORD};
use fantoccini::Locator;
use reqwest::StatusCode;

const BOB_PASSWORD: &str = "bob-first-password-7";
const BOB_NEW_PASSWORD: &str = "bob-second-password-8";
const WRONG_PASSWORD: &str = "not-alices-password-3";
const APP_SECRET: &str = "withings-app-secret-41c7";
const PASSPHRASE: &str = "audit passphrase for the backup";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_page_lists_each_security_event_and_no_secret() {
    if !browser_available() {
        return;
    }
    // The first account, set up by the wizard.
    // A plugin dropped into the registry, for an approval and a revocation.
    let registry = tempfile::tempdir().unwrap();
    crate::plugins::drop_in_hostile_for(
        registry.path(),
        "https://example.com",
        None,
        "fasten:connector@0.1",
        30,
    );
    let registry_dir = registry.path().to_path_buf();
    let (server, alice) = start_fasten(|c| c.plugins.registry_dir = registry_dir).await;
    let data = server.data_dir.path().to_path_buf();
    let (_driver, webdriver) = start_chromedriver();
    let browser = open_browser(&webdriver).await;
    {
        // Sign-ins, in the browser: one wrong password, then the right one.
        sign_in(&browser, &server.url, ADMIN, WRONG_PASSWORD).await;
        wait_for_text(&browser, "//main//*[contains(@class, 'error')]").await;
        sign_in(&browser, &server.url, ADMIN, ADMIN_PASSWORD).await;
        wait_for_text(&browser, "//main//h1").await;

        // Accounts: created, changed three ways, and (a second one) deleted.
        alice.create_user("bob", BOB_PASSWORD, "member").await;
        let bob_id = server.user_id("bob").await;
        let changes: [(&str, Vec<(&str, &str)>); 3] = [
            (
                "password",
                vec![
                    ("password", BOB_NEW_PASSWORD),
                    ("password_confirmation", BOB_NEW_PASSWORD),
                ],
            ),
            ("role", vec![("role", "admin")]),
            ("status", vec![("disabled", "true")]),
        ];
        for (what, fields) in changes {
            let reply = alice
                .submit(
                    "/admin/users",
                    &format!("/admin/users/{bob_id}/{what}"),
                    &fields,
                )
                .await;
            assert_eq!(
                reply.status,
                StatusCode::SEE_OTHER,
                "{what}: {}",
                reply.body
            );
        }
        alice
            .create_user("carol", "carol-password-9", "member")
            .await;
        let carol_id = server.user_id("carol").await;
        let reply = alice
            .submit(
                &format!("/admin/users/{carol_id}/delete"),
                &format!("/admin/users/{carol_id}/delete"),
                &[("confirm_username", "carol")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);

        // Sharing: alice's records with bob, then taken back.
        let reply = alice
            .submit(
                "/people/alice/person",
                "/people/alice/person/share",
                &[("username", "bob"), ("level", "view")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        let bob_id_text = bob_id.to_string();
        let reply = alice
            .submit(
                "/people/alice/person",
                "/people/alice/person/unshare",
                &[("user_id", bob_id_text.as_str())],
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);

        // The dropped-in plugin approved, then turned off.
        for decision in ["enable", "disable"] {
            let reply = alice
                .submit(
                    "/admin/plugins",
                    &format!("/admin/plugins/test-hostile/{decision}"),
                    &[],
                )
                .await;
            assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        }

        // A provider connected (its tokens stay in the vault), synced, then deleted.
        let mock = SmartMock::start(smart_mock::load_synthea(common::PARIS)).await;
        let source = connect(&alice, &mock).await;
        finished_job(&server, source).await;
        let reply = alice
            .submit(
                &format!("/people/alice/sources/{source}/delete"),
                &format!("/people/alice/sources/{source}/delete"),
                &[("confirm", "yes")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);

        // Downloads of records.
        server.import_synthea(ADMIN, common::PARIS).await;
        for path in [
            "/people/alice/export/everything.zip",
            "/people/alice/export/everything.json",
            "/people/alice/summary/ips.json",
        ] {
            assert_eq!(alice.get(path).await.status, StatusCode::OK, "{path}");
        }

        // A backup with the key (the operator's command), restored into a new folder.
        let archive = data
            .parent()
            .unwrap()
            .join(format!("audit-{}.tar.age", std::process::id()));
        common::fasten_ok(
            &data,
            &["backup", "--with-key", "--out", archive.to_str().unwrap()],
            &format!("{PASSPHRASE}\n"),
        );
        let restored = tempfile::tempdir().unwrap();
        let restored_data = restored.path().join("data");
        common::fasten_ok(
            &restored_data,
            &["restore", archive.to_str().unwrap()],
            &format!("{PASSPHRASE}\n"),
        );
        let _ = std::fs::remove_file(&archive);

        // An app registration saved (with a secret that must not show), signing keys added, the
        // registration removed; a directory list added and removed.
        let saved = alice
            .submit(
                "/admin/provider-apps/withings",
                "/admin/provider-apps/withings",
                &[
                    ("client_id", "withings-app"),
                    ("client_auth", "client_secret"),
                    ("client_secret", APP_SECRET),
                ],
            )
            .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let keys = alice
            .submit("/admin/provider-apps", "/admin/provider-apps/keys", &[])
            .await;
        assert_eq!(keys.status, StatusCode::SEE_OTHER, "{}", keys.body);
        let removed = alice
            .submit(
                "/admin/provider-apps/withings",
                "/admin/provider-apps/withings/delete",
                &[],
            )
            .await;
        assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
        let added = alice
            .submit(
                "/admin/directory",
                "/admin/directory/lists",
                &[
                    ("name", "Family clinic list"),
                    ("url", "https://lists.example/bundle.json"),
                    ("platform", "epic"),
                ],
            )
            .await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
        let dropped = alice
            .submit(
                "/admin/directory",
                "/admin/directory/lists/added-1/delete",
                &[],
            )
            .await;
        assert_eq!(dropped.status, StatusCode::SEE_OTHER, "{}", dropped.body);

        // Admin → Activity, in the browser, on a wide screen and a phone.
        let mut page_text = String::new();
        for (width, name) in [(1280, "wide"), (360, "phone")] {
            browser.set_window_size(width, 900).await.unwrap();
            browser
                .goto(&format!("{}/admin/activity", server.url))
                .await
                .unwrap();
            page_text = browser
                .find(Locator::Css("main"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            save_screenshot(&browser, &format!("admin-activity-{name}")).await;
            assert!(
                fits_the_width(&browser).await,
                "Activity scrolls sideways at {width} px"
            );
            // The other pages this change touched: Backups, and the backup line on Users.
            for (page, heading) in [
                ("/admin/backups", "Backups"),
                ("/admin/users", "Family accounts"),
            ] {
                browser
                    .goto(&format!("{}{page}", server.url))
                    .await
                    .unwrap();
                wait_for_text(&browser, &format!("//main//h1[contains(., '{heading}')]")).await;
                let standing = browser
                    .find(Locator::Id("backup-standing"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert!(
                    standing.contains("The newest backup was made"),
                    "{page}: {standing}"
                );
                save_screenshot(&browser, &format!("admin{}-{name}", page.replace('/', "-"))).await;
                assert!(
                    fits_the_width(&browser).await,
                    "{page} scrolls sideways at {width} px"
                );
            }
        }
        for expected in [
            "Failed sign-in: wrong password",
            "Signed in",
            "Account created: alice (administrator, the first account)",
            "Account created: bob (member)",
            "Account changed: bob: password reset",
            "Account changed: bob: made administrator",
            "Account changed: bob: disabled",
            "Account deleted: carol and their records",
            "Access given: bob may view alice's records",
            "Access taken back: bob no longer sees alice's records",
            "Plugin approved: test-hostile",
            "Plugin turned off: test-hostile",
            "Source connected: Mock Hospital for alice",
            "Source deleted: Mock Hospital of alice and its records",
            "Records downloaded: NDJSON zip of alice's records",
            "Records downloaded: FHIR Bundle of alice's records",
            "Summary downloaded: Patient summary of alice's records",
            "Backup made:",
            "Provider app saved: withings (client_secret)",
            "Signing keys added: ES384 and RS384",
            "Provider app removed: withings",
            "Directory list added: Family clinic list (https://lists.example/bundle.json)",
            "Directory list removed: added-1",
            "by alice · from 127.0.0.1",
            "by command line",
        ] {
            assert!(
                page_text.contains(expected),
                "Activity lacks {expected:?}:\n{page_text}"
            );
        }
        // The restore is recorded in the restored database, which the family goes on with.
        let restored_db = fasten::store::open(&restored_data.join("fasten.db"))
            .await
            .unwrap();
        let restores: Vec<String> =
            sqlx::query_scalar("SELECT subject FROM audit_events WHERE action = 'backup-restored'")
                .fetch_all(&restored_db)
                .await
                .unwrap();
        assert_eq!(restores.len(), 1, "{restores:?}");
        restored_db.close().await;

        // No event holds a password, a token, the key or the passphrase.
        let events: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT actor, subject, address FROM audit_events")
                .fetch_all(&server.state.db)
                .await
                .unwrap();
        let all_text: String = events
            .iter()
            .map(|(a, s, d)| format!("{a}\n{s}\n{}\n", d.as_deref().unwrap_or("")))
            .collect();
        let key = std::fs::read_to_string(data.join("secret.key")).unwrap();
        let mut secrets: Vec<String> = vec![
            ADMIN_PASSWORD.into(),
            BOB_PASSWORD.into(),
            BOB_NEW_PASSWORD.into(),
            WRONG_PASSWORD.into(),
            PASSPHRASE.into(),
            APP_SECRET.into(),
            key.trim().into(),
        ];
        secrets.extend(mock.issued_secrets());
        assert!(secrets.len() > 6, "the mock issued tokens");
        for secret in &secrets {
            assert!(
                !all_text.contains(secret.as_str()) && !page_text.contains(secret.as_str()),
                "an audit event holds a secret"
            );
        }
    }
    browser.close().await.unwrap();
    server.stop().await;
}
