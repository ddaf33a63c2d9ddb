//! `cargo bench -p fasten --bench pages`: starts a real server, signs one user in and gives a
//! family of three people (the account's own person and two it manages) 10,000 and then 100,000
//! resources between them, a third each (the Synthea bundles imported again and again with
//! rewritten ids and references, written straight through `fhir::ingest::Writer`, which also
//! keeps the search index in step). At each size it times keep-alive GETs of the account's own
//! person's dashboard and each of its widgets, the Explore list, Labs, one lab test, History,
//! Profile, search and a resource detail page (all under `/people/alice/`) over loopback (one warm-up, then 20 timed requests; 10 at 100k), and prints a table of the
//! median and p90 per page beside its target. Asserts only that each page answers 200 (search may
//! answer 404 where it does not exist: "n/a"). `FASTEN_BENCH_KEEP_DB=FILE` keeps a copy of the
//! 100k database for looking into a slow page.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use common::{ADMIN, Client, TestServer};

/// The lab test timed on `/labs/{key}`: total cholesterol.
const LAB_KEY: &str = "2093-3";
const SIZES: [u64; 2] = [10_000, 100_000];
/// Resources per `Writer::write` and per transaction.
const BATCH: usize = 2_000;

/// One Synthea resource with what is needed to give a copy its own ids.
struct Template {
    resource: Value,
    resource_type: String,
    id: String,
}

/// The five Synthea bundles' resources, in file order, with each bundle's fullUrl → `Type/id`.
struct Corpus {
    resources: Vec<Template>,
    /// fullUrl (`urn:uuid:...`) and `Type/id` → (type, id), for rewriting references.
    targets: HashMap<String, (String, String)>,
}

fn synthea() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/fhir/synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn load_corpus() -> anyhow::Result<Corpus> {
    let mut resources = Vec::new();
    let mut targets = HashMap::new();
    for path in synthea() {
        let bundle: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let resource = entry["resource"].clone();
            let (Some(resource_type), Some(id)) =
                (resource["resourceType"].as_str(), resource["id"].as_str())
            else {
                continue;
            };
            let (resource_type, id) = (resource_type.to_owned(), id.to_owned());
            if let Some(full_url) = entry["fullUrl"].as_str() {
                targets.insert(full_url.to_owned(), (resource_type.clone(), id.clone()));
            }
            targets.insert(
                format!("{resource_type}/{id}"),
                (resource_type.clone(), id.clone()),
            );
            resources.push(Template {
                resource,
                resource_type,
                id,
            });
        }
    }
    Ok(Corpus { resources, targets })
}

/// Points every `reference` that names a bundle resource at copy `copy` of it (`Type/id-copy`),
/// the way the FHIR plugin resolves `urn:uuid:` references on import.
fn rewrite_references(value: &mut Value, targets: &HashMap<String, (String, String)>, copy: usize) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "reference"
                    && let Value::String(reference) = child
                {
                    if let Some((t, id)) = targets.get(reference.as_str()) {
                        *reference = format!("{t}/{id}-{copy}");
                    }
                } else {
                    rewrite_references(child, targets, copy);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, targets, copy);
            }
        }
        _ => {}
    }
}

/// Copy `copy` of template `t`, prepared for the store.
fn prepare_copy(
    t: &Template,
    targets: &HashMap<String, (String, String)>,
    copy: usize,
) -> fasten::fhir::Prepared {
    let mut resource = t.resource.clone();
    resource["id"] = Value::String(format!("{}-{copy}", t.id));
    rewrite_references(&mut resource, targets, copy);
    fasten::fhir::prepare(&resource.to_string())
        .unwrap_or_else(|e| panic!("{} {}: {e}", t.resource_type, t.id))
}

/// Adds resources to a person until they have `target`, continuing the copies from `cursor`
/// (`next`: index into the sequence of all copies of all corpus resources; `stored`: rows the
/// person has). One source per copy. A resource repeated across the bundles (an organisation, a
/// practitioner) is stored once per copy, so more templates than rows are used.
async fn grow(
    db: &sqlx::SqlitePool,
    person_id: i64,
    corpus: &Corpus,
    cursor: &mut Cursor,
    target: u64,
) -> anyhow::Result<()> {
    let per_copy = corpus.resources.len();
    let started = Instant::now();
    let mut reported = cursor.stored;
    while cursor.stored < target {
        let copy = cursor.next / per_copy;
        let wanted = (target - cursor.stored).min(BATCH as u64) as usize;
        let end = (cursor.next + wanted).min((copy + 1) * per_copy);
        let source_id = match cursor.source {
            Some((c, id)) if c == copy => id,
            _ => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO sources (person_id, kind, display_name, created_at, updated_at)
                     VALUES (?, 'upload', ?, 0, 0) RETURNING id",
                )
                .bind(person_id)
                .bind(format!("Synthea copy {copy}"))
                .fetch_one(db)
                .await?;
                cursor.source = Some((copy, id));
                id
            }
        };
        let batch: Vec<fasten::fhir::Prepared> = (cursor.next..end)
            .map(|i| prepare_copy(&corpus.resources[i % per_copy], &corpus.targets, copy))
            .collect();
        let mut writer = fasten::fhir::ingest::Writer::begin(db, person_id, source_id).await?;
        writer.write(&batch).await?;
        cursor.stored += writer.commit().await?.added;
        cursor.next = end;
        if cursor.stored - reported >= BATCH as u64 || cursor.stored == target {
            reported = cursor.stored;
            println!(
                "  imported {} / {target} resources ({:.1} s)",
                cursor.stored,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Where importing stands.
#[derive(Default)]
struct Cursor {
    next: usize,
    stored: u64,
    /// The copy being written and its source.
    source: Option<(usize, i64)>,
}

/// Median and p90 of a page's timed requests; `None` when it answered 404 (search not there).
type Figures = Option<(Duration, Duration)>;

async fn time_page(client: &Client, path: &str, rounds: usize) -> Figures {
    let url = format!("{}/people/alice{path}", client.base);
    let get = || async {
        let response = client.http.get(&url).send().await.unwrap();
        let status = response.status();
        response.bytes().await.unwrap();
        status
    };
    let status = get().await;
    if status == StatusCode::NOT_FOUND && path.starts_with("/search") {
        return None;
    }
    assert_eq!(status, StatusCode::OK, "GET {path}");
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let status = get().await;
        times.push(started.elapsed());
        assert_eq!(status, StatusCode::OK, "GET {path}");
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.9)))
}

/// The pages timed, with their targets in milliseconds (widgets count as part of the dashboard).
fn pages(observation_id: &str) -> Vec<(String, Option<f64>)> {
    let mut pages = vec![("/".to_owned(), Some(50.0))];
    for widget in [
        "summary",
        "vitals",
        "labs",
        "encounters",
        "conditions",
        "medications",
        "allergies",
        "immunizations",
        "types",
    ] {
        pages.push((format!("/dashboard/widgets/{widget}"), Some(50.0)));
    }
    pages.extend([
        ("/explore/Observation".to_owned(), Some(30.0)),
        ("/labs".to_owned(), Some(100.0)),
        (format!("/labs/{LAB_KEY}"), None),
        ("/history".to_owned(), Some(100.0)),
        ("/profile".to_owned(), Some(100.0)),
        ("/search?q=hypertension".to_owned(), Some(50.0)),
        (format!("/explore/Observation/{observation_id}"), Some(10.0)),
    ]);
    pages
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let (server, client) = TestServer::with_admin().await;
    let family = [
        server.person_id(ADMIN).await,
        server.add_person(ADMIN, "leo", "Leo").await,
        server.add_person(ADMIN, "mia", "Mia").await,
    ];
    let corpus = load_corpus()?;
    println!(
        "{} resources per copy of the five Synthea bundles",
        corpus.resources.len()
    );
    let observation = corpus
        .resources
        .iter()
        .find(|t| t.resource_type == "Observation")
        .expect("an Observation in the Synthea bundles");
    let observation_id = format!("{}-0", observation.id);
    let pages = pages(&observation_id);

    let mut cursors: Vec<Cursor> = family.iter().map(|_| Cursor::default()).collect();
    let mut results: Vec<Vec<Figures>> = Vec::new();
    for size in SIZES {
        println!("importing up to {size} resources, a third for each person");
        for (i, (person, cursor)) in family.iter().zip(cursors.iter_mut()).enumerate() {
            // The first person (the one timed) takes the remainder.
            let share = size / 3 + if i == 0 { size % 3 } else { 0 };
            grow(&server.state.db, *person, &corpus, cursor, share).await?;
        }
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM resources")
            .fetch_one(&server.state.db)
            .await?;
        let own: i64 = sqlx::query_scalar("SELECT count(*) FROM resources WHERE person_id = ?")
            .bind(family[0])
            .fetch_one(&server.state.db)
            .await?;
        let indexed: i64 = sqlx::query_scalar("SELECT count(*) FROM search_docs")
            .fetch_one(&server.state.db)
            .await?;
        println!("  stored {stored} ({own} the timed person's), in the search index {indexed}");
        let rounds = if size > 10_000 { 10 } else { 20 };
        let mut row = Vec::new();
        for (path, _) in &pages {
            row.push(time_page(&client, path, rounds).await);
        }
        results.push(row);
    }

    println!();
    let width = pages.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    println!(
        "{:<width$}  {:>17}  {:>17}  {:>8}  within",
        "page", "10k median / p90", "100k median / p90", "target"
    );
    for (i, (path, target)) in pages.iter().enumerate() {
        let cell = |f: &Figures| match f {
            Some((median, p90)) => format!("{:.1} / {:.1} ms", ms(*median), ms(*p90)),
            None => "n/a".to_owned(),
        };
        let target_text = target.map_or("-".to_owned(), |t| format!("< {t:.0} ms"));
        let within = match (target, &results[0][i], &results[1][i]) {
            (Some(t), Some((small, _)), Some((large, _))) => {
                let ok = |d: &Duration| if ms(*d) < *t { "yes" } else { "no" };
                format!("{} / {}", ok(small), ok(large))
            }
            _ => "-".to_owned(),
        };
        println!(
            "{path:<width$}  {:>17}  {:>17}  {target_text:>8}  {within}",
            cell(&results[0][i]),
            cell(&results[1][i]),
        );
    }
    println!("(within: median under the target at 10k / at 100k)");
    // For looking into a slow page afterwards (EXPLAIN QUERY PLAN in sqlite3).
    if let Some(keep) = std::env::var_os("FASTEN_BENCH_KEEP_DB") {
        sqlx::query("VACUUM INTO ?")
            .bind(keep.to_string_lossy().into_owned())
            .execute(&server.state.db)
            .await?;
        println!("database kept in {}", keep.to_string_lossy());
    }
    server.stop().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
