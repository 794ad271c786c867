//! Pipeline benchmark: N synthetic birth events through ingest → rules →
//! outbox on SQLite, against the raw SQLite ceiling for the same rows.
//!
//! Run it as `cargo bench --bench pipeline` (N = 200,000 by default; set
//! `PIPELINE_EVENTS=50000`, or pass the number as an argument after `--`).
//! `PIPELINE_STAGES=0` skips the optional "each stage alone" phase;
//! `PIPELINE_KEEP=1` keeps the SQLite files for a look with `sqlite3`.
//!
//! What it measures, in one process, each phase on a fresh, migrated SQLite
//! file (WAL, the pragmas of `Db::open`) in a temporary folder:
//!
//! 1. **End to end.** One task generates the births on the fly in chunks of
//!    5,000 records (JSON change records as a registry feed sends them) and
//!    hands each chunk to `events::ingest_records` (validation + one
//!    transaction); meanwhile the engine runs `run_until_idle` in a loop until
//!    ingestion is done and nothing is pending. Time runs from the first
//!    ingest to the engine's last commit. Most births have two parents, some
//!    one, a few are twins; parents are distinct people, so every batch
//!    prefetches ~2.8 profiles per event and writes the child's and the
//!    parents' profiles (a parent's children), the birth chain's case with
//!    its plan, and its first notices and prefilled drafts. (The child's
//!    school age, coming of age and pension age open from the profile when
//!    they come near, so a newborn writes no case for them.)
//!    A line gives the engine's seconds per stage of this phase
//!    (`proactive_engine_stage_seconds`: read, evaluate, commit, and the wait
//!    for the batch in flight).
//! 2. **Peak memory**: `VmHWM` of the process right after phase 1 (the
//!    generator never holds more than one chunk, so it should not grow with N).
//! 3. **Ceiling.** The rows phase 1 wrote (events with `processed_at` set,
//!    profiles, cases, notices with their traces, drafts, event_outcomes, the
//!    audit records) are read back and
//!    inserted, with no logic, into another fresh database with sqlx
//!    multi-row `INSERT`s (`QueryBuilder::push_values`, cut like the pipeline's own by `store::statement_chunks`
//!    values a statement), one transaction per engine batch's worth of rows.
//!    Only the inserts are timed.
//! 4. Optionally, each stage alone: ingest of all N into a fresh database,
//!    then the engine over the full log.
//!
//! Progress goes to stderr; results to stdout, the last line being
//! `pipeline: events=N events_per_s=X ceiling_rows_per_s=Y ratio=Z peak_mb=M`
//! where ratio = ceiling (in events/s) ÷ end to end (events/s).
//! This is a measurement: it asserts no timings, only that every birth
//! arrived and started its case.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::peak_rss_mb;

use anyhow::{Result, bail, ensure};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Riga;
use proactive::clock::Clock;
use proactive::config::Config;
use proactive::engine::{BatchReport, Engine, RuleSet};
use proactive::events::codes::valid_test_personal_code;
use proactive::events::{PurposeCheck, RawRecord, ingest_records};
use proactive::store::Db;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

const DEFAULT_EVENTS: usize = 200_000;
/// The generator has about 11.6 million distinct parents' codes.
const MAX_EVENTS: usize = 5_000_000;
/// Records per ingest call, as `events import` commits them.
const INGEST_CHUNK: usize = 5_000;
/// How long the engine waits when it finds nothing pending while ingestion still runs.
const ENGINE_IDLE_WAIT: Duration = Duration::from_millis(2);

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let n = common::size_wanted("PIPELINE_EVENTS", DEFAULT_EVENTS, "events")?;
    let stages = std::env::var("PIPELINE_STAGES").map(|v| v != "0").unwrap_or(true);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(n, stages))
}

async fn run(n: usize, stages: bool) -> Result<()> {
    ensure!(n > 0, "the number of events must be positive");
    ensure!(n <= MAX_EVENTS, "at most {MAX_EVENTS} events: the generator runs out of distinct parents' codes");
    let cfg = Config::default();
    let rules = common::shipped_rules()?;
    let births = BirthSpec::new(n);
    let dir = tempfile::tempdir()?;
    eprintln!("pipeline: {n} birth events, SQLite files in {}", dir.path().display());

    // 1. End to end: ingestion and the engine running concurrently.
    let e2e_url = sqlite_url(&dir, "e2e.db");
    let db = Db::open(&e2e_url, cfg.database.max_connections).await?;
    let stage_start = proactive::metrics::stage_seconds();
    let e2e = end_to_end(&db, &cfg, &rules, &births).await?;
    let e2e_stages = common::stages_since(&stage_start);
    // 2. Peak memory of the process so far, before the ceiling reads anything back.
    let peak_mb = peak_rss_mb()?;
    let e2e_rate = n as f64 / e2e.total.as_secs_f64();
    println!(
        "end to end: {n} events in {:.2} s = {e2e_rate:.0} events/s (ingest finished at {:.2} s, {:.0} events/s; \
         generating records took {:.2} s of it; {} batches' worth of events)",
        e2e.total.as_secs_f64(),
        e2e.ingest_done.as_secs_f64(),
        n as f64 / e2e.ingest_done.as_secs_f64(),
        e2e.generate.as_secs_f64(),
        e2e.batches,
    );
    println!(
        "engine output: {} cases, {} notices, {} drafts, {} rule errors",
        e2e.report.cases, e2e.report.notices, e2e.report.drafts, e2e.report.errors
    );
    println!("engine stages (s): {e2e_stages}");
    println!("peak memory after end to end: {peak_mb:.1} MB (VmHWM)");

    // 3. The ceiling: the same rows, plain multi-row inserts into a fresh database.
    let ceiling_db = Db::open(&sqlite_url(&dir, "ceiling.db"), cfg.database.max_connections).await?;
    let batches = n.div_ceil(cfg.engine.batch_size);
    let ceiling = copy_ceiling(&db, &ceiling_db, batches).await?;
    db.close().await;
    ceiling_db.close().await;
    let ceiling_rows_per_s = ceiling.rows as f64 / ceiling.insert.as_secs_f64();
    let ceiling_events_per_s = n as f64 / ceiling.insert.as_secs_f64();
    let per_table: Vec<String> = ceiling.per_table.iter().map(|(t, c)| format!("{t} {c}")).collect();
    println!(
        "rows written: {} ({:.2} per event: {})",
        ceiling.rows,
        ceiling.rows as f64 / n as f64,
        per_table.join(", ")
    );

    // 4. Each stage alone, for where the time goes.
    if stages {
        let (ingest_alone, engine_alone) = stages_alone(&dir, &cfg, &rules, &births).await?;
        println!(
            "stages alone: ingest {:.2} s = {:.0} events/s, engine {:.2} s = {:.0} events/s",
            ingest_alone.as_secs_f64(),
            n as f64 / ingest_alone.as_secs_f64(),
            engine_alone.as_secs_f64(),
            n as f64 / engine_alone.as_secs_f64(),
        );
    }

    println!(
        "ceiling: {} rows inserted in {:.2} s = {ceiling_rows_per_s:.0} rows/s = {ceiling_events_per_s:.0} events/s \
         ({} transactions)",
        ceiling.rows,
        ceiling.insert.as_secs_f64(),
        ceiling.transactions,
    );
    println!(
        "pipeline: events={n} events_per_s={e2e_rate:.0} ceiling_rows_per_s={ceiling_rows_per_s:.0} ratio={:.2} \
         peak_mb={peak_mb:.1}",
        ceiling_events_per_s / e2e_rate
    );
    if std::env::var_os("PIPELINE_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
    Ok(())
}

fn sqlite_url(dir: &tempfile::TempDir, file: &str) -> String {
    format!("sqlite://{}", dir.path().join(file).display())
}

/// The engine's clock: one day after the last synthetic birth.
fn engine_clock(births: &BirthSpec) -> Clock {
    Clock::manual(births.start + chrono::Duration::milliseconds(births.span_ms) + chrono::Duration::days(1))
}

fn engine_for(db: &Db, cfg: &Config, rules: &Arc<RuleSet>, clock: Clock) -> Engine {
    Engine::new(db.clone(), rules.clone(), clock, cfg.engine.batch_size)
        .with_backlog_batch(cfg.engine.backlog_batch_size)
}

struct EndToEnd {
    total: Duration,
    ingest_done: Duration,
    generate: Duration,
    batches: usize,
    report: BatchReport,
}

struct IngestDone {
    at: Duration,
    generate: Duration,
}

async fn end_to_end(db: &Db, cfg: &Config, rules: &Arc<RuleSet>, births: &BirthSpec) -> Result<EndToEnd> {
    let clock = engine_clock(births);
    let engine = engine_for(db, cfg, rules, clock.clone());
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let ingest = tokio::spawn({
        let (db, rules, births, done) = (db.clone(), rules.clone(), births.clone(), done.clone());
        async move {
            let purposes = move |p: &str| rules.declares_purpose(p);
            let generate = ingest_all(&db, &births, &purposes, &clock, "ingest").await;
            done.store(true, Ordering::Release);
            generate.map(|generate| IngestDone { at: start.elapsed(), generate })
        }
    });
    // The engine loop runs on this task, as `serve` runs it: pipelined batches
    // until nothing is pending, then a short wait while ingestion goes on.
    let mut report = BatchReport::default();
    let mut batches = 0usize;
    let mut last_commit = start;
    let mut next_progress = births.n / 10;
    loop {
        let ingest_finished = done.load(Ordering::Acquire);
        let r = match engine.run_until_idle().await {
            Ok(r) => r,
            Err(e) => {
                ingest.abort();
                return Err(e.context("engine batch failed"));
            }
        };
        if r.events > 0 {
            last_commit = Instant::now();
            batches += r.events.div_ceil(cfg.engine.batch_size);
            report += r;
            if report.events >= next_progress {
                eprintln!("  engine: {} events processed at {:.1} s", report.events, start.elapsed().as_secs_f64());
                next_progress += births.n / 10;
            }
        } else if ingest_finished {
            break;
        } else {
            tokio::time::sleep(ENGINE_IDLE_WAIT).await;
        }
    }
    let ingested = ingest.await??;
    ensure!(report.events == births.n, "the engine processed {} events, expected {}", report.events, births.n);
    ensure!(report.errors == 0, "{} rule errors: the synthetic data or the rules are broken", report.errors);
    // Each birth starts its birth case; the child's dated ones (school age,
    // coming of age, pension age) open from the profile years later.
    ensure!(
        report.cases >= births.n,
        "{} cases for {} births: some births did not start their case",
        report.cases,
        births.n
    );
    Ok(EndToEnd { total: last_commit - start, ingest_done: ingested.at, generate: ingested.generate, batches, report })
}

/// Generates and ingests every birth in chunks; returns the time spent generating.
async fn ingest_all(
    db: &Db,
    births: &BirthSpec,
    purposes: &PurposeCheck,
    clock: &Clock,
    label: &str,
) -> Result<Duration> {
    let start = Instant::now();
    let mut births_gen = BirthGenerator::new(births.clone());
    let mut chunk = Vec::with_capacity(INGEST_CHUNK);
    let mut generate = Duration::ZERO;
    let mut accepted = 0usize;
    let mut next_progress = births.n / 10;
    loop {
        let t = Instant::now();
        births_gen.fill(&mut chunk, INGEST_CHUNK);
        generate += t.elapsed();
        if chunk.is_empty() {
            break;
        }
        let counts = ingest_records(db, None, &chunk, purposes, None, clock.now_ms()).await?;
        ensure!(
            counts.quarantined == 0 && counts.duplicate == 0,
            "synthetic records were rejected ({counts:?}): the generator is broken"
        );
        accepted += counts.accepted;
        if accepted >= next_progress {
            eprintln!("  {label}: {accepted} events stored at {:.1} s", start.elapsed().as_secs_f64());
            next_progress += births.n / 10;
        }
    }
    ensure!(accepted == births.n, "{accepted} events stored, expected {}", births.n);
    Ok(generate)
}

/// Ingest alone into a fresh database, then the engine alone over the whole log.
async fn stages_alone(
    dir: &tempfile::TempDir,
    cfg: &Config,
    rules: &Arc<RuleSet>,
    births: &BirthSpec,
) -> Result<(Duration, Duration)> {
    let db = Db::open(&sqlite_url(dir, "stages.db"), cfg.database.max_connections).await?;
    let clock = engine_clock(births);
    let purposes = {
        let rules = rules.clone();
        move |p: &str| rules.declares_purpose(p)
    };
    let t = Instant::now();
    ingest_all(&db, births, &purposes, &clock, "ingest alone").await?;
    let ingest = t.elapsed();
    let engine = engine_for(&db, cfg, rules, clock);
    let t = Instant::now();
    let report = engine.run_until_idle().await?;
    let engine_time = t.elapsed();
    ensure!(report.cases >= births.n, "engine alone started {} cases for {} births", report.cases, births.n);
    db.close().await;
    Ok((ingest, engine_time))
}

// ---------------------------------------------------------------------------
// Synthetic births
// ---------------------------------------------------------------------------

/// What to generate: `n` births spread evenly over `span_ms` from `start`.
#[derive(Clone)]
struct BirthSpec {
    n: usize,
    start: DateTime<Utc>,
    span_ms: i64,
}

impl BirthSpec {
    fn new(n: usize) -> Self {
        // Twenty days of births; the engine's clock stands a day after the last one,
        // so all are within the birth trigger's 30-day max_age.
        let start = Riga.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().expect("a valid start time").to_utc();
        BirthSpec { n, start, span_ms: 20 * 86_400_000 }
    }
}

/// Streams distinct, valid old-format personal codes (with check digit) for parents
/// born 1970–2004: every birth day first, then the next serial.
struct ParentCodes {
    first_day: NaiveDate,
    days: u32,
    day: u32,
    serial: u16,
}

impl ParentCodes {
    fn new() -> Self {
        let first_day = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
        let days = (NaiveDate::from_ymd_opt(2005, 1, 1).expect("a valid date") - first_day).num_days() as u32;
        ParentCodes { first_day, days, day: 0, serial: 0 }
    }

    fn next_code(&mut self) -> String {
        loop {
            assert!(self.serial <= 999, "out of distinct parent codes");
            let birth = self.first_day + chrono::Duration::days(i64::from(self.day));
            let code = valid_test_personal_code(birth, self.serial);
            self.day += 1;
            if self.day == self.days {
                self.day = 0;
                self.serial += 1;
            }
            // About one (date, serial) pair in eleven has no valid check digit: take the next.
            if let Some(code) = code {
                return code;
            }
        }
    }
}

const GIRLS: &[&str] = &["Emīlija", "Sofija", "Alise", "Marta", "Anna", "Elizabete", "Paula", "Amēlija", "Evelīna"];
const BOYS: &[&str] = &["Roberts", "Markuss", "Gustavs", "Olivers", "Jānis", "Mārtiņš", "Kārlis", "Mark", "Daniel"];
const FAMILY: &[(&str, &str)] = &[
    ("Bērziņš", "Bērziņa"),
    ("Kalniņš", "Kalniņa"),
    ("Ozols", "Ozola"),
    ("Jansons", "Jansone"),
    ("Liepiņš", "Liepiņa"),
    ("Krūmiņš", "Krūmiņa"),
    ("Ivanovs", "Ivanova"),
    ("Pētersons", "Pētersone"),
];
const PLACES: &[(&str, &str, &str)] = &[
    ("Rīga", "Brīvības iela", "LV-1010"),
    ("Daugavpils", "Rīgas iela", "LV-5401"),
    ("Jelgava", "Lielā iela", "LV-3001"),
    ("Ogre", "Skolas iela", "LV-5001"),
    ("Liepāja", "Graudu iela", "LV-3401"),
    ("Valmiera", "Rīgas iela", "LV-4201"),
];

/// Generates the births in order, one chunk at a time.
struct BirthGenerator {
    spec: BirthSpec,
    next: usize,
    parents: ParentCodes,
    last_parents: Option<(String, Option<String>)>,
}

impl BirthGenerator {
    fn new(spec: BirthSpec) -> Self {
        BirthGenerator { spec, next: 0, parents: ParentCodes::new(), last_parents: None }
    }

    /// Replaces `chunk`'s contents with the next (up to) `size` records; empty when all are out.
    fn fill(&mut self, chunk: &mut Vec<RawRecord>, size: usize) {
        chunk.clear();
        while chunk.len() < size && self.next < self.spec.n {
            let record = self.birth(self.next);
            chunk.push(record);
            self.next += 1;
        }
    }

    fn birth(&mut self, i: usize) -> RawRecord {
        let r = mix(i as u64);
        let pct = r % 100;
        // 2 % twins (the previous birth's parents again), 12 % with the mother only.
        let (mother, father) = match &self.last_parents {
            Some(p) if pct < 2 => p.clone(),
            _ => {
                let mother = self.parents.next_code();
                let father = if pct < 14 { None } else { Some(self.parents.next_code()) };
                (mother, father)
            }
        };
        self.last_parents = Some((mother.clone(), father.clone()));
        let at_ms = self.spec.start.timestamp_millis() + (i as i64) * self.spec.span_ms / self.spec.n as i64;
        let at = DateTime::<Utc>::from_timestamp_millis(at_ms).expect("a valid time").with_timezone(&Riga);
        let girl = (r >> 8) & 1 == 0;
        let given = if girl { GIRLS } else { BOYS };
        let given = given[(r >> 16) as usize % given.len()];
        let family = FAMILY[(r >> 24) as usize % FAMILY.len()];
        let family = if girl { family.1 } else { family.0 };
        let (municipality, street, post) = PLACES[(r >> 32) as usize % PLACES.len()];
        let house = 1 + (r >> 40) % 120;
        // New-format code (since 2017: no birth date, no check digit): 32 and nine digits that
        // look random, as issued codes do; a bijection of the counter, so every child is distinct.
        let digits = (i as u64 % 1_000_000_000) * 387_420_489 % 1_000_000_000;
        let child = format!("32{:04}-{:05}", digits / 100_000, digits % 100_000);
        let text = serde_json::json!({
            "source": "pmlp",
            "id": format!("pmlp-{:09}", i),
            "type": "birth.registered",
            "subject": child,
            "occurred_at": at.to_rfc3339(),
            "data": {
                "given_name": given,
                "family_name": family,
                "birth_date": at.date_naive().to_string(),
                "sex": if girl { "F" } else { "M" },
                "mother": mother,
                "father": father,
                "municipality": municipality,
                "address": format!("{street} {house}, {municipality}, {post}"),
            }
        })
        .to_string();
        RawRecord { location: format!("bench feed, record {}", i + 1), text }
    }
}

/// SplitMix64: a fixed, well-spread pseudo-random number per birth.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// The ceiling
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Ty {
    Int,
    Text,
}

/// The tables the pipeline writes, with every column it fills (migrations/sqlite/0001_pipeline.sql,
/// 0003_chains.sql, 0006_audit.sql: a notice's trace and the audit record of its creation included).
const TABLES: &[(&str, &[(&str, Ty)])] = &[
    (
        "events",
        &[
            ("seq", Ty::Int),
            ("source", Ty::Text),
            ("external_id", Ty::Text),
            ("type", Ty::Text),
            ("subject", Ty::Text),
            ("occurred_at", Ty::Int),
            ("received_at", Ty::Int),
            ("data", Ty::Text),
            ("processed_at", Ty::Int),
        ],
    ),
    (
        "profiles",
        &[
            ("subject", Ty::Text),
            ("kind", Ty::Text),
            ("birth_date", Ty::Text),
            ("death_date", Ty::Text),
            ("mother", Ty::Text),
            ("father", Ty::Text),
            ("doc", Ty::Text),
            ("updated_at", Ty::Int),
        ],
    ),
    (
        "cases",
        &[
            ("id", Ty::Text),
            ("life_situation", Ty::Text),
            ("version", Ty::Int),
            ("subject", Ty::Text),
            ("fact", Ty::Text),
            ("state", Ty::Text),
            ("trigger_seq", Ty::Int),
            ("created_at", Ty::Int),
            ("updated_at", Ty::Int),
            ("started_at", Ty::Int),
            ("anchor", Ty::Text),
            ("plan", Ty::Text),
            ("next_due_at", Ty::Int),
            ("closed_reason", Ty::Text),
        ],
    ),
    (
        "notices",
        &[
            ("id", Ty::Text),
            ("case_id", Ty::Text),
            ("life_situation", Ty::Text),
            ("version", Ty::Int),
            ("step", Ty::Text),
            ("recipient", Ty::Text),
            ("purpose", Ty::Text),
            ("template", Ty::Text),
            ("data", Ty::Text),
            ("draft_ref", Ty::Text),
            ("due_at", Ty::Int),
            ("available_at", Ty::Int),
            ("state", Ty::Text),
            ("attempts", Ty::Int),
            ("lease_until", Ty::Int),
            ("channel", Ty::Text),
            ("last_error", Ty::Text),
            ("created_at", Ty::Int),
            ("sent_at", Ty::Int),
            ("priority", Ty::Int),
            ("trace", Ty::Text),
        ],
    ),
    (
        "drafts",
        &[
            ("ref", Ty::Text),
            ("case_id", Ty::Text),
            ("service_id", Ty::Text),
            ("applicant", Ty::Text),
            ("fields", Ty::Text),
            ("status", Ty::Text),
            ("expires_at", Ty::Int),
            ("created_at", Ty::Int),
        ],
    ),
    (
        "event_outcomes",
        &[
            ("id", Ty::Int),
            ("event_seq", Ty::Int),
            ("life_situation", Ty::Text),
            ("step", Ty::Text),
            ("outcome", Ty::Text),
            ("detail", Ty::Text),
            ("at", Ty::Int),
        ],
    ),
    (
        "audit_log",
        &[
            ("chain", Ty::Text),
            ("seq", Ty::Int),
            ("at", Ty::Int),
            ("kind", Ty::Text),
            ("purpose", Ty::Text),
            ("subject_ref", Ty::Text),
            ("notice_id", Ty::Text),
            ("record", Ty::Text),
            ("prev_hash", Ty::Text),
            ("hash", Ty::Text),
        ],
    ),
];

/// One stored value, moved from the read into the insert.
#[derive(Clone)]
enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

struct Ceiling {
    rows: usize,
    per_table: Vec<(&'static str, usize)>,
    insert: Duration,
    transactions: usize,
}

fn sqlite(db: &Db) -> Result<&SqlitePool> {
    match db {
        Db::Sqlite(p, _) => Ok(p),
        Db::Postgres(_) => bail!("the benchmark runs on SQLite"),
    }
}

/// Copies every row of `from`'s pipeline tables into `to` in `batches`
/// transactions (each holding the same share of every table, like one engine
/// batch), timing only the inserts and commits.
async fn copy_ceiling(from: &Db, to: &Db, batches: usize) -> Result<Ceiling> {
    let (src, dst) = (sqlite(from)?, sqlite(to)?);
    let mut per_table = Vec::new();
    for (table, _) in TABLES {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(src).await?;
        per_table.push((*table, count as usize));
    }
    let rows: usize = per_table.iter().map(|(_, c)| c).sum();
    let mut after = vec![0i64; TABLES.len()];
    let mut insert = Duration::ZERO;
    let mut inserted = 0usize;
    let started = Instant::now();
    for batch in 0..batches {
        // Read this batch's share of each table (untimed), as statements' worth of rows.
        let mut statements: Vec<(usize, Vec<Vec<Val>>)> = Vec::new();
        for (t, (table, cols)) in TABLES.iter().enumerate() {
            let share = per_table[t].1.div_ceil(batches);
            if share == 0 {
                continue;
            }
            let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
            let sql = format!(
                "SELECT rowid AS bench_rowid, {} FROM {table} WHERE rowid > $1 ORDER BY rowid LIMIT $2",
                names.join(", ")
            );
            let read = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after[t]).bind(share as i64).fetch_all(src).await?;
            if let Some(last) = read.last() {
                after[t] = last.try_get("bench_rowid")?;
            }
            let rows = read.iter().map(|r| values(r, cols)).collect::<Result<Vec<_>>>()?;
            // The same statement shapes the pipeline uses, so neither side pays for
            // preparing a fresh thousand-placeholder statement per batch.
            for chunk in proactive::store::statement_chunks(&rows, cols.len()) {
                statements.push((t, chunk.to_vec()));
            }
        }
        // Insert them in one transaction (timed).
        let t0 = Instant::now();
        let mut tx = dst.begin().await?;
        for (t, rows) in statements {
            let (table, cols) = TABLES[t];
            inserted += rows.len();
            let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("INSERT INTO {table} ({}) ", names.join(", ")));
            qb.push_values(rows, |mut b, row| {
                for v in row {
                    match v {
                        Val::Int(i) => b.push_bind(i),
                        Val::Text(s) => b.push_bind(s),
                    };
                }
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        insert += t0.elapsed();
        if (batch + 1) % (batches / 5).max(1) == 0 {
            eprintln!(
                "  ceiling: {inserted} rows copied at {:.1} s ({:.2} s inserting)",
                started.elapsed().as_secs_f64(),
                insert.as_secs_f64()
            );
        }
    }
    ensure!(inserted == rows, "the ceiling copied {inserted} rows of {rows}");
    Ok(Ceiling { rows, per_table, insert, transactions: batches })
}

fn values(row: &SqliteRow, cols: &[(&str, Ty)]) -> Result<Vec<Val>> {
    cols.iter()
        .map(|(c, ty)| {
            Ok(match ty {
                Ty::Int => Val::Int(row.try_get(*c)?),
                Ty::Text => Val::Text(row.try_get(*c)?),
            })
        })
        .collect()
}
