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
//! 1. **Load.** Generates the population on the fly: for each person a
//!    `birth.registered` record (ages 0–95, as a register backfill sends
//!    them: births of long ago arriving today) and, for 85 % of them, a
//!    `document.issued` (passport or eID card, issued within the last ten
//!    years, valid ten years, five for a minor). The records go through
//!    validation into the event log in chunks of 5,000 (`load_s`).
//! 2. **Schedule.** The engine processes the whole log: profiles, and for
//!    each fact the cases whose dated steps are still ahead (school age,
//!    coming of age, pension age, document expiry), each with its plan and
//!    the earliest due time as the timer index (`schedule_s`). Births too
//!    old for the birth chain start nothing (recorded).
//! 3. **Fire a year.** A virtual clock moves one day at a time for 365 days;
//!    each day every due timer fires (`fire_year_s`, `fired` = steps run).
//!
//! Peak memory is `VmHWM` over the whole run (the generator holds one chunk).
//! The last line is `schedule: people=N load_s=A schedule_s=B fire_year_s=C fired=F peak_mb=M`.
//! This is a measurement: it asserts no timings, only that the work was done.

mod common;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::peak_rss_mb;
use proactive::clock::Clock;
use proactive::config::Config;
use proactive::engine::{BatchReport, Engine, RuleSet};
use proactive::events::codes::valid_test_personal_code;
use proactive::events::{RawRecord, ingest_records};
use proactive::store::Db;
use rand::{RngExt, SeedableRng};

const DEFAULT_PEOPLE: usize = 200_000;
const CHUNK: usize = 5_000;
const START: &str = "2026-12-01T09:00:00+02:00";

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let n = people_wanted()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(n))
}

fn people_wanted() -> Result<usize> {
    if let Some(a) = std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        return a.replace('_', "").parse().with_context(|| format!("the argument {a:?} is not a number of people"));
    }
    match std::env::var("SCHEDULE_PEOPLE") {
        Ok(v) => v.replace('_', "").parse().with_context(|| format!("SCHEDULE_PEOPLE={v:?} is not a number")),
        Err(_) => Ok(DEFAULT_PEOPLE),
    }
}

async fn run(n: usize) -> Result<()> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rules = Arc::new(
        RuleSet::load(&root.join("life-events"), &root.join("rules"))
            .map_err(|e| anyhow::anyhow!("the shipped library does not load: {}", e.join("; ")))?,
    );
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

    let engine = Engine::new(db.clone(), rules.clone(), clock.clone(), cfg.engine.batch_size);
    let t = Instant::now();
    let scheduled = engine.run_until_idle().await?;
    let schedule_s = t.elapsed().as_secs_f64();
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
    let mut fired = BatchReport::default();
    for day in 1..=365 {
        clock.set(start + Duration::days(day));
        loop {
            let r = engine.run_due_timers().await?;
            if r.timers == 0 {
                break;
            }
            fired += r;
        }
        if day % 73 == 0 {
            eprintln!("  day {day}: {} steps fired, {:.1} s", fired.steps, t.elapsed().as_secs_f64());
        }
    }
    let fire_year_s = t.elapsed().as_secs_f64();
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

/// Generates and ingests the population; returns how many records were stored.
async fn load(db: &Db, rules: &Arc<RuleSet>, clock: &Clock, n: usize) -> Result<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let today = NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
    let purposes = {
        let r = rules.clone();
        move |p: &str| r.declares_purpose(p)
    };
    let mut serial_of_day: std::collections::HashMap<NaiveDate, u16> = std::collections::HashMap::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut stored = 0;
    for i in 0..n {
        let birth = loop {
            let b = today - Duration::days(rng.random_range(0..95 * 365));
            let s = serial_of_day.entry(b).or_insert(0);
            *s += 1;
            if let Some(code) = valid_test_personal_code(b, *s) {
                break (b, code);
            }
        };
        let (birth_date, code) = birth;
        let sex = if i % 2 == 0 { "F" } else { "M" };
        chunk.push(record(
            &format!("pmlp-b{i}"),
            "birth.registered",
            &code,
            birth_date,
            serde_json::json!({
                "given_name": if sex == "F" { "Anna" } else { "Jānis" }, "family_name": "Bērziņa",
                "birth_date": birth_date.to_string(), "sex": sex, "mother": null, "father": null,
                "municipality": "Rīga", "address": "Brīvības iela 1, Rīga",
            }),
        ));
        if rng.random_range(0..100) < 85 {
            let age_days = (today - birth_date).num_days();
            let back = rng.random_range(0..(10 * 365).min(age_days + 1));
            let issued = today - Duration::days(back);
            let minor = (issued - birth_date).num_days() < 18 * 365;
            let years = if minor { 5 } else { 10 };
            let expires = proactive::engine::schedule::add_months(issued, years * 12).expect("date");
            let kind = if i % 3 == 0 { "eid" } else { "passport" };
            chunk.push(record(
                &format!("pmlp-d{i}"),
                "document.issued",
                &code,
                issued,
                serde_json::json!({
                    "document": kind, "number": format!("LV{i:07}"),
                    "issued": issued.to_string(), "expires": expires.to_string(),
                }),
            ));
        }
        if chunk.len() >= CHUNK || i + 1 == n {
            let c = ingest_records(db, None, &chunk, &purposes, None, clock.now_ms()).await?;
            ensure!(c.quarantined == 0, "{} synthetic records did not validate", c.quarantined);
            stored += c.accepted;
            chunk.clear();
        }
        if (i + 1) % (n / 5).max(1) == 0 {
            eprintln!("  load: {} people", i + 1);
        }
    }
    Ok(stored)
}

fn record(id: &str, kind: &str, subject: &str, day: NaiveDate, data: serde_json::Value) -> RawRecord {
    let v = serde_json::json!({
        "source": "pmlp", "id": id, "type": kind, "subject": subject,
        "occurred_at": format!("{day}T12:00:00+02:00"), "data": data,
    });
    RawRecord { location: id.to_string(), text: v.to_string() }
}
