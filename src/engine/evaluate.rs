//! One batch, evaluated without touching the database: profiles are updated
//! in event order, triggered life situations start their cases, and each
//! step's rule turns into notices and drafts with derived ids.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Riga;
use rhai::{Dynamic, Map};
use sha2::Digest;
use uuid::Uuid;

use super::definitions::{LifeSituation, Status};
use super::profile::{CODE_FIELDS, Profile, ProfileKind};
use super::rules::{Decision, Lookup, RuleInput};
use super::{BatchReport, RuleSet};
use crate::events::EventRow;
use crate::events::codes::normalize_subject;
use crate::store::{BatchWrite, CaseRow, DraftRow, NoticeRow, OutcomeRow};

/// Namespace of every id `proactive` derives, so ids are stable across processes and versions.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_9a8e_37d2_4c61_b0a4_2e7d_91c3_0b6a);

/// What evaluation needs besides the batch itself.
pub struct EvalContext {
    /// The rule set in force.
    pub rules: Arc<RuleSet>,
    /// The engine's "now" for this batch.
    pub now: DateTime<Utc>,
}

/// The day an event happened, in Latvian time.
pub fn event_day(occurred_at_ms: i64) -> NaiveDate {
    crate::clock::from_ms(occurred_at_ms).with_timezone(&Riga).date_naive()
}

/// A case's id: one per (life situation, subject, trigger fact).
pub fn case_id(ls: &str, subject: &str, fact: &str) -> String {
    Uuid::new_v5(&ID_NAMESPACE, format!("case|{ls}|{subject}|{fact}").as_bytes()).to_string()
}

/// A notice's id: one per (case, step, due time of the occurrence, final
/// recipient). It starts with the due time so that new notices land at the
/// end of the outbox's index instead of anywhere in it (a hash-first id
/// dirties a page per insert).
pub fn notice_id(case_id: &str, step: &str, due_ms: i64, recipient: &str) -> String {
    let h = Uuid::new_v5(&ID_NAMESPACE, format!("notice|{case_id}|{step}|{due_ms}|{recipient}").as_bytes());
    format!("{:011x}-{}", due_ms.max(0), &h.simple().to_string()[..24])
}

/// A draft's reference, short enough to read out on the phone; it starts
/// with the day the case started, for the same reason as notice ids.
pub fn draft_ref(case_id: &str, started: NaiveDate, draft: &str, applicant: &str) -> String {
    let h = hex::encode_upper(sha2::Sha256::digest(format!("draft|{case_id}|{draft}|{applicant}").as_bytes()));
    format!("PR-{}-{}-{}", started.format("%y%m%d"), &h[0..4], &h[4..8])
}

/// Every code the batch's events name (subjects and code fields), for one prefetch.
pub fn codes_named(events: &[EventRow]) -> Vec<String> {
    let mut set = HashSet::new();
    for e in events {
        set.insert(e.subject.clone());
        for f in CODE_FIELDS {
            if let Some(c) = e.data.get(*f).and_then(|v| v.as_str()) {
                set.insert(c.to_string());
            }
        }
    }
    set.into_iter().collect()
}

/// Ids of the cases the batch could start, to ask the store which exist.
pub fn candidate_cases(rules: &RuleSet, events: &[EventRow]) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        for d in rules.triggered_by(&e.event_type, event_day(e.occurred_at)) {
            out.push(case_id(&d.id, &e.subject, &d.fact_for(&e.subject, &e.event_type, &e.data)));
        }
    }
    out
}

fn kind_of(code: &str) -> ProfileKind {
    // Canonical personal codes carry a hyphen; registration numbers never do.
    if code.contains('-') { ProfileKind::Person } else { ProfileKind::Company }
}

/// Evaluates a batch in memory; the result is committed by the caller in one transaction.
pub fn evaluate_batch(
    ctx: &EvalContext,
    events: Vec<EventRow>,
    profiles: Vec<Profile>,
    mut existing: HashSet<String>,
) -> (BatchWrite, BatchReport) {
    let mut w = BatchWrite::default();
    let mut report = BatchReport::default();
    let lookup = Lookup {
        profiles: profiles.into_iter().map(|p| (p.subject.clone(), p)).collect(),
        today: Cell::new(ctx.now.with_timezone(&Riga).date_naive()),
    };
    let mut lookup = lookup;
    let mut dirty: HashSet<String> = HashSet::new();
    let mut params_cache: HashMap<(String, i64), Dynamic> = HashMap::new();
    let now_ms = ctx.now.timestamp_millis();
    for e in &events {
        w.processed.push(e.seq);
        let p =
            lookup.profiles.entry(e.subject.clone()).or_insert_with(|| Profile::new(&e.subject, kind_of(&e.subject)));
        if p.apply(e) {
            dirty.insert(e.subject.clone());
        }
        let day = event_day(e.occurred_at);
        for d in ctx.rules.triggered_by(&e.event_type, day) {
            let age_ms = now_ms - e.occurred_at;
            if age_ms > d.trigger.max_age.as_millis() as i64 {
                w.outcomes.push(OutcomeRow {
                    event_seq: e.seq,
                    life_situation: d.id.clone(),
                    step: None,
                    outcome: "skipped".into(),
                    detail: format!(
                        "event is {} days old, older than the trigger's max_age of {}: profiles updated, no case started",
                        age_ms / 86_400_000,
                        humantime::format_duration(d.trigger.max_age)
                    ),
                });
                continue;
            }
            let fact = d.fact_for(&e.subject, &e.event_type, &e.data);
            let cid = case_id(&d.id, &e.subject, &fact);
            if existing.contains(&cid) {
                w.outcomes.push(OutcomeRow {
                    event_seq: e.seq,
                    life_situation: d.id.clone(),
                    step: None,
                    outcome: "existing_case".into(),
                    detail: format!("case {cid} for this fact already exists; nothing started twice"),
                });
                continue;
            }
            let params = params_cache
                .entry((d.id.clone(), d.version))
                .or_insert_with(|| rhai::serde::to_dynamic(&d.params).unwrap_or(Dynamic::UNIT))
                .clone();
            lookup.today.set(day);
            match start_case(ctx, d, e, &cid, &fact, params, &lookup) {
                Ok((case, notices, drafts)) => {
                    existing.insert(cid);
                    report.cases += 1;
                    report.notices += notices.len();
                    report.drafts += drafts.len();
                    w.cases.push(case);
                    w.notices.extend(notices);
                    w.drafts.extend(drafts);
                }
                Err((step, err)) => {
                    report.errors += 1;
                    tracing::warn!(life_situation = %d.id, step = %step, event_seq = e.seq, "rule failed; recorded against the event");
                    w.outcomes.push(OutcomeRow {
                        event_seq: e.seq,
                        life_situation: d.id.clone(),
                        step: Some(step),
                        outcome: "error".into(),
                        detail: err,
                    });
                }
            }
        }
        lookup.today.set(ctx.now.with_timezone(&Riga).date_naive());
    }
    report.events = events.len();
    w.profiles = dirty.into_iter().filter_map(|c| lookup.profiles.remove(&c)).collect();
    (w, report)
}

fn event_dynamic(e: &EventRow) -> Dynamic {
    let at = crate::clock::from_ms(e.occurred_at).with_timezone(&Riga);
    let mut m = Map::new();
    m.insert("source".into(), e.source.clone().into());
    m.insert("id".into(), e.external_id.clone().into());
    m.insert("type".into(), e.event_type.clone().into());
    m.insert("subject".into(), e.subject.clone().into());
    m.insert("occurred_at".into(), at.to_rfc3339().into());
    m.insert("date".into(), at.date_naive().to_string().into());
    m.insert("data".into(), rhai::serde::to_dynamic(&e.data).unwrap_or(Dynamic::UNIT));
    m.into()
}

type Started = (CaseRow, Vec<NoticeRow>, Vec<DraftRow>);

/// Runs every step of a new case; any failing step fails the whole start, so
/// a fixed rule can start the case cleanly on a replay.
fn start_case(
    ctx: &EvalContext,
    d: &LifeSituation,
    e: &EventRow,
    cid: &str,
    fact: &str,
    params: Dynamic,
    lookup: &Lookup,
) -> Result<Started, (String, String)> {
    let mut case_map = Map::new();
    case_map.insert("id".into(), cid.into());
    case_map.insert("life_situation".into(), d.id.clone().into());
    case_map.insert("version".into(), d.version.into());
    case_map.insert("subject".into(), e.subject.clone().into());
    case_map.insert("fact".into(), fact.into());
    let input = RuleInput { event: event_dynamic(e), case: case_map.into(), params };
    let mut notices = Vec::new();
    let mut drafts = Vec::new();
    let state = if d.status == Status::Shadow { "shadow" } else { "pending" };
    let now_ms = ctx.now.timestamp_millis();
    for step in &d.steps {
        let fail = |msg: String| (step.id.clone(), format!("rule {} (step {}): {msg}", step.rule, step.id));
        let decisions = ctx.rules.rules.run(&step.rule, &input, lookup).map_err(fail)?;
        // Drafts offered in this step, by applicant: a notice to the same
        // person carries the reference, and delivery renders the draft's link.
        let mut step_drafts: HashMap<String, String> = HashMap::new();
        for dec in &decisions {
            if let Decision::Draft { to, draft, fields } = dec {
                let to = canonical(to).map_err(|m| fail(format!("draft(): `to` {m}")))?;
                let def = d
                    .drafts
                    .get(draft)
                    .ok_or_else(|| fail(format!("draft(): no draft named \"{draft}\" in the definition")))?;
                let reference = draft_ref(cid, event_day(e.occurred_at), draft, &to);
                let expires_at = now_ms + def.expires_after.as_millis() as i64;
                let fields: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::Object(o) if o.contains_key("value") && o.contains_key("source") => {
                                v.clone()
                            }
                            other => serde_json::json!({ "value": other, "source": "rule" }),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                step_drafts.insert(to.clone(), reference.clone());
                drafts.push(DraftRow {
                    reference,
                    case_id: cid.to_string(),
                    service_id: def.service_id.clone(),
                    applicant: to,
                    fields: serde_json::Value::Object(fields),
                    expires_at,
                });
            }
        }
        for dec in decisions {
            if let Decision::Notice { to, template, data } = dec {
                let to = canonical(&to).map_err(|m| fail(format!("notice(): `to` {m}")))?;
                if !d.templates.contains_key(&template) {
                    return Err(fail(format!("notice(): no template named \"{template}\" in the definition")));
                }
                let data = match data {
                    serde_json::Value::Object(m) => m,
                    serde_json::Value::Null => serde_json::Map::new(),
                    _ => return Err(fail("notice(): data must be a map".into())),
                };
                let draft_ref = step_drafts.get(&to).cloned();
                let due = e.occurred_at;
                notices.push(NoticeRow {
                    id: notice_id(cid, &step.id, due, &to),
                    case_id: cid.to_string(),
                    life_situation: d.id.clone(),
                    version: d.version,
                    step: step.id.clone(),
                    recipient: to,
                    purpose: d.step_purpose(step).to_string(),
                    template,
                    data: serde_json::Value::Object(data),
                    draft_ref,
                    due_at: due,
                    available_at: due.max(now_ms),
                    state,
                });
            }
        }
    }
    let case = CaseRow {
        id: cid.to_string(),
        life_situation: d.id.clone(),
        version: d.version,
        subject: e.subject.clone(),
        fact: fact.to_string(),
        trigger_seq: e.seq,
    };
    Ok((case, notices, drafts))
}

fn canonical(code: &str) -> Result<String, String> {
    normalize_subject(code).map(|(_, c)| c).map_err(|e| format!("is not a valid code: {e}"))
}
