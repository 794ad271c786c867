//! Cases and what the engine reads around them: open cases an event
//! concerns, the drafts that tie an application to its case, trigger events
//! by position, and the timer index (`next_due_at`) of what is due.

use std::collections::BTreeMap;

use anyhow::Result;
use sqlx::{QueryBuilder, Row};

use super::reader::{Cells, Param, Statement};
use super::{Db, EventRow, on_pool, statement_chunks};
use crate::engine::cases::Case;

const CASE_COLUMNS: &str =
    "id, life_situation, version, subject, fact, state, trigger_seq, started_at, anchor, plan, closed_reason";

/// A draft as an event may name it: by reference, or by applicant and service.
#[derive(Clone, Debug)]
pub struct DraftLink {
    /// The draft's reference.
    pub reference: String,
    /// Its case.
    pub case_id: String,
    /// Service catalogue id.
    pub service_id: String,
    /// Applicant's code.
    pub applicant: String,
}

pub(crate) fn case_from_row(r: &dyn Cells) -> Result<Case> {
    let plan = r.text("plan")?;
    let anchor = r.opt_text("anchor")?;
    Ok(Case {
        id: r.text("id")?,
        life_situation: r.text("life_situation")?,
        version: r.int("version")?,
        subject: r.text("subject")?,
        fact: r.text("fact")?,
        state: r.text("state")?,
        trigger_seq: r.int("trigger_seq")?,
        started_at: r.int("started_at")?,
        anchor: anchor.and_then(|a| chrono::NaiveDate::parse_from_str(&a, "%Y-%m-%d").ok()),
        plan: if plan.is_empty() { BTreeMap::new() } else { serde_json::from_str(&plan)? },
        closed_reason: r.opt_text("closed_reason")?,
    })
}

/// A draft as stored, from a row with its columns.
pub(crate) fn draft_from_row<R: Row>(r: &R) -> Result<super::DraftRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(super::DraftRow {
        reference: r.try_get("ref")?,
        case_id: r.try_get("case_id")?,
        service_id: r.try_get("service_id")?,
        applicant: r.try_get("applicant")?,
        fields: serde_json::from_str(&r.try_get::<String, _>("fields")?)?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// The columns [`draft_from_row`] reads.
pub(crate) const DRAFT_COLUMNS: &str = "ref, case_id, service_id, applicant, fields, expires_at";

/// An event as stored, from a row with its columns.
pub(crate) fn event_from_row(r: &dyn Cells) -> Result<EventRow> {
    Ok(EventRow {
        seq: r.int("seq")?,
        source: r.text("source")?,
        external_id: r.text("external_id")?,
        event_type: r.text("type")?,
        subject: r.text("subject")?,
        occurred_at: r.int("occurred_at")?,
        data: serde_json::from_str(&r.text("data")?)?,
    })
}

/// The columns [`event_from_row`] reads, as a select list.
pub(crate) const EVENT_SELECT: &str = "SELECT seq, source, external_id, type, subject, occurred_at, data FROM events";

impl Db {
    /// Cases by id (absent ids are simply missing).
    pub async fn load_cases(&self, ids: &[String]) -> Result<Vec<Case>> {
        self.cases_where("id", ids).await
    }

    /// Open cases of these subjects, for events that may concern them.
    pub async fn open_cases_of(&self, subjects: &[String]) -> Result<Vec<Case>> {
        self.cases_where("subject", subjects).await
    }

    async fn cases_where(&self, column: &'static str, keys: &[String]) -> Result<Vec<Case>> {
        let head = format!("SELECT {CASE_COLUMNS} FROM cases WHERE {column}");
        let tail = if column == "subject" { " AND state = 'open'" } else { "" };
        self.select(Statement::in_list(&head, keys, tail), case_from_row).await
    }

    /// Ids of the cases due by `now_ms`, in due order, at most `limit`: the
    /// engine reads whole cases only for those the batch it is committing
    /// has not just changed (reading those again was half of what it read).
    pub async fn due_case_ids(&self, now_ms: i64, limit: i64) -> Result<Vec<String>> {
        let sql = "SELECT id FROM cases WHERE next_due_at <= $1 ORDER BY next_due_at, id LIMIT $2";
        let read = Statement::new(sql, vec![Param::Int(now_ms), Param::Int(limit)]);
        self.select(vec![read], |r| r.text("id")).await
    }

    /// The earliest pending due time of any case, for jumping a virtual clock.
    pub async fn next_due_at(&self) -> Result<Option<i64>> {
        Ok(on_pool!(self, pool => {
            sqlx::query("SELECT MIN(next_due_at) AS t FROM cases WHERE next_due_at IS NOT NULL")
                .fetch_one(pool)
                .await?
                .try_get::<Option<i64>, _>("t")?
        }))
    }

    /// The latest moment the store has recorded (an event received, a case
    /// changed, a delivery attempted), so that a virtual clock resumes there
    /// after a restart instead of going back to its configured start.
    pub async fn last_seen_ms(&self) -> Result<Option<i64>> {
        Ok(on_pool!(self, pool => {
            sqlx::query(
                "SELECT MAX(t) AS t FROM (SELECT MAX(received_at) AS t FROM events \
                 UNION ALL SELECT MAX(updated_at) FROM cases UNION ALL SELECT MAX(attempted_at) FROM deliveries) x",
            )
            .fetch_one(pool)
            .await?
            .try_get::<Option<i64>, _>("t")?
        }))
    }

    /// Number of cases with a pending timed step (the timer backlog).
    pub async fn pending_timer_count(&self) -> Result<i64> {
        Ok(on_pool!(self, pool => {
            sqlx::query("SELECT COUNT(*) AS n FROM cases WHERE next_due_at IS NOT NULL")
                .fetch_one(pool)
                .await?
                .try_get::<i64, _>("n")?
        }))
    }

    /// Drafts named by reference or held by these applicants.
    pub async fn drafts_linked(&self, refs: &[String], applicants: &[String]) -> Result<Vec<DraftLink>> {
        let mut out = Vec::new();
        for (column, keys) in [("ref", refs), ("applicant", applicants)] {
            for chunk in statement_chunks(keys, 1) {
                on_pool!(self, pool => {
                    let mut qb = QueryBuilder::new(format!(
                        "SELECT ref, case_id, service_id, applicant FROM drafts WHERE {column} IN ("
                    ));
                    let mut sep = qb.separated(", ");
                    for k in chunk {
                        sep.push_bind(k.clone());
                    }
                    qb.push(")");
                    for r in qb.build().fetch_all(pool).await? {
                        out.push(DraftLink {
                            reference: r.try_get("ref")?,
                            case_id: r.try_get("case_id")?,
                            service_id: r.try_get("service_id")?,
                            applicant: r.try_get("applicant")?,
                        });
                    }
                });
            }
        }
        Ok(out)
    }

    /// Events by their position in the log (the triggers of cases).
    pub async fn events_by_seq(&self, seqs: &[i64]) -> Result<Vec<EventRow>> {
        self.select(Statement::in_list(&format!("{EVENT_SELECT} WHERE seq"), seqs, ""), event_from_row).await
    }

    /// Events by (source, external id), for annulments.
    pub async fn events_by_external(&self, keys: &[(String, String)]) -> Result<Vec<EventRow>> {
        let sql = format!("{EVENT_SELECT} WHERE source = $1 AND external_id = $2");
        let reads = keys
            .iter()
            .map(|(source, id)| Statement::new(sql.clone(), vec![Param::Text(source.clone()), Param::Text(id.clone())]))
            .collect();
        self.select(reads, event_from_row).await
    }

    /// Every case of a subject (all states), newest first, for `cases show`.
    pub async fn cases_of_subject(&self, subject: &str) -> Result<Vec<Case>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {CASE_COLUMNS} FROM cases WHERE subject = $1 ORDER BY created_at DESC, id"
            )))
            .bind(subject)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| case_from_row(r)).collect::<Result<Vec<_>>>()?
        }))
    }
}

/// A notice as the rule tests, simulations and `cases show` see it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NoticeView {
    /// Notice id.
    pub id: String,
    /// Its case.
    pub case_id: String,
    /// Life-situation id.
    pub life_situation: String,
    /// Definition version.
    pub version: i64,
    /// Purpose it serves.
    pub purpose: String,
    /// Step that made it.
    pub step: String,
    /// Recipient's code.
    pub recipient: String,
    /// Template name.
    pub template: String,
    /// When it is due (ms).
    pub due_at: i64,
    /// When it may first be sent (ms): its due time, or when it was made if that was later.
    pub available_at: i64,
    /// `pending`, `sent`, `cancelled`, `shadow`, …
    pub state: String,
    /// Why it was cancelled or failed.
    pub last_error: Option<String>,
    /// Draft offered with it.
    pub draft_ref: Option<String>,
}

/// The columns [`notice_view_from_row`] reads.
pub(crate) const NOTICE_VIEW_COLUMNS: &str = "id, case_id, life_situation, version, purpose, step, recipient, template, \
     due_at, available_at, state, last_error, draft_ref";

/// A notice as [`NoticeView`], from a row with its columns.
pub(crate) fn notice_view_from_row<R: Row>(r: &R) -> Result<NoticeView>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(NoticeView {
        id: r.try_get("id")?,
        case_id: r.try_get("case_id")?,
        life_situation: r.try_get("life_situation")?,
        version: r.try_get("version")?,
        purpose: r.try_get("purpose")?,
        step: r.try_get("step")?,
        recipient: r.try_get("recipient")?,
        template: r.try_get("template")?,
        due_at: r.try_get("due_at")?,
        available_at: r.try_get("available_at")?,
        state: r.try_get("state")?,
        last_error: r.try_get("last_error")?,
        draft_ref: r.try_get("draft_ref")?,
    })
}

impl Db {
    /// Notices, of one case or all, in due order.
    pub async fn notices_of(&self, case_id: Option<&str>) -> Result<Vec<NoticeView>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {NOTICE_VIEW_COLUMNS} FROM notices WHERE ($1 IS NULL OR case_id = $1) ORDER BY due_at, id"
            )))
            .bind(case_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(notice_view_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Marks every pending notice due by `now_ms` as sent without sending it:
    /// rule tests and simulations deliver nothing, but a case that ends later
    /// must not withdraw what would long have gone out.
    pub async fn mark_due_as_sent_without_sending(&self, now_ms: i64) -> Result<u64> {
        Ok(on_pool!(self, pool => {
            sqlx::query(
                "UPDATE notices SET state = 'sent', last_error = 'not sent: rule test or simulation' \
                 WHERE state = 'pending' AND available_at <= $1",
            )
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Drafts by reference (absent ones are simply missing).
    pub async fn drafts_by_ref(&self, refs: &[String]) -> Result<Vec<super::DraftRow>> {
        let mut out = Vec::new();
        for chunk in statement_chunks(refs, 1) {
            on_pool!(self, pool => {
                let mut qb = QueryBuilder::new(format!("SELECT {DRAFT_COLUMNS} FROM drafts WHERE ref IN ("));
                let mut sep = qb.separated(", ");
                for r in chunk {
                    sep.push_bind(r.clone());
                }
                qb.push(")");
                for r in qb.build().fetch_all(pool).await? {
                    out.push(draft_from_row(&r)?);
                }
            });
        }
        Ok(out)
    }

    /// Every draft with its fields.
    pub async fn all_drafts(&self) -> Result<Vec<super::DraftRow>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DRAFT_COLUMNS} FROM drafts ORDER BY ref")))
                .fetch_all(pool)
                .await?;
            rows.iter().map(draft_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Every case, oldest first.
    pub async fn all_cases(&self) -> Result<Vec<Case>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CASE_COLUMNS} FROM cases ORDER BY created_at, id")))
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| case_from_row(r)).collect::<Result<Vec<_>>>()?
        }))
    }
}

/// The stored spelling of a case's plan.
pub(crate) fn plan_json(c: &Case) -> Result<String> {
    Ok(serde_json::to_string(&c.plan)?)
}
