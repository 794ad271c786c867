//! API keys and the agency API's group commit.

use std::collections::HashMap;

use anyhow::{Context, Result};
use sqlx::Row;

use super::events::IngestRows;
use super::reader::Statement;
use super::writer::{Job, Tx};
use super::{Db, NewQuarantine, on_pool};
use crate::events::ValidEvent;

/// A stored API key, without its secret (only the secret's hash is kept).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRow {
    /// The key's public part, the `ID` of `keys revoke ID`.
    pub id: String,
    /// SHA-256 of the whole key, hex.
    #[serde(skip)]
    pub hash: String,
    /// `agency` or `staff`.
    pub role: String,
    /// The agency (or staff member) it was issued to.
    pub owner: String,
    /// Sources it may send events for.
    pub sources: Vec<String>,
    /// Event types it may send.
    pub types: Vec<String>,
    /// When it was created, ms since the epoch.
    pub created_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Requests authenticated with it (flushed with the API's commits).
    pub uses: i64,
    /// When it was last used, ms since the epoch.
    pub last_used_at: Option<i64>,
}

/// Where one event of a group commit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its seq in the event log (the first copy's, for a duplicate).
    pub seq: i64,
    /// Whether this commit stored it (false: it was already in the log).
    pub new: bool,
}

const KEY_COLUMNS: &str = "id, hash, role, owner, sources, types, created_at, revoked_at, uses, last_used_at";

fn key_from_row<R: Row>(r: &R) -> Result<ApiKeyRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let list = |col: &str| -> Result<Vec<String>> {
        let text: String = r.try_get(col)?;
        serde_json::from_str(&text).with_context(|| format!("api_keys.{col} is not a JSON list"))
    };
    Ok(ApiKeyRow {
        id: r.try_get("id")?,
        hash: r.try_get("hash")?,
        role: r.try_get("role")?,
        owner: r.try_get("owner")?,
        sources: list("sources")?,
        types: list("types")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
        uses: r.try_get("uses")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

impl Db {
    /// The gauges `/metrics` reads from the store at each scrape.
    pub async fn metric_gauges(&self) -> Result<crate::metrics::StoreGauges> {
        let mut g = crate::metrics::StoreGauges {
            timer_backlog: self.pending_timer_count().await?,
            events_pending: self.pending_event_count().await?,
            ..Default::default()
        };
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT state, COALESCE(channel, '') AS channel, COUNT(*) AS n FROM notices GROUP BY state, channel",
            )
            .fetch_all(pool)
            .await?;
            for r in rows {
                g.notices.push((r.try_get("state")?, r.try_get("channel")?, r.try_get("n")?));
            }
            g.quarantine_held = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM quarantine WHERE state = 'held'")
                .fetch_one(pool)
                .await?;
        });
        g.outbox_depth = g.notices.iter().filter(|(s, _, _)| s == "pending" || s == "sending").map(|(_, _, n)| n).sum();
        Ok(g)
    }

    /// Events in the log from `source` (for checks that none was lost or doubled).
    pub async fn event_count_of(&self, source: &str) -> Result<i64> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events WHERE source = $1")
                .bind(source)
                .fetch_one(pool)
                .await?
        }))
    }

    /// Stores a new key (its hash, never the key).
    pub async fn create_api_key(&self, k: &ApiKeyRow) -> Result<()> {
        let sources = serde_json::to_string(&k.sources)?;
        let types = serde_json::to_string(&k.types)?;
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO api_keys (id, hash, role, owner, sources, types, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&k.id)
            .bind(&k.hash)
            .bind(&k.role)
            .bind(&k.owner)
            .bind(sources)
            .bind(types)
            .bind(k.created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// One key by its public id.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        Ok(on_pool!(self, pool => {
            match sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await? {
                Some(r) => Some(key_from_row(&r)?),
                None => None,
            }
        }))
    }

    /// Every key, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id");
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
            rows.iter().map(key_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Revokes a key; false if there is no such key or it was revoked already.
    pub async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    /// The agency API's group commit: the events and quarantined records of
    /// every request waiting, and the keys' use counts since the last commit,
    /// in one transaction. Answers each event's seq, a duplicate's too (the
    /// sender is told which event it repeats). On SQLite the commit is synced
    /// to disk (`synchronous = FULL` for this transaction only): an agency
    /// may forget an event once it has its 202, so a power cut must not
    /// lose it — one fsync shared by the whole group.
    pub async fn ingest_api(
        &self,
        events: &[ValidEvent],
        quarantine: &[NewQuarantine],
        uses: &[(String, u64)],
        now_ms: i64,
    ) -> Result<Vec<Stored>> {
        let rows = IngestRows::new(events, quarantine, now_ms);
        let keys: Vec<(String, String)> = events.iter().map(|e| (e.source.clone(), e.external_id.clone())).collect();
        let uses: Vec<Statement> = uses
            .iter()
            .map(|(id, n)| {
                Statement::new(
                    "UPDATE api_keys SET uses = uses + $2, last_used_at = $3 WHERE id = $1",
                    vec![id.as_str().into(), (*n as i64).into(), now_ms.into()],
                )
            })
            .collect();
        let group = ApiGroup { rows, keys, uses, tally: crate::metrics::IngestTally::default() };
        // Synced: see above.
        let (seqs, known, mut tally) = self.transact(true, group).await?;
        let mut out = Vec::with_capacity(events.len());
        for (e, s) in events.iter().zip(seqs) {
            let stored = match s {
                Some(seq) => Stored { seq, new: true },
                None => {
                    let seq = known
                        .get(&(e.source.clone(), e.external_id.clone()))
                        .copied()
                        .context("an event neither stored nor found in the log")?;
                    Stored { seq, new: false }
                }
            };
            tally.event(&e.source, stored.new);
            out.push(stored);
        }
        tally.count();
        Ok(out)
    }
}

/// One group commit of the agency API, ready to write on either database.
struct ApiGroup {
    rows: IngestRows,
    /// Each event's (source, external id).
    keys: Vec<(String, String)>,
    /// The keys' use counts.
    uses: Vec<Statement>,
    tally: crate::metrics::IngestTally,
}

/// Each event's seq (`None` for one already stored), the seqs of those
/// already stored by key, and the counts.
type GroupOut = (Vec<Option<i64>>, HashMap<(String, String), i64>, crate::metrics::IngestTally);

impl Job for ApiGroup {
    type Out = GroupOut;

    async fn run(mut self, tx: &mut impl Tx) -> Result<GroupOut> {
        let seqs = self.rows.write(tx, &mut self.tally).await?;
        // Duplicates are rare (a retry, a batch sent again); their seqs are
        // read per source with one IN list per chunk.
        let mut missing: HashMap<&str, Vec<String>> = HashMap::new();
        for ((source, id), s) in self.keys.iter().zip(&seqs) {
            if s.is_none() {
                missing.entry(source.as_str()).or_default().push(id.clone());
            }
        }
        let mut known = HashMap::new();
        for (source, ids) in missing {
            let reads = Statement::in_list_after(
                "SELECT seq, external_id FROM events WHERE source = $1 AND external_id",
                &[source.into()],
                &ids,
                "",
            );
            for read in reads {
                for (seq, id) in tx.query(&read, |r| Ok((r.int("seq")?, r.text("external_id")?))).await? {
                    known.insert((source.to_string(), id), seq);
                }
            }
        }
        for u in &self.uses {
            tx.execute(u).await?;
        }
        Ok((seqs, known, self.tally))
    }
}
