//! Opening cases ahead of their first step from a profile's dates. A life
//! situation that counts only from a person's birth date (school age, coming
//! of age, the state pension age) or from a document's expiry (the passport
//! reminders) would otherwise keep a case from the record on, for years or
//! decades: a population's backfill wrote four such cases per person, most of
//! what it wrote. Instead the record leaves its trace in the person's profile
//! (birth date and the birth record's seq; the documents in force), and the
//! engine opens the case once its first step is within [`HORIZON_MS`] (less
//! up to a [`STEP_MS`]), reading the records whose date falls in the matching
//! window from an index, never a scan of every profile. A corrected birth
//! date moves the profile, so the case opens from the right date; a death
//! takes the person out; a new document of the kind, or the document's
//! invalidation, takes the old one out of the profile, which is what the
//! cancellations of such a life situation say (`LifeSituation::opens_from`).
//! What a case does once open is unchanged.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{Duration, NaiveDate};

use super::cases::{self, Case};
use super::definitions::{LifeSituation, OpensFrom};
use super::evaluate::event_day;
use super::profile::Profile;
use super::{BatchReport, Engine, RuleSet};
use crate::events::EventRow;
use crate::store::{BatchWrite, Dated};

/// How far ahead of its first step a case opens from the profile: 400 days, so
/// that a case is open (seen by citizens' pages and by the events that drop
/// its steps, such as an early pension application) for over a year before
/// it speaks, while a population's backfill opens only the next year's.
pub const HORIZON_MS: i64 = 400 * 86_400_000;

/// The horizon moves in steps of at least this much, so that a case opens
/// between 370 and 400 days ahead: opening a day's births every day was a
/// dozen statements and three commits a day for nothing the extra month
/// changes (serve fires timers every second; a simulated year, every day).
pub const STEP_MS: i64 = 30 * 86_400_000;

/// Records read and cases opened per transaction.
const CHUNK: i64 = 5_000;

impl Engine {
    /// Opens the cases of life situations that open from a profile's dates
    /// whose first step falls within the horizon from now, for every such
    /// life situation of the rule set, and records how far each has been
    /// opened. Idempotent: a case that exists, in any state, is not opened
    /// again.
    pub async fn open_ahead(&self) -> Result<BatchReport> {
        let _open = crate::metrics::stage_timer(crate::metrics::Stage::Open);
        let rules = self.rules.get();
        let now_ms = self.clock.now_ms();
        let target = now_ms + HORIZON_MS;
        let mut report = BatchReport::default();
        for (id, from) in self.openings_due(&rules, now_ms).await? {
            let id = id.as_str();
            let Some(kind) = rules.situations.iter().filter(|d| d.id == id).find_map(|d| d.opens_from()) else {
                continue;
            };
            let Some((lo, hi)) = date_window(&rules, id, from, now_ms, target) else { continue };
            let mut after: Option<Dated> = None;
            loop {
                let found = match kind {
                    OpensFrom::BirthDate => self.db.born_between(lo, hi, after.as_ref(), CHUNK).await?,
                    OpensFrom::Document => self.db.documents_expiring(lo, hi, after.as_ref(), CHUNK).await?,
                };
                let last = (found.len() as i64) < CHUNK;
                after = found.last().cloned();
                let seqs: Vec<i64> = found.iter().map(|f| f.seq).collect();
                let mut records = self.db.events_by_seq(&seqs).await?;
                if kind == OpensFrom::Document {
                    let subjects: Vec<String> = found.iter().map(|f| f.subject.clone()).collect();
                    let profiles = self.db.load_profiles(&subjects).await?;
                    let by_code: HashMap<&str, &Profile> = profiles.iter().map(|p| (p.subject.as_str(), p)).collect();
                    records.retain(|e| by_code.get(e.subject.as_str()).is_some_and(|p| in_force(p, e)));
                }
                // A corrected issue of one document is a second record of the
                // same fact: the later one (in seq order) opens it.
                records.sort_by_key(|e| e.seq);
                let mut opened: HashMap<String, Case> = HashMap::new();
                for c in records.iter().filter_map(|e| opening(&rules, id, e, now_ms, target)) {
                    opened.insert(c.id.clone(), c);
                }
                let ids: Vec<String> = opened.keys().cloned().collect();
                let existing = self.db.existing_case_ids(&ids).await?;
                let mut opened: Vec<Case> = opened.into_values().filter(|c| !existing.contains(&c.id)).collect();
                opened.sort_by(|a, b| a.id.cmp(&b.id));
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
            tracing::info!(cases = report.cases, "cases opened from profiles ahead of their first step");
        }
        Ok(report)
    }

    /// Whether [`Engine::open_ahead`] has anything to do now: it writes, so
    /// a caller with a commit in flight waits for that first rather than
    /// have the two contend for the database.
    pub async fn opening_due(&self) -> Result<bool> {
        Ok(!self.openings_due(&self.rules.get(), self.clock.now_ms()).await?.is_empty())
    }

    /// The life situations in force that open from a profile's dates whose
    /// horizon has moved on by a step, with how far each was opened before.
    async fn openings_due(&self, rules: &RuleSet, now_ms: i64) -> Result<Vec<(String, Option<i64>)>> {
        // One not yet in force opens nothing, and keeps its window for the
        // day it is; one whose later version no longer opens from the
        // profile still opens the cases that waited under the earlier one.
        let today = event_day(now_ms);
        let mut ids: Vec<&str> = rules
            .situations
            .iter()
            .filter(|d| d.opens_from().is_some())
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

/// The anchor dates (birth dates, expiry dates) whose dated steps may fall
/// after `from` (the horizon reached before; on the first opening, now less
/// the longest grace, so that steps just past due that may still run are
/// found) and up to `target`, with a few days' slack for month and year
/// arithmetic; every version of the life situation is counted in.
fn date_window(
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

/// Whether the document this issue record is of is the one in force in the
/// holder's profile (not replaced by a newer one of its kind, invalidated or
/// annulled) with the same expiry, the holder alive.
fn in_force(p: &Profile, e: &EventRow) -> bool {
    let field = |k: &str| e.data.get(k).and_then(|v| v.as_str());
    let expires = field("expires").and_then(|x| x.parse::<NaiveDate>().ok());
    !p.is_deceased()
        && p.documents.iter().any(|d| {
            Some(d.document.as_str()) == field("document")
                && Some(d.number.as_str()) == field("number")
                && d.expires == expires
        })
}

/// The case a record (a birth, a document's issue) opens for life situation
/// `id` now, if one of its steps is still to run and the first of them is
/// due by `target`; the version is the one in force today, as for any dated
/// life situation. That version may no longer open from the profile (a law
/// that added a step at the birth): people whose case waited under the old
/// one still get theirs, its steps that count from the long-past record
/// skipped as too old.
fn opening(rules: &RuleSet, id: &str, e: &EventRow, now_ms: i64, target: i64) -> Option<Case> {
    let d: &LifeSituation =
        rules.triggered_by(&e.event_type, event_day(e.occurred_at), event_day(now_ms)).find(|d| d.id == id)?;
    let anchor = cases::anchor_of(d, &e.data);
    let too_old = now_ms - e.occurred_at > d.trigger.max_age.as_millis() as i64;
    let plan = cases::plan_steps(d, e.occurred_at, anchor, now_ms, too_old, None);
    if cases::first_pending(&plan).is_none_or(|(_, due)| due > target) {
        return None;
    }
    let fact = d.fact_for(&e.subject, &e.event_type, &e.data);
    Some(Case::started(d, e, fact, anchor, plan))
}

/// A case that will open from the profile and has not opened yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Life-situation id.
    pub life_situation: String,
    /// What it waits on: `birth date`, or the kind of document.
    pub on: String,
    /// Its first step still to run.
    pub step: String,
    /// When that step is due (ms).
    pub due: i64,
}

/// The cases that will open from this person's profile (from the birth date
/// of a person with a birth record, alive; from each document in force) but
/// are not among `opened` (life situation, trigger fact), with the first step
/// each will run, as of `now_ms`.
pub fn waiting(rules: &RuleSet, p: &Profile, opened: &[(String, String)], now_ms: i64) -> Vec<Waiting> {
    if p.is_deceased() {
        return Vec::new();
    }
    let today = event_day(now_ms);
    // (kind, what it waits on, the data its fact reads, the anchor date)
    let mut facts: Vec<(OpensFrom, String, serde_json::Value, NaiveDate)> = Vec::new();
    if let (Some(_), Some(born)) = (p.birth_seq, p.birth_date) {
        facts.push((OpensFrom::BirthDate, "birth date".into(), serde_json::Value::Null, born));
    }
    for doc in &p.documents {
        let Some(expires) = doc.expires else { continue };
        let data = serde_json::json!({ "document": doc.document, "number": doc.number });
        facts.push((OpensFrom::Document, doc.document.clone(), data, expires));
    }
    let mut out: Vec<Waiting> = Vec::new();
    for d in rules.situations.iter().filter(|d| d.in_force_on(today)) {
        let Some(kind) = d.opens_from() else { continue };
        for (_, on, data, anchor) in facts.iter().filter(|f| f.0 == kind) {
            let event = d.trigger.events.first().map(String::as_str).unwrap_or_default();
            let fact = d.fact_for(&p.subject, event, data);
            let taken = |l: &str, f: &str| l == d.id && f == fact;
            if opened.iter().any(|(l, f)| taken(l, f)) || out.iter().any(|w| w.life_situation == d.id && w.on == *on) {
                continue;
            }
            let plan = cases::plan_steps(d, now_ms, Some(*anchor), now_ms, false, None);
            if let Some((step, due)) = cases::first_pending(&plan) {
                out.push(Waiting { life_situation: d.id.clone(), on: on.clone(), step: step.to_string(), due });
            }
        }
    }
    out
}
