//! The register snapshot source (CONTRACTS.md §2): the Enterprise Register's
//! whole register as one open-data file a day, turned into company events by
//! diffing it with the last snapshot kept.
//!
//! * [`register`] reads the file as it really is (BOM, `;`, quotes, CRLF) and
//!   checks every row.
//! * [`process`] checks a file and applies it, or holds it back for an
//!   operator when it looks truncated, lost too many companies or has a
//!   header that changed meaning; [`approve`] applies a held one.
//! * [`SnapshotPoller`] fetches the file on its schedule — over HTTP as a
//!   stream with a conditional GET, or from a local path — into a spool
//!   folder, and finishes any snapshot a crash interrupted.
//!
//! The first snapshot a source applies is its baseline: it fills the
//! fingerprints and the company profiles and emits no event, so no life
//! situation starts for half a million companies at once.

pub mod commands;
mod diff;
pub mod register;

pub use diff::{approve, process, resume_interrupted};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use chrono_tz::Europe::Riga;
use futures_util::StreamExt;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use super::SourceDef;
use super::feed::{PollError, retry_after};
use crate::clock::Clock;
use crate::events::PurposeCheck;
use crate::store::Db;

/// The event types a snapshot can emit (CONTRACTS.md §1, enterprise register).
pub const EVENT_TYPES: [&str; 4] =
    ["company.registered", "company.terminated", "company.renamed", "company.address_changed"];

/// Companies (changed rows) written per transaction by the apply pass.
pub const DEFAULT_BATCH: usize = 5_000;

/// How a snapshot source judges and applies files.
#[derive(Clone, Debug)]
pub struct SnapshotSettings {
    /// Source name stored with the events (`ur`).
    pub source: String,
    /// A file in which more than this share of the last snapshot's companies vanished is held back.
    pub max_vanished_share: f64,
    /// A file in which more than this share of rows does not read as the register's columns is held back.
    pub max_bad_share: f64,
    /// Event types to emit; changes of other kinds only update the fingerprints.
    pub emit: Vec<String>,
    /// Changed companies written per transaction.
    pub batch_size: usize,
    /// For tests: stop, as a crash would, after this many committed batches.
    pub crash_after_batches: Option<usize>,
    /// For tests: make that stop fall inside the last batch, after its events and before its fingerprints.
    pub crash_before_fingerprints: bool,
}

impl SnapshotSettings {
    /// The defaults for `source`: 1% vanished, 1% bad rows, every event type.
    pub fn new(source: &str) -> SnapshotSettings {
        SnapshotSettings {
            source: source.to_string(),
            max_vanished_share: 0.01,
            max_bad_share: 0.01,
            emit: EVENT_TYPES.iter().map(|s| s.to_string()).collect(),
            batch_size: DEFAULT_BATCH,
            crash_after_batches: None,
            crash_before_fingerprints: false,
        }
    }

    /// The settings a connector definition declares.
    pub fn from_def(def: &SourceDef) -> SnapshotSettings {
        SnapshotSettings {
            max_vanished_share: def.max_vanished_share,
            max_bad_share: def.max_bad_share,
            emit: def.events.clone().unwrap_or_else(|| EVENT_TYPES.iter().map(|s| s.to_string()).collect()),
            ..SnapshotSettings::new(&def.source)
        }
    }
}

/// A snapshot file on local disk, with its content hash and the day it describes.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// Where the bytes are.
    pub path: PathBuf,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The day the file describes (from `Last-Modified`, the file's time, or the operator).
    pub date: NaiveDate,
    /// URL or path it came from, for messages and quarantine locations.
    pub origin: String,
    /// The server's `ETag`, if any.
    pub etag: Option<String>,
    /// The server's `Last-Modified`, if any.
    pub last_modified: Option<String>,
}

impl SnapshotFile {
    /// A local file; without `date`, the day of its modification time in Latvia.
    pub fn local(path: &Path, date: Option<NaiveDate>) -> Result<SnapshotFile> {
        let (sha256, bytes) = sha256_file(path)?;
        let date = match date {
            Some(d) => d,
            None => {
                let modified = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .with_context(|| format!("cannot read the modification time of {}", path.display()))?;
                chrono::DateTime::<Utc>::from(modified).with_timezone(&Riga).date_naive()
            }
        };
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let origin = abs.display().to_string();
        Ok(SnapshotFile { path: abs, sha256, bytes, date, origin, etag: None, last_modified: None })
    }
}

/// SHA-256 (hex) and size of a file, read as a stream.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Counts of one check or apply, stored with the snapshot and shown to operators.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SnapshotStats {
    /// Valid company rows in the file.
    pub rows: u64,
    /// Rows that did not parse or validate (quarantined when applied).
    pub bad_rows: u64,
    /// Companies new to the kept snapshot.
    pub new: u64,
    /// Companies whose end (terminated date or closed flag) is new.
    pub terminated: u64,
    /// Companies with a new name.
    pub renamed: u64,
    /// Companies with a new address.
    pub moved: u64,
    /// Companies whose end the register took back (no event exists for it).
    pub restored: u64,
    /// Companies back in the file after having vanished.
    pub reappeared: u64,
    /// Companies the last applied snapshot had.
    pub kept: u64,
    /// Of those, companies missing from this file.
    pub vanished: u64,
    /// Events newly stored in the event log.
    pub events: u64,
    /// Events already in the log (a resumed or repeated apply).
    pub duplicate_events: u64,
    /// Records newly quarantined (bad rows and events that did not validate).
    pub quarantined: u64,
    /// Whether this apply finished an interrupted one (counts cover the rest only).
    pub resumed: bool,
}

/// What became of a snapshot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now: as the baseline (profiles, no events) or as a diff.
    Applied {
        /// Snapshot id.
        id: i64,
        /// Whether it was the source's first.
        baseline: bool,
        /// What it did.
        stats: SnapshotStats,
    },
    /// Held back for an operator, with why.
    Held {
        /// Snapshot id, for `events snapshot approve`.
        id: i64,
        /// Why.
        reason: String,
    },
    /// Cannot be applied: the header lacks a needed column (`rejected`), or an
    /// interrupted snapshot's file was lost (`abandoned`; the next file carries its changes).
    Rejected {
        /// Snapshot id.
        id: i64,
        /// Why.
        reason: String,
    },
    /// The same file was applied before: nothing to do.
    AlreadyApplied {
        /// Snapshot id.
        id: i64,
    },
    /// A newer snapshot was applied after this file was held.
    Superseded {
        /// Snapshot id.
        id: i64,
    },
}

/// Progress of a pass over a file.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// `checking` or `applying`.
    pub phase: &'static str,
    /// Bytes of the file read so far.
    pub done: u64,
    /// Size of the file.
    pub total: u64,
}

/// What one poll of a snapshot source did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// The file has not changed since the last one (HTTP 304, or the same content).
    Unchanged,
    /// A new file was fetched and checked; interrupted ones were finished first.
    Fetched(Vec<Outcome>),
}

/// A poller for one snapshot source.
pub struct SnapshotPoller {
    def: SourceDef,
    settings: SnapshotSettings,
    http: reqwest::Client,
    token: Option<String>,
}

impl SnapshotPoller {
    /// A poller for `def`; fails if its token variable is named but unset.
    pub fn new(def: SourceDef) -> Result<SnapshotPoller> {
        super::use_ring_tls();
        let token = def.token()?;
        // A whole-request timeout would cut a large download; a read that stalls this long fails instead.
        let http = reqwest::Client::builder().connect_timeout(def.timeout()).read_timeout(def.timeout()).build()?;
        let settings = SnapshotSettings::from_def(&def);
        Ok(SnapshotPoller { def, settings, http, token })
    }

    /// Replaces the settings (tests use this for batch size and crash points).
    pub fn with_settings(mut self, settings: SnapshotSettings) -> SnapshotPoller {
        self.settings = settings;
        self
    }

    /// The source name.
    pub fn source(&self) -> &str {
        &self.def.source
    }

    fn spool(&self) -> &Path {
        &self.def.spool_dir
    }

    /// Finishes interrupted snapshots, then fetches the file and processes it if it changed.
    pub async fn poll(&self, db: &Db, clock: &Clock, purposes: &PurposeCheck) -> Result<PollOutcome, PollError> {
        let mut quiet = |_: Progress| {};
        let failed = |e: anyhow::Error| PollError::Failed(format!("{e:#}"));
        let mut outcomes =
            resume_interrupted(db, &self.settings, None, purposes, clock, &mut quiet).await.map_err(failed)?;
        for o in &outcomes {
            self.clean_up(db, o).await;
        }
        tokio::fs::create_dir_all(self.spool()).await.map_err(|e| {
            PollError::Failed(format!("cannot create the spool folder {}: {e}", self.spool().display()))
        })?;
        let fetched = if let Some(url) = &self.def.url {
            self.download(db, clock, url).await?
        } else if let Some(path) = &self.def.path {
            self.copy_local(db, path).await?
        } else {
            return Err(PollError::Failed(format!("{}: neither url nor path is set", self.def.file.display())));
        };
        let Some(file) = fetched else {
            return Ok(if outcomes.is_empty() { PollOutcome::Unchanged } else { PollOutcome::Fetched(outcomes) });
        };
        let outcome = process(db, &self.settings, &file, purposes, clock, &mut quiet).await.map_err(failed)?;
        self.clean_up(db, &outcome).await;
        outcomes.push(outcome);
        Ok(PollOutcome::Fetched(outcomes))
    }

    /// Streams the file to the spool folder with a conditional GET; `None` on 304.
    async fn download(&self, db: &Db, clock: &Clock, url: &str) -> Result<Option<SnapshotFile>, PollError> {
        // The last file judged whole: one whose processing was lost ("abandoned") must be fetched again.
        let judged = ["applied", "held", "superseded", "rejected"];
        let last = db.snapshots(Some(&self.def.source), &judged).await?.into_iter().next();
        let mut req = self.http.get(url);
        if let Some(last) = &last {
            if let Some(etag) = &last.etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &last.last_modified {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| PollError::Failed(format!("request failed: {}", e.without_url())))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            tracing::info!(source = %self.def.source, "register file unchanged (304)");
            return Ok(None);
        }
        if status.as_u16() == 429 || status.as_u16() == 503 {
            let after =
                retry_after(resp.headers().get(reqwest::header::RETRY_AFTER)).unwrap_or(Duration::from_secs(60));
            return Err(PollError::Busy { status: status.as_u16(), after });
        }
        if !status.is_success() {
            return Err(PollError::Failed(format!("the register file's server answered HTTP {status}")));
        }
        let header = |name: reqwest::header::HeaderName| {
            resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let expected = resp.content_length();
        let date = last_modified
            .as_deref()
            .and_then(|lm| chrono::DateTime::parse_from_rfc2822(lm).ok())
            .map(|t| t.with_timezone(&Riga).date_naive())
            .unwrap_or_else(|| clock.now().with_timezone(&Riga).date_naive());

        let part = self.spool().join(format!("{}.download", self.def.source));
        let io = |what: &str, e: std::io::Error| PollError::Failed(format!("{what} {}: {e}", part.display()));
        let mut out =
            tokio::io::BufWriter::new(tokio::fs::File::create(&part).await.map_err(|e| io("cannot create", e))?);
        let mut hash = sha2::Sha256::new();
        let mut bytes = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                PollError::Failed(format!("the download broke off after {bytes} bytes: {}", e.without_url()))
            })?;
            hash.update(&chunk);
            bytes += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(|e| io("cannot write", e))?;
        }
        out.flush().await.map_err(|e| io("cannot write", e))?;
        drop(out);
        if let Some(n) = expected.filter(|n| *n != bytes) {
            return Err(PollError::Failed(format!("the download ended after {bytes} of {n} bytes")));
        }
        let sha256 = hex::encode(hash.finalize());
        let path = self.spool().join(format!("{}-{}.csv", self.def.source, &sha256[..16]));
        tokio::fs::rename(&part, &path).await.map_err(|e| io("cannot rename", e))?;
        tracing::info!(source = %self.def.source, bytes, %date, "register file downloaded");
        Ok(Some(SnapshotFile { path, sha256, bytes, date, origin: url.to_string(), etag, last_modified }))
    }

    /// Copies a local file to the spool folder (so it stays as it was while held); `None` if unchanged.
    async fn copy_local(&self, db: &Db, path: &Path) -> Result<Option<SnapshotFile>, PollError> {
        let (p, spool, source) = (path.to_path_buf(), self.spool().to_path_buf(), self.def.source.clone());
        let local = tokio::task::spawn_blocking(move || SnapshotFile::local(&p, None))
            .await
            .map_err(|e| PollError::Failed(format!("hashing panicked: {e}")))?
            .map_err(|e| PollError::Failed(format!("{e:#}")))?;
        // Unchanged means: the same content as the last file received (a file equal to an older
        // one, after a different one, is a change back and is diffed again).
        let last = db.snapshots(Some(&source), &[]).await?.into_iter().next();
        if last.is_some_and(|s| s.sha256 == local.sha256) {
            return Ok(None);
        }
        let copy = spool.join(format!("{source}-{}.csv", &local.sha256[..16]));
        tokio::fs::copy(path, &copy)
            .await
            .map_err(|e| PollError::Failed(format!("cannot copy {} to {}: {e}", path.display(), copy.display())))?;
        Ok(Some(SnapshotFile { path: copy, ..local }))
    }

    /// Removes spooled files that are no longer needed (only held files are kept).
    async fn clean_up(&self, db: &Db, outcome: &Outcome) {
        let id = match outcome {
            Outcome::Held { .. } => return,
            Outcome::Applied { id, .. }
            | Outcome::Rejected { id, .. }
            | Outcome::AlreadyApplied { id }
            | Outcome::Superseded { id } => *id,
        };
        let Ok(rows) = db.snapshots(Some(&self.def.source), &["applied", "superseded", "rejected", "abandoned"]).await
        else {
            return;
        };
        for r in rows.iter().filter(|r| r.id <= id) {
            let f = Path::new(&r.file);
            // Only files this poller spooled: an operator's own file is never deleted.
            if f.starts_with(self.spool()) && f.exists() {
                let _ = tokio::fs::remove_file(f).await;
            }
        }
    }

    /// Polls on the source's schedule until `stop` fires (see [`super::run_on_schedule`]).
    pub async fn run(
        &self,
        db: Db,
        clock: Clock,
        purposes: std::sync::Arc<PurposeCheck>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let (db_ref, clock_ref, purposes) = (&db, &clock, &*purposes);
        super::run_on_schedule(&self.def, &db, &clock, stop, move || async move {
            let outcome = self.poll(db_ref, clock_ref, purposes).await?;
            if outcome == PollOutcome::Unchanged {
                tracing::debug!(source = %self.def.source, "register file unchanged");
            }
            Ok(())
        })
        .await
    }
}
