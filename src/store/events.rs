//! The event log, its quarantine and the connectors' cursors.

use anyhow::Result;
use sqlx::Row;

use super::reader::{Param, Statement};
use super::writer::{Job, Rows, Tx};
use super::{Db, on_pool};
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

/// A page of validated events and quarantined records, made ready to write
/// on either database.
pub(super) struct IngestRows {
    events: Rows,
    /// Led by each record's source, which the counts go by.
    quarantine: Rows,
}

impl IngestRows {
    /// The rows of `events` and `quarantine`, received at `now_ms`.
    pub(super) fn new(events: &[ValidEvent], quarantine: &[NewQuarantine], now_ms: i64) -> IngestRows {
        let mut rows = Rows::new(
            "INSERT INTO events (source, external_id, type, subject, occurred_at, received_at, data)",
            7,
            " ON CONFLICT (source, external_id) DO NOTHING",
        );
        for e in events {
            rows.push([
                e.source.as_str().into(),
                e.external_id.as_str().into(),
                e.event_type.as_str().into(),
                e.subject.as_str().into(),
                e.occurred_at.timestamp_millis().into(),
                now_ms.into(),
                e.data.to_string().into(),
            ]);
        }
        let mut held = Rows::new(
            "INSERT INTO quarantine (source, raw_hash, location, raw, field, error, received_at)",
            7,
            " ON CONFLICT (source, raw_hash) DO NOTHING",
        );
        for q in quarantine {
            held.push([
                q.source.as_str().into(),
                raw_hash(&q.raw).into(),
                q.location.as_str().into(),
                q.raw.as_str().into(),
                q.field.clone().into(),
                q.error.as_str().into(),
                now_ms.into(),
            ]);
        }
        IngestRows { events: rows, quarantine: held }
    }

    /// Writes them in `tx`: the stored seq per event (`None` for one already
    /// in the log, or repeated within the page: the first copy takes the
    /// seq), and the quarantined records that are new counted in `tally`.
    pub(super) async fn write(
        &self,
        tx: &mut impl Tx,
        tally: &mut crate::metrics::IngestTally,
    ) -> Result<Vec<Option<i64>>> {
        let seqs = tx.insert_ids(&self.events, "seq", &["source", "external_id"]).await?;
        let held = tx.insert_ids(&self.quarantine, "id", &["source", "raw_hash"]).await?;
        for (row, id) in self.quarantine.rows().zip(held) {
            if let (Some(_), Param::Text(source)) = (id, &row[0]) {
                tally.quarantined(source);
            }
        }
        Ok(seqs)
    }
}

/// A page of a source stored with its connector's new cursor.
struct Page {
    rows: IngestRows,
    cursor: Option<Statement>,
}

impl Job for Page {
    /// The stored seq per event, and the counts.
    type Out = (Vec<Option<i64>>, crate::metrics::IngestTally);

    async fn run(self, tx: &mut impl Tx) -> Result<Self::Out> {
        let mut tally = crate::metrics::IngestTally::default();
        let seqs = self.rows.write(tx, &mut tally).await?;
        if let Some(c) = &self.cursor {
            tx.execute(c).await?;
        }
        Ok((seqs, tally))
    }
}

/// Saves a connector's cursor and clears its last error, as [`SAVE_CURSOR`].
pub(super) fn save_cursor(source: &str, cursor: &str, now_ms: i64) -> Statement {
    Statement::new(SAVE_CURSOR, vec![source.into(), cursor.into(), now_ms.into()])
}

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
        let mut counts = IngestCounts::default();
        let page = Page {
            rows: IngestRows::new(events, quarantine, now_ms),
            cursor: cursor.map(|(source, c)| save_cursor(source, c, now_ms)),
        };
        let (seqs, mut tally) = self.transact(false, page).await?;
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
