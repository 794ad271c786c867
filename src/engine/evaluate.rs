//! One batch, evaluated without touching the database: profiles are updated
//! in event order; events that concern open cases cancel them, drop their
//! waiting steps or run their `on` steps; triggered life situations start
//! cases with a plan of timed steps; and due steps of waiting cases run.
//! Every rule's decisions become notices and drafts with derived ids.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Riga;
use rhai::{Dynamic, Map};
use sha2::Digest;
use uuid::Uuid;

use super::cases::{self, Case, StepState};
use super::definitions::{LifeSituation, Status, Step};
use super::profile::{CODE_FIELDS, Profile, ProfileKind};
use super::rules::{Decision, Lookup, RuleInput};
use super::{BatchReport, RuleSet};
use crate::audit::trace::{EventRef, MandateSeen, NoticeTrace, Via};
use crate::audit::{Entry, plain};
use crate::events::EventRow;
use crate::events::codes::normalize_subject;
use crate::store::{BatchWrite, Dated, DraftLink, DraftRow, NoticeRow, OutcomeRow, Withdraw};

/// Namespace of every id `proactive` derives, so ids are stable across processes and versions.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_9a8e_37d2_4c61_b0a4_2e7d_91c3_0b6a);

/// What evaluation needs besides the batch itself.
pub struct EvalContext {
    /// The rule set in force.
    pub rules: Arc<RuleSet>,
    /// The engine's "now" for this batch.
    pub now: DateTime<Utc>,
}

/// What the store held for a batch: the events, and everything they may touch.
#[derive(Default)]
pub struct BatchInput {
    /// Pending events, in log order (empty for a timer batch).
    pub events: Vec<EventRow>,
    /// Profiles of every code the events name, and their relatives.
    pub profiles: Vec<Profile>,
    /// Cases the events may start again, concern or annul; for a timer batch, the due cases.
    pub cases: Vec<Case>,
    /// Drafts that tie events to cases.
    pub drafts: Vec<DraftLink>,
    /// The trigger events of those cases.
    pub triggers: Vec<EventRow>,
    /// Events that `change.annulled` events in the batch name.
    pub annulled: Vec<EventRow>,
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

/// Every code the events name (subjects and code fields), for one prefetch.
pub fn codes_named<'a>(events: impl IntoIterator<Item = &'a EventRow>) -> Vec<String> {
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
pub fn candidate_cases<'a>(
    rules: &RuleSet,
    now_ms: i64,
    events: impl IntoIterator<Item = &'a EventRow>,
) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        for d in rules.triggered_by(&e.event_type, event_day(e.occurred_at), event_day(now_ms)) {
            out.push(case_id(&d.id, &e.subject, &d.fact_for(&e.subject, &e.event_type, &e.data)));
        }
    }
    out
}

fn kind_of(code: &str) -> ProfileKind {
    // Canonical personal codes carry a hyphen; registration numbers never do.
    if code.contains('-') { ProfileKind::Person } else { ProfileKind::Company }
}

/// The state of one batch's evaluation.
struct Eval<'a> {
    ctx: &'a EvalContext,
    now_ms: i64,
    w: BatchWrite,
    report: BatchReport,
    lookup: Lookup,
    dirty: HashSet<String>,
    cases: HashMap<String, Case>,
    touched: Vec<String>,
    touched_set: HashSet<String>,
    open_by_subject: HashMap<String, Vec<String>>,
    by_trigger: HashMap<i64, Vec<String>>,
    draft_case: HashMap<String, String>,
    drafts_of: HashMap<String, Vec<(String, String)>>,
    triggers: HashMap<i64, EventRow>,
    annulled: HashMap<(String, String), EventRow>,
    params_cache: HashMap<(String, i64, NaiveDate), Dynamic>,
}

impl<'a> Eval<'a> {
    fn new(ctx: &'a EvalContext, input: BatchInput) -> Self {
        let today = ctx.now.with_timezone(&Riga).date_naive();
        let profiles = input.profiles.into_iter().map(|p| (p.subject.clone(), p)).collect();
        let mut ev = Eval {
            ctx,
            now_ms: ctx.now.timestamp_millis(),
            w: BatchWrite::default(),
            report: BatchReport::default(),
            lookup: Lookup::new(profiles, today, ctx.rules.municipalities.clone(), ctx.rules.calendar.clone()),
            dirty: HashSet::new(),
            cases: HashMap::new(),
            touched: Vec::new(),
            touched_set: HashSet::new(),
            open_by_subject: HashMap::new(),
            by_trigger: HashMap::new(),
            draft_case: HashMap::new(),
            drafts_of: HashMap::new(),
            triggers: input.triggers.into_iter().map(|e| (e.seq, e)).collect(),
            annulled: input.annulled.into_iter().map(|e| ((e.source.clone(), e.external_id.clone()), e)).collect(),
            params_cache: HashMap::new(),
        };
        for c in input.cases {
            ev.index_case(c);
        }
        for d in input.drafts {
            ev.index_draft(&d.reference, &d.case_id, &d.service_id, &d.applicant);
        }
        ev
    }

    fn index_case(&mut self, c: Case) {
        if c.state == cases::OPEN {
            let ids = self.open_by_subject.entry(c.subject.clone()).or_default();
            if !ids.contains(&c.id) {
                ids.push(c.id.clone());
            }
        }
        let ids = self.by_trigger.entry(c.trigger_seq).or_default();
        if !ids.contains(&c.id) {
            ids.push(c.id.clone());
        }
        self.cases.insert(c.id.clone(), c);
    }

    fn index_draft(&mut self, reference: &str, case_id: &str, service: &str, applicant: &str) {
        self.draft_case.insert(reference.to_string(), case_id.to_string());
        let of = self.drafts_of.entry(applicant.to_string()).or_default();
        let link = (service.to_string(), case_id.to_string());
        if !of.contains(&link) {
            of.push(link);
        }
    }

    fn touch(&mut self, id: &str) {
        if !self.touched_set.contains(id) {
            self.touched_set.insert(id.to_string());
            self.touched.push(id.to_string());
        }
    }

    fn profile_mut(&mut self, code: &str) -> &mut Profile {
        self.lookup.profiles.entry(code.to_string()).or_insert_with(|| Profile::new(code, kind_of(code)))
    }

    /// Applies an event to its subject's profile and to the relatives it names.
    fn update_profiles(&mut self, e: &EventRow) {
        if self.profile_mut(&e.subject).apply(e) {
            self.dirty.insert(e.subject.clone());
        }
        if e.event_type == "document.issued"
            && let Some(expires) = e.data.get("expires").and_then(|v| v.as_str())
        {
            let d = Dated { subject: e.subject.clone(), date: expires.to_string(), seq: e.seq };
            self.w.documents.push(d);
        }
        for f in ["mother", "father", "spouse"] {
            if let Some(code) = e.data.get(f).and_then(|v| v.as_str())
                && code != e.subject
                && self.profile_mut(code).apply_as_relative(e)
            {
                self.dirty.insert(code.to_string());
            }
        }
    }

    fn event(&mut self, e: &EventRow) {
        self.w.processed.push(e.seq);
        if let Some(entry) = consent_entry(e, self.now_ms) {
            self.w.audit.push(entry);
        }
        self.triggers.entry(e.seq).or_insert_with(|| e.clone());
        let day = event_day(e.occurred_at);
        self.lookup.today.set(day);
        self.update_profiles(e);
        if e.event_type == "change.annulled" {
            self.annul(e);
        }
        if self.ctx.rules.is_listened(&e.event_type) {
            self.concern(e);
        }
        let rules = self.ctx.rules.clone();
        for d in rules.triggered_by(&e.event_type, day, event_day(self.now_ms)) {
            self.trigger(d, e);
        }
    }

    /// `change.annulled`: undo what the named change set in profiles and
    /// cancel the cases it started.
    fn annul(&mut self, e: &EventRow) {
        let Some(target) = e.data.get("annuls").and_then(|v| v.as_str()) else { return };
        let Some(old) = self.annulled.get(&(e.source.clone(), target.to_string())).cloned() else {
            self.w.outcomes.push(OutcomeRow {
                event_seq: e.seq,
                life_situation: String::new(),
                step: None,
                outcome: "annulment_unmatched".into(),
                detail: format!("change {target} of source {} is not in the event log; nothing to annul", e.source),
            });
            return;
        };
        let mut codes = vec![old.subject.clone()];
        codes.extend(CODE_FIELDS.iter().filter_map(|f| old.data.get(*f).and_then(|v| v.as_str()).map(String::from)));
        for c in codes {
            if self.lookup.profiles.get_mut(&c).is_some_and(|p| p.unapply(&old)) {
                self.dirty.insert(c);
            }
        }
        let reason = format!("the change {} ({}) that started it was annulled", old.external_id, old.event_type);
        for id in self.by_trigger.get(&old.seq).cloned().unwrap_or_default() {
            self.end_case(&id, &reason);
        }
    }

    /// Open cases this event concerns: by subject, by a draft it names, or
    /// by an application from a draft's applicant for that draft's service.
    fn concerned(&self, e: &EventRow) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::new();
        // Found by subject only while no draft of the case names it too.
        let mut add = |id: &String, by_subject: bool| match out.iter_mut().find(|(x, _)| x == id) {
            Some((_, s)) => *s &= by_subject,
            None => out.push((id.clone(), by_subject)),
        };
        for id in self.open_by_subject.get(&e.subject).into_iter().flatten() {
            add(id, true);
        }
        if let Some(id) = e.data.get("draft_ref").and_then(|v| v.as_str()).and_then(|r| self.draft_case.get(r)) {
            add(id, false);
        }
        if let Some(service) = e.data.get("service_id").and_then(|v| v.as_str()) {
            for (s, id) in self.drafts_of.get(&e.subject).into_iter().flatten() {
                if s == service {
                    add(id, false);
                }
            }
        }
        out.retain(|(id, _)| self.cases.get(id).is_some_and(|c| c.state == cases::OPEN));
        out
    }

    fn concern(&mut self, e: &EventRow) {
        let rules = self.ctx.rules.clone();
        if e.event_type == "death.registered" {
            self.w.withdraw.push(Withdraw::Recipient(e.subject.clone(), plain::RECIPIENT_DIED.into()));
        }
        // A refusal of a purpose on every channel withdraws what is queued for
        // it at once; one on a single channel is for routing to respect.
        if matches!(e.event_type.as_str(), "consent.refused" | "consent.withdrawn")
            && e.data.get("channel").is_none_or(|c| c.is_null())
            && let Some(purpose) = e.data.get("purpose").and_then(|p| p.as_str())
        {
            let reason = plain::refused_reason(purpose, &e.event_type, event_day(e.occurred_at));
            self.w.withdraw.push(Withdraw::Purpose(e.subject.clone(), purpose.to_string(), reason));
        }
        for (id, by_subject) in self.concerned(e) {
            let Some(c) = self.cases.get(&id) else { continue };
            let Some(d) = rules.get(&c.life_situation, c.version) else { continue };
            if e.event_type == "death.registered"
                && by_subject
                && !d.trigger.events.iter().any(|t| t == "death.registered")
            {
                self.end_case(&id, plain::SUBJECT_DIED);
                continue;
            }
            // The same fact again (a correction under a new change id) is
            // its own case's trigger, not a reason to end it.
            if d.trigger.events.contains(&e.event_type) && d.fact_for(&e.subject, &e.event_type, &e.data) == c.fact {
                continue;
            }
            let trigger_data = self.triggers.get(&c.trigger_seq).map(|t| t.data.clone());
            let cancel = d.cancel.iter().find(|k| {
                k.events.contains(&e.event_type)
                    && k.same.iter().all(|f| {
                        let theirs = trigger_data.as_ref().and_then(|t| t.get(f));
                        theirs.is_some() && theirs == e.data.get(f)
                    })
            });
            if let Some(k) = cancel {
                let reason = plain::ended_reason(&k.reason, &e.event_type, event_day(e.occurred_at));
                self.end_case(&id, &reason);
                continue;
            }
            // An application found by its applicant alone is about this case
            // only if it is for one of the life situation's services: a
            // pensioner's application for something else keeps the pension
            // reminder. One found by the case's own drafts always is.
            let service = e.data.get("service_id").and_then(|v| v.as_str());
            if by_subject && service.is_some_and(|s| !d.services.iter().any(|x| x == s)) {
                continue;
            }
            let mut changed = false;
            let Some(c) = self.cases.get_mut(&id) else { continue };
            for s in d.steps.iter().filter(|s| s.unless.contains(&e.event_type)) {
                if c.plan.get(&s.id).is_some_and(|p| p.state == StepState::Pending) {
                    let why = format!("{} arrived on {}", e.event_type, event_day(e.occurred_at));
                    c.mark(&s.id, StepState::Skipped, self.now_ms, Some(why));
                    changed = true;
                }
            }
            if changed {
                c.settle();
                self.touch(&id);
            }
            for s in d.steps.iter().filter(|s| s.on.contains(&e.event_type)) {
                self.run_step(d, &id, s, e, e.occurred_at);
            }
        }
    }

    /// Ends a case early and withdraws its queued notices.
    fn end_case(&mut self, id: &str, reason: &str) {
        let Some(c) = self.cases.get_mut(id) else { return };
        if c.state != cases::OPEN {
            return;
        }
        c.cancel(reason, self.now_ms);
        self.w.withdraw.push(Withdraw::Case(id.to_string(), reason.to_string()));
        self.touch(id);
    }

    fn trigger(&mut self, d: &LifeSituation, e: &EventRow) {
        let fact = d.fact_for(&e.subject, &e.event_type, &e.data);
        let cid = case_id(&d.id, &e.subject, &fact);
        let too_old = self.now_ms - e.occurred_at > d.trigger.max_age.as_millis() as i64;
        let anchor = cases::anchor_of(d, &e.data);
        if let Some(c) = self.cases.get(&cid) {
            let rules = self.ctx.rules.clone();
            match rules.get(&c.life_situation, c.version) {
                Some(cd)
                    if c.state == cases::OPEN
                        && cd.trigger.anchor.is_some()
                        && anchor.is_some()
                        && anchor != c.anchor =>
                {
                    let detail = format!(
                        "the anchor date moved from {} to {}: the case's waiting steps were rescheduled",
                        c.anchor.map_or("none".into(), |a| a.to_string()),
                        anchor.map_or("none".into(), |a| a.to_string())
                    );
                    let plan = cases::plan_steps(cd, c.started_at, anchor, self.now_ms, false, Some(&c.plan));
                    let c = self.cases.get_mut(&cid).expect("present");
                    c.anchor = anchor;
                    c.plan = plan;
                    c.settle();
                    self.touch(&cid);
                    self.outcome(e, d, None, "rescheduled", detail);
                }
                _ => self.outcome(
                    e,
                    d,
                    None,
                    "existing_case",
                    format!("case {cid} for this fact already exists; nothing started twice"),
                ),
            }
            return;
        }
        let starts_now: Vec<&Step> = d.steps.iter().filter(|s| !s.is_timed() && s.on.is_empty()).collect();
        let has_dated = d.steps.iter().any(|s| s.at.is_some());
        if too_old && !has_dated {
            let detail = format!(
                "event is {} days old, older than the trigger's max_age of {}: profiles updated, no case started",
                (self.now_ms - e.occurred_at) / 86_400_000,
                cases::days(d.trigger.max_age)
            );
            self.outcome(e, d, None, "skipped", detail);
            return;
        }
        let plan = cases::plan_steps(d, e.occurred_at, anchor, self.now_ms, too_old, None);
        if !plan.values().any(|p| p.state == StepState::Pending) && (too_old || starts_now.is_empty()) {
            // Nothing will ever run (a dated fact long past): record why, keep no case.
            let why: Vec<String> =
                plan.iter().map(|(k, p)| format!("{k}: {}", p.why.as_deref().unwrap_or("skipped"))).collect();
            self.outcome(e, d, None, "skipped", format!("no step left to run: {}", why.join("; ")));
            return;
        }
        if d.opens_from().is_some()
            && cases::first_pending(&plan).is_some_and(|(_, due)| due > self.now_ms + super::openings::HORIZON_MS)
        {
            // Opened from the profile (birth date, document in force)
            // when its first step comes within the horizon: engine::openings.
            return;
        }
        self.index_case(Case::started(d, e, fact, anchor, plan));
        self.touch(&cid);
        // A case's subject always has a stored profile (update_profiles made
        // it), even when this event changed nothing in it: the engine skips
        // looking for cases of subjects it has no profile of.
        if !self.dirty.contains(&e.subject) {
            self.dirty.insert(e.subject.clone());
        }
        self.report.cases += 1;
        if too_old && !starts_now.is_empty() {
            let detail = format!(
                "event is older than max_age {}: the steps that count from it do not run; dated steps still ahead do",
                cases::days(d.trigger.max_age)
            );
            self.outcome(e, d, None, "skipped", detail);
        } else {
            for s in starts_now {
                self.run_step(d, &cid, s, e, e.occurred_at);
            }
        }
        if let Some(c) = self.cases.get_mut(&cid) {
            c.settle();
        }
    }

    /// Runs the due steps of a case whose timer fired.
    fn timers(&mut self, id: &str) {
        let rules = self.ctx.rules.clone();
        let Some(c) = self.cases.get(id) else { return };
        let due = c.due_steps(self.now_ms);
        let Some(trigger) = self.triggers.get(&c.trigger_seq).cloned() else {
            let why = "the event that started the case is no longer in the log".to_string();
            self.end_case(id, &why);
            return;
        };
        let Some(d) = rules.get(&c.life_situation, c.version) else {
            let why = format!("version {} of {} is no longer loaded", c.version, c.life_situation);
            self.end_case(id, &why);
            return;
        };
        self.touch(id);
        for step_id in due {
            let Some(c) = self.cases.get(id) else { return };
            if c.state != cases::OPEN {
                return;
            }
            let Some(entry) = c.plan.get(&step_id).cloned() else { continue };
            if entry.state != StepState::Pending {
                continue; // an earlier step of this round skipped it
            }
            match d.steps.iter().find(|s| s.id == step_id) {
                Some(s) => {
                    self.lookup.today.set(event_day(self.now_ms));
                    let ok = self.run_step(d, id, s, &trigger, entry.due);
                    if let Some(c) = self.cases.get_mut(id)
                        && c.plan.get(&step_id).is_some_and(|p| p.state == StepState::Pending)
                        && ok
                    {
                        c.mark(&step_id, StepState::Fired, self.now_ms, None);
                    }
                    if ok {
                        self.report.steps += 1;
                    }
                }
                None => {
                    if let Some(c) = self.cases.get_mut(id) {
                        c.mark(
                            &step_id,
                            StepState::Skipped,
                            self.now_ms,
                            Some("the step is not in the definition".into()),
                        );
                    }
                }
            }
        }
        if let Some(c) = self.cases.get_mut(id) {
            c.settle();
        }
    }

    fn params(&mut self, d: &LifeSituation, day: NaiveDate) -> Dynamic {
        self.params_cache
            .entry((d.id.clone(), d.version, day))
            .or_insert_with(|| {
                rhai::serde::to_dynamic(super::schedule::params_on(&d.params, day)).unwrap_or(Dynamic::UNIT)
            })
            .clone()
    }

    /// Runs one step's rule and applies its decisions; a failure is recorded
    /// against the event and marks a timed step failed. Returns whether it ran.
    fn run_step(&mut self, d: &LifeSituation, cid: &str, step: &Step, e: &EventRow, due_ms: i64) -> bool {
        // A step earlier in this pass may have closed the case (close(), a cancel).
        let Some(c) = self.cases.get(cid).filter(|c| c.state == cases::OPEN) else { return false };
        let trigger = self.triggers.get(&c.trigger_seq).map(event_dynamic).unwrap_or(Dynamic::UNIT);
        let input = RuleInput {
            event: event_dynamic(e),
            trigger,
            case: case_dynamic(c),
            step: step_dynamic(&step.id, due_ms),
            params: self.params(d, self.lookup.today.get()),
        };
        let result = self
            .ctx
            .rules
            .rules
            .run(&step.rule, &input, &self.lookup)
            .and_then(|decisions| self.apply(d, cid, step, e, due_ms, decisions));
        match result {
            Ok(()) => true,
            Err(err) => {
                let msg = format!("rule {} (step {}): {err}", step.rule, step.id);
                self.report.errors += 1;
                tracing::warn!(life_situation = %d.id, step = %step.id, event_seq = e.seq, "rule failed; recorded against the event");
                if let Some(c) = self.cases.get_mut(cid) {
                    c.mark(&step.id, StepState::Failed, self.now_ms, Some(msg.clone()));
                }
                self.w.outcomes.push(OutcomeRow {
                    event_seq: e.seq,
                    life_situation: d.id.clone(),
                    step: Some(step.id.clone()),
                    outcome: "error".into(),
                    detail: msg,
                });
                false
            }
        }
    }

    /// Turns decisions into notices, drafts and changes of the case; checks
    /// them all before writing any, so a wrong decision writes nothing.
    fn apply(
        &mut self,
        d: &LifeSituation,
        cid: &str,
        step: &Step,
        e: &EventRow,
        due: i64,
        decisions: Vec<Decision>,
    ) -> Result<(), String> {
        let Some(c) = self.cases.get(cid) else { return Ok(()) };
        let started = cases::started_day(c);
        let state = if d.status == Status::Shadow { "shadow" } else { "pending" };
        let mut notices = Vec::new();
        let mut drafts = Vec::new();
        let mut step_drafts: HashMap<String, String> = HashMap::new();
        for dec in &decisions {
            if let Decision::Draft { to, draft, fields } = dec {
                let to = canonical(to).map_err(|m| format!("draft(): `to` {m}"))?;
                let def = d
                    .drafts
                    .get(draft)
                    .ok_or_else(|| format!("draft(): no draft named \"{draft}\" in the definition"))?;
                let reference = draft_ref(cid, started, draft, &to);
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
                    expires_at: self.now_ms + def.expires_after.as_millis() as i64,
                });
            }
        }
        let mut close = None;
        let mut skips = Vec::new();
        for dec in decisions {
            match dec {
                Decision::Notice { to, template, data } => {
                    let to = canonical(&to).map_err(|m| format!("notice(): `to` {m}"))?;
                    if !d.templates.contains_key(&template) {
                        return Err(format!("notice(): no template named \"{template}\" in the definition"));
                    }
                    let data = match data {
                        serde_json::Value::Object(m) => m,
                        serde_json::Value::Null => serde_json::Map::new(),
                        _ => return Err("notice(): data must be a map".into()),
                    };
                    let purpose = d.step_purpose(step).to_string();
                    let mandates = self.mandates_seen(&to, &purpose);
                    for (recipient, on_behalf, via) in self.final_recipients(&to, &purpose) {
                        if notices.iter().any(|n: &NoticeRow| n.recipient == recipient && n.template == template) {
                            continue; // the same message to the same person once per step
                        }
                        let mut data = data.clone();
                        if let Some(of) = on_behalf {
                            // Templates may say whom it is about; the notice is for the one who acts.
                            data.insert("on_behalf_of".into(), of.into());
                        }
                        notices.push(NoticeRow {
                            id: notice_id(cid, &step.id, due, &recipient),
                            case_id: cid.to_string(),
                            life_situation: d.id.clone(),
                            version: d.version,
                            step: step.id.clone(),
                            draft_ref: step_drafts.get(&recipient).or_else(|| step_drafts.get(&to)).cloned(),
                            recipient,
                            purpose: purpose.clone(),
                            template: template.clone(),
                            data: serde_json::Value::Object(data),
                            due_at: due,
                            available_at: due.max(self.now_ms),
                            state,
                            priority: i64::from(step.urgent || step.legal_effect),
                            trace: NoticeTrace {
                                life_situation: d.id.clone(),
                                version: d.version,
                                step: step.id.clone(),
                                rule: step.rule.clone(),
                                purpose: purpose.clone(),
                                legal_effect: step.legal_effect,
                                event: EventRef {
                                    seq: e.seq,
                                    source: e.source.clone(),
                                    external_id: e.external_id.clone(),
                                    event_type: e.event_type.clone(),
                                    occurred_at: e.occurred_at,
                                },
                                addressed_to: Some(to.clone()),
                                via,
                                mandates: mandates.clone(),
                                made_at: self.now_ms,
                                erased_at: None,
                            },
                        });
                    }
                }
                Decision::Close { reason } => close = Some(reason),
                Decision::Skip { step: s, reason } => {
                    if !d.steps.iter().any(|x| x.id == s) {
                        return Err(format!("skip(): no step named \"{s}\" in the definition"));
                    }
                    skips.push((s, reason));
                }
                Decision::Draft { .. } => {}
            }
        }
        // Two notices of one step to one person would share an id: keep the first.
        let mut seen = HashSet::new();
        notices.retain(|n| seen.insert(n.id.clone()));
        self.report.notices += notices.len();
        self.report.drafts += drafts.len();
        for dr in &drafts {
            self.index_draft(&dr.reference, cid, &dr.service_id, &dr.applicant);
        }
        self.w.notices.extend(notices);
        self.w.drafts.extend(drafts);
        let now = self.now_ms;
        if let Some(c) = self.cases.get_mut(cid) {
            for (s, reason) in skips {
                if c.plan.get(&s).is_some_and(|p| p.state == StepState::Pending) {
                    c.mark(&s, StepState::Skipped, now, Some(format!("rule {}: {reason}", step.rule)));
                }
            }
        }
        self.touch(cid);
        if let Some(reason) = close {
            if let Some(c) = self.cases.get_mut(cid) {
                c.mark(&step.id, StepState::Fired, now, None);
            }
            self.end_case(cid, &format!("closed by rule {}: {reason}", step.rule));
        }
        Ok(())
    }

    /// Who a notice addressed to `to` goes to, and on whose behalf: a minor
    /// (under 18 today) is reached through their guardians, else their living
    /// parents; an assisted person through the representative declared for
    /// them; a person who named a representative for this purpose through
    /// them (and also directly when the mandate asks for a copy); a company
    /// without an active e-address through its officers.
    fn final_recipients(&self, to: &str, purpose: &str) -> Vec<(String, Option<String>, Via)> {
        let today = self.lookup.today.get();
        let Some(p) = self.lookup.profiles.get(to) else { return vec![(to.to_string(), None, Via::Direct)] };
        let alive = |c: &String| self.lookup.profiles.get(c).is_none_or(|x| !x.is_deceased());
        if p.kind == ProfileKind::Person && p.age_on(today).is_some_and(|a| a < 18) && !p.is_deceased() {
            let adults: Vec<(String, Via)> = if p.guardians.is_empty() {
                [(&p.mother, Via::Mother), (&p.father, Via::Father)]
                    .into_iter()
                    .filter_map(|(c, via)| c.as_ref().filter(|c| alive(c)).map(|c| (c.clone(), via)))
                    .collect()
            } else {
                p.guardians.iter().map(|g| (g.clone(), Via::Guardian)).collect()
            };
            if !adults.is_empty() {
                return adults.into_iter().map(|(a, via)| (a, Some(to.to_string()), via)).collect();
            }
        }
        if let Some(rep) = p.assisted.as_ref().and_then(|a| a.representative.clone()) {
            return vec![(rep, Some(to.to_string()), Via::AssistedRepresentative)];
        }
        if p.kind == ProfileKind::Company && !p.eaddress_active && !p.officers.is_empty() {
            let mut officers: Vec<String> = p.officers.iter().map(|o| o.officer.clone()).collect();
            officers.sort();
            officers.dedup();
            return officers.into_iter().map(|o| (o, Some(to.to_string()), Via::Officer)).collect();
        }
        let mandates: Vec<&super::profile::Mandate> = p.mandates.iter().filter(|m| m.covers(purpose)).collect();
        if mandates.is_empty() {
            return vec![(to.to_string(), None, Via::Direct)];
        }
        let mut out: Vec<(String, Option<String>, Via)> =
            mandates.iter().map(|m| (m.representative.clone(), Some(to.to_string()), Via::Representative)).collect();
        if mandates.iter().any(|m| m.copy) {
            out.push((to.to_string(), None, Via::Copy));
        }
        out
    }

    /// The mandates of `to` that cover `purpose`, for the trace.
    fn mandates_seen(&self, to: &str, purpose: &str) -> Vec<MandateSeen> {
        self.lookup
            .profiles
            .get(to)
            .map(|p| {
                p.mandates
                    .iter()
                    .filter(|m| m.covers(purpose))
                    .map(|m| MandateSeen {
                        representative: m.representative.clone(),
                        purposes: m.purposes.clone(),
                        copy: m.copy,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn outcome(&mut self, e: &EventRow, d: &LifeSituation, step: Option<String>, outcome: &str, detail: String) {
        self.w.outcomes.push(OutcomeRow {
            event_seq: e.seq,
            life_situation: d.id.clone(),
            step,
            outcome: outcome.into(),
            detail,
        });
    }

    fn finish(mut self) -> (BatchWrite, BatchReport) {
        for id in std::mem::take(&mut self.touched) {
            if let Some(c) = self.cases.remove(&id) {
                self.w.cases.push(c);
            }
        }
        let dirty = std::mem::take(&mut self.dirty);
        self.w.profiles = dirty.into_iter().filter_map(|c| self.lookup.profiles.remove(&c)).collect();
        (self.w, self.report)
    }
}

/// Evaluates a batch of events in memory; the result is committed by the caller in one transaction.
pub fn evaluate_batch(ctx: &EvalContext, mut input: BatchInput) -> (BatchWrite, BatchReport) {
    let events = std::mem::take(&mut input.events);
    let mut ev = Eval::new(ctx, input);
    for e in &events {
        ev.event(e);
    }
    ev.report.events = events.len();
    ev.report.batches = 1;
    ev.finish()
}

/// Runs the due steps of the given cases (a timer batch), in due order.
pub fn evaluate_timers(ctx: &EvalContext, input: BatchInput) -> (BatchWrite, BatchReport) {
    let mut due: Vec<(i64, String)> =
        input.cases.iter().filter_map(|c| c.next_due().map(|t| (t, c.id.clone()))).collect();
    due.sort();
    let mut ev = Eval::new(ctx, input);
    for (_, id) in &due {
        ev.timers(id);
    }
    ev.report.timers = due.len();
    ev.report.batches = 1;
    ev.finish()
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

fn case_dynamic(c: &Case) -> Dynamic {
    let mut m = Map::new();
    m.insert("id".into(), c.id.clone().into());
    m.insert("life_situation".into(), c.life_situation.clone().into());
    m.insert("version".into(), c.version.into());
    m.insert("subject".into(), c.subject.clone().into());
    m.insert("fact".into(), c.fact.clone().into());
    m.insert("started".into(), cases::started_day(c).to_string().into());
    m.into()
}

fn step_dynamic(id: &str, due_ms: i64) -> Dynamic {
    let mut m = Map::new();
    m.insert("id".into(), id.into());
    m.insert("due".into(), event_day(due_ms).to_string().into());
    m.into()
}

/// The audit record of a consent change (`consent.granted|refused|withdrawn`).
fn consent_entry(e: &EventRow, now_ms: i64) -> Option<Entry> {
    if !matches!(e.event_type.as_str(), "consent.granted" | "consent.refused" | "consent.withdrawn") {
        return None;
    }
    let field = |k: &str| e.data.get(k).cloned().unwrap_or(serde_json::Value::Null);
    Some(Entry {
        kind: e.event_type.clone(),
        at: now_ms,
        purpose: e.data.get("purpose").and_then(|p| p.as_str()).map(String::from),
        subject: Some(e.subject.clone()),
        notice_id: None,
        detail: serde_json::json!({
            "channel": field("channel"),
            "text_version": field("text_version"),
            "event": { "source": e.source, "external_id": e.external_id, "type": e.event_type },
            "occurred_at": e.occurred_at,
        }),
    })
}

fn canonical(code: &str) -> Result<String, String> {
    normalize_subject(code).map(|(_, c)| c).map_err(|e| format!("is not a valid code: {e}"))
}
