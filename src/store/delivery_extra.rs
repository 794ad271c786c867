//! Delivery attempts beyond the outcome that moves a notice: a channel that
//! turned out not to reach the recipient (the notice goes on to the next
//! channel, so its state does not change), and the attempts of one notice.

use anyhow::Result;
use sqlx::Row;

use super::{Db, on_pool};

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
    pub async fn record_unreachable(&self, notice_id: &str, channel: &str, reason: &str, now_ms: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO deliveries (notice_id, channel, attempted_at, outcome, provider_id, error) \
                 VALUES ($1, $2, $3, 'unreachable', NULL, $4)",
            )
            .bind(notice_id)
            .bind(channel)
            .bind(now_ms)
            .bind(reason)
            .execute(pool)
            .await?;
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
