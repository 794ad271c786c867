//! `proactive rules simulate`: a whole event history through virtual time
//! on a fresh, throw-away SQLite store with a rule set, delivering nothing,
//! to see what the rules would send before they are switched on.
//!
//! The events file is read twice: once to validate every line and index
//! the good ones by when they happened (24 bytes a line, so millions of
//! lines fit), then in time order, reading each line again by its offset.
//! Events from before the window arrive together at its start (a backfill);
//! later ones arrive when they happened; those after it are left out. In
//! between, the clock jumps from due time to due time as the rule tests do
//! ([`crate::engine::virtual_time`]), and every notice that comes due is
//! routed as delivery would route it and recorded as sent without sending.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{Datelike, NaiveDate, NaiveTime};
use chrono_tz::Europe::Riga;
use serde::Serialize;

use crate::clock::Clock;
use crate::consent::Route;
use crate::engine::schedule::riga_ms;
use crate::engine::virtual_time::{DueNotices, arrive_at, fire_until, route_notice};
use crate::engine::{Engine, RuleSet};
use crate::events::{RawRecord, ingest_records, validate_records};
use crate::mask::mask_code;
use crate::store::{Db, NoticeView};

/// Events ingested together at one moment of virtual time.
const CHUNK: usize = 5_000;
/// Bad lines kept with their errors for the report (all are counted).
const BAD_KEPT: usize = 1_000;
/// Recipients shown per gained or lost step.
const SAMPLE: usize = 5;

/// The simulated days, both included, in Riga time.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Window {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl Window {
    fn first_ms(&self) -> i64 {
        riga_ms(self.from, NaiveTime::MIN)
    }
    fn last_ms(&self) -> i64 {
        riga_ms(self.to, NaiveTime::from_hms_opt(23, 59, 59).expect("time"))
    }
}

/// A line of the events file that did not validate.
#[derive(Clone, Debug, Serialize)]
pub struct BadLine {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong (never the offending personal data).
    pub error: String,
}

/// The events file, validated and indexed by time.
pub struct EventIndex {
    path: PathBuf,
    /// (occurred ms, byte offset, length, line), sorted by time then line.
    entries: Vec<(i64, u64, u32, u32)>,
    /// Lines that did not validate (the first [`BAD_KEPT`]).
    pub bad: Vec<BadLine>,
    /// How many lines did not validate.
    pub bad_count: usize,
    /// The start day a generated file names in its first line.
    pub header_start: Option<NaiveDate>,
}

impl EventIndex {
    /// Valid events in the file.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no valid event.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The window to simulate when none is given: from the generator's
    /// start day (or a year before the last event) for a year.
    pub fn window(&self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> Window {
        let day = |ms: i64| crate::engine::event_day(ms);
        let last = self.entries.last().map(|e| day(e.0));
        let year_before =
            |d: NaiveDate| d.checked_sub_months(chrono::Months::new(12)).map(|x| x.succ_opt().unwrap_or(x));
        let year_after =
            |d: NaiveDate| d.checked_add_months(chrono::Months::new(12)).map(|x| x.pred_opt().unwrap_or(x));
        let from = from
            .or(self.header_start)
            .or_else(|| to.or(last).and_then(year_before))
            .unwrap_or_else(|| chrono::Utc::now().date_naive());
        let to = to.or_else(|| year_after(from)).unwrap_or(from);
        Window { from, to }
    }
}

/// Validates every line of `path` and indexes the good ones by time; bad lines are counted, kept and skipped.
pub fn index_events(path: &Path, purposes: &crate::events::PurposeCheck) -> Result<EventIndex> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut index =
        EventIndex { path: path.to_path_buf(), entries: Vec::new(), bad: Vec::new(), bad_count: 0, header_start: None };
    let mut line = String::new();
    let (mut offset, mut n) = (0u64, 0usize);
    loop {
        line.clear();
        let read = reader.read_line(&mut line).with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        n += 1;
        let at = offset;
        offset += read as u64;
        let text = line.trim_end_matches(['\n', '\r']);
        if n == 1 {
            index.header_start = crate::tools::population::start_from_header(text);
        }
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        let raw = RawRecord { location: format!("{}:{n}", path.display()), text: text.to_string() };
        let (ok, bad) = validate_records(None, std::slice::from_ref(&raw), purposes);
        match (ok.first(), bad.first()) {
            (Some(ev), _) => index.entries.push((
                ev.occurred_at.timestamp_millis(),
                at,
                u32::try_from(text.len()).context("a line longer than 4 GB")?,
                u32::try_from(n).context("more than 4 billion lines")?,
            )),
            (None, Some(q)) => {
                index.bad_count += 1;
                if index.bad.len() < BAD_KEPT {
                    index.bad.push(BadLine { line: n, error: q.error.clone() });
                }
            }
            (None, None) => {}
        }
    }
    index.entries.sort_unstable_by_key(|e| (e.0, e.3));
    Ok(index)
}

/// One line of the simulation's output: a notice that would be sent, or
/// one that would not (suppressed at routing, cancelled before it was due)
/// or a step that would not run (skipped), each with its reason.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// `notice`, `suppressed`, `cancelled` or `skipped`.
    pub kind: &'static str,
    /// When it would go out (for a step that did not run: when it was due), RFC 3339 in Riga time.
    pub at: String,
    /// When it was due.
    pub due: String,
    /// Life-situation id.
    pub life_situation: String,
    /// Definition version.
    pub version: i64,
    /// Step.
    pub step: String,
    /// Recipient's code (the case's subject for a skipped step).
    pub recipient: String,
    /// Channel it would take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Language it would be written in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Case id.
    pub case: String,
    /// Why it would not be sent or run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Totals of one run, for the summary and the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// The simulated days.
    pub window: Option<Window>,
    /// Events that went into the store.
    pub events: usize,
    /// Lines that did not validate.
    pub bad_lines: usize,
    /// Notices that would be sent.
    pub notices: u64,
    /// Notices routing would suppress.
    pub suppressed: u64,
    /// Notices withdrawn before they were due.
    pub cancelled: u64,
    /// Timed steps that would not run.
    pub skipped: u64,
    /// Distinct recipients of a sent notice.
    pub recipients: usize,
    /// Rule errors recorded.
    pub rule_errors: i64,
    /// The first rule errors.
    pub rule_error_samples: Vec<String>,
    /// Notices by life situation.
    pub per_situation: BTreeMap<String, u64>,
    /// Notices by life situation and step.
    pub per_step: BTreeMap<String, u64>,
    /// Notices by channel.
    pub per_channel: BTreeMap<String, u64>,
    /// Notices by ISO week (`2027-W05`).
    pub per_week: BTreeMap<String, u64>,
    /// Notices by language.
    pub per_language: BTreeMap<String, u64>,
    /// Suppressions, cancellations and skips by `kind: reason`.
    pub reasons: BTreeMap<String, u64>,
    #[serde(skip)]
    reached: HashSet<u64>,
    /// Notices the rules made (sent or suppressed) by id, kept when comparing runs.
    #[serde(skip)]
    made: Option<HashMap<String, (String, String, String)>>,
}

impl Summary {
    fn add(&mut self, r: &Record, notice_id: Option<&str>) {
        match r.kind {
            "notice" => {
                self.notices += 1;
                *self.per_situation.entry(r.life_situation.clone()).or_default() += 1;
                *self.per_step.entry(format!("{} / {}", r.life_situation, r.step)).or_default() += 1;
                *self.per_channel.entry(r.channel.clone().unwrap_or_default()).or_default() += 1;
                *self.per_language.entry(r.language.clone().unwrap_or_default()).or_default() += 1;
                *self.per_week.entry(week_of(&r.at)).or_default() += 1;
                self.reached.insert(xxhash_rust::xxh3::xxh3_64(r.recipient.as_bytes()));
                self.recipients = self.reached.len();
            }
            kind => {
                match kind {
                    "suppressed" => self.suppressed += 1,
                    "cancelled" => self.cancelled += 1,
                    _ => self.skipped += 1,
                }
                let reason = r.reason.as_deref().unwrap_or("");
                // A cancellation names the event and its day in brackets; the report counts by the reason alone.
                let reason = match (kind, reason.rfind(" (")) {
                    ("cancelled" | "skipped", Some(i)) if reason.ends_with(')') => &reason[..i],
                    _ => reason,
                };
                *self.reasons.entry(format!("{kind}: {reason}")).or_default() += 1;
            }
        }
        if let (Some(made), Some(id), "notice" | "suppressed") = (self.made.as_mut(), notice_id, r.kind) {
            made.insert(id.to_string(), (r.life_situation.clone(), r.step.clone(), r.recipient.clone()));
        }
    }
}

fn week_of(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        })
        .unwrap_or_default()
}

fn riga_time(ms: i64) -> String {
    crate::clock::from_ms(ms).with_timezone(&Riga).fixed_offset().to_rfc3339()
}

/// Where a run's records go.
struct Sink<'a, 'o> {
    rules: &'a RuleSet,
    out: Option<&'o mut dyn Write>,
    summary: Summary,
    bar: &'a indicatif::ProgressBar,
    from_ms: i64,
}

impl Sink<'_, '_> {
    fn emit(&mut self, r: Record, notice_id: Option<&str>) -> Result<()> {
        if let Some(out) = self.out.as_mut() {
            serde_json::to_writer(&mut **out, &r)?;
            out.write_all(b"\n")?;
        }
        self.summary.add(&r, notice_id);
        Ok(())
    }

    fn notice_record(&self, n: &NoticeView, kind: &'static str) -> Record {
        Record {
            kind,
            at: riga_time(n.available_at),
            due: riga_time(n.due_at),
            life_situation: n.life_situation.clone(),
            version: n.version,
            step: n.step.clone(),
            recipient: n.recipient.clone(),
            channel: None,
            language: None,
            template: Some(n.template.clone()),
            purpose: Some(n.purpose.clone()),
            case: n.case_id.clone(),
            reason: None,
        }
    }
}

impl DueNotices for Sink<'_, '_> {
    async fn take(&mut self, db: &Db, now_ms: i64) -> Result<()> {
        self.bar.set_position(u64::try_from((now_ms - self.from_ms) / 86_400_000).unwrap_or(0));
        let due = db.take_due_notices(now_ms).await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut codes: Vec<String> = due.iter().map(|n| n.recipient.clone()).collect();
        codes.sort();
        codes.dedup();
        let profiles: HashMap<String, crate::engine::profile::Profile> =
            db.load_profiles(&codes).await?.into_iter().map(|p| (p.subject.clone(), p)).collect();
        for n in &due {
            let profile = profiles.get(&n.recipient);
            let mut r = self.notice_record(n, "notice");
            match route_notice(self.rules, &n.life_situation, &n.step, &n.recipient, profile) {
                Route::Send { channel, .. } => {
                    r.channel = Some(channel.as_str().to_string());
                    r.language = Some(profile.and_then(|p| p.language.clone()).unwrap_or_else(|| "lv".into()));
                }
                Route::Suppress(why) => {
                    r.kind = "suppressed";
                    r.reason = Some(why);
                }
            }
            self.emit(r, Some(&n.id))?;
        }
        Ok(())
    }
}

/// Runs the indexed events through `rules` over `window` on a fresh store;
/// writes every record to `out` when given; `keep_made` keeps the notices
/// made by id, for a comparison with another run.
pub async fn run(
    rules: Arc<RuleSet>,
    index: &EventIndex,
    window: Window,
    out: Option<&mut dyn Write>,
    keep_made: bool,
    label: &str,
) -> Result<Summary> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let url = format!("sqlite://{}", dir.path().join("simulate.db").display());
    let db = Db::open(&url, 2).await?;
    let result = run_on(&db, rules, index, window, out, keep_made, label).await;
    db.close().await;
    result
}

async fn run_on(
    db: &Db,
    rules: Arc<RuleSet>,
    index: &EventIndex,
    window: Window,
    out: Option<&mut dyn Write>,
    keep_made: bool,
    label: &str,
) -> Result<Summary> {
    let (from_ms, to_ms) = (window.first_ms(), window.last_ms());
    let clock = Clock::manual(crate::clock::from_ms(from_ms));
    let engine = Engine::new(db.clone(), rules.clone(), clock.clone(), 1000)
        .with_backlog_batch(crate::engine::BACKLOG_BATCH_SIZE);
    let purposes = {
        let r = rules.clone();
        move |p: &str| r.declares_purpose(p)
    };
    let days = u64::try_from((to_ms - from_ms) / 86_400_000 + 1).unwrap_or(1);
    let bar = indicatif::ProgressBar::new(days);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] day {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{label}: backfill"));
    let mut sink = Sink {
        rules: &rules,
        out,
        summary: Summary { window: Some(window), bad_lines: index.bad_count, ..Summary::default() },
        bar: &bar,
        from_ms,
    };
    if keep_made {
        sink.summary.made = Some(HashMap::new());
    }
    let file = std::fs::File::open(&index.path).with_context(|| format!("cannot open {}", index.path.display()))?;
    let name = index.path.display().to_string();
    let mut chunk: Vec<RawRecord> = Vec::with_capacity(CHUNK);
    let mut chunk_at: Option<i64> = None;
    for &(occurred, offset, len, line) in &index.entries {
        if occurred > to_ms {
            break;
        }
        let at = occurred.max(from_ms);
        if chunk_at != Some(at) || chunk.len() >= CHUNK {
            // The engine runs once a moment's events are all in: a backfill's
            // million records, all of the first moment, go through it in its
            // large backlog batches rather than a chunk at a time.
            let last_of_moment = chunk_at != Some(at);
            flush(db, &engine, &clock, &mut sink, &mut chunk, chunk_at, &purposes, last_of_moment).await?;
            if chunk_at != Some(at) && chunk_at.is_some() {
                bar.set_message(label.to_string());
            }
            chunk_at = Some(at);
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset).with_context(|| format!("cannot read {name}:{line}"))?;
        let text = String::from_utf8(buf).with_context(|| format!("{name}:{line} is not UTF-8"))?;
        chunk.push(RawRecord { location: format!("{name}:{line}"), text });
        sink.summary.events += 1;
    }
    flush(db, &engine, &clock, &mut sink, &mut chunk, chunk_at, &purposes, true).await?;
    bar.set_message(label.to_string());
    fire_until(db, &engine, &clock, to_ms, &mut sink).await?;
    sink.take(db, to_ms).await?;
    bar.finish_and_clear();

    for n in db.cancelled_notices(from_ms, to_ms).await? {
        let mut r = sink.notice_record(&n, "cancelled");
        r.at = r.due.clone();
        r.reason = Some(n.last_error.clone().unwrap_or_default());
        sink.emit(r, None)?;
    }
    let mut ended = Vec::new();
    db.for_each_ended_step(from_ms, to_ms, |s| ended.push(s)).await?;
    ended.sort_by(|a, b| (a.plan.due, &a.case_id, &a.step).cmp(&(b.plan.due, &b.case_id, &b.step)));
    for s in ended {
        let kind = if s.plan.state == crate::engine::cases::StepState::Skipped { "skipped" } else { "cancelled" };
        let r = Record {
            kind,
            at: riga_time(s.plan.due),
            due: riga_time(s.plan.due),
            life_situation: s.life_situation,
            version: s.version,
            step: s.step,
            recipient: s.subject,
            channel: None,
            language: None,
            template: None,
            purpose: None,
            case: s.case_id,
            reason: Some(s.plan.why.unwrap_or_default()),
        };
        sink.emit(r, None)?;
    }
    if let Some(out) = sink.out.as_mut() {
        out.flush()?;
    }
    let (n, samples) = db.rule_errors(5).await?;
    sink.summary.rule_errors = n;
    sink.summary.rule_error_samples = samples;
    Ok(sink.summary)
}

/// Ingests events of one moment, after bringing virtual time to it; with
/// `run`, the last of that moment's events, the engine then processes them.
#[allow(clippy::too_many_arguments)]
async fn flush(
    db: &Db,
    engine: &Engine,
    clock: &Clock,
    sink: &mut Sink<'_, '_>,
    chunk: &mut Vec<RawRecord>,
    at: Option<i64>,
    purposes: &crate::events::PurposeCheck,
    run: bool,
) -> Result<()> {
    let Some(at) = at.filter(|_| !chunk.is_empty()) else {
        return Ok(());
    };
    if at > clock.now_ms() {
        arrive_at(db, engine, clock, at, sink).await?;
    }
    ingest_records(db, None, chunk, purposes, None, clock.now_ms()).await?;
    chunk.clear();
    if run {
        engine.run_until_idle().await?;
    }
    Ok(())
}

/// Who would gain or lose a notice going from the baseline rules to the simulated ones.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    /// Per `life situation / step`: (gained, lost).
    pub per_step: BTreeMap<String, (u64, u64)>,
    /// Per `life situation / step`: masked recipients who would gain one (a sample).
    pub gained_sample: BTreeMap<String, Vec<String>>,
    /// Per `life situation / step`: masked recipients who would lose one (a sample).
    pub lost_sample: BTreeMap<String, Vec<String>>,
    /// Notices gained in all.
    pub gained: u64,
    /// Notices lost in all.
    pub lost: u64,
}

/// Compares the notices two runs made (sent or suppressed), by notice id.
pub fn diff(simulated: &Summary, baseline: &Summary) -> Diff {
    let empty = HashMap::new();
    let (new, old) = (simulated.made.as_ref().unwrap_or(&empty), baseline.made.as_ref().unwrap_or(&empty));
    let mut d = Diff::default();
    // What one run made and the other did not: counted per step, a few recipients kept.
    let only_in = |a: &HashMap<_, (String, String, String)>, b: &HashMap<_, _>, lost: bool, d: &mut Diff| {
        for (id, (ls, step, to)) in a {
            if b.contains_key(id) {
                continue;
            }
            let key = format!("{ls} / {step}");
            let (count, total, samples) = if lost {
                (&mut d.per_step.entry(key.clone()).or_default().1, &mut d.lost, &mut d.lost_sample)
            } else {
                (&mut d.per_step.entry(key.clone()).or_default().0, &mut d.gained, &mut d.gained_sample)
            };
            *count += 1;
            *total += 1;
            let s = samples.entry(key).or_default();
            if s.len() < SAMPLE {
                s.push(mask_code(to));
            }
        }
    };
    only_in(new, old, false, &mut d);
    only_in(old, new, true, &mut d);
    for s in d.gained_sample.values_mut().chain(d.lost_sample.values_mut()) {
        s.sort();
    }
    d
}

/// What `proactive rules simulate` was asked to do.
#[derive(Clone, Debug)]
pub struct Request {
    /// The events file (JSONL change records).
    pub events: PathBuf,
    /// First simulated day.
    pub from: Option<NaiveDate>,
    /// Last simulated day.
    pub to: Option<NaiveDate>,
    /// Where the records go (JSONL).
    pub out: Option<PathBuf>,
    /// Folder for `index.html`.
    pub report: Option<PathBuf>,
    /// A folder with `life-events/` and `rules/` to compare with.
    pub baseline: Option<PathBuf>,
}

/// Everything a simulation found.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The run with the configured rules.
    pub simulated: Summary,
    /// The run with the baseline rules.
    pub baseline: Option<Summary>,
    /// What changes from the baseline to the configured rules.
    pub diff: Option<Diff>,
    /// Lines that did not validate (the first thousand).
    pub bad: Vec<BadLine>,
}

/// Loads a rule set from a folder holding `life-events/` and `rules/`.
pub fn load_rules_dir(dir: &Path) -> Result<RuleSet> {
    RuleSet::load(&dir.join("life-events"), &dir.join("rules")).map_err(|e| {
        anyhow::anyhow!("the rule set in {} does not load ({} errors): {}", dir.display(), e.len(), e.join("; "))
    })
}

/// Runs a whole simulation: the configured rules, the baseline if asked, the outputs.
pub async fn simulate(rules: Arc<RuleSet>, req: &Request) -> Result<Outcome> {
    let baseline_rules = req.baseline.as_deref().map(load_rules_dir).transpose()?.map(Arc::new);
    let purposes = {
        let (a, b) = (rules.clone(), baseline_rules.clone());
        move |p: &str| a.declares_purpose(p) || b.as_ref().is_some_and(|b| b.declares_purpose(p))
    };
    let index = index_events(&req.events, &purposes)?;
    let window = index.window(req.from, req.to);
    anyhow::ensure!(window.from <= window.to, "--from {} is after --to {}", window.from, window.to);
    let mut file = match &req.out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => None,
    };
    let out = file.as_mut().map(|f| f as &mut dyn Write);
    let compare = baseline_rules.is_some();
    let simulated = run(rules, &index, window, out, compare, "simulating").await?;
    let baseline = match baseline_rules {
        Some(b) => Some(run(b, &index, window, None, true, "baseline").await?),
        None => None,
    };
    let diff = baseline.as_ref().map(|b| diff(&simulated, b));
    let outcome = Outcome { simulated, baseline, diff, bad: index.bad };
    if let Some(dir) = &req.report {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        let html = super::report::render(&outcome)?;
        let path = dir.join("index.html");
        std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(outcome)
}

/// Prints what a simulation found, for a terminal.
pub fn print_summary(o: &Outcome, req: &Request) {
    let s = &o.simulated;
    if let Some(w) = s.window {
        println!("simulated {} to {}: {} events", w.from, w.to, s.events);
    }
    if s.bad_lines > 0 {
        println!("{} lines did not validate and were left out:", s.bad_lines);
        for b in o.bad.iter().take(10) {
            println!("  {}:{}: {}", req.events.display(), b.line, b.error);
        }
        if s.bad_lines > 10 {
            println!("  … and {} more", s.bad_lines - 10);
        }
    }
    println!(
        "{} notices to {} recipients, {} suppressed, {} cancelled, {} steps skipped, {} rule errors",
        s.notices, s.recipients, s.suppressed, s.cancelled, s.skipped, s.rule_errors
    );
    for e in &s.rule_error_samples {
        println!("  rule error: {e}");
    }
    for (ls, n) in &s.per_situation {
        println!("  {ls:<24} {n:>9}");
    }
    if let (Some(d), Some(b)) = (&o.diff, &o.baseline) {
        println!("against the baseline ({} notices): {} gained, {} lost", b.notices + b.suppressed, d.gained, d.lost);
        for (step, (g, l)) in &d.per_step {
            println!("  {step:<48} +{g} -{l}");
        }
    }
    if let Some(p) = &req.out {
        println!("records: {}", p.display());
    }
    if let Some(p) = &req.report {
        println!("report: {}", p.join("index.html").display());
    }
}
