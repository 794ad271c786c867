//! `proactive audit export`: the records of processing for one purpose over
//! a period, as a data-protection officer asks for them — what was
//! processed, for whom (a pseudonym), on which legal basis, when, and over
//! which channel with which outcome. Persons are pseudonyms in the log
//! already; free text (reasons, errors) is masked once more on the way out.

use std::io::Write;

use anyhow::Result;
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;

use crate::engine::RuleSet;
use crate::mask::mask_codes_in;
use crate::store::Db;

/// Output formats of the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object a line.
    Jsonl,
    /// A header line, then one row a record.
    Csv,
}

/// One record of processing.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProcessingRecord {
    /// When (Riga time, RFC 3339).
    pub at: String,
    /// What happened (`notice.created`, `delivery.sent`, `consent.refused`, …).
    pub kind: String,
    /// The same in words.
    pub what: String,
    /// For whom: the person's pseudonym.
    pub subject: Option<String>,
    /// Purpose of processing.
    pub purpose: String,
    /// Life situation.
    pub life_situation: Option<String>,
    /// Its definition version.
    pub version: Option<i64>,
    /// Legal basis, from the definition in force for that version.
    pub legal_basis: Option<String>,
    /// Controller institution.
    pub owner: Option<String>,
    /// Channel used or tried.
    pub channel: Option<String>,
    /// Outcome or reason, masked.
    pub outcome: Option<String>,
    /// The notice concerned.
    pub notice_id: Option<String>,
    /// Where the record is in the audit log: chain.
    pub chain: String,
    /// And sequence number, for `audit verify` and for asking about it.
    pub seq: i64,
}

/// Writes the records of `purpose` from `from` to `to` (whole Riga days, both
/// included) to `out`; returns how many.
pub async fn export(
    db: &Db,
    rules: Option<&RuleSet>,
    purpose: &str,
    from: NaiveDate,
    to: NaiveDate,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<usize> {
    if to < from {
        anyhow::bail!("--to {to} is before --from {from}");
    }
    let start = riga_midnight(from)?;
    let end = riga_midnight(to.succ_opt().unwrap_or(to))?;
    let rows = db.audit_export(purpose, start, end).await?;
    let mut csv = (format == ExportFormat::Csv).then(|| csv::Writer::from_writer(Vec::new()));
    let mut n = 0;
    for r in &rows {
        let detail: Value =
            serde_json::from_str::<Value>(&r.record).ok().and_then(|v| v.get("detail").cloned()).unwrap_or(Value::Null);
        let rec = processing_record(r, &detail, purpose, rules);
        match csv.as_mut() {
            Some(w) => w.serialize(&rec)?,
            None => {
                serde_json::to_writer(&mut *out, &rec)?;
                out.write_all(b"\n")?;
            }
        }
        n += 1;
    }
    if let Some(w) = csv {
        if n == 0 {
            // An empty export still says what its columns are.
            out.write_all(CSV_HEADER.as_bytes())?;
        }
        out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("cannot write CSV: {e}"))?)?;
    }
    Ok(n)
}

const CSV_HEADER: &str =
    "at,kind,what,subject,purpose,life_situation,version,legal_basis,owner,channel,outcome,notice_id,chain,seq\n";

fn riga_midnight(d: NaiveDate) -> Result<i64> {
    use chrono::TimeZone;
    let t = d.and_hms_opt(0, 0, 0).expect("midnight exists");
    chrono_tz::Europe::Riga
        .from_local_datetime(&t)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| anyhow::anyhow!("{d} has no midnight in Riga"))
}

fn processing_record(r: &super::Sealed, d: &Value, purpose: &str, rules: Option<&RuleSet>) -> ProcessingRecord {
    let s = |k: &str| d.get(k).and_then(Value::as_str).map(String::from);
    let ls = s("life_situation");
    let version = d.get("version").and_then(Value::as_i64);
    // The definition that made it; for consent records, the one declaring the purpose.
    let def = rules.and_then(|rules| match (&ls, version) {
        (Some(ls), Some(v)) => rules.get(ls, v),
        _ => rules
            .situations
            .iter()
            .filter(|d| d.purposes.iter().any(|p| p.id == purpose))
            .max_by_key(|d| (d.id == purpose, d.version)),
    });
    let what = match r.kind.as_str() {
        "notice.created" => format!(
            "notice made by step {} (template {}) on event {}",
            s("step").unwrap_or_default(),
            s("template").unwrap_or_default(),
            d.get("event").and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("?")
        ),
        "notice.withdrawn" => "queued notice withdrawn".into(),
        "delivery.sent" => "notice delivered".into(),
        "delivery.retry" => "delivery failed, to be retried".into(),
        "delivery.dead" => "delivery given up".into(),
        "delivery.deferred" => "delivery deferred".into(),
        "delivery.unreachable" => "channel did not reach the person".into(),
        "delivery.suppressed" | "delivery.skipped" => "notice not sent".into(),
        "consent.granted" => "consent granted".into(),
        "consent.refused" => "consent refused".into(),
        "consent.withdrawn" => "consent withdrawn".into(),
        "staff.case_cancelled" => format!("case cancelled by {}", s("by").unwrap_or_else(|| "staff".into())),
        "retention.erased" => format!(
            "personal data of {} notices erased at the end of retention",
            d.get("notices").and_then(Value::as_i64).unwrap_or(0)
        ),
        other => other.to_string(),
    };
    let outcome = s("outcome")
        .map(|o| match s("error") {
            Some(e) => format!("{o}: {e}"),
            None => o,
        })
        .or_else(|| s("reason"))
        .or_else(|| s("state"))
        .map(|o| mask_codes_in(&o));
    ProcessingRecord {
        at: crate::clock::from_ms(r.at).with_timezone(&chrono_tz::Europe::Riga).to_rfc3339(),
        kind: r.kind.clone(),
        what,
        subject: r.subject_ref.clone(),
        purpose: r.purpose.clone().unwrap_or_default(),
        life_situation: ls.or_else(|| def.map(|d| d.id.clone())),
        version: version.or_else(|| def.map(|d| d.version)),
        legal_basis: def.map(|d| d.legal_basis.clone()),
        owner: def.map(|d| d.owner.clone()),
        channel: s("channel"),
        outcome,
        notice_id: r.notice_id.clone(),
        chain: r.chain.clone(),
        seq: r.seq,
    }
}
