//! Delivery attempts beyond the outcome that moves a notice: a channel that
//! turned out not to reach the recipient (the notice goes on to the next
//! channel, so its state does not change), and the attempts of one notice.

use anyhow::Result;
use sqlx::Row;

use super::audit::append_audit;
use super::{Db, on_pool};
use crate::audit::trace::DeliveryTrace;

/// One recorded delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRow {
    /// `eaddress`, `email` or `sms`.
    pub channel: String,
    /// `sent`, `retry`, `dead`, `skipped` or `unreachable`.
    pub outcome: String,
    /// The gateway's id of the message, when sent.
    pub provider_id: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

impl Db {
    /// Records that `channel` did not reach the notice's recipient; the notice keeps its state.
    pub async fn record_unreachable(
        &self,
        notice_id: &str,
        channel: &str,
        reason: &str,
        now_ms: i64,
        trace: &DeliveryTrace,
    ) -> Result<()> {
        let entry = trace.entry("unreachable", Some(channel), Some(reason), now_ms);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO deliveries (notice_id, channel, attempted_at, outcome, provider_id, error) \
                 VALUES ($1, $2, $3, 'unreachable', NULL, $4)",
            )
            .bind(notice_id)
            .bind(channel)
            .bind(now_ms)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            let lane = append_audit!(tx, trace.audit(), vec![entry], now_ms);
            tx.commit().await?;
            if let Some(l) = lane {
                trace.audit().give_back(l);
            }
        });
        Ok(())
    }

    /// Every attempt recorded for a notice, oldest first.
    pub async fn attempts(&self, notice_id: &str) -> Result<Vec<AttemptRow>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT channel, outcome, provider_id, error FROM deliveries WHERE notice_id = $1 ORDER BY id",
            )
            .bind(notice_id)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(AttemptRow {
                        channel: r.try_get("channel")?,
                        outcome: r.try_get("outcome")?,
                        provider_id: r.try_get("provider_id")?,
                        error: r.try_get("error")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }))
    }
}

/// What a gateway said of a message after accepting it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReceiptRow {
    /// The notice.
    pub notice_id: String,
    /// `sms` or `eaddress`.
    pub channel: String,
    /// The gateway's id of the message.
    pub provider_id: Option<String>,
    /// `delivered`, `failed`, `read`, …
    pub status: String,
    /// The gateway's error or remark.
    pub detail: Option<String>,
}

impl Db {
    /// Records a receipt; a `failed` one also dead-letters a notice that was
    /// sent, with the gateway's reason, so an operator sees and can replay it.
    /// A digest's id records it for every member. Returns false when no
    /// notice or digest has that id.
    pub async fn record_receipt(&self, r: &ReceiptRow, now_ms: i64) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let ids: Vec<String> = sqlx::query("SELECT id FROM notices WHERE id = $1 OR digest_id = $1")
                .bind(&r.notice_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get("id"))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Ok(false);
            }
            for id in &ids {
                sqlx::query(
                    "INSERT INTO receipts (notice_id, channel, provider_id, status, detail, at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(&r.channel)
                .bind(&r.provider_id)
                .bind(&r.status)
                .bind(&r.detail)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                if r.status == "failed" {
                    let why = format!("{} delivery report: failed{}", r.channel, r.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default());
                    sqlx::query("UPDATE notices SET state = 'dead', last_error = $2 WHERE id = $1 AND state = 'sent'")
                        .bind(id)
                        .bind(why)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            true
        }))
    }

    /// A notice's receipts, oldest first.
    pub async fn receipts(&self, notice_id: &str) -> Result<Vec<ReceiptRow>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT notice_id, channel, provider_id, status, detail FROM receipts WHERE notice_id = $1 ORDER BY id",
            )
            .bind(notice_id)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(ReceiptRow {
                        notice_id: r.try_get("notice_id")?,
                        channel: r.try_get("channel")?,
                        provider_id: r.try_get("provider_id")?,
                        status: r.try_get("status")?,
                        detail: r.try_get("detail")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }))
    }

    /// Puts dead notices back in the queue, with a fresh count of attempts:
    /// the given ids, or every dead one. Returns the ids replayed.
    pub async fn replay_dead(&self, ids: Option<&[String]>, now_ms: i64) -> Result<Vec<String>> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query("SELECT id FROM notices WHERE state = 'dead' ORDER BY id").fetch_all(&mut *tx).await?;
            let mut replayed = Vec::new();
            for r in rows {
                let id: String = r.try_get("id")?;
                if ids.is_some_and(|want| !want.contains(&id)) {
                    continue;
                }
                sqlx::query(
                    "UPDATE notices SET state = 'pending', attempts = 0, available_at = $2, lease_until = NULL WHERE id = $1",
                )
                .bind(&id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO deliveries (notice_id, channel, attempted_at, outcome, provider_id, error) \
                     VALUES ($1, 'outbox', $2, 'replayed', NULL, 'replayed by an operator')",
                )
                .bind(&id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                replayed.push(id);
            }
            tx.commit().await?;
            replayed
        }))
    }
}

impl Db {
    /// A notice's recipient, purpose and the channel it went on, by id.
    pub async fn notice_brief(&self, id: &str) -> Result<Option<(String, String, Option<String>)>> {
        Ok(on_pool!(self, pool => {
            // A digest's id answers for its first member (they share the recipient).
            let row = sqlx::query(
                "SELECT recipient, purpose, channel FROM notices WHERE id = $1 OR digest_id = $1 ORDER BY id LIMIT 1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match row {
                None => None,
                Some(r) => Some((r.try_get("recipient")?, r.try_get("purpose")?, r.try_get("channel")?)),
            }
        }))
    }
}

impl Db {
    /// Puts a claimed notice back for `until` without counting an attempt
    /// (quiet hours), and records why.
    pub async fn defer_notice(
        &self,
        id: &str,
        channel: &str,
        until_ms: i64,
        why: &str,
        now_ms: i64,
        trace: &DeliveryTrace,
    ) -> Result<()> {
        let entry = trace.entry("deferred", Some(channel), Some(why), now_ms);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE notices SET state = CASE WHEN withdrawn IS NULL THEN 'pending' ELSE 'cancelled' END, \
                 attempts = attempts - 1, available_at = $2, lease_until = NULL, \
                 last_error = CASE WHEN withdrawn IS NULL THEN $3 ELSE withdrawn END WHERE id = $1",
            )
            .bind(id)
            .bind(until_ms)
            .bind(why)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO deliveries (notice_id, channel, attempted_at, outcome, provider_id, error) \
                 VALUES ($1, $2, $3, 'deferred', NULL, $4)",
            )
            .bind(id)
            .bind(channel)
            .bind(now_ms)
            .bind(why)
            .execute(&mut *tx)
            .await?;
            let lane = append_audit!(tx, trace.audit(), vec![entry], now_ms);
            tx.commit().await?;
            if let Some(l) = lane {
                trace.audit().give_back(l);
            }
        });
        Ok(())
    }
}

impl Db {
    /// Hands a claimed notice to its next channel after the first said "not
    /// this recipient": true, unless a withdrawal came meanwhile, in which
    /// case the notice is cancelled with its reason (a new send would start
    /// after the withdrawal's commit).
    pub async fn hand_to_next_channel(&self, id: &str) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            let r = sqlx::query(
                "UPDATE notices SET state = 'cancelled', last_error = withdrawn, lease_until = NULL \
                 WHERE id = $1 AND state = 'sending' AND withdrawn IS NOT NULL",
            )
            .bind(id)
            .execute(pool)
            .await?;
            r.rows_affected() == 0
        }))
    }
}
