//! The rules engine: takes pending events in batches, keeps profiles up to
//! date, starts the life situations they trigger, runs their rules, and
//! commits cases, notices and drafts with the events' processed mark in one
//! transaction.

pub mod calendar;
pub mod cases;
pub mod check;
pub mod commands;
pub mod definitions;
pub mod openings;
pub mod profile;
pub mod rule_tests;
pub mod rules;
pub mod ruleset;
pub mod schedule;
pub(crate) mod virtual_time;

mod evaluate;

pub use evaluate::{BatchInput, EvalContext, case_id, evaluate_batch, evaluate_timers, event_day, notice_id};
pub use ruleset::{LiveRules, RuleSet};

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::{DateTime, Utc};
use tracing::{Instrument, info_span};

use crate::clock::Clock;
use crate::metrics::{Stage, stage_timer};
use crate::store::Db;
use cases::Case;

/// The engine stage: one loop over the event log.
#[derive(Clone)]
pub struct Engine {
    db: Db,
    rules: LiveRules,
    clock: Clock,
    batch_size: usize,
    backlog_batch_size: usize,
    audit: crate::audit::Audit,
}

/// Events per transaction while a backlog lasts, by default: measured by the
/// schedule bench (200,000 people's backfill), 10,000 took 0.55 of the time
/// 1,000 did, and 30,000 or 100,000 no less than 10,000 with more memory.
pub const BACKLOG_BATCH_SIZE: usize = 10_000;

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events processed.
    pub events: usize,
    /// Cases started.
    pub cases: usize,
    /// Notices queued.
    pub notices: usize,
    /// Drafts prepared.
    pub drafts: usize,
    /// Rule errors recorded.
    pub errors: usize,
    /// Cases whose timers fired.
    pub timers: usize,
    /// Timed steps that ran.
    pub steps: usize,
    /// Transactions committed.
    pub batches: usize,
}

impl std::ops::AddAssign for BatchReport {
    fn add_assign(&mut self, o: Self) {
        self.events += o.events;
        self.cases += o.cases;
        self.notices += o.notices;
        self.drafts += o.drafts;
        self.errors += o.errors;
        self.timers += o.timers;
        self.steps += o.steps;
        self.batches += o.batches;
    }
}

impl Engine {
    /// An engine over `db` running `rules`, `batch_size` events a transaction.
    pub fn new(db: Db, rules: impl Into<LiveRules>, clock: Clock, batch_size: usize) -> Self {
        let audit = crate::audit::Audit::development();
        let batch_size = batch_size.max(1);
        Engine { db, rules: rules.into(), clock, batch_size, backlog_batch_size: batch_size, audit }
    }

    /// The same engine taking up to `n` events a batch after a full batch,
    /// until the backlog is gone (never fewer than its usual batch).
    pub fn with_backlog_batch(mut self, n: usize) -> Self {
        self.backlog_batch_size = n.max(self.batch_size);
        self
    }

    /// The same engine recording its batches with `audit`'s key and chains.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Reads and evaluates the next batch after `after_seq` without writing
    /// anything; `carry` is what the batch still being committed wrote, which
    /// the store may not show yet.
    async fn prepare(&self, after_seq: i64, carry: &Carry, limit: usize) -> Result<Option<Prepared>> {
        let reading = stage_timer(Stage::Read);
        let events = self.db.pending_events_after(after_seq, limit).await?;
        let Some(last) = events.last() else {
            // An idle poll is not a batch.
            reading.stop_and_discard();
            return Ok(None);
        };
        let last_seq = last.seq;
        let now = self.clock.now();
        let rules = self.rules.get();

        let annul_keys: Vec<(String, String)> = events
            .iter()
            .filter(|e| e.event_type == "change.annulled")
            .filter_map(|e| e.data.get("annuls").and_then(|v| v.as_str()).map(|a| (e.source.clone(), a.to_string())))
            .collect();
        let annulled = if annul_keys.is_empty() { Vec::new() } else { self.db.events_by_external(&annul_keys).await? };

        let mut input = BatchInput::default();
        let named: Vec<&crate::events::EventRow> = events.iter().chain(&annulled).collect();
        input.profiles = self.profiles_with_relatives(evaluate::codes_named(named.iter().copied()), carry).await?;
        // Every case's subject has a stored profile (the batch that made the
        // case wrote it), so an event about a subject the store and the batch
        // in flight know nothing of has no case to find: in a backfill, most
        // (a newborn's birth, a new company) are such, and their lookups of
        // would-be case ids were the larger part of reading a batch.
        let known: HashSet<&str> = input.profiles.iter().map(|p| p.subject.as_str()).collect();
        let mut case_ids = evaluate::candidate_cases(
            &rules,
            now.timestamp_millis(),
            named.iter().copied().filter(|e| known.contains(e.subject.as_str())),
        );
        let listened: Vec<&crate::events::EventRow> =
            events.iter().filter(|e| rules.is_listened(&e.event_type)).collect();
        let mut cases = Vec::new();
        if !listened.is_empty() {
            // A draft's applicant need not be a case's subject: drafts are looked up for every event.
            let subjects: Vec<String> =
                listened.iter().filter(|e| known.contains(e.subject.as_str())).map(|e| e.subject.clone()).collect();
            cases.extend(self.db.open_cases_of(&subjects).await?);
            let wanted: HashSet<&String> = subjects.iter().collect();
            cases.extend(
                carry.cases.values().filter(|c| c.state == cases::OPEN && wanted.contains(&c.subject)).cloned(),
            );
            let refs: Vec<String> = listened
                .iter()
                .filter_map(|e| e.data.get("draft_ref").and_then(|v| v.as_str()).map(String::from))
                .collect();
            let applicants: Vec<String> =
                listened.iter().filter(|e| e.data.get("service_id").is_some()).map(|e| e.subject.clone()).collect();
            if !refs.is_empty() || !applicants.is_empty() {
                let mut drafts = self.db.drafts_linked(&refs, &applicants).await?;
                let (by_ref, by_applicant): (HashSet<&String>, HashSet<&String>) =
                    (refs.iter().collect(), applicants.iter().collect());
                drafts.extend(
                    carry
                        .drafts
                        .iter()
                        .filter(|d| by_ref.contains(&d.reference) || by_applicant.contains(&d.applicant))
                        .cloned(),
                );
                case_ids.extend(drafts.iter().map(|d| d.case_id.clone()));
                input.drafts = drafts;
            }
        }
        cases.extend(self.load_cases_carried(&case_ids, carry).await?);
        // The carried (newer) copy of a case wins over the store's.
        let mut by_id: std::collections::HashMap<String, Case> = std::collections::HashMap::new();
        for c in cases {
            let c = carry.cases.get(&c.id).cloned().unwrap_or(c);
            by_id.insert(c.id.clone(), c);
        }
        let seqs: Vec<i64> = by_id.values().map(|c| c.trigger_seq).collect();
        input.triggers = self.db.events_by_seq(&seqs).await?;
        input.cases = by_id.into_values().collect();
        input.annulled = annulled;
        input.events = events;
        let ctx = EvalContext { rules, now };
        reading.stop_and_record();
        let _evaluate = stage_timer(Stage::Evaluate);
        let (write, report) = tokio::task::spawn_blocking(move || evaluate_batch(&ctx, input)).await?;
        Ok(Some(Prepared { write, report, last_seq, now_ms: now.timestamp_millis() }))
    }

    /// Cases by id, the carried copy where the batch in flight has one.
    async fn load_cases_carried(&self, ids: &[String], carry: &Carry) -> Result<Vec<Case>> {
        let mut out = self.db.load_cases(ids).await?;
        let loaded: HashSet<String> = out.iter().map(|c| c.id.clone()).collect();
        out.extend(ids.iter().filter(|i| !loaded.contains(*i)).filter_map(|i| carry.cases.get(i).cloned()));
        Ok(out)
    }

    /// Profiles of `codes` and of the relatives their profiles name (family,
    /// officers), so rules can look one step further without a query.
    async fn profiles_with_relatives(&self, codes: Vec<String>, carry: &Carry) -> Result<Vec<profile::Profile>> {
        let mut profiles = self.load_profiles_carried(&codes, carry).await?;
        let have: HashSet<String> = codes.into_iter().collect();
        let mut more: Vec<String> =
            profiles.iter().flat_map(|p| p.relatives()).filter(|c| !have.contains(*c)).cloned().collect();
        more.sort();
        more.dedup();
        if !more.is_empty() {
            profiles.extend(self.load_profiles_carried(&more, carry).await?);
        }
        Ok(profiles)
    }

    async fn load_profiles_carried(&self, codes: &[String], carry: &Carry) -> Result<Vec<profile::Profile>> {
        let mut profiles = self.db.load_profiles(codes).await?;
        for p in profiles.iter_mut() {
            if let Some(newer) = carry.profiles.get(&p.subject) {
                *p = newer.clone();
            }
        }
        let loaded: HashSet<String> = profiles.iter().map(|p| p.subject.clone()).collect();
        profiles.extend(codes.iter().filter(|c| !loaded.contains(*c)).filter_map(|c| carry.profiles.get(c).cloned()));
        Ok(profiles)
    }

    /// Fires one batch of due timers: the steps of cases whose due time has
    /// come, in due order, committed with the cases' new plans in one
    /// transaction. Returns what it did (no timers when none is due).
    pub async fn run_due_timers(&self) -> Result<BatchReport> {
        let Some(p) = self.prepare_timers(&HashMap::new()).await? else {
            return Ok(BatchReport::default());
        };
        self.db.commit_batch(&p.write, p.now_ms, &self.audit).await?;
        log_timers(&p.report);
        Ok(p.report)
    }

    /// Fires every timer due now, batch after batch (see [`Engine::fire_through`]).
    pub async fn fire_due(&self) -> Result<BatchReport> {
        self.fire_through([self.clock.now()]).await
    }

    /// Moves the clock to each of `moments` in turn (a virtual clock only
    /// goes forward; the system clock ignores it) and fires every timer due
    /// then, in due order. Batches are pipelined as events are: the next one,
    /// of the same moment or the next, is read and evaluated while the
    /// previous one commits, from the plans that batch gave its cases.
    pub async fn fire_through(&self, moments: impl IntoIterator<Item = DateTime<Utc>>) -> Result<BatchReport> {
        self.fire_through_or(moments, &|| false).await
    }

    /// [`Engine::fire_through`] until `stop` says so, between batches.
    async fn fire_through_or(
        &self,
        moments: impl IntoIterator<Item = DateTime<Utc>>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<BatchReport> {
        let mut total = BatchReport::default();
        let mut carry: HashMap<String, Case> = HashMap::new();
        let mut inflight: Inflight = None;
        for at in moments {
            self.clock.set(at);
            // Cases opened now may be due at once (a step within its grace),
            // so they open before this moment's timers are read.
            if self.opening_due().await? {
                total += settle(&mut inflight).await?;
                total += self.open_ahead().await?;
            }
            loop {
                // When nothing more is due now, the batch in flight goes on
                // committing while the next moment's batch is read; it is
                // awaited before any other commit starts.
                let next = if stop() { None } else { self.prepare_timers(&carry).await? };
                let Some(p) = next else { break };
                total += settle(&mut inflight).await?;
                carry = p.write.cases.iter().map(|c| (c.id.clone(), c.clone())).collect();
                let span = info_span!("engine.timers", cases = p.report.timers);
                inflight = Some(self.commit_behind(p, span, log_timers));
            }
        }
        total += settle(&mut inflight).await?;
        Ok(total)
    }

    /// Reads and evaluates the next batch of cases due now without writing;
    /// `carry` holds the cases the batch still being committed changed: the
    /// store still shows their old due times, so their new plans decide.
    async fn prepare_timers(&self, carry: &HashMap<String, Case>) -> Result<Option<Prepared>> {
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let reading = stage_timer(Stage::Read);
        // The store still shows the old due times of the cases the batch in
        // flight changed: their carried plans decide, without reading them.
        let is_due = |c: &Case| c.next_due().is_some_and(|t| t <= now_ms);
        let ids = self.db.due_case_ids(now_ms, (self.batch_size + carry.len()) as i64).await?;
        let ids: Vec<String> =
            ids.into_iter().filter(|id| carry.get(id).is_none_or(is_due)).take(self.batch_size).collect();
        let unread: Vec<String> = ids.iter().filter(|id| !carry.contains_key(*id)).cloned().collect();
        let mut read: HashMap<String, Case> =
            self.db.load_cases(&unread).await?.into_iter().map(|c| (c.id.clone(), c)).collect();
        let cases: Vec<Case> =
            ids.iter().filter_map(|id| carry.get(id).cloned().or_else(|| read.remove(id))).filter(is_due).collect();
        if cases.is_empty() {
            reading.stop_and_discard();
            return Ok(None);
        }
        let seqs: Vec<i64> = cases.iter().map(|c| c.trigger_seq).collect();
        let triggers = self.db.events_by_seq(&seqs).await?;
        let mut codes = evaluate::codes_named(&triggers);
        codes.extend(cases.iter().map(|c| c.subject.clone()));
        codes.sort();
        codes.dedup();
        let profiles = self.profiles_with_relatives(codes, &Carry::default()).await?;
        let input = BatchInput { profiles, cases, triggers, ..BatchInput::default() };
        let ctx = EvalContext { rules: self.rules.get(), now };
        reading.stop_and_record();
        let _evaluate = stage_timer(Stage::Evaluate);
        let (write, report) = tokio::task::spawn_blocking(move || evaluate_timers(&ctx, input)).await?;
        Ok(Some(Prepared { write, report, last_seq: 0, now_ms }))
    }

    /// Processes pending events, then due timers, until neither is left.
    pub async fn run_all_due(&self, stop: &(dyn Fn() -> bool + Sync)) -> Result<BatchReport> {
        let mut total = self.run_until_idle_or(stop).await?;
        if !stop() {
            total += self.fire_through_or([self.clock.now()], stop).await?;
        }
        Ok(total)
    }

    /// Processes one batch of pending events; returns what it did (zero events when idle).
    pub async fn run_batch(&self) -> Result<BatchReport> {
        let Some(p) = self.prepare(0, &Carry::default(), self.batch_size).await? else {
            return Ok(BatchReport::default());
        };
        commit(&self.db, &self.audit, p, log_batch).await
    }

    /// Processes batches until no event is pending.
    pub async fn run_until_idle(&self) -> Result<BatchReport> {
        self.run_until_idle_or(&|| false).await
    }

    /// Processes batches until no event is pending or `stop` says so. Batches
    /// are pipelined: the next one is read and evaluated while the previous
    /// one commits, and commits stay in order; a failed commit stops the run
    /// before anything evaluated on top of it is written. After a full batch
    /// the next takes up to the backlog batch size, until one comes back short.
    pub async fn run_until_idle_or(&self, stop: &(dyn Fn() -> bool + Sync)) -> Result<BatchReport> {
        let mut total = BatchReport::default();
        let mut after = 0;
        let mut carry = Carry::default();
        let mut inflight: Inflight = None;
        let mut limit = self.batch_size;
        loop {
            let next = if stop() { None } else { self.prepare(after, &carry, limit).await? };
            total += settle(&mut inflight).await?;
            let Some(p) = next else {
                return Ok(total);
            };
            after = p.last_seq;
            limit = if p.report.events >= limit { self.backlog_batch_size } else { self.batch_size };
            carry = Carry {
                profiles: p.write.profiles.iter().map(|x| (x.subject.clone(), x.clone())).collect(),
                cases: p.write.cases.iter().map(|c| (c.id.clone(), c.clone())).collect(),
                drafts: p
                    .write
                    .drafts
                    .iter()
                    .map(|d| crate::store::DraftLink {
                        reference: d.reference.clone(),
                        case_id: d.case_id.clone(),
                        service_id: d.service_id.clone(),
                        applicant: d.applicant.clone(),
                    })
                    .collect(),
            };
            let span = info_span!("engine.batch", events = p.report.events, last_seq = p.last_seq);
            inflight = Some(self.commit_behind(p, span, log_batch));
        }
    }
}

impl Engine {
    /// Commits `p` on a task of its own, so that the next batch can be read
    /// and evaluated meanwhile; `log` reports it once it is in.
    fn commit_behind(
        &self,
        p: Prepared,
        span: tracing::Span,
        log: fn(&BatchReport),
    ) -> tokio::task::JoinHandle<Result<BatchReport>> {
        let (db, audit) = (self.db.clone(), self.audit.clone());
        tokio::spawn(async move { commit(&db, &audit, p, log).await }.instrument(span))
    }
}

/// A batch committed on a task of its own, while the next is read and evaluated.
type Inflight = Option<tokio::task::JoinHandle<Result<BatchReport>>>;

/// Waits for the batch in flight, if there is one, to commit; what it did.
async fn settle(inflight: &mut Inflight) -> Result<BatchReport> {
    let Some(h) = inflight.take() else { return Ok(BatchReport::default()) };
    let _wait = stage_timer(Stage::Wait);
    h.await?
}

/// Commits `p` and reports it with `log` once it is in.
async fn commit(db: &Db, audit: &crate::audit::Audit, p: Prepared, log: fn(&BatchReport)) -> Result<BatchReport> {
    {
        let _commit = stage_timer(Stage::Commit);
        db.commit_batch(&p.write, p.now_ms, audit).await?;
    }
    log(&p.report);
    Ok(p.report)
}

/// What a batch being committed wrote, for the batch evaluated meanwhile.
#[derive(Default)]
struct Carry {
    profiles: std::collections::HashMap<String, profile::Profile>,
    cases: std::collections::HashMap<String, Case>,
    drafts: Vec<crate::store::DraftLink>,
}

/// A batch evaluated and ready to commit.
struct Prepared {
    write: crate::store::BatchWrite,
    report: BatchReport,
    last_seq: i64,
    now_ms: i64,
}

fn log_timers(r: &BatchReport) {
    tracing::info!(cases = r.timers, notices = r.notices, errors = r.errors, "timers fired");
}

fn log_batch(r: &BatchReport) {
    tracing::info!(
        events = r.events,
        cases = r.cases,
        notices = r.notices,
        drafts = r.drafts,
        errors = r.errors,
        "engine batch committed"
    );
}
