//! Retention: each purpose declares how long the personal data of its
//! notices is kept (`retention_days` in `life-events/*.toml`), and
//! `proactive retention run` erases what is past it — template data, the
//! recipient's code (replaced by its pseudonym), the trace's personal parts,
//! gateway errors that may name an address, and the fields of the drafts
//! offered. The audit log is not touched: it holds pseudonyms only, so its
//! chains stay verifiable after erasure.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::{Audit, Entry};
use crate::engine::RuleSet;
use crate::store::{Db, Erasure};

/// Notices erased per transaction: a run over a large backlog commits as it goes.
const BATCH: i64 = 500;

/// What a run erased for one purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// The purpose's retention, in days.
    pub retention_days: u32,
    /// Notices made before this (ms) were due.
    pub cutoff: i64,
    /// Notices erased.
    pub notices: usize,
    /// Drafts erased with them.
    pub drafts: usize,
}

/// Each purpose's retention: the longest any loaded definition declares for it.
pub fn retention_periods(rules: &RuleSet) -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = BTreeMap::new();
    for d in &rules.situations {
        for p in &d.purposes {
            if let Some(days) = p.retention_days {
                let e = out.entry(p.id.clone()).or_insert(days);
                *e = (*e).max(days);
            }
        }
    }
    out
}

/// Erases, for every purpose with a retention period, the personal data of
/// its finished notices made more than that many days before `now_ms`
/// (pending ones wait until they are sent or given up). With `dry_run`,
/// counts without erasing.
pub async fn run(
    db: &Db,
    rules: &RuleSet,
    audit: &Audit,
    now_ms: i64,
    dry_run: bool,
) -> Result<BTreeMap<String, Erased>> {
    let mut report = BTreeMap::new();
    for (purpose, days) in retention_periods(rules) {
        let cutoff = now_ms - i64::from(days) * 86_400_000;
        let mut done = Erased { retention_days: days, cutoff, ..Erased::default() };
        let mut seen = std::collections::HashSet::new();
        loop {
            let batch = db.erasable_notices(&purpose, cutoff, BATCH).await?;
            // A dry run erases nothing, so the same batch would come again.
            let batch: Vec<_> = batch.into_iter().filter(|n| seen.insert(n.id.clone())).collect();
            if batch.is_empty() {
                break;
            }
            let refs: Vec<String> = batch.iter().filter_map(|n| n.draft_ref.clone()).collect();
            let applicants: std::collections::HashMap<String, String> =
                db.drafts_by_ref(&refs).await?.into_iter().map(|d| (d.reference, d.applicant)).collect();
            let erasures: Vec<Erasure> = batch
                .iter()
                .map(|n| {
                    Ok(Erasure {
                        id: n.id.clone(),
                        recipient_ref: audit.pseudonym(&n.recipient),
                        trace: n.trace.clone().map(|t| serde_json::to_string(&t.erased(now_ms))).transpose()?,
                        draft: n
                            .draft_ref
                            .as_ref()
                            .and_then(|r| applicants.get(r).map(|a| (r.clone(), audit.pseudonym(a)))),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let drafts = erasures.iter().filter(|e| e.draft.is_some()).count();
            if !dry_run {
                let entry = Entry {
                    kind: "retention.erased".into(),
                    at: now_ms,
                    purpose: Some(purpose.clone()),
                    subject: None,
                    notice_id: None,
                    detail: serde_json::json!({
                        "retention_days": days,
                        "cutoff": cutoff,
                        "notices": erasures.len(),
                        "drafts": drafts,
                        "notice_ids": erasures.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
                    }),
                };
                db.erase_notices(&erasures, audit, entry, now_ms).await?;
            }
            done.notices += erasures.len();
            done.drafts += drafts;
        }
        tracing::info!(purpose = %purpose, notices = done.notices, drafts = done.drafts, dry_run, "retention");
        report.insert(purpose, done);
    }
    Ok(report)
}
