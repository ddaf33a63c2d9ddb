//! The staging database of one refresh: a temporary SQLite file that the streamed records go
//! into in batches, where references are resolved in SQL, and from which one short transaction
//! replaces the source's rows in the main database.
//!
//! Staging in a file of its own keeps the main database's single writer free while a large list
//! downloads and parses (style.md, 17), and keeps memory bounded: SQLite pages, not a map of the
//! whole list.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor, SqliteConnection, SqlitePool};

use super::bundle::Record;

/// Records written per staging transaction.
pub const BATCH: usize = 2000;

const SCHEMA: &str = "
CREATE TABLE orgs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, aliases TEXT NOT NULL,
    part_of TEXT, city TEXT, state TEXT, zip TEXT, places TEXT NOT NULL);
CREATE TABLE endpoints (id INTEGER PRIMARY KEY, address TEXT NOT NULL, name TEXT, managing TEXT);
CREATE TABLE org_endpoint_refs (org_id INTEGER NOT NULL, ref TEXT NOT NULL);
-- Every key a reference may use, to the row it names; the first resource with a key keeps it.
CREATE TABLE keys (key TEXT NOT NULL, kind TEXT NOT NULL, row_id INTEGER NOT NULL,
    PRIMARY KEY (kind, key)) WITHOUT ROWID;
";

/// What was staged and resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Organisations that resolved to an endpoint: the searchable rows.
    pub entries: i64,
    /// Distinct FHIR bases among them: the choices.
    pub choices: i64,
}

pub struct Stage {
    conn: SqliteConnection,
    file: tempfile::NamedTempFile,
    batch: Vec<Record>,
}

impl Stage {
    /// A new, empty staging database in `dir` (removed when the stage is dropped).
    pub async fn create(dir: &Path) -> anyhow::Result<Stage> {
        std::fs::create_dir_all(dir)?;
        let file = tempfile::Builder::new()
            .prefix("directory-")
            .suffix(".db")
            .tempfile_in(dir)?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .expect("static URL")
            .filename(file.path())
            // A staging file that a crash leaves half-written is thrown away, never read.
            .journal_mode(SqliteJournalMode::Off)
            .synchronous(SqliteSynchronous::Off);
        let mut conn = SqliteConnection::connect_with(&options).await?;
        conn.execute(SCHEMA).await?;
        Ok(Stage {
            conn,
            file,
            batch: Vec::with_capacity(BATCH),
        })
    }

    /// Queues a record, writing the batch when it is full.
    pub async fn push(&mut self, record: Record) -> sqlx::Result<()> {
        self.batch.push(record);
        if self.batch.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> sqlx::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.conn.begin().await?;
        for record in self.batch.drain(..) {
            match record {
                Record::Organization(org) => {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO orgs (name, aliases, part_of, city, state, zip, places)
                         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    )
                    .bind(&org.name)
                    .bind(org.aliases.join("; "))
                    .bind(&org.part_of)
                    .bind(&org.city)
                    .bind(&org.state)
                    .bind(&org.zip)
                    .bind(org.places.join("; "))
                    .fetch_one(&mut *tx)
                    .await?;
                    for reference in &org.endpoints {
                        sqlx::query("INSERT INTO org_endpoint_refs (org_id, ref) VALUES (?, ?)")
                            .bind(id)
                            .bind(reference)
                            .execute(&mut *tx)
                            .await?;
                    }
                    insert_keys(&mut tx, &org.keys, "Organization", id).await?;
                }
                Record::Endpoint(endpoint) => {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO endpoints (address, name, managing) VALUES (?, ?, ?)
                         RETURNING id",
                    )
                    .bind(&endpoint.address)
                    .bind(&endpoint.name)
                    .bind(&endpoint.managing)
                    .fetch_one(&mut *tx)
                    .await?;
                    insert_keys(&mut tx, &endpoint.keys, "Endpoint", id).await?;
                }
            }
        }
        tx.commit().await
    }

    /// Resolves every organisation to an endpoint: its own (`Organization.endpoint`, or an
    /// Endpoint naming it as `managingOrganization`), else its brand's through `partOf` (the
    /// Brands profile allows two levels). Then names each distinct FHIR base after the
    /// organisation that owns it directly, preferring one that is not itself part of another.
    pub async fn resolve(&mut self) -> sqlx::Result<Counts> {
        self.flush().await?;
        // `Executor::execute` with a multi-statement string rather than `sqlx::raw_sql`, whose
        // signature makes the spawned refresh's future fail the compiler's Send check.
        self.conn
            .execute(
                "CREATE TABLE own AS
               SELECT r.org_id, MIN(k.row_id) AS endpoint_id
               FROM org_endpoint_refs r JOIN keys k ON k.kind = 'Endpoint' AND k.key = r.ref
               GROUP BY r.org_id;
             INSERT INTO own
               SELECT k.row_id, MIN(e.id) FROM endpoints e
               JOIN keys k ON k.kind = 'Organization' AND k.key = e.managing
               WHERE k.row_id NOT IN (SELECT org_id FROM own)
               GROUP BY k.row_id;
             CREATE INDEX own_by_org ON own (org_id);
             CREATE INDEX own_by_endpoint ON own (endpoint_id);
             CREATE INDEX endpoints_by_address ON endpoints (address);
             CREATE TABLE resolved AS
               SELECT o.id AS org_id, e.address
               FROM orgs o
               LEFT JOIN own w1 ON w1.org_id = o.id
               LEFT JOIN keys p1 ON p1.kind = 'Organization' AND p1.key = o.part_of
               LEFT JOIN own w2 ON w2.org_id = p1.row_id
               LEFT JOIN orgs o2 ON o2.id = p1.row_id
               LEFT JOIN keys p2 ON p2.kind = 'Organization' AND p2.key = o2.part_of
               LEFT JOIN own w3 ON w3.org_id = p2.row_id
               JOIN endpoints e ON e.id = COALESCE(w1.endpoint_id, w2.endpoint_id, w3.endpoint_id);
             CREATE INDEX resolved_by_address ON resolved (address);
             CREATE TABLE choices AS
               SELECT r.address,
                      COALESCE(
                        (SELECT o.name FROM own w JOIN endpoints e ON e.id = w.endpoint_id
                           JOIN orgs o ON o.id = w.org_id
                         WHERE e.address = r.address
                         ORDER BY o.part_of IS NOT NULL, o.id LIMIT 1),
                        (SELECT e.name FROM endpoints e WHERE e.address = r.address
                           AND e.name IS NOT NULL LIMIT 1),
                        r.address) AS name
               FROM (SELECT DISTINCT address FROM resolved) r;",
            )
            .await?;
        let (entries, choices): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM resolved), (SELECT COUNT(*) FROM choices)",
        )
        .fetch_one(&mut self.conn)
        .await?;
        Ok(Counts { entries, choices })
    }

    /// Replaces `source`'s rows in the main database with the resolved ones, in one
    /// transaction, inside which `then` records the outcome (so the rows and the record of
    /// them never disagree).
    pub async fn replace(
        self,
        db: &SqlitePool,
        source: &str,
        platform: &str,
        refresh_id: i64,
        counts: Counts,
        bytes: u64,
    ) -> anyhow::Result<()> {
        let Stage { conn, file, .. } = self;
        conn.close().await?;
        // Its own connection, not a pooled one: ATTACH outlives a transaction, and a pooled
        // connection handed on still attached would refuse the next refresh's ATTACH.
        let mut main = SqliteConnection::connect_with(&db.connect_options()).await?;
        sqlx::query("ATTACH DATABASE ? AS stage")
            .bind(file.path().to_string_lossy().as_ref())
            .execute(&mut main)
            .await?;
        let mut tx = main.begin().await?;
        sqlx::query(
            "DELETE FROM directory_orgs WHERE endpoint_id IN
               (SELECT id FROM directory_endpoints WHERE source = ?)",
        )
        .bind(source)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM directory_endpoints WHERE source = ?")
            .bind(source)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO directory_endpoints (source, platform, fhir_base, name)
             SELECT ?, ?, address, name FROM stage.choices ORDER BY name",
        )
        .bind(source)
        .bind(platform)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO directory_orgs (endpoint_id, name, aliases, city, state, zip, places)
             SELECT d.id, o.name, o.aliases, o.city, o.state, o.zip, o.places
             FROM stage.resolved r JOIN stage.orgs o ON o.id = r.org_id
             JOIN directory_endpoints d ON d.source = ? AND d.fhir_base = r.address
             ORDER BY r.org_id",
        )
        .bind(source)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE directory_refreshes SET status = 'succeeded', entries = ?, choices = ?,
               bytes = ?, error = NULL, finished_at = ? WHERE id = ?",
        )
        .bind(counts.entries)
        .bind(counts.choices)
        .bind(bytes as i64)
        .bind(crate::store::unix_now())
        .bind(refresh_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sqlx::query("DETACH DATABASE stage")
            .execute(&mut main)
            .await?;
        main.close().await?;
        drop(file);
        Ok(())
    }
}

async fn insert_keys(
    tx: &mut SqliteConnection,
    keys: &[String],
    kind: &str,
    id: i64,
) -> sqlx::Result<()> {
    for key in keys {
        sqlx::query("INSERT OR IGNORE INTO keys (key, kind, row_id) VALUES (?, ?, ?)")
            .bind(key)
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
