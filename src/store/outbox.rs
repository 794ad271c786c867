//! Cases, notices (the outbox), drafts and delivery attempts: what the engine
//! commits per batch, and what delivery workers claim and record.

use anyhow::Result;
use sqlx::Row;

use super::audit::append_in;
use super::cases::plan_json;
use super::reader::Statement;
use super::writer::{Job, Rows, Tx};
use super::{Db, on_pool};
use crate::audit::{Audit, Entry};
use crate::engine::cases::Case;
use crate::engine::profile::Profile;

/// One message for one recipient, waiting in the outbox.
#[derive(Clone, Debug)]
pub struct NoticeRow {
    /// Derived from (case, step, due time, final recipient).
    pub id: String,
    /// The case it belongs to.
    pub case_id: String,
    /// Life-situation id.
    pub life_situation: String,
    /// Definition version of its case.
    pub version: i64,
    /// Step that produced it.
    pub step: String,
    /// Final recipient's code.
    pub recipient: String,
    /// Consent purpose.
    pub purpose: String,
    /// Template name within the life situation.
    pub template: String,
    /// Template data, JSON.
    pub data: serde_json::Value,
    /// Draft offered with it.
    pub draft_ref: Option<String>,
    /// When this occurrence is due, ms since the epoch (part of the id).
    pub due_at: i64,
    /// When a worker may first claim it.
    pub available_at: i64,
    /// `pending`, or `shadow` for a definition that records without sending.
    pub state: &'static str,
    /// 1 for an urgent or legal-effect step (never digested, capped or staggered), else 0.
    pub priority: i64,
    /// How it was made: rule, version, event, and through whom.
    pub trace: crate::audit::trace::NoticeTrace,
}

/// A prefilled application.
#[derive(Clone, Debug)]
pub struct DraftRow {
    /// Human-readable reference, derived from case, service and applicant.
    pub reference: String,
    /// The case it belongs to.
    pub case_id: String,
    /// Service catalogue id.
    pub service_id: String,
    /// Applicant's code.
    pub applicant: String,
    /// Field name → `{value, source}`.
    pub fields: serde_json::Value,
    /// When the offer lapses, ms since the epoch.
    pub expires_at: i64,
}

/// Something notable that happened to an event in the engine (a rule error, a skipped trigger).
#[derive(Clone, Debug)]
pub struct OutcomeRow {
    /// The event.
    pub event_seq: i64,
    /// Life situation concerned.
    pub life_situation: String,
    /// Step, when one ran.
    pub step: Option<String>,
    /// `error`, `skipped`, `shadow`, …
    pub outcome: String,
    /// Readable detail without personal data.
    pub detail: String,
}

/// Queued notices to withdraw, with the reason recorded on each.
#[derive(Clone, Debug, PartialEq)]
pub enum Withdraw {
    /// Every pending notice of a case (the case ended).
    Case(String, String),
    /// Every pending notice to a recipient (the recipient died).
    Recipient(String, String),
    /// Every pending notice to a recipient for one purpose (a refusal of it on every channel).
    Purpose(String, String, String),
}

/// Everything one engine batch commits, with the events it marks processed.
#[derive(Debug, Default)]
pub struct BatchWrite {
    /// Profiles changed by the batch's events.
    pub profiles: Vec<Profile>,
    /// Cases started or changed (plan, state), written whole.
    pub cases: Vec<Case>,
    /// Queued notices to cancel, after this batch's own notices are in.
    pub withdraw: Vec<Withdraw>,
    /// New notices.
    pub notices: Vec<NoticeRow>,
    /// New drafts.
    pub drafts: Vec<DraftRow>,
    /// Errors and skips.
    pub outcomes: Vec<OutcomeRow>,
    /// Seqs of the events this batch handled.
    pub processed: Vec<i64>,
    /// Audit records besides the notices made and withdrawn (which the
    /// commit records itself): consent changes, staff actions.
    pub audit: Vec<crate::audit::Entry>,
    /// Life situations whose cases are now opened from profiles up to a time (ms): see `engine::openings`.
    pub openings: Vec<(String, i64)>,
    /// Identity documents issued, by expiry, for opening their cases ahead
    /// (`engine::openings`); one already recorded is left as it is.
    pub documents: Vec<super::Dated>,
}

/// Where a notice stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeState {
    /// Waiting to be claimed (possibly for a retry).
    Pending,
    /// Claimed by a worker and possibly handed to a gateway.
    Sending,
    /// Delivered to a channel.
    Sent,
    /// Gave up after retries or a permanent error; replayable.
    Dead,
    /// Deliberately not sent (no reachable channel, deceased recipient, …).
    Suppressed,
    /// Withdrawn before sending.
    Cancelled,
}

impl NoticeState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Pending => "pending",
            NoticeState::Sending => "sending",
            NoticeState::Sent => "sent",
            NoticeState::Dead => "dead",
            NoticeState::Suppressed => "suppressed",
            NoticeState::Cancelled => "cancelled",
        }
    }
}

/// A notice a worker has claimed.
#[derive(Clone, Debug)]
pub struct ClaimedNotice {
    /// Notice id (the idempotency key).
    pub id: String,
    /// Case id.
    pub case_id: String,
    /// Life-situation id.
    pub life_situation: String,
    /// Definition version of its case.
    pub version: i64,
    /// Step.
    pub step: String,
    /// Recipient's code.
    pub recipient: String,
    /// Consent purpose.
    pub purpose: String,
    /// Template name.
    pub template: String,
    /// Template data.
    pub data: serde_json::Value,
    /// Draft offered with it.
    pub draft_ref: Option<String>,
    /// Attempts including this one.
    pub attempts: i64,
    /// 1 for an urgent or legal-effect step, else 0.
    pub priority: i64,
    /// The digest it was claimed into, if any (kept across a crash).
    pub digest_id: Option<String>,
}

/// A notice with its latest delivery, for listings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryRow {
    /// Notice id.
    pub notice_id: String,
    /// Life-situation id.
    pub life_situation: String,
    /// Template name.
    pub template: String,
    /// Recipient's code.
    pub recipient: String,
    /// Notice state.
    pub state: String,
    /// Channel used or last tried.
    pub channel: Option<String>,
    /// Provider's id of the message (a file name for file sinks).
    pub provider_id: Option<String>,
    /// Last error or suppression reason.
    pub last_error: Option<String>,
    /// Attempts made.
    pub attempts: i64,
    /// Draft offered with it.
    pub draft_ref: Option<String>,
    /// The legal served day of an e-address document.
    pub served_on: Option<String>,
    /// How far the gateway says the message has got (`accepted`, `delivered`, `read`).
    pub receipt: Option<String>,
    /// The digest it went out in, with a person's other notices of the day.
    pub digest_id: Option<String>,
}

pub(crate) const CLAIM_RETURNING: &str = " RETURNING id, case_id, life_situation, version, step, recipient, purpose, template, data, draft_ref, attempts, priority, digest_id";

impl Db {
    /// Commits one engine batch atomically: profiles, cases, notices, drafts,
    /// outcomes, the processed mark of its events, and their audit records
    /// (the batch's own, the notices it made and those it withdrew) on a
    /// lane of `audit`. On SQLite it is written through the engine's own
    /// connection (see `writer`).
    pub async fn commit_batch(&self, w: &BatchWrite, now_ms: i64, audit: &Audit) -> Result<()> {
        let lane = self.transact(false, BatchPlan::new(w, audit, now_ms)?).await?;
        if let Some(l) = lane {
            audit.give_back(l);
        }
        Ok(())
    }

    /// Returns notices whose claim lapsed (their worker died) to the queue.
    pub async fn release_expired_leases(&self, now_ms: i64) -> Result<u64> {
        Ok(on_pool!(self, pool => {
            // A withdrawn one is not handed over again: whether the dead worker's send arrived is unknown.
            sqlx::query(
                "UPDATE notices SET state = CASE WHEN withdrawn IS NULL THEN 'pending' ELSE 'cancelled' END, \
                 last_error = CASE WHEN withdrawn IS NULL THEN last_error ELSE withdrawn END, lease_until = NULL \
                 WHERE state = 'sending' AND lease_until < $1",
            )
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// Claims up to `limit` due notices for `lease_ms`, marking them `sending`.
    pub async fn claim_notices(&self, now_ms: i64, limit: i64, lease_ms: i64) -> Result<Vec<ClaimedNotice>> {
        // PostgreSQL lets concurrent workers skip each other's rows; SQLite has
        // one writer at a time, so the plain subquery is already exclusive.
        let rows = match self {
            Db::Sqlite(pool, _) => {
                let sql = format!(
                    "UPDATE notices SET state = 'sending', attempts = attempts + 1, lease_until = $1 \
                     WHERE id IN (SELECT id FROM notices WHERE state = 'pending' AND available_at <= $2 \
                     ORDER BY available_at LIMIT $3){CLAIM_RETURNING}"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now_ms + lease_ms)
                    .bind(now_ms)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(claimed_from_row).collect::<Result<Vec<_>>>()?
            }
            Db::Postgres(pool) => {
                let sql = format!(
                    "UPDATE notices SET state = 'sending', attempts = attempts + 1, lease_until = $1 \
                     WHERE id IN (SELECT id FROM notices WHERE state = 'pending' AND available_at <= $2 \
                     ORDER BY available_at LIMIT $3 FOR UPDATE SKIP LOCKED){CLAIM_RETURNING}"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now_ms + lease_ms)
                    .bind(now_ms)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(claimed_from_row).collect::<Result<Vec<_>>>()?
            }
        };
        Ok(rows)
    }

    /// Notices with their latest delivery, optionally of one state, oldest first.
    pub async fn list_notices(&self, state: Option<&str>, limit: i64) -> Result<Vec<DeliveryRow>> {
        self.list_notices_within(state, super::Period::ALL, limit).await
    }

    /// As [`Db::list_notices`], of the notices made within `period`.
    pub async fn list_notices_within(
        &self,
        state: Option<&str>,
        period: super::Period,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT n.id, n.life_situation, n.template, n.recipient, n.state, n.channel, n.last_error, n.attempts, n.draft_ref, \
                 n.served_on, n.receipt_status, n.digest_id, \
                 (SELECT d.provider_id FROM deliveries d WHERE d.notice_id = n.id AND d.outcome = 'sent' \
                  ORDER BY d.id DESC LIMIT 1) AS provider_id \
                 FROM notices n WHERE ($1 IS NULL OR n.state = $1) AND n.created_at >= $3 AND n.created_at < $4 \
                 ORDER BY n.created_at, n.id LIMIT $2",
            )
            .bind(state)
            .bind(limit)
            .bind(period.from_ms)
            .bind(period.to_ms)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(DeliveryRow {
                        notice_id: r.try_get("id")?,
                        life_situation: r.try_get("life_situation")?,
                        template: r.try_get("template")?,
                        recipient: r.try_get("recipient")?,
                        state: r.try_get("state")?,
                        channel: r.try_get("channel")?,
                        provider_id: r.try_get("provider_id")?,
                        last_error: r.try_get("last_error")?,
                        attempts: r.try_get("attempts")?,
                        served_on: r.try_get("served_on")?,
                        receipt: r.try_get("receipt_status")?,
                        digest_id: r.try_get("digest_id")?,
                        draft_ref: r.try_get("draft_ref")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }))
    }

    /// Number of notices per state.
    pub async fn notice_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM notices GROUP BY state ORDER BY state")
                .fetch_all(pool)
                .await?;
            rows.into_iter()
                .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
                .collect::<Result<Vec<_>>>()?
        }))
    }

    /// A draft's fields, by reference.
    pub async fn draft(&self, reference: &str) -> Result<Option<DraftRow>> {
        Ok(self.drafts_by_ref(&[reference.to_string()]).await?.pop())
    }

    /// Outcomes the engine recorded against events (errors, skipped triggers).
    pub async fn event_outcomes(&self) -> Result<Vec<OutcomeRow>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query("SELECT event_seq, life_situation, step, outcome, detail FROM event_outcomes ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(OutcomeRow {
                        event_seq: r.try_get("event_seq")?,
                        life_situation: r.try_get("life_situation")?,
                        step: r.try_get("step")?,
                        outcome: r.try_get("outcome")?,
                        detail: r.try_get("detail")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }))
    }
}

/// A batch's rows, made ready to write on either database.
struct BatchPlan {
    profiles: Rows,
    cases: Rows,
    notices: Rows,
    /// The `notice.created` record of each new notice, by id: recorded for those really made.
    created: Vec<(String, Entry)>,
    drafts: Rows,
    withdraw: Vec<Withdraw>,
    outcomes: Rows,
    processed: Vec<Statement>,
    documents: Rows,
    openings: Vec<Statement>,
    /// The batch's own audit records.
    entries: Vec<Entry>,
    /// The audit log's writer, whose lane the records go on.
    audit: Audit,
    now_ms: i64,
}

impl BatchPlan {
    fn new(w: &BatchWrite, audit: &Audit, now_ms: i64) -> Result<BatchPlan> {
        let mut profiles = Rows::new(
            "INSERT INTO profiles (subject, kind, birth_date, birth_seq, death_date, mother, father, doc, updated_at)",
            9,
            " ON CONFLICT (subject) DO UPDATE SET kind = excluded.kind, birth_date = excluded.birth_date, \
             birth_seq = excluded.birth_seq, death_date = excluded.death_date, mother = excluded.mother, \
             father = excluded.father, doc = excluded.doc, updated_at = excluded.updated_at",
        );
        for p in &w.profiles {
            profiles.push([
                p.subject.as_str().into(),
                p.kind.as_str().into(),
                p.birth_date.map(|d| d.to_string()).into(),
                p.birth_seq.into(),
                p.death_date.map(|d| d.to_string()).into(),
                p.mother.clone().into(),
                p.father.clone().into(),
                serde_json::to_string(p)?.into(),
                now_ms.into(),
            ]);
        }
        let mut cases = Rows::new(
            "INSERT INTO cases (id, life_situation, version, subject, fact, state, trigger_seq, started_at, \
             anchor, plan, next_due_at, closed_reason, created_at, updated_at)",
            14,
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, anchor = excluded.anchor, \
             plan = excluded.plan, next_due_at = excluded.next_due_at, \
             closed_reason = excluded.closed_reason, updated_at = excluded.updated_at",
        );
        for c in &w.cases {
            cases.push([
                c.id.as_str().into(),
                c.life_situation.as_str().into(),
                c.version.into(),
                c.subject.as_str().into(),
                c.fact.as_str().into(),
                c.state.as_str().into(),
                c.trigger_seq.into(),
                c.started_at.into(),
                c.anchor.map(|d| d.to_string()).into(),
                plan_json(c)?.into(),
                c.next_due().into(),
                c.closed_reason.clone().into(),
                now_ms.into(),
                now_ms.into(),
            ]);
        }
        // Only notices this batch really made are recorded: the same
        // decision made again is the notice already there.
        let mut notices = Rows::new(
            "INSERT INTO notices (id, case_id, life_situation, version, step, recipient, purpose, template, data, \
             draft_ref, due_at, available_at, state, priority, created_at, trace)",
            16,
            " ON CONFLICT (id) DO NOTHING",
        );
        for n in &w.notices {
            notices.push([
                n.id.as_str().into(),
                n.case_id.as_str().into(),
                n.life_situation.as_str().into(),
                n.version.into(),
                n.step.as_str().into(),
                n.recipient.as_str().into(),
                n.purpose.as_str().into(),
                n.template.as_str().into(),
                n.data.to_string().into(),
                n.draft_ref.clone().into(),
                n.due_at.into(),
                n.available_at.into(),
                n.state.into(),
                n.priority.into(),
                now_ms.into(),
                serde_json::to_string(&n.trace)?.into(),
            ]);
        }
        let created = w.notices.iter().map(|n| (n.id.clone(), created_entry(audit, n, now_ms))).collect();
        let mut drafts = Rows::new(
            "INSERT INTO drafts (ref, case_id, service_id, applicant, fields, expires_at, created_at)",
            7,
            " ON CONFLICT (ref) DO NOTHING",
        );
        for d in &w.drafts {
            drafts.push([
                d.reference.as_str().into(),
                d.case_id.as_str().into(),
                d.service_id.as_str().into(),
                d.applicant.as_str().into(),
                d.fields.to_string().into(),
                d.expires_at.into(),
                now_ms.into(),
            ]);
        }
        let mut outcomes =
            Rows::new("INSERT INTO event_outcomes (event_seq, life_situation, step, outcome, detail, at)", 6, "");
        for o in &w.outcomes {
            outcomes.push([
                o.event_seq.into(),
                o.life_situation.as_str().into(),
                o.step.clone().into(),
                o.outcome.as_str().into(),
                o.detail.as_str().into(),
                now_ms.into(),
            ]);
        }
        // The time is an integer of our own, not input: written into the text,
        // it leaves every placeholder to the list.
        let processed =
            Statement::in_list(&format!("UPDATE events SET processed_at = {now_ms} WHERE seq"), &w.processed, "");
        let mut documents = Rows::new(
            "INSERT INTO document_expiry (expires, seq, subject)",
            3,
            " ON CONFLICT (expires, seq) DO NOTHING",
        );
        for d in &w.documents {
            documents.push([d.date.as_str().into(), d.seq.into(), d.subject.as_str().into()]);
        }
        // One statement each: PostgreSQL refuses to upsert a row twice in one.
        let openings = w
            .openings
            .iter()
            .map(|(id, through)| {
                Statement::new(
                    "INSERT INTO openings (life_situation, through) VALUES ($1, $2) \
                     ON CONFLICT (life_situation) DO UPDATE SET through = excluded.through",
                    vec![id.as_str().into(), (*through).into()],
                )
            })
            .collect();
        Ok(BatchPlan {
            profiles,
            cases,
            notices,
            created,
            drafts,
            withdraw: w.withdraw.clone(),
            outcomes,
            processed,
            documents,
            openings,
            entries: w.audit.clone(),
            audit: audit.clone(),
            now_ms,
        })
    }
}

impl Job for BatchPlan {
    /// The audit lane to give back once it committed.
    type Out = Option<crate::audit::Lane>;

    async fn run(self, tx: &mut impl Tx) -> Result<Self::Out> {
        let (mut entries, now_ms) = (self.entries, self.now_ms);
        tx.insert(&self.profiles).await?;
        tx.insert(&self.cases).await?;
        let made = tx.insert_new(&self.notices, "id").await?;
        entries.extend(self.created.into_iter().filter(|(id, _)| made.contains(id)).map(|(_, e)| e));
        tx.insert(&self.drafts).await?;
        for wd in &self.withdraw {
            entries.extend(withdraw(tx, wd, now_ms).await?);
        }
        tx.insert(&self.outcomes).await?;
        for s in &self.processed {
            tx.execute(s).await?;
        }
        tx.insert(&self.documents).await?;
        for s in &self.openings {
            tx.execute(s).await?;
        }
        append_in(tx, &self.audit, entries, now_ms).await
    }
}

/// A notice a withdrawal reached.
struct Reached {
    id: String,
    recipient: String,
    purpose: String,
    life_situation: String,
    version: i64,
    channel: Option<String>,
    state: String,
}

/// Withdraws the queued notices `wd` names after this batch's own are in;
/// the audit records of those it reached.
async fn withdraw(tx: &mut impl Tx, wd: &Withdraw, now_ms: i64) -> Result<Vec<Entry>> {
    let (column, key, purpose, reason) = match wd {
        Withdraw::Case(id, r) => ("case_id", id, None, r),
        Withdraw::Recipient(code, r) => ("recipient", code, None, r),
        Withdraw::Purpose(code, p, r) => ("recipient", code, Some(p), r),
    };
    // One statement for both, so a notice a worker moves between `sending`
    // and `pending` meanwhile is caught in one state or the other
    // (PostgreSQL re-reads a row a worker had locked):
    // - still queued: cancelled;
    // - already handed to a gateway (`sending` was committed before the
    //   call): not recalled, but marked, recorded as in flight below, and
    //   not retried if that send does not go through.
    let update = Statement::new(
        format!(
            "UPDATE notices SET state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END, \
             last_error = CASE WHEN state = 'pending' THEN $1 ELSE last_error END, \
             withdrawn = CASE WHEN state = 'sending' THEN $1 ELSE withdrawn END \
             WHERE {column} = $2 AND (state = 'pending' OR (state = 'sending' AND withdrawn IS NULL)) \
             AND ($3 IS NULL OR purpose = $3) \
             RETURNING id, recipient, purpose, life_situation, version, channel, state"
        ),
        vec![reason.as_str().into(), key.as_str().into(), purpose.cloned().into()],
    );
    let reached = tx
        .query(&update, |r| {
            Ok(Reached {
                id: r.text("id")?,
                recipient: r.text("recipient")?,
                purpose: r.text("purpose")?,
                life_situation: r.text("life_situation")?,
                version: r.int("version")?,
                channel: r.opt_text("channel")?,
                state: r.text("state")?,
            })
        })
        .await?;
    let masked = crate::mask::mask_codes_in(reason);
    let why = format!("{}{reason}", crate::audit::plain::IN_FLIGHT);
    let mut entries = Vec::with_capacity(reached.len());
    for r in reached {
        let (kind, detail) = if r.state == "sending" {
            tx.execute(&Statement::new(
                "INSERT INTO deliveries (notice_id, channel, attempted_at, outcome, provider_id, error) \
                 VALUES ($1, $2, $3, 'in_flight', NULL, $4)",
                vec![
                    r.id.as_str().into(),
                    r.channel.as_deref().unwrap_or("outbox").into(),
                    now_ms.into(),
                    why.as_str().into(),
                ],
            ))
            .await?;
            ("notice.withdrawn_in_flight", serde_json::json!({ "reason": masked }))
        } else {
            let detail = serde_json::json!({
                "life_situation": r.life_situation, "version": r.version, "reason": masked,
            });
            ("notice.withdrawn", detail)
        };
        entries.push(Entry {
            kind: kind.into(),
            at: now_ms,
            purpose: Some(r.purpose),
            subject: Some(r.recipient),
            notice_id: Some(r.id),
            detail,
        });
    }
    Ok(entries)
}

pub(crate) fn claimed_from_row<R: Row>(r: &R) -> Result<ClaimedNotice>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let data: String = r.try_get("data")?;
    Ok(ClaimedNotice {
        id: r.try_get("id")?,
        case_id: r.try_get("case_id")?,
        life_situation: r.try_get("life_situation")?,
        version: r.try_get("version")?,
        step: r.try_get("step")?,
        recipient: r.try_get("recipient")?,
        purpose: r.try_get("purpose")?,
        template: r.try_get("template")?,
        data: serde_json::from_str(&data)?,
        draft_ref: r.try_get("draft_ref")?,
        attempts: r.try_get("attempts")?,
        priority: r.try_get("priority")?,
        digest_id: r.try_get("digest_id")?,
    })
}

/// The audit record of a notice the engine made: what made it and for whom,
/// persons by pseudonym only.
fn created_entry(audit: &Audit, n: &NoticeRow, now_ms: i64) -> Entry {
    let t = &n.trace;
    Entry {
        kind: "notice.created".into(),
        at: now_ms,
        purpose: Some(n.purpose.clone()),
        subject: Some(n.recipient.clone()),
        notice_id: Some(n.id.clone()),
        detail: serde_json::json!({
            "life_situation": n.life_situation,
            "version": n.version,
            "step": n.step,
            "rule": t.rule,
            "template": n.template,
            "state": n.state,
            "legal_effect": t.legal_effect,
            "event": { "source": t.event.source, "external_id": t.event.external_id, "type": t.event.event_type },
            "via": t.via,
            "about": t.addressed_to.as_deref().filter(|a| *a != n.recipient).map(|a| audit.pseudonym(a)),
            "mandates": t.mandates.iter().map(|m| serde_json::json!({
                "representative": audit.pseudonym(&m.representative), "copy": m.copy,
            })).collect::<Vec<_>>(),
            "due_at": n.due_at,
        }),
    }
}
