//! Schedule benchmark: a synthetic population loaded as a backfill, its
//! date-derived schedules computed, then a year of virtual time fired.
//!
//! Run it as `cargo bench --bench schedule` (200,000 people by default so a
//! run takes a few minutes; `SCHEDULE_PEOPLE=1000000`, or the number as an
//! argument after `--`, for the full population of the issue).
//!
//! What it does, on a fresh SQLite file (WAL, the pragmas of `Db::open`), with
//! the shipped library of life situations:
//!
//! 1. **Load.** Generates the population on the fly with the generator of
//!    `proactive gen population` ([`proactive::tools::population`], seed
//!    2026) and keeps its backfill, the history up to the start as a
//!    register sends it (births of long ago arriving today, documents with
//!    their expiry, marriages, contacts, consents, e-addresses, companies
//!    and their officers). The records go through validation into the
//!    event log in chunks of 5,000 (`load_s`); the generator, standing in
//!    for the register, makes the next chunk on its own thread meanwhile.
//! 2. **Schedule.** The engine processes the whole log: profiles, and for
//!    each fact the cases whose dated steps are still ahead, each with its
//!    plan and the earliest due time as the timer index (`schedule_s`).
//!    Life situations that count only from a profile's dates (school age,
//!    coming of age and pension age from the birth date, the passport
//!    reminders from the document's expiry) open a case only when the first
//!    step is within the engine's horizon (400 days) and are otherwise found
//!    later by date in an index (`engine::openings`). Births too old for the
//!    birth chain start nothing (recorded).
//! 3. **Fire a year.** A virtual clock moves one day at a time for 365 days;
//!    each day the cases now within the horizon open and every
//!    due timer fires (`fire_year_s`, `fired` = steps run), with
//!    [`Engine::fire_through`]: one day's batch is read and evaluated while
//!    the previous one commits.
//!
//! After phases 2 and 3 a line gives the engine's seconds per stage
//! (`proactive_engine_stage_seconds`: read, evaluate, commit, wait, open);
//! the engine evaluates one batch while the one before commits, so the
//! phase takes about the larger side, and `wait` says when that is the commit.
//!
//! Peak memory is `VmHWM` over the whole run (the generator holds one chunk).
//! The last line is `schedule: people=N load_s=A schedule_s=B fire_year_s=C fired=F peak_mb=M`.
//! This is a measurement: it asserts no timings, only that the work was done.

mod common;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::peak_rss_mb;
use proactive::clock::Clock;
use proactive::config::Config;
use proactive::engine::{BatchReport, Engine, RuleSet};
use proactive::events::{RawRecord, ingest_records};
use proactive::store::Db;
use proactive::tools::population::{Population, PopulationSpec};

const DEFAULT_PEOPLE: usize = 200_000;
const CHUNK: usize = 5_000;
const START: &str = "2026-12-01T09:00:00+02:00";

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let n = common::size_wanted("SCHEDULE_PEOPLE", DEFAULT_PEOPLE, "people")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> Result<()> {
    let rules = common::shipped_rules()?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("schedule.db").display());
    let cfg = Config::default();
    let db = Db::open(&url, cfg.database.max_connections).await?;
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339(START)?.to_utc();
    let clock = Clock::manual(start);
    println!("schedule: {n} people, SQLite in {}", dir.path().display());

    let t = Instant::now();
    let events = load(&db, &rules, &clock, n).await?;
    let load_s = t.elapsed().as_secs_f64();
    println!("load: {events} records in {load_s:.2} s = {:.0} records/s", events as f64 / load_s);

    let engine = Engine::new(db.clone(), rules.clone(), clock.clone(), cfg.engine.batch_size)
        .with_backlog_batch(cfg.engine.backlog_batch_size);
    let t = Instant::now();
    let stages = proactive::metrics::stage_seconds();
    let scheduled = engine.run_until_idle().await?;
    let schedule_s = t.elapsed().as_secs_f64();
    println!("schedule stages (s): {}", common::stages_since(&stages));
    ensure!(scheduled.events == events, "the engine processed {} of {events} events", scheduled.events);
    ensure!(scheduled.errors == 0, "{} rule errors", scheduled.errors);
    let backlog = db.pending_timer_count().await?;
    println!(
        "schedule: {} events in {schedule_s:.2} s = {:.0} events/s; {} cases, {} notices at once, {backlog} cases waiting",
        scheduled.events,
        scheduled.events as f64 / schedule_s,
        scheduled.cases,
        scheduled.notices
    );

    let t = Instant::now();
    let stages = proactive::metrics::stage_seconds();
    let mut fired = BatchReport::default();
    for days in (1..=365).collect::<Vec<i64>>().chunks(73) {
        fired += engine.fire_through(days.iter().map(|d| start + Duration::days(*d))).await?;
        let day = days.last().expect("a chunk of days");
        eprintln!("  day {day}: {} steps fired, {:.1} s", fired.steps, t.elapsed().as_secs_f64());
    }
    let fire_year_s = t.elapsed().as_secs_f64();
    println!("fire stages (s): {}", common::stages_since(&stages));
    ensure!(fired.errors == 0, "{} rule errors while firing", fired.errors);
    ensure!(fired.steps > 0, "a year of a population fired no step");
    println!(
        "fire: a year in {fire_year_s:.2} s: {} steps of {} cases fired, {} notices, {} drafts",
        fired.steps, fired.timers, fired.notices, fired.drafts
    );
    let peak_mb = peak_rss_mb()?;
    db.close().await;
    println!(
        "schedule: people={n} load_s={load_s:.2} schedule_s={schedule_s:.2} fire_year_s={fire_year_s:.2} fired={} peak_mb={peak_mb:.1}",
        fired.steps
    );
    Ok(())
}

/// Generates and ingests the population's backfill; returns how many records
/// were stored. The generator, which stands in for the register sending its
/// records, runs on a thread of its own a chunk ahead, so that `load_s` is
/// the time the records take to validate and store, as a feed's would.
async fn load(db: &Db, rules: &Arc<RuleSet>, clock: &Clock, n: usize) -> Result<usize> {
    let start = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
    let mut purposes: Vec<String> =
        rules.situations.iter().flat_map(|d| d.purposes.iter().map(|p| p.id.clone())).collect();
    purposes.sort();
    purposes.dedup();
    let spec = PopulationSpec { people: n, seed: 2026, start, purposes };
    let declared = {
        let r = rules.clone();
        move |p: &str| r.declares_purpose(p)
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<RawRecord>>(2);
    let generator = tokio::task::spawn_blocking(move || {
        let mut pop = Population::new(spec);
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut reported = 0;
        loop {
            let next = pop.next();
            if let Some(c) = next.as_ref().filter(|c| c.occurred_at.date_naive() < start) {
                chunk.push(RawRecord { location: c.id.clone(), text: c.to_json().to_string() });
            }
            if chunk.len() >= CHUNK || (next.is_none() && !chunk.is_empty()) {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if tx.blocking_send(full).is_err() {
                    return; // the loader stopped on an error
                }
            }
            if pop.people() >= reported + (n / 5).max(1) {
                reported = pop.people();
                eprintln!("  load: {reported} people");
            }
            if next.is_none() {
                return;
            }
        }
    });
    let mut stored = 0;
    while let Some(chunk) = rx.recv().await {
        let c = ingest_records(db, None, &chunk, &declared, None, clock.now_ms()).await?;
        ensure!(c.quarantined == 0, "{} synthetic records did not validate", c.quarantined);
        stored += c.accepted;
    }
    generator.await?;
    Ok(stored)
}
