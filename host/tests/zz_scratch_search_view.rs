mod common;
use common::{ADMIN, TestServer};
#[tokio::test]
async fn show() {
    let (server, alice) = TestServer::with_admin().await;
    let user_id = server.user_id(ADMIN).await;
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../shared/testdata/fhir/synthea/Kathy_Walker_59885d16-d333-481e-8edb-422fa047d6b6.json",
    );
    fasten::import::import_file(
        &server.state.db,
        &server.state.plugins,
        user_id,
        &p,
        "k.json",
    )
    .await
    .unwrap();
    let b = alice.get("/search?q=blood%20pres").await.body;
    let i = b.find("<main>").unwrap();
    println!(
        "{}",
        &b[..b.find("</header>").unwrap() + 9]
            .split("<header>")
            .nth(1)
            .unwrap()
    );
    println!("{}", &b[i..]);
    let (id,): (String,) = sqlx::query_as("SELECT resource_id FROM resources WHERE resource_type='DiagnosticReport' AND json LIKE '%presentedForm%' LIMIT 1").fetch_one(&server.state.db).await.unwrap_or(("none".into(),));
    println!("DR {id}");
    let b = alice.get("/search?q=hypertension").await.body;
    println!("{}", &b[b.find("<main>").unwrap()..]);
}
