//! The audit log's rows: appending a writer's records inside the caller's
//! transaction, reading chains back for verification, a notice's or a
//! person's records for `explain`, one purpose's for an export, and the
//! erasures of retention.

use anyhow::Result;
use sqlx::Row;

use super::reader::Statement;
use super::writer::{Rows, Tx};
use super::{Db, on_pool};
use crate::audit::{Audit, Entry, Sealed};

/// Appends `entries` to a lane of `audit` inside the open transaction `tx`
/// (`&mut Transaction`), with the chain's new head; evaluates to the lane,
/// which the caller gives back to `audit` once the transaction committed.
macro_rules! append_audit {
    ($tx:expr, $audit:expr, $entries:expr, $now:expr) => {{
        let entries: Vec<$crate::audit::Entry> = $entries;
        if entries.is_empty() {
            None
        } else {
            let audit: &$crate::audit::Audit = $audit;
            let mut lane = audit.take_lane();
            let rows = audit.seal(&mut lane, entries);
            for chunk in $crate::store::statement_chunks(&rows, 10) {
                let mut qb = sqlx::QueryBuilder::new($crate::store::audit::AUDIT_INSERT);
                qb.push(" ");
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(r.chain.clone())
                        .push_bind(r.seq)
                        .push_bind(r.at)
                        .push_bind(r.kind.clone())
                        .push_bind(r.purpose.clone())
                        .push_bind(r.subject_ref.clone())
                        .push_bind(r.notice_id.clone())
                        .push_bind(r.record.clone())
                        .push_bind(r.prev_hash.clone())
                        .push_bind(r.hash.clone());
                });
                qb.build().execute(&mut *$tx).await?;
            }
            sqlx::query($crate::store::audit::CHAIN_UPSERT)
                .bind(&lane.chain)
                .bind(audit.writer())
                .bind(audit.started_at())
                .bind(lane.seq)
                .bind(hex::encode(lane.head))
                .bind($now)
                .execute(&mut *$tx)
                .await?;
            Some(lane)
        }
    }};
}
pub(crate) use append_audit;

/// The insert of audit records, before its values.
pub(crate) const AUDIT_INSERT: &str =
    "INSERT INTO audit_log (chain, seq, at, kind, purpose, subject_ref, notice_id, record, prev_hash, hash)";

/// Moves a chain's head to its last record (`$1` chain … `$6` time).
pub(crate) const CHAIN_UPSERT: &str = "INSERT INTO audit_chains (chain, writer, started_at, head_seq, head_hash, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chain) DO UPDATE SET head_seq = excluded.head_seq, \
     head_hash = excluded.head_hash, updated_at = excluded.updated_at";

/// As [`append_audit!`], in a transaction of either database through
/// `writer::Tx`: seals `entries` onto a lane of `audit` and writes them with
/// the chain's new head; the lane, to give back once the transaction committed.
pub(crate) async fn append_in(
    tx: &mut impl Tx,
    audit: &Audit,
    entries: Vec<Entry>,
    now_ms: i64,
) -> Result<Option<crate::audit::Lane>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut lane = audit.take_lane();
    let mut rows = Rows::new(AUDIT_INSERT, 10, "");
    for r in audit.seal(&mut lane, entries) {
        rows.push([
            r.chain.into(),
            r.seq.into(),
            r.at.into(),
            r.kind.into(),
            r.purpose.into(),
            r.subject_ref.into(),
            r.notice_id.into(),
            r.record.into(),
            r.prev_hash.into(),
            r.hash.into(),
        ]);
    }
    tx.insert(&rows).await?;
    let head = Statement::new(
        CHAIN_UPSERT,
        vec![
            lane.chain.clone().into(),
            audit.writer().into(),
            audit.started_at().into(),
            lane.seq.into(),
            hex::encode(lane.head).into(),
            now_ms.into(),
        ],
    );
    tx.execute(&head).await?;
    Ok(Some(lane))
}

const AUDIT_COLUMNS: &str = "chain, seq, at, kind, purpose, subject_ref, notice_id, record, prev_hash, hash";

fn sealed_from_row<R: Row>(r: &R) -> Result<Sealed>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Sealed {
        chain: r.try_get("chain")?,
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        kind: r.try_get("kind")?,
        purpose: r.try_get("purpose")?,
        subject_ref: r.try_get("subject_ref")?,
        notice_id: r.try_get("notice_id")?,
        record: r.try_get("record")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// A chain as its head row records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// Chain id.
    pub chain: String,
    /// The last sequence number written; none when the chain has records but no head row.
    pub head: Option<(i64, String)>,
}

/// A notice with its trace, for `explain` and retention.
#[derive(Clone, Debug)]
pub struct NoticeDetail {
    /// Notice id.
    pub id: String,
    /// Its case.
    pub case_id: String,
    /// Life situation.
    pub life_situation: String,
    /// Definition version.
    pub version: i64,
    /// Step.
    pub step: String,
    /// Recipient's code (a pseudonym once erased).
    pub recipient: String,
    /// Purpose.
    pub purpose: String,
    /// Template.
    pub template: String,
    /// State.
    pub state: String,
    /// Channel used or last tried.
    pub channel: Option<String>,
    /// Last error, deferral or suppression reason.
    pub last_error: Option<String>,
    /// When it became or becomes claimable (ms).
    pub available_at: i64,
    /// When the engine made it (ms).
    pub created_at: i64,
    /// When it was sent (ms).
    pub sent_at: Option<i64>,
    /// How it was made (none for notices made before traces were kept).
    pub trace: Option<crate::audit::trace::NoticeTrace>,
    /// When its personal data was erased.
    pub erased_at: Option<i64>,
    /// Draft offered with it.
    pub draft_ref: Option<String>,
    /// How far a sent message got, as the channel reported: `accepted`, `delivered`, `read` (e-address), …
    pub receipt_status: Option<String>,
}

pub(crate) const DETAIL_COLUMNS: &str = "id, case_id, life_situation, version, step, recipient, purpose, template, state, channel, \
     last_error, available_at, created_at, sent_at, trace, erased_at, draft_ref, receipt_status";

pub(crate) fn detail_from_row<R: Row>(r: &R) -> Result<NoticeDetail>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let trace: Option<String> = r.try_get("trace")?;
    Ok(NoticeDetail {
        id: r.try_get("id")?,
        case_id: r.try_get("case_id")?,
        life_situation: r.try_get("life_situation")?,
        version: r.try_get("version")?,
        step: r.try_get("step")?,
        recipient: r.try_get("recipient")?,
        purpose: r.try_get("purpose")?,
        template: r.try_get("template")?,
        state: r.try_get("state")?,
        channel: r.try_get("channel")?,
        last_error: r.try_get("last_error")?,
        available_at: r.try_get("available_at")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
        trace: trace.as_deref().map(serde_json::from_str).transpose()?,
        erased_at: r.try_get("erased_at")?,
        draft_ref: r.try_get("draft_ref")?,
        receipt_status: r.try_get("receipt_status")?,
    })
}

/// What one erasure changes on one notice.
#[derive(Clone, Debug)]
pub struct Erasure {
    /// Notice id.
    pub id: String,
    /// The recipient's pseudonym, in place of the code.
    pub recipient_ref: String,
    /// The trace without its personal parts.
    pub trace: Option<String>,
    /// The draft offered with it, and its applicant's pseudonym.
    pub draft: Option<(String, String)>,
}

impl Db {
    /// Appends records in a transaction of their own (records of work that
    /// changes nothing else in the store, or whose changes committed already).
    pub async fn append_audit(&self, audit: &Audit, entries: Vec<Entry>, now_ms: i64) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let lane = append_audit!(tx, audit, entries, now_ms);
            tx.commit().await?;
            if let Some(l) = lane {
                audit.give_back(l);
            }
        });
        Ok(())
    }

    /// Every chain: those with a head row, and those with records but none.
    pub async fn audit_chains(&self) -> Result<Vec<ChainHead>> {
        let mut out: std::collections::BTreeMap<String, Option<(i64, String)>> = Default::default();
        on_pool!(self, pool => {
            // Heads first: a record committed after this read is past its head and not yet judged.
            for r in sqlx::query("SELECT chain, head_seq, head_hash FROM audit_chains").fetch_all(pool).await? {
                out.insert(r.try_get("chain")?, Some((r.try_get("head_seq")?, r.try_get("head_hash")?)));
            }
            for r in sqlx::query("SELECT DISTINCT chain FROM audit_log").fetch_all(pool).await? {
                out.entry(r.try_get("chain")?).or_insert(None);
            }
        });
        Ok(out.into_iter().map(|(chain, head)| ChainHead { chain, head }).collect())
    }

    /// Records of a chain after `after_seq`, in sequence order.
    pub async fn audit_page(&self, chain: &str, after_seq: i64, limit: i64) -> Result<Vec<Sealed>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            )))
            .bind(chain)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(sealed_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// A notice's records, in the order they were written.
    pub async fn audit_of_notice(&self, notice_id: &str) -> Result<Vec<Sealed>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE notice_id = $1 ORDER BY at, chain, seq"
            )))
            .bind(notice_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(sealed_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// A person's records (by pseudonym) that concern no notice: consent changes, staff actions.
    pub async fn audit_of_subject(&self, subject_ref: &str) -> Result<Vec<Sealed>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE subject_ref = $1 AND notice_id IS NULL ORDER BY at, chain, seq"
            )))
            .bind(subject_ref)
            .fetch_all(pool)
            .await?;
            rows.iter().map(sealed_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// One purpose's records written in `[from_ms, to_ms)`, in time order.
    pub async fn audit_export(&self, purpose: &str, from_ms: i64, to_ms: i64) -> Result<Vec<Sealed>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE purpose = $1 AND at >= $2 AND at < $3 ORDER BY at, chain, seq"
            )))
            .bind(purpose)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?;
            rows.iter().map(sealed_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// A notice with its trace.
    pub async fn notice_detail(&self, id: &str) -> Result<Option<NoticeDetail>> {
        Ok(on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DETAIL_COLUMNS} FROM notices WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(detail_from_row).transpose()?
        }))
    }

    /// Notices to a person (by code, or by pseudonym once erased) or about
    /// them (of their cases), oldest first.
    pub async fn notices_concerning(&self, code: &str, subject_ref: &str) -> Result<Vec<NoticeDetail>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DETAIL_COLUMNS} FROM notices WHERE recipient = $1 OR recipient = $2 \
                 OR case_id IN (SELECT id FROM cases WHERE subject = $1) ORDER BY created_at, id"
            )))
            .bind(code)
            .bind(subject_ref)
            .fetch_all(pool)
            .await?;
            rows.iter().map(detail_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Up to `limit` notices of `purpose` made before `cutoff_ms`, finished
    /// (nothing left to send) and not yet erased.
    pub async fn erasable_notices(&self, purpose: &str, cutoff_ms: i64, limit: i64) -> Result<Vec<NoticeDetail>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DETAIL_COLUMNS} FROM notices WHERE purpose = $1 AND created_at < $2 AND erased_at IS NULL \
                 AND state NOT IN ('pending', 'sending') ORDER BY created_at, id LIMIT $3"
            )))
            .bind(purpose)
            .bind(cutoff_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(detail_from_row).collect::<Result<Vec<_>>>()?
        }))
    }

    /// Erases notices' personal data (template data, recipient code, the
    /// trace's personal parts, gateway errors that may name an address) and
    /// their drafts' fields, with the audit record of it, in one transaction.
    pub async fn erase_notices(&self, erasures: &[Erasure], audit: &Audit, entry: Entry, now_ms: i64) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for e in erasures {
                sqlx::query(
                    "UPDATE notices SET data = '{}', recipient = $2, trace = $3, erased_at = $4 WHERE id = $1",
                )
                .bind(&e.id)
                .bind(&e.recipient_ref)
                .bind(&e.trace)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE deliveries SET error = NULL WHERE notice_id = $1").bind(&e.id).execute(&mut *tx).await?;
                sqlx::query("UPDATE receipts SET detail = NULL WHERE notice_id = $1").bind(&e.id).execute(&mut *tx).await?;
                if let Some((reference, applicant_ref)) = &e.draft {
                    sqlx::query("UPDATE drafts SET fields = '{}', applicant = $2, erased_at = $3 WHERE ref = $1")
                        .bind(reference)
                        .bind(applicant_ref)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let lane = append_audit!(tx, audit, vec![entry], now_ms);
            tx.commit().await?;
            if let Some(l) = lane {
                audit.give_back(l);
            }
        });
        Ok(())
    }

    /// Number of audit records, for reports.
    pub async fn audit_count(&self) -> Result<i64> {
        Ok(on_pool!(self, pool => {
            sqlx::query("SELECT COUNT(*) AS n FROM audit_log").fetch_one(pool).await?.try_get::<i64, _>("n")?
        }))
    }
}
