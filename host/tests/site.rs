//! The site as a whole: health check, error pages, static assets, reverse-proxy prefix, limits,
//! and start-up on an existing database.

use crate::common;

use common::{ADMIN, ADMIN_PASSWORD, TestServer};
use reqwest::StatusCode;

#[tokio::test]
async fn unknown_pages_get_a_404_page_in_the_layout() {
    let (server, admin) = TestServer::with_admin().await;
    let page = admin.get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("404"));
    assert!(page.body.contains("There is nothing at this address."));
    assert!(
        page.body.contains("Sign out"),
        "rendered in the layout with navigation"
    );
    assert!(page.body.contains("<html"));

    let anonymous = server.client().get("/no/such/page").await;
    assert_eq!(anonymous.status, StatusCode::NOT_FOUND);
    assert!(anonymous.body.contains("<html") && !anonymous.body.contains("Sign out"));
}

#[tokio::test]
async fn server_failures_show_a_500_page_without_internal_details() {
    let (server, admin) = TestServer::with_admin().await;
    // Break the database under the running server, as a damaged file would.
    sqlx::query("DROP TABLE resources")
        .execute(&server.state.db)
        .await
        .unwrap();
    let page = admin.get("/").await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(page.body.contains("Something went wrong on the server"));
    assert!(page.body.contains("Sign out"), "rendered in the layout");
    assert!(!page.body.contains("no such table"), "no SQL in the page");
}

#[tokio::test]
async fn pages_load_vendored_htmx_and_send_the_csrf_header_from_the_layout() {
    let (server, admin) = TestServer::with_admin().await;
    let page = admin.get("/").await;
    let token = common::extract_csrf(&page.body).unwrap();
    assert!(
        page.body
            .contains(&format!(r#"hx-headers='{{"X-CSRF-Token": "{token}"}}'"#))
    );
    for nav in ["Dashboard", "Sources", "Explore", "Labs", "History", "Jobs"] {
        assert!(
            page.body.contains(&format!(">{nav}</a>")),
            "{nav} in navigation"
        );
    }
    assert!(
        page.body.contains(r#"name="viewport""#),
        "usable at phone width"
    );
    for page in ["/sources", "/admin/plugins"] {
        assert_eq!(admin.get(page).await.status, StatusCode::OK, "{page}");
    }
    assert!(admin.get("/jobs").await.body.contains("No jobs"));
    for placeholder in ["/explore", "/history"] {
        let page = admin.get(placeholder).await;
        assert_eq!(page.status, StatusCode::OK, "{placeholder}");
        assert!(page.body.contains("Nothing here yet"), "{placeholder}");
    }

    let htmx = reqwest::get(format!("{}/static/vendor/htmx.min.js", server.url))
        .await
        .unwrap();
    assert_eq!(htmx.status(), StatusCode::OK);
    assert!(
        htmx.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(htmx.text().await.unwrap().contains("htmx"));
    let licence = reqwest::get(format!("{}/static/vendor/htmx.LICENSE", server.url))
        .await
        .unwrap();
    assert_eq!(licence.status(), StatusCode::OK);
    // Browsers ask for /favicon.ico whatever the page links: it is there, so no 404 is logged.
    for icon in ["/favicon.ico", "/static/favicon.svg"] {
        let favicon = reqwest::get(format!("{}{icon}", server.url)).await.unwrap();
        assert_eq!(favicon.status(), StatusCode::OK, "{icon}");
        assert_eq!(favicon.headers()["content-type"], "image/svg+xml");
    }
    let page = admin.get("/people").await;
    assert!(
        page.body
            .contains(r#"rel="icon" href="/static/favicon.svg""#)
    );
    let missing = reqwest::get(format!("{}/static/../Cargo.toml", server.url))
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn responses_carry_security_headers() {
    let (server, _) = TestServer::with_admin().await;
    let response = reqwest::get(format!("{}/login", server.url)).await.unwrap();
    let headers = response.headers();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn oversized_form_posts_are_refused() {
    let (server, admin) = TestServer::with_admin().await;
    let token = admin.csrf_token("/").await;
    let huge = "x".repeat(200 * 1024);
    let reply = admin
        .post_raw(
            "/admin/users",
            &[("csrf_token", &token), ("display_name", &huge)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.body.contains("larger than"), "{}", reply.body);
    let _ = server;
}

#[tokio::test]
async fn restarting_on_an_up_to_date_database_changes_no_schema_and_keeps_accounts() {
    let (server, _) = TestServer::with_admin().await;
    let schema_version = |db: sqlx::SqlitePool| async move {
        sqlx::query_scalar::<_, i64>("PRAGMA schema_version")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let before = schema_version(server.state.db.clone()).await;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(foreign_keys, 1);

    let data_dir = server.stop().await;
    let restarted = TestServer::start_in(data_dir, |_| {}).await;
    assert_eq!(schema_version(restarted.state.db.clone()).await, before);
    let client = restarted.client();
    client
        .login(ADMIN, ADMIN_PASSWORD)
        .await
        .assert_redirect("/");
    assert!(restarted.data_dir.path().join("fasten.db").exists());
}

#[tokio::test]
async fn a_base_path_prefixes_every_link_cookie_and_redirect() {
    let server = TestServer::start_with(|c| c.base_path = "/fasten".into()).await;
    assert!(server.url.ends_with("/fasten"));
    let client = server.client();
    client.get("/").await.assert_redirect("/fasten/setup");
    let setup = client.get("/setup").await;
    assert!(setup.body.contains(r#"action="/fasten/setup""#));
    assert!(
        setup
            .body
            .contains(r#"href="/fasten/static/vendor/simple.min.css""#)
    );
    client.setup(ADMIN, "Alice", ADMIN_PASSWORD).await;
    let page = client.get("/").await;
    assert!(page.body.contains(r#"href="/fasten/people/alice/labs""#));
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let root = server.url.trim_end_matches("/fasten");
    let cookie = reqwest::get(format!("{root}/fasten/login")).await.unwrap();
    let set_cookie = cookie.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("Path=/fasten"), "{set_cookie}");
}
