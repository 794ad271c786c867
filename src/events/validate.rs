//! Validation of one registry change record (CONTRACTS.md §1) into a normalized registry event.
//!
//! The event-type table of the contract lives here as data (`EVENT_TYPES`); one generic walker
//! checks every type against it, so adding a type is one table row. A record with any invalid
//! field is rejected whole, with an error naming the field by path (`data.mother`,
//! `data.purposes[1]`) and never repeating a value that may be personal data.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::events::codes::{self, CodeError, SubjectKind};
use crate::mask::mask_code;

/// A change as a feed or an agency sends it, for code that builds or carries records before validation.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RawChange {
    /// Empty when the record came without one; the connector's own source then applies.
    #[serde(default)]
    pub source: String,
    /// Unique within the source, so a replayed change is recognised as the same one.
    pub id: String,
    /// One of [`known_event_types`].
    pub r#type: String,
    /// Personal code or registration number, in whichever spelling the registry used.
    pub subject: String,
    /// RFC 3339 with an offset, as the registry wrote it.
    pub occurred_at: String,
    /// Per-type fields; see the table in CONTRACTS.md §1.
    #[serde(default)]
    pub data: Value,
}

impl RawChange {
    /// The JSON shape [`validate_change`] reads, so a typed record is checked exactly like a parsed one.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if !self.source.is_empty() {
            m.insert("source".into(), Value::String(self.source.clone()));
        }
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("type".into(), Value::String(self.r#type.clone()));
        m.insert("subject".into(), Value::String(self.subject.clone()));
        m.insert("occurred_at".into(), Value::String(self.occurred_at.clone()));
        m.insert("data".into(), self.data.clone());
        Value::Object(m)
    }
}

impl fmt::Debug for RawChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output reaches logs; the subject is masked and data (names, addresses) left out.
        f.debug_struct("RawChange")
            .field("source", &self.source)
            .field("id", &self.id)
            .field("type", &self.r#type)
            .field("subject", &mask_code(&self.subject))
            .field("occurred_at", &self.occurred_at)
            .finish_non_exhaustive()
    }
}

/// A change that passed validation, with every code in its canonical spelling, ready for the event log.
#[derive(Clone, PartialEq, Serialize)]
pub struct ValidEvent {
    /// The registry or agency it came from; with `external_id` the deduplication key.
    pub source: String,
    /// The change's `id`, unique within the source.
    pub external_id: String,
    /// One of [`known_event_types`].
    pub event_type: String,
    /// Canonical code (`DDMMYY-NNNNN` or 11-digit regno), so one subject has one key.
    pub subject: String,
    /// Whether `subject` is a person or a company, decided by the code's format.
    pub subject_kind: SubjectKind,
    /// When it happened in the registry, keeping the sender's offset for the audit trail.
    pub occurred_at: DateTime<FixedOffset>,
    /// The record's data object with code fields canonicalized; unknown fields are kept.
    pub data: Value,
}

impl fmt::Debug for ValidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output reaches logs; the subject is masked and data (names, addresses) left out.
        f.debug_struct("ValidEvent")
            .field("source", &self.source)
            .field("external_id", &self.external_id)
            .field("event_type", &self.event_type)
            .field("subject", &mask_code(&self.subject))
            .field("subject_kind", &self.subject_kind)
            .field("occurred_at", &self.occurred_at)
            .finish_non_exhaustive()
    }
}

/// Why a record was rejected: the field by path and what is wrong, safe to log and to quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Path of the offending field, e.g. `occurred_at`, `data.mother`, `data.purposes[1]`.
    pub field: String,
    /// What is wrong or what was expected, never the offending personal data itself.
    pub message: String,
}

/// Builds an error; the message must not contain the offending value when it may be personal data.
fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError { field: field.into(), message: message.into() }
}

/// What a data field holds, and so how it is checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A personal code, a registration number or either, as the rule says; canonicalized.
    Code(SubjectRule),
    /// `YYYY-MM-DD`, a real date.
    Date,
    /// A non-empty string.
    Text,
    /// One of the listed strings.
    OneOf(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
    /// A purpose id some life situation declares.
    Purpose,
    /// A non-empty list of declared purpose ids.
    Purposes,
    /// A plausible email address.
    Email,
    /// An E.164 phone number.
    Phone,
    /// The id of an earlier change of the same source.
    ChangeRef,
    /// A non-empty list of distinct channels, in the person's order.
    Channels,
    /// A Riga-time window `HH:MM-HH:MM`, or `none`.
    QuietHours,
}

/// Which codes a type accepts as its `subject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubjectRule {
    /// Population register and portal types are about people.
    Person,
    /// Enterprise register types are about companies.
    Company,
    /// E-addresses, applications, benefits and annulments exist for both.
    Either,
}

/// One data field of an event type.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    kind: Kind,
    /// "May be null" in the contract; such a field may also be absent.
    nullable: bool,
}

/// One row of the contract's event-type table.
#[derive(Debug, Clone, Copy)]
struct EventSpec {
    event_type: &'static str,
    subject: SubjectRule,
    fields: &'static [Field],
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, nullable: false }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, nullable: true }
}

const fn spec(event_type: &'static str, subject: SubjectRule, fields: &'static [Field]) -> EventSpec {
    EventSpec { event_type, subject, fields }
}

const SEX: &[&str] = &["F", "M"];
const DOCUMENT: &[&str] = &["passport", "eid"];
const LANGUAGE: &[&str] = &["lv", "en", "ru"];
const CHANNEL: &[&str] = &["eaddress", "email", "sms"];

use Kind as K;
use SubjectRule as S;

const PERSON_CODE: Kind = K::Code(S::Person);
const ANY_CODE: Kind = K::Code(S::Either);

const BIRTH: &[Field] = &[
    req("given_name", K::Text),
    req("family_name", K::Text),
    req("birth_date", K::Date),
    req("sex", K::OneOf(SEX)),
    opt("mother", PERSON_CODE),
    opt("father", PERSON_CODE),
    req("municipality", K::Text),
    req("address", K::Text),
];
const DEATH: &[Field] = &[req("death_date", K::Date)];
const MARRIAGE: &[Field] = &[req("spouse", PERSON_CODE), req("date", K::Date)];
const ADDRESS: &[Field] = &[req("address", K::Text), req("municipality", K::Text), req("since", K::Date)];
const DOC_ISSUED: &[Field] =
    &[req("document", K::OneOf(DOCUMENT)), req("number", K::Text), req("issued", K::Date), req("expires", K::Date)];
const DOC_INVALIDATED: &[Field] =
    &[req("document", K::OneOf(DOCUMENT)), req("number", K::Text), req("reason", K::Text)];
const GUARDIANSHIP: &[Field] = &[req("guardian", PERSON_CODE)];
const COMPANY_REGISTERED: &[Field] =
    &[req("name", K::Text), req("legal_form", K::Text), req("registered", K::Date), req("address", K::Text)];
const LIQUIDATION: &[Field] = &[req("liquidator", ANY_CODE), req("claims_deadline", K::Date)];
const INSOLVENCY: &[Field] = &[req("administrator", ANY_CODE), req("date", K::Date)];
const TERMINATED: &[Field] = &[req("terminated", K::Date)];
const RENAMED: &[Field] = &[req("name", K::Text), req("previous", K::Text)];
const ADDRESS_CHANGED: &[Field] = &[req("address", K::Text), req("previous", K::Text)];
const OFFICER: &[Field] = &[req("officer", PERSON_CODE), req("role", K::Text)];
const CONTACT: &[Field] = &[opt("email", K::Email), opt("phone", K::Phone), req("language", K::OneOf(LANGUAGE))];
const CONSENT: &[Field] =
    &[req("purpose", K::Purpose), opt("channel", K::OneOf(CHANNEL)), opt("text_version", K::Text)];
const MANDATE: &[Field] = &[req("representative", PERSON_CODE), opt("purposes", K::Purposes), req("copy", K::Bool)];
const ASSISTANCE: &[Field] = &[opt("representative", PERSON_CODE)];
const NO_FIELDS: &[Field] = &[];
const APPLICATION: &[Field] = &[req("service_id", K::Text), opt("draft_ref", K::Text)];
const BENEFIT: &[Field] = &[req("service_id", K::Text), req("decision_ref", K::Text)];
const ANNULLED: &[Field] = &[req("annuls", K::ChangeRef)];
const PREFERENCES: &[Field] = &[opt("channels", K::Channels), opt("quiet_hours", K::QuietHours)];
const ALL_CHANNELS: &[&str] = &["eaddress", "email", "sms", "letter"];

/// The event-type table of CONTRACTS.md §1, one row per type.
const EVENT_TYPES: &[EventSpec] = &[
    // population register (pmlp)
    spec("birth.registered", S::Person, BIRTH),
    spec("death.registered", S::Person, DEATH),
    spec("marriage.registered", S::Person, MARRIAGE),
    spec("divorce.registered", S::Person, MARRIAGE),
    spec("address.declared", S::Person, ADDRESS),
    spec("document.issued", S::Person, DOC_ISSUED),
    spec("document.invalidated", S::Person, DOC_INVALIDATED),
    spec("guardianship.established", S::Person, GUARDIANSHIP),
    spec("guardianship.ended", S::Person, GUARDIANSHIP),
    // enterprise register (ur)
    spec("company.registered", S::Company, COMPANY_REGISTERED),
    spec("company.liquidation_started", S::Company, LIQUIDATION),
    spec("company.insolvency_declared", S::Company, INSOLVENCY),
    spec("company.terminated", S::Company, TERMINATED),
    spec("company.renamed", S::Company, RENAMED),
    spec("company.address_changed", S::Company, ADDRESS_CHANGED),
    spec("company.officer_appointed", S::Company, OFFICER),
    spec("company.officer_removed", S::Company, OFFICER),
    // state portal (portal)
    spec("contact.declared", S::Person, CONTACT),
    spec("consent.granted", S::Person, CONSENT),
    spec("consent.refused", S::Person, CONSENT),
    spec("consent.withdrawn", S::Person, CONSENT),
    spec("mandate.granted", S::Person, MANDATE),
    spec("mandate.revoked", S::Person, MANDATE),
    spec("assistance.declared", S::Person, ASSISTANCE),
    spec("assistance.ended", S::Person, ASSISTANCE),
    // The engine's own, from the citizen API: not in the portal's feed. A
    // null field goes back to the defaults (the life situation's channel
    // order, the configured quiet hours).
    spec("preferences.declared", S::Person, PREFERENCES),
    // e-address system (eadrese)
    spec("eaddress.activated", S::Either, NO_FIELDS),
    spec("eaddress.deactivated", S::Either, NO_FIELDS),
    // any agency
    spec("application.submitted", S::Either, APPLICATION),
    spec("benefit.granted", S::Either, BENEFIT),
    // The engine's own, from the citizen API: the person said no to a
    // prefilled draft, so the reminders about it stop as a submission's do.
    spec("application.declined", S::Either, APPLICATION),
    // any source
    spec("change.annulled", S::Either, ANNULLED),
];

/// Every event type the contract defines, for configuration checks and API key scopes.
pub fn known_event_types() -> impl Iterator<Item = &'static str> {
    EVENT_TYPES.iter().map(|s| s.event_type)
}

/// Checks one parsed change record against CONTRACTS.md §1 and normalizes it; the first bad field wins.
pub fn validate_change(
    default_source: Option<&str>,
    record: &Value,
    purposes: &dyn Fn(&str) -> bool,
) -> Result<ValidEvent, ValidationError> {
    let obj = record.as_object().ok_or_else(|| err("record", "expected a JSON object"))?;

    let source = match obj.get("source") {
        None | Some(Value::Null) => match default_source.map(str::trim) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => return Err(err("source", "required")),
        },
        Some(v) => text(v, "source")?.to_owned(),
    };
    let id = required_text(obj, "id")?;
    let event_type = required_text(obj, "type")?;
    let spec =
        EVENT_TYPES.iter().find(|s| s.event_type == event_type).ok_or_else(|| err("type", "unknown event type"))?;

    let subject = match obj.get("subject") {
        None => return Err(err("subject", "required")),
        Some(v) => text(v, "subject")?,
    };
    let (subject_kind, subject) = check_subject(spec.subject, subject, "subject")?;

    let occurred_at = parse_time(required_text(obj, "occurred_at")?, "occurred_at")?;

    let mut data = match obj.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(err("data", "expected a JSON object")),
    };
    let ctx = Context { id, purposes };
    for field in spec.fields {
        let path = format!("data.{}", field.name);
        match data.get(field.name) {
            None | Some(Value::Null) if field.nullable => {}
            None => return Err(err(path, "required")),
            Some(Value::Null) => return Err(err(path, "must not be null")),
            Some(v) => {
                if let Some(canonical) = check_value(field, v, &path, &ctx)? {
                    data.insert(field.name.to_owned(), canonical);
                }
            }
        }
    }

    Ok(ValidEvent {
        source,
        external_id: id.to_owned(),
        event_type: spec.event_type.to_owned(),
        subject,
        subject_kind,
        occurred_at,
        data: Value::Object(data),
    })
}

/// What field checks need to know about the record around them.
struct Context<'a> {
    id: &'a str,
    purposes: &'a dyn Fn(&str) -> bool,
}

/// A present, non-empty top-level string field.
fn required_text<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, ValidationError> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(err(name, "required")),
        Some(v) => text(v, name),
    }
}

/// A non-empty string; whitespace alone counts as empty.
fn text<'a>(v: &'a Value, path: &str) -> Result<&'a str, ValidationError> {
    let s = v.as_str().ok_or_else(|| err(path, "expected a string"))?;
    if s.trim().is_empty() {
        return Err(err(path, "must not be empty"));
    }
    Ok(s)
}

/// Checks one data value; returns its canonical replacement when the spelling changes.
fn check_value(field: &Field, v: &Value, path: &str, ctx: &Context<'_>) -> Result<Option<Value>, ValidationError> {
    match field.kind {
        K::Code(rule) => {
            let (_, canonical) = check_subject(rule, text(v, path)?, path)?;
            Ok(Some(Value::String(canonical)))
        }
        K::Date => parse_date(text(v, path)?, path).map(|_| None),
        K::Text => text(v, path).map(|_| None),
        K::OneOf(values) => match v.as_str() {
            Some(s) if values.contains(&s) => Ok(None),
            _ => {
                let null = if field.nullable { ", or null" } else { "" };
                Err(err(path, format!("expected one of {}{null}", values.join(", "))))
            }
        },
        K::Bool => match v {
            Value::Bool(_) => Ok(None),
            _ => Err(err(path, "expected true or false")),
        },
        K::Purpose => check_purpose(v, path, ctx).map(|_| None),
        K::Channels => {
            let list = v.as_array().ok_or_else(|| err(path, "expected a list of channels, or null"))?;
            if list.is_empty() {
                return Err(err(path, "empty list; use null for the default order"));
            }
            for (i, item) in list.iter().enumerate() {
                match item.as_str() {
                    Some(c) if ALL_CHANNELS.contains(&c) => {
                        if list[..i].contains(item) {
                            return Err(err(format!("{path}[{i}]"), format!("{c} is listed twice")));
                        }
                    }
                    _ => {
                        return Err(err(
                            format!("{path}[{i}]"),
                            format!("expected one of {}", ALL_CHANNELS.join(", ")),
                        ));
                    }
                }
            }
            Ok(None)
        }
        K::QuietHours => crate::consent::QuietHours::parse(text(v, path)?).map(|_| None).map_err(|e| err(path, e)),
        K::Purposes => {
            let list =
                v.as_array().ok_or_else(|| err(path, "expected a list of purpose ids, or null for every purpose"))?;
            if list.is_empty() {
                return Err(err(path, "empty list; use null for every purpose"));
            }
            for (i, item) in list.iter().enumerate() {
                check_purpose(item, &format!("{path}[{i}]"), ctx)?;
            }
            Ok(None)
        }
        K::Email => {
            if is_email(text(v, path)?) {
                Ok(None)
            } else {
                Err(err(path, "not an email address"))
            }
        }
        K::Phone => {
            if is_e164(text(v, path)?) {
                Ok(None)
            } else {
                Err(err(path, "expected E.164: + and 8 to 15 digits"))
            }
        }
        K::ChangeRef => {
            if text(v, path)? == ctx.id {
                Err(err(path, "a change cannot annul itself"))
            } else {
                Ok(None)
            }
        }
    }
}

/// A purpose id that some life situation declares; consent for anything else has no meaning.
fn check_purpose(v: &Value, path: &str, ctx: &Context<'_>) -> Result<(), ValidationError> {
    if (ctx.purposes)(text(v, path)?) { Ok(()) } else { Err(err(path, "not a purpose any life situation declares")) }
}

/// Validates a code as the rule allows and names the wrong kind when the code is the other one.
fn check_subject(rule: SubjectRule, s: &str, path: &str) -> Result<(SubjectKind, String), ValidationError> {
    let what = |e: CodeError, expected: &str| err(path, format!("invalid {expected}: {e}"));
    match rule {
        S::Person => {
            codes::normalize_personal_code(s).map(|c| (SubjectKind::Person, c)).map_err(
                |e| match codes::normalize_regno(s) {
                    Ok(_) => err(path, "expected a personal code, got a registration number"),
                    Err(_) => what(e, "personal code"),
                },
            )
        }
        S::Company => codes::normalize_regno(s).map(|c| (SubjectKind::Company, c)).map_err(|e| {
            match codes::normalize_personal_code(s) {
                Ok(_) => err(path, "expected a registration number, got a personal code"),
                Err(_) => what(e, "registration number"),
            }
        }),
        S::Either => codes::normalize_subject(s).map_err(|e| what(e, "personal code or registration number")),
    }
}

/// `YYYY-MM-DD` exactly (chrono alone would also take `2026-1-5` or a signed year).
fn parse_date(s: &str, path: &str) -> Result<NaiveDate, ValidationError> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    if !shaped {
        return Err(err(path, "expected a date YYYY-MM-DD"));
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let date = match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => i32::try_from(y).ok().and_then(|y| NaiveDate::from_ymd_opt(y, m, d)),
        _ => None,
    };
    date.ok_or_else(|| err(path, "not a real date"))
}

/// RFC 3339 with an offset, since a time without one is ambiguous by up to a day.
fn parse_time(s: &str, path: &str) -> Result<DateTime<FixedOffset>, ValidationError> {
    use chrono::format::ParseErrorKind;
    DateTime::parse_from_rfc3339(s).map_err(|e| match e.kind() {
        ParseErrorKind::OutOfRange | ParseErrorKind::Impossible => err(path, "not a real date and time"),
        _ => err(path, "expected an RFC 3339 time with an offset, e.g. 2026-11-20T10:15:00+02:00"),
    })
}

/// One `@`, non-empty parts, a dot inside the domain, no spaces: a shape check, not deliverability.
fn is_email(s: &str) -> bool {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let mut parts = s.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) => {
            !local.is_empty()
                && domain.split_once('.').is_some_and(|(head, _)| !head.is_empty())
                && !domain.ends_with('.')
        }
        _ => false,
    }
}

/// `+` and 8–15 digits, the shape every SMS gateway accepts (CONTRACTS.md §5).
fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PERSON: &str = "161175-19997";
    const PERSON_BARE: &str = "16117519997";
    const PERSON_NEW: &str = "321234-56789";
    const REGNO: &str = "40003245752";

    fn declared(p: &str) -> bool {
        matches!(p, "birth" | "death" | "passport_expiry" | "company_liquidation")
    }

    fn sample_value(kind: Kind) -> Value {
        match kind {
            K::Code(S::Person) => json!(PERSON_NEW),
            K::Code(S::Company) => json!(REGNO),
            K::Code(S::Either) => json!(PERSON),
            K::Date => json!("2026-11-20"),
            K::Text => json!("x"),
            K::OneOf(values) => json!(values[0]),
            K::Bool => json!(true),
            K::Purpose => json!("birth"),
            K::Purposes => json!(["birth", "death"]),
            K::Email => json!("janis@example.lv"),
            K::Phone => json!("+37120000000"),
            K::ChangeRef => json!("pmlp-000000001"),
            K::Channels => json!(["sms", "email"]),
            K::QuietHours => json!("22:00-07:30"),
        }
    }

    fn sample(spec: &EventSpec) -> Value {
        let data: Map<String, Value> = spec.fields.iter().map(|f| (f.name.to_owned(), sample_value(f.kind))).collect();
        let subject = match spec.subject {
            S::Company => REGNO,
            S::Person | S::Either => PERSON,
        };
        json!({
            "source": "test",
            "id": "test-000001042",
            "type": spec.event_type,
            "subject": subject,
            "occurred_at": "2026-11-20T10:15:00+02:00",
            "data": data,
        })
    }

    fn check(record: &Value) -> Result<ValidEvent, ValidationError> {
        validate_change(None, record, &declared)
    }

    fn spec_of(t: &str) -> &'static EventSpec {
        EVENT_TYPES.iter().find(|s| s.event_type == t).expect("type in table")
    }

    /// The sample of `t` with `data.field` set to `value`.
    fn with_data(t: &str, field: &str, value: Value) -> Value {
        let mut r = sample(spec_of(t));
        r["data"][field] = value;
        r
    }

    fn field_error(r: Result<ValidEvent, ValidationError>) -> String {
        match r {
            Ok(e) => panic!("accepted: {e:?}"),
            Err(e) => e.field,
        }
    }

    #[test]
    fn table_has_every_contract_type_once() {
        let types: Vec<_> = known_event_types().collect();
        // CONTRACTS.md §1's 30, and the engine's own preferences.declared and application.declined.
        assert_eq!(types.len(), 32);
        assert!(types.contains(&"preferences.declared"));
        assert!(types.contains(&"application.declined"));
        let unique: std::collections::HashSet<_> = types.iter().collect();
        assert_eq!(unique.len(), types.len());
        for spec in EVENT_TYPES {
            let names: std::collections::HashSet<_> = spec.fields.iter().map(|f| f.name).collect();
            assert_eq!(names.len(), spec.fields.len(), "{}", spec.event_type);
        }
    }

    #[test]
    fn every_type_accepts_its_sample_and_needs_each_required_field() {
        for spec in EVENT_TYPES {
            let good = sample(spec);
            let ev = check(&good).unwrap_or_else(|e| panic!("{}: {e}", spec.event_type));
            assert_eq!(ev.event_type, spec.event_type);
            for field in spec.fields {
                let mut missing = good.clone();
                if let Some(data) = missing["data"].as_object_mut() {
                    data.remove(field.name);
                }
                let mut null = good.clone();
                null["data"][field.name] = Value::Null;
                let path = format!("data.{}", field.name);
                if field.nullable {
                    assert!(check(&missing).is_ok(), "{} without {path}", spec.event_type);
                    assert!(check(&null).is_ok(), "{} with null {path}", spec.event_type);
                } else {
                    assert_eq!(check(&missing).err(), Some(err(path.clone(), "required")), "{}", spec.event_type);
                    assert_eq!(check(&null).err(), Some(err(path, "must not be null")), "{}", spec.event_type);
                }
            }
        }
    }

    #[test]
    fn every_top_level_field_is_required() {
        let good = sample(spec_of("death.registered"));
        for field in ["source", "id", "type", "subject", "occurred_at"] {
            let mut r = good.clone();
            if let Some(m) = r.as_object_mut() {
                m.remove(field);
            }
            assert_eq!(check(&r).err().map(|e| e.field), Some(field.to_owned()));
            r[field] = json!("");
            assert_eq!(check(&r).err().map(|e| e.field), Some(field.to_owned()));
            r[field] = json!(7);
            assert_eq!(check(&r).err().map(|e| e.field), Some(field.to_owned()));
        }
        assert_eq!(field_error(check(&json!([1, 2]))), "record");
    }

    #[test]
    fn source_falls_back_to_the_connectors_own() {
        let mut r = sample(spec_of("death.registered"));
        if let Some(m) = r.as_object_mut() {
            m.remove("source");
        }
        let ev = validate_change(Some("pmlp"), &r, &declared).expect("valid");
        assert_eq!(ev.source, "pmlp");
        r["source"] = json!("portal");
        let ev = validate_change(Some("pmlp"), &r, &declared).expect("valid");
        assert_eq!(ev.source, "portal");
        assert!(validate_change(Some(" "), &json!({}), &declared).is_err());
    }

    #[test]
    fn unknown_type_is_an_error_on_type() {
        let mut r = sample(spec_of("death.registered"));
        r["type"] = json!("death.regsitered");
        assert_eq!(check(&r).err(), Some(err("type", "unknown event type")));
    }

    #[test]
    fn data_must_be_an_object_but_may_be_absent_when_nothing_is_required() {
        let mut r = sample(spec_of("eaddress.activated"));
        if let Some(m) = r.as_object_mut() {
            m.remove("data");
        }
        assert_eq!(check(&r).map(|e| e.data), Ok(json!({})));
        r["data"] = json!("x");
        assert_eq!(field_error(check(&r)), "data");
        let mut r = sample(spec_of("death.registered"));
        r["data"] = Value::Null;
        assert_eq!(field_error(check(&r)), "data.death_date");
    }

    #[test]
    fn subject_kind_follows_the_type() {
        let mut r = sample(spec_of("company.terminated"));
        r["subject"] = json!(PERSON);
        let e = check(&r).expect_err("rejected");
        assert_eq!(e.field, "subject");
        assert_eq!(e.message, "expected a registration number, got a personal code");

        let mut r = sample(spec_of("death.registered"));
        r["subject"] = json!(REGNO);
        let e = check(&r).expect_err("rejected");
        assert_eq!(e.message, "expected a personal code, got a registration number");

        for t in ["eaddress.activated", "application.submitted", "benefit.granted", "change.annulled"] {
            let mut r = sample(spec_of(t));
            r["subject"] = json!(REGNO);
            assert_eq!(check(&r).map(|e| e.subject_kind), Ok(SubjectKind::Company), "{t}");
            r["subject"] = json!(PERSON_BARE);
            let ev = check(&r).expect("person accepted");
            assert_eq!((ev.subject_kind, ev.subject.as_str()), (SubjectKind::Person, PERSON));
        }
    }

    #[test]
    fn bad_codes_are_reported_by_field_without_the_code() {
        let mut r = sample(spec_of("death.registered"));
        r["subject"] = json!("161175-19998");
        let e = check(&r).expect_err("rejected");
        assert_eq!(e.to_string(), "subject: invalid personal code: check digit does not match");

        let r = with_data("birth.registered", "mother", json!("310275-10000"));
        let e = check(&r).expect_err("rejected");
        assert_eq!(e.to_string(), "data.mother: invalid personal code: not a real date");

        let r = with_data("company.liquidation_started", "liquidator", json!("40003245753"));
        let e = check(&r).expect_err("rejected");
        assert_eq!(e.field, "data.liquidator");
        assert!(!e.message.contains("4000324575"));
    }

    #[test]
    fn codes_in_subject_and_data_are_canonicalized() {
        let mut r = with_data("birth.registered", "father", json!(PERSON_BARE));
        r["subject"] = json!("32123456789");
        r["data"]["mother"] = json!(" 321234-56780 ");
        let ev = check(&r).expect("valid");
        assert_eq!(ev.subject, PERSON_NEW);
        assert_eq!(ev.data["father"], json!(PERSON));
        assert_eq!(ev.data["mother"], json!("321234-56780"));
    }

    #[test]
    fn unknown_data_fields_are_kept() {
        let r = with_data("death.registered", "place", json!({"country": "LV"}));
        let ev = check(&r).expect("valid");
        assert_eq!(ev.data["place"], json!({"country": "LV"}));
    }

    #[test]
    fn kind_person_code() {
        let t = "marriage.registered";
        assert!(check(&with_data(t, "spouse", json!(PERSON_BARE))).is_ok());
        assert_eq!(field_error(check(&with_data(t, "spouse", json!("161175-39997")))), "data.spouse");
        assert_eq!(field_error(check(&with_data(t, "spouse", json!(REGNO)))), "data.spouse");
        assert_eq!(field_error(check(&with_data(t, "spouse", json!(16117519997u64)))), "data.spouse");
    }

    #[test]
    fn kind_person_or_company_code() {
        let t = "company.insolvency_declared";
        assert!(check(&with_data(t, "administrator", json!(REGNO))).is_ok());
        assert!(check(&with_data(t, "administrator", json!(PERSON_NEW))).is_ok());
        let r = with_data(t, "administrator", json!("12345"));
        assert_eq!(
            check(&r).err(),
            Some(err("data.administrator", "invalid personal code or registration number: not 11 digits"))
        );
    }

    #[test]
    fn kind_date() {
        let t = "death.registered";
        assert!(check(&with_data(t, "death_date", json!("2024-02-29"))).is_ok());
        let cases = [
            ("2026-02-31", "not a real date"),
            ("2023-02-29", "not a real date"),
            ("2026-13-01", "not a real date"),
            ("2026-1-5", "expected a date YYYY-MM-DD"),
            ("20.11.2026", "expected a date YYYY-MM-DD"),
            ("2026-11-20T00:00:00Z", "expected a date YYYY-MM-DD"),
            ("+026-11-20", "expected a date YYYY-MM-DD"),
        ];
        for (value, message) in cases {
            let r = with_data(t, "death_date", json!(value));
            assert_eq!(check(&r).err(), Some(err("data.death_date", message)), "{value}");
        }
    }

    #[test]
    fn kind_text() {
        let t = "document.invalidated";
        assert!(check(&with_data(t, "reason", json!("lost"))).is_ok());
        for bad in [json!(""), json!("   "), json!(3), json!(["lost"])] {
            assert_eq!(field_error(check(&with_data(t, "reason", bad))), "data.reason");
        }
    }

    #[test]
    fn kind_enum() {
        let t = "birth.registered";
        assert!(check(&with_data(t, "sex", json!("M"))).is_ok());
        let e = check(&with_data(t, "sex", json!("m"))).err();
        assert_eq!(e, Some(err("data.sex", "expected one of F, M")));
        let t = "document.issued";
        assert!(check(&with_data(t, "document", json!("eid"))).is_ok());
        let e = check(&with_data(t, "document", json!("visa"))).err();
        assert_eq!(e, Some(err("data.document", "expected one of passport, eid")));
        let t = "contact.declared";
        assert!(check(&with_data(t, "language", json!("ru"))).is_ok());
        assert_eq!(field_error(check(&with_data(t, "language", json!("de")))), "data.language");
        let t = "consent.granted";
        assert!(check(&with_data(t, "channel", json!("sms"))).is_ok());
        let e = check(&with_data(t, "channel", json!("fax"))).err();
        assert_eq!(e, Some(err("data.channel", "expected one of eaddress, email, sms, or null")));
    }

    #[test]
    fn kind_bool() {
        let t = "mandate.granted";
        assert!(check(&with_data(t, "copy", json!(false))).is_ok());
        for bad in [json!("true"), json!(1)] {
            assert_eq!(check(&with_data(t, "copy", bad)).err(), Some(err("data.copy", "expected true or false")));
        }
    }

    #[test]
    fn kind_purpose() {
        let t = "consent.withdrawn";
        assert!(check(&with_data(t, "purpose", json!("passport_expiry"))).is_ok());
        let e = check(&with_data(t, "purpose", json!("marketing"))).err();
        assert_eq!(e, Some(err("data.purpose", "not a purpose any life situation declares")));
    }

    #[test]
    fn kind_channels_and_quiet_hours() {
        let t = "preferences.declared";
        assert!(check(&with_data(t, "channels", json!(["letter", "eaddress"]))).is_ok());
        assert!(check(&with_data(t, "channels", Value::Null)).is_ok());
        let e = check(&with_data(t, "channels", json!(["sms", "sms"]))).err();
        assert_eq!(e, Some(err("data.channels[1]", "sms is listed twice")));
        let e = check(&with_data(t, "channels", json!(["pigeon"]))).err();
        assert_eq!(e, Some(err("data.channels[0]", "expected one of eaddress, email, sms, letter")));
        assert_eq!(field_error(check(&with_data(t, "channels", json!([])))), "data.channels");
        assert!(check(&with_data(t, "quiet_hours", json!("none"))).is_ok());
        assert_eq!(field_error(check(&with_data(t, "quiet_hours", json!("late")))), "data.quiet_hours");
    }

    #[test]
    fn kind_purpose_list() {
        let t = "mandate.revoked";
        assert!(check(&with_data(t, "purposes", json!(["death"]))).is_ok());
        let e = check(&with_data(t, "purposes", json!(["birth", "marketing"]))).err();
        assert_eq!(e.map(|e| e.field), Some("data.purposes[1]".to_owned()));
        let e = check(&with_data(t, "purposes", json!(["birth", 3]))).err();
        assert_eq!(e, Some(err("data.purposes[1]", "expected a string")));
        assert_eq!(field_error(check(&with_data(t, "purposes", json!("birth")))), "data.purposes");
        assert_eq!(field_error(check(&with_data(t, "purposes", json!([])))), "data.purposes");
    }

    #[test]
    fn kind_email() {
        let t = "contact.declared";
        assert!(check(&with_data(t, "email", json!("j.b+x@sub.example.lv"))).is_ok());
        for bad in ["janis", "@example.lv", "janis@", "janis@lv", "a@b@c.lv", "j b@example.lv", "j@.lv", "j@x."] {
            let e = check(&with_data(t, "email", json!(bad))).expect_err(bad);
            assert_eq!(e, err("data.email", "not an email address"), "{bad}");
        }
    }

    #[test]
    fn kind_phone() {
        let t = "contact.declared";
        assert!(check(&with_data(t, "phone", json!("+37120000000"))).is_ok());
        assert!(check(&with_data(t, "phone", json!("+12025550123"))).is_ok());
        for bad in ["37120000000", "+371 2000 0000", "+1234567", "+1234567890123456", "+0712345678", "+371-20000000"] {
            let e = check(&with_data(t, "phone", json!(bad))).expect_err(bad);
            assert_eq!(e.field, "data.phone", "{bad}");
            assert!(!e.message.contains("2000"), "{bad}");
        }
    }

    #[test]
    fn kind_change_reference() {
        let t = "change.annulled";
        assert!(check(&with_data(t, "annuls", json!("test-000001041"))).is_ok());
        assert_eq!(field_error(check(&with_data(t, "annuls", json!("")))), "data.annuls");
        let e = check(&with_data(t, "annuls", json!("test-000001042"))).err();
        assert_eq!(e, Some(err("data.annuls", "a change cannot annul itself")));
    }

    #[test]
    fn occurred_at_needs_an_offset() {
        let mut r = sample(spec_of("death.registered"));
        for good in ["2026-11-20T10:15:00+02:00", "2026-11-20T08:15:00Z", "2026-11-20T10:15:00.123+02:00"] {
            r["occurred_at"] = json!(good);
            assert!(check(&r).is_ok(), "{good}");
        }
        r["occurred_at"] = json!("2026-11-20T10:15:00+02:00");
        let ev = check(&r).expect("valid");
        assert_eq!(ev.occurred_at.offset().local_minus_utc(), 7200);
        for bad in ["2026-11-20T10:15:00", "2026-11-20", "yesterday", "2026-02-30T10:15:00+02:00"] {
            r["occurred_at"] = json!(bad);
            assert_eq!(field_error(check(&r)), "occurred_at", "{bad}");
        }
    }

    #[test]
    fn raw_change_round_trips_through_validation_and_debug_masks() {
        let raw = RawChange {
            source: String::new(),
            id: "pmlp-1".into(),
            r#type: "death.registered".into(),
            subject: PERSON_BARE.into(),
            occurred_at: "2026-11-20T10:15:00+02:00".into(),
            data: json!({"death_date": "2026-11-19"}),
        };
        let ev = validate_change(Some("pmlp"), &raw.to_value(), &declared).expect("valid");
        assert_eq!((ev.source.as_str(), ev.subject.as_str()), ("pmlp", PERSON));
        for dbg in [format!("{raw:?}"), format!("{ev:?}")] {
            assert!(!dbg.contains("19997") && !dbg.contains("161175"), "{dbg}");
        }
        let parsed: RawChange = serde_json::from_value(json!({
            "id": "x", "type": "eaddress.activated", "subject": REGNO, "occurred_at": "2026-11-20T10:15:00Z"
        }))
        .expect("parses without source and data");
        assert!(validate_change(Some("eadrese"), &parsed.to_value(), &declared).is_ok());
    }

    #[test]
    fn no_error_message_repeats_personal_data() {
        let cases = [
            ("birth.registered", "mother", json!("010190-99999")),
            ("birth.registered", "given_name", json!(42)),
            ("contact.declared", "email", json!("secret.person@nowhere")),
            ("contact.declared", "phone", json!("+371 29 999 999")),
            ("company.officer_appointed", "officer", json!("99999999999")),
        ];
        for (t, field, value) in cases {
            let e = check(&with_data(t, field, value.clone())).expect_err("rejected");
            let shown = e.to_string();
            let raw = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            assert!(!shown.contains(&raw), "{shown}");
            assert!(!shown.contains("99999") && !shown.contains("secret"), "{shown}");
        }
    }
}
