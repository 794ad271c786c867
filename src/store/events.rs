//! The event log, its quarantine and the connectors' cursors.

use anyhow::Result;
use sqlx::{QueryBuilder, Row};

use super::reader::{Param, Statement};
use super::{Db, on_pool, statement_chunks};
use crate::events::ValidEvent;

/// A stored registry event, as the engine reads it.
#[derive(Clone, Debug)]
pub struct EventRow {
    /// Position in the log; the engine processes in this order.
    pub seq: i64,
    /// Registry the event came from (`pmlp`, `ur`, …).
    pub source: String,
    /// The registry's id of the change, unique within the source.
    pub external_id: String,
    /// Event type, e.g. `birth.registered`.
    pub event_type: String,
    /// Canonical personal code or registration number.
    pub subject: String,
    /// When it happened, ms since the epoch.
    pub occurred_at: i64,
    /// Type-specific payload, codes canonicalised.
    pub data: serde_json::Value,
}

/// A record that failed validation, to be kept with its error.
#[derive(Clone, Debug)]
pub struct NewQuarantine {
    /// Source it came from (or claimed to).
    pub source: String,
    /// Where it was found: file and line, or feed page.
    pub location: String,
    /// The record exactly as received.
    pub raw: String,
    /// The field that is wrong, when one is.
    pub field: Option<String>,
    /// What is wrong, without personal data.
    pub error: String,
}

/// A quarantined record as listed for operators.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuarantineRow {
    /// Row id, for `quarantine retry`.
    pub id: i64,
    /// Source.
    pub source: String,
    /// Where it was found.
    pub location: String,
    /// The record as received.
    pub raw: String,
    /// The wrong field.
    pub field: Option<String>,
    /// The error.
    pub error: String,
    /// When it arrived, ms since the epoch.
    pub received_at: i64,
    /// `held`, or `released` once a retry stored it.
    pub state: String,
    /// Retries so far.
    pub attempts: i64,
}

/// What one ingest call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestCounts {
    /// New events stored.
    pub accepted: usize,
    /// Events already in the log (same source and id).
    pub duplicate: usize,
    /// Records put in quarantine.
    pub quarantined: usize,
}

impl std::ops::AddAssign for IngestCounts {
    fn add_assign(&mut self, o: Self) {
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        self.quarantined += o.quarantined;
    }
}

/// A connector's saved position and health.
#[derive(Clone, Debug, Default)]
pub struct ConnectorState {
    /// The feed's opaque cursor, `None` before the first page.
    pub cursor: Option<String>,
    /// Last error, if the last poll failed.
    pub last_error: Option<String>,
}

/// Saves a connector's cursor (`$1` source, `$2` cursor, `$3` now) and clears its last error.
pub(super) const SAVE_CURSOR: &str = "INSERT INTO connector_state (source, cursor, last_poll_at, last_error, updated_at) \
     VALUES ($1, $2, $3, NULL, $3) ON CONFLICT (source) DO UPDATE \
     SET cursor = excluded.cursor, last_poll_at = excluded.last_poll_at, \
     last_error = NULL, updated_at = excluded.updated_at";

pub(super) fn raw_hash(raw: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(raw.as_bytes()))
}

/// Inserts `$events` and `$quarantine` in the open transaction `$tx` (inside
/// an `on_pool!` block), filling `$seqs` with the stored seq per event (`None`
/// for one already in the log) and counting the quarantined rows that are new
/// in `$tally`. A macro, not a function: it is compiled once per database, like
/// the `on_pool!` block around it, where a generic function would need
/// sqlx's executor bounds spelled out.
macro_rules! insert_ingest {
    ($tx:ident, $events:expr, $quarantine:expr, $now_ms:expr, $seqs:ident, $tally:ident) => {
        let mut offset = 0;
        for chunk in statement_chunks($events, 7) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO events (source, external_id, type, subject, occurred_at, received_at, data) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.source.clone())
                    .push_bind(e.external_id.clone())
                    .push_bind(e.event_type.clone())
                    .push_bind(e.subject.clone())
                    .push_bind(e.occurred_at.timestamp_millis())
                    .push_bind($now_ms)
                    .push_bind(e.data.to_string());
            });
            qb.push(" ON CONFLICT (source, external_id) DO NOTHING RETURNING seq, source, external_id");
            let rows = qb.build().fetch_all(&mut *$tx).await?;
            let mut by_key = std::collections::HashMap::with_capacity(rows.len());
            for r in rows {
                let key: (String, String) = (r.try_get("source")?, r.try_get("external_id")?);
                by_key.insert(key, r.try_get::<i64, _>("seq")?);
            }
            for (i, e) in chunk.iter().enumerate() {
                // A change repeated within one page is stored once: the first copy takes the seq.
                $seqs[offset + i] = by_key.remove(&(e.source.clone(), e.external_id.clone()));
            }
            offset += chunk.len();
        }
        for q in $quarantine {
            let done = sqlx::query(
                "INSERT INTO quarantine (source, location, raw, raw_hash, field, error, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, raw_hash) DO NOTHING",
            )
            .bind(&q.source)
            .bind(&q.location)
            .bind(&q.raw)
            .bind(raw_hash(&q.raw))
            .bind(&q.field)
            .bind(&q.error)
            .bind($now_ms)
            .execute(&mut *$tx)
            .await?;
            if done.rows_affected() > 0 {
                $tally.quarantined(&q.source);
            }
        }
    };
}
pub(super) use insert_ingest;

impl Db {
    /// Stores validated events and quarantined records — and, for a feed, its
    /// new cursor — in one transaction. Returns the stored seq per event
    /// (`None` for a duplicate) and the counts.
    pub async fn ingest(
        &self,
        events: &[ValidEvent],
        quarantine: &[NewQuarantine],
        cursor: Option<(&str, &str)>,
        now_ms: i64,
    ) -> Result<(Vec<Option<i64>>, IngestCounts)> {
        let mut seqs: Vec<Option<i64>> = vec![None; events.len()];
        let mut counts = IngestCounts::default();
        let mut tally = crate::metrics::IngestTally::default();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_ingest!(tx, events, quarantine, now_ms, seqs, tally);
            if let Some((source, cursor)) = cursor {
                sqlx::query(SAVE_CURSOR)
                .bind(source)
                .bind(cursor)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        counts.accepted = seqs.iter().filter(|s| s.is_some()).count();
        counts.duplicate = events.len() - counts.accepted;
        counts.quarantined = tally.quarantined_total();
        for (e, seq) in events.iter().zip(&seqs) {
            tally.event(&e.source, seq.is_some());
        }
        tally.count();
        Ok((seqs, counts))
    }

    /// The oldest events the engine has not processed yet.
    pub async fn pending_events(&self, limit: usize) -> Result<Vec<EventRow>> {
        self.pending_events_after(0, limit).await
    }

    /// The oldest unprocessed events after `after_seq` (those up to it are being committed).
    pub async fn pending_events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<EventRow>> {
        let sql =
            format!("{} WHERE processed_at IS NULL AND seq > $1 ORDER BY seq LIMIT $2", super::cases::EVENT_SELECT);
        let read = Statement::new(sql, vec![Param::Int(after_seq), Param::Int(limit as i64)]);
        self.select(vec![read], super::cases::event_from_row).await
    }

    /// Number of events waiting for the engine.
    pub async fn pending_event_count(&self) -> Result<i64> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events WHERE processed_at IS NULL")
                .fetch_one(pool)
                .await?
        }))
    }

    /// A connector's cursor and last error.
    pub async fn connector_state(&self, source: &str) -> Result<ConnectorState> {
        Ok(on_pool!(self, pool => {
            let row = sqlx::query("SELECT cursor, last_error FROM connector_state WHERE source = $1")
                .bind(source)
                .fetch_optional(pool)
                .await?;
            match row {
                None => ConnectorState::default(),
                Some(r) => ConnectorState { cursor: r.try_get("cursor")?, last_error: r.try_get("last_error")? },
            }
        }))
    }

    /// Records that a poll failed, keeping the cursor where it was.
    pub async fn record_poll_error(&self, source: &str, error: &str, now_ms: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO connector_state (source, cursor, last_poll_at, last_error, updated_at) \
                 VALUES ($1, NULL, $2, $3, $2) ON CONFLICT (source) DO UPDATE \
                 SET last_poll_at = excluded.last_poll_at, last_error = excluded.last_error, \
                 updated_at = excluded.updated_at",
            )
            .bind(source)
            .bind(now_ms)
            .bind(error)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Quarantined records, newest first; `held_only` hides released ones.
    pub async fn quarantine_list(&self, held_only: bool) -> Result<Vec<QuarantineRow>> {
        let sql = if held_only {
            "SELECT id, source, location, raw, field, error, received_at, state, attempts FROM quarantine \
             WHERE state = 'held' ORDER BY id DESC"
        } else {
            "SELECT id, source, location, raw, field, error, received_at, state, attempts FROM quarantine \
             ORDER BY id DESC"
        };
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            rows.into_iter()
                .map(|r| {
                    Ok(QuarantineRow {
                        id: r.try_get("id")?,
                        source: r.try_get("source")?,
                        location: r.try_get("location")?,
                        raw: r.try_get("raw")?,
                        field: r.try_get("field")?,
                        error: r.try_get("error")?,
                        received_at: r.try_get("received_at")?,
                        state: r.try_get("state")?,
                        attempts: r.try_get("attempts")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }))
    }

    /// Marks a quarantined record released into the log as `event_seq`.
    pub async fn quarantine_release(&self, id: i64, event_seq: Option<i64>) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE quarantine SET state = 'released', attempts = attempts + 1, event_seq = $2 WHERE id = $1")
                .bind(id)
                .bind(event_seq)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records that a retry failed again, with the new error.
    pub async fn quarantine_retry_failed(&self, id: i64, field: Option<&str>, error: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE quarantine SET attempts = attempts + 1, field = $2, error = $3 WHERE id = $1")
                .bind(id)
                .bind(field)
                .bind(error)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
