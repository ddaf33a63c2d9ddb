//! `cargo bench --bench connectors`: the file connectors end to end through the host (the plugin
//! in its sandbox, validation, indexing and the one-transaction write), on generated inputs:
//! lab CSV rows per second (import and preview), Apple Health export MB/s with the process's
//! peak resident memory for a 200 MB export (and its zip), emails per second, and the time to
//! import each C-CDA example document through the `ccda` plugin. Prints
//! figures; asserts nothing. `FASTEN_BENCH_APPLE_MB` changes the export size.

#[path = "support/rss.rs"]
mod rss;

#[path = "support/apple_health_gen.rs"]
mod apple_health_gen;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rss::{current_rss_mib, peak_rss_mib};

use fasten::import::{self, ImportOptions};
use fasten::jobs::Trigger;

/// Linux resets the peak to the current size when "5" is written to clear_refs.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Lab results like a portal's export: 40 tests a visit, one visit every few days.
fn write_lab_csv(path: &Path, rows: usize) -> std::io::Result<()> {
    const TESTS: &[(&str, &str, &str, f64, f64)] = &[
        ("Glucose", "2345-7", "mg/dL", 70.0, 99.0),
        ("Hemoglobin", "718-7", "g/dL", 12.0, 16.0),
        ("Potassium", "2823-3", "mmol/L", 3.5, 5.1),
        ("Sodium", "2951-2", "mmol/L", 136.0, 145.0),
        ("Creatinine", "2160-0", "mg/dL", 0.6, 1.2),
        ("Cholesterol", "2093-3", "mg/dL", 0.0, 200.0),
        ("Leukocytes", "6690-2", "K/uL", 4.5, 11.0),
        ("Platelets", "777-3", "K/uL", 150.0, 400.0),
    ];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "Test Name,LOINC,Result,Units,Reference Range,Flag,Collected,Ordering Provider,Lab"
    )?;
    for i in 0..rows {
        let (name, loinc, unit, low, high) = TESTS[i % TESTS.len()];
        // Each visit repeats the tests under a numbered panel, so every row is a new result.
        let visit = i / TESTS.len();
        let day = 1 + visit % 28;
        let month = 1 + (visit / 28) % 12;
        let year = 1990 + visit / (28 * 12);
        let value = low + (high - low) * ((i * 37 % 100) as f64 / 80.0);
        let flag = if value > high { "H" } else { "" };
        writeln!(
            out,
            "{name} #{},{loinc},{value:.1},{unit},{low}-{high},{flag},{month:02}/{day:02}/{year} 08:{:02} AM,Dr. Rivera,Quest",
            visit % 5,
            i % 60
        )?;
    }
    out.flush()
}

/// A clinic's email: a note and a 40 KB PDF report.
fn email(n: usize) -> String {
    use base64::Engine;
    let pdf = vec![b'%'; 40 * 1024];
    let encoded = base64::engine::general_purpose::STANDARD.encode(&pdf);
    let wrapped: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "From: Clinic <results@clinic.example>\r\nSubject: Results {n}\r\n\
         Date: Tue, 05 Mar 2024 09:30:00 +0100\r\nMessage-ID: <r{n}@clinic.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nYour results are attached. Number {n}.\r\n\
         --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r{n}.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        wrapped.join("\r\n")
    )
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fasten::config::Config::load(None, Vec::new())?;
    config.data_dir = dir.path().to_path_buf();
    config.plugins.registry_dir = dir.path().join("no-registry");
    fasten::prepare_data_dir(&config.data_dir)?;
    let db = fasten::store::open(&config.database_path()).await?;
    let plugins = fasten::open_plugins(&config, &db).await?;
    let hash = fasten::auth::password::hash_blocking("benchmark-password");
    let user = fasten::store::users::create(
        &db,
        "bench",
        "bench",
        &hash,
        fasten::store::users::Role::Member,
    )
    .await?
    .id;
    let options = ImportOptions::default();

    // Lab CSV.
    let rows = 100_000;
    let csv = dir.path().join("labs.csv");
    write_lab_csv(&csv, rows)?;
    let size = std::fs::metadata(&csv)?.len();
    let started = Instant::now();
    let preview = import::preview_file(&plugins, &csv, "labs.csv", &options, 20).await?;
    let preview_time = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let report = import::import_file(
        &db,
        &plugins,
        user,
        &csv,
        "labs.csv",
        Trigger::Cli,
        &options,
    )
    .await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "csv-labs: {rows} rows ({:.1} MB) -> {} resources ({} warnings); preview {:.2} s = {:.0} rows/s; import {:.2} s = {:.0} rows/s",
        size as f64 / 1e6,
        report.counts.total(),
        preview.warnings.len(),
        preview_time,
        rows as f64 / preview_time,
        took,
        rows as f64 / took
    );

    // Emails.
    let count = 500;
    let mut email_time = 0.0;
    let mut email_bytes = 0;
    for n in 0..count {
        let path = dir.path().join(format!("m{n}.eml"));
        let text = email(n);
        email_bytes += text.len();
        std::fs::write(&path, text)?;
        let started = Instant::now();
        import::import_file(&db, &plugins, user, &path, "m.eml", Trigger::Cli, &options).await?;
        email_time += started.elapsed().as_secs_f64();
    }
    println!(
        "email: {count} emails ({:.1} MB, a 40 KB PDF each) in {:.2} s = {:.0} emails/s",
        email_bytes as f64 / 1e6,
        email_time,
        count as f64 / email_time
    );

    // C-CDA documents, each imported twice (the second time finds every record unchanged).
    let ccda_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/ccda");
    let mut documents: Vec<_> = std::fs::read_dir(&ccda_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    documents.sort();
    // The example documents are about four different patients.
    let anyway = ImportOptions {
        anyway: true,
        ..ImportOptions::default()
    };
    for path in &documents {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let size = std::fs::metadata(path)?.len();
        let mut times = Vec::new();
        let mut report = None;
        for _ in 0..2 {
            let started = Instant::now();
            report = Some(
                import::import_file(&db, &plugins, user, path, &name, Trigger::Cli, &anyway)
                    .await?,
            );
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let report = report.unwrap();
        println!(
            "ccda {name}: {:.0} KB -> {} resources, {} warnings; import {:.0} ms, again {:.0} ms",
            size as f64 / 1000.0,
            report.counts.total(),
            report.warnings.len(),
            times[0],
            times[1]
        );
    }

    // Apple Health.
    let megabytes: u64 = std::env::var("FASTEN_BENCH_APPLE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let xml = dir.path().join("export.xml");
    let written = {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&xml)?);
        apple_health_gen::write_export(&mut out, megabytes * 1_000_000)?
    };
    let zip_path = dir.path().join("export.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path)?);
        zip.start_file(
            "apple_health_export/export.xml",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )?;
        std::io::copy(&mut std::fs::File::open(&xml)?, &mut zip)?;
        zip.finish()?;
    }
    let zipped = std::fs::metadata(&zip_path)?.len();
    for (name, path) in [("export.xml", &xml), ("export.zip", &zip_path)] {
        let before = current_rss_mib();
        reset_peak_rss();
        let started = Instant::now();
        let report =
            import::import_file(&db, &plugins, user, path, name, Trigger::Cli, &options).await?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "apple-health {name}: {:.1} MB of XML{} in {:.2} s = {:.1} MB/s; {} resources ({} new); RSS before {:.0} MiB, peak during {:.0} MiB",
            written as f64 / 1e6,
            if name.ends_with(".zip") {
                format!(" ({:.1} MB zipped)", zipped as f64 / 1e6)
            } else {
                String::new()
            },
            took,
            written as f64 / 1e6 / took,
            report.counts.total(),
            report.counts.added,
            before,
            peak_rss_mib()
        );
    }
    Ok(())
}
