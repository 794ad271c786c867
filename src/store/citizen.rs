//! What the citizen and staff API read and change: a person's drafts and
//! their status, the notices sent to them, and the counts policy staff see.

use anyhow::Result;
use sqlx::Row;

use super::audit::{DETAIL_COLUMNS, append_audit, detail_from_row};
use super::{Db, NoticeDetail, on_pool};
use crate::audit::{Audit, Entry};

/// A draft with its status and the life situation of its case.
#[derive(Clone, Debug)]
pub struct DraftInfo {
    /// Its reference.
    pub reference: String,
    /// Its case.
    pub case_id: String,
    /// The case's life situation (also the purpose it serves).
    pub life_situation: String,
    /// The case's definition version.
    pub version: i64,
    /// Service catalogue id.
    pub service_id: String,
    /// Applicant's code (a pseudonym once erased).
    pub applicant: String,
    /// Field name → `{value, source, …}`.
    pub fields: serde_json::Value,
    /// `offered`, `opened`, `submitted` or `declined` as stored (expiry is read from `expires_at`).
    pub status: String,
    /// When the status last changed.
    pub status_at: Option<i64>,
    /// When it was offered.
    pub created_at: i64,
    /// When the offer lapses.
    pub expires_at: i64,
    /// When its personal data was erased.
    pub erased_at: Option<i64>,
}

const DRAFT_INFO: &str = "SELECT d.ref, d.case_id, c.life_situation, c.version, d.service_id, d.applicant, d.fields, \
     d.status, d.status_at, d.created_at, d.expires_at, d.erased_at FROM drafts d JOIN cases c ON c.id = d.case_id";

fn draft_info_from_row<R: Row>(r: &R) -> Result<DraftInfo>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(DraftInfo {
        reference: r.try_get("ref")?,
        case_id: r.try_get("case_id")?,
        life_situation: r.try_get("life_situation")?,
        version: r.try_get("version")?,
        service_id: r.try_get("service_id")?,
        applicant: r.try_get("applicant")?,
        fields: serde_json::from_str(&r.try_get::<String, _>("fields")?)?,
        status: r.try_get("status")?,
        status_at: r.try_get("status_at")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        erased_at: r.try_get("erased_at")?,
    })
}

/// Counts by one or more labels, as the staff endpoints report them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// The labels, in the order the query names them.
    pub labels: Vec<String>,
    /// How many.
    pub count: i64,
}

/// Tallies of grouped rows: the columns `labels` as the labels, `n` as the count.
pub(super) fn tallies<R: Row>(rows: &[R], labels: &[&str]) -> Result<Vec<Tally>>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|r| {
            let labels = labels.iter().map(|l| r.try_get::<String, _>(*l)).collect::<Result<Vec<_>, _>>()?;
            Ok(Tally { labels, count: r.try_get("n")? })
        })
        .collect()
}

/// A span of time, `from_ms` included and `to_ms` not, that the staff figures count within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    /// Start, milliseconds since the epoch.
    pub from_ms: i64,
    /// End (excluded).
    pub to_ms: i64,
}

impl Period {
    /// All time.
    pub const ALL: Period = Period { from_ms: i64::MIN, to_ms: i64::MAX };
}

/// Drafts of one life situation and service, by status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TakeUp {
    /// Life situation.
    pub life_situation: String,
    /// Service catalogue id.
    pub service_id: String,
    /// Every draft offered.
    pub offered: i64,
    /// Opened by the applicant (and not yet submitted or declined).
    pub opened: i64,
    /// Submitted.
    pub submitted: i64,
    /// Declined.
    pub declined: i64,
    /// Neither submitted nor declined before the offer lapsed.
    pub expired: i64,
}

impl Db {
    /// Drafts offered to `applicant`, newest first.
    pub async fn drafts_of_applicant(&self, applicant: &str) -> Result<Vec<DraftInfo>> {
        let sql = format!("{DRAFT_INFO} WHERE d.applicant = $1 ORDER BY d.created_at DESC, d.ref");
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(applicant).fetch_all(pool).await?;
            rows.iter().map(draft_info_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// One draft by reference.
    pub async fn draft_info(&self, reference: &str) -> Result<Option<DraftInfo>> {
        let sql = format!("{DRAFT_INFO} WHERE d.ref = $1");
        Ok(on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(reference).fetch_optional(pool).await?;
            row.as_ref().map(draft_info_from_row).transpose()?
        }))
    }

    /// Marks an offered draft as opened (the applicant looked at it); false if it was not `offered`.
    pub async fn mark_draft_opened(&self, reference: &str, now_ms: i64) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            sqlx::query("UPDATE drafts SET status = 'opened', status_at = $2 WHERE ref = $1 AND status = 'offered'")
                .bind(reference)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    /// Replaces a draft's fields if they are still `expected` and the draft is
    /// still open for changes, with the audit record of it, in one
    /// transaction; false if someone changed it meanwhile.
    pub async fn correct_draft(
        &self,
        reference: &str,
        expected: &serde_json::Value,
        fields: &serde_json::Value,
        audit: &Audit,
        entry: Entry,
        now_ms: i64,
    ) -> Result<bool> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE drafts SET fields = $3 WHERE ref = $1 AND fields = $2 AND status IN ('offered', 'opened') \
                 AND erased_at IS NULL",
            )
            .bind(reference)
            .bind(expected.to_string())
            .bind(fields.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            let lane = append_audit!(tx, audit, vec![entry], now_ms);
            tx.commit().await?;
            if let Some(l) = lane {
                audit.give_back(l);
            }
        });
        Ok(true)
    }

    /// Moves a draft that is still offered or opened to `status`
    /// (`submitted`, `declined`), with the audit record of it, in one
    /// transaction; false if it was no longer open.
    pub async fn decide_draft(
        &self,
        reference: &str,
        status: &str,
        audit: &Audit,
        entry: Entry,
        now_ms: i64,
    ) -> Result<bool> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE drafts SET status = $2, status_at = $3 WHERE ref = $1 AND status IN ('offered', 'opened')",
            )
            .bind(reference)
            .bind(status)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            let lane = append_audit!(tx, audit, vec![entry], now_ms);
            tx.commit().await?;
            if let Some(l) = lane {
                audit.give_back(l);
            }
        });
        Ok(true)
    }

    /// Notices whose recipient is `code` (or its pseudonym, once erased), newest first.
    pub async fn notices_to(&self, code: &str, subject_ref: &str) -> Result<Vec<NoticeDetail>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DETAIL_COLUMNS} FROM notices WHERE recipient = $1 OR recipient = $2 ORDER BY created_at DESC, id"
            )))
            .bind(code)
            .bind(subject_ref)
            .fetch_all(pool)
            .await?;
            rows.iter().map(detail_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Whether the engine has applied the event `seq` (false for an unknown one).
    pub async fn event_processed(&self, seq: i64) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events WHERE seq = $1 AND processed_at IS NOT NULL")
                .bind(seq)
                .fetch_one(pool)
                .await?
                == 1
        }))
    }

    /// People who may have made `code` their guardian or representative:
    /// the subjects of guardianship and mandate events naming it. A lead
    /// only — whether the relation still holds is the profile's to say.
    /// Served by a partial index on the two types (migration 0011), so a
    /// page view does not read the event log.
    pub async fn represented_leads(&self, code: &str) -> Result<Vec<String>> {
        let plain = code.replace('-', "");
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT subject FROM events WHERE type IN ('guardianship.established', 'mandate.granted') \
                 AND (data LIKE $1 OR data LIKE $2) ORDER BY subject",
            )
            .bind(format!("%\"{code}\"%"))
            .bind(format!("%\"{plain}\"%"))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Cases by life situation and state.
    pub async fn case_stats(&self) -> Result<Vec<Tally>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT life_situation, state, COUNT(*) AS n FROM cases GROUP BY life_situation, state \
                 ORDER BY life_situation, state",
            )
            .fetch_all(pool)
            .await?;
            tallies(&rows, &["life_situation", "state"])?
        }))
    }

    /// Notices made within `period`, by life situation, channel (empty before one was chosen) and state.
    pub async fn notice_stats(&self, period: Period) -> Result<Vec<Tally>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT life_situation, COALESCE(channel, '') AS channel, state, COUNT(*) AS n FROM notices \
                 WHERE created_at >= $1 AND created_at < $2 \
                 GROUP BY life_situation, COALESCE(channel, ''), state ORDER BY life_situation, channel, state",
            )
            .bind(period.from_ms)
            .bind(period.to_ms)
            .fetch_all(pool)
            .await?;
            tallies(&rows, &["life_situation", "channel", "state"])?
        }))
    }

    /// Drafts offered within `period` by life situation and service, by
    /// status; an offer that lapsed while still offered or opened counts as
    /// expired at `now_ms`.
    pub async fn take_up(&self, now_ms: i64, period: Period) -> Result<Vec<TakeUp>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT c.life_situation, d.service_id, COUNT(*) AS offered, \
                 SUM(CASE WHEN d.status = 'opened' AND d.expires_at > $1 THEN 1 ELSE 0 END) AS opened, \
                 SUM(CASE WHEN d.status = 'submitted' THEN 1 ELSE 0 END) AS submitted, \
                 SUM(CASE WHEN d.status = 'declined' THEN 1 ELSE 0 END) AS declined, \
                 SUM(CASE WHEN d.status IN ('offered', 'opened') AND d.expires_at <= $1 THEN 1 ELSE 0 END) AS expired \
                 FROM drafts d JOIN cases c ON c.id = d.case_id WHERE d.created_at >= $2 AND d.created_at < $3 \
                 GROUP BY c.life_situation, d.service_id ORDER BY c.life_situation, d.service_id",
            )
            .bind(now_ms)
            .bind(period.from_ms)
            .bind(period.to_ms)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(TakeUp {
                        life_situation: r.try_get("life_situation")?,
                        service_id: r.try_get("service_id")?,
                        offered: r.try_get("offered")?,
                        opened: r.try_get("opened")?,
                        submitted: r.try_get("submitted")?,
                        declined: r.try_get("declined")?,
                        expired: r.try_get("expired")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }))
    }
}
