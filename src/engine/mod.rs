//! The rules engine: takes pending events in batches, keeps profiles up to
//! date, starts the life situations they trigger, runs their rules, and
//! commits cases, notices and drafts with the events' processed mark in one
//! transaction.

pub mod definitions;
pub mod profile;
pub mod rules;
pub mod ruleset;

mod evaluate;

pub use evaluate::{EvalContext, evaluate_batch};
pub use ruleset::RuleSet;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use tracing::{Instrument, info_span};

use crate::clock::Clock;
use crate::store::Db;

/// The engine stage: one loop over the event log.
#[derive(Clone)]
pub struct Engine {
    db: Db,
    rules: Arc<RuleSet>,
    clock: Clock,
    batch_size: usize,
}

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
}

impl std::ops::AddAssign for BatchReport {
    fn add_assign(&mut self, o: Self) {
        self.events += o.events;
        self.cases += o.cases;
        self.notices += o.notices;
        self.drafts += o.drafts;
        self.errors += o.errors;
    }
}

impl Engine {
    /// An engine over `db` running `rules`, `batch_size` events a transaction.
    pub fn new(db: Db, rules: Arc<RuleSet>, clock: Clock, batch_size: usize) -> Self {
        Engine { db, rules, clock, batch_size: batch_size.max(1) }
    }

    /// Replaces the rule set (after a successful reload).
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// Reads and evaluates the next batch after `after_seq` without writing
    /// anything; `carry` is what the batch still being committed wrote, which
    /// the store may not show yet.
    async fn prepare(&self, after_seq: i64, carry: &Carry) -> Result<Option<Prepared>> {
        let events = self.db.pending_events_after(after_seq, self.batch_size).await?;
        let Some(last) = events.last() else {
            return Ok(None);
        };
        let last_seq = last.seq;
        let now = self.clock.now();
        let codes = evaluate::codes_named(&events);
        let mut profiles = self.db.load_profiles(&codes).await?;
        for p in profiles.iter_mut() {
            if let Some(newer) = carry.profiles.get(&p.subject) {
                *p = newer.clone();
            }
        }
        let loaded: HashSet<String> = profiles.iter().map(|p| p.subject.clone()).collect();
        profiles.extend(codes.iter().filter(|c| !loaded.contains(*c)).filter_map(|c| carry.profiles.get(c).cloned()));
        let candidates = evaluate::candidate_cases(&self.rules, &events);
        let mut existing: HashSet<String> = self.db.existing_cases(&candidates).await?;
        existing.extend(candidates.into_iter().filter(|c| carry.cases.contains(c)));
        let ctx = EvalContext { rules: self.rules.clone(), now };
        let (write, report) =
            tokio::task::spawn_blocking(move || evaluate_batch(&ctx, events, profiles, existing)).await?;
        Ok(Some(Prepared { write, report, last_seq, now_ms: now.timestamp_millis() }))
    }

    /// Processes one batch of pending events; returns what it did (zero events when idle).
    pub async fn run_batch(&self) -> Result<BatchReport> {
        let Some(p) = self.prepare(0, &Carry::default()).await? else {
            return Ok(BatchReport::default());
        };
        self.db.commit_batch(&p.write, p.now_ms).await?;
        log_batch(&p.report);
        Ok(p.report)
    }

    /// Processes batches until no event is pending.
    pub async fn run_until_idle(&self) -> Result<BatchReport> {
        self.run_until_idle_or(&|| false).await
    }

    /// Processes batches until no event is pending or `stop` says so. Batches
    /// are pipelined: the next one is read and evaluated while the previous
    /// one commits, and commits stay in order; a failed commit stops the run
    /// before anything evaluated on top of it is written.
    pub async fn run_until_idle_or(&self, stop: &(dyn Fn() -> bool + Sync)) -> Result<BatchReport> {
        let mut total = BatchReport::default();
        let mut after = 0;
        let mut carry = Carry::default();
        let mut inflight: Option<tokio::task::JoinHandle<Result<BatchReport>>> = None;
        loop {
            let next = if stop() { None } else { self.prepare(after, &carry).await? };
            if let Some(h) = inflight.take() {
                total += h.await??;
            }
            let Some(p) = next else {
                return Ok(total);
            };
            after = p.last_seq;
            carry = Carry {
                profiles: p.write.profiles.iter().map(|x| (x.subject.clone(), x.clone())).collect(),
                cases: p.write.cases.iter().map(|c| c.id.clone()).collect(),
            };
            let db = self.db.clone();
            let span = info_span!("engine.batch", events = p.report.events, last_seq = p.last_seq);
            inflight = Some(tokio::spawn(
                async move {
                    db.commit_batch(&p.write, p.now_ms).await?;
                    log_batch(&p.report);
                    Ok(p.report)
                }
                .instrument(span),
            ));
        }
    }
}

/// What a batch being committed wrote, for the batch evaluated meanwhile.
#[derive(Default)]
struct Carry {
    profiles: std::collections::HashMap<String, profile::Profile>,
    cases: HashSet<String>,
}

/// A batch evaluated and ready to commit.
struct Prepared {
    write: crate::store::BatchWrite,
    report: BatchReport,
    last_seq: i64,
    now_ms: i64,
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
