//! Following sent e-address messages until the gateway says they were read:
//! which ones are due a status question, and what the answers moved.

use anyhow::Result;
use sqlx::Row;

use super::{Db, on_pool};

/// A sent message due a status question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptPoll {
    /// The notice.
    pub notice_id: String,
    /// The gateway's id of the message.
    pub provider_id: String,
    /// How far it had got at the last answer (`accepted`, `delivered`).
    pub status: String,
    /// When it was sent (engine time).
    pub sent_at: i64,
}

/// Where a notice's receipts stand.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReceiptState {
    /// The legal served day of an e-address document (`YYYY-MM-DD`).
    pub served_on: Option<String>,
    /// `accepted`, `delivered` or `read`.
    pub status: Option<String>,
    /// When the gateway is asked next; none once read or given up.
    pub next_poll_at: Option<i64>,
}

impl Db {
    /// Takes up to `limit` messages due a status question, holding each for
    /// `lease_ms` so another worker does not ask about it at the same time.
    pub async fn claim_receipt_polls(&self, now_ms: i64, limit: i64, lease_ms: i64) -> Result<Vec<ReceiptPoll>> {
        // As with notices: PostgreSQL workers skip each other's rows, SQLite's single writer is exclusive already.
        let lock = if matches!(self, Db::Postgres(_)) { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE notices SET receipt_poll_at = $1 WHERE id IN (SELECT id FROM notices \
             WHERE receipt_poll_at IS NOT NULL AND receipt_poll_at <= $2 ORDER BY receipt_poll_at LIMIT $3{lock}) \
             RETURNING id, provider_id, receipt_status, sent_at"
        );
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now_ms + lease_ms)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(ReceiptPoll {
                        notice_id: r.try_get("id")?,
                        provider_id: r.try_get::<Option<String>, _>("provider_id")?.unwrap_or_default(),
                        status: r.try_get::<Option<String>, _>("receipt_status")?.unwrap_or_else(|| "accepted".into()),
                        sent_at: r.try_get::<Option<i64>, _>("sent_at")?.unwrap_or(now_ms),
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }))
    }

    /// Records what a status answer moved: one receipt row per new stage
    /// (`(status, detail)`), the stage reached, and the next question (none: stop).
    pub async fn record_receipt_progress(
        &self,
        poll: &ReceiptPoll,
        reached: &[(String, Option<String>)],
        next_poll_at: Option<i64>,
        now_ms: i64,
    ) -> Result<()> {
        let status = reached.last().map(|(s, _)| s.as_str()).unwrap_or(&poll.status);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (s, detail) in reached {
                sqlx::query(
                    "INSERT INTO receipts (notice_id, channel, provider_id, status, detail, at) \
                     VALUES ($1, 'eaddress', $2, $3, $4, $5)",
                )
                .bind(&poll.notice_id)
                .bind(&poll.provider_id)
                .bind(s)
                .bind(detail)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE notices SET receipt_status = $2, receipt_poll_at = $3 WHERE id = $1")
                .bind(&poll.notice_id)
                .bind(status)
                .bind(next_poll_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A notice's served day and receipt stage; none when there is no such notice.
    pub async fn receipt_state(&self, notice_id: &str) -> Result<Option<ReceiptState>> {
        Ok(on_pool!(self, pool => {
            let row = sqlx::query("SELECT served_on, receipt_status, receipt_poll_at FROM notices WHERE id = $1")
                .bind(notice_id)
                .fetch_optional(pool)
                .await?;
            match row {
                None => None,
                Some(r) => Some(ReceiptState {
                    served_on: r.try_get("served_on")?,
                    status: r.try_get("receipt_status")?,
                    next_poll_at: r.try_get("receipt_poll_at")?,
                }),
            }
        }))
    }

    /// When a notice may next be claimed; none when there is no such notice.
    pub async fn notice_available_at(&self, notice_id: &str) -> Result<Option<i64>> {
        Ok(on_pool!(self, pool => {
            sqlx::query("SELECT available_at FROM notices WHERE id = $1")
                .bind(notice_id)
                .fetch_optional(pool)
                .await?
                .map(|r| r.try_get("available_at"))
                .transpose()?
        }))
    }
}
