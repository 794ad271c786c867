//! The change-feed connector (CONTRACTS.md §1): pages through
//! `GET {base}/changes?after=&limit=` until the feed is up to date, storing
//! each page with the new cursor in one transaction, so a restart resumes
//! exactly where the last commit left off.

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use rand::RngExt;
use serde::Deserialize;

use super::SourceDef;
use crate::clock::Clock;
use crate::events::{PurposeCheck, RawRecord, ingest_records};
use crate::store::{Db, IngestCounts};

/// Why a poll stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The feed asked us to wait (429/503 with `Retry-After`).
    #[error("feed busy (HTTP {status}); retry after {after:?}")]
    Busy {
        /// HTTP status.
        status: u16,
        /// How long it asked us to wait.
        after: Duration,
    },
    /// Any other failure: HTTP error, broken connection, malformed page.
    #[error("{0}")]
    Failed(String),
    /// The store failed; nothing of the page was committed.
    #[error("store: {0}")]
    Store(#[from] anyhow::Error),
}

#[derive(Deserialize)]
struct Page {
    changes: Vec<serde_json::Value>,
    next: Option<String>,
}

/// A poller for one change feed.
pub struct FeedPoller {
    def: SourceDef,
    http: reqwest::Client,
    token: Option<String>,
}

impl FeedPoller {
    /// A poller for `def`; fails if its token variable is named but unset.
    pub fn new(def: SourceDef) -> Result<FeedPoller> {
        super::use_ring_tls();
        let token = def.token()?;
        let http = reqwest::Client::builder().timeout(def.timeout()).build()?;
        Ok(FeedPoller { def, http, token })
    }

    /// The source name.
    pub fn source(&self) -> &str {
        &self.def.source
    }

    /// Fetches and stores pages until the feed answers with an empty page.
    pub async fn poll(&self, db: &Db, clock: &Clock, purposes: &PurposeCheck) -> Result<IngestCounts, PollError> {
        let mut total = IngestCounts::default();
        loop {
            let cursor = db.connector_state(&self.def.source).await?.cursor;
            let url = format!("{}/changes", self.def.base_url.trim_end_matches('/'));
            let mut req = self.http.get(&url).query(&[("limit", self.def.page_size.to_string())]);
            if let Some(c) = &cursor {
                req = req.query(&[("after", c)]);
            }
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp =
                req.send().await.map_err(|e| PollError::Failed(format!("request failed: {}", e.without_url())))?;
            let status = resp.status();
            if status.as_u16() == 429 || status.as_u16() == 503 {
                let after =
                    retry_after(resp.headers().get(reqwest::header::RETRY_AFTER)).unwrap_or(Duration::from_secs(30));
                return Err(PollError::Busy { status: status.as_u16(), after });
            }
            if !status.is_success() {
                return Err(PollError::Failed(format!("feed answered HTTP {status}")));
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| PollError::Failed(format!("reading the page failed: {}", e.without_url())))?;
            let page: Page = serde_json::from_slice(&body).map_err(|e| {
                PollError::Failed(format!("the page is not {{\"changes\": [...], \"next\": ...}}: {e}"))
            })?;
            if page.changes.is_empty() {
                return Ok(total);
            }
            let next =
                page.next.ok_or_else(|| PollError::Failed("a page with changes has no \"next\" cursor".into()))?;
            let from = cursor.as_deref().unwrap_or("the start");
            let records: Vec<RawRecord> = page
                .changes
                .iter()
                .enumerate()
                .map(|(i, c)| RawRecord {
                    location: format!("feed {} page after {from}, change {}", self.def.source, i + 1),
                    text: c.to_string(),
                })
                .collect();
            let counts = ingest_records(
                db,
                Some(&self.def.source),
                &records,
                purposes,
                Some((&self.def.source, &next)),
                clock.now_ms(),
            )
            .await?;
            tracing::info!(
                source = %self.def.source,
                accepted = counts.accepted,
                duplicate = counts.duplicate,
                quarantined = counts.quarantined,
                "feed page stored"
            );
            total += counts;
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
            self.poll(db_ref, clock_ref, purposes).await.map(|_| ())
        })
        .await
    }
}

/// 1 s doubling to 5 min, with jitter, after `failures` failures in a row.
pub(crate) fn backoff(failures: u32) -> Duration {
    let cap = Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300));
    let ms = cap.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(v: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let s = v?.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    (at.with_timezone(&Utc) - Utc::now()).to_std().ok()
}
