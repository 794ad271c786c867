//! Register snapshot benchmark: a realistic synthetic `register.csv` of N
//! companies (500,000 by default, the real file's size), loaded as the
//! baseline and then diffed against the next day's file, on SQLite.
//!
//! Run it as `cargo bench --bench snapshot` (set `SNAPSHOT_ROWS=100000`, or
//! pass the number as an argument after `--`).
//!
//! 1. **Generate** (not measured): two files in a temporary folder, written
//!    row by row through the csv crate exactly like the real one — BOM, CRLF,
//!    the real 21-column header, `;`-separated, RFC 4180 quoting. Names carry
//!    quotes (`SIA "Ozols"`), some nested doubled quotes and some `;`;
//!    addresses are Latvian street addresses, some with `;` or quotes; about a
//!    third of the companies are terminated or closed, as in the real
//!    register; a handful of rows are malformed. Day 2 adds 0.06% new
//!    companies and terminates, renames and moves a few hundred each — a busy
//!    day of the real register.
//! 2. **First load**: `events import-snapshot`'s path (`SnapshotFile::local`
//!    hashing the file, then `snapshot::process`) on a fresh migrated store:
//!    the baseline, which writes every fingerprint and company profile.
//! 3. **Diff**: the same for day 2: hash, check pass, apply pass, events.
//!
//! Peak memory is the process's `VmHWM`, reset (`/proc/self/clear_refs` ← 5)
//! after the generator and again before the diff, so it covers only the
//! measured phase (the process's own baseline, runtime and SQLite included).
//! Results go to stdout, the last line being
//! `snapshot: rows=N first_load_s=A diff_s=B peak_mb=M` (M the larger of the
//! two phases' peaks). This is a measurement: it asserts the diff's counts,
//! not its timings.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

mod common;

use common::{peak_rss_mb, reset_peak};

use anyhow::{Result, bail, ensure};
use proactive::clock::Clock;
use proactive::connectors::snapshot::register::HEADER;
use proactive::connectors::snapshot::{Outcome, SnapshotFile, SnapshotSettings, SnapshotStats, process};
use proactive::events::codes::valid_test_regno;
use proactive::store::Db;

const DEFAULT_ROWS: usize = 500_000;

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let n = common::size_wanted("SNAPSHOT_ROWS", DEFAULT_ROWS, "rows")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    eprintln!("generating two days of register.csv with {n} companies in {}", dir.path().display());
    let t = Instant::now();
    let day1 = dir.path().join("register-2026-11-19.csv");
    let day2 = dir.path().join("register-2026-11-20.csv");
    let plan = generate(n, &day1, &day2)?;
    let size = std::fs::metadata(&day2)?.len();
    eprintln!(
        "  done in {:.1} s: {:.1} MB a file; day 2 has {} new, {} terminated, {} renamed, {} moved, {} malformed rows",
        t.elapsed().as_secs_f64(),
        size as f64 / 1e6,
        plan.new,
        plan.terminated,
        plan.renamed,
        plan.moved,
        plan.malformed
    );

    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let db = Db::open(&url, 4).await?;
    let clock = Clock::system();
    let settings = SnapshotSettings::new("ur");
    let no_purposes = |_: &str| false;
    let hwm_reset = reset_peak();

    let t = Instant::now();
    let f = SnapshotFile::local(&day1, chrono::NaiveDate::from_ymd_opt(2026, 11, 19))?;
    let first = process(&db, &settings, &f, &no_purposes, &clock, &mut |_| {}).await?;
    let first_load_s = t.elapsed().as_secs_f64();
    let first_peak = peak_rss_mb()?;
    let first = stats(first, true)?;
    ensure!(first.new as usize == n, "the baseline kept {} of {n} companies", first.new);
    println!("first load (baseline): {n} companies in {first_load_s:.2} s, peak {first_peak:.1} MB (VmHWM)");

    reset_peak();
    let t = Instant::now();
    let f = SnapshotFile::local(&day2, chrono::NaiveDate::from_ymd_opt(2026, 11, 20))?;
    let second = process(&db, &settings, &f, &no_purposes, &clock, &mut |_| {}).await?;
    let diff_s = t.elapsed().as_secs_f64();
    let diff_peak = peak_rss_mb()?;
    let d = stats(second, false)?;
    println!(
        "diff: {} rows in {diff_s:.2} s, peak {diff_peak:.1} MB (VmHWM): {} new, {} terminated, {} renamed, {} moved, \
         {} vanished; {} events stored, {} rows quarantined",
        d.rows, d.new, d.terminated, d.renamed, d.moved, d.vanished, d.events, d.quarantined
    );
    ensure!(
        (d.new, d.terminated, d.renamed, d.moved, d.vanished)
            == (plan.new, plan.terminated, plan.renamed, plan.moved, 0),
        "the diff found other changes than the generator made: {d:?} vs {plan:?}"
    );
    ensure!(d.events == plan.new + plan.terminated + plan.renamed + plan.moved, "events: {}", d.events);
    if !hwm_reset {
        println!("note: VmHWM could not be reset; peak_mb includes the generator");
    }
    let peak_mb = first_peak.max(diff_peak);
    db.close().await;
    println!("snapshot: rows={n} first_load_s={first_load_s:.2} diff_s={diff_s:.2} peak_mb={peak_mb:.1}");
    Ok(())
}

fn stats(o: Outcome, baseline: bool) -> Result<SnapshotStats> {
    match o {
        Outcome::Applied { baseline: b, stats, .. } if b == baseline => Ok(stats),
        other => bail!("expected the snapshot applied (baseline: {baseline}), got {other:?}"),
    }
}

/// What the generator changed on day 2, to check the diff against.
#[derive(Debug, Default)]
struct Plan {
    new: u64,
    terminated: u64,
    renamed: u64,
    moved: u64,
    malformed: u64,
}

/// SplitMix64: a fixed, seedable stream so every run generates the same register.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick<'a>(h: u64, from: &[&'a str]) -> &'a str {
    from[(h % from.len() as u64) as usize]
}

const WORDS: &[&str] = &[
    "Ābols",
    "Bērzs",
    "Dzintars",
    "Kalns",
    "Liepa",
    "Ozols",
    "Saule",
    "Jūra",
    "Zvaigzne",
    "Meži",
    "Celtnieks",
    "Tehnoloģijas",
    "Serviss",
    "Transports",
    "Būve",
    "Agro",
    "Nams",
    "Grupa",
    "Baltija",
    "Kurzeme",
    "Vidzeme",
    "Latgale",
    "Zemgale",
    "Rīgas",
    "Daugava",
    "Gauja",
    "Venta",
    "Māja",
    "Dārzs",
    "Ceļš",
    "Koks",
    "Lauki",
    "Enerģija",
    "Konsultācijas",
    "Projekti",
    "Loģistika",
    "Auto",
    "Medicīna",
    "Zobārstniecība",
    "Grāmatvedība",
];
const CITIES: &[&str] = &[
    "Rīga",
    "Daugavpils",
    "Liepāja",
    "Jelgava",
    "Jūrmala",
    "Ventspils",
    "Rēzekne",
    "Valmiera",
    "Ogre",
    "Cēsis",
    "Tukums",
    "Salaspils",
    "Sigulda",
    "Kuldīga",
    "Talsi",
    "Bauska",
    "Dobele",
    "Madona",
    "Saldus",
    "Krāslava",
];
const STREETS: &[&str] = &[
    "Brīvības",
    "Elizabetes",
    "Lāčplēša",
    "Tērbatas",
    "Krišjāņa Barona",
    "Rīgas",
    "Pils",
    "Skolas",
    "Dzirnavu",
    "Stacijas",
    "Ganību",
    "Meža",
    "Dārza",
    "Ezera",
    "Upes",
    "Lielā",
    "Jaunā",
    "Baznīcas",
    "Zaļā",
    "Saules",
];

/// Legal forms with the register's long names, weighted roughly as in the real file.
const FORMS: &[(&str, &str, u64)] = &[
    ("SIA", "Sabiedrība ar ierobežotu atbildību", 62),
    ("IK", "Individuālais komersants", 12),
    ("BDR", "Biedrība", 10),
    ("ZEM", "Zemnieku saimniecība", 6),
    ("AS", "Akciju sabiedrība", 3),
    ("NOD", "Nodibinājums", 2),
    ("KB", "Kooperatīvā sabiedrība", 2),
    ("PS", "Pilnsabiedrība", 2),
    ("ARP", "Ārvalsts komersanta filiāle", 1),
];

/// One company on one day.
struct Row {
    regcode: String,
    form: (&'static str, &'static str),
    inner: String,
    registered: String,
    terminated: String,
    closed: &'static str,
    address: String,
}

fn company(seq: u64, new_on_day2: bool) -> Row {
    let h = mix(seq);
    let weight: u64 = FORMS.iter().map(|f| f.2).sum();
    let mut w = h % weight;
    let form = FORMS
        .iter()
        .find(|f| {
            if w < f.2 {
                true
            } else {
                w -= f.2;
                false
            }
        })
        .map(|f| (f.0, f.1))
        .unwrap_or(("SIA", "Sabiedrība ar ierobežotu atbildību"));
    let h2 = mix(h);
    let mut inner = format!("{} {}", pick(h2, WORDS), pick(h2 >> 8, WORDS));
    match h2 % 100 {
        0..=2 => inner = format!("{} \"{}\"", pick(h2 >> 16, WORDS), inner),
        3..=4 => inner = format!("{}; {}", inner, pick(h2 >> 16, WORDS)),
        _ => {}
    }
    let h3 = mix(h2);
    let registered = if new_on_day2 {
        "2026-11-19".to_string()
    } else {
        format!("{}-{:02}-{:02}", 1991 + h3 % 35, 1 + (h3 >> 8) % 12, 1 + (h3 >> 16) % 28)
    };
    let (terminated, closed) = if !new_on_day2 && (h3 >> 24) % 100 < 33 {
        let year = (1992 + (h3 >> 32) % 34).min(2026);
        (
            format!("{year}-{:02}-{:02}", 1 + (h3 >> 40) % 10, 1 + (h3 >> 48) % 28),
            if (h3 >> 56).is_multiple_of(3) { "L" } else { "" },
        )
    } else {
        (String::new(), "")
    };
    Row {
        regcode: valid_test_regno(seq as u32),
        form,
        inner,
        registered,
        terminated,
        closed,
        address: address(mix(h3), 0),
    }
}

fn address(h: u64, variant: u64) -> String {
    let h = mix(h ^ variant);
    let city = pick(h, CITIES);
    let street = pick(h >> 8, STREETS);
    let mut a = format!("{city}, {street} iela {}", 1 + (h >> 16) % 150);
    match (h >> 24) % 100 {
        0..=9 => a.push_str(&format!(" k-{}", 1 + (h >> 32) % 5)),
        10..=14 => a.push_str(&format!(" - {}", 1 + (h >> 32) % 80)),
        15 => a = format!("\"{}\", {a}", pick(h >> 40, WORDS)),
        16 => a.push_str("; ieeja no pagalma"),
        _ => {}
    }
    format!("{a}, LV-{}", 1001 + (h >> 48) % 4000)
}

fn write_row(w: &mut csv::Writer<impl Write>, r: &Row) -> Result<()> {
    let (form, form_text) = r.form;
    let name = format!("{form} \"{}\"", r.inner);
    let without = name.replace('"', "");
    let sepa = format!("LV{}", r.regcode);
    let city = r.address.split(',').next().unwrap_or("");
    w.write_record([
        r.regcode.as_str(),
        &sepa,
        &name,
        form,
        &r.inner,
        "",
        &without,
        "K",
        "Komercreģistrs",
        form,
        form_text,
        &r.registered,
        &r.terminated,
        r.closed,
        &r.address,
        "",
        "",
        city,
        city,
        "",
        "",
    ])?;
    Ok(())
}

/// Writes day 1 and day 2; returns what day 2 changed.
fn generate(n: usize, day1: &Path, day2: &Path) -> Result<Plan> {
    let open = |p: &Path| -> Result<csv::Writer<std::io::BufWriter<std::fs::File>>> {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(p)?);
        f.write_all(b"\xEF\xBB\xBF")?;
        let mut w = csv::WriterBuilder::new().delimiter(b';').terminator(csv::Terminator::CRLF).from_writer(f);
        w.write_record(HEADER.split(';'))?;
        Ok(w)
    };
    let (mut a, mut b) = (open(day1)?, open(day2)?);
    let mut plan = Plan::default();
    for seq in 1..=n as u64 {
        let row = company(seq, false);
        write_row(&mut a, &row)?;
        // Day 2: a few hundred changes each, chosen by the company's own hash.
        let roll = mix(seq ^ 0xDA12) % 10_000;
        let mut next = row;
        let live = next.terminated.is_empty() && next.closed.is_empty();
        match roll {
            0..=3 if live => {
                next.terminated = "2026-11-19".into();
                plan.terminated += 1;
            }
            4..=5 => {
                next.inner = format!("{}; {}", next.inner, pick(mix(seq), WORDS));
                plan.renamed += 1;
            }
            6..=11 => {
                next.address = address(mix(seq), 1);
                plan.moved += 1;
            }
            _ => {}
        }
        write_row(&mut b, &next)?;
    }
    let extra = (n as u64 * 6 / 10_000).max(1);
    for seq in n as u64 + 1..=n as u64 + extra {
        write_row(&mut b, &company(seq, true))?;
        plan.new += 1;
    }
    // A few malformed rows, in both files, as the real one occasionally has.
    for w in [a, b] {
        let mut f = w.into_inner().map_err(|e| anyhow::anyhow!("cannot write the file: {}", e.error()))?;
        for i in 0..5 {
            write!(
                f,
                "4000000000{i};;SIA \"Salauzta\";SIA;Salauzta;;SIA Salauzta;K;;SIA;;2001-02-30;;;Rīga;;;;;;\r\n"
            )?;
        }
        f.flush()?;
    }
    plan.malformed = 5;
    Ok(plan)
}
