//! What `rules simulate` reads from its throw-away store: the notices that
//! come due as virtual time moves (taken once each), and what was withdrawn
//! or dropped on the way.

use anyhow::Result;
use futures_util::TryStreamExt;
use sqlx::Row;

use super::{Db, on_pool};
use crate::engine::cases::{PlanEntry, StepState};

/// A notice as the simulation reports it.
#[derive(Clone, Debug)]
pub struct SimNotice {
    /// Notice id (stable across rule versions: case key, step, due time, recipient).
    pub id: String,
    /// Its case.
    pub case_id: String,
    /// Life-situation id.
    pub life_situation: String,
    /// Definition version.
    pub version: i64,
    /// Step that made it.
    pub step: String,
    /// Recipient's code.
    pub recipient: String,
    /// Purpose it serves.
    pub purpose: String,
    /// Template name.
    pub template: String,
    /// When it was due (ms).
    pub due_at: i64,
    /// When it could first go out (ms).
    pub available_at: i64,
    /// `pending`, `shadow` or `cancelled`.
    pub state: String,
    /// Why it was cancelled.
    pub last_error: Option<String>,
}

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

const SIM_COLUMNS: &str =
    "id, case_id, life_situation, version, step, recipient, purpose, template, due_at, available_at, state, last_error";

fn sim_from_row<R: Row>(r: &R) -> Result<SimNotice>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SimNotice {
        id: r.try_get("id")?,
        case_id: r.try_get("case_id")?,
        life_situation: r.try_get("life_situation")?,
        version: r.try_get("version")?,
        step: r.try_get("step")?,
        recipient: r.try_get("recipient")?,
        purpose: r.try_get("purpose")?,
        template: r.try_get("template")?,
        due_at: r.try_get("due_at")?,
        available_at: r.try_get("available_at")?,
        state: r.try_get("state")?,
        last_error: r.try_get("last_error")?,
    })
}

impl Db {
    /// Takes every notice (pending, or of a shadow situation) that may go out
    /// by `now_ms`, and marks it sent without sending, so each is taken once
    /// and a case that ends later does not withdraw it.
    pub async fn take_due_notices(&self, now_ms: i64) -> Result<Vec<SimNotice>> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SIM_COLUMNS} FROM notices WHERE state IN ('pending', 'shadow') AND available_at <= $1 \
                 ORDER BY available_at, id"
            )))
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE notices SET state = 'sent', last_error = 'not sent: simulation' \
                 WHERE state IN ('pending', 'shadow') AND available_at <= $1",
            )
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            rows.iter().map(sim_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Notices withdrawn before they went out, due in `[from_ms, to_ms]`, in due order.
    pub async fn cancelled_notices(&self, from_ms: i64, to_ms: i64) -> Result<Vec<SimNotice>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SIM_COLUMNS} FROM notices WHERE state = 'cancelled' AND due_at >= $1 AND due_at <= $2 \
                 ORDER BY due_at, id"
            )))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?;
            rows.iter().map(sim_from_row).collect::<Result<Vec<_>>>()?
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
