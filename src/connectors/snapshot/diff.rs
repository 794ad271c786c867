//! The diff of one register file against the fingerprints of the last
//! snapshot applied, in two streaming passes over the file:
//!
//! 1. **check** (writes nothing): counts rows, bad rows, new, changed and
//!    vanished companies and decides whether the file is suspect. A suspect
//!    file is held back for an operator; a header without the columns the
//!    diff needs is rejected.
//! 2. **apply**: the same walk again, in batches. Each batch's events (and
//!    quarantined rows) go through [`Db::ingest`], *then* the batch's
//!    fingerprints are written. Event ids depend only on the snapshot, the
//!    company and the kind of change, so a crash between the two writes is
//!    harmless: on restart the companies whose fingerprints were not written
//!    yet are diffed again, yield the same ids, and the event log drops the
//!    repeats. A crash after both writes leaves those companies equal to the
//!    file, so they yield nothing.
//!
//! The file is parsed on a blocking thread that hands batches to the async
//! side over a small channel, so parsing and database writes overlap and the
//! runtime's workers are never blocked by a 100 MB file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Europe::Riga;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::register::{BadRow, HeaderError, Item, RegisterReader, delta};
use super::{Outcome, Progress, SnapshotFile, SnapshotSettings, SnapshotStats, sha256_file};
use crate::clock::Clock;
use crate::engine::profile::{Profile, ProfileKind};
use crate::events::{EventRow, PurposeCheck, ValidEvent, validate_change};
use crate::store::{CompanyPrint, Db, NewQuarantine, NewSnapshot, SnapshotRow};

/// A suspect file is held for bad rows only once this many fail: one broken
/// row in a small register is quarantined, not a reason to stop the file.
const MIN_BAD_ROWS_TO_HOLD: u64 = 10;

/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 8_192;

/// The last applied snapshot as the diff holds it in memory: 24 bytes a
/// company, sorted by registration number.
struct Kept {
    entries: Vec<Entry>,
}

#[derive(Clone, Copy)]
struct Entry {
    key: u64,
    print: u64,
    /// Missing from the file that was last applied; counts neither as present nor as vanished again.
    gone: bool,
}

impl Kept {
    async fn load(db: &Db, source: &str) -> Result<Kept> {
        let mut entries = Vec::new();
        let mut bad = 0usize;
        db.for_each_company_print(source, |regcode, print, gone| match regcode.parse() {
            Ok(key) => entries.push(Entry { key, print, gone }),
            Err(_) => bad += 1,
        })
        .await?;
        if bad > 0 {
            bail!("{bad} kept fingerprints of source {source} have a registration number that is not a number");
        }
        entries.sort_unstable_by_key(|e| e.key);
        Ok(Kept { entries })
    }

    fn find(&self, key: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&key, |e| e.key).ok()
    }

    fn live(&self) -> u64 {
        self.entries.iter().filter(|e| !e.gone).count() as u64
    }
}

/// Which rows of the file have been met, to tell duplicates and vanished companies.
struct Seen {
    kept: Vec<bool>,
    new: HashSet<u64>,
}

impl Seen {
    fn new(kept: &Kept) -> Seen {
        Seen { kept: vec![false; kept.entries.len()], new: HashSet::new() }
    }

    /// Marks `key` as met; false if it was met before (a duplicate row).
    fn mark(&mut self, kept: &Kept, key: u64) -> bool {
        match kept.find(key) {
            Some(i) => !std::mem::replace(&mut self.kept[i], true),
            None => self.new.insert(key),
        }
    }

    /// Companies present in the last snapshot and absent from this file.
    fn vanished<'a>(&'a self, kept: &'a Kept) -> impl Iterator<Item = u64> + 'a {
        kept.entries.iter().zip(&self.kept).filter(|(e, seen)| !e.gone && !**seen).map(|(e, _)| e.key)
    }
}

const DUPLICATE: &str = "the registration number appears more than once in the file; the first row counts";

/// What the check pass found.
#[derive(Default)]
struct Check {
    stats: SnapshotStats,
    truncated: Option<String>,
    duplicate_columns: Vec<String>,
}

/// Messages from the parsing thread.
enum Msg {
    Progress(u64),
    Batch(Batch),
}

/// Rows of one apply batch: companies whose fingerprint differs, and bad rows.
#[derive(Default)]
struct Batch {
    rows: Vec<Changed>,
    bad: Vec<BadRow>,
}

/// A company whose row differs from the kept fingerprint (or is new).
struct Changed {
    line: u64,
    regcode: String,
    name: String,
    legal_form: String,
    registered: String,
    terminated: String,
    closed: String,
    address: String,
    print: u64,
    /// The kept fingerprint; `None` for a company new to the register.
    old: Option<u64>,
    /// It had vanished from an earlier file and is back.
    reappeared: bool,
}

/// Decides whether a checked file is suspect; the reasons, joined, are shown to the operator.
fn suspicions(c: &Check, baseline: bool, s: &SnapshotSettings, last: Option<&SnapshotRow>, date: &str) -> Vec<String> {
    let mut out = Vec::new();
    let st = &c.stats;
    if st.rows == 0 && st.bad_rows == 0 {
        out.push("truncated: the file has a header and no rows".to_string());
    }
    if let Some(t) = &c.truncated {
        out.push(t.clone());
    }
    if !c.duplicate_columns.is_empty() {
        out.push(format!(
            "the header changed meaning: column(s) {} appear more than once",
            c.duplicate_columns.join(", ")
        ));
    }
    let total = st.rows + st.bad_rows;
    if st.bad_rows >= MIN_BAD_ROWS_TO_HOLD && share(st.bad_rows, total) > s.max_bad_share {
        out.push(format!(
            "the header may have changed meaning: {} of {total} rows ({:.2}%) do not read as the register's \
             columns (limit {:.2}%)",
            st.bad_rows,
            100.0 * share(st.bad_rows, total),
            100.0 * s.max_bad_share
        ));
    }
    if !baseline && st.kept > 0 && share(st.vanished, st.kept) > s.max_vanished_share {
        out.push(format!(
            "{} of {} companies ({:.2}%) vanished from the file (limit {:.2}%)",
            st.vanished,
            st.kept,
            100.0 * share(st.vanished, st.kept),
            100.0 * s.max_vanished_share
        ));
    }
    if let Some(last) = last.filter(|l| l.snapshot_date.as_str() > date) {
        out.push(format!(
            "the file is of {date}, older than the last applied snapshot (id {}, of {}): applying it would undo newer data",
            last.id, last.snapshot_date
        ));
    }
    out
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// Checks a new file and, unless it is suspect, applies it.
pub async fn process(
    db: &Db,
    settings: &SnapshotSettings,
    file: &SnapshotFile,
    purposes: &PurposeCheck,
    clock: &Clock,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome> {
    let source = settings.source.as_str();
    let date = file.date.to_string();
    let path = file.path.display().to_string();
    let rec = db
        .snapshot_record(
            &NewSnapshot {
                source,
                sha256: &file.sha256,
                snapshot_date: &date,
                origin: &file.origin,
                file: &path,
                bytes: file.bytes as i64,
                etag: file.etag.as_deref(),
                last_modified: file.last_modified.as_deref(),
            },
            clock.now_ms(),
        )
        .await?;
    let id = rec.id;
    match rec.state.as_str() {
        "applied" => return Ok(Outcome::AlreadyApplied { id }),
        "superseded" => return Ok(Outcome::Superseded { id }),
        "held" => return Ok(Outcome::Held { id, reason: rec.reason.unwrap_or_default() }),
        "rejected" => return Ok(Outcome::Rejected { id, reason: rec.reason.unwrap_or_default() }),
        "applying" => {
            tracing::warn!(source, snapshot = id, "resuming a snapshot whose apply was interrupted");
            let kept = Kept::load(db, source).await?;
            return apply(db, settings, &rec, &file.path, kept, purposes, clock, progress, true).await;
        }
        _ => {}
    }
    let kept = Kept::load(db, source).await?;
    let baseline = !db.snapshot_applied_before(source).await?;
    let (kept, check) = match check(file.path.clone(), kept, progress).await {
        Ok(v) => v,
        Err(e) => {
            if let Some(h) = e.downcast_ref::<HeaderError>() {
                let reason = format!("{}: {h}", file.origin);
                db.snapshot_verdict(id, "rejected", &reason, &json!({})).await?;
                tracing::error!(source, snapshot = id, reason = %reason, "snapshot rejected");
                db.record_poll_error(source, &format!("snapshot {id} of {date} rejected: {reason}"), clock.now_ms())
                    .await?;
                return Ok(Outcome::Rejected { id, reason });
            }
            return Err(e);
        }
    };
    let last = db.snapshots(Some(source), &["applied"]).await?.into_iter().next();
    let reasons = suspicions(&check, baseline, settings, last.as_ref(), &date);
    let stats = serde_json::to_value(&check.stats)?;
    if !reasons.is_empty() {
        let reason = reasons.join("; ");
        db.snapshot_verdict(id, "held", &reason, &stats).await?;
        tracing::warn!(source, snapshot = id, reason = %reason, "snapshot held back for an operator");
        let msg = format!("snapshot {id} of {date} held back: {reason} (proactive events snapshot approve {id})");
        db.record_poll_error(source, &msg, clock.now_ms()).await?;
        return Ok(Outcome::Held { id, reason });
    }
    db.snapshot_start(id, baseline, None).await?;
    let rec = SnapshotRow { baseline, state: "applying".into(), ..rec };
    apply(db, settings, &rec, &file.path, kept, purposes, clock, progress, false).await
}

/// Applies a held snapshot an operator has looked at.
pub async fn approve(
    db: &Db,
    settings: &SnapshotSettings,
    id: i64,
    purposes: &PurposeCheck,
    clock: &Clock,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome> {
    let Some(rec) = db.snapshot(id).await? else { bail!("there is no snapshot {id}") };
    match rec.state.as_str() {
        "held" => {}
        "applied" => bail!("snapshot {id} is already applied"),
        "superseded" => bail!("snapshot {id} was superseded by a newer one; applying it would undo newer data"),
        "rejected" => bail!("snapshot {id} was rejected and cannot be applied: {}", rec.reason.unwrap_or_default()),
        other => bail!("snapshot {id} is {other}, not held; `proactive serve` or a new import finishes it"),
    }
    if rec.source != settings.source {
        bail!("snapshot {id} belongs to source {}, not {}", rec.source, settings.source);
    }
    if let Some(newer) = db.snapshots(Some(&rec.source), &["applied"]).await?.into_iter().find(|s| s.id > id) {
        bail!(
            "snapshot {} of {} was applied after snapshot {id}; applying {id} would undo it",
            newer.id,
            newer.snapshot_date
        );
    }
    let path = PathBuf::from(&rec.file);
    let (sha, _) = sha256_file(&path)
        .with_context(|| format!("the held file of snapshot {id} is no longer readable at {}", path.display()))?;
    if sha != rec.sha256 {
        bail!("the held file of snapshot {id} at {} has changed since it was held; import it anew", path.display());
    }
    let baseline = !db.snapshot_applied_before(&rec.source).await?;
    db.snapshot_start(id, baseline, Some(clock.now_ms())).await?;
    tracing::warn!(source = %rec.source, snapshot = id, "held snapshot approved by an operator; applying");
    let rec = SnapshotRow { baseline, state: "applying".into(), ..rec };
    let kept = Kept::load(db, &settings.source).await?;
    apply(db, settings, &rec, &path, kept, purposes, clock, progress, false).await
}

/// Finishes snapshots of the source whose check or apply was interrupted
/// (oldest first), except those of the file with hash `except` (its own import finishes it).
pub async fn resume_interrupted(
    db: &Db,
    settings: &SnapshotSettings,
    except: Option<&str>,
    purposes: &PurposeCheck,
    clock: &Clock,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    let mut pending = db.snapshots(Some(&settings.source), &["checking", "applying"]).await?;
    pending.reverse();
    for rec in pending.into_iter().filter(|r| Some(r.sha256.as_str()) != except) {
        let path = PathBuf::from(&rec.file);
        match sha256_file(&path) {
            Ok((sha, bytes)) if sha == rec.sha256 => {
                let date = NaiveDate::parse_from_str(&rec.snapshot_date, "%Y-%m-%d")?;
                let file = SnapshotFile {
                    path,
                    sha256: sha,
                    bytes,
                    date,
                    origin: rec.origin.clone(),
                    etag: rec.etag.clone(),
                    last_modified: rec.last_modified.clone(),
                };
                out.push(process(db, settings, &file, purposes, clock, progress).await?);
            }
            _ => {
                let reason = format!(
                    "interrupted while {}, and its file {} is gone or changed; the next snapshot carries its changes",
                    rec.state, rec.file
                );
                tracing::error!(source = %rec.source, snapshot = rec.id, reason = %reason, "snapshot abandoned");
                db.snapshot_verdict(rec.id, "abandoned", &reason, &rec.stats.clone().unwrap_or(json!({}))).await?;
                out.push(Outcome::Rejected { id: rec.id, reason });
            }
        }
    }
    Ok(out)
}

/// Pass 1: reads the whole file against `kept`, writing nothing.
async fn check(path: PathBuf, kept: Kept, progress: &mut (dyn FnMut(Progress) + Send)) -> Result<(Kept, Check)> {
    let total = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let (tx, mut rx) = mpsc::channel::<u64>(4);
    let task = tokio::task::spawn_blocking(move || -> Result<(Kept, Check)> {
        let mut r = RegisterReader::open(&path)?;
        let mut c = Check { duplicate_columns: r.duplicate_columns().to_vec(), ..Check::default() };
        let mut seen = Seen::new(&kept);
        let mut n = 0u64;
        while let Some(item) = r.next_item()? {
            n += 1;
            match item {
                Item::Row { company, .. } => {
                    if !seen.mark(&kept, company.key) {
                        c.stats.bad_rows += 1;
                        continue;
                    }
                    c.stats.rows += 1;
                    match kept.find(company.key).map(|i| kept.entries[i]) {
                        None => c.stats.new += 1,
                        Some(e) => {
                            let d = delta(e.print, company.fingerprint());
                            c.stats.renamed += u64::from(d.renamed);
                            c.stats.moved += u64::from(d.moved);
                            c.stats.terminated += u64::from(d.ended);
                            c.stats.restored += u64::from(d.restored);
                            c.stats.reappeared += u64::from(e.gone);
                        }
                    }
                }
                Item::Bad(b) => {
                    c.stats.bad_rows += 1;
                    if let Some(key) = b.key {
                        // The company is in the file even if its row is broken: it has not vanished.
                        seen.mark(&kept, key);
                    }
                }
            }
            if n.is_multiple_of(PROGRESS_EVERY) {
                let _ = tx.blocking_send(r.bytes_read());
            }
        }
        c.truncated = r.truncated_tail();
        c.stats.kept = kept.live();
        c.stats.vanished = seen.vanished(&kept).count() as u64;
        let _ = tx.blocking_send(r.bytes_read());
        drop(seen);
        Ok((kept, c))
    });
    while let Some(done) = rx.recv().await {
        progress(Progress { phase: "checking", done, total });
    }
    task.await.context("the check pass panicked")?
}

/// Pass 2: walks the file again and writes what differs, batch by batch.
#[allow(clippy::too_many_arguments)]
async fn apply(
    db: &Db,
    settings: &SnapshotSettings,
    rec: &SnapshotRow,
    path: &Path,
    kept: Kept,
    purposes: &PurposeCheck,
    clock: &Clock,
    progress: &mut (dyn FnMut(Progress) + Send),
    resumed: bool,
) -> Result<Outcome> {
    let source = settings.source.as_str();
    let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let (tx, mut rx) = mpsc::channel::<Msg>(2);
    let batch_size = settings.batch_size.max(1);
    let owned_path = path.to_path_buf();
    let producer = tokio::task::spawn_blocking(move || -> Result<(SnapshotStats, Vec<String>)> {
        let mut r = RegisterReader::open(&owned_path)?;
        let mut seen = Seen::new(&kept);
        let mut st = SnapshotStats::default();
        let mut batch = Batch::default();
        let mut n = 0u64;
        while let Some(item) = r.next_item()? {
            n += 1;
            match item {
                Item::Row { line, company } => {
                    if !seen.mark(&kept, company.key) {
                        let raw = r.last_raw()?;
                        batch.bad.push(BadRow {
                            line,
                            raw,
                            column: Some("regcode"),
                            error: DUPLICATE.into(),
                            key: None,
                        });
                    } else {
                        st.rows += 1;
                        let print = company.fingerprint();
                        let old = kept.find(company.key).map(|i| kept.entries[i]);
                        if old.is_none_or(|e| e.print != print || e.gone) {
                            batch.rows.push(Changed {
                                line,
                                regcode: company.regcode.to_string(),
                                name: company.name.to_string(),
                                legal_form: company.legal_form.to_string(),
                                registered: company.registered.to_string(),
                                terminated: company.terminated.to_string(),
                                closed: company.closed.to_string(),
                                address: company.address.to_string(),
                                print,
                                old: old.map(|e| e.print),
                                reappeared: old.is_some_and(|e| e.gone),
                            });
                        }
                    }
                }
                Item::Bad(b) => {
                    if let Some(key) = b.key {
                        seen.mark(&kept, key);
                    }
                    batch.bad.push(b);
                }
            }
            if batch.rows.len() + batch.bad.len() >= batch_size {
                if tx.blocking_send(Msg::Batch(std::mem::take(&mut batch))).is_err() {
                    bail!("the apply pass stopped");
                }
            } else if n.is_multiple_of(PROGRESS_EVERY) && tx.blocking_send(Msg::Progress(r.bytes_read())).is_err() {
                bail!("the apply pass stopped");
            }
        }
        if (!batch.rows.is_empty() || !batch.bad.is_empty()) && tx.blocking_send(Msg::Batch(batch)).is_err() {
            bail!("the apply pass stopped");
        }
        let _ = tx.blocking_send(Msg::Progress(r.bytes_read()));
        st.kept = kept.live();
        let vanished: Vec<String> = seen.vanished(&kept).map(|k| format!("{k:011}")).collect();
        st.vanished = vanished.len() as u64;
        Ok((st, vanished))
    });

    let ctx = Emit {
        settings,
        rec,
        date: NaiveDate::parse_from_str(&rec.snapshot_date, "%Y-%m-%d")
            .with_context(|| format!("snapshot {} has no valid date", rec.id))?,
        file_name: file_name(&rec.origin),
    };
    let mut counted = SnapshotStats { resumed, ..SnapshotStats::default() };
    let mut batches = 0usize;
    let mut done = 0u64;
    let consumed: Result<()> = async {
        while let Some(msg) = rx.recv().await {
            let batch = match msg {
                Msg::Progress(d) => {
                    done = d;
                    progress(Progress { phase: "applying", done, total });
                    continue;
                }
                Msg::Batch(b) => b,
            };
            batches += 1;
            let crash_here = settings.crash_after_batches == Some(batches);
            if rec.baseline {
                write_baseline(db, &ctx, batch, &mut counted, clock).await?;
            } else {
                // Events first, fingerprints second: see the module's note.
                let prints = write_diff_events(db, &ctx, batch, purposes, &mut counted, clock).await?;
                if crash_here && settings.crash_before_fingerprints {
                    bail!("stopped on purpose in batch {batches}, before its fingerprints (crash_after_batches)");
                }
                db.write_company_prints(source, rec.id, &prints, &[], clock.now_ms()).await?;
            }
            progress(Progress { phase: "applying", done, total });
            if crash_here {
                bail!("stopped on purpose after {batches} batch(es) (crash_after_batches), as a crash would");
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = consumed {
        // Dropping the receiver stops the parser at its next send.
        drop(rx);
        let _ = producer.await;
        return Err(e);
    }
    let (st, vanished) = producer.await.context("the apply pass panicked")??;
    db.mark_companies_gone(source, rec.id, &vanished).await?;
    let stats =
        SnapshotStats { rows: st.rows, kept: st.kept, vanished: st.vanished, bad_rows: counted.bad_rows, ..counted };
    let label = format!("snapshot {} of {} ({})", rec.id, rec.snapshot_date, &rec.sha256[..12]);
    let value = serde_json::to_value(&stats)?;
    db.snapshot_finish(rec.id, source, &value, &label, clock.now_ms()).await?;
    tracing::info!(
        source,
        snapshot = rec.id,
        baseline = rec.baseline,
        rows = stats.rows,
        new = stats.new,
        terminated = stats.terminated,
        renamed = stats.renamed,
        moved = stats.moved,
        vanished = stats.vanished,
        events = stats.events,
        quarantined = stats.quarantined,
        "snapshot applied"
    );
    Ok(Outcome::Applied { id: rec.id, baseline: rec.baseline, stats })
}

/// What every event and quarantine entry of one snapshot shares.
struct Emit<'a> {
    settings: &'a SnapshotSettings,
    rec: &'a SnapshotRow,
    date: NaiveDate,
    file_name: String,
}

impl Emit<'_> {
    fn location(&self, line: u64) -> String {
        format!("{} of {} (snapshot {}), line {line}", self.file_name, self.rec.snapshot_date, self.rec.id)
    }

    /// The event id: source, the snapshot (its date and content), the company and the kind of change.
    fn event_id(&self, regcode: &str, event_type: &str) -> String {
        let kind = event_type.trim_start_matches("company.");
        format!("{}-{}-{}-{regcode}-{kind}", self.settings.source, self.date.format("%Y%m%d"), &self.rec.sha256[..8])
    }

    fn bad_row(&self, b: BadRow) -> NewQuarantine {
        NewQuarantine {
            source: self.settings.source.clone(),
            location: self.location(b.line),
            raw: b.raw,
            // `csv.` marks a row of the file: it is fixed by the register's next file, not by a retry.
            field: Some(format!("csv.{}", b.column.unwrap_or("row"))),
            error: match b.column {
                Some(c) => format!("{c}: {}", b.error),
                None => format!("row {}", b.error),
            },
        }
    }
}

/// Midnight of `date` in Latvia, as the contract's `occurred_at`.
fn riga_midnight(date: NaiveDate) -> String {
    let local = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Latvia changes clocks at 03:00/04:00, so midnight always exists once.
    match Riga.from_local_datetime(&local).earliest() {
        Some(t) => t.fixed_offset().to_rfc3339(),
        None => format!("{date}T00:00:00+00:00"),
    }
}

fn file_name(origin: &str) -> String {
    let tail = origin.trim_end_matches('/').rsplit(['/', '\\']).next().unwrap_or(origin);
    let tail = tail.split(['?', '#']).next().unwrap_or(tail);
    if tail.is_empty() { origin.to_string() } else { tail.to_string() }
}

/// Writes one batch of the first snapshot: fingerprints and company profiles, no events.
async fn write_baseline(db: &Db, ctx: &Emit<'_>, batch: Batch, st: &mut SnapshotStats, clock: &Clock) -> Result<()> {
    let codes: Vec<String> = batch.rows.iter().map(|c| c.regcode.clone()).collect();
    let mut existing: HashMap<String, Profile> =
        db.load_profiles(&codes).await?.into_iter().map(|p| (p.subject.clone(), p)).collect();
    let mut profiles = Vec::with_capacity(batch.rows.len());
    let mut prints = Vec::with_capacity(batch.rows.len());
    for c in batch.rows {
        // The profile takes the register's data the way the engine would take a
        // company.registered event, so a profile filled here reads like one built from events.
        let mut p = existing.remove(&c.regcode).unwrap_or_else(|| Profile::new(&c.regcode, ProfileKind::Company));
        let mut data = serde_json::Map::new();
        for (k, v) in [("name", &c.name), ("legal_form", &c.legal_form), ("address", &c.address)] {
            if !v.is_empty() {
                data.insert(k.into(), Value::String(v.clone()));
            }
        }
        let ev = EventRow {
            seq: 0,
            source: ctx.settings.source.clone(),
            external_id: String::new(),
            event_type: "company.registered".into(),
            subject: c.regcode.clone(),
            occurred_at: 0,
            data: Value::Object(data),
        };
        p.apply(&ev);
        profiles.push(p);
        st.new += 1;
        prints.push(CompanyPrint { regcode: c.regcode, fingerprint: c.print, name: c.name, address: c.address });
    }
    let now = clock.now_ms();
    if !batch.bad.is_empty() {
        st.bad_rows += batch.bad.len() as u64;
        let q: Vec<NewQuarantine> = batch.bad.into_iter().map(|b| ctx.bad_row(b)).collect();
        let (_, counts) = db.ingest(&[], &q, None, now).await?;
        st.quarantined += counts.quarantined as u64;
    }
    db.write_company_prints(&ctx.settings.source, ctx.rec.id, &prints, &profiles, now).await
}

/// Stores one batch of a later snapshot's events and bad rows through the
/// event log; returns the fingerprints for the caller to write next.
async fn write_diff_events(
    db: &Db,
    ctx: &Emit<'_>,
    batch: Batch,
    purposes: &PurposeCheck,
    st: &mut SnapshotStats,
    clock: &Clock,
) -> Result<Vec<CompanyPrint>> {
    let source = ctx.settings.source.as_str();
    let wants_previous: Vec<String> = batch
        .rows
        .iter()
        .filter(|c| c.old.is_some_and(|o| delta(o, c.print).renamed || delta(o, c.print).moved))
        .map(|c| c.regcode.clone())
        .collect();
    let previous = db.company_prints(source, &wants_previous).await?;
    let mut events: Vec<ValidEvent> = Vec::new();
    let mut quarantine: Vec<NewQuarantine> = Vec::new();
    let mut prints = Vec::with_capacity(batch.rows.len());
    let snapshot_day = riga_midnight(ctx.date);
    for c in batch.rows {
        let mut changes: Vec<(&str, String, Value)> = Vec::new();
        let ended_on = if c.terminated.is_empty() { ctx.date.to_string() } else { c.terminated.clone() };
        let ended_data = || {
            let mut d = json!({ "terminated": ended_on });
            if !c.closed.is_empty() {
                d["closed"] = Value::String(c.closed.clone());
            }
            d
        };
        let ended_at = || {
            NaiveDate::parse_from_str(&ended_on, "%Y-%m-%d").map(riga_midnight).unwrap_or_else(|_| snapshot_day.clone())
        };
        match c.old {
            None => {
                st.new += 1;
                let at = NaiveDate::parse_from_str(&c.registered, "%Y-%m-%d")
                    .map(riga_midnight)
                    .unwrap_or_else(|_| snapshot_day.clone());
                let data = json!({
                    "name": c.name, "legal_form": c.legal_form, "registered": c.registered, "address": c.address,
                });
                changes.push(("company.registered", at, data));
                if !c.terminated.is_empty() || !c.closed.is_empty() {
                    st.terminated += 1;
                    changes.push(("company.terminated", ended_at(), ended_data()));
                }
            }
            Some(old) => {
                let d = delta(old, c.print);
                let (prev_name, prev_address) = previous.get(&c.regcode).cloned().unwrap_or_default();
                if d.ended {
                    st.terminated += 1;
                    changes.push(("company.terminated", ended_at(), ended_data()));
                }
                if d.renamed {
                    st.renamed += 1;
                    changes.push((
                        "company.renamed",
                        snapshot_day.clone(),
                        json!({ "name": c.name, "previous": prev_name }),
                    ));
                }
                if d.moved {
                    st.moved += 1;
                    let data = json!({ "address": c.address, "previous": prev_address });
                    changes.push(("company.address_changed", snapshot_day.clone(), data));
                }
                st.restored += u64::from(d.restored);
                st.reappeared += u64::from(c.reappeared);
            }
        }
        for (event_type, occurred_at, data) in changes {
            if !ctx.settings.emit.iter().any(|e| e == event_type) {
                continue;
            }
            let record = json!({
                "id": ctx.event_id(&c.regcode, event_type),
                "type": event_type,
                "subject": c.regcode,
                "occurred_at": occurred_at,
                "data": data,
            });
            match validate_change(Some(source), &record, purposes) {
                Ok(ev) => events.push(ev),
                Err(e) => quarantine.push(NewQuarantine {
                    source: source.to_string(),
                    location: ctx.location(c.line),
                    raw: record.to_string(),
                    field: Some(e.field.clone()),
                    error: e.to_string(),
                }),
            }
        }
        prints.push(CompanyPrint { regcode: c.regcode, fingerprint: c.print, name: c.name, address: c.address });
    }
    st.bad_rows += batch.bad.len() as u64;
    quarantine.extend(batch.bad.into_iter().map(|b| ctx.bad_row(b)));
    for q in &quarantine {
        tracing::warn!(source, location = %q.location, error = %q.error, "register row quarantined");
    }
    let now = clock.now_ms();
    let (_, counts) = db.ingest(&events, &quarantine, None, now).await?;
    st.events += counts.accepted as u64;
    st.duplicate_events += counts.duplicate as u64;
    st.quarantined += counts.quarantined as u64;
    Ok(prints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurred_at_is_latvian_midnight() {
        assert_eq!(riga_midnight(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()), "2026-11-20T00:00:00+02:00");
        assert_eq!(riga_midnight(NaiveDate::from_ymd_opt(2026, 7, 1).unwrap()), "2026-07-01T00:00:00+03:00");
    }

    #[test]
    fn file_names_for_locations() {
        assert_eq!(file_name("https://example.lv/data/register.csv?x=1"), "register.csv");
        assert_eq!(file_name("/srv/ur/register.csv"), "register.csv");
    }
}
