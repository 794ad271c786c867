//! Life-situation definitions (`life-events/*.toml`), as policy staff write
//! them: what starts the situation, its steps, owner, legal basis, purposes,
//! channels and message templates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Whether a definition speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being written; never runs.
    Draft,
    /// Runs on live events and records its notices, but sends nothing.
    Shadow,
    /// Runs and sends.
    Active,
    /// No longer runs.
    Retired,
}

/// Whether a purpose needs a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsentMode {
    /// Runs unless the person refused.
    #[serde(rename = "opt-out")]
    OptOut,
    /// Needs the person's grant.
    #[serde(rename = "opt-in")]
    OptIn,
}

/// A channel a life situation may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    /// The official e-address.
    Eaddress,
    /// Email.
    Email,
    /// SMS.
    Sms,
    /// A printed letter or a task for a client centre: the last resort, never a silent drop.
    Letter,
}

impl ChannelName {
    /// The configured spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelName::Eaddress => "eaddress",
            ChannelName::Email => "email",
            ChannelName::Sms => "sms",
            ChannelName::Letter => "letter",
        }
    }
}

/// A purpose of processing that consent is given or refused for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    /// Purpose id; the main purpose has the life situation's id.
    pub id: String,
    /// Opt-out or opt-in.
    pub mode: ConsentMode,
    /// What the person is told the purpose is.
    pub description: String,
    /// Most messages a person gets under this purpose in a period, e.g.
    /// `"2/7d"`; over it a notice waits, it is not dropped. Urgent and
    /// legal-effect steps are not capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<String>,
    /// Days after a notice is made that its personal data is kept (then
    /// `proactive retention run` erases it); none keeps it. Longer than any
    /// draft offer of the purpose, which is erased with its notice.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// A parsed frequency cap: at most `count` messages in `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrequencyCap {
    /// Messages allowed.
    pub count: usize,
    /// In this long.
    pub window: chrono::Duration,
}

impl FrequencyCap {
    /// Parses `N/PERIOD`, the period as in step offsets (`7d`, `1m`, `12h`).
    pub fn parse(text: &str) -> Result<FrequencyCap, String> {
        let (n, period) = text.split_once('/').ok_or_else(|| format!("cap {text:?} is not N/PERIOD (e.g. 2/7d)"))?;
        let count: usize = n.trim().parse().map_err(|_| format!("cap {text:?}: {n:?} is not a count"))?;
        if count == 0 {
            return Err(format!("cap {text:?}: a count of 0 would hold every message forever"));
        }
        let p = period.trim();
        let (num, unit) = p.split_at(p.len().saturating_sub(1));
        let num: i64 = num.parse().map_err(|_| format!("cap {text:?}: {p:?} is not a period like 7d or 12h"))?;
        let window = match unit {
            "h" => chrono::Duration::hours(num),
            "d" => chrono::Duration::days(num),
            "w" => chrono::Duration::weeks(num),
            _ => return Err(format!("cap {text:?}: the period's unit must be h, d or w")),
        };
        if num <= 0 {
            return Err(format!("cap {text:?}: the period must be positive"));
        }
        Ok(FrequencyCap { count, window })
    }
}

/// What starts a case.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Event types that start it.
    pub events: Vec<String>,
    /// The trigger fact that keys the case: `{subject}`, `{type}` and `{data.FIELD}` are replaced.
    #[serde(default = "default_fact")]
    pub fact: String,
    /// An older event starts none of the steps that count from it (start and
    /// `after` steps); steps that count from the anchor have their own grace.
    #[serde(default = "default_max_age", with = "humantime_serde_str")]
    pub max_age: Duration,
    /// The date `at` steps count from: `data.FIELD` of the trigger event.
    #[serde(default)]
    pub anchor: Option<String>,
}

fn default_fact() -> String {
    "{subject}".into()
}

fn default_max_age() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// One step of the chain: a rule that returns decisions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Step id, part of each notice's id.
    pub id: String,
    /// Rule script, relative to the rules folder.
    pub rule: String,
    /// Consent purpose of its notices (default: the life situation's id).
    pub purpose: Option<String>,
    /// Whether its notices have legal effect (official e-address first).
    #[serde(default)]
    pub legal_effect: bool,
    /// Whether its notices may go by email or SMS during quiet hours.
    #[serde(default)]
    pub urgent: bool,
    /// Runs this long after the trigger event.
    #[serde(default, with = "humantime_serde_opt")]
    pub after: Option<Duration>,
    /// Runs on the anchor date plus this offset (`-90d`, `+{age}y -3m`).
    #[serde(default)]
    pub at: Option<String>,
    /// Time of day (Riga) an `at` step is due; 09:00 by default.
    #[serde(default)]
    pub time: Option<String>,
    /// How far past due an `at` step may be when the case starts and still run.
    #[serde(default, with = "humantime_serde_opt")]
    pub grace: Option<Duration>,
    /// Runs each time an event of these types concerning the open case arrives.
    #[serde(default)]
    pub on: Vec<String>,
    /// Dropped if an event of these types concerning the case arrives before it runs.
    #[serde(default)]
    pub unless: Vec<String>,
}

impl Step {
    /// Whether the step waits for a time (rather than running at the start or on an event).
    pub fn is_timed(&self) -> bool {
        self.after.is_some() || self.at.is_some()
    }
}

/// Events that end a case before its steps are done.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// Event types that end it.
    pub events: Vec<String>,
    /// Data fields that must equal the trigger event's (e.g. `document`).
    #[serde(default)]
    pub same: Vec<String>,
    /// Why, in plain words, recorded with every cancelled step and notice.
    pub reason: String,
}

/// A fact of a person's profile from which cases open when they come near
/// (`engine::openings`), read from an index rather than kept as a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpensFrom {
    /// The birth date of a person with a birth record.
    BirthDate,
    /// The expiry date of an identity document in force.
    Document,
}

/// One template in one language.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateTexts {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (optional; the text is used, escaped, without it).
    pub html: Option<String>,
    /// Short form for SMS.
    pub sms: Option<String>,
}

/// A prefilled application a rule may offer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftDef {
    /// Service catalogue id.
    pub service_id: String,
    /// Title per language.
    pub title: BTreeMap<String, String>,
    /// How long the offer stands (e.g. `90d`).
    #[serde(default = "default_draft_expiry", with = "humantime_serde_str")]
    pub expires_after: Duration,
}

fn default_draft_expiry() -> Duration {
    Duration::from_secs(90 * 86_400)
}

/// A life situation (`dzīves situācija`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifeSituation {
    /// Id, also the main consent purpose.
    pub id: String,
    /// Version number; a case keeps the version it started under.
    pub version: i64,
    /// Draft, shadow, active or retired.
    pub status: Status,
    /// First day in force.
    #[serde(deserialize_with = "toml_date::required")]
    pub valid_from: NaiveDate,
    /// First day no longer in force.
    #[serde(default, deserialize_with = "toml_date::optional")]
    pub valid_to: Option<NaiveDate>,
    /// Name per language.
    pub name: BTreeMap<String, String>,
    /// What it is for, in a sentence or two.
    pub description: String,
    /// Owner institution.
    pub owner: String,
    /// Legal basis of the processing.
    pub legal_basis: String,
    /// Service catalogue ids it offers.
    pub services: Vec<String>,
    /// Channels it may use, in order of preference.
    pub channels: Vec<ChannelName>,
    /// Purposes it declares.
    pub purposes: Vec<Purpose>,
    /// What starts it.
    pub trigger: Trigger,
    /// The chain of steps.
    pub steps: Vec<Step>,
    /// Events that end a case early.
    #[serde(default)]
    pub cancel: Vec<Cancel>,
    /// Parameters rules read as `params` (amounts, ages, deadlines).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Templates: name → language → texts.
    pub templates: BTreeMap<String, BTreeMap<String, TemplateTexts>>,
    /// Drafts: name → definition.
    #[serde(default)]
    pub drafts: BTreeMap<String, DraftDef>,
    /// Sample data per template, as its rule would give it: template name →
    /// variable → value. Only `rules check` reads it, to render every
    /// template in every language before anyone receives one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<String, toml::Table>,
    /// The file it was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

impl LifeSituation {
    /// Whether it is in force on `day`.
    pub fn in_force_on(&self, day: NaiveDate) -> bool {
        self.valid_from <= day && self.valid_to.is_none_or(|to| day < to)
    }

    /// The profile fact its cases can wait on until their first step comes
    /// near, if any: every step dated from the fact, and nothing that could
    /// end the case early that the profile does not already forget (a death
    /// takes the person out; a new document of the kind, or the document's
    /// invalidation, takes it out of the profile). Its schedule then follows
    /// the profile instead of a case kept for years or decades, and a
    /// population's backfill writes no case for it.
    pub fn opens_from(&self) -> Option<OpensFrom> {
        if self.steps.is_empty() || !self.steps.iter().all(|s| s.at.is_some() && s.on.is_empty()) {
            return None;
        }
        let t = &self.trigger;
        let one = |event: &str, fact: &str, anchor: &str| {
            t.events == [event] && t.fact == fact && t.anchor.as_deref() == Some(anchor)
        };
        if one("birth.registered", "{subject}", "data.birth_date") && self.cancel.is_empty() {
            return Some(OpensFrom::BirthDate);
        }
        let forgotten = |k: &Cancel| {
            let by = |event: &str| k.events.iter().all(|e| e == event) && !k.events.is_empty();
            (by("document.issued") && k.same == ["document"])
                || (by("document.invalidated")
                    && k.same.iter().any(|f| f == "number")
                    && k.same.iter().all(|f| f == "number" || f == "document"))
        };
        if one("document.issued", "{data.document}:{data.number}", "data.expires") && self.cancel.iter().all(forgotten)
        {
            return Some(OpensFrom::Document);
        }
        None
    }

    /// The purpose a step's notices serve.
    pub fn step_purpose<'a>(&'a self, step: &'a Step) -> &'a str {
        step.purpose.as_deref().unwrap_or(&self.id)
    }

    /// The case's trigger fact for an event.
    pub fn fact_for(&self, subject: &str, event_type: &str, data: &serde_json::Value) -> String {
        let mut out = String::new();
        let mut rest = self.trigger.fact.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let key = &rest[open + 1..open + close];
            match key {
                "subject" => out.push_str(subject),
                "type" => out.push_str(event_type),
                k => {
                    if let Some(v) = k.strip_prefix("data.").and_then(|f| data.get(f)) {
                        match v.as_str() {
                            Some(s) => out.push_str(s),
                            None => out.push_str(&v.to_string()),
                        }
                    }
                }
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// Reads one definition file; the error carries the file, line and column.
pub fn parse_file(path: &Path) -> Result<LifeSituation, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut def: LifeSituation = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| line_col(&text, s.start));
        match at {
            Some((l, c)) => format!("{}:{l}:{c}: {}", path.display(), e.message()),
            None => format!("{}: {}", path.display(), e.message()),
        }
    })?;
    def.file = path.to_path_buf();
    Ok(def)
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Dates written either as TOML dates (`2027-01-01`) or as strings.
mod toml_date {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer};

    fn parse<E: serde::de::Error>(v: toml::Value) -> Result<NaiveDate, E> {
        let text = match v {
            toml::Value::String(s) => s,
            toml::Value::Datetime(d) if d.date.is_some() && d.time.is_none() => d.to_string(),
            other => return Err(E::custom(format!("expected a date YYYY-MM-DD, got {other}"))),
        };
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map_err(|_| E::custom(format!("{text:?} is not a real date YYYY-MM-DD")))
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        parse(toml::Value::deserialize(d)?)
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        Option::<toml::Value>::deserialize(d)?.map(parse).transpose()
    }
}

/// Optional durations, as [`humantime_serde_str`].
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::humantime_serde_str::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::humantime_serde_str::deserialize(d).map(Some)
    }
}

/// Durations written as `30d`, `12h`, `90 days` in definitions.
mod humantime_serde_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("not a duration like 30d or 12h: {e}")))
    }
}
