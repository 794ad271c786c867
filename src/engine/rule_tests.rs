//! `proactive rules test`: test cases that policy staff write beside their
//! rules (`rules/**/*.test.yaml`). Each case runs the real engine on a
//! fresh store with a virtual clock — given profiles and events at their
//! times, timers fired in order until `until` — and compares the notices,
//! drafts and cancellations it made with what the case expects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Deserialize;

use super::RuleSet;
use super::cases::StepState;
use super::profile::{Profile, ProfileKind};
use super::virtual_time::{MarkSent, arrive_at, fire_until, route_notice};
use crate::clock::Clock;
use crate::events::codes::normalize_subject;
use crate::events::{RawRecord, ingest_records};
use crate::store::{BatchWrite, Db};

/// One test case, as written in YAML.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case shows, in a sentence.
    pub name: String,
    /// The life situation whose notices are checked (default: the file's name before `.test.yaml`).
    #[serde(default)]
    pub life_situation: Option<String>,
    /// What the engine knows and what happens.
    #[serde(default)]
    pub given: Given,
    /// Virtual time runs to the end of this day (default: 30 days after the last event).
    #[serde(default)]
    pub until: Option<NaiveDate>,
    /// What must have happened by then.
    pub expect: Expect,
}

/// The situation before and during the test.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Given {
    /// Profiles the engine already has (fields of a profile).
    #[serde(default)]
    pub profiles: Vec<serde_json::Value>,
    /// Registry events, in time order.
    #[serde(default)]
    pub events: Vec<GivenEvent>,
}

/// One registry event at a time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GivenEvent {
    /// When it happened.
    pub at: DateTime<FixedOffset>,
    /// When the engine receives it (default: when it happened); a later
    /// arrival is a backfill or a late feed.
    #[serde(default)]
    pub arrives: Option<DateTime<FixedOffset>>,
    /// Registry.
    pub source: String,
    /// The registry's id (default: made up from its position).
    #[serde(default)]
    pub id: Option<String>,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Personal code or registration number.
    pub subject: String,
    /// Type-specific data.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// What the test expects.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exactly these notices (of the life situation under test, not cancelled), in any order.
    #[serde(default)]
    pub notices: Option<Vec<ExpectNotice>>,
    /// Drafts that must exist; fields are compared as a subset.
    #[serde(default)]
    pub drafts: Option<Vec<ExpectDraft>>,
    /// Steps or notices that must have been cancelled or skipped.
    #[serde(default)]
    pub cancelled: Option<Vec<ExpectCancelled>>,
}

/// An expected notice; fields left out are not compared.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectNotice {
    /// Recipient's code.
    pub to: String,
    /// Template name.
    pub template: String,
    /// Step that sends it.
    #[serde(default)]
    pub step: Option<String>,
    /// The Riga day it goes out: its due day, or the day it was made when that was later.
    #[serde(default)]
    pub on: Option<NaiveDate>,
    /// Language it would be sent in.
    #[serde(default)]
    pub language: Option<String>,
    /// Channel it would go on.
    #[serde(default)]
    pub channel: Option<String>,
}

/// An expected draft.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDraft {
    /// Applicant's code.
    pub to: String,
    /// Draft name in the definition.
    #[serde(default)]
    pub draft: Option<String>,
    /// Fields that must be there with these values (and sources).
    #[serde(default)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An expected cancellation or skip.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectCancelled {
    /// The step.
    #[serde(default)]
    pub step: Option<String>,
    /// The recipient of a cancelled notice.
    #[serde(default)]
    pub to: Option<String>,
    /// Words the recorded reason contains.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The result of one case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaseResult {
    /// `FILE: NAME`.
    pub file: String,
    /// The case's name.
    pub name: String,
    /// What differed (empty when it passed).
    pub failures: Vec<String>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Every `*.test.yaml` under `root` (a folder or one file), sorted.
pub fn find_test_files(root: &Path) -> Vec<PathBuf> {
    if root.is_file() {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".test.yaml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads one test file; the error names the file, line and column.
pub fn parse_test_file(path: &Path) -> Result<Vec<TestCase>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| match e.location() {
        Some(l) => format!("{}:{}:{}: {e}", path.display(), l.line(), l.column()),
        None => format!("{}: {e}", path.display()),
    })
}

/// Runs every case of every file; a file that does not parse is one failed result.
pub async fn run_files(rules: Arc<RuleSet>, files: &[PathBuf]) -> Vec<CaseResult> {
    let mut out = Vec::new();
    for f in files {
        let shown = f.display().to_string();
        let cases = match parse_test_file(f) {
            Ok(c) => c,
            Err(e) => {
                out.push(CaseResult { file: shown, name: "(file)".into(), failures: vec![e] });
                continue;
            }
        };
        let default_ls =
            f.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".test.yaml")).map(str::to_string);
        for c in cases {
            let ls = c.life_situation.clone().or_else(|| default_ls.clone());
            let failures = match run_case(&rules, &c, ls.as_deref()).await {
                Ok(f) => f,
                Err(e) => vec![format!("could not run: {e:#}")],
            };
            out.push(CaseResult { file: shown.clone(), name: c.name, failures });
        }
    }
    out
}

/// A notice as the test sees it.
#[derive(Clone, Debug)]
struct Seen {
    to: String,
    template: String,
    step: String,
    on: NaiveDate,
    language: String,
    channel: String,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{ to: {}, template: {}, step: {}, on: {}, language: {}, channel: {} }}",
            self.to, self.template, self.step, self.on, self.language, self.channel
        )
    }
}

fn matches(e: &ExpectNotice, s: &Seen) -> bool {
    canonical(&e.to) == s.to
        && e.template == s.template
        && e.step.as_ref().is_none_or(|x| x == &s.step)
        && e.on.is_none_or(|x| x == s.on)
        && e.language.as_ref().is_none_or(|x| x == &s.language)
        && e.channel.as_ref().is_none_or(|x| x == &s.channel)
}

fn canonical(code: &str) -> String {
    normalize_subject(code).map(|(_, c)| c).unwrap_or_else(|_| code.to_string())
}

/// Runs one case on a fresh store; returns what differed.
pub async fn run_case(rules: &Arc<RuleSet>, case: &TestCase, ls: Option<&str>) -> Result<Vec<String>> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let db = Db::open(&url, 2).await?;
    let result = run_on(&db, rules, case, ls).await;
    db.close().await;
    result
}

async fn run_on(db: &Db, rules: &Arc<RuleSet>, case: &TestCase, ls: Option<&str>) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    let mut seed = BatchWrite::default();
    for (i, p) in case.given.profiles.iter().enumerate() {
        let mut p: Profile = serde_json::from_value(p.clone()).with_context(|| format!("given.profiles[{i}]"))?;
        let (kind, code) =
            normalize_subject(&p.subject).map_err(|e| anyhow::anyhow!("given.profiles[{i}].subject: {e}"))?;
        p.subject = code;
        p.kind = ProfileKind::from(kind);
        if p.birth_date.is_none() && p.kind == ProfileKind::Person {
            p.birth_date = crate::events::codes::birth_date_from_personal_code(&p.subject);
        }
        seed.profiles.push(p);
    }
    let first =
        case.given.events.iter().map(|e| e.arrives.unwrap_or(e.at).to_utc()).min().unwrap_or_else(chrono::Utc::now);
    let clock = Clock::manual(first);
    db.commit_batch(&seed, clock.now_ms(), &crate::audit::Audit::development()).await?;
    let engine = super::Engine::new(db.clone(), rules.clone(), clock.clone(), 500);
    let purposes = {
        let r = rules.clone();
        move |p: &str| r.declares_purpose(p)
    };
    let mut events: Vec<(usize, &GivenEvent)> = case.given.events.iter().enumerate().collect();
    events.sort_by_key(|(_, e)| e.arrives.unwrap_or(e.at));
    for (i, e) in events {
        let at = e.arrives.unwrap_or(e.at).to_utc();
        arrive_at(db, &engine, &clock, at.timestamp_millis(), &mut MarkSent).await?;
        let record = serde_json::json!({
            "source": e.source, "id": e.id.clone().unwrap_or_else(|| format!("test-{:06}", i + 1)),
            "type": e.event_type, "subject": e.subject, "occurred_at": e.at.to_rfc3339(), "data": e.data,
        });
        let raw = RawRecord { location: format!("given.events[{i}]"), text: record.to_string() };
        let counts = ingest_records(db, None, &[raw], &purposes, None, clock.now_ms()).await?;
        if counts.quarantined > 0 {
            let q = db.quarantine_list(true).await?;
            let why = q.last().map(|q| q.error.clone()).unwrap_or_default();
            failures.push(format!("given.events[{i}] ({}) does not validate: {why}", e.event_type));
        }
        engine.run_until_idle().await?;
    }
    let last = case.given.events.iter().map(|e| e.arrives.unwrap_or(e.at).to_utc()).max().unwrap_or(first);
    let until = match case.until {
        Some(d) => super::schedule::riga_ms(d, chrono::NaiveTime::from_hms_opt(23, 59, 59).expect("time")),
        None => (last + chrono::Duration::days(30)).timestamp_millis(),
    };
    fire_until(db, &engine, &clock, until, &mut MarkSent).await?;
    for o in db.event_outcomes().await? {
        if o.outcome == "error" {
            failures.push(format!("rule error: {}", o.detail));
        }
    }
    compare(db, rules, case, ls, &mut failures).await?;
    Ok(failures)
}

async fn compare(
    db: &Db,
    rules: &RuleSet,
    case: &TestCase,
    ls: Option<&str>,
    failures: &mut Vec<String>,
) -> Result<()> {
    let in_ls = |x: &str| ls.is_none_or(|l| l == x);
    let notices = db.notices_of(None).await?;
    let profiles: BTreeMap<String, Profile> = {
        let codes: Vec<String> = notices.iter().map(|n| n.recipient.clone()).collect();
        db.load_profiles(&codes).await?.into_iter().map(|p| (p.subject.clone(), p)).collect()
    };
    let mut seen = Vec::new();
    for n in notices.iter().filter(|n| in_ls(&n.life_situation) && n.state != "cancelled") {
        let profile = profiles.get(&n.recipient);
        let channel = match route_notice(rules, &n.life_situation, &n.step, &n.recipient, profile) {
            crate::consent::Route::Send { channel, .. } => channel.as_str().to_string(),
            crate::consent::Route::Suppress(_) => "none".into(),
        };
        seen.push(Seen {
            to: n.recipient.clone(),
            template: n.template.clone(),
            step: n.step.clone(),
            on: super::event_day(n.available_at),
            language: profile.and_then(|p| p.language.clone()).unwrap_or_else(|| "lv".into()),
            channel,
        });
    }
    if let Some(expected) = &case.expect.notices {
        let mut left = seen.clone();
        for e in expected {
            match left.iter().position(|s| matches(e, s)) {
                Some(i) => {
                    left.remove(i);
                }
                None => failures.push(format!(
                    "missing notice: to {} template {}{}{}{}{}",
                    e.to,
                    e.template,
                    e.step.as_ref().map(|s| format!(" step {s}")).unwrap_or_default(),
                    e.on.map(|d| format!(" on {d}")).unwrap_or_default(),
                    e.language.as_ref().map(|s| format!(" language {s}")).unwrap_or_default(),
                    e.channel.as_ref().map(|s| format!(" channel {s}")).unwrap_or_default(),
                )),
            }
        }
        for s in left {
            failures.push(format!("unexpected notice: {s}"));
        }
        if !failures.is_empty() && !seen.is_empty() {
            failures
                .push(format!("notices made: {}", seen.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")));
        }
    }
    if let Some(expected) = &case.expect.drafts {
        let drafts = db.all_drafts().await?;
        for e in expected {
            let service = e.draft.as_ref().and_then(|name| {
                rules
                    .situations
                    .iter()
                    .filter(|d| in_ls(&d.id))
                    .find_map(|d| d.drafts.get(name))
                    .map(|x| x.service_id.clone())
            });
            if e.draft.is_some() && service.is_none() {
                failures.push(format!("expected draft {:?} is not defined", e.draft));
                continue;
            }
            let found = drafts.iter().find(|d| {
                d.applicant == canonical(&e.to)
                    && service.as_ref().is_none_or(|s| s == &d.service_id)
                    && e.fields.as_ref().is_none_or(|f| f.iter().all(|(k, v)| d.fields.get(k) == Some(v)))
            });
            if found.is_none() {
                let theirs: Vec<String> = drafts
                    .iter()
                    .filter(|d| d.applicant == canonical(&e.to))
                    .map(|d| format!("{} {}", d.service_id, d.fields))
                    .collect();
                failures.push(format!(
                    "missing draft for {}{}: drafts for them: {}",
                    e.to,
                    e.draft.as_ref().map(|d| format!(" ({d})")).unwrap_or_default(),
                    if theirs.is_empty() { "none".into() } else { theirs.join("; ") }
                ));
            }
        }
    }
    if let Some(expected) = &case.expect.cancelled {
        let mut ended: Vec<(String, Option<String>, String)> = notices
            .iter()
            .filter(|n| in_ls(&n.life_situation) && n.state == "cancelled")
            .map(|n| (n.step.clone(), Some(n.recipient.clone()), n.last_error.clone().unwrap_or_default()))
            .collect();
        for c in db.all_cases().await?.iter().filter(|c| in_ls(&c.life_situation)) {
            for (step, p) in &c.plan {
                if matches!(p.state, StepState::Cancelled | StepState::Skipped) {
                    ended.push((step.clone(), None, p.why.clone().unwrap_or_default()));
                }
            }
        }
        for e in expected {
            let ok = ended.iter().any(|(step, to, why)| {
                e.step.as_ref().is_none_or(|s| s == step)
                    && e.to.as_ref().is_none_or(|t| to.as_deref() == Some(canonical(t).as_str()))
                    && e.reason.as_ref().is_none_or(|r| why.contains(r.as_str()))
            });
            if !ok {
                let all: Vec<String> = ended.iter().map(|(s, _, w)| format!("{s}: {w}")).collect();
                failures.push(format!(
                    "missing cancellation{}{}{}; cancelled or skipped: {}",
                    e.step.as_ref().map(|s| format!(" of step {s}")).unwrap_or_default(),
                    e.to.as_ref().map(|s| format!(" to {s}")).unwrap_or_default(),
                    e.reason.as_ref().map(|s| format!(" saying {s:?}")).unwrap_or_default(),
                    if all.is_empty() { "none".into() } else { all.join("; ") }
                ));
            }
        }
    }
    Ok(())
}
