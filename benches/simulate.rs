//! Simulation benchmark: a synthetic population written as a JSONL history
//! by the generator of `proactive gen population`, then a year of it run
//! through `rules simulate` with the shipped library of life situations.
//!
//! Run it as `cargo bench --bench simulate` (100,000 people by default so a
//! run takes a couple of minutes; `SIMULATE_PEOPLE=1000000`, or the number as
//! an argument after `--`, for the full size).
//!
//! 1. **Generate** (`gen_s`): the population's history up to 2026-12-01 and
//!    the year after it, streamed to a file in a temporary folder.
//! 2. **Simulate** (`wall_s`): the file validated and indexed by time, the
//!    backfill ingested at the start, the year's events as they happen,
//!    every timer fired in order on a virtual clock; every notice routed and
//!    written as JSONL, as `--out` does.
//!
//! A line gives the engine's seconds per stage (`proactive_engine_stage_seconds`).
//! Peak memory is `VmHWM` over the whole run. The last line is
//! `simulate: people=N notices=K wall_s=S peak_mb=M`, `notices` being those
//! that would be sent. This is a measurement: it asserts no timings, only
//! that the work was done.

mod common;

use std::time::Instant;

use anyhow::{Result, ensure};
use chrono::NaiveDate;
use common::peak_rss_mb;
use proactive::tools::population::{PopulationSpec, write_jsonl};
use proactive::tools::simulate::{Request, simulate};

const DEFAULT_PEOPLE: usize = 100_000;

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let n = common::size_wanted("SIMULATE_PEOPLE", DEFAULT_PEOPLE, "people")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> Result<()> {
    let rules = common::shipped_rules()?;
    let dir = tempfile::tempdir()?;
    let events = dir.path().join("population.jsonl");
    let mut purposes: Vec<String> =
        rules.situations.iter().flat_map(|d| d.purposes.iter().map(|p| p.id.clone())).collect();
    purposes.sort();
    purposes.dedup();
    let start = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
    let spec = PopulationSpec { people: n, seed: 2026, start, purposes };
    println!("simulate: {n} people, files in {}", dir.path().display());

    let t = Instant::now();
    let mut w = std::io::BufWriter::new(std::fs::File::create(&events)?);
    let lines = write_jsonl(&spec, &mut w, &mut |_| {})?;
    std::io::Write::flush(&mut w)?;
    drop(w);
    println!("generate: {lines} change records in {:.2} s", t.elapsed().as_secs_f64());

    let req = Request {
        events,
        from: None,
        to: None,
        out: Some(dir.path().join("notices.jsonl")),
        report: None,
        baseline: None,
    };
    let t = Instant::now();
    let stages = proactive::metrics::stage_seconds();
    let o = simulate(rules, &req).await?;
    let wall_s = t.elapsed().as_secs_f64();
    // The rest of wall_s is ingest, routing the notices due and writing them out.
    println!("engine stages (s): {}", common::stages_since(&stages));
    let s = &o.simulated;
    ensure!(s.bad_lines == 0, "{} generated lines did not validate", s.bad_lines);
    ensure!(s.rule_errors == 0, "{} rule errors: {:?}", s.rule_errors, s.rule_error_samples);
    ensure!(s.notices > 0, "a year of a population sent no notice");
    println!(
        "simulated: {} events; {} notices to {} recipients, {} suppressed, {} cancelled, {} skipped in {wall_s:.2} s",
        s.events, s.notices, s.recipients, s.suppressed, s.cancelled, s.skipped
    );
    for (ls, k) in &s.per_situation {
        println!("  {ls:<24} {k:>9}");
    }
    let peak_mb = peak_rss_mb()?;
    println!("simulate: people={n} notices={} wall_s={wall_s:.2} peak_mb={peak_mb:.1}", s.notices);
    Ok(())
}
