//! Opening birth-date cases ahead of their first step. A life situation that
//! counts only from a person's birth date (school age, coming of age, the
//! state pension age) would otherwise keep a case from the birth record on,
//! for decades: a population's backfill wrote three such cases per person,
//! most of what it wrote. Instead, the birth record leaves its trace in the
//! person's profile (birth date, the record's seq), and the engine opens the
//! case once its first step is within [`HORIZON_MS`] (less up to a
//! [`STEP_MS`]), reading the people born in the matching window of dates
//! from an index — never a scan of every profile. A correction of the birth date moves the profile, so the case
//! opens from the right date; a death takes the person out of the index.
//! What a case does once open is unchanged.

use anyhow::Result;
use chrono::{Duration, NaiveDate};

use super::cases::{self, Case};
use super::definitions::LifeSituation;
use super::evaluate::{case_id, event_day};
use super::{BatchReport, Engine, RuleSet};
use crate::events::EventRow;
use crate::store::{BatchWrite, Born};

/// How far ahead of its first step a birth-date case opens: 400 days, so
/// that a case is open (seen by citizens' pages and by the events that drop
/// its steps, such as an early pension application) for over a year before
/// it speaks, while a population's backfill opens only the next year's.
pub const HORIZON_MS: i64 = 400 * 86_400_000;

/// The horizon moves in steps of at least this much, so that a case opens
/// between 370 and 400 days ahead: opening a day's births every day was a
/// dozen statements and three commits a day for nothing the extra month
/// changes (serve fires timers every second; a simulated year, every day).
pub const STEP_MS: i64 = 30 * 86_400_000;

/// People read and cases opened per transaction.
const CHUNK: i64 = 5_000;

impl Engine {
    /// Opens the cases of birth-date life situations whose first step falls
    /// within the horizon from now, for every such life situation of the
    /// rule set, and records how far each has been opened. Idempotent: a
    /// case that exists, in any state, is not opened again.
    pub async fn open_ahead(&self) -> Result<BatchReport> {
        let rules = self.rules.get();
        let now_ms = self.clock.now_ms();
        let target = now_ms + HORIZON_MS;
        let mut report = BatchReport::default();
        for (id, from) in self.openings_due(&rules, now_ms).await? {
            let id = id.as_str();
            let Some((lo, hi)) = birth_window(&rules, id, from, now_ms, target) else { continue };
            let mut after: Option<Born> = None;
            loop {
                let born = self.db.born_between(lo, hi, after.as_ref(), CHUNK).await?;
                let last = (born.len() as i64) < CHUNK;
                after = born.last().cloned();
                let ids: Vec<String> = born.iter().map(|b| case_id(id, &b.subject, &b.subject)).collect();
                let existing = self.db.existing_case_ids(&ids).await?;
                let seqs: Vec<i64> = born
                    .iter()
                    .zip(&ids)
                    .filter(|(_, cid)| !existing.contains(*cid))
                    .map(|(b, _)| b.birth_seq)
                    .collect();
                let records = self.db.events_by_seq(&seqs).await?;
                let opened: Vec<Case> = records.iter().filter_map(|e| opening(&rules, id, e, now_ms, target)).collect();
                report.cases += opened.len();
                let w = BatchWrite {
                    cases: opened,
                    openings: if last { vec![(id.to_string(), target)] } else { Vec::new() },
                    ..BatchWrite::default()
                };
                if !w.cases.is_empty() || last {
                    self.db.commit_batch(&w, now_ms, &self.audit).await?;
                    report.batches += 1;
                }
                if last {
                    break;
                }
            }
        }
        if report.cases > 0 {
            tracing::info!(cases = report.cases, "birth-date cases opened ahead of their first step");
        }
        Ok(report)
    }

    /// Whether [`Engine::open_ahead`] has anything to do now: it writes, so
    /// a caller with a commit in flight waits for that first rather than
    /// have the two contend for the database.
    pub async fn opening_due(&self) -> Result<bool> {
        Ok(!self.openings_due(&self.rules.get(), self.clock.now_ms()).await?.is_empty())
    }

    /// The birth-date life situations in force whose horizon has moved on by
    /// a step, with how far each was opened before.
    async fn openings_due(&self, rules: &RuleSet, now_ms: i64) -> Result<Vec<(String, Option<i64>)>> {
        // One not yet in force opens nothing, and keeps its window for the
        // day it is; one whose later version no longer opens from the birth
        // date still opens the cases that waited under the earlier one.
        let today = event_day(now_ms);
        let mut ids: Vec<&str> = rules
            .situations
            .iter()
            .filter(|d| d.opens_from_birth_date())
            .map(|d| d.id.as_str())
            .filter(|id| rules.situations.iter().any(|d| d.id == *id && d.in_force_on(today)))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort_unstable();
        ids.dedup();
        let through = self.db.openings_through().await?;
        let target = now_ms + HORIZON_MS;
        Ok(ids
            .into_iter()
            .map(|id| (id.to_string(), through.get(id).copied()))
            .filter(|(_, from)| from.is_none_or(|t| target - t >= STEP_MS))
            .collect())
    }
}

/// The birth dates whose dated steps may fall after `from` (the horizon
/// reached before; on the first opening, now less the longest grace, so that
/// steps just past due that may still run are found) and up to `target`,
/// with a few days' slack for month and year arithmetic; every version of the
/// life situation is counted in.
fn birth_window(
    rules: &RuleSet,
    id: &str,
    from: Option<i64>,
    now_ms: i64,
    target: i64,
) -> Option<(NaiveDate, NaiveDate)> {
    let today = event_day(now_ms);
    let reach: Vec<(i64, i64, i64)> =
        rules.situations.iter().filter(|d| d.id == id).filter_map(|d| cases::anchor_reach(d, today)).collect();
    let nearest = reach.iter().map(|r| r.0).min()?;
    let farthest = reach.iter().map(|r| r.1).max()?;
    let grace = reach.iter().map(|r| r.2).max()?;
    let start = match from {
        Some(t) => event_day(t),
        None => today - Duration::days(grace),
    };
    let slack = Duration::days(3);
    Some((start - Duration::days(farthest) - slack, event_day(target) - Duration::days(nearest) + slack))
}

/// The case a birth record opens for life situation `id` now, if one of its
/// steps is still to run and the first of them is due by `target`; the
/// version is the one in force today, as for any dated life situation. That
/// version may no longer open from the birth date (a law that added a step
/// at the birth): people whose case waited under the old one still get theirs,
/// its steps that count from the long-past birth record skipped as too old.
fn opening(rules: &RuleSet, id: &str, e: &EventRow, now_ms: i64, target: i64) -> Option<Case> {
    let d: &LifeSituation =
        rules.triggered_by(&e.event_type, event_day(e.occurred_at), event_day(now_ms)).find(|d| d.id == id)?;
    let anchor = cases::anchor_of(d, &e.data);
    let too_old = now_ms - e.occurred_at > d.trigger.max_age.as_millis() as i64;
    let plan = cases::plan_steps(d, e.occurred_at, anchor, now_ms, too_old, None);
    if cases::first_pending(&plan).is_none_or(|(_, due)| due > target) {
        return None;
    }
    Some(Case::started(d, e, e.subject.clone(), anchor, plan))
}

/// A birth-date life situation whose case has not opened yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Life-situation id.
    pub life_situation: String,
    /// Its first step still to run.
    pub step: String,
    /// When that step is due (ms).
    pub due: i64,
}

/// The birth-date life situations that will open a case for this person
/// (they have a birth record and are alive) but have none yet among
/// `opened`, with the first step each will run, as of `now_ms`.
pub fn waiting(rules: &RuleSet, p: &crate::engine::profile::Profile, opened: &[String], now_ms: i64) -> Vec<Waiting> {
    if p.birth_seq.is_none() || p.is_deceased() || p.birth_date.is_none() {
        return Vec::new();
    }
    let today = event_day(now_ms);
    let mut out: Vec<Waiting> = Vec::new();
    for d in rules.situations.iter().filter(|d| d.opens_from_birth_date() && d.in_force_on(today)) {
        if opened.contains(&d.id) || out.iter().any(|w| w.life_situation == d.id) {
            continue;
        }
        let plan = cases::plan_steps(d, now_ms, p.birth_date, now_ms, false, None);
        if let Some((step, due)) = cases::first_pending(&plan) {
            out.push(Waiting { life_situation: d.id.clone(), step: step.to_string(), due });
        }
    }
    out
}
