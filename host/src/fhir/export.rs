//! Export: every stored resource of a person, as NDJSON (one resource per line) or as one FHIR
//! `collection` Bundle. Rows are streamed from the database, not collected first.

use std::io::Write;

use futures_util::TryStreamExt;
use sqlx::SqlitePool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Ndjson,
    Bundle,
}

/// Writes the person's resources to `out`; returns how many were written.
pub async fn export_person(
    db: &SqlitePool,
    person_id: i64,
    format: ExportFormat,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u64> {
    let mut rows = sqlx::query_scalar::<_, String>(
        "SELECT json FROM resources WHERE person_id = ? ORDER BY resource_type, resource_id, source_id",
    )
    .bind(person_id)
    .fetch(db);
    let mut count = 0u64;
    if format == ExportFormat::Bundle {
        write!(
            out,
            r#"{{"resourceType":"Bundle","type":"collection","entry":["#
        )?;
    }
    while let Some(json) = rows.try_next().await? {
        match format {
            ExportFormat::Ndjson => writeln!(out, "{json}")?,
            ExportFormat::Bundle => {
                if count > 0 {
                    out.write_all(b",")?;
                }
                write!(out, r#"{{"resource":{json}}}"#)?;
            }
        }
        count += 1;
    }
    if format == ExportFormat::Bundle {
        writeln!(out, "]}}")?;
    }
    out.flush()?;
    Ok(count)
}
