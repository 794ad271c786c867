//! Register snapshots: the files a snapshot source has seen, with their
//! verdict (held back, applied, …), and the per-company fingerprints of the
//! last snapshot applied.

use std::collections::HashMap;

use anyhow::Result;
use futures_util::TryStreamExt;
use sqlx::{QueryBuilder, Row};

use super::{Db, chunk_rows, on_pool};
use crate::engine::profile::Profile;

/// A snapshot file as it arrives, before it has a row.
#[derive(Clone, Debug)]
pub struct NewSnapshot<'a> {
    /// Source name (`ur`).
    pub source: &'a str,
    /// SHA-256 of the file's bytes, hex: with the date, one row per file.
    pub sha256: &'a str,
    /// The day the file describes, `YYYY-MM-DD`.
    pub snapshot_date: &'a str,
    /// Where it came from: URL or path.
    pub origin: &'a str,
    /// Where its bytes are kept while it is checked, held or applied.
    pub file: &'a str,
    /// Size in bytes.
    pub bytes: i64,
    /// The server's `ETag`, for the next conditional GET.
    pub etag: Option<&'a str>,
    /// The server's `Last-Modified`, for the next conditional GET.
    pub last_modified: Option<&'a str>,
}

/// A snapshot as stored and listed for operators.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SnapshotRow {
    /// Row id, for `events snapshot approve`.
    pub id: i64,
    /// Source name.
    pub source: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// The day the file describes.
    pub snapshot_date: String,
    /// URL or path it came from.
    pub origin: String,
    /// Where its bytes are kept.
    pub file: String,
    /// Size in bytes.
    pub bytes: i64,
    /// `ETag` it was served with.
    pub etag: Option<String>,
    /// `Last-Modified` it was served with.
    pub last_modified: Option<String>,
    /// Whether it is (or will be applied as) the source's first snapshot, which starts nothing.
    pub baseline: bool,
    /// `checking`, `held`, `applying`, `applied`, `superseded`, `rejected` or `abandoned`.
    pub state: String,
    /// Why it was held back or rejected.
    pub reason: Option<String>,
    /// Counts from the check or the apply (rows, new, vanished, …).
    pub stats: Option<serde_json::Value>,
    /// When it arrived, ms since the epoch.
    pub received_at: i64,
    /// When an operator approved it, if one did.
    pub approved_at: Option<i64>,
    /// When it was applied.
    pub applied_at: Option<i64>,
}

/// One company's row of the last applied snapshot.
#[derive(Clone, Debug)]
pub struct CompanyPrint {
    /// Registration number.
    pub regcode: String,
    /// See `connectors::snapshot::register::fingerprint`.
    pub fingerprint: u64,
    /// Name, for the `previous` of a later rename.
    pub name: String,
    /// Address, for the `previous` of a later move.
    pub address: String,
}

const SNAPSHOT_COLS: &str = "id, source, sha256, snapshot_date, origin, file, bytes, etag, last_modified, baseline, \
                             state, reason, stats, received_at, approved_at, applied_at";

/// Reads a [`SnapshotRow`] from a row of either database (a macro: the row types differ).
macro_rules! snapshot_row {
    ($r:expr) => {{
        let r = $r;
        let stats: Option<String> = r.try_get("stats")?;
        SnapshotRow {
            id: r.try_get("id")?,
            source: r.try_get("source")?,
            sha256: r.try_get("sha256")?,
            snapshot_date: r.try_get("snapshot_date")?,
            origin: r.try_get("origin")?,
            file: r.try_get("file")?,
            bytes: r.try_get("bytes")?,
            etag: r.try_get("etag")?,
            last_modified: r.try_get("last_modified")?,
            baseline: r.try_get::<i64, _>("baseline")? != 0,
            state: r.try_get("state")?,
            reason: r.try_get("reason")?,
            stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
            received_at: r.try_get("received_at")?,
            approved_at: r.try_get("approved_at")?,
            applied_at: r.try_get("applied_at")?,
        }
    }};
}

impl Db {
    /// The row of this file (by source, content and date), created in state `checking` if new.
    /// A file that comes back from elsewhere is read from there from now on, unless applied.
    pub async fn snapshot_record(&self, s: &NewSnapshot<'_>, now_ms: i64) -> Result<SnapshotRow> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO snapshots (source, sha256, snapshot_date, origin, file, bytes, etag, last_modified, \
                 state, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'checking', $9) \
                 ON CONFLICT (source, sha256, snapshot_date) DO UPDATE SET file = excluded.file, origin = excluded.origin \
                 WHERE snapshots.state <> 'applied'",
            )
            .bind(s.source)
            .bind(s.sha256)
            .bind(s.snapshot_date)
            .bind(s.origin)
            .bind(s.file)
            .bind(s.bytes)
            .bind(s.etag)
            .bind(s.last_modified)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        let sql =
            format!("SELECT {SNAPSHOT_COLS} FROM snapshots WHERE source = $1 AND sha256 = $2 AND snapshot_date = $3");
        Ok(on_pool!(self, pool => {
            let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(s.source)
                .bind(s.sha256)
                .bind(s.snapshot_date)
                .fetch_one(pool)
                .await?;
            snapshot_row!(&r)
        }))
    }

    /// One snapshot by id.
    pub async fn snapshot(&self, id: i64) -> Result<Option<SnapshotRow>> {
        let sql = format!("SELECT {SNAPSHOT_COLS} FROM snapshots WHERE id = $1");
        Ok(on_pool!(self, pool => {
            match sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await? {
                Some(r) => Some(snapshot_row!(&r)),
                None => None,
            }
        }))
    }

    /// Snapshots, newest first: of one source or all, in some states or all.
    pub async fn snapshots(&self, source: Option<&str>, states: &[&str]) -> Result<Vec<SnapshotRow>> {
        let mut out = Vec::new();
        on_pool!(self, pool => {
            let mut qb = QueryBuilder::new(format!("SELECT {SNAPSHOT_COLS} FROM snapshots WHERE 1 = 1"));
            if let Some(s) = source {
                qb.push(" AND source = ").push_bind(s.to_string());
            }
            if !states.is_empty() {
                qb.push(" AND state IN (");
                let mut sep = qb.separated(", ");
                for s in states {
                    sep.push_bind(s.to_string());
                }
                qb.push(")");
            }
            qb.push(" ORDER BY id DESC");
            for r in qb.build().fetch_all(pool).await? {
                out.push(snapshot_row!(&r));
            }
        });
        Ok(out)
    }

    /// Whether the source has applied a snapshot before (if not, the next one is the baseline).
    pub async fn snapshot_applied_before(&self, source: &str) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM snapshots WHERE source = $1 AND state = 'applied'")
                .bind(source)
                .fetch_one(pool)
                .await? > 0
        }))
    }

    /// Holds a snapshot back (`held`), rejects it (`rejected`) or gives it up (`abandoned`), with the reason.
    pub async fn snapshot_verdict(&self, id: i64, state: &str, reason: &str, stats: &serde_json::Value) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE snapshots SET state = $2, reason = $3, stats = $4 WHERE id = $1")
                .bind(id)
                .bind(state)
                .bind(reason)
                .bind(stats.to_string())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Marks a snapshot as being applied: as the baseline or a diff, approved by an operator or not.
    pub async fn snapshot_start(&self, id: i64, baseline: bool, approved_at: Option<i64>) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE snapshots SET state = 'applying', baseline = $2, \
                 approved_at = COALESCE($3, approved_at) WHERE id = $1",
            )
            .bind(id)
            .bind(i64::from(baseline))
            .bind(approved_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a snapshot applied, older held ones superseded (returned, so their files can go),
    /// and the source's connector state as healthy at this snapshot — in one transaction.
    pub async fn snapshot_finish(
        &self,
        id: i64,
        source: &str,
        stats: &serde_json::Value,
        label: &str,
        now_ms: i64,
    ) -> Result<Vec<SnapshotRow>> {
        let superseded = self
            .snapshots(Some(source), &["held", "checking"])
            .await?
            .into_iter()
            .filter(|s| s.id < id)
            .collect::<Vec<_>>();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE snapshots SET state = 'applied', stats = $2, applied_at = $3 WHERE id = $1")
                .bind(id)
                .bind(stats.to_string())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE snapshots SET state = 'superseded', \
                 reason = COALESCE(reason || '; ', '') || 'superseded by a newer snapshot' \
                 WHERE source = $1 AND id < $2 AND state IN ('held', 'checking')",
            )
            .bind(source)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(super::events::SAVE_CURSOR)
            .bind(source)
            .bind(label)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(superseded)
    }

    /// Streams `(regcode, fingerprint, gone)` of every company the source keeps.
    pub async fn for_each_company_print(&self, source: &str, mut f: impl FnMut(&str, u64, bool)) -> Result<()> {
        on_pool!(self, pool => {
            let mut rows = sqlx::query(
                "SELECT regcode, fingerprint, gone_since FROM snapshot_companies WHERE source = $1",
            )
            .bind(source)
            .fetch(pool);
            while let Some(r) = rows.try_next().await? {
                let regcode: &str = r.try_get("regcode")?;
                let fp: i64 = r.try_get("fingerprint")?;
                let gone: Option<i64> = r.try_get("gone_since")?;
                // Stored as the same 64 bits, signed, since SQL has no unsigned integers.
                f(regcode, fp as u64, gone.is_some());
            }
        });
        Ok(())
    }

    /// The kept name and address of `regcodes` (absent ones are missing).
    pub async fn company_prints(&self, source: &str, regcodes: &[String]) -> Result<HashMap<String, (String, String)>> {
        let mut out = HashMap::with_capacity(regcodes.len());
        for chunk in regcodes.chunks(chunk_rows(1) - 1) {
            on_pool!(self, pool => {
                let mut qb = QueryBuilder::new("SELECT regcode, name, address FROM snapshot_companies WHERE source = ");
                qb.push_bind(source.to_string()).push(" AND regcode IN (");
                let mut sep = qb.separated(", ");
                for c in chunk {
                    sep.push_bind(c.clone());
                }
                qb.push(")");
                for r in qb.build().fetch_all(pool).await? {
                    out.insert(r.try_get("regcode")?, (r.try_get("name")?, r.try_get("address")?));
                }
            });
        }
        Ok(out)
    }

    /// Writes companies as the snapshot `snapshot_id` has them (present again if they had vanished),
    /// with the profiles a baseline fills, in one transaction.
    pub async fn write_company_prints(
        &self,
        source: &str,
        snapshot_id: i64,
        prints: &[CompanyPrint],
        profiles: &[Profile],
        now_ms: i64,
    ) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in prints.chunks(chunk_rows(6)) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO snapshot_companies (source, regcode, fingerprint, name, address, snapshot_id) ",
                );
                qb.push_values(chunk, |mut b, p| {
                    b.push_bind(source.to_string())
                        .push_bind(p.regcode.clone())
                        .push_bind(p.fingerprint as i64)
                        .push_bind(p.name.clone())
                        .push_bind(p.address.clone())
                        .push_bind(snapshot_id);
                });
                qb.push(
                    " ON CONFLICT (source, regcode) DO UPDATE SET fingerprint = excluded.fingerprint, \
                     name = excluded.name, address = excluded.address, gone_since = NULL, \
                     snapshot_id = excluded.snapshot_id",
                );
                qb.build().execute(&mut *tx).await?;
            }
            for chunk in profiles.chunks(chunk_rows(4)) {
                // Company profiles have no dates or parents: those columns stay NULL.
                let mut qb = QueryBuilder::new("INSERT INTO profiles (subject, kind, doc, updated_at) ");
                let docs = chunk.iter().map(serde_json::to_string).collect::<Result<Vec<_>, _>>()?;
                qb.push_values(chunk.iter().zip(docs), |mut b, (p, doc)| {
                    b.push_bind(p.subject.clone()).push_bind(p.kind.as_str()).push_bind(doc).push_bind(now_ms);
                });
                qb.push(
                    " ON CONFLICT (subject) DO UPDATE SET kind = excluded.kind, doc = excluded.doc, \
                     updated_at = excluded.updated_at",
                );
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Marks companies missing from snapshot `snapshot_id` as gone (they are kept, not forgotten).
    pub async fn mark_companies_gone(&self, source: &str, snapshot_id: i64, regcodes: &[String]) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in regcodes.chunks(chunk_rows(1) - 2) {
                let mut qb = QueryBuilder::new("UPDATE snapshot_companies SET gone_since = ");
                qb.push_bind(snapshot_id).push(" WHERE source = ").push_bind(source.to_string());
                qb.push(" AND gone_since IS NULL AND regcode IN (");
                let mut sep = qb.separated(", ");
                for c in chunk {
                    sep.push_bind(c.clone());
                }
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
