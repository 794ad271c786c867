//! The audit's commands: `explain`, `audit verify`, `audit export`,
//! `retention run`, and the staff action `cases cancel`, which is recorded
//! in the audit log with its reason.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::chain::{Break, Problem, Walker};
use super::{Audit, Entry};
use crate::engine::cases;
use crate::store::{BatchWrite, Db, Withdraw};

/// Records read per query while verifying.
const PAGE: i64 = 5_000;

/// What `audit verify` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Chains walked.
    pub chains: usize,
    /// Records that checked out.
    pub records: u64,
    /// The first broken record of each broken chain.
    pub breaks: Vec<Break>,
}

impl VerifyReport {
    /// Whether every chain is intact.
    pub fn ok(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Walks every chain from its first record to its head and names the first
/// broken record of each. Records written after a chain's head was read are
/// left for the next run, so verifying beside running writers is safe.
pub async fn verify(db: &Db) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for head in db.audit_chains().await? {
        report.chains += 1;
        let mut w = Walker::new(&head.chain);
        let limit = head.head.as_ref().map(|h| h.0);
        let mut after = 0;
        let mut broke = None;
        'pages: loop {
            let page = db.audit_page(&head.chain, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                if limit.is_some_and(|l| r.seq > l) {
                    break 'pages;
                }
                if let Err(b) = w.step(r) {
                    broke = Some(b);
                    break 'pages;
                }
            }
        }
        if broke.is_none() {
            broke = match &head.head {
                Some((seq, hash)) => w.finish(*seq, hash).err(),
                None => Some(Break { chain: head.chain.clone(), seq: w.checked as i64, problem: Problem::Headless }),
            };
        }
        report.records += w.checked;
        report.breaks.extend(broke);
    }
    Ok(report)
}

/// Runs `audit verify` for the CLI: exit code 1 when any chain is broken.
pub async fn verify_command(db: &Db, json: bool) -> Result<ExitCode> {
    let r = verify(db).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.ok() {
        println!("audit log intact: {} records in {} chains", r.records, r.chains);
    } else {
        for b in &r.breaks {
            println!("BROKEN  chain {} at record {}: {}", b.chain, b.seq, b.problem);
        }
        println!("{} of {} chains broken ({} records checked before the breaks)", r.breaks.len(), r.chains, r.records);
    }
    Ok(if r.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What `cases cancel` did.
#[derive(Clone, Debug, Serialize)]
pub struct Cancelled {
    /// The case.
    pub case_id: String,
    /// Its steps that will no longer run.
    pub steps: usize,
    /// Its queued notices withdrawn.
    pub notices: usize,
}

/// Cancels an open case for a member of staff: its waiting steps (timers)
/// and queued notices with it, the reason on each, and the action in the
/// audit log — one transaction.
pub async fn cancel_case(db: &Db, audit: &Audit, id: &str, reason: &str, by: &str, now_ms: i64) -> Result<Cancelled> {
    let reason = reason.trim();
    if reason.is_empty() {
        anyhow::bail!("--reason must say why the case is cancelled");
    }
    let Some(mut case) = db.load_cases(&[id.to_string()]).await?.pop() else {
        anyhow::bail!("no case {id} (see `proactive cases show --subject CODE`)");
    };
    if case.state != cases::OPEN {
        anyhow::bail!("case {id} is {} already; only an open case can be cancelled", case.state);
    }
    let steps = case.plan.values().filter(|p| p.state == cases::StepState::Pending).count();
    let why = super::plain::staff_reason(by, reason);
    case.cancel(&why, now_ms);
    let entry = Entry {
        kind: "staff.case_cancelled".into(),
        at: now_ms,
        purpose: Some(case.life_situation.clone()),
        subject: Some(case.subject.clone()),
        notice_id: None,
        detail: serde_json::json!({
            "case_id": case.id,
            "life_situation": case.life_situation,
            "version": case.version,
            "by": by,
            "reason": crate::mask::mask_codes_in(reason),
            "steps_cancelled": steps,
        }),
    };
    let w = BatchWrite {
        withdraw: vec![Withdraw::Case(id.to_string(), why.clone())],
        cases: vec![case],
        audit: vec![entry],
        ..BatchWrite::default()
    };
    db.commit_batch(&w, now_ms, audit).await?;
    let notices = db
        .notices_of(Some(id))
        .await?
        .iter()
        .filter(|n| n.state == "cancelled" && n.last_error.as_deref() == Some(why.as_str()))
        .count();
    Ok(Cancelled { case_id: id.to_string(), steps, notices })
}
