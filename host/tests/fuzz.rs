//! Property-based fuzzing of every file parser a bundled plugin runs: CSV lab results, emails
//! (.eml), C-CDA documents (read by the email plugin from an attachment), Apple Health
//! export.xml and its zip, FHIR Bundles and NDJSON.
//!
//! Each case mutates a known-good sample (truncation, byte flips, format tokens, repeated
//! slices, huge fields, deep nesting, UTF-16 and Latin-1 re-encodings; for the zip also damaged
//! headers and zip bombs) and imports it through the real bundled plugin, run by the real
//! wasmtime runtime into a real SQLite database. The property: the plugin ends with records or
//! with an error, never a trap, a time-limit or memory-limit stop, and a failed import leaves the
//! stored records, what is derived from them, and the jobs exactly as they were.
//!
//! The case count is small by default (see [`DEFAULT_CASES`]) and raised by `FUZZ_CASES`; the
//! seed is fixed so a run is repeatable, and `FUZZ_SEED` picks another. Not `FASTEN_*` names:
//! those are read as configuration, and unknown ones are refused. Run with `--nocapture` to see
//! how many cases ran and how they ended.

use crate::common;

// The Apple Health export generator and the zip the Health app shares, as the Apple Health
// tests build them.
use crate::apple_health::{apple_health_gen, exported_zip};

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::identity;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use common::lab_csv::{Layout, lab_csv};
use common::{PARIS, TestServer};
use fasten::import::{ImportError, ImportOptions, import_file};
use fasten::plugins::{PluginError, RunFailure};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{
    Config as ProptestConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use serde_json::Value;

/// Cases per parser when `FUZZ_CASES` is not set: with it, the fuzz tests take about 35 s on a
/// 2-core machine in a debug build (65 s of CPU, a third of it starting their servers).
const DEFAULT_CASES: u32 = 128;
/// The seed when `FUZZ_SEED` is not set, so that CI runs the same cases every time.
const DEFAULT_SEED: u64 = 0x5eed_fa57_e17f_0022;
/// A case slower than this is a finding even if the plugin's own time limit (300 or 600 s) was
/// not reached: cases take a second at most, and an email whose nested sections were checked in
/// quadratic time took 20 s.
const SLOW_CASE: Duration = Duration::from_secs(15);
/// Shrinking re-runs failing cases; each costs a plugin run, so it is bounded.
const MAX_SHRINK_ITERS: u32 = 64;

// ----------------------------------------------------------------------------------------------
// The parsers under test.
// ----------------------------------------------------------------------------------------------

/// A parser under test: its name in reports, the name its files are imported as (which picks
/// the plugin), and a record its unmutated samples store, proof that the cases start from input
/// the parser reads to the end.
struct Target {
    parser: &'static str,
    file_name: &'static str,
    /// The resource type and id prefix of that record.
    stores: (&'static str, &'static str),
}

#[test]
fn csv_lab_results() {
    let bundle = paris();
    let seeds: Vec<Vec<u8>> = [Layout::UsPortal, Layout::EuLab, Layout::TabbedWithPreamble]
        .into_iter()
        .map(|layout| lab_csv(&bundle, layout).into_bytes())
        .collect();
    let target = Target {
        parser: "csv lab results",
        file_name: "labs.csv",
        stores: ("Observation", "csvlab-"),
    };
    fuzz_mutated(&target, Format::Csv, seeds, identity);
}

#[test]
fn email() {
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(shared("eml"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    // The shared samples are damaged MIME structures; this one has every kind of part the
    // plugin reads (FHIR JSON and NDJSON, a C-CDA, a forwarded email).
    seeds.push(rich_email());
    let target = Target {
        parser: "eml",
        file_name: "message.eml",
        stores: ("DocumentReference", "email-"),
    };
    fuzz_mutated(&target, Format::Eml, seeds, identity);
}

#[test]
fn ccda_in_email() {
    let seeds: Vec<Vec<u8>> = [
        "Diagnostic_Imaging_Report.xml",
        "Operative_Note.xml",
        "CCD-2.xml",
    ]
    .iter()
    .map(|name| std::fs::read(shared("ccda").join(name)).unwrap())
    .collect();
    // The C-CDA reader runs on an attachment, so the mutated document is attached (base64, so
    // its bytes arrive exactly as mutated) to an otherwise valid email.
    let target = Target {
        parser: "c-cda (in an email)",
        file_name: "summary.eml",
        // The C-CDA's own DocumentReference from the converter (a document it cannot convert is
        // kept from its header, as `email-ccda-…`).
        stores: ("DocumentReference", "ccda-"),
    };
    fuzz_mutated(&target, Format::Xml, seeds, |xml| {
        email_with_attachment("application/xml", "summary.xml", &xml)
    });
}

#[test]
fn ccda_xml() {
    let seeds: Vec<Vec<u8>> = ["Transfer_Summary.xml", "CCD-1.xml", "Procedure_Note.xml"]
        .iter()
        .map(|name| std::fs::read(shared("ccda").join(name)).unwrap())
        .collect();
    let target = Target {
        parser: "c-cda",
        file_name: "summary.xml",
        // A problem converted from the document's entries, not only its header.
        stores: ("Condition", "ccda-"),
    };
    fuzz_mutated(&target, Format::Xml, seeds, identity);
}

#[test]
fn apple_health_xml() {
    let seeds = vec![
        std::fs::read(shared("apple-health/export.xml")).unwrap(),
        generated_export(),
    ];
    let target = Target {
        parser: "apple health xml",
        file_name: "export.xml",
        stores: ("Observation", "apple-"),
    };
    fuzz_mutated(&target, Format::Xml, seeds, identity);
}

#[test]
fn apple_health_zip() {
    let exports = [
        std::fs::read(shared("apple-health/export.xml")).unwrap(),
        generated_export(),
    ];
    let zips: Vec<Vec<u8>> = exports.iter().map(|xml| exported_zip(xml)).collect();
    let strategy = prop_oneof![
        3 => (any::<Index>(), mutations()).prop_map(|(seed, mutations)| ZipCase::Inside { seed, mutations }),
        3 => (any::<Index>(), byte_mutations(), directory_flips())
            .prop_map(|(seed, mutations, directory_flips)| ZipCase::Outside { seed, mutations, directory_flips }),
        1 => prop_oneof![
            Just(Bomb::Zeros),
            Just(Bomb::Whitespace),
            Just(Bomb::Elements),
            Just(Bomb::LyingSize),
            Just(Bomb::SmallWhitespace),
        ]
        .prop_map(ZipCase::Bomb),
    ];
    let target = Target {
        parser: "apple health zip",
        file_name: "export.zip",
        stores: ("Observation", "apple-"),
    };
    run_campaign(&target, &zips, strategy, |case: &ZipCase| match case {
        ZipCase::Inside { seed, mutations } => {
            let mut xml = exports[seed.index(exports.len())].clone();
            apply_all(Format::Xml, &mut xml, mutations);
            exported_zip(&xml)
        }
        ZipCase::Outside {
            seed,
            mutations,
            directory_flips,
        } => {
            let mut zip = zips[seed.index(zips.len())].clone();
            for (from_end, mask) in directory_flips {
                let at = zip.len().saturating_sub(usize::from(*from_end));
                if let Some(byte) = zip.get_mut(at) {
                    *byte ^= mask;
                }
            }
            apply_all(Format::Binary, &mut zip, mutations);
            zip
        }
        ZipCase::Bomb(bomb) => bomb.zip(),
    });
}

/// Every kind of zip bomb, whatever cases the campaign above draws: refused at once, in words,
/// not by the sandbox's memory or time limit.
#[test]
fn apple_health_refuses_zip_bombs_in_plain_words() {
    let (runtime, harness) = Harness::start("export.zip");
    for bomb in ALL_BOMBS {
        let began = Instant::now();
        let outcome = runtime
            .block_on(harness.check(&bomb.zip()))
            .unwrap_or_else(|finding| panic!("{bomb:?}: {finding}"));
        let took = began.elapsed();
        assert_eq!(
            outcome.kind, "refused as invalid input",
            "{bomb:?}: {:?}",
            outcome.error
        );
        assert!(took < SLOW_CASE, "{bomb:?} took {took:?}");
    }
}

#[test]
fn fhir_bundle_json() {
    let bundle = paris();
    let seeds = vec![
        serde_json::to_vec_pretty(&paris_slice(&bundle)).unwrap(),
        serde_json::to_vec(&paris_slice(&bundle)).unwrap(),
        // Numbers serde_json would rewrite send the plugin through its text-keeping reader.
        EXPONENT_BUNDLE.as_bytes().to_vec(),
    ];
    let target = Target {
        parser: "fhir bundle json",
        file_name: "bundle.json",
        stores: ("Patient", ""),
    };
    fuzz_mutated(&target, Format::Json, seeds, identity);
}

#[test]
fn fhir_ndjson() {
    let bundle = paris_slice(&paris());
    let mut lines: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"].to_string())
        .collect();
    lines.push(
        r#"{"resourceType":"Observation","id":"exp","status":"final","code":{"text":"x"},"valueQuantity":{"value":1E2}}"#.into(),
    );
    lines.push(
        r#"{"resourceType":"OperationOutcome","issue":[{"severity":"warning","diagnostics":"partial export"}]}"#.into(),
    );
    let seeds = vec![(lines.join("\n") + "\n").into_bytes()];
    let target = Target {
        parser: "fhir ndjson",
        file_name: "export.ndjson",
        stores: ("Patient", ""),
    };
    fuzz_mutated(&target, Format::Json, seeds, identity);
}

// ----------------------------------------------------------------------------------------------
// Running a campaign.
// ----------------------------------------------------------------------------------------------

/// A case of the text formats: one seed, mutated in order.
#[derive(Debug, Clone)]
struct Mutated {
    seed: Index,
    mutations: Vec<Mutation>,
}

/// Fuzzes a parser whose input is a mutated seed, wrapped by `wrap` before it is imported.
fn fuzz_mutated(
    target: &Target,
    format: Format,
    seeds: Vec<Vec<u8>>,
    wrap: impl Fn(Vec<u8>) -> Vec<u8>,
) {
    let wrapped: Vec<Vec<u8>> = seeds.iter().cloned().map(&wrap).collect();
    let strategy =
        (any::<Index>(), mutations()).prop_map(|(seed, mutations)| Mutated { seed, mutations });
    run_campaign(target, &wrapped, strategy, |case: &Mutated| {
        let mut bytes = seeds[case.seed.index(seeds.len())].clone();
        apply_all(format, &mut bytes, &case.mutations);
        wrap(bytes)
    });
}

/// How the cases of one parser ended.
#[derive(Default)]
struct Tally {
    cases: u32,
    outcomes: BTreeMap<&'static str, u32>,
    slowest: Duration,
    /// The slowest case, to look into should it come close to [`SLOW_CASE`].
    slowest_case: String,
    /// The first message of each way a failed import ended.
    examples: BTreeMap<&'static str, String>,
    largest_input: usize,
}

/// Imports each unmutated `seed`, then runs the property over the cases `strategy` makes,
/// `input` turning a case into the file's bytes. One server and runtime serve every case.
fn run_campaign<T: Debug + Clone>(
    target: &Target,
    seeds: &[Vec<u8>],
    strategy: impl Strategy<Value = T>,
    input: impl Fn(&T) -> Vec<u8>,
) {
    let parser = target.parser;
    let (runtime, harness) = Harness::start(target.file_name);
    // The seeds hold to the property too (some shared samples are refused), and store what
    // shows that the parser read them: else the cases would only test its error paths.
    for (n, seed) in seeds.iter().enumerate() {
        if let Err(finding) = runtime.block_on(harness.check(seed)) {
            panic!("{parser}: seed {n}: {finding}");
        }
    }
    let (resource_type, id_prefix) = target.stores;
    assert!(
        runtime.block_on(harness.stored_count(resource_type, id_prefix)) > 0,
        "{parser}: no seed stored a {resource_type} with an id starting {id_prefix:?}"
    );

    let (cases, seed) = settings();
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig {
            cases,
            failure_persistence: None,
            max_shrink_iters: MAX_SHRINK_ITERS,
            ..ProptestConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed(seed, parser)),
    );
    let tally = RefCell::new(Tally::default());
    let started = Instant::now();
    let result = runner.run(&strategy, |case| {
        let bytes = input(&case);
        let began = Instant::now();
        let outcome = runtime.block_on(harness.check(&bytes));
        let took = began.elapsed();
        let mut tally = tally.borrow_mut();
        tally.cases += 1;
        if took > tally.slowest {
            tally.slowest = took;
            tally.slowest_case = format!("{case:?}");
        }
        tally.largest_input = tally.largest_input.max(bytes.len());
        let outcome = outcome?;
        *tally.outcomes.entry(outcome.kind).or_default() += 1;
        if let Some(error) = outcome.error {
            tally.examples.entry(outcome.kind).or_insert(error);
        }
        if took > SLOW_CASE {
            return Err(TestCaseError::fail(format!(
                "the import of {} bytes took {took:?}",
                bytes.len()
            )));
        }
        Ok(())
    });
    let tally = tally.into_inner();
    println!(
        "fuzz {parser}: {} cases (seed {seed:#x}) in {:.1?}: {:?}; largest input {} bytes; \
         slowest case {:.1?}: {}",
        tally.cases,
        started.elapsed(),
        tally.outcomes,
        tally.largest_input,
        tally.slowest,
        tally.slowest_case
    );
    for (kind, example) in &tally.examples {
        // Enough to tell one kind of refusal from another.
        let example: String = example.chars().take(400).collect();
        println!("fuzz {parser}: {kind}, e.g. {example}");
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => {
            // The smallest failing input, kept to reproduce the finding outside the test.
            let kept = std::env::temp_dir().join(format!(
                "fasten-fuzz-{}-{}",
                parser.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
                target.file_name
            ));
            std::fs::write(&kept, input(&case)).unwrap();
            panic!(
                "{parser}: {reason}\nsmallest failing case (input kept in {}): {case:#?}",
                kept.display()
            );
        }
        Err(TestError::Abort(reason)) => panic!("{parser}: fuzzing stopped: {reason}"),
    }
}

/// `FUZZ_CASES` and `FUZZ_SEED` (decimal or 0x hex), or the defaults.
fn settings() -> (u32, u64) {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .map(|v| v.trim().parse().expect("FUZZ_CASES is a number of cases"))
        .unwrap_or(DEFAULT_CASES);
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .map(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            }
            .expect("FUZZ_SEED is a number")
        })
        .unwrap_or(DEFAULT_SEED);
    (cases, seed)
}

/// ChaCha's 32-byte seed: the run's seed, and the parser's name so each parser gets its own
/// stream of cases.
fn rng_seed(seed: u64, parser: &str) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    // FNV-1a of the name: stable across runs and Rust versions, unlike the std hasher.
    let name = parser
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
    bytes[8..16].copy_from_slice(&name.to_le_bytes());
    bytes
}

/// A server with one person, importing each case as the same file name.
struct Harness {
    server: TestServer,
    person_id: i64,
    path: PathBuf,
    file_name: String,
}

/// How an import that held to the property ended.
struct Outcome {
    kind: &'static str,
    /// What a failed import said.
    error: Option<String>,
}

/// What a failed import must leave as it was: every stored resource (by its content hash), what
/// is derived from them, and the plugins' saved state.
#[derive(Debug, PartialEq)]
struct Stored {
    resources: Vec<(i64, String, String, Vec<u8>)>,
    derived_rows: Vec<i64>,
}

impl Harness {
    /// A server and the runtime it runs on, which the test's cases are driven from.
    fn start(file_name: &str) -> (tokio::runtime::Runtime, Harness) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(TestServer::start());
        let person = runtime.block_on(async {
            let mut conn = server.state.db.acquire().await.unwrap();
            fasten::store::people::create(&mut conn, "fuzz", "Fuzz Subject", None, None)
                .await
                .unwrap()
        });
        let harness = Harness {
            person_id: person.id,
            path: server.data_dir.path().join(file_name),
            file_name: file_name.to_string(),
            server,
        };
        (runtime, harness)
    }

    async fn import(&self, bytes: &[u8]) -> Result<fasten::import::ImportReport, ImportError> {
        std::fs::write(&self.path, bytes).unwrap();
        import_file(
            &self.server.state.db,
            &self.server.state.plugins,
            self.person_id,
            &self.path,
            &self.file_name,
            fasten::jobs::Trigger::Cli,
            // Stored whoever the file's patient is: a mutated name must not turn the case into
            // a "this is someone else" refusal before the plugin's records are stored, and a
            // case is then one plugin run.
            &ImportOptions {
                anyway: true,
                ..ImportOptions::default()
            },
        )
        .await
    }

    /// One case: imports `bytes` and checks the property; answers how the import ended.
    async fn check(&self, bytes: &[u8]) -> Result<Outcome, TestCaseError> {
        let before = self.stored().await;
        let last_job = self.last_job().await;
        let result = self.import(bytes).await;
        let jobs = self.jobs_after(last_job).await;
        let size = bytes.len();
        let error = match result {
            Ok(report) => {
                let counts = [
                    report.counts.added,
                    report.counts.updated,
                    report.counts.unchanged,
                ]
                .map(|n| n as i64);
                prop_assert!(
                    jobs.iter().any(|(status, recorded, _)| {
                        matches!(status.as_str(), "succeeded" | "warnings") && *recorded == counts
                    }),
                    "an import of {} bytes succeeded ({:?}) but no job says so: {:?}",
                    size,
                    report.counts,
                    jobs
                );
                return Ok(Outcome {
                    kind: if report.warnings.is_empty() {
                        "imported"
                    } else {
                        "imported with warnings"
                    },
                    error: None,
                });
            }
            Err(error) => error,
        };
        let kind = classify(&error).map_err(|finding| {
            TestCaseError::fail(format!("an input of {size} bytes: {finding}: {error}"))
        })?;
        // A failed import stores nothing, and its jobs say so.
        let after = self.stored().await;
        prop_assert!(
            after == before,
            "a failed import ({}) changed what is stored: {} resources before, {} after; \
             derived rows {:?} before, {:?} after",
            error,
            before.resources.len(),
            after.resources.len(),
            before.derived_rows,
            after.derived_rows
        );
        prop_assert!(
            !jobs.is_empty()
                && jobs
                    .iter()
                    .all(|(status, counts, _)| status == "failed" && *counts == [0, 0, 0]),
            "a failed import ({}) left jobs saying otherwise: {:?}",
            error,
            jobs
        );
        Ok(Outcome {
            kind,
            error: Some(error.to_string()),
        })
    }

    async fn stored(&self) -> Stored {
        let db = &self.server.state.db;
        let resources = sqlx::query_as(
            "SELECT source_id, resource_type, resource_id, content_hash FROM resources
             ORDER BY source_id, resource_type, resource_id",
        )
        .fetch_all(db)
        .await
        .unwrap();
        let mut derived_rows = Vec::new();
        for table in [
            "search_docs",
            "resource_tokens",
            "observation_keys",
            "plugin_state",
        ] {
            let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(db)
                .await
                .unwrap();
            derived_rows.push(count);
        }
        Stored {
            resources,
            derived_rows,
        }
    }

    /// How many resources of `resource_type` whose id starts with `id_prefix` are stored.
    async fn stored_count(&self, resource_type: &str, id_prefix: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM resources WHERE resource_type = ? AND substr(resource_id, 1, ?) = ?",
        )
        .bind(resource_type)
        .bind(id_prefix.len() as i64)
        .bind(id_prefix)
        .fetch_one(&self.server.state.db)
        .await
        .unwrap()
    }

    async fn last_job(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM jobs")
            .fetch_one(&self.server.state.db)
            .await
            .unwrap()
    }

    /// (status, [added, updated, unchanged], error) of the jobs after `id`.
    async fn jobs_after(&self, id: i64) -> Vec<(String, [i64; 3], Option<String>)> {
        let rows: Vec<(String, i64, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT status, added, updated, unchanged, error FROM jobs WHERE id > ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.server.state.db)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(status, a, u, n, error)| (status, [a, u, n], error))
            .collect()
    }
}

/// How a failed import ended, or why that is a finding: a trap (a panic or worse inside the
/// plugin), a stop at the time or memory limit (these inputs are at most a few MiB, or a zip
/// bomb, which must be refused by a clear message rather than by the sandbox), or a failure of
/// the host rather than of the file.
fn classify(error: &ImportError) -> Result<&'static str, &'static str> {
    match error {
        ImportError::Failed { failure, .. } => match failure {
            RunFailure::Plugin(PluginError::InvalidInput(_)) => Ok("refused as invalid input"),
            RunFailure::Plugin(_) => Ok("plugin error"),
            RunFailure::Refused(_) => Ok("records refused by the host"),
            RunFailure::Crashed(_) => Err("the plugin crashed (a trap)"),
            RunFailure::TimeLimit(_) => Err("the plugin ran into its time limit"),
            RunFailure::MemoryLimit(_) => Err("the plugin ran into its memory limit"),
            RunFailure::Unavailable(_) | RunFailure::Cancelled | RunFailure::ShuttingDown => {
                Err("the run did not happen")
            }
        },
        // Refusals of the host's own: clear messages, nothing stored.
        ImportError::OtherPatient(_)
        | ImportError::Unplaced(_)
        | ImportError::PersonQuota { .. } => Ok("refused by the host"),
        // A mutation that makes the file look like no plugin's (a root element renamed, a zip
        // directory lost) is refused before any plugin runs.
        ImportError::NotRecognised(..) => Ok("not recognised by the host"),
        ImportError::NoPlugin(..) => Err("no plugin took the file"),
        ImportError::Database(_) => Err("a database error"),
        ImportError::Spool(_) => Err("the records could not be set aside"),
    }
}

// ----------------------------------------------------------------------------------------------
// Mutations.
// ----------------------------------------------------------------------------------------------

/// One change to a file. Positions are `Index`es, resolved against the bytes as they are when
/// the mutation is applied, so a case shrinks towards earlier positions and fewer changes.
#[derive(Debug, Clone)]
enum Mutation {
    /// The file cut short.
    Truncate(Index),
    /// Bytes XORed with non-zero masks.
    FlipBytes(Vec<(Index, u8)>),
    /// One of the format's significant tokens inserted (a quote, a brace, an entity...).
    InsertToken { at: Index, token: Index },
    /// A slice of the file repeated elsewhere (duplicate ids, repeated headers).
    Duplicate { from: Index, len: usize, to: Index },
    /// A field of `len` bytes where the format has fields.
    HugeField {
        slot: Index,
        len: usize,
        variant: Index,
    },
    /// `depth` levels of one of the format's kinds of nesting (arrays or objects, elements,
    /// multipart sections or attached emails; for CSV, which does not nest, as many columns),
    /// closed again or left open.
    DeepNesting {
        slot: Index,
        depth: usize,
        closed: bool,
        variant: Index,
    },
    /// The whole file in another encoding.
    Reencode(Encoding),
}

#[derive(Debug, Clone)]
enum Encoding {
    Utf16Le,
    Utf16Be,
    /// Latin-1, after a field with accented text is added so that the file has some.
    Latin1 {
        slot: Index,
    },
}

/// One to three mutations, the costly ones (megabytes, deep nesting) less often.
fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let mutation = prop_oneof![
        4 => any::<Index>().prop_map(Mutation::Truncate),
        5 => flips().prop_map(Mutation::FlipBytes),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(at, token)| Mutation::InsertToken { at, token }),
        2 => (any::<Index>(), 1usize..=4096, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        2 => (any::<Index>(), prop_oneof![Just(64usize << 10), Just(1 << 20), Just(5 << 20)], any::<Index>())
            .prop_map(|(slot, len, variant)| Mutation::HugeField { slot, len, variant }),
        2 => (any::<Index>(), prop_oneof![Just(200usize), Just(10_000), Just(100_000)], any::<bool>(), any::<Index>())
            .prop_map(|(slot, depth, closed, variant)| Mutation::DeepNesting { slot, depth, closed, variant }),
        1 => prop_oneof![
            Just(Encoding::Utf16Le),
            Just(Encoding::Utf16Be),
            any::<Index>().prop_map(|slot| Encoding::Latin1 { slot }),
        ]
        .prop_map(Mutation::Reencode),
    ];
    proptest::collection::vec(mutation, 1..=3)
}

/// Mutations that know nothing of a format, for a zip's own bytes.
fn byte_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let mutation = prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Truncate),
        3 => flips().prop_map(Mutation::FlipBytes),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, token)| Mutation::InsertToken { at, token }),
        1 => (any::<Index>(), 1usize..=4096, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
    ];
    proptest::collection::vec(mutation, 0..=2)
}

fn flips() -> impl Strategy<Value = Vec<(Index, u8)>> {
    proptest::collection::vec((any::<Index>(), 1u8..=255), 1..=8)
}

/// Flips in a zip's last 200 bytes, where its central directory and end record are: random
/// flips elsewhere mostly hit compressed data.
fn directory_flips() -> impl Strategy<Value = Vec<(u8, u8)>> {
    proptest::collection::vec((1u8..=200, 1u8..=255), 0..=4)
}

fn apply_all(format: Format, bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        apply(format, bytes, mutation);
    }
}

fn apply(format: Format, bytes: &mut Vec<u8>, mutation: &Mutation) {
    match mutation {
        Mutation::Truncate(at) => {
            if !bytes.is_empty() {
                bytes.truncate(at.index(bytes.len()));
            }
        }
        Mutation::FlipBytes(flips) => {
            for (at, mask) in flips {
                if !bytes.is_empty() {
                    let at = at.index(bytes.len());
                    bytes[at] ^= mask;
                }
            }
        }
        Mutation::InsertToken { at, token } => {
            let tokens = format.tokens();
            let token = tokens[token.index(tokens.len())];
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, token.iter().copied());
        }
        Mutation::Duplicate { from, len, to } => {
            if !bytes.is_empty() {
                let start = from.index(bytes.len());
                let end = (start + len).min(bytes.len());
                let slice = bytes[start..end].to_vec();
                let at = to.index(bytes.len() + 1);
                bytes.splice(at..at, slice);
            }
        }
        Mutation::HugeField { slot, len, variant } => {
            let field = format.field(&filler(*len), variant.index(format.field_variants()));
            insert_at_slot(format, bytes, slot, &field);
        }
        Mutation::DeepNesting {
            slot,
            depth,
            closed,
            variant,
        } => {
            let nested = format.nesting(*depth, *closed, variant.index(2));
            insert_at_slot(format, bytes, slot, &nested);
        }
        Mutation::Reencode(encoding) => {
            *bytes = match encoding {
                Encoding::Utf16Le => utf16(bytes, u16::to_le_bytes),
                Encoding::Utf16Be => utf16(bytes, u16::to_be_bytes),
                Encoding::Latin1 { slot } => {
                    let field = format.field("Müller, Zoë: 5 µg/dL ± 0,5 (café)", 0);
                    insert_at_slot(format, bytes, slot, &field);
                    // Characters beyond Latin-1 (none in the samples) become '?'.
                    String::from_utf8_lossy(bytes)
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                        .collect()
                }
            };
        }
    }
}

fn insert_at_slot(format: Format, bytes: &mut Vec<u8>, slot: &Index, insert: &[u8]) {
    let slots = format.slots(bytes);
    let at = slots[slot.index(slots.len())];
    bytes.splice(at..at, insert.iter().copied());
}

/// The text as UTF-16 with a byte-order mark (invalid UTF-8 read as U+FFFD).
fn utf16(bytes: &[u8], unit_bytes: fn(u16) -> [u8; 2]) -> Vec<u8> {
    std::iter::once(0xFEFF)
        .chain(String::from_utf8_lossy(bytes).encode_utf16())
        .flat_map(unit_bytes)
        .collect()
}

/// `len` bytes of text with multi-byte characters, so that a field is not only ASCII.
fn filler(len: usize) -> String {
    const PATTERN: &str = "Lorem ipsum é ü µ 0123456789 ";
    let mut text = String::with_capacity(len + PATTERN.len());
    while text.len() < len {
        text.push_str(PATTERN);
    }
    text
}

/// What the mutations know of a file's syntax.
#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Xml,
    Csv,
    Eml,
    /// A zip's bytes: only structure-blind mutations, and its signatures as tokens.
    Binary,
}

impl Format {
    /// Where a field or nesting may go: after an object's `{`, an element's `>`, or at the
    /// start of a line.
    fn slots(self, bytes: &[u8]) -> Vec<usize> {
        let after = |marker: u8| -> Vec<usize> {
            let slots: Vec<usize> = bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == marker)
                .map(|(i, _)| i + 1)
                .collect();
            if slots.is_empty() { vec![0] } else { slots }
        };
        match self {
            Format::Json => after(b'{'),
            Format::Xml => after(b'>'),
            Format::Csv | Format::Eml => {
                let mut slots = vec![0];
                slots.extend(after(b'\n').into_iter().filter(|&i| i > 0));
                slots
            }
            Format::Binary => vec![0, bytes.len()],
        }
    }

    fn field_variants(self) -> usize {
        match self {
            Format::Json => 3,
            Format::Xml => 4,
            Format::Csv => 2,
            Format::Eml => 3,
            Format::Binary => 1,
        }
    }

    /// A field holding `content`, in one of the format's places for text.
    fn field(self, content: &str, variant: usize) -> Vec<u8> {
        match (self, variant) {
            (Format::Json, 0) => format!("\"fuzz\":\"{content}\","),
            (Format::Json, 1) => format!("\"{content}\":0,"),
            (Format::Json, _) => format!("\"id\":\"{content}\","),
            (Format::Xml, 0) => content.to_string(),
            (Format::Xml, 1) => format!("<fuzz attribute=\"{content}\"/>"),
            (Format::Xml, 2) => format!(
                "<Record type=\"HKQuantityTypeIdentifierBodyMass\" sourceName=\"{content}\" \
                 unit=\"kg\" startDate=\"2020-01-01 08:00:00 +0000\" \
                 endDate=\"2020-01-01 08:00:00 +0000\" value=\"70\"/>"
            ),
            (Format::Xml, _) => format!("<title>{content}</title>"),
            (Format::Csv, 0) => format!("{content},"),
            // A quoted field over many lines, as a note or an open quote would make.
            (Format::Csv, _) => {
                let lines: Vec<String> = content
                    .as_bytes()
                    .chunks(100)
                    .map(|line| String::from_utf8_lossy(line).into_owned())
                    .collect();
                format!("\"{}\",", lines.join("\n"))
            }
            (Format::Eml, 0) => format!("Subject: {content}\r\n"),
            (Format::Eml, 1) => format!("{content}\r\n"),
            // A header folded over many lines.
            (Format::Eml, _) => {
                let lines: Vec<String> = content
                    .as_bytes()
                    .chunks(70)
                    .map(|line| String::from_utf8_lossy(line).into_owned())
                    .collect();
                format!("X-Fuzz: {}\r\n", lines.join("\r\n "))
            }
            (Format::Binary, _) => content.to_string(),
        }
        .into_bytes()
    }

    /// `depth` levels of the format's nesting of kind `variant` (0 or 1).
    fn nesting(self, depth: usize, closed: bool, variant: usize) -> Vec<u8> {
        let close = |text: &str| {
            if closed {
                text.repeat(depth)
            } else {
                String::new()
            }
        };
        match (self, variant) {
            (Format::Json, 0) => format!("\"fuzz\":{}{},", "[".repeat(depth), close("]")),
            (Format::Json, _) => format!("\"fuzz\":{}0{},", "{\"a\":".repeat(depth), close("}")),
            (Format::Xml, 0) => format!("{}{}", "<n>".repeat(depth), close("</n>")),
            // Each level binding a namespace, which a namespace-aware reader keeps per level.
            (Format::Xml, _) => format!(
                "{}{}",
                "<n xmlns=\"urn:hl7-org:v3\" xmlns:x=\"urn:x\">".repeat(depth),
                close("</n>")
            ),
            // CSV does not nest: its blow-up is width (a closed row of empty cells), or a quote
            // left open over many lines.
            (Format::Csv, _) if closed => format!("{}\n", ",".repeat(depth)),
            (Format::Csv, _) => format!("\"{}", "x\n".repeat(depth)),
            (Format::Eml, 0) => {
                let mut text = String::new();
                for level in 0..depth {
                    text.push_str(&format!(
                        "Content-Type: multipart/mixed; boundary=\"n{level}\"\r\n\r\n--n{level}\r\n"
                    ));
                }
                if closed {
                    text.push_str("Content-Type: text/plain\r\n\r\ninnermost\r\n");
                    for level in (0..depth).rev() {
                        text.push_str(&format!("--n{level}--\r\n"));
                    }
                }
                text
            }
            // Emails attached inside one another (an attached email has no closing).
            (Format::Eml, _) => format!(
                "{}Subject: innermost\r\n\r\ninnermost\r\n",
                "Content-Type: message/rfc822\r\n\r\n".repeat(depth)
            ),
            (Format::Binary, _) => "PK\x03\x04".repeat(depth),
        }
        .into_bytes()
    }

    /// Bytes that mean something in the format, and values at the edge of what it allows.
    fn tokens(self) -> &'static [&'static [u8]] {
        match self {
            Format::Json => &[
                b"{",
                b"}",
                b"[",
                b"]",
                b"\"",
                b"\\",
                b"\\u0000",
                b"\\ud800",
                b",",
                b":",
                b"null",
                b"1E400",
                b"-1e-400",
                b"123456789012345678901234567890.5",
                b"1E2",
                b"\"resourceType\":\"Bundle\",",
                b"\"resourceType\":\"OperationOutcome\",",
                b"\"entry\":",
                b"\"reference\":\"urn:uuid:x\"",
                b"\"fullUrl\":\"urn:uuid:",
                b"\xEF\xBB\xBF",
                b"\n",
                b"\xC3",
                b"\xFF",
            ],
            Format::Xml => &[
                b"<",
                b">",
                b"/>",
                b"</",
                b"&",
                b"&amp;",
                b"&#0;",
                b"&#x110000;",
                b"&undefined;",
                b"<![CDATA[",
                b"]]>",
                b"<!--",
                b"-->",
                b"<?xml version=\"1.0\"?>",
                b"<!DOCTYPE HealthData [<!ENTITY e \"x\">]>",
                b"\"",
                b"'",
                b" xmlns=\"urn:hl7-org:v3\"",
                b"<HealthData>",
                b"</HealthData>",
                b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\">",
                b"<Record type=\"HKQuantityTypeIdentifierHeartRate\" unit=\"count/min\" startDate=\"2020-02-30 25:61:61 +9999\" value=\"1e308\"/>",
                b"<Record type=\"HKQuantityTypeIdentifierStepCount\" unit=\"count\" startDate=\"2020-01-01 08:00:00 +0000\" value=\"1e308\"/>",
                b"<effectiveTime value=\"-99999999999999.9999-9999\"/>",
                b"\xEF\xBB\xBF",
                b"\xC3",
            ],
            Format::Csv => &[
                b"\"",
                b",",
                b";",
                b"\t",
                b"|",
                b"\r",
                b"\n",
                b"\r\n",
                b"\"\"",
                b"\xEF\xBB\xBF",
                b"1e308",
                b"-",
                b"99/99/9999",
                b"2024-02-30",
                b"12:99 PM",
                b"Result,Units,Collected\n",
                b"\xC3",
                b"\0",
            ],
            Format::Eml => &[
                b"\r\n",
                b"\r\n\r\n",
                b"--",
                b"--m--\r\n",
                b"Content-Type: multipart/mixed; boundary=m\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b"Content-Transfer-Encoding: quoted-printable\r\n",
                b"=?utf-8?B?w6k=?=",
                b"=?ISO-8859-1?Q?=E9?=",
                b"=\r\n",
                b"=ZZ",
                b"Content-Type: message/rfc822\r\n\r\n",
                b"Content-Type: application/json; name=x.json\r\n\r\n{\"resourceType\":\"Bundle\",\"entry\":[",
                b"Content-Disposition: attachment; filename=\"a.ndjson\"\r\n",
                b"Content-Type: application/xml\r\n\r\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>",
                b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\n",
                b"From: \"\r\n",
                b"\xC3",
            ],
            Format::Binary => &[
                b"PK\x03\x04",
                b"PK\x01\x02",
                b"PK\x05\x06",
                b"PK\x06\x06",
                b"\xFF\xFF\xFF\xFF",
                b"\0\0\0\0",
            ],
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Apple Health zips and zip bombs.
// ----------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum ZipCase {
    /// export.xml mutated, then zipped as the Health app does.
    Inside {
        seed: Index,
        mutations: Vec<Mutation>,
    },
    /// A valid zip whose own bytes are damaged: its end record and directory (counted from the
    /// end), then anywhere.
    Outside {
        seed: Index,
        mutations: Vec<Mutation>,
        directory_flips: Vec<(u8, u8)>,
    },
    Bomb(Bomb),
}

/// A zip of a few MiB whose export.xml inflates to 2 GiB (but one).
#[derive(Debug, Clone, Copy)]
enum Bomb {
    /// The classic: zeros.
    Zeros,
    /// Well-formed: `<HealthData>`, 2 GiB of spaces, `</HealthData>`.
    Whitespace,
    /// Well-formed: `<HealthData>`, 2 GiB of empty elements, `</HealthData>`, which a streaming
    /// reader gets through without growing, but only in a long time.
    Elements,
    /// Zeros, with a declared size of 4 KiB (the zip reader must not trust it).
    LyingSize,
    /// 48 MiB of spaces in `<HealthData>`: a size no cap need refuse, in one text node that
    /// alone would take most of the plugin's memory.
    SmallWhitespace,
}

const ALL_BOMBS: [Bomb; 5] = [
    Bomb::Zeros,
    Bomb::Whitespace,
    Bomb::Elements,
    Bomb::LyingSize,
    Bomb::SmallWhitespace,
];

/// A bomb's content repeats in units of 1 MiB.
const BOMB_UNIT: usize = 1 << 20;

impl Bomb {
    fn zip(self) -> Vec<u8> {
        const OPEN: &[u8] =
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<HealthData locale=\"en_US\">";
        const CLOSE: &[u8] = b"</HealthData>\n";
        // A unit repeats whole, so a pattern's length divides it.
        let (prefix, pattern, suffix): (&[u8], &[u8], &[u8]) = match self {
            Bomb::Zeros | Bomb::LyingSize => (b"", b"\0", b""),
            Bomb::Whitespace | Bomb::SmallWhitespace => (OPEN, b" ", CLOSE),
            Bomb::Elements => (OPEN, b"<a/>", CLOSE),
        };
        let units = match self {
            Bomb::SmallWhitespace => 48,
            _ => 2048,
        };
        let unit = pattern.repeat(BOMB_UNIT / pattern.len());
        let (deflated, crc) = repeated_deflate(prefix, &unit, units, suffix);
        let size = prefix.len() as u64 + BOMB_UNIT as u64 * u64::from(units) + suffix.len() as u64;
        let declared = match self {
            Bomb::LyingSize => 4096,
            _ => u32::try_from(size).expect("under 4 GiB: no zip64 needed"),
        };
        zip_one_entry("apple_health_export/export.xml", &deflated, crc, declared)
    }
}

/// The bombs are what they say: a few MiB that inflate, through an ordinary zip reader, to what
/// their directory declares, with its CRC (or, for the lying one, to more than it declares).
#[test]
fn the_zip_bombs_are_bombs() {
    for bomb in ALL_BOMBS {
        let bytes = bomb.zip();
        assert!(bytes.len() < 8 << 20, "{bomb:?}: {} bytes", bytes.len());
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut entry = archive.by_index(0).unwrap();
        let declared = entry.size();
        let inflated = std::io::copy(&mut entry, &mut std::io::sink());
        match bomb {
            // The host's zip reader (2.x) reads on past the declared size, the plugin's (9.x)
            // refuses to: either way, there is more than declared.
            Bomb::LyingSize => assert!(
                inflated.as_ref().is_ok_and(|n| *n > declared) || inflated.is_err(),
                "{bomb:?}: {inflated:?}"
            ),
            _ => {
                let inflated = inflated.unwrap_or_else(|e| panic!("{bomb:?}: {e}"));
                assert_eq!(inflated, declared, "{bomb:?}");
                assert!(inflated >= 48 << 20, "{bomb:?}: {inflated}");
            }
        }
    }
}

/// A raw deflate stream of `prefix`, `repeats` times `unit`, then `suffix`, built without
/// deflating every repeat: after a sync flush the stream is byte-aligned, and the blocks for one
/// `unit` only refer back to the previous `unit`'s bytes (the same), so they are repeated as
/// they are. Answers the stream and the CRC-32 of what it inflates to.
fn repeated_deflate(prefix: &[u8], unit: &[u8], repeats: u32, suffix: &[u8]) -> (Vec<u8>, u32) {
    use flate2::{Compress, Compression, FlushCompress};
    assert!(
        repeats >= 2 && unit.len() >= 32 * 1024,
        "a unit fills the window"
    );
    let mut compress = Compress::new(Compression::best(), false);
    let mut stream = deflate_part(&mut compress, &[prefix, unit].concat(), FlushCompress::Sync);
    let repeated = deflate_part(&mut compress, unit, FlushCompress::Sync);
    for _ in 1..repeats {
        stream.extend_from_slice(&repeated);
    }
    stream.extend(deflate_part(&mut compress, suffix, FlushCompress::Finish));

    // The CRC of `repeats` units by doubling, rather than hashing gigabytes.
    let mut crc = crc32fast::Hasher::new();
    crc.update(prefix);
    let mut power = crc32fast::Hasher::new();
    power.update(unit);
    let mut remaining = repeats;
    while remaining > 0 {
        if remaining & 1 == 1 {
            crc.combine(&power);
        }
        let doubled = power.clone();
        power.combine(&doubled);
        remaining >>= 1;
    }
    crc.update(suffix);
    (stream, crc.finalize())
}

fn deflate_part(
    compress: &mut flate2::Compress,
    mut input: &[u8],
    flush: flate2::FlushCompress,
) -> Vec<u8> {
    let finish = matches!(flush, flate2::FlushCompress::Finish);
    let mut out = Vec::with_capacity(input.len() / 64 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024);
        }
        let read_before = compress.total_in();
        let status = compress.compress_vec(input, &mut out, flush).unwrap();
        input = &input[(compress.total_in() - read_before) as usize..];
        // Done when all input is in and the output had room left (so nothing is pending).
        let flushed = input.is_empty() && out.len() < out.capacity();
        if flushed && (!finish || status == flate2::Status::StreamEnd) {
            return out;
        }
    }
}

/// A zip with one deflated entry, written by hand: the zip crate would deflate all 2 GiB.
fn zip_one_entry(name: &str, deflated: &[u8], crc: u32, declared_size: u32) -> Vec<u8> {
    let compressed = u32::try_from(deflated.len()).unwrap();
    let name_len = u16::try_from(name.len()).unwrap();
    // version needed 2.0, no flags, deflate, 1980-01-01 00:00.
    let common = |out: &mut Vec<u8>| {
        for half in [20u16, 0, 8, 0, 0x21] {
            out.extend(half.to_le_bytes());
        }
        for word in [crc, compressed, declared_size] {
            out.extend(word.to_le_bytes());
        }
        out.extend(name_len.to_le_bytes());
        out.extend(0u16.to_le_bytes()); // extra field length
    };
    let mut zip = Vec::with_capacity(deflated.len() + 200);
    zip.extend(0x0403_4b50u32.to_le_bytes());
    common(&mut zip);
    zip.extend(name.as_bytes());
    zip.extend(deflated);
    let directory_start = u32::try_from(zip.len()).unwrap();
    zip.extend(0x0201_4b50u32.to_le_bytes());
    zip.extend(20u16.to_le_bytes()); // version made by
    common(&mut zip);
    for half in [0u16, 0, 0] {
        zip.extend(half.to_le_bytes()); // comment length, disk, internal attributes
    }
    zip.extend(0u32.to_le_bytes()); // external attributes
    zip.extend(0u32.to_le_bytes()); // local header offset
    zip.extend(name.as_bytes());
    let directory_size = u32::try_from(zip.len()).unwrap() - directory_start;
    zip.extend(0x0605_4b50u32.to_le_bytes());
    for half in [0u16, 0, 1, 1] {
        zip.extend(half.to_le_bytes());
    }
    zip.extend(directory_size.to_le_bytes());
    zip.extend(directory_start.to_le_bytes());
    zip.extend(0u16.to_le_bytes()); // comment length
    zip
}

// ----------------------------------------------------------------------------------------------
// Samples.
// ----------------------------------------------------------------------------------------------

fn shared(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(path)
}

fn paris() -> Value {
    serde_json::from_slice(&std::fs::read(common::synthea(PARIS)).unwrap()).unwrap()
}

/// The first 25 entries of the Paris bundle (its Patient first): every kind of its resources
/// but a quarter of the import's cost.
fn paris_slice(bundle: &Value) -> Value {
    let mut slice = bundle.clone();
    slice["entry"].as_array_mut().unwrap().truncate(25);
    slice
}

/// A Bundle with `urn:uuid:` references and an exponent serde_json would rewrite.
const EXPONENT_BUNDLE: &str = r#"{"resourceType":"Bundle","type":"collection","entry":[
  {"fullUrl":"urn:uuid:0a1b","resource":{"resourceType":"Patient","id":"p-1","name":[{"family":"Casper","given":["Paris"]}]}},
  {"fullUrl":"urn:uuid:9f8e","resource":{"resourceType":"Observation","status":"final",
    "code":{"text":"Weight"},"subject":{"reference":"urn:uuid:0a1b"},"valueQuantity":{"value":7.2E1,"unit":"kg"}}}
]}"#;

/// A synthetic Apple Health export of about 48 KiB, with Apple's DOCTYPE and every kind of
/// record the plugin reads.
fn generated_export() -> Vec<u8> {
    let mut xml = Vec::new();
    apple_health_gen::write_export(&mut xml, 48 << 10).unwrap();
    xml
}

/// A clinic's email with every kind of part the email plugin reads: text and HTML, a FHIR
/// Bundle, NDJSON, a C-CDA document and a forwarded email with an attachment of its own.
fn rich_email() -> Vec<u8> {
    let bundle = serde_json::to_vec(&paris_slice(&paris())).unwrap();
    let ndjson = b"{\"resourceType\":\"Condition\",\"id\":\"c1\",\"code\":{\"text\":\"Asthma\"}}\n\
                   {\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"text\":\"x\"}}\n";
    let ccda = std::fs::read(shared("ccda/Diagnostic_Imaging_Report.xml")).unwrap();
    let forwarded = "From: Lab <lab@example.org>\r\nSubject: Results\r\nDate: Mon, 4 Mar 2024 09:00:00 +0000\r\nMessage-ID: <inner@example.org>\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--inner\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--inner--\r\n";
    let mut email = String::from(
        "From: Clinic <clinic@example.org>\r\nTo: Paris <paris@example.org>\r\n\
         Subject: Your records\r\nDate: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
         Message-ID: <rich@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour records are attached.\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Your records are <b>attached</b>.</p>\r\n\
         --alt--\r\n",
    );
    for (media, name, bytes) in [
        ("application/fhir+json", "bundle.json", &bundle[..]),
        ("application/fhir+ndjson", "export.ndjson", &ndjson[..]),
        ("application/xml", "summary.xml", &ccda[..]),
    ] {
        email.push_str(&attachment_part("outer", media, name, bytes));
    }
    email.push_str("--outer\r\nContent-Type: message/rfc822\r\n\r\n");
    email.push_str(forwarded);
    email.push_str("--outer--\r\n");
    email.into_bytes()
}

/// A valid email whose one attachment is `bytes` (the document view's tests send a C-CDA so).
pub(crate) fn email_with_attachment(media: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut email = String::from(
        "From: Clinic <clinic@example.org>\r\nTo: Paris <paris@example.org>\r\n\
         Subject: Your visit summary\r\nDate: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
         Message-ID: <ccda@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: text/plain\r\n\r\nYour visit summary is attached.\r\n",
    );
    email.push_str(&attachment_part("outer", media, name, bytes));
    email.push_str("--outer--\r\n");
    email.into_bytes()
}

fn attachment_part(boundary: &str, media: &str, name: &str, bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "--{boundary}\r\nContent-Type: {media}; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        lines.join("\r\n")
    )
}
