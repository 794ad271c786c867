//! What `rules simulate` reads from its throw-away store: the notices that
//! come due as virtual time moves (taken once each), and what was withdrawn
//! or dropped on the way.

use anyhow::Result;
use futures_util::TryStreamExt;
use sqlx::Row;

use super::cases::{NOTICE_VIEW_COLUMNS, notice_view_from_row};
use super::{Db, NoticeView, on_pool};
use crate::engine::cases::{PlanEntry, StepState};

/// A timed step that did not run, and why.
#[derive(Clone, Debug)]
pub struct EndedStep {
    /// Its case.
    pub case_id: String,
    /// Life-situation id.
    pub life_situation: String,
    /// Definition version.
    pub version: i64,
    /// The case's subject.
    pub subject: String,
    /// The step.
    pub step: String,
    /// Its plan entry (skipped or cancelled, with the reason).
    pub plan: PlanEntry,
}

/// Notices not taken yet that may go out by `$1`. Spelled as an OR of the
/// two states, not `IN`, so that SQLite reads each from its partial index
/// (`notices_available`, `notices_shadow_available`) instead of scanning
/// every notice ever made at each step of virtual time.
const DUE_UNTAKEN: &str = "((state = 'pending' AND available_at <= $1) OR (state = 'shadow' AND available_at <= $1))";

impl Db {
    /// Takes every notice (pending, or of a shadow situation) that may go out
    /// by `now_ms`, and marks it sent without sending, so each is taken once
    /// and a case that ends later does not withdraw it.
    pub async fn take_due_notices(&self, now_ms: i64) -> Result<Vec<NoticeView>> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {NOTICE_VIEW_COLUMNS} FROM notices WHERE {DUE_UNTAKEN} ORDER BY available_at, id"
            )))
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE notices SET state = 'sent', last_error = 'not sent: simulation' WHERE {DUE_UNTAKEN}"
            )))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            rows.iter().map(notice_view_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Notices withdrawn before they went out, due in `[from_ms, to_ms]`, in due order.
    pub async fn cancelled_notices(&self, from_ms: i64, to_ms: i64) -> Result<Vec<NoticeView>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {NOTICE_VIEW_COLUMNS} FROM notices WHERE state = 'cancelled' AND due_at >= $1 AND due_at <= $2 \
                 ORDER BY due_at, id"
            )))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?;
            rows.iter().map(notice_view_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Streams every skipped or cancelled timed step due in `[from_ms, to_ms]`, case by case.
    pub async fn for_each_ended_step(&self, from_ms: i64, to_ms: i64, mut f: impl FnMut(EndedStep)) -> Result<()> {
        on_pool!(self, pool => {
            let mut rows = sqlx::query("SELECT id, life_situation, version, subject, plan FROM cases ORDER BY id")
                .fetch(pool);
            while let Some(r) = rows.try_next().await? {
                let plan: String = r.try_get("plan")?;
                if plan.is_empty() {
                    continue;
                }
                let plan: std::collections::BTreeMap<String, PlanEntry> = serde_json::from_str(&plan)?;
                for (step, p) in plan {
                    if matches!(p.state, StepState::Skipped | StepState::Cancelled) && p.due >= from_ms && p.due <= to_ms {
                        f(EndedStep {
                            case_id: r.try_get("id")?,
                            life_situation: r.try_get("life_situation")?,
                            version: r.try_get("version")?,
                            subject: r.try_get("subject")?,
                            step,
                            plan: p,
                        });
                    }
                }
            }
        });
        Ok(())
    }

    /// Rule errors recorded: how many, and the first `sample` details.
    pub async fn rule_errors(&self, sample: i64) -> Result<(i64, Vec<String>)> {
        Ok(on_pool!(self, pool => {
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM event_outcomes WHERE outcome = 'error'")
                .fetch_one(pool)
                .await?
                .try_get("n")?;
            let rows = sqlx::query("SELECT detail FROM event_outcomes WHERE outcome = 'error' ORDER BY id LIMIT $1")
                .bind(sample)
                .fetch_all(pool)
                .await?;
            (n, rows.iter().map(|r| r.try_get("detail")).collect::<Result<Vec<String>, _>>()?)
        }))
    }
}
