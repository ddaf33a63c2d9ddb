//! `cargo bench -p fasten --bench directory`: writes a User-access Brands bundle the size of
//! Epic's (about 90 MB: 800 brands, each with its Endpoint and a logo, and 120 facilities per
//! brand folded in by `partOf`), serves it over loopback, runs one directory refresh exactly as
//! `fasten directory refresh` does (download to a temporary file, stream into the staging
//! database, resolve, replace), and prints the time taken and the process's peak resident set
//! (VmHWM) before and after. The bundle is written to disk a line at a time, so the figures are
//! the refresh's, not the generator's. `FASTEN_BENCH_BRANDS=N` changes the number of brands.
//! Measured here (2 cores): 94.5 MB, 96,800 organisations in 13.0 s, peak RSS 25.2 MiB (9.0 MiB
//! before the refresh).

#[path = "support/rss.rs"]
mod rss;

use std::io::{BufWriter, Write};
use std::time::Instant;

use fasten::directory::refresh::{self, Settings, Trigger};
use fasten::directory::{Format, Source};
use fasten::plugins::grants::{HostPattern, NetworkGrant};
use fasten::plugins::http::{Clients, HttpGate, NetworkPolicy};
use serde_json::json;

const FACILITIES_PER_BRAND: usize = 120;

fn write_bundle(path: &std::path::Path, brands: usize) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    write!(
        out,
        r#"{{"resourceType":"Bundle","id":"bench","type":"collection","entry":["#
    )?;
    let logo = format!("data:image/png;base64,{}", "A".repeat(48 * 1024));
    let states = ["WI", "IL", "MN", "IA", "MO", "CA", "TX", "NY"];
    let mut first = true;
    let mut comma = |out: &mut BufWriter<std::fs::File>| -> std::io::Result<()> {
        if !std::mem::take(&mut first) {
            out.write_all(b",\n")?;
        }
        Ok(())
    };
    for b in 0..brands {
        let endpoint = json!({
            "fullUrl": format!("https://open.epic.example/Endpoint/e{b}"),
            "resource": {
                "resourceType": "Endpoint", "id": format!("e{b}"), "status": "active",
                "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "hl7-fhir-rest"},
                "name": format!("Health System {b}"),
                "payloadType": [{"coding": [{"system": "http://hl7.org/fhir/endpoint-payload-type", "code": "none"}]}],
                "address": format!("https://fhir{b}.health.example/api/FHIR/R4/"),
            }
        });
        comma(&mut out)?;
        serde_json::to_writer(&mut out, &endpoint)?;
        let brand = json!({
            "fullUrl": format!("https://open.epic.example/Organization/b{b}"),
            "resource": {
                "resourceType": "Organization", "id": format!("b{b}"), "active": true,
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/organization-brand",
                               "extension": [{"url": "brandLogo", "valueUrl": logo}]}],
                "identifier": [{"system": "urn:ietf:rfc:3986", "value": format!("https://health{b}.example")}],
                "name": format!("Health System {b}"),
                "alias": [format!("HS{b}")],
                "telecom": [{"system": "url", "value": format!("https://www.health{b}.example")}],
                "address": [{"city": format!("Town {b}"), "state": states[b % states.len()], "postalCode": format!("{:05}", 10000 + b)}],
                "endpoint": [{"reference": format!("Endpoint/e{b}")}],
            }
        });
        comma(&mut out)?;
        serde_json::to_writer(&mut out, &brand)?;
        for f in 0..FACILITIES_PER_BRAND {
            let facility = json!({
                "fullUrl": format!("https://open.epic.example/Organization/f{b}-{f}"),
                "resource": {
                    "resourceType": "Organization", "id": format!("f{b}-{f}"), "active": true,
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("{:010}", b * 1000 + f)}],
                    "name": format!("Health System {b} Clinic {f} Family Medicine and Pediatrics"),
                    "telecom": [{"system": "phone", "value": "555-0100"}, {"system": "url", "value": format!("https://www.health{b}.example/locations/{f}")}],
                    "address": [{"line": [format!("{f} Main Street"), "Suite 100"], "city": format!("Town {b}-{f}"),
                                 "state": states[(b + f) % states.len()], "postalCode": format!("{:05}", (b * 131 + f) % 99999), "country": "US"}],
                    "partOf": {"reference": format!("Organization/b{b}")},
                }
            });
            comma(&mut out)?;
            serde_json::to_writer(&mut out, &facility)?;
        }
    }
    out.write_all(b"]}")?;
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn main() -> anyhow::Result<()> {
    let brands: usize = std::env::var("FASTEN_BENCH_BRANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(800);
    let dir = tempfile::tempdir()?;
    let bundle = dir.path().join("brands.json");
    let started = Instant::now();
    let size = write_bundle(&bundle, brands)?;
    println!(
        "generated {:.1} MB ({brands} brands, {} organisations) in {:.1} s",
        size as f64 / 1e6,
        brands * (FACILITIES_PER_BRAND + 1),
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // The vendor: the file streamed from disk, as a static server would.
        let served = bundle.clone();
        let app = axum::Router::new().route(
            "/Endpoints/Brands",
            axum::routing::get(move || {
                let path = served.clone();
                async move {
                    let file = tokio::fs::File::open(path).await.unwrap();
                    axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/Endpoints/Brands", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let db = fasten::store::open(&dir.path().join("fasten.db")).await?;
        let origin = HostPattern::origin_of(&url::Url::parse(&url)?).expect("a host");
        let settings = Settings {
            db: db.clone(),
            gate: HttpGate {
                grant: NetworkGrant {
                    allowed: vec![origin],
                },
                bearer: None,
                clients: Clients::new(NetworkPolicy {
                    allow_http_loopback: true,
                    allow_private_networks: true,
                }),
                stats: Default::default(),
            },
            spool_dir: dir.path().join("spool"),
            max_bytes: 512 << 20,
            accept_count_change: false,
        };
        let source = Source {
            id: "epic".into(),
            name: "Epic (generated)".into(),
            url,
            format: Format::FhirBundle,
            platform: "epic".into(),
        };
        let before = rss::peak_rss_mib();
        let started = Instant::now();
        let counts = refresh::refresh_one(&settings, &source, Trigger::Cli)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed();
        println!(
            "refresh: {} organisations, {} sign-ins in {:.1} s",
            counts.entries,
            counts.choices,
            took.as_secs_f64()
        );
        println!(
            "peak RSS (VmHWM): {before:.1} MiB before the refresh, {:.1} MiB after",
            rss::peak_rss_mib()
        );
        let started = Instant::now();
        let hits = fasten::directory::search(&db, "clinic 7 town", 30).await?;
        println!(
            "search \"clinic 7 town\": {} choices in {:.1} ms",
            hits.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
        anyhow::Ok(())
    })
}
