//! Writing prepared resources: one import or sync is one transaction, begun when its run has
//! succeeded (the records wait in a [`crate::spool`] until then). Each resource is upserted
//! by `(source, type, id)`; a row whose content hash is unchanged is left alone. A resource that
//! another source of the same person already holds is not stored twice (see
//! [`Writer::held_elsewhere`]).
//!
//! Everything [`super::index`] derived is written here too, in the same transaction as the
//! resource: its columns, tokens, observation keys and search text (`search_docs` and
//! `search_fts`); the pages and the search page only read those tables. The start-up jobs that
//! fill them for records stored before they existed, or before their derivation changed, are
//! here as well: [`rederive_pending`], [`index_missing`] and [`backfill_observation_keys`].

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::search_text::{self, Document};
use super::{Prepared, index};
use crate::store::unix_now;

/// A resource's search text to write: its type, its id and its text.
type Indexed<'a> = (&'a str, &'a str, &'a Document);

/// What an import did to the store.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.added + self.updated + self.unchanged
    }
}

/// The resource types that record a medicine's use and may name it by reference.
const MEDICATION_USES: [&str; 4] = [
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "MedicationDispense",
];

/// An open transaction that resources are written into.
pub struct Writer {
    tx: Transaction<'static, Sqlite>,
    person_id: i64,
    source_id: i64,
    /// Rewrite what is derived from rows whose JSON did not change (see [`rederive_pending`]).
    rederive: bool,
    /// The person has other sources, so a new resource may already be stored by one of them.
    /// Looked up at the first write (and again after `retarget`).
    other_sources: Option<bool>,
    pub counts: Counts,
}

impl Writer {
    /// Takes the write lock at once (waiting up to the busy timeout for another writer): the
    /// run has already succeeded, and its records are written in one short transaction.
    pub async fn begin(db: &SqlitePool, person_id: i64, source_id: i64) -> sqlx::Result<Writer> {
        Ok(Writer {
            tx: db.begin_with("BEGIN IMMEDIATE").await?,
            person_id,
            source_id,
            rederive: false,
            other_sources: None,
            counts: Counts::default(),
        })
    }

    /// Writes what follows for another person and source, in the same transaction (a family's
    /// file split by patient commits whole or not at all).
    pub fn retarget(&mut self, person_id: i64, source_id: i64) {
        self.person_id = person_id;
        self.source_id = source_id;
        self.other_sources = None;
    }

    async fn has_other_sources(&mut self) -> sqlx::Result<bool> {
        if let Some(known) = self.other_sources {
            return Ok(known);
        }
        let known = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM resources WHERE person_id = ? AND source_id != ?)",
        )
        .bind(self.person_id)
        .bind(self.source_id)
        .fetch_one(&mut *self.tx)
        .await?;
        self.other_sources = Some(known);
        Ok(known)
    }

    /// Whether another source of the person already holds this resource: the same type and id
    /// with the same content (the same file uploaded under another plugin, a portal download of
    /// what a sync brought), or the same type and id from a connection to the same FHIR server.
    /// Ids are only unique within one server, so a mere id match from elsewhere is not enough.
    async fn held_elsewhere(&mut self, r: &Prepared) -> sqlx::Result<bool> {
        if !self.has_other_sources().await? {
            return Ok(false);
        }
        sqlx::query_scalar(
            "SELECT EXISTS (
               SELECT 1 FROM resources held
               LEFT JOIN connections theirs ON theirs.source_id = held.source_id
               LEFT JOIN connections ours ON ours.source_id = ?
               WHERE held.person_id = ? AND held.resource_type = ? AND held.resource_id = ?
                 AND held.source_id != ?
                 AND (held.content_hash = ? OR RTRIM(theirs.fhir_base, '/') = RTRIM(ours.fhir_base, '/')))",
        )
        .bind(self.source_id)
        .bind(self.person_id)
        .bind(&r.resource_type)
        .bind(&r.resource_id)
        .bind(self.source_id)
        .bind(&r.content_hash[..])
        .fetch_one(&mut *self.tx)
        .await
    }

    /// The content hash of each of `resources` this source already stores, looked up one
    /// statement per resource type rather than one per resource.
    async fn stored_hashes<'a>(
        &mut self,
        resources: &'a [Prepared],
    ) -> sqlx::Result<HashMap<(&'a str, &'a str), Vec<u8>>> {
        let mut by_type: HashMap<&str, Vec<&str>> = HashMap::new();
        for r in resources {
            by_type
                .entry(r.resource_type.as_str())
                .or_default()
                .push(r.resource_id.as_str());
        }
        let mut stored = HashMap::new();
        for (resource_type, ids) in by_type {
            for chunk in ids.chunks(500) {
                let mut query = QueryBuilder::<Sqlite>::new(
                    "SELECT resource_id, content_hash FROM resources WHERE source_id = ",
                );
                query.push_bind(self.source_id);
                query.push(" AND resource_type = ").push_bind(resource_type);
                query.push(" AND resource_id IN (");
                let mut list = query.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                query.push(")");
                let rows: Vec<(String, Vec<u8>)> =
                    query.build_query_as().fetch_all(&mut *self.tx).await?;
                // Keyed by the batch's own strings, so lookups borrow rather than allocate.
                let own: std::collections::HashSet<&str> = chunk.iter().copied().collect();
                for (id, hash) in rows {
                    if let Some(own) = own.get(id.as_str()) {
                        stored.insert((resource_type, *own), hash);
                    }
                }
            }
        }
        Ok(stored)
    }

    pub async fn write(&mut self, resources: &[Prepared]) -> sqlx::Result<()> {
        let now = unix_now();
        // New rows and all tokens are inserted with multi-row statements: per-row statements
        // made token writes the larger part of ingest time.
        let mut new_rows: Vec<&Prepared> = Vec::new();
        let mut changed: Vec<&Prepared> = Vec::new();
        let mut stored = self.stored_hashes(resources).await?;
        for r in resources {
            let key = (r.resource_type.as_str(), r.resource_id.as_str());
            let existing = stored.get(&key).cloned();
            match existing {
                Some(hash) if hash == r.content_hash && !self.rederive => {
                    self.counts.unchanged += 1
                }
                Some(_) => {
                    sqlx::query(
                        "UPDATE resources SET content_hash = ?, sort_date = ?, sort_title = ?,
                         json = ?, updated_at = ?
                         WHERE source_id = ? AND resource_type = ? AND resource_id = ?",
                    )
                    .bind(&r.content_hash[..])
                    .bind(&r.sort_date)
                    .bind(&r.sort_title)
                    .bind(&r.json)
                    .bind(now)
                    .bind(self.source_id)
                    .bind(&r.resource_type)
                    .bind(&r.resource_id)
                    .execute(&mut *self.tx)
                    .await?;
                    sqlx::query(
                        "DELETE FROM resource_tokens
                         WHERE source_id = ? AND resource_type = ? AND resource_id = ?",
                    )
                    .bind(self.source_id)
                    .bind(&r.resource_type)
                    .bind(&r.resource_id)
                    .execute(&mut *self.tx)
                    .await?;
                    if r.resource_type == "Observation" {
                        sqlx::query(
                            "DELETE FROM observation_keys WHERE source_id = ? AND resource_id = ?",
                        )
                        .bind(self.source_id)
                        .bind(&r.resource_id)
                        .execute(&mut *self.tx)
                        .await?;
                    }
                    self.counts.updated += 1;
                    // A later copy in this batch compares with what is stored now.
                    stored.insert(key, r.content_hash.to_vec());
                    changed.push(r);
                }
                // A Bundle may repeat a resource within one batch: the first copy is kept.
                None if new_rows.iter().any(|n| {
                    n.resource_type == r.resource_type && n.resource_id == r.resource_id
                }) =>
                {
                    self.counts.unchanged += 1;
                }
                // Stored once, by the source that brought it first.
                None if self.held_elsewhere(r).await? => self.counts.unchanged += 1,
                None => {
                    self.counts.added += 1;
                    new_rows.push(r);
                    changed.push(r);
                }
            }
        }
        // SQLite allows 32766 bound parameters per statement.
        for chunk in new_rows.chunks(1000) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO resources (person_id, source_id, resource_type, resource_id,
                 content_hash, sort_date, sort_title, json, updated_at) ",
            );
            insert.push_values(chunk, |mut row, r| {
                row.push_bind(self.person_id)
                    .push_bind(self.source_id)
                    .push_bind(&r.resource_type)
                    .push_bind(&r.resource_id)
                    .push_bind(&r.content_hash[..])
                    .push_bind(&r.sort_date)
                    .push_bind(&r.sort_title)
                    .push_bind(&r.json)
                    .push_bind(now);
            });
            insert.build().execute(&mut *self.tx).await?;
        }
        let tokens: Vec<(&Prepared, &super::Token)> = changed
            .iter()
            .flat_map(|r| r.tokens.iter().map(move |t| (*r, t)))
            .collect();
        for chunk in tokens.chunks(2000) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO resource_tokens (person_id, source_id, resource_type, resource_id,
                 kind, value, display) ",
            );
            insert.push_values(chunk, |mut row, (r, token)| {
                row.push_bind(self.person_id)
                    .push_bind(self.source_id)
                    .push_bind(&r.resource_type)
                    .push_bind(&r.resource_id)
                    .push_bind(token.kind)
                    .push_bind(&token.value)
                    .push_bind(&token.display);
            });
            insert.build().execute(&mut *self.tx).await?;
        }
        let key_rows: Vec<KeyRow<'_>> = changed
            .iter()
            .flat_map(|r| {
                r.observation_keys.iter().map(move |(key, is_lab)| KeyRow {
                    resource_id: &r.resource_id,
                    key,
                    sort_date: r.sort_date.as_deref(),
                    is_lab: *is_lab,
                })
            })
            .collect();
        insert_observation_keys(&mut self.tx, self.person_id, self.source_id, &key_rows).await?;
        let docs: Vec<Indexed<'_>> = changed
            .iter()
            .map(|r| (r.resource_type.as_str(), r.resource_id.as_str(), &r.search))
            .collect();
        write_search_text(&mut self.tx, self.person_id, self.source_id, &docs).await?;
        self.name_referenced_medicines(&changed).await?;
        Ok(())
    }

    /// A medication record that names its medicine only by a reference to a Medication of the
    /// same source (`medicationReference` without a display) takes that Medication's name as its
    /// title, in lists and search, whichever of the two is written first: a sync may bring them
    /// in different batches.
    async fn name_referenced_medicines(&mut self, changed: &[&Prepared]) -> sqlx::Result<()> {
        for r in changed {
            if MEDICATION_USES.contains(&r.resource_type.as_str()) && r.sort_title.is_none() {
                let medication = r.tokens.iter().find_map(|t| {
                    (t.kind == "ref")
                        .then(|| t.value.strip_prefix("Medication/"))
                        .flatten()
                });
                let Some(medication) = medication else {
                    continue;
                };
                let name: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT sort_title FROM resources
                     WHERE source_id = ? AND resource_type = 'Medication' AND resource_id = ?",
                )
                .bind(self.source_id)
                .bind(medication)
                .fetch_optional(&mut *self.tx)
                .await?;
                if let Some(name) = name.flatten() {
                    self.set_title(&r.resource_type, &r.resource_id, &name)
                        .await?;
                }
            }
            if r.resource_type == "Medication"
                && let Some(name) = &r.sort_title
            {
                let untitled: Vec<(String, String)> = sqlx::query_as(
                    "SELECT u.resource_type, u.resource_id FROM resource_tokens t
                     JOIN resources u ON u.source_id = t.source_id
                          AND u.resource_type = t.resource_type AND u.resource_id = t.resource_id
                     WHERE t.person_id = ? AND t.kind = 'ref' AND t.value = ? AND t.source_id = ?
                       AND u.sort_title IS NULL",
                )
                .bind(self.person_id)
                .bind(format!("Medication/{}", r.resource_id))
                .bind(self.source_id)
                .fetch_all(&mut *self.tx)
                .await?;
                for (resource_type, resource_id) in untitled {
                    if MEDICATION_USES.contains(&resource_type.as_str()) {
                        self.set_title(&resource_type, &resource_id, name).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn set_title(
        &mut self,
        resource_type: &str,
        resource_id: &str,
        title: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE resources SET sort_title = ?
             WHERE source_id = ? AND resource_type = ? AND resource_id = ?",
        )
        .bind(title)
        .bind(self.source_id)
        .bind(resource_type)
        .bind(resource_id)
        .execute(&mut *self.tx)
        .await?;
        set_search_title(
            &mut self.tx,
            self.source_id,
            resource_type,
            resource_id,
            title,
        )
        .await
    }

    /// The transaction, for what must be written with the records (the job's outcome).
    pub fn connection(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }

    /// Bytes of record text the current person has stored, this transaction's writes included.
    pub async fn person_bytes(&mut self) -> sqlx::Result<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(LENGTH(CAST(json AS BLOB))), 0) FROM resources WHERE person_id = ?",
        )
        .bind(self.person_id)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(bytes.max(0) as u64)
    }

    /// Saves a successful run's plugin state with its records.
    pub async fn save_plugin_state(
        &mut self,
        state: &crate::plugins::PluginState,
    ) -> sqlx::Result<()> {
        crate::plugins::state::save(&mut self.tx, self.source_id, state).await
    }

    pub async fn commit(self) -> sqlx::Result<Counts> {
        self.tx.commit().await?;
        Ok(self.counts)
    }

    /// Drops everything written (also what happens if the writer is dropped).
    pub async fn rollback(self) -> sqlx::Result<()> {
        self.tx.rollback().await
    }
}

/// Derives again the title, date, tokens, observation keys and search text of the records a
/// migration listed in `rederive_pending`, because the code that derives them from the JSON
/// changed and a migration cannot run it. The JSON itself is kept as stored. Runs at start-up,
/// one source and at most 500 records per transaction, until the list is empty.
pub async fn rederive_pending(db: &SqlitePool) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let Some((source_id, person_id)): Option<(i64, i64)> = sqlx::query_as(
            "SELECT p.source_id, s.person_id FROM rederive_pending p
             JOIN sources s ON s.id = p.source_id LIMIT 1",
        )
        .fetch_optional(db)
        .await?
        else {
            // Rows of sources deleted since the migration have nothing left to do.
            sqlx::query("DELETE FROM rederive_pending")
                .execute(db)
                .await?;
            return Ok(total);
        };
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT p.resource_type, p.resource_id, r.json FROM rederive_pending p
             LEFT JOIN resources r ON r.source_id = p.source_id
                  AND r.resource_type = p.resource_type AND r.resource_id = p.resource_id
             WHERE p.source_id = ? LIMIT 500",
        )
        .bind(source_id)
        .fetch_all(db)
        .await?;
        // Stored JSON was prepared once already, so it prepares again to the same identity. A
        // row that no longer prepares keeps what was derived before; its JSON is untouched.
        let stored: Vec<&str> = rows.iter().filter_map(|(_, _, j)| j.as_deref()).collect();
        let prepared: Vec<Prepared> = stored
            .iter()
            .filter_map(|json| super::prepare(json).ok())
            .collect();
        if prepared.len() < stored.len() {
            tracing::warn!(
                source_id,
                kept = stored.len() - prepared.len(),
                "stored records that no longer read as FHIR keep their earlier titles and codes"
            );
        }
        let mut writer = Writer::begin(db, person_id, source_id).await?;
        writer.rederive = true;
        writer.write(&prepared).await?;
        let mut done =
            QueryBuilder::<Sqlite>::new("DELETE FROM rederive_pending WHERE source_id = ");
        done.push_bind(source_id)
            .push(" AND (resource_type, resource_id) IN (");
        let mut list = done.separated(", ");
        for (resource_type, resource_id, _) in &rows {
            list.push("(")
                .push_bind_unseparated(resource_type)
                .push_unseparated(", ")
                .push_bind_unseparated(resource_id)
                .push_unseparated(")");
        }
        done.push(")");
        done.build().execute(&mut *writer.tx).await?;
        writer.commit().await?;
        total += prepared.len() as u64;
    }
}

/// One row of `observation_keys`.
struct KeyRow<'a> {
    pub resource_id: &'a str,
    pub key: &'a str,
    pub sort_date: Option<&'a str>,
    pub is_lab: bool,
}

/// Adds what observations measured to `observation_keys`.
async fn insert_observation_keys(
    tx: &mut Transaction<'static, Sqlite>,
    person_id: i64,
    source_id: i64,
    rows: &[KeyRow<'_>],
) -> sqlx::Result<()> {
    for chunk in rows.chunks(2000) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO observation_keys (person_id, source_id, resource_id, key, sort_date, is_lab) ",
        );
        insert.push_values(chunk, |mut row, r| {
            row.push_bind(person_id)
                .push_bind(source_id)
                .push_bind(r.resource_id)
                .push_bind(r.key)
                .push_bind(r.sort_date)
                .push_bind(r.is_lab);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Writes the search text of resources just inserted or changed in `conn` (the ingest
/// transaction). Re-indexing a resource replaces its text, so repeated imports never duplicate.
async fn write_search_text(
    conn: &mut SqliteConnection,
    person_id: i64,
    source_id: i64,
    docs: &[Indexed<'_>],
) -> sqlx::Result<()> {
    // A batch may name one resource twice (a changed copy later in a Bundle): the last one wins.
    let mut seen = HashSet::new();
    let mut unique: Vec<&Indexed<'_>> = docs
        .iter()
        .rev()
        .filter(|(t, id, _)| seen.insert((*t, *id)))
        .collect();
    unique.reverse();
    // Five bound values per row; SQLite allows 32766 per statement.
    for chunk in unique.chunks(1000) {
        let mut upsert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO search_docs (person_id, source_id, resource_type, resource_id) ",
        );
        upsert.push_values(chunk, |mut row, (t, id, _)| {
            row.push_bind(person_id)
                .push_bind(source_id)
                .push_bind(*t)
                .push_bind(*id);
        });
        upsert.push(
            " ON CONFLICT (source_id, resource_type, resource_id)
              DO UPDATE SET person_id = excluded.person_id
              RETURNING id, resource_type, resource_id",
        );
        let ids: Vec<(i64, String, String)> = upsert.build_query_as().fetch_all(&mut *conn).await?;
        let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM search_fts WHERE rowid IN (");
        let mut list = delete.separated(", ");
        for (id, _, _) in &ids {
            list.push_bind(*id);
        }
        delete.push(")");
        delete.build().execute(&mut *conn).await?;
        let docs_of: HashMap<(&str, &str), &Document> =
            chunk.iter().map(|(t, id, doc)| ((*t, *id), *doc)).collect();
        let rows: Vec<(i64, &Document)> = ids
            .iter()
            .filter_map(|(rowid, t, id)| {
                docs_of
                    .get(&(t.as_str(), id.as_str()))
                    .map(|doc| (*rowid, *doc))
            })
            .collect();
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO search_fts (rowid, title, codes, notes, body) ",
        );
        insert.push_values(&rows, |mut row, (rowid, doc)| {
            row.push_bind(*rowid)
                .push_bind(&doc.title)
                .push_bind(&doc.codes)
                .push_bind(&doc.notes)
                .push_bind(&doc.body);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Replaces the title in a resource's search text, for a title learnt after it was indexed
/// (a medicine named by a Medication stored later).
async fn set_search_title(
    conn: &mut SqliteConnection,
    source_id: i64,
    resource_type: &str,
    resource_id: &str,
    title: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE search_fts SET title = ? WHERE rowid = (SELECT id FROM search_docs
         WHERE source_id = ? AND resource_type = ? AND resource_id = ?)",
    )
    .bind(search_text::clean(title))
    .bind(source_id)
    .bind(resource_type)
    .bind(resource_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Indexes every resource that has no search text yet: all of them the first time a database
/// from before search starts, and none afterwards (one indexed anti-join to find out). Runs in
/// batches, each its own transaction, so a large record does not hold the write lock for long.
pub async fn index_missing(db: &SqlitePool) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
            "SELECT r.person_id, r.source_id, r.resource_type, r.resource_id, r.json
             FROM resources r
             WHERE NOT EXISTS (SELECT 1 FROM search_docs d WHERE d.source_id = r.source_id
                   AND d.resource_type = r.resource_type AND d.resource_id = r.resource_id)
             LIMIT 500",
        )
        .fetch_all(db)
        .await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let docs: Vec<Document> = rows
            .iter()
            .map(|(_, _, _, _, json)| {
                serde_json::from_str::<Value>(json)
                    .map(|v| index::search_document(&v))
                    .unwrap_or_default()
            })
            .collect();
        let mut tx = db.begin().await?;
        // A batch mixes sources; group so each write has one owner and source.
        let mut groups: Vec<((i64, i64), Vec<Indexed<'_>>)> = Vec::new();
        for (row, doc) in rows.iter().zip(&docs) {
            let key = (row.0, row.1);
            let entry = (row.2.as_str(), row.3.as_str(), doc);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(entry),
                None => groups.push((key, vec![entry])),
            }
        }
        for ((person_id, source_id), list) in &groups {
            write_search_text(&mut tx, *person_id, *source_id, list).await?;
        }
        tx.commit().await?;
        total += rows.len() as u64;
    }
}

/// Fills `observation_keys` for records stored before it existed, once (at start-up).
pub async fn backfill_observation_keys(db: &SqlitePool) -> sqlx::Result<u64> {
    let done: Option<i64> = sqlx::query_scalar("SELECT done_at FROM observation_keys_backfill")
        .fetch_optional(db)
        .await?;
    if done.is_some() {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    let rows: Vec<(i64, i64, String, Option<String>, String)> = sqlx::query_as(
        "SELECT person_id, source_id, resource_id, sort_date, json FROM resources
         WHERE resource_type = 'Observation'",
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM observation_keys")
        .execute(&mut *tx)
        .await?;
    let mut added = 0;
    for (person_id, source_id, resource_id, sort_date, json) in &rows {
        let keys = serde_json::from_str::<Value>(json)
            .map(|v| index::observation_keys(&v))
            .unwrap_or_default();
        let key_rows: Vec<KeyRow<'_>> = keys
            .iter()
            .map(|(key, is_lab)| KeyRow {
                resource_id,
                key,
                sort_date: sort_date.as_deref(),
                is_lab: *is_lab,
            })
            .collect();
        insert_observation_keys(&mut tx, *person_id, *source_id, &key_rows).await?;
        added += key_rows.len() as u64;
    }
    sqlx::query("INSERT INTO observation_keys_backfill (done_at) VALUES (?)")
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(added)
}
