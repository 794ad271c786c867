//! Decision traces: how a notice was made (kept on the notice, with the
//! persons' codes, until its retention ends) and what delivery decided at
//! each attempt (kept in the audit log, with pseudonyms only).

use serde::{Deserialize, Serialize};

use super::{Audit, Entry};
use crate::engine::profile::Profile;
use crate::store::ClaimedNotice;

/// How the recipient came to be the one a notice went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The person the rule addressed.
    Direct,
    /// A minor's mother.
    Mother,
    /// A minor's father.
    Father,
    /// A minor's guardian.
    Guardian,
    /// A representative the person named for this purpose (mandate).
    Representative,
    /// The person themself, as a copy their mandate asks for.
    Copy,
    /// The representative declared for an assisted person.
    AssistedRepresentative,
    /// An officer of a company without an active e-address.
    Officer,
}

impl Via {
    /// The recipient's role in plain words, for a person whose code is `about`.
    pub fn words(self) -> &'static str {
        match self {
            Via::Direct | Via::Copy => "the person themself",
            Via::Mother => "the child's mother",
            Via::Father => "the child's father",
            Via::Guardian => "the child's guardian",
            Via::Representative => "the representative the person named",
            Via::AssistedRepresentative => "the assisted person's representative",
            Via::Officer => "an officer of the company",
        }
    }
}

/// The event a notice was made on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRef {
    /// Position in the event log.
    pub seq: i64,
    /// Registry or system it came from.
    pub source: String,
    /// Its id there.
    pub external_id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened, ms since the epoch.
    pub occurred_at: i64,
}

/// A mandate consulted when the recipient was chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MandateSeen {
    /// The representative's code.
    pub representative: String,
    /// The purposes it covers; none for all.
    pub purposes: Option<Vec<String>>,
    /// Whether the person gets a copy.
    pub copy: bool,
}

/// How a notice was made, stored with it (`notices.trace`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoticeTrace {
    /// Life situation.
    pub life_situation: String,
    /// Its definition version.
    pub version: i64,
    /// Step.
    pub step: String,
    /// The rule script the step ran.
    pub rule: String,
    /// Purpose of the notice.
    pub purpose: String,
    /// Whether the step's notices have legal effect.
    pub legal_effect: bool,
    /// The event the rule ran on.
    pub event: EventRef,
    /// The code the rule addressed; none once erased.
    pub addressed_to: Option<String>,
    /// How the recipient was reached from it.
    pub via: Via,
    /// Mandates of the addressed person that cover the purpose; their codes go when erased.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mandates: Vec<MandateSeen>,
    /// When the engine made it, ms since the epoch.
    pub made_at: i64,
    /// When its personal parts were erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<i64>,
}

impl NoticeTrace {
    /// The trace without personal parts, as retention leaves it.
    pub fn erased(mut self, at: i64) -> NoticeTrace {
        self.addressed_to = None;
        self.mandates.clear();
        self.erased_at = Some(at);
        self
    }
}

/// What delivery knew when it decided on one claimed notice: the route's
/// reasons and the consent records it consulted, for the attempt's audit record.
#[derive(Clone, Debug)]
pub struct DeliveryTrace {
    audit: Audit,
    notice_id: String,
    recipient: String,
    purpose: String,
    life_situation: String,
    version: i64,
    consents: Vec<serde_json::Value>,
    /// Why each channel considered was skipped, as the route said.
    pub why: Vec<String>,
}

impl DeliveryTrace {
    /// The trace of one claimed notice, with the recipient's consent records for its purpose.
    pub fn new(audit: &Audit, n: &ClaimedNotice, profile: Option<&Profile>) -> DeliveryTrace {
        let consents = profile
            .map(|p| {
                p.consents
                    .iter()
                    .filter(|c| c.purpose == n.purpose)
                    .map(|c| {
                        serde_json::json!({
                            "purpose": c.purpose, "channel": c.channel, "granted": c.granted,
                            "at": c.at, "source": c.source, "text_version": c.text_version,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        DeliveryTrace {
            audit: audit.clone(),
            notice_id: n.id.clone(),
            recipient: n.recipient.clone(),
            purpose: n.purpose.clone(),
            life_situation: n.life_situation.clone(),
            version: n.version,
            consents,
            why: Vec::new(),
        }
    }

    /// The audit writer.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The audit record of one delivery outcome (`delivery.sent`, `.retry`, `.dead`,
    /// `.suppressed`, `.deferred`, `.unreachable`).
    pub fn entry(&self, outcome: &str, channel: Option<&str>, error: Option<&str>, at: i64) -> Entry {
        Entry {
            kind: format!("delivery.{outcome}"),
            at,
            purpose: Some(self.purpose.clone()),
            subject: Some(self.recipient.clone()),
            notice_id: Some(self.notice_id.clone()),
            detail: serde_json::json!({
                "life_situation": self.life_situation,
                "version": self.version,
                "channel": channel,
                "outcome": outcome,
                "why": self.why,
                "consents": self.consents,
                "error": error.map(crate::mask::mask_codes_in),
            }),
        }
    }
}
