//! Shared by the integration tests: a real Fasten server on a free loopback port with its own
//! temporary data folder, and a cookie-keeping HTTP client that does not follow redirects (so
//! tests can check where they lead).

#![allow(dead_code)]

pub mod lab_csv;

use std::path::Path;

use fasten::config::Config;
use fasten::state::AppState;
use reqwest::StatusCode;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ADMIN: &str = "alice";
/// A small Synthea patient (104 resources) from the shared test data.
pub const PARIS: &str = "Paris_Casper_826f1b71-0205-4543-b019-ce6583b77fc5.json";
pub const ADMIN_PASSWORD: &str = "alice-password-1";

pub struct TestServer {
    pub url: String,
    pub state: AppState,
    pub data_dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn test_config(data_dir: &Path) -> Config {
    let mut config =
        Config::load(Some(&repo_config()), Vec::new()).expect("repository config.toml");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.to_path_buf();
    config
}

/// A Synthea bundle in `../shared/testdata/fhir/synthea`.
pub fn synthea(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/fhir/synthea")
        .join(name)
}

/// Uploads a file on the signed-in account's own Sources page as the browser's htmx form does.
pub async fn upload(client: &Client, name: &str, bytes: Vec<u8>) -> Reply {
    let own = client.own_person_path().await;
    upload_for(client, &own, name, bytes).await
}

/// Uploads a file on a person's Sources page (`person` is `/people/leo`).
pub async fn upload_for(client: &Client, person: &str, name: &str, bytes: Vec<u8>) -> Reply {
    let token = client.csrf_token(&format!("{person}/sources")).await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
    );
    let response = client
        .http
        .post(format!("{}{person}/sources/upload", client.base))
        .header("X-CSRF-Token", token)
        .header("HX-Request", "true")
        .multipart(form)
        .send()
        .await
        .unwrap();
    Reply {
        status: response.status(),
        location: None,
        body: response.text().await.unwrap(),
    }
}

pub fn repo_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_in(data_dir, adjust).await
    }

    pub async fn start_in(data_dir: TempDir, adjust: impl FnOnce(&mut Config)) -> TestServer {
        init_logs();
        let mut config = test_config(data_dir.path());
        adjust(&mut config);
        let server = fasten::Server::bind(config).await.expect("server starts");
        let url = format!(
            "http://{}{}",
            server.local_addr(),
            server.state().config.base_path
        );
        let state = server.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            url,
            state,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it, handing back the data folder for a restart.
    pub async fn stop(mut self) -> TempDir {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
        self.state.db.close().await;
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }

    /// A server whose first-run wizard has been completed by `alice`, with her client.
    pub async fn with_admin() -> (TestServer, Client) {
        let server = TestServer::start().await;
        let client = server.client();
        client.setup(ADMIN, "Alice", ADMIN_PASSWORD).await;
        (server, client)
    }

    pub async fn count(&self, sql: &str, id: i64) -> i64 {
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&self.state.db)
            .await
            .unwrap()
    }

    /// A person's stored resources of one type, by id.
    pub async fn stored(&self, person_id: i64, resource_type: &str) -> Vec<serde_json::Value> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT json FROM resources WHERE person_id = ? AND resource_type = ?
             ORDER BY resource_id",
        )
        .bind(person_id)
        .bind(resource_type)
        .fetch_all(&self.state.db)
        .await
        .unwrap();
        rows.iter()
            .map(|json| serde_json::from_str(json).unwrap())
            .collect()
    }

    /// Imports a Synthea bundle for a user the way `fasten import` does.
    pub async fn import_synthea(&self, username: &str, name: &str) {
        self.import_path(username, &synthea(name)).await;
    }

    /// Imports a file for an account's own person the way `fasten import` does.
    pub async fn import_path(&self, username: &str, path: &Path) {
        let person_id = self.person_id(username).await;
        self.import_for(person_id, path).await;
    }

    /// Imports a file for a person the way `fasten import --person` does.
    pub async fn import_for(&self, person_id: i64, path: &Path) {
        let name = path.file_name().unwrap().to_str().unwrap();
        self.import_report(person_id, path)
            .await
            .unwrap_or_else(|e| panic!("{name} imports: {e:#}"));
    }

    /// Imports a file for a person the way `fasten import --person` does, with its report.
    pub async fn import_report(
        &self,
        person_id: i64,
        path: &Path,
    ) -> Result<fasten::import::ImportReport, fasten::import::ImportError> {
        let name = path.file_name().unwrap().to_str().unwrap();
        fasten::import::import_file(
            &self.state.db,
            &self.state.plugins,
            person_id,
            path,
            name,
            fasten::jobs::Trigger::Cli,
            &Default::default(),
        )
        .await
    }

    /// Imports a FHIR Bundle written by the test, saved as `name` in the data folder.
    pub async fn import_bundle(&self, username: &str, name: &str, bundle: &serde_json::Value) {
        let path = self.data_dir.path().join(name);
        std::fs::write(&path, bundle.to_string()).unwrap();
        self.import_path(username, &path).await;
    }

    pub async fn user_exists(&self, username: &str) -> bool {
        fasten::store::users::by_username(&self.state.db, username)
            .await
            .unwrap()
            .is_some()
    }

    /// The own person of an account.
    pub async fn person_id(&self, username: &str) -> i64 {
        fasten::store::users::by_username(&self.state.db, username)
            .await
            .unwrap()
            .expect("user exists")
            .person_id
    }

    /// Adds a person managed by an account, as its family page does.
    pub async fn add_person(&self, owner: &str, slug: &str, name: &str) -> i64 {
        let owner = fasten::store::users::by_username(&self.state.db, owner)
            .await
            .unwrap()
            .expect("owner exists");
        let mut conn = self.state.db.acquire().await.unwrap();
        fasten::store::people::create(&mut conn, slug, name, None, Some(owner.id))
            .await
            .unwrap()
            .id
    }

    pub async fn user_id(&self, username: &str) -> i64 {
        fasten::store::users::by_username(&self.state.db, username)
            .await
            .unwrap()
            .expect("user exists")
            .id
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn assert_redirect(&self, to: &str) {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "expected a redirect to {to}, got {}: {}",
            self.status,
            self.body
        );
        assert_eq!(self.location.as_deref(), Some(to));
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    /// A browser-like client of the Fasten at `base`: it keeps cookies and follows no redirect.
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// GETs a page. An address from before people existed (`/labs`) moves to the account's own
    /// person (`/people/alice/labs`); that move is followed, as a browser would.
    pub async fn get(&self, path: &str) -> Reply {
        let first = self.get_exact(path).await;
        match self.own_person_move(path, &first) {
            Some(url) => reply(self.http.get(url).send().await.unwrap()).await,
            None => first,
        }
    }

    /// GETs a page without following any redirect.
    pub async fn get_exact(&self, path: &str) -> Reply {
        reply(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Where an old address moved to, as a full URL, when `reply` is that move.
    fn own_person_move(&self, path: &str, reply: &Reply) -> Option<String> {
        let prefix = path_prefix(&self.base);
        // The same tail under /people/<slug>: "/labs?x" moved to "/people/alice/labs?x".
        let moved = matches!(reply.status.as_u16(), 303 | 307)
            && !path.starts_with("/people")
            && reply.location.as_deref().is_some_and(|l| {
                l.strip_prefix(&format!("{prefix}/people/"))
                    .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
                    == Some(path)
            });
        let origin = &self.base[..self.base.len() - prefix.len()];
        moved.then(|| format!("{origin}{}", reply.location.as_deref().unwrap()))
    }

    /// `/people/<slug>` of the signed-in account's own person.
    pub async fn own_person_path(&self) -> String {
        let moved = self.get_exact("/sources").await;
        let location = moved
            .location
            .expect("/sources moves to the own person's page");
        let prefix = path_prefix(&self.base);
        location
            .strip_prefix(&prefix)
            .unwrap()
            .strip_suffix("/sources")
            .unwrap()
            .to_string()
    }

    /// The CSRF token embedded in the page at `path`.
    pub async fn csrf_token(&self, path: &str) -> String {
        let page = self.get(path).await;
        extract_csrf(&page.body).unwrap_or_else(|| panic!("no csrf_token in {path}: {}", page.body))
    }

    /// Posts a form the way a browser does: with the token from the page it was shown on.
    pub async fn submit(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> Reply {
        let token = self.csrf_token(page).await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &token));
        self.post_raw(action, &form).await
    }

    /// Posts exactly these fields, with no token added. An old address moves (307) to the
    /// account's own person, and the form follows it there.
    pub async fn post_raw(&self, action: &str, fields: &[(&str, &str)]) -> Reply {
        let first = reply(
            self.http
                .post(format!("{}{action}", self.base))
                .form(fields)
                .send()
                .await
                .unwrap(),
        )
        .await;
        match self.own_person_move(action, &first) {
            Some(url) => reply(self.http.post(url).form(fields).send().await.unwrap()).await,
            None => first,
        }
    }

    pub async fn setup(&self, username: &str, display_name: &str, password: &str) -> Reply {
        let r = self
            .submit(
                "/setup",
                "/setup",
                &[
                    ("username", username),
                    ("display_name", display_name),
                    ("password", password),
                    ("password_confirmation", password),
                ],
            )
            .await;
        r.assert_redirect(&format!("{}/", path_prefix(&self.base)));
        r
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.submit(
            "/login",
            "/login",
            &[("username", username), ("password", password)],
        )
        .await
    }

    pub async fn create_user(&self, username: &str, password: &str, role: &str) -> Reply {
        self.submit(
            "/admin/users",
            "/admin/users",
            &[
                ("username", username),
                ("display_name", username),
                ("password", password),
                ("password_confirmation", password),
                ("role", role),
            ],
        )
        .await
    }
}

/// The path part of a base URL: "" or "/fasten".
pub fn path_prefix(base: &str) -> String {
    let after_scheme = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    after_scheme
        .find('/')
        .map(|i| after_scheme[i..].to_string())
        .unwrap_or_default()
}

/// The value of the first hidden field `name` in a page.
pub fn extract_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

pub fn extract_csrf(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.unwrap();
    Reply {
        status,
        location,
        body,
    }
}

/// Server logs in test output (shown for failing tests), at `RUST_LOG` or warn level.
pub fn init_logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// The real `fasten serve` binary as an operator runs it, on a free loopback port, killed when
/// dropped however the test ends. Its log lines are kept for the test to read.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub url: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `fasten serve` on `data_dir`, with only the `FASTEN_` settings given here, and
    /// waits until it says where it listens.
    pub fn start(data_dir: &Path, env: &[(&str, &std::ffi::OsStr)]) -> ServeProcess {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fasten"));
        command.current_dir(data_dir.parent().unwrap_or(data_dir));
        for (name, _) in std::env::vars() {
            if name.starts_with("FASTEN_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--config"])
            .arg(repo_config())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("FASTEN_DATA_DIR", data_dir)
            .env("FASTEN_LOG_LEVEL", "info")
            .env(
                "FASTEN_PLUGINS_REGISTRY_DIR",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-registry"),
            );
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("fasten serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut process = ServeProcess {
            child,
            url: String::new(),
            log,
        };
        process.url = loop {
            let line = match rx.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(line) => line,
                Err(_) => panic!(
                    "fasten serve did not report its address:\n{}",
                    process.log.lock().unwrap().join("\n")
                ),
            };
            if let Some(rest) = line.split("url=").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches('/')
                    .to_string();
            }
        };
        std::thread::spawn(move || while rx.recv().is_ok() {});
        process
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `fasten` command on `data_dir`, with the repository's config.toml and none of this
/// process's own `FASTEN_` settings.
pub fn fasten_command(data_dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fasten"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FASTEN_") {
            command.env_remove(name);
        }
    }
    command
        .arg("--config")
        .arg(repo_config())
        .env("FASTEN_DATA_DIR", data_dir);
    command
}

/// Runs `command` with `stdin` as its standard input, collecting what it printed.
pub fn run_with_stdin(command: &mut std::process::Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `fasten ARGS` on `data_dir` and asserts that it succeeded.
pub fn fasten_ok(data_dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let output = run_with_stdin(fasten_command(data_dir).args(args), stdin);
    assert!(
        output.status.success(),
        "fasten {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
