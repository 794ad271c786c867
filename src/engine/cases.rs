//! Cases as durable state machines: each keeps a plan of its timed steps
//! (due time and state, with the reason for any step that will not run),
//! and the earliest pending due time, which is the cheap index of what is
//! due — no per-day scan of every profile, however far ahead the date.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::definitions::{LifeSituation, Step};
use super::schedule::{Offset, default_time, int_param, parse_time, riga_ms};

/// Where a case stands.
pub const OPEN: &str = "open";
/// Every timed step has run or been dropped.
pub const DONE: &str = "done";
/// Ended early by an event, a rule or an operator.
pub const CANCELLED: &str = "cancelled";

/// Where one timed step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Waiting for its due time.
    Pending,
    /// Ran.
    Fired,
    /// Will not run (too late, dropped by an event or a rule).
    Skipped,
    /// The case ended before it ran.
    Cancelled,
    /// Its rule failed; recorded against the trigger event.
    Failed,
}

/// One timed step in a case's plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// When it is (or was) due, ms since the epoch.
    pub due: i64,
    /// Its state.
    pub state: StepState,
    /// When it reached that state (ms), for anything but pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// Why it will not run, or what its rule said when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A case as the engine holds it between the store and a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Derived from (life situation, subject, fact).
    pub id: String,
    /// Life-situation id.
    pub life_situation: String,
    /// The definition version it started under, and keeps.
    pub version: i64,
    /// Subject of the trigger.
    pub subject: String,
    /// The trigger fact.
    pub fact: String,
    /// `open`, `done` or `cancelled`.
    pub state: String,
    /// The event that started it.
    pub trigger_seq: i64,
    /// When the trigger event happened (ms).
    pub started_at: i64,
    /// The date `at` steps count from.
    pub anchor: Option<NaiveDate>,
    /// Timed steps by id.
    pub plan: BTreeMap<String, PlanEntry>,
    /// Why it ended early.
    pub closed_reason: Option<String>,
}

impl Case {
    /// A new open case of `d` started by the event `e` with its plan.
    pub fn started(
        d: &LifeSituation,
        e: &crate::events::EventRow,
        fact: String,
        anchor: Option<NaiveDate>,
        plan: BTreeMap<String, PlanEntry>,
    ) -> Case {
        Case {
            id: super::evaluate::case_id(&d.id, &e.subject, &fact),
            life_situation: d.id.clone(),
            version: d.version,
            subject: e.subject.clone(),
            fact,
            state: OPEN.into(),
            trigger_seq: e.seq,
            started_at: e.occurred_at,
            anchor,
            plan,
            closed_reason: None,
        }
    }

    /// The earliest due time of a pending step: what the timer index holds.
    pub fn next_due(&self) -> Option<i64> {
        if self.state != OPEN {
            return None;
        }
        first_pending(&self.plan).map(|(_, due)| due)
    }

    /// Pending steps due at or before `now`, earliest first (ties in plan order).
    pub fn due_steps(&self, now_ms: i64) -> Vec<String> {
        let mut due: Vec<(i64, &String)> = self
            .plan
            .iter()
            .filter(|(_, e)| e.state == StepState::Pending && e.due <= now_ms)
            .map(|(k, e)| (e.due, k))
            .collect();
        due.sort();
        due.into_iter().map(|(_, k)| k.clone()).collect()
    }

    /// Marks a step; a no-op for an unknown step.
    pub fn mark(&mut self, step: &str, state: StepState, at: i64, why: Option<String>) {
        if let Some(e) = self.plan.get_mut(step) {
            e.state = state;
            e.at = Some(at);
            e.why = why;
        }
    }

    /// Ends the case early: pending steps are cancelled with `reason`.
    pub fn cancel(&mut self, reason: &str, at: i64) {
        for e in self.plan.values_mut().filter(|e| e.state == StepState::Pending) {
            e.state = StepState::Cancelled;
            e.at = Some(at);
            e.why = Some(reason.to_string());
        }
        self.state = CANCELLED.into();
        self.closed_reason = Some(reason.to_string());
    }

    /// Closes the case as done when nothing timed is left to wait for.
    pub fn settle(&mut self) {
        if self.state == OPEN && !self.plan.values().any(|e| e.state == StepState::Pending) {
            self.state = DONE.into();
        }
    }
}

/// The plan of a new case, or of a case whose anchor moved: for each timed
/// step, its due time, or why it will not run. `now` is when the fact
/// arrived; `started` the trigger event's time; `old` says which steps of
/// an existing plan have already run (they are kept as they are).
pub fn plan_steps(
    d: &LifeSituation,
    started_ms: i64,
    anchor: Option<NaiveDate>,
    now_ms: i64,
    too_old: bool,
    old: Option<&BTreeMap<String, PlanEntry>>,
) -> BTreeMap<String, PlanEntry> {
    let day = super::evaluate::event_day(now_ms);
    let mut plan = BTreeMap::new();
    for s in d.steps.iter().filter(|s| s.is_timed()) {
        if let Some(prev) = old.and_then(|o| o.get(&s.id)).filter(|e| e.state != StepState::Pending) {
            plan.insert(s.id.clone(), prev.clone());
            continue;
        }
        let (due, why) = match due_of(d, s, started_ms, anchor, day) {
            Ok(due) => {
                let why = if s.after.is_some() && too_old {
                    Some(format!(
                        "the trigger event is older than max_age {}; steps that count from it do not run",
                        days(d.trigger.max_age)
                    ))
                } else if s.at.is_some() && due < now_ms - grace_ms(s) {
                    Some(format!(
                        "was due {}, more than the grace of {} before the fact arrived",
                        super::evaluate::event_day(due),
                        days(grace(s))
                    ))
                } else {
                    None
                };
                (due, why)
            }
            Err(e) => (now_ms, Some(e)),
        };
        let state = if why.is_some() { StepState::Skipped } else { StepState::Pending };
        let at = why.as_ref().map(|_| now_ms);
        plan.insert(s.id.clone(), PlanEntry { due, state, at, why });
    }
    plan
}

/// A plan's pending step due first, with its due time (ties: plan order).
pub fn first_pending(plan: &BTreeMap<String, PlanEntry>) -> Option<(&str, i64)> {
    plan.iter().filter(|(_, e)| e.state == StepState::Pending).map(|(k, e)| (k.as_str(), e.due)).min_by_key(|x| x.1)
}

/// How far after its anchor date each dated step falls, as of `day`
/// (parameters change with the law): the nearest and the farthest, in days,
/// and the longest grace, for finding whose steps fall in a window of time.
pub fn anchor_reach(d: &LifeSituation, day: NaiveDate) -> Option<(i64, i64, i64)> {
    let midnight = riga_ms(day, chrono::NaiveTime::MIN);
    let offsets: Vec<i64> = d
        .steps
        .iter()
        .filter(|s| s.at.is_some())
        .filter_map(|s| due_of(d, s, 0, Some(day), day).ok())
        .map(|due| (due - midnight).div_euclid(86_400_000))
        .collect();
    let grace = d.steps.iter().filter(|s| s.at.is_some()).map(|s| grace_ms(s) / 86_400_000).max()?;
    Some((*offsets.iter().min()?, *offsets.iter().max()?, grace))
}

/// A duration as people say it: "90 days", else humantime's spelling.
pub fn days(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        86_400 => "1 day".into(),
        _ if s.is_multiple_of(86_400) => format!("{} days", s / 86_400),
        _ => humantime::format_duration(d).to_string(),
    }
}

fn grace(s: &Step) -> std::time::Duration {
    s.grace.unwrap_or(std::time::Duration::from_secs(7 * 86_400))
}

fn grace_ms(s: &Step) -> i64 {
    grace(s).as_millis() as i64
}

/// When a timed step is due, or why it has no due time.
fn due_of(
    d: &LifeSituation,
    s: &Step,
    started_ms: i64,
    anchor: Option<NaiveDate>,
    day: NaiveDate,
) -> Result<i64, String> {
    if let Some(after) = s.after {
        return Ok(started_ms + after.as_millis() as i64);
    }
    let at = s.at.as_deref().unwrap_or_default();
    let anchor = anchor.ok_or_else(|| {
        format!("no anchor date: the trigger event has no {}", d.trigger.anchor.as_deref().unwrap_or("anchor"))
    })?;
    let offset = Offset::parse(at)?;
    let date = offset.apply(anchor, &|p| int_param(&d.params, p, day))?;
    let time = s.time.as_deref().map(parse_time).transpose()?.unwrap_or_else(default_time);
    Ok(riga_ms(date, time))
}

/// The anchor date of a trigger event, when the definition has one.
pub fn anchor_of(d: &LifeSituation, data: &serde_json::Value) -> Option<NaiveDate> {
    let field = d.trigger.anchor.as_deref()?.strip_prefix("data.")?;
    data.get(field).and_then(|v| v.as_str()).and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

/// Checks a definition's timing fields; each error names the step.
pub fn check_timing(d: &LifeSituation) -> Vec<String> {
    let mut errors = Vec::new();
    let at = d.file.display();
    if let Some(a) = &d.trigger.anchor
        && a.strip_prefix("data.").is_none_or(str::is_empty)
    {
        errors.push(format!("{at}: trigger.anchor: must be data.FIELD of the trigger event (got {a:?})"));
    }
    for s in &d.steps {
        let timings = [s.after.is_some(), s.at.is_some(), !s.on.is_empty()].iter().filter(|x| **x).count();
        if timings > 1 {
            errors.push(format!("{at}: step \"{}\": give at most one of after, at and on", s.id));
        }
        if let Some(o) = &s.at {
            if d.trigger.anchor.is_none() {
                errors.push(format!("{at}: step \"{}\": `at` counts from trigger.anchor, which is not set", s.id));
            }
            match Offset::parse(o) {
                Ok(off) => {
                    for p in off.params() {
                        if !d.params.contains_key(p) {
                            errors.push(format!("{at}: step \"{}\": at: no parameter named {p}", s.id));
                        }
                    }
                }
                Err(e) => errors.push(format!("{at}: step \"{}\": at: {e}", s.id)),
            }
        }
        if let Some(t) = &s.time
            && let Err(e) = parse_time(t)
        {
            errors.push(format!("{at}: step \"{}\": {e}", s.id));
        }
        if (s.time.is_some() || s.grace.is_some()) && s.at.is_none() {
            errors.push(format!("{at}: step \"{}\": time and grace only apply to `at` steps", s.id));
        }
        if !s.unless.is_empty() && !s.is_timed() {
            errors.push(format!("{at}: step \"{}\": unless only applies to steps that wait (after or at)", s.id));
        }
    }
    errors
}

/// `started` for rules: the trigger day.
pub fn started_day(c: &Case) -> NaiveDate {
    super::evaluate::event_day(c.started_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(extra: &str) -> LifeSituation {
        let text = format!(
            r#"
id = "t"
version = 1
status = "active"
valid_from = "2020-01-01"
name = {{ lv = "t" }}
description = "t"
owner = "o"
legal_basis = "l"
services = []
channels = ["email"]
[[purposes]]
id = "t"
mode = "opt-out"
description = "d"
[trigger]
events = ["document.issued"]
anchor = "data.expires"
[params]
lead_days = 30
{extra}
[templates.x.lv]
subject = "s"
text = "t"
"#
        );
        toml::from_str(&text).unwrap()
    }

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn dated_steps_are_due_at_nine_in_riga_and_late_ones_are_skipped_with_a_reason() {
        let d = def(r#"
[[steps]]
id = "r90"
rule = "r.rhai"
at = "-90d"
[[steps]]
id = "r30"
rule = "r.rhai"
at = "-{lead_days}d"
[[steps]]
id = "later"
rule = "r.rhai"
after = "14d"
"#);
        let anchor = NaiveDate::from_ymd_opt(2027, 3, 1);
        let now = ms("2026-12-20T12:00:00+02:00");
        let plan = plan_steps(&d, now, anchor, now, false, None);
        assert_eq!(plan["r90"].state, StepState::Skipped, "due 2026-12-01, 19 days ago");
        assert!(plan["r90"].why.as_deref().unwrap().contains("2026-12-01"));
        assert_eq!(plan["r30"].due, ms("2027-01-30T09:00:00+02:00"));
        assert_eq!(plan["r30"].state, StepState::Pending);
        assert_eq!(plan["later"].due, now + 14 * 86_400_000);
        let too_old = plan_steps(&d, now, anchor, now, true, None);
        assert_eq!(too_old["later"].state, StepState::Skipped);
        assert_eq!(too_old["r30"].state, StepState::Pending, "dated steps have their own grace");
    }

    #[test]
    fn timing_errors_name_the_step() {
        let d = def(r#"
[[steps]]
id = "bad"
rule = "r.rhai"
at = "-{nope}d"
after = "3d"
"#);
        let errors = check_timing(&d).join("\n");
        assert!(errors.contains("step \"bad\": give at most one"), "{errors}");
        assert!(errors.contains("no parameter named nope"), "{errors}");
    }
}
