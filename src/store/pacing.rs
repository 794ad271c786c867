//! The outbox's pacing: the other due notices of people in a claimed batch
//! (so a digest gathers all of a person's), a digest's members fixed at
//! claim, a person's recent sends for a frequency cap, and the spreading of
//! a bulk wave over the sending window.

use anyhow::Result;
use sqlx::{QueryBuilder, Row};

use super::outbox::{CLAIM_RETURNING, claimed_from_row};
use super::{ClaimedNotice, Db, on_pool, statement_chunks};

impl Db {
    /// Claims, for `lease_ms`, the other due notices of these recipients that
    /// could join a digest (not urgent, no legal effect).
    pub async fn claim_digest_siblings(
        &self,
        recipients: &[String],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedNotice>> {
        let mut out = Vec::new();
        let lock = if matches!(self, Db::Postgres(_)) { " FOR UPDATE SKIP LOCKED" } else { "" };
        for chunk in statement_chunks(recipients, 1) {
            on_pool!(self, pool => {
                let mut qb = QueryBuilder::new("UPDATE notices SET state = 'sending', attempts = attempts + 1, lease_until = ");
                qb.push_bind(now_ms + lease_ms);
                qb.push(" WHERE id IN (SELECT id FROM notices WHERE state = 'pending' AND priority = 0 AND available_at <= ");
                qb.push_bind(now_ms);
                qb.push(" AND recipient IN (");
                let mut sep = qb.separated(", ");
                for r in chunk {
                    sep.push_bind(r.clone());
                }
                qb.push(")");
                qb.push(lock);
                qb.push(")");
                qb.push(CLAIM_RETURNING);
                for r in qb.build().fetch_all(pool).await? {
                    out.push(claimed_from_row(&r)?);
                }
            });
        }
        Ok(out)
    }

    /// Records that `members` go out as the digest `digest_id`, before it is
    /// sent, so that a resend after a crash gathers the same ones under the same id.
    pub async fn fix_digest(&self, digest_id: &str, members: &[String]) -> Result<()> {
        on_pool!(self, pool => {
            let mut qb = QueryBuilder::new("UPDATE notices SET digest_id = ");
            qb.push_bind(digest_id.to_string());
            qb.push(" WHERE id IN (");
            let mut sep = qb.separated(", ");
            for m in members {
                sep.push_bind(m.clone());
            }
            qb.push(")");
            qb.build().execute(pool).await?;
        });
        Ok(())
    }

    /// When each message for `recipient` under `purpose` went out since
    /// `since_ms`, oldest first (a digest counts once).
    pub async fn recent_sends(&self, recipient: &str, purpose: &str, since_ms: i64) -> Result<Vec<i64>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT MIN(sent_at) AS at FROM notices WHERE recipient = $1 AND state = 'sent' AND purpose = $2 \
                 AND sent_at > $3 GROUP BY COALESCE(digest_id, id) ORDER BY 1",
            )
            .bind(recipient)
            .bind(purpose)
            .bind(since_ms)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| r.try_get::<i64, _>("at")).collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// Spreads the non-urgent notices due at `now_ms` when they are more
    /// than `threshold`, or when an earlier wave is still draining: in due
    /// order, each gets the slot `slots` gives for the one before it (the
    /// first: for the wave's start, the later of now and the last wave's
    /// end). Returns how many were moved.
    pub async fn stagger_due(
        &self,
        now_ms: i64,
        threshold: usize,
        mut slots: impl FnMut(i64) -> i64 + Send,
    ) -> Result<usize> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // One wave at a time across processes: PostgreSQL locks the tail row, SQLite has one writer.
            let lock = if matches!(self, Db::Postgres(_)) { " FOR UPDATE" } else { "" };
            sqlx::query("INSERT INTO stagger (id, tail_at) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
                .execute(&mut *tx)
                .await?;
            let tail: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT tail_at FROM stagger WHERE id = 1{lock}")))
                .fetch_one(&mut *tx)
                .await?
                .try_get("tail_at")?;
            let due: Vec<String> = sqlx::query(
                "SELECT id FROM notices WHERE state = 'pending' AND priority = 0 AND slotted = 0 AND available_at <= $1 \
                 ORDER BY available_at, id",
            )
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
            if due.is_empty() || (due.len() <= threshold && tail <= now_ms) {
                return Ok(0);
            }
            // `slots` is called with the wave's start, then with each slot given;
            // the last call's answer is the next free slot, where the next wave starts.
            let mut at = tail.max(now_ms);
            let mut moved: Vec<(String, i64)> = Vec::with_capacity(due.len());
            for id in due {
                at = slots(at);
                moved.push((id, at));
            }
            let at = slots(at);
            for chunk in statement_chunks(&moved, 3) {
                let mut qb = QueryBuilder::new("UPDATE notices SET slotted = 1, available_at = CASE id");
                for (id, at) in chunk {
                    qb.push(" WHEN ").push_bind(id.clone()).push(" THEN ").push_bind(*at);
                }
                qb.push(" END WHERE id IN (");
                let mut sep = qb.separated(", ");
                for (id, _) in chunk {
                    sep.push_bind(id.clone());
                }
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE stagger SET tail_at = $1 WHERE id = 1").bind(at).execute(&mut *tx).await?;
            tx.commit().await?;
            moved.len()
        }))
    }
}

impl Db {
    /// Notices waiting to be sent that are due by `now_ms` (for backpressure).
    pub async fn due_notice_count(&self, now_ms: i64) -> Result<i64> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM notices WHERE state = 'pending' AND available_at <= $1")
                .bind(now_ms)
                .fetch_one(pool)
                .await?
        }))
    }
}
