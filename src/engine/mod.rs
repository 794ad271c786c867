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
use tracing::info_span;

use crate::clock::Clock;
use crate::store::Db;

/// The engine stage: one loop over the event log.
#[derive(Clone)]
pub struct Engine {
    db: Db,
    rules: Arc<RuleSet>,
    clock: Clock,
    batch_size: usize,
    draft_link: String,
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
    /// An engine over `db` running `rules`; draft links start with `draft_link`.
    pub fn new(db: Db, rules: Arc<RuleSet>, clock: Clock, batch_size: usize, draft_link: String) -> Self {
        Engine { db, rules, clock, batch_size: batch_size.max(1), draft_link }
    }

    /// Replaces the rule set (after a successful reload).
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// Processes one batch of pending events; returns what it did (zero events when idle).
    pub async fn run_batch(&self) -> Result<BatchReport> {
        let events = self.db.pending_events(self.batch_size).await?;
        if events.is_empty() {
            return Ok(BatchReport::default());
        }
        let span = info_span!("engine.batch", events = events.len(), first_seq = events[0].seq);
        let _enter = span.enter();
        let now = self.clock.now();
        let codes = evaluate::codes_named(&events);
        let profiles = self.db.load_profiles(&codes).await?;
        let candidates = evaluate::candidate_cases(&self.rules, &events);
        let existing: HashSet<String> = self.db.existing_cases(&candidates).await?;
        let ctx = EvalContext { rules: self.rules.clone(), now, draft_link: self.draft_link.clone() };
        let (write, report) =
            tokio::task::spawn_blocking(move || evaluate_batch(&ctx, events, profiles, existing)).await?;
        self.db.commit_batch(&write, now.timestamp_millis()).await?;
        tracing::info!(
            events = report.events,
            cases = report.cases,
            notices = report.notices,
            drafts = report.drafts,
            errors = report.errors,
            "engine batch committed"
        );
        Ok(report)
    }

    /// Processes batches until no event is pending.
    pub async fn run_until_idle(&self) -> Result<BatchReport> {
        let mut total = BatchReport::default();
        loop {
            let r = self.run_batch().await?;
            if r.events == 0 {
                return Ok(total);
            }
            total += r;
        }
    }
}
