//! `proactive explain`: a notice's trace and audit records told in plain
//! words a citizen-service clerk can read out — which life situation, rule
//! and version made it on which event, through whom it went, what consent
//! said, which channels were tried and why, and what became of it.
//!
//! Personal codes are masked, except the one code the clerk asked about
//! with `--subject`: that person is the one on the phone or at the desk and
//! the clerk typed the code, while their parents', guardians' or
//! representatives' codes are other people's data the caller need not hear.

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::Audit;
use super::Sealed;
use super::trace::Via;
use crate::engine::RuleSet;
use crate::engine::definitions::ConsentMode;
use crate::mask::{mask_code, mask_codes_in};
use crate::store::{Db, NoticeDetail};

/// One notice explained.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// Notice id.
    pub notice_id: String,
    /// Its state now.
    pub state: String,
    /// The first sentence: what became of it.
    pub headline: String,
    /// The rest, one sentence a line.
    pub lines: Vec<String>,
    /// The same as data, codes masked as in the text.
    pub details: Value,
}

impl Explanation {
    /// The explanation as text, the headline first.
    pub fn text(&self) -> String {
        let mut out = format!("Notice {}\n  {}\n", self.notice_id, self.headline);
        for l in &self.lines {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// Everything explained about one person.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectExplanation {
    /// The code as asked.
    pub subject: String,
    /// Notices to or about them.
    pub notices: Vec<Explanation>,
    /// Their consent changes and staff actions on their cases, in plain words.
    pub other: Vec<String>,
}

impl SubjectExplanation {
    /// As text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.notices.is_empty() {
            out.push_str(&format!("No notices to or about {}.\n", self.subject));
        }
        for n in &self.notices {
            out.push_str(&n.text());
            out.push('\n');
        }
        if !self.other.is_empty() {
            out.push_str(&format!("Other records about {}:\n", self.subject));
            for l in &self.other {
                out.push_str("  ");
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// How codes are shown: masked, but the one asked about as it is.
struct Shown<'a> {
    reveal: Option<&'a str>,
}

impl Shown<'_> {
    fn code(&self, code: &str) -> String {
        if code.starts_with("ps_") {
            "a person whose data was erased".into()
        } else if Some(code) == self.reveal {
            code.to_string()
        } else {
            mask_code(code)
        }
    }
}

/// Riga wall time of `ms`, to the minute.
fn when(ms: i64) -> String {
    crate::clock::from_ms(ms).with_timezone(&chrono_tz::Europe::Riga).format("%Y-%m-%d %H:%M").to_string()
}

fn day(ms: i64) -> String {
    crate::engine::event_day(ms).to_string()
}

fn channel_words(ch: &str) -> &str {
    match ch {
        "eaddress" => "the e-address",
        "email" => "email",
        "sms" => "SMS",
        "letter" => "a printed letter (client-centre task)",
        other => other,
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Explains one notice; none when no notice has that id.
pub async fn explain_notice(
    db: &Db,
    rules: Option<&RuleSet>,
    id: &str,
    reveal: Option<&str>,
) -> Result<Option<Explanation>> {
    let Some(n) = db.notice_detail(id).await? else { return Ok(None) };
    let records = db.audit_of_notice(id).await?;
    Ok(Some(explain(&n, &records, rules, &Shown { reveal })))
}

/// Explains a notice already read with every code masked, headline and
/// lines included, and gives its plain reasons from the same records: for
/// the citizen API, whose reader is the person or their representative, and
/// the other people a notice names (a child, a parent, a representative) are
/// not for the API to spell out.
pub async fn explain_masked(
    db: &Db,
    rules: Option<&RuleSet>,
    n: &NoticeDetail,
) -> Result<(Explanation, Vec<super::plain::Reason>)> {
    let records = db.audit_of_notice(&n.id).await?;
    let mut e = explain(n, &records, rules, &Shown { reveal: None });
    // Free text a clerk typed (a cancellation's reason) may hold a code the trace does not know of.
    e.headline = mask_codes_in(&e.headline);
    e.lines = e.lines.iter().map(|l| mask_codes_in(l)).collect();
    Ok((e, super::plain::reasons(n, &records, rules)))
}

/// Explains every notice to or about `code`, and lists their other records.
pub async fn explain_subject(
    db: &Db,
    rules: Option<&RuleSet>,
    audit: &Audit,
    code: &str,
) -> Result<SubjectExplanation> {
    let (_, code) = crate::events::codes::normalize_subject(code).map_err(|e| anyhow::anyhow!("--subject: {e}"))?;
    let pseudonym = audit.pseudonym(&code);
    let shown = Shown { reveal: Some(&code) };
    let mut notices = Vec::new();
    for n in db.notices_concerning(&code, &pseudonym).await? {
        let records = db.audit_of_notice(&n.id).await?;
        notices.push(explain(&n, &records, rules, &shown));
    }
    let mut other = Vec::new();
    for r in db.audit_of_subject(&pseudonym).await? {
        let Ok(rec) = serde_json::from_str::<Value>(&r.record) else { continue };
        let d = rec.get("detail").cloned().unwrap_or(Value::Null);
        let purpose = r.purpose.as_deref().unwrap_or("-");
        let line = match r.kind.as_str() {
            "consent.granted" | "consent.refused" | "consent.withdrawn" => {
                let verb = r.kind.trim_start_matches("consent.");
                let on = str_of(&d, "channel").map_or("every channel".to_string(), |c| channel_words(c).to_string());
                let event = d.get("event").cloned().unwrap_or(Value::Null);
                format!(
                    "{}: {verb} consent for \"{purpose}\" on {on} (text version {}, recorded from {}/{})",
                    when(r.at),
                    str_of(&d, "text_version").unwrap_or("not given"),
                    str_of(&event, "source").unwrap_or("?"),
                    str_of(&event, "external_id").unwrap_or("?")
                )
            }
            "staff.case_cancelled" => format!(
                "{}: {} cancelled the case {} ({}): \"{}\"; {} queued notices withdrawn",
                when(r.at),
                str_of(&d, "by").unwrap_or("staff"),
                str_of(&d, "case_id").unwrap_or("?"),
                str_of(&d, "life_situation").unwrap_or("?"),
                str_of(&d, "reason").unwrap_or(""),
                d.get("withdrawn").and_then(Value::as_i64).unwrap_or(0)
            ),
            other => format!("{}: {other}", when(r.at)),
        };
        other.push(line);
    }
    Ok(SubjectExplanation { subject: code, notices, other })
}

/// The words for one notice from its row and its audit records.
fn explain(n: &NoticeDetail, records: &[Sealed], rules: Option<&RuleSet>, shown: &Shown) -> Explanation {
    let recs: Vec<(&Sealed, Value)> = records
        .iter()
        .map(|r| (r, serde_json::from_str::<Value>(&r.record).ok().and_then(|v| v.get("detail").cloned())))
        .map(|(r, d)| (r, d.unwrap_or(Value::Null)))
        .collect();
    let def = rules.and_then(|r| r.get(&n.life_situation, n.version));
    let trace = n.trace.as_ref();
    let via = trace.map_or(Via::Direct, |t| t.via);
    let about = trace.and_then(|t| t.addressed_to.clone());
    let recipient = shown.code(&n.recipient);
    let to_whom = match via {
        Via::Direct | Via::Copy => recipient.clone(),
        v => format!("{} ({recipient})", v.words()),
    };

    let mut lines = Vec::new();
    let last_delivery = recs.iter().rev().find(|(r, _)| r.kind.starts_with("delivery."));
    let headline = match n.state.as_str() {
        "sent" => {
            let ch = n.channel.as_deref().unwrap_or("?");
            let phrase = match ch {
                "eaddress" => "to the e-address of",
                "email" => "by email to",
                "sms" => "by SMS to",
                "letter" => "as a printed letter (client-centre task) to",
                _ => "to",
            };
            format!("Sent on {} {phrase} {to_whom}.", when(n.sent_at.unwrap_or(n.created_at)))
        }
        "suppressed" => format!(
            "Not sent (decided {}): {}.",
            last_delivery.map_or_else(|| "at delivery".to_string(), |(r, _)| format!("on {}", when(r.at))),
            n.last_error.as_deref().unwrap_or("no reason recorded")
        ),
        "cancelled" => format!(
            "Withdrawn before it was sent{}: {}.",
            recs.iter()
                .rev()
                .find(|(r, _)| r.kind == "notice.withdrawn")
                .map_or_else(String::new, |(r, _)| format!(" on {}", when(r.at))),
            n.last_error.as_deref().unwrap_or("no reason recorded")
        ),
        "dead" => format!("Not delivered: {}.", n.last_error.as_deref().unwrap_or("no reason recorded")),
        "shadow" => "Recorded only: its life situation runs in shadow mode and sends nothing.".to_string(),
        "sending" => "Being handed to a channel right now.".to_string(),
        _ => match n.last_error.as_deref() {
            Some(e) if e.starts_with("deferred") => format!("Waiting to be sent to {to_whom}: {e}."),
            Some(e) => format!("Waiting to be sent to {to_whom}, tried again from {}: {e}.", when(n.available_at)),
            None => format!("Waiting to be sent to {to_whom} from {}.", when(n.available_at)),
        },
    };

    // What made it.
    let name = def.and_then(|d| d.name.get("en").or_else(|| d.name.get("lv")).cloned());
    let situation = match &name {
        Some(name) => format!("\"{name}\" ({})", n.life_situation),
        None => n.life_situation.clone(),
    };
    match trace {
        Some(t) => lines.push(format!(
            "Why it was made: the rule `{}` (step {}) of the life situation {situation} version {} made it on {} \
             on event {}/{} ({}, {}).",
            t.rule.trim_end_matches(".rhai"),
            t.step,
            t.version,
            when(t.made_at),
            t.event.source,
            t.event.external_id,
            t.event.event_type,
            day(t.event.occurred_at)
        )),
        None => lines.push(format!(
            "Why it was made: step {} of the life situation {situation} version {} made it on {} \
             (before decision traces were kept, so the event is not recorded).",
            n.step,
            n.version,
            when(n.created_at)
        )),
    }

    // Through whom.
    // Once erased, whom it was about is no longer known; how it went still is.
    let about_shown = about.as_deref().map(|a| shown.code(a));
    let a = about_shown.clone().unwrap_or_else(|| "a person whose data was erased".into());
    let who_line = match via {
        Via::Direct => format!("Recipient: {recipient}, to whom the rule addressed it."),
        Via::Mother | Via::Father | Via::Guardian => format!(
            "Recipient: it is about {a}, a minor, so it went to {} {recipient} instead (minors are reached through \
             their guardians, else their living parents).",
            via.words()
        ),
        Via::Representative => format!(
            "Recipient: {a} named a representative for \"{}\" (mandate), so it went to the representative {recipient}.",
            n.purpose
        ),
        Via::Copy => {
            format!("Recipient: {recipient} named a representative and asked for a copy; this is their copy.")
        }
        Via::AssistedRepresentative => {
            format!("Recipient: {a} is an assisted person; it went to their declared representative {recipient}.")
        }
        Via::Officer => format!(
            "Recipient: the company {a} has no active e-address account, so it went to its officer {recipient}."
        ),
    };
    lines.push(who_line);
    if let Some(t) = trace
        && !t.mandates.is_empty()
    {
        let m: Vec<String> = t
            .mandates
            .iter()
            .map(|m| {
                format!(
                    "{} for {}{}",
                    shown.code(&m.representative),
                    m.purposes.as_ref().map_or("every purpose".to_string(), |p| p.join(", ")),
                    if m.copy { ", with a copy to the person" } else { "" }
                )
            })
            .collect();
        lines.push(format!("Mandates consulted: {}.", m.join("; ")));
    }

    // Purpose and basis.
    let mode = def.and_then(|d| d.purposes.iter().find(|p| p.id == n.purpose)).map(|p| p.mode);
    match def {
        Some(d) => lines.push(format!(
            "Purpose \"{}\" ({}); owner: {}; legal basis: {}.",
            n.purpose,
            match mode {
                Some(ConsentMode::OptIn) => "opt-in: needs the person's grant",
                Some(ConsentMode::OptOut) => "opt-out: sent unless the person refused",
                None => "consent mode not declared",
            },
            d.owner,
            d.legal_basis
        )),
        None => lines.push(format!(
            "Purpose \"{}\" (the definition of {} version {} is not loaded here, so its legal basis is not shown).",
            n.purpose, n.life_situation, n.version
        )),
    }

    // Consent, as delivery consulted it last.
    if let Some((_, d)) = last_delivery {
        let consents = d.get("consents").and_then(Value::as_array).cloned().unwrap_or_default();
        if consents.is_empty() {
            lines.push(format!(
                "Consent: the recipient has no consent record for \"{}\"{}.",
                n.purpose,
                match mode {
                    Some(ConsentMode::OptIn) => ", and the purpose needs a grant",
                    Some(ConsentMode::OptOut) => "; the purpose is opt-out, so none is needed",
                    None => "",
                }
            ));
        } else {
            let said: Vec<String> = consents
                .iter()
                .map(|c| {
                    format!(
                        "{} on {} on {} ({}, text version {})",
                        if c.get("granted").and_then(Value::as_bool).unwrap_or(false) { "granted" } else { "refused" },
                        str_of(c, "channel").map_or("every channel", channel_words),
                        c.get("at").and_then(Value::as_i64).map(day).unwrap_or_default(),
                        str_of(c, "source").unwrap_or("?"),
                        str_of(c, "text_version").unwrap_or("not given")
                    )
                })
                .collect();
            lines.push(format!("Consent records consulted for \"{}\": {}.", n.purpose, said.join("; ")));
        }
    }

    // What delivery did, attempt by attempt.
    let mut timeline = Vec::new();
    for (r, d) in &recs {
        let ch = str_of(d, "channel");
        let error = str_of(d, "error").map(mask_codes_in);
        let why: Vec<String> = d
            .get("why")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(skip_words)
            .collect();
        let considered = {
            let mut c = why.clone();
            if let Some(ch) = ch
                && matches!(r.kind.as_str(), "delivery.sent" | "delivery.retry" | "delivery.deferred" | "delivery.dead")
            {
                c.push(format!("{ch} taken"));
            }
            if c.is_empty() { String::new() } else { format!(" Channels considered: {}.", c.join("; ")) }
        };
        let what = match r.kind.as_str() {
            "notice.created" => None,
            "delivery.sent" => Some(format!("sent by {}.{considered}", channel_words(ch.unwrap_or("?")))),
            "delivery.retry" => Some(format!(
                "{} failed for now ({}); it will be tried again.{considered}",
                channel_words(ch.unwrap_or("?")),
                error.as_deref().unwrap_or("no detail")
            )),
            "delivery.dead" => Some(format!("given up: {}.{considered}", error.as_deref().unwrap_or("no detail"))),
            "delivery.deferred" => Some(format!("{}.{considered}", error.as_deref().unwrap_or("deferred"))),
            "delivery.unreachable" => Some(format!(
                "{} does not reach the recipient ({}); the next channel is tried.",
                channel_words(ch.unwrap_or("?")),
                error.as_deref().unwrap_or("no detail")
            )),
            // The headline has the whole reason; the timeline names each channel.
            "delivery.suppressed" | "delivery.skipped" if !considered.is_empty() => {
                Some(format!("not sent, no channel left.{considered}"))
            }
            "delivery.suppressed" | "delivery.skipped" => {
                Some(format!("not sent: {}.", error.as_deref().unwrap_or("no reason recorded")))
            }
            "notice.withdrawn" => Some(format!("withdrawn: {}.", str_of(d, "reason").unwrap_or("no reason recorded"))),
            other => Some(format!("{other}.")),
        };
        if let Some(what) = what {
            lines.push(format!("{}: {what}", when(r.at)));
        }
        timeline.push(serde_json::json!({
            "at": when(r.at), "kind": r.kind, "channel": ch, "why": d.get("why"), "error": error,
            "chain": r.chain, "seq": r.seq,
        }));
    }
    if let Some(at) = n.erased_at {
        lines.push(format!(
            "Its personal data (contents, the recipient's code, the trace's personal details) was erased on {} at the \
             end of the retention period of \"{}\"; the audit records above keep only pseudonyms.",
            day(at),
            n.purpose
        ));
    }

    let details = serde_json::json!({
        "life_situation": n.life_situation,
        "version": n.version,
        "step": n.step,
        "rule": trace.map(|t| t.rule.clone()),
        "purpose": n.purpose,
        "template": n.template,
        "event": trace.map(|t| serde_json::json!({
            "source": t.event.source, "external_id": t.event.external_id, "type": t.event.event_type,
            "occurred_on": day(t.event.occurred_at),
        })),
        "recipient": recipient,
        "about": about_shown,
        "via": via,
        "channel": n.channel,
        "state": n.state,
        "reason": n.last_error.as_deref().map(mask_codes_in),
        "legal_basis": def.map(|d| d.legal_basis.clone()),
        "owner": def.map(|d| d.owner.clone()),
        "made_at": trace.map(|t| when(t.made_at)),
        "sent_at": n.sent_at.map(when),
        "erased_at": n.erased_at.map(when),
        "timeline": timeline,
    });
    Explanation { notice_id: n.id.clone(), state: n.state.clone(), headline, lines, details }
}

/// `email: no email declared` → `email skipped (no email declared)`.
fn skip_words(why: &str) -> String {
    match why.split_once(": ") {
        Some((ch, reason)) if ["eaddress", "email", "sms", "letter"].contains(&ch) => {
            format!("{ch} skipped ({reason})")
        }
        _ => why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_reasons_read_as_skipped_channels() {
        assert_eq!(
            super::skip_words("eaddress: no active e-address account"),
            "eaddress skipped (no active e-address account)"
        );
        assert_eq!(super::skip_words("assisted: letters instead"), "assisted: letters instead");
    }
}
