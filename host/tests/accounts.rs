//! Accounts, sessions and their protections, driven over real HTTP against a running server.

use crate::common;

use std::time::Duration;

use common::{ADMIN, ADMIN_PASSWORD, TestServer};
use reqwest::StatusCode;

#[tokio::test]
async fn first_run_leads_to_setup_which_creates_the_administrator_once() {
    let server = TestServer::start().await;
    let client = server.client();

    let health: serde_json::Value = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["first_run"], true);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    for path in ["/", "/login", "/admin/users", "/explore", "/no-such-page"] {
        client.get(path).await.assert_redirect("/setup");
    }
    // The wizard's own page still has its icon.
    assert_eq!(client.get("/favicon.ico").await.status, StatusCode::OK);
    let form = client.get("/setup").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Create administrator"));

    // A short password or a mismatch is explained and creates nothing.
    let short = client
        .submit(
            "/setup",
            "/setup",
            &[
                ("username", "alice"),
                ("password", "short"),
                ("password_confirmation", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(
        short.body.contains("at least 10 characters"),
        "{}",
        short.body
    );
    let mismatch = client
        .submit(
            "/setup",
            "/setup",
            &[
                ("username", "alice"),
                ("password", "long-enough-1"),
                ("password_confirmation", "long-enough-2"),
            ],
        )
        .await;
    assert!(mismatch.body.contains("do not match"));
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM users WHERE ? = ?", 0)
            .await,
        0
    );

    client.setup(ADMIN, "Alice Example", ADMIN_PASSWORD).await;
    let dashboard = client.get("/").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(
        dashboard.body.contains("Alice Example&#x27;s dashboard"),
        "{}",
        dashboard.body
    );
    assert!(
        dashboard.body.contains(">Users<"),
        "an admin sees the admin entries"
    );

    let health: serde_json::Value = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["first_run"], false);

    // The wizard is gone for everyone, signed in or not.
    assert_eq!(client.get("/setup").await.status, StatusCode::NOT_FOUND);
    let stranger = server.client();
    assert_eq!(stranger.get("/setup").await.status, StatusCode::NOT_FOUND);
    let token = stranger.csrf_token("/login").await;
    let again = stranger
        .post_raw(
            "/setup",
            &[
                ("username", "mallory"),
                ("password", "mallory-password"),
                ("password_confirmation", "mallory-password"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let admins: i64 = server
        .count(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND ? = 0",
            0,
        )
        .await;
    assert_eq!(admins, 1);
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"));
}

#[tokio::test]
async fn sign_in_accepts_the_right_password_and_gives_one_message_for_any_wrong_one() {
    let (server, _) = TestServer::with_admin().await;
    let client = server.client();
    client.get("/").await.assert_redirect("/login");

    let wrong_password = client.login(ADMIN, "not-the-password").await;
    let unknown_user = client.login("nobody", "not-the-password").await;
    for reply in [&wrong_password, &unknown_user] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(
            reply.body.contains("Wrong username or password."),
            "{}",
            reply.body
        );
    }
    assert_eq!(client.get("/").await.status, StatusCode::SEE_OTHER);

    // Usernames are case-insensitive at sign-in.
    client
        .login("ALICE", ADMIN_PASSWORD)
        .await
        .assert_redirect("/");
    let dashboard = client.get("/").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Alice&#x27;s dashboard"));
}

#[tokio::test]
async fn sign_in_returns_to_the_page_asked_for_but_never_to_another_site() {
    let (server, _) = TestServer::with_admin().await;
    let client = server.client();
    client
        .get("/labs")
        .await
        .assert_redirect("/login?next=%2Flabs");
    let token = client.csrf_token("/login?next=%2Flabs").await;
    let reply = client
        .post_raw(
            "/login",
            &[
                ("username", ADMIN),
                ("password", ADMIN_PASSWORD),
                ("next", "/labs"),
                ("csrf_token", &token),
            ],
        )
        .await;
    reply.assert_redirect("/labs");

    let other = server.client();
    let token = other.csrf_token("/login").await;
    let reply = other
        .post_raw(
            "/login",
            &[
                ("username", ADMIN),
                ("password", ADMIN_PASSWORD),
                ("next", "//evil.example/"),
                ("csrf_token", &token),
            ],
        )
        .await;
    reply.assert_redirect("/");
}

#[tokio::test]
async fn repeated_failures_lock_the_username_even_for_the_right_password() {
    let (server, _) = TestServer::with_admin().await;
    let client = server.client();
    for _ in 0..5 {
        assert_eq!(
            client.login(ADMIN, "wrong-password!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = client.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        locked.body.contains("Too many failed sign-ins"),
        "{}",
        locked.body
    );
    assert_eq!(
        client.get("/").await.status,
        StatusCode::SEE_OTHER,
        "not signed in"
    );

    // Another family member is not locked out by someone guessing alice's password.
    client.login("nobody-else", "wrong-password!").await;
    let _ = server;
}

#[tokio::test]
async fn one_address_guessing_many_usernames_is_locked() {
    let (server, _) = TestServer::with_admin().await;
    let client = server.client();
    for i in 0..20 {
        let r = client.login(&format!("guess{i}"), "wrong-password!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let locked = client.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let (server, _) = TestServer::with_admin().await;
    let alice = server.user_id(ADMIN).await;
    let session_rows = "SELECT COUNT(*) FROM sessions WHERE user_id = ?";

    // Sign in with a bare client so the raw cookie values are visible, as a thief would copy them.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = plain
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    let csrf_cookie = first_cookie(&login, "fasten_csrf");
    let token = common::extract_csrf(&login.text().await.unwrap()).unwrap();
    let signed_in = plain
        .post(format!("{}/login", server.url))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("username", ADMIN),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    let set_cookie = signed_in
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(
        !set_cookie.contains("Secure"),
        "plain http must not get Secure cookies"
    );
    let session_cookie = first_cookie(&signed_in, "fasten_session");
    let cookies = format!("{csrf_cookie}; {session_cookie}");
    assert_eq!(server.count(session_rows, alice).await, 2);

    // Only the hash of the id is stored: the cookie value itself appears nowhere.
    let value = session_cookie.strip_prefix("fasten_session=").unwrap();
    let dump: Vec<String> = sqlx::query_scalar("SELECT hex(id_hash) FROM sessions")
        .fetch_all(&server.state.db)
        .await
        .unwrap();
    assert!(dump.iter().all(|h| !h.contains(value) && h.len() == 64));

    let page = plain
        .get(format!("{}/people/alice/", server.url))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let out = plain
        .post(format!("{}/logout", server.url))
        .header("cookie", &cookies)
        .form(&[("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        server.count(session_rows, alice).await,
        1,
        "only this session ended"
    );

    // A copy of the old cookie is worthless now.
    let replay = plain
        .get(format!("{}/", server.url))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert_eq!(replay.headers()["location"], "/login");
}

fn first_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_proxy() {
    let (server, _) = TestServer::with_admin().await;
    let response = reqwest::Client::new()
        .get(format!("{}/login", server.url))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn idle_sessions_expire() {
    let server = TestServer::start_with(|c| c.session.idle_timeout = Duration::from_secs(1)).await;
    let client = server.client();
    client.setup(ADMIN, "Alice", ADMIN_PASSWORD).await;
    assert_eq!(client.get("/").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    client.get("/").await.assert_redirect("/login");
}

#[tokio::test]
async fn sessions_expire_at_their_absolute_limit_even_when_busy() {
    let server =
        TestServer::start_with(|c| c.session.absolute_timeout = Duration::from_secs(2)).await;
    let client = server.client();
    client.setup(ADMIN, "Alice", ADMIN_PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(client.get("/").await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.get("/").await.assert_redirect("/login");
}

#[tokio::test]
async fn members_get_403_on_every_admin_page_and_action() {
    let (server, admin) = TestServer::with_admin().await;
    admin
        .create_user("bob", "bob-password-1", "member")
        .await
        .assert_redirect("/admin/users?notice=created");
    let bob = server.client();
    bob.login("bob", "bob-password-1")
        .await
        .assert_redirect("/");
    let home = bob.get("/").await;
    assert!(
        !home.body.contains(">Users<"),
        "members do not see admin entries"
    );

    for path in [
        "/admin/users",
        "/admin/plugins",
        "/admin/backups",
        "/admin/activity",
        "/admin/provider-apps",
        "/admin/provider-apps/epic",
        "/admin/provider-apps/jwks.json",
        "/admin/directory",
        &format!("/admin/users/{}/delete", server.user_id(ADMIN).await),
    ] {
        let page = bob.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            page.body.contains("403"),
            "{path}: error page in the layout"
        );
        assert!(
            page.body.contains("Sign out"),
            "{path}: error page in the layout"
        );
    }
    let token = bob.csrf_token("/").await;
    let alice_id = server.user_id(ADMIN).await.to_string();
    let attempts = [
        (
            "/admin/users".to_string(),
            vec![
                ("username", "eve"),
                ("password", "eve-password-1"),
                ("password_confirmation", "eve-password-1"),
                ("role", "admin"),
            ],
        ),
        (
            format!("/admin/users/{alice_id}/role"),
            vec![("role", "member")],
        ),
        (
            format!("/admin/users/{alice_id}/status"),
            vec![("disabled", "true")],
        ),
        (
            format!("/admin/users/{alice_id}/delete"),
            vec![("confirm_username", ADMIN)],
        ),
        (
            "/admin/provider-apps/epic".to_string(),
            vec![("client_id", "eve-app"), ("client_auth", "none")],
        ),
        ("/admin/provider-apps/keys".to_string(), vec![]),
        ("/admin/provider-apps/epic/delete".to_string(), vec![]),
        (
            "/admin/directory/lists".to_string(),
            vec![
                ("name", "Eve's list"),
                ("url", "https://lists.example/eve.json"),
                ("platform", "epic"),
            ],
        ),
        ("/admin/directory/lists/added-1/delete".to_string(), vec![]),
    ];
    for (action, mut fields) in attempts {
        fields.push(("csrf_token", &token));
        let reply = bob.post_raw(&action, &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id = ?",
                alice_id.parse().unwrap()
            )
            .await,
        1
    );
    assert!(!server.user_exists("eve").await);
    let registrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM provider_apps")
        .fetch_one(&server.state.db)
        .await
        .unwrap();
    assert_eq!(registrations, 0, "a member saved an app registration");
}

#[tokio::test]
async fn the_last_administrator_cannot_be_removed_disabled_or_demoted() {
    let (server, admin) = TestServer::with_admin().await;
    let alice = server.user_id(ADMIN).await;
    let users = "/admin/users";

    let demote = admin
        .submit(
            users,
            &format!("/admin/users/{alice}/role"),
            &[("role", "member")],
        )
        .await;
    let disable = admin
        .submit(
            users,
            &format!("/admin/users/{alice}/status"),
            &[("disabled", "true")],
        )
        .await;
    for reply in [&demote, &disable] {
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert!(reply.body.contains("last administrator"), "{}", reply.body);
    }
    let delete = admin
        .submit(
            &format!("/admin/users/{alice}/delete"),
            &format!("/admin/users/{alice}/delete"),
            &[("confirm_username", ADMIN)],
        )
        .await;
    assert_eq!(delete.status, StatusCode::CONFLICT);
    assert!(delete.body.contains("last administrator"));
    let still = "SELECT COUNT(*) FROM users WHERE id = ? AND role = 'admin' AND disabled = 0";
    assert_eq!(server.count(still, alice).await, 1);
    assert_eq!(
        admin.get("/").await.status,
        StatusCode::OK,
        "still signed in"
    );

    // With a second administrator, the first may step down.
    admin
        .create_user("carol", "carol-password-1", "admin")
        .await
        .assert_redirect("/admin/users?notice=created");
    admin
        .submit(
            users,
            &format!("/admin/users/{alice}/role"),
            &[("role", "member")],
        )
        .await
        .assert_redirect("/admin/users?notice=role");
    let carol = server.user_id("carol").await;
    let carol_client = server.client();
    carol_client
        .login("carol", "carol-password-1")
        .await
        .assert_redirect("/");
    let last = carol_client
        .submit(
            users,
            &format!("/admin/users/{carol}/status"),
            &[("disabled", "true")],
        )
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn disabling_and_resetting_a_password_sign_the_user_out() {
    let (server, admin) = TestServer::with_admin().await;
    admin.create_user("bob", "bob-password-1", "member").await;
    let bob_id = server.user_id("bob").await;
    let bob = server.client();
    bob.login("bob", "bob-password-1")
        .await
        .assert_redirect("/");

    admin
        .submit(
            "/admin/users",
            &format!("/admin/users/{bob_id}/password"),
            &[
                ("password", "bob-password-2"),
                ("password_confirmation", "bob-password-2"),
            ],
        )
        .await
        .assert_redirect("/admin/users?notice=password");
    assert_eq!(
        bob.get("/").await.status,
        StatusCode::SEE_OTHER,
        "old session ended"
    );
    assert_eq!(
        bob.login("bob", "bob-password-1").await.status,
        StatusCode::UNAUTHORIZED
    );
    bob.login("bob", "bob-password-2")
        .await
        .assert_redirect("/");

    admin
        .submit(
            "/admin/users",
            &format!("/admin/users/{bob_id}/status"),
            &[("disabled", "true")],
        )
        .await
        .assert_redirect("/admin/users?notice=disabled");
    assert_eq!(bob.get("/").await.status, StatusCode::SEE_OTHER);
    let refused = bob.login("bob", "bob-password-2").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("Wrong username or password."));

    admin
        .submit(
            "/admin/users",
            &format!("/admin/users/{bob_id}/status"),
            &[("disabled", "false")],
        )
        .await
        .assert_redirect("/admin/users?notice=enabled");
    bob.login("bob", "bob-password-2")
        .await
        .assert_redirect("/");
}

#[tokio::test]
async fn state_changes_without_a_valid_csrf_token_are_refused_and_change_nothing() {
    let (server, admin) = TestServer::with_admin().await;
    let create = [
        ("username", "eve"),
        ("display_name", "Eve"),
        ("password", "eve-password-1"),
        ("password_confirmation", "eve-password-1"),
        ("role", "admin"),
    ];

    let missing = admin.post_raw("/admin/users", &create).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("nothing was"), "{}", missing.body);
    let mut forged = create.to_vec();
    forged.push(("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_eq!(
        admin.post_raw("/admin/users", &forged).await.status,
        StatusCode::FORBIDDEN
    );
    // A token from another browser does not fit this one.
    let other_token = server.client().csrf_token("/login").await;
    let mut foreign = create.to_vec();
    foreign.push(("csrf_token", &other_token));
    assert_eq!(
        admin.post_raw("/admin/users", &foreign).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(!server.user_exists("eve").await);

    // Sign-out and sign-in are protected too.
    assert_eq!(
        admin.post_raw("/logout", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin.get("/").await.status,
        StatusCode::OK,
        "still signed in"
    );
    let stranger = server.client();
    stranger.get("/login").await;
    assert_eq!(
        stranger
            .post_raw(
                "/login",
                &[("username", ADMIN), ("password", ADMIN_PASSWORD)]
            )
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // htmx sends the token in a header instead of a field.
    let token = admin.csrf_token("/").await;
    let via_header = admin
        .http
        .post(format!("{}/admin/users", server.url))
        .header("X-CSRF-Token", token)
        .header("HX-Request", "true")
        .form(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(via_header.status(), StatusCode::SEE_OTHER);
    assert!(server.user_exists("eve").await);
}

#[tokio::test]
async fn deleting_a_user_needs_confirmation_and_removes_all_of_their_rows() {
    let (server, admin) = TestServer::with_admin().await;
    admin.create_user("bob", "bob-password-1", "member").await;
    let bob_id = server.user_id("bob").await;
    let alice_id = server.user_id(ADMIN).await;
    let bob = server.client();
    bob.login("bob", "bob-password-1")
        .await
        .assert_redirect("/");
    for (user, name) in [(bob_id, "Bob's clinic"), (alice_id, "Alice's clinic")] {
        let source: i64 = sqlx::query_scalar(
            "INSERT INTO sources (person_id, kind, display_name, created_at, updated_at) VALUES (?, 'upload', ?, 0, 0) RETURNING id",
        )
        .bind(user)
        .bind(name)
        .fetch_one(&server.state.db)
        .await
        .unwrap();
        for id in ["p1", "o1"] {
            sqlx::query(
                "INSERT INTO resources (person_id, source_id, resource_type, resource_id, content_hash, json, updated_at)
                 VALUES (?, ?, 'Observation', ?, x'00', '{}', 0)",
            )
            .bind(user)
            .bind(source)
            .bind(id)
            .execute(&server.state.db)
            .await
            .unwrap();
        }
    }

    let confirm_page = format!("/admin/users/{bob_id}/delete");
    let page = admin.get(&confirm_page).await;
    assert!(
        page.body.contains("<strong>2</strong> records"),
        "{}",
        page.body
    );
    let wrong = admin
        .submit(&confirm_page, &confirm_page, &[("confirm_username", "bo")])
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("Nothing was deleted"));
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM resources WHERE person_id = ?", bob_id)
            .await,
        2
    );

    admin
        .submit(&confirm_page, &confirm_page, &[("confirm_username", "bob")])
        .await
        .assert_redirect("/admin/users?notice=deleted");
    for table in [
        "users WHERE id",
        "sessions WHERE user_id",
        "sources WHERE person_id",
        "resources WHERE person_id",
    ] {
        let n = server
            .count(&format!("SELECT COUNT(*) FROM {table} = ?"), bob_id)
            .await;
        assert_eq!(n, 0, "{table}");
    }
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) FROM resources WHERE person_id = ?",
                alice_id
            )
            .await,
        2
    );
    assert_eq!(bob.get("/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get(&confirm_page).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn user_data_is_escaped_in_pages() {
    let (server, admin) = TestServer::with_admin().await;
    let reply = admin
        .submit(
            "/admin/users",
            "/admin/users",
            &[
                ("username", "mallory"),
                ("display_name", "<script>alert(1)</script>"),
                ("password", "mallory-pass-1"),
                ("password_confirmation", "mallory-pass-1"),
            ],
        )
        .await;
    reply.assert_redirect("/admin/users?notice=created");
    let page = admin.get("/admin/users").await;
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert(1)"));
    let _ = server;
}
