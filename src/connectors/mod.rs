//! Connectors: one TOML file per source in `connectors/`, each polled on its
//! cron schedule (in Europe/Riga). Every source hands its raw records to
//! [`crate::events`], so a feed, an import and an agency push are validated
//! and stored the same way.

pub mod feed;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A source definition, as an operator writes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    /// Source name stored with each event (`pmlp`, `ur`, …).
    pub source: String,
    /// Kind of source; `change_feed` polls CONTRACTS.md §1, `snapshot` fetches §2's file.
    pub kind: SourceKind,
    /// Whether `serve` polls it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Base URL of the feed; `/changes` is appended (change feeds).
    #[serde(default)]
    pub base_url: String,
    /// Cron expression with seconds (`sec min hour day month weekday`), Europe/Riga time.
    pub schedule: String,
    /// Changes asked for per page.
    #[serde(default = "default_page")]
    pub page_size: u32,
    /// Environment variable holding the bearer token, if the feed wants one.
    pub token_env: Option<String>,
    /// Seconds before a request times out.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// URL of the register file, fetched with a conditional GET (snapshots; or `path`).
    pub url: Option<String>,
    /// Local path of the register file (snapshots; or `url`).
    pub path: Option<PathBuf>,
    /// Folder where fetched files are kept while checked, applied or held (snapshots).
    #[serde(default = "default_spool")]
    pub spool_dir: PathBuf,
    /// A file that lost more than this share of the companies is held back (snapshots).
    #[serde(default = "default_share")]
    pub max_vanished_share: f64,
    /// A file with more than this share of unreadable rows is held back (snapshots).
    #[serde(default = "default_share")]
    pub max_bad_share: f64,
    /// Event types to emit (snapshots; default all four `company.*` types it knows).
    pub events: Option<Vec<String>>,
    /// The file it was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// Kinds of source.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `GET /changes?after=&limit=` (CONTRACTS.md §1).
    ChangeFeed,
    /// The Enterprise Register's daily `register.csv`, diffed (CONTRACTS.md §2).
    Snapshot,
}

fn yes() -> bool {
    true
}

fn default_page() -> u32 {
    500
}

fn default_timeout() -> u64 {
    30
}

fn default_spool() -> PathBuf {
    PathBuf::from("snapshots")
}

fn default_share() -> f64 {
    0.01
}

impl SourceDef {
    /// The parsed schedule.
    pub fn cron(&self) -> Result<cron::Schedule, String> {
        self.schedule
            .parse::<cron::Schedule>()
            .map_err(|e| format!("{}: schedule \"{}\": {e}", self.file.display(), self.schedule))
    }

    /// What is wrong with the fields of this source's kind, if anything.
    pub fn check_kind(&self) -> Vec<String> {
        let f = self.file.display();
        let mut errors = Vec::new();
        match self.kind {
            SourceKind::ChangeFeed if self.base_url.trim().is_empty() => {
                errors.push(format!("{f}: a change_feed needs base_url"));
            }
            SourceKind::ChangeFeed => {}
            SourceKind::Snapshot => {
                if self.url.is_some() == self.path.is_some() {
                    errors.push(format!("{f}: a snapshot needs exactly one of url and path"));
                }
                for (name, v) in
                    [("max_vanished_share", self.max_vanished_share), ("max_bad_share", self.max_bad_share)]
                {
                    if !(0.0..=1.0).contains(&v) {
                        errors.push(format!("{f}: {name} must be between 0 and 1 (a share, 0.01 = 1%)"));
                    }
                }
                for e in self.events.iter().flatten() {
                    if !snapshot::EVENT_TYPES.contains(&e.as_str()) {
                        errors.push(format!(
                            "{f}: events: a snapshot cannot emit \"{e}\" (it emits {})",
                            snapshot::EVENT_TYPES.join(", ")
                        ));
                    }
                }
            }
        }
        errors
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The bearer token `token_env` names, read now; a named but unset variable is an error.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        self.token_env.as_deref().map(crate::config::secret).transpose()
    }
}

/// reqwest is built without a TLS provider of its own; it shares lettre's ring one.
pub(crate) fn use_ring_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads every `*.toml` in `dir`; returns all errors, each naming its file.
pub fn load_sources(dir: &Path) -> Result<Vec<SourceDef>, Vec<String>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        }
        Err(e) => return Err(vec![format!("{}: cannot read the connectors folder: {e}", dir.display())]),
    };
    files.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: cannot read: {e}", f.display()));
                continue;
            }
        };
        match toml::from_str::<SourceDef>(&text) {
            Ok(mut d) => {
                d.file = f.clone();
                if let Err(e) = d.cron() {
                    errors.push(e);
                }
                errors.extend(d.check_kind());
                if out.iter().any(|o: &SourceDef| o.source == d.source) {
                    errors.push(format!("{}: source \"{}\" is defined twice", f.display(), d.source));
                }
                out.push(d);
            }
            Err(e) => {
                let at = e.span().map(|s| crate::engine::definitions::line_col(&text, s.start));
                errors.push(match at {
                    Some((l, c)) => format!("{}:{l}:{c}: {}", f.display(), e.message()),
                    None => format!("{}: {}", f.display(), e.message()),
                });
            }
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Runs `poll` on `def`'s cron schedule (Europe/Riga, on the engine's clock,
/// at most once a real second) until `stop` fires; after a failure it waits
/// as the source asked (429/503 `Retry-After`) or backs off exponentially,
/// and records the error with the connector's state.
pub(crate) async fn run_on_schedule<F, Fut>(
    def: &SourceDef,
    db: &crate::store::Db,
    clock: &crate::clock::Clock,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut poll: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), feed::PollError>>,
{
    use chrono::Utc;
    use chrono_tz::Europe::Riga;

    let schedule = match def.cron() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(source = %def.source, error = %e, "connector not started");
            return;
        }
    };
    let mut failures: u32 = 0;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        match poll().await {
            Ok(()) => {
                failures = 0;
                let now = clock.now().with_timezone(&Riga);
                let next = schedule.after(&now).next().map(|t| t.with_timezone(&Utc));
                // The schedule follows the engine's clock; on a fast virtual
                // clock, at most one poll a real second.
                wait = next
                    .map(|t| clock.real_wait(t - clock.now()))
                    .unwrap_or(Duration::from_secs(3600))
                    .max(Duration::from_secs(1));
            }
            Err(e) => {
                failures += 1;
                let msg = e.to_string();
                tracing::warn!(source = %def.source, error = %msg, failures, "poll failed");
                let _ = db.record_poll_error(&def.source, &msg, clock.now_ms()).await;
                wait = match e {
                    feed::PollError::Busy { after, .. } => after,
                    _ => feed::backoff(failures),
                };
            }
        }
    }
}
