//! The operator's commands for register snapshots: `events import-snapshot`,
//! `events snapshot list` and `events snapshot approve`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::NaiveDate;

use super::{Outcome, Progress, SnapshotFile, SnapshotSettings, approve, process, resume_interrupted};
use crate::app::App;
use crate::connectors::{SourceKind, load_sources};
use crate::store::{Db, SnapshotRow};

/// The settings of `source` from its connector definition, or the defaults if it has none.
pub fn settings_for(connectors: &Path, source: &str) -> Result<SnapshotSettings> {
    let defs = load_sources(connectors)
        .map_err(|e| anyhow::anyhow!("connector definitions do not load:\n  {}", e.join("\n  ")))?;
    Ok(match defs.iter().find(|d| d.source == source) {
        Some(d) if d.kind == SourceKind::Snapshot => SnapshotSettings::from_def(d),
        Some(d) => anyhow::bail!("source {source} ({}) is not a snapshot source", d.file.display()),
        None => SnapshotSettings::new(source),
    })
}

/// A progress bar over the file's bytes, one pass after the other.
fn bar(what: &str) -> (indicatif::ProgressBar, impl FnMut(Progress) + Send + use<>) {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:<24} [{bar:40}] {bytes}/{total_bytes} {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    let b = bar.clone();
    let mut phase = "";
    let f = move |p: Progress| {
        if p.phase != phase {
            phase = p.phase;
            b.set_length(p.total);
            b.set_message(p.phase);
        }
        b.set_position(p.done);
    };
    (bar, f)
}

/// `proactive events import-snapshot FILE`: exit 0 when applied (or already), 2 when held back.
pub async fn import(app: &App, file: &Path, source: &str, date: Option<NaiveDate>) -> Result<ExitCode> {
    let settings = settings_for(&app.cfg.paths.connectors, source)?;
    let purposes = app.purposes();
    let f = {
        let path = file.to_path_buf();
        tokio::task::spawn_blocking(move || SnapshotFile::local(&path, date)).await??
    };
    let (bar, mut progress) = bar("reading");
    for o in resume_interrupted(&app.db, &settings, Some(&f.sha256), &*purposes, &app.clock, &mut progress).await? {
        bar.suspend(|| println!("an interrupted snapshot was finished first: {}", describe(&o)));
    }
    let outcome = process(&app.db, &settings, &f, &*purposes, &app.clock, &mut progress).await?;
    bar.finish_and_clear();
    println!("{} of {}: {}", file.display(), f.date, describe(&outcome));
    Ok(exit_code(&outcome))
}

/// `proactive events snapshot approve ID`.
pub async fn approve_command(app: &App, id: i64) -> Result<ExitCode> {
    let Some(rec) = app.db.snapshot(id).await? else { anyhow::bail!("there is no snapshot {id}") };
    let settings = settings_for(&app.cfg.paths.connectors, &rec.source)?;
    let (bar, mut progress) = bar("approved");
    let outcome = approve(&app.db, &settings, id, &*app.purposes(), &app.clock, &mut progress).await?;
    bar.finish_and_clear();
    println!("{}", describe(&outcome));
    Ok(exit_code(&outcome))
}

/// `proactive events snapshot list`.
pub async fn list(db: &Db, source: Option<&str>, json: bool) -> Result<()> {
    let rows = db.snapshots(source, &[]).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no snapshots yet");
        return Ok(());
    }
    println!("{:>4}  {:<8}  {:<10}  {:<10}  {:<8}  DETAIL", "ID", "SOURCE", "DATE", "STATE", "KIND");
    for r in rows {
        println!(
            "{:>4}  {:<8}  {:<10}  {:<10}  {:<8}  {}",
            r.id,
            r.source,
            r.snapshot_date,
            r.state,
            if r.baseline { "baseline" } else { "diff" },
            detail(&r)
        );
    }
    Ok(())
}

fn detail(r: &SnapshotRow) -> String {
    let stats = r.stats.clone().and_then(|s| serde_json::from_value::<super::SnapshotStats>(s).ok());
    match (r.state.as_str(), stats) {
        ("held", _) => format!(
            "{} — approve with: proactive events snapshot approve {}",
            r.reason.clone().unwrap_or_default(),
            r.id
        ),
        ("rejected" | "superseded" | "abandoned", _) => r.reason.clone().unwrap_or_default(),
        ("applied", Some(s)) => summary(r.baseline, &s),
        _ => r.origin.clone(),
    }
}

fn summary(baseline: bool, s: &super::SnapshotStats) -> String {
    if baseline {
        format!(
            "{} companies kept as the baseline (profiles filled, no events); {} bad rows, {} quarantined",
            s.new, s.bad_rows, s.quarantined
        )
    } else {
        format!(
            "{} new, {} terminated, {} renamed, {} moved, {} vanished of {}: {} events stored ({} already there); \
             {} bad rows, {} quarantined{}",
            s.new,
            s.terminated,
            s.renamed,
            s.moved,
            s.vanished,
            s.kept,
            s.events,
            s.duplicate_events,
            s.bad_rows,
            s.quarantined,
            if s.resumed { " (resumed: counts cover the rest)" } else { "" }
        )
    }
}

/// One line on what became of a snapshot.
pub fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Applied { id, baseline, stats } => format!("snapshot {id} applied: {}", summary(*baseline, stats)),
        Outcome::Held { id, reason } => {
            format!(
                "snapshot {id} HELD BACK: {reason}\napprove it, once checked, with: proactive events snapshot approve {id}"
            )
        }
        Outcome::Rejected { id, reason } => format!("snapshot {id} REJECTED: {reason}"),
        Outcome::AlreadyApplied { id } => format!("snapshot {id}: this file was applied before; nothing to do"),
        Outcome::Superseded { id } => format!("snapshot {id}: superseded by a newer snapshot; nothing to do"),
    }
}

fn exit_code(o: &Outcome) -> ExitCode {
    match o {
        Outcome::Held { .. } => ExitCode::from(2),
        Outcome::Rejected { .. } => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}
