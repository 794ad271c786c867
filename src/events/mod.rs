//! Registry events: validation of raw change records, the event log they
//! are stored in once per `(source, external_id)`, and the quarantine that
//! keeps every record that did not validate, with its error.

pub mod codes;
pub mod validate;

pub use codes::SubjectKind;
pub use validate::{ValidEvent, ValidationError, known_event_types, validate_change};

pub use crate::store::EventRow;

use std::path::Path;

use anyhow::{Context, Result};
use tokio::io::AsyncBufReadExt;

use crate::store::{Db, IngestCounts, NewQuarantine};

/// Answers whether a purpose id is declared by a life situation (consent
/// events naming an undeclared purpose are quarantined).
pub type PurposeCheck = dyn Fn(&str) -> bool + Send + Sync;

/// One raw record and where it was found (file and line, feed page).
#[derive(Clone, Debug)]
pub struct RawRecord {
    /// `FILE:LINE`, `feed pmlp after cursor C, record N`, …
    pub location: String,
    /// The record's text exactly as received.
    pub text: String,
}

/// Lines of a JSONL import committed together.
const IMPORT_CHUNK: usize = 5_000;

/// Splits records into valid events and quarantine entries, naming the
/// field and the place of each error.
pub fn validate_records(
    default_source: Option<&str>,
    records: &[RawRecord],
    purposes: &PurposeCheck,
) -> (Vec<ValidEvent>, Vec<NewQuarantine>) {
    let mut ok = Vec::with_capacity(records.len());
    let mut bad = Vec::new();
    for r in records {
        let source_of = |v: Option<&serde_json::Value>| {
            v.and_then(|v| v.get("source"))
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .or_else(|| default_source.map(str::to_string))
                .unwrap_or_else(|| "unknown".into())
        };
        match serde_json::from_str::<serde_json::Value>(&r.text) {
            Err(e) => bad.push(NewQuarantine {
                source: source_of(None),
                location: r.location.clone(),
                raw: r.text.clone(),
                field: None,
                error: format!("not valid JSON (line {}, column {}): {}", e.line(), e.column(), json_error_kind(&e)),
            }),
            Ok(v) => match validate_change(default_source, &v, purposes) {
                Ok(ev) => ok.push(ev),
                Err(e) => bad.push(NewQuarantine {
                    source: source_of(Some(&v)),
                    location: r.location.clone(),
                    raw: r.text.clone(),
                    field: Some(e.field.clone()),
                    error: e.to_string(),
                }),
            },
        }
    }
    (ok, bad)
}

/// What kind of JSON error it is, in words, for messages that must not quote the record.
pub fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "the record ends too early",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Io => "read error",
    }
}

/// Validates and stores records in one transaction (with the feed's new cursor, if any).
pub async fn ingest_records(
    db: &Db,
    default_source: Option<&str>,
    records: &[RawRecord],
    purposes: &PurposeCheck,
    cursor: Option<(&str, &str)>,
    now_ms: i64,
) -> Result<IngestCounts> {
    let (ok, bad) = validate_records(default_source, records, purposes);
    for q in &bad {
        tracing::warn!(source = %q.source, location = %q.location, error = %q.error, "record quarantined");
    }
    let (_, counts) = db.ingest(&ok, &bad, cursor, now_ms).await?;
    Ok(counts)
}

/// Loads a JSONL file of change records (one Change plus its `source` a line)
/// through the same path as a feed; `progress` is told the lines read so far.
pub async fn import_jsonl(
    db: &Db,
    path: &Path,
    purposes: &PurposeCheck,
    clock: &crate::clock::Clock,
    progress: &mut dyn FnMut(usize),
) -> Result<IngestCounts> {
    let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = tokio::io::BufReader::new(file).lines();
    let mut total = IngestCounts::default();
    let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
    let mut n = 0usize;
    let name = path.display().to_string();
    while let Some(line) = lines.next_line().await.with_context(|| format!("cannot read {name}"))? {
        n += 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        chunk.push(RawRecord { location: format!("{name}:{n}"), text: line });
        if chunk.len() >= IMPORT_CHUNK {
            total += ingest_records(db, None, &chunk, purposes, None, clock.now_ms()).await?;
            chunk.clear();
            progress(n);
        }
    }
    if !chunk.is_empty() {
        total += ingest_records(db, None, &chunk, purposes, None, clock.now_ms()).await?;
    }
    progress(n);
    Ok(total)
}

/// What a quarantine retry did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    /// Records that now validate and are in the event log.
    pub released: usize,
    /// Of those, records already in the log under the same id.
    pub duplicate: usize,
    /// Records that still fail.
    pub still_held: usize,
}

/// Validates held records again (all, or those in `ids`) with today's
/// validator and definitions; the ones that pass join the event log.
pub async fn retry_quarantine(
    db: &Db,
    ids: Option<&[i64]>,
    purposes: &PurposeCheck,
    now_ms: i64,
) -> Result<RetryReport> {
    let mut report = RetryReport::default();
    for row in db.quarantine_list(true).await? {
        if ids.is_some_and(|ids| !ids.contains(&row.id)) {
            continue;
        }
        if row.field.as_deref().is_some_and(|f| f.starts_with("csv.")) {
            // A register row that did not parse is fixed by the register's next file, not by
            // validating the row again; its original error stays as it is.
            report.still_held += 1;
            continue;
        }
        let record = RawRecord { location: row.location.clone(), text: row.raw.clone() };
        let (ok, bad) = validate_records(Some(&row.source), std::slice::from_ref(&record), purposes);
        if let Some(err) = bad.first() {
            db.quarantine_retry_failed(row.id, err.field.as_deref(), &err.error).await?;
            report.still_held += 1;
            continue;
        }
        let (seqs, counts) = db.ingest(&ok, &[], None, now_ms).await?;
        db.quarantine_release(row.id, seqs.first().copied().flatten()).await?;
        report.released += 1;
        report.duplicate += counts.duplicate;
    }
    Ok(report)
}
