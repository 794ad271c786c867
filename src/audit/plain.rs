//! The citizen's "why did I get this?" and "why was it not sent?": the same
//! notice row and audit records that [`super::explain`] reads, reduced to a
//! few facts ([`Reason`]) that the citizen API and page word in the reader's
//! language. A reason holds no personal code, name, rule id or event id —
//! only the life situation, days, channels, counts, and the institution and
//! law of the definition — so no wording of it can leak one.
//!
//! The reasons a notice was withdrawn are free text on the notice row; the
//! engine writes them with the functions here, so the reading below knows
//! their shape.

use chrono::NaiveDate;
use serde_json::Value;

use super::Sealed;
use super::trace::Via;
use crate::consent;
use crate::engine::RuleSet;
use crate::engine::definitions::ConsentMode;
use crate::engine::event_day;
use crate::store::NoticeDetail;

/// The channels a reason may name, as configured.
pub const CHANNELS: [&str; 4] = ["eaddress", "email", "sms", "letter"];

/// A registry fact: its event type and the day it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    /// Event type (`birth.registered`, …).
    pub event_type: String,
    /// The day it happened (Riga).
    pub on: NaiveDate,
}

/// Whom a notice is about, when not the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whom {
    /// The reader's minor child.
    Child,
    /// The reader's ward.
    Ward,
    /// A person who named the reader their representative.
    Mandator,
    /// The reader, who asked for a copy of what their representative gets.
    Copy,
    /// An assisted person the reader represents.
    Assisted,
    /// A company the reader is an officer of.
    Company,
}

/// Why a channel was passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No active e-address account, or no email, phone or postal address on record.
    NoContact,
    /// The reader refused these notices on this channel (or on all) on that day.
    Refused {
        /// The day of the refusal.
        on: NaiveDate,
    },
    /// The purpose needs the reader's permission, and there is none.
    NotAllowed,
    /// The channel answered that it does not reach the reader.
    NotReached,
}

/// Why a notice is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The quiet hours for SMS and email.
    QuietHours,
    /// A public holiday.
    Holiday,
    /// The limit on how many messages of a purpose a person gets.
    Cap,
}

/// One plain fact about a notice; a notice's reasons are read in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Its life situation, and the registry fact it was made on (none before traces were kept).
    Situation {
        /// Life situation id.
        life_situation: String,
        /// The fact.
        event: Option<Fact>,
    },
    /// It is about someone the reader acts for, not the reader.
    About {
        /// Who.
        whom: Whom,
    },
    /// The institution that sends it and the law it sends it under.
    Basis {
        /// The owner institution.
        owner: String,
        /// The legal basis.
        legal_basis: String,
    },
    /// A channel passed over before the one used, or every one for a notice not sent.
    Skipped {
        /// The channel.
        channel: String,
        /// Why.
        why: Skip,
    },
    /// Sending on a channel failed this many times.
    Failed {
        /// The channel.
        channel: String,
        /// How many times.
        times: i64,
    },
    /// It was sent on a channel on a day.
    Sent {
        /// The channel.
        channel: String,
        /// The day.
        on: NaiveDate,
    },
    /// The e-address is the official channel for a notice with legal effect.
    Official,
    /// The reader allowed these notices (an opt-in purpose) on a day.
    Allowed {
        /// The day.
        on: NaiveDate,
    },
    /// These notices are sent unless the reader refuses (an opt-out purpose).
    MayRefuse,
    /// It waits to be sent, held for a reason or just queued.
    Waiting {
        /// The hold, if any.
        hold: Option<Hold>,
    },
    /// Not sent: the reader refused (or withdrew consent to) the purpose on a channel (none: all) on a day.
    Refused {
        /// The channel; none for every channel.
        channel: Option<String>,
        /// The day.
        on: NaiveDate,
        /// Consent given before was withdrawn.
        withdrawn: bool,
    },
    /// Not sent: the purpose needs the reader's permission, and there is none.
    NotAllowed,
    /// Not sent: no channel reaches the reader (the skipped channels say why).
    Unreachable,
    /// Not sent: the person it was for has died.
    RecipientDied,
    /// Withdrawn: the person it is about has died.
    SubjectDied,
    /// Withdrawn: a later registry fact made it unneeded.
    Ended {
        /// The fact.
        event: Fact,
    },
    /// Withdrawn: a member of staff closed the matter.
    ClosedByStaff,
    /// A channel refused it for good.
    Rejected {
        /// The channel.
        channel: String,
    },
    /// Delivery stopped trying; it is on the staff's list of undelivered notices.
    GaveUp,
    /// It could not be prepared (a fault on the state's side).
    Fault,
    /// Recorded only: its service is tested and sends nothing yet.
    Shadow,
    /// Not sent, for a reason not worded here.
    Other,
}

/// The reason a refusal of the whole purpose withdraws queued notices with.
pub(crate) fn refused_reason(purpose: &str, event_type: &str, on: NaiveDate) -> String {
    format!("the recipient refused \"{purpose}\" ({event_type} on {on})")
}

/// The reason a definition's cancel rule ends a case with (`reason` its own words).
pub(crate) fn ended_reason(reason: &str, event_type: &str, on: NaiveDate) -> String {
    format!("{reason} ({event_type} on {on})")
}

/// The reason a member of staff cancels a case with.
pub(crate) fn staff_reason(by: &str, reason: &str) -> String {
    format!("{STAFF_PREFIX}{by}: {reason}")
}

/// The reason a death withdraws the notices to the person who died.
pub(crate) const RECIPIENT_DIED: &str = "the recipient died";
/// The reason a death ends the cases about the person who died.
pub(crate) const SUBJECT_DIED: &str = "the person it is about died";
const STAFF_PREFIX: &str = "cancelled by ";
/// How the reason of a notice withdrawn while a gateway had it begins (the withdrawal's own reason follows).
pub(crate) const IN_FLIGHT: &str = "withdrawn while handed to a gateway, not recalled: ";

/// `… (type on YYYY-MM-DD)` at the end of a reason: the fact it names.
fn fact_at_end(reason: &str) -> Option<Fact> {
    let inner = reason.strip_suffix(')')?;
    let (_, tail) = inner.rsplit_once('(')?;
    let (event_type, day) = tail.split_once(" on ")?;
    let on = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let well_formed =
        !event_type.is_empty() && event_type.bytes().all(|b| b.is_ascii_lowercase() || b"._".contains(&b));
    well_formed.then(|| Fact { event_type: event_type.to_string(), on })
}

/// Why a queued notice was withdrawn, from the reason on its row.
fn withdrawn_because(reason: &str) -> Reason {
    let reason = reason.strip_prefix(IN_FLIGHT).unwrap_or(reason);
    if reason == RECIPIENT_DIED {
        return Reason::RecipientDied;
    }
    if reason == SUBJECT_DIED {
        return Reason::SubjectDied;
    }
    if reason.starts_with(STAFF_PREFIX) {
        return Reason::ClosedByStaff;
    }
    match fact_at_end(reason) {
        Some(f) if reason.starts_with("the recipient refused \"") => {
            Reason::Refused { channel: None, on: f.on, withdrawn: f.event_type == "consent.withdrawn" }
        }
        Some(f) => Reason::Ended { event: f },
        None => Reason::Other,
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn known_channel(ch: &str) -> Option<String> {
    CHANNELS.contains(&ch).then(|| ch.to_string())
}

/// The refusal in `consents` (a delivery record's) that covers `channel` (none: one for every channel).
fn refusal(consents: &[Value], channel: Option<&str>) -> Option<NaiveDate> {
    consents
        .iter()
        .filter(|c| c.get("granted").and_then(Value::as_bool) == Some(false))
        .filter(|c| str_of(c, "channel").is_none() || str_of(c, "channel") == channel)
        .filter_map(|c| c.get("at").and_then(Value::as_i64))
        .max()
        .map(event_day)
}

/// The channels routing passed over, from a delivery record's `why` (channels
/// merely not configured here are the operator's business, not the reader's).
fn skipped(why: &[Value], consents: &[Value]) -> Vec<Reason> {
    let mut out = Vec::new();
    for line in why.iter().filter_map(Value::as_str) {
        let Some((ch, text)) = line.split_once(": ") else { continue };
        let Some(channel) = known_channel(ch) else { continue };
        let why = if text == "not configured" {
            continue;
        } else if text.starts_with("the person refused") {
            match refusal(consents, Some(ch)) {
                Some(on) => Skip::Refused { on },
                None => Skip::NotAllowed,
            }
        } else if text.contains("is opt-in") {
            Skip::NotAllowed
        } else {
            Skip::NoContact
        };
        out.push(Reason::Skipped { channel, why });
    }
    out
}

/// The plain reasons of one notice, from its row, its audit records and its definition.
pub fn reasons(n: &NoticeDetail, records: &[Sealed], rules: Option<&RuleSet>) -> Vec<Reason> {
    let recs: Vec<(&Sealed, Value)> = records
        .iter()
        .map(|r| {
            let d = serde_json::from_str::<Value>(&r.record).ok().and_then(|v| v.get("detail").cloned());
            (r, d.unwrap_or(Value::Null))
        })
        .collect();
    let def = rules.and_then(|r| r.get(&n.life_situation, n.version));
    let trace = n.trace.as_ref();
    let mut out = vec![Reason::Situation {
        life_situation: n.life_situation.clone(),
        event: trace.map(|t| Fact { event_type: t.event.event_type.clone(), on: event_day(t.event.occurred_at) }),
    }];
    let whom = match trace.map(|t| t.via) {
        Some(Via::Mother | Via::Father) => Some(Whom::Child),
        Some(Via::Guardian) => Some(Whom::Ward),
        Some(Via::Representative) => Some(Whom::Mandator),
        Some(Via::Copy) => Some(Whom::Copy),
        Some(Via::AssistedRepresentative) => Some(Whom::Assisted),
        Some(Via::Officer) => Some(Whom::Company),
        Some(Via::Direct) | None => None,
    };
    out.extend(whom.map(|whom| Reason::About { whom }));
    if let Some(d) = def {
        out.push(Reason::Basis { owner: d.owner.clone(), legal_basis: d.legal_basis.clone() });
    }

    let deliveries: Vec<&(&Sealed, Value)> = recs.iter().filter(|(r, _)| r.kind.starts_with("delivery.")).collect();
    let last = deliveries.last().map(|(r, d)| (r.kind.as_str(), d));
    let list = |d: &Value, k: &str| d.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let (why, consents) = last.map_or((Vec::new(), Vec::new()), |(_, d)| (list(d, "why"), list(d, "consents")));
    // Channels that did not reach the reader, then the ones routing passed over last.
    let mut story: Vec<Reason> = deliveries
        .iter()
        .filter(|(r, _)| r.kind == "delivery.unreachable")
        .filter_map(|(_, d)| known_channel(str_of(d, "channel")?))
        .map(|channel| Reason::Skipped { channel, why: Skip::NotReached })
        .collect();
    for s in skipped(&why, &consents) {
        if !story.iter().any(
            |r| matches!((r, &s), (Reason::Skipped { channel: a, .. }, Reason::Skipped { channel: b, .. }) if a == b),
        ) {
            story.push(s);
        }
    }
    let mut failures: Vec<(String, i64)> = Vec::new();
    for (_, d) in deliveries.iter().filter(|(r, _)| r.kind == "delivery.retry") {
        let Some(ch) = str_of(d, "channel").and_then(known_channel) else { continue };
        match failures.iter_mut().find(|(c, _)| *c == ch) {
            Some(f) => f.1 += 1,
            None => failures.push((ch, 1)),
        }
    }
    let reason = n.last_error.as_deref().unwrap_or("");
    let mode = def.and_then(|d| d.purposes.iter().find(|p| p.id == n.purpose)).map(|p| p.mode);

    match n.state.as_str() {
        "sent" => {
            out.extend(story);
            out.extend(failures.into_iter().map(|(channel, times)| Reason::Failed { channel, times }));
            let channel = n.channel.as_deref().and_then(known_channel);
            if let Some(channel) = channel.clone() {
                out.push(Reason::Sent { channel, on: event_day(n.sent_at.unwrap_or(n.created_at)) });
            }
            if channel.as_deref() == Some("eaddress") && trace.is_some_and(|t| t.legal_effect) {
                out.push(Reason::Official);
            }
            match mode {
                Some(ConsentMode::OptIn) => {
                    let granted = consents
                        .iter()
                        .filter(|c| c.get("granted").and_then(Value::as_bool) == Some(true))
                        .filter(|c| str_of(c, "channel").is_none() || str_of(c, "channel") == channel.as_deref())
                        .filter_map(|c| c.get("at").and_then(Value::as_i64))
                        .max();
                    out.extend(granted.map(|at| Reason::Allowed { on: event_day(at) }));
                }
                Some(ConsentMode::OptOut) => out.push(Reason::MayRefuse),
                None => {}
            }
        }
        "pending" | "sending" => {
            let hold = match reason {
                r if r.starts_with("deferred: quiet hours") => Some(Hold::QuietHours),
                r if r.starts_with("deferred: public holiday") => Some(Hold::Holiday),
                r if r.starts_with("deferred: frequency cap") => Some(Hold::Cap),
                _ => None,
            };
            out.extend(failures.into_iter().map(|(channel, times)| Reason::Failed { channel, times }));
            out.push(Reason::Waiting { hold });
        }
        "suppressed" => {
            if reason.starts_with(consent::RECIPIENT_DIED) {
                out.push(Reason::RecipientDied);
            } else if reason.starts_with(consent::NO_CHANNEL_CONSENTED) {
                // Every usable channel was refused: say the refusals, once each.
                let mut said: Vec<Reason> = Vec::new();
                for s in &story {
                    let r = match s {
                        Reason::Skipped { channel, why: Skip::Refused { .. } } => {
                            match (refusal(&consents, None), refusal(&consents, Some(channel.as_str()))) {
                                (Some(on), _) => Reason::Refused { channel: None, on, withdrawn: false },
                                (None, Some(on)) => {
                                    Reason::Refused { channel: Some(channel.clone()), on, withdrawn: false }
                                }
                                (None, None) => Reason::NotAllowed,
                            }
                        }
                        Reason::Skipped { why: Skip::NotAllowed, .. } => Reason::NotAllowed,
                        _ => continue,
                    };
                    if !said.contains(&r) {
                        said.push(r);
                    }
                }
                if said.is_empty() {
                    said.push(Reason::NotAllowed);
                }
                out.extend(said);
            } else if reason.starts_with(consent::NO_CHANNEL_REACHES) {
                out.push(Reason::Unreachable);
                out.extend(story);
            } else {
                out.push(Reason::Other);
            }
        }
        "cancelled" => out.push(withdrawn_because(reason)),
        "dead" => {
            let channel = last.and_then(|(_, d)| str_of(d, "channel")).and_then(known_channel);
            let gave_up = reason.strip_prefix("gave up after ").and_then(|r| r.split_once(' ')?.0.parse::<i64>().ok());
            match (channel, gave_up) {
                (Some(channel), Some(times)) => out.push(Reason::Failed { channel, times }),
                (Some(channel), None) => {
                    out.extend(failures.into_iter().map(|(channel, times)| Reason::Failed { channel, times }));
                    out.push(Reason::Rejected { channel });
                }
                (None, _) => out.push(Reason::Fault),
            }
            out.push(Reason::GaveUp);
        }
        "shadow" => out.push(Reason::Shadow),
        _ => out.push(Reason::Other),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_withdrawal_reasons_the_engine_writes_read_back() {
        let on = day("2026-03-03");
        assert_eq!(
            withdrawn_because(&refused_reason("birth", "consent.refused", on)),
            Reason::Refused { channel: None, on, withdrawn: false }
        );
        assert_eq!(
            withdrawn_because(&refused_reason("birth", "consent.withdrawn", on)),
            Reason::Refused { channel: None, on, withdrawn: true }
        );
        let ended = ended_reason("a new document of the same kind was issued", "document.issued", on);
        assert_eq!(
            withdrawn_because(&ended),
            Reason::Ended { event: Fact { event_type: "document.issued".into(), on } }
        );
        assert_eq!(
            withdrawn_because(&format!("{IN_FLIGHT}{ended}")),
            Reason::Ended { event: Fact { event_type: "document.issued".into(), on } }
        );
        assert_eq!(withdrawn_because(RECIPIENT_DIED), Reason::RecipientDied);
        assert_eq!(withdrawn_because(SUBJECT_DIED), Reason::SubjectDied);
        assert_eq!(withdrawn_because(&staff_reason("K. Ozola", "moved abroad (010190-10003)")), Reason::ClosedByStaff);
        assert_eq!(withdrawn_because("something else (odd)"), Reason::Other);
    }
}
