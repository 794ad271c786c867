//! Profiles: what the engine knows of a subject, built only from events.
//! Rules read profiles, never a registry.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::events::{EventRow, SubjectKind};

/// Person or company, as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileKind {
    /// A natural person (personal code).
    #[default]
    Person,
    /// A legal entity (registration number).
    Company,
}

impl ProfileKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Person => "person",
            ProfileKind::Company => "company",
        }
    }
}

impl From<SubjectKind> for ProfileKind {
    fn from(k: SubjectKind) -> Self {
        match k {
            SubjectKind::Person => ProfileKind::Person,
            SubjectKind::Company => ProfileKind::Company,
        }
    }
}

/// Everything the engine knows of one subject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// Canonical code.
    pub subject: String,
    /// Person or company.
    pub kind: ProfileKind,
    /// Given name (persons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name (persons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// `F` or `M`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// Date of birth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    /// The event log's seq of the birth record the birth date came from:
    /// the life situations that count from a birth date open their cases
    /// from it when their first step comes near (see `engine::openings`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_seq: Option<i64>,
    /// Date of death; a deceased person gets no messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub death_date: Option<NaiveDate>,
    /// Mother's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mother: Option<String>,
    /// Father's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub father: Option<String>,
    /// Declared address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Municipality of the declared address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub municipality: Option<String>,
    /// Email declared on the state portal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone declared on the state portal (E.164).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Preferred language: `lv`, `en` or `ru`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Whether the official e-address account is active.
    pub eaddress_active: bool,
    /// The person's own channel order (first preferred); empty: the life situation's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channel_order: Vec<String>,
    /// The person's own quiet hours (`HH:MM-HH:MM` or `none`); none: the configured ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<String>,
    /// Children's codes, from birth records naming this person as a parent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Spouse's code while married.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spouse: Option<String>,
    /// Guardians' codes (the subject is their ward).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guardians: Vec<String>,
    /// Identity documents in force, one per kind (the latest issued).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<Document>,
    /// Company officers (companies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub officers: Vec<Officer>,
    /// Marked as needing assistance (offline): the representative who acts, or none
    /// (letters or a client centre).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assisted: Option<Assistance>,
    /// Representatives the person named, for all or some purposes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mandates: Vec<Mandate>,
    /// The latest consent record per purpose and channel.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consents: Vec<Consent>,
    /// Company name (companies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Legal form (companies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_form: Option<String>,
}

/// An identity document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// `passport` or `eid`.
    pub document: String,
    /// Its number.
    pub number: String,
    /// Day issued.
    pub issued: Option<NaiveDate>,
    /// Day it expires.
    pub expires: Option<NaiveDate>,
}

/// A person's latest word on one purpose (on one channel, or on all).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    /// The purpose (a life situation's id or another declared purpose).
    pub purpose: String,
    /// `eaddress`, `email` or `sms`; none for every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Granted; false for refused or withdrawn.
    pub granted: bool,
    /// When it was given (ms since the epoch).
    pub at: i64,
    /// Where it came from: the state portal, the engine's unsubscribe link, …
    pub source: String,
    /// Which consent text the person was shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_version: Option<String>,
}

/// A person marked as assisted (`assistance.declared`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Assistance {
    /// Who acts for them; none for letters or a client centre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub representative: Option<String>,
}

/// A representative named by the person (`mandate.granted`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Mandate {
    /// The representative's personal code.
    pub representative: String,
    /// The purposes it covers; none for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purposes: Option<Vec<String>>,
    /// Whether the person gets the notice too.
    pub copy: bool,
}

impl Mandate {
    /// Whether it covers `purpose`.
    pub fn covers(&self, purpose: &str) -> bool {
        self.purposes.as_ref().is_none_or(|p| p.iter().any(|x| x == purpose))
    }
}

/// A company officer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Officer {
    /// The officer's personal code.
    pub officer: String,
    /// Their role (board member, liquidator, …).
    pub role: String,
}

impl Profile {
    /// An empty profile for a code first seen now.
    pub fn new(subject: &str, kind: ProfileKind) -> Self {
        let birth_date = match kind {
            ProfileKind::Person => crate::events::codes::birth_date_from_personal_code(subject),
            ProfileKind::Company => None,
        };
        Profile { subject: subject.to_string(), kind, birth_date, ..Profile::default() }
    }

    /// Whether the subject is known to have died.
    pub fn is_deceased(&self) -> bool {
        self.death_date.is_some()
    }

    /// Full years of age on `at`, when the birth date is known.
    pub fn age_on(&self, at: NaiveDate) -> Option<i64> {
        let b = self.birth_date?;
        let mut years = i64::from(chrono::Datelike::year(&at) - chrono::Datelike::year(&b));
        if (chrono::Datelike::month(&at), chrono::Datelike::day(&at))
            < (chrono::Datelike::month(&b), chrono::Datelike::day(&b))
        {
            years -= 1;
        }
        Some(years)
    }

    /// Display name for greetings: given and family name, or the company name.
    pub fn display_name(&self) -> Option<String> {
        match (&self.given_name, &self.family_name, &self.name) {
            (Some(g), Some(f), _) => Some(format!("{g} {f}")),
            (Some(g), None, _) => Some(g.clone()),
            (_, _, Some(n)) => Some(n.clone()),
            _ => None,
        }
    }

    /// Applies what `event` says about this subject; returns whether anything changed.
    pub fn apply(&mut self, event: &EventRow) -> bool {
        let d = &event.data;
        let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let date =
            |k: &str| d.get(k).and_then(|v| v.as_str()).and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok());
        let before = self.clone();
        match event.event_type.as_str() {
            "birth.registered" => {
                self.given_name = s("given_name").or(self.given_name.take());
                self.family_name = s("family_name").or(self.family_name.take());
                self.sex = s("sex").or(self.sex.take());
                self.birth_date = date("birth_date").or(self.birth_date);
                self.birth_seq = Some(event.seq);
                self.mother = s("mother").or(self.mother.take());
                self.father = s("father").or(self.father.take());
                self.municipality = s("municipality").or(self.municipality.take());
                self.address = s("address").or(self.address.take());
            }
            "death.registered" => self.death_date = date("death_date"),
            "marriage.registered" => self.spouse = s("spouse"),
            "divorce.registered" => self.spouse = None,
            "guardianship.established" => {
                if let Some(g) = s("guardian")
                    && !self.guardians.contains(&g)
                {
                    self.guardians.push(g);
                }
            }
            "guardianship.ended" => {
                let g = s("guardian");
                self.guardians.retain(|x| Some(x) != g.as_ref());
            }
            "document.issued" => {
                let kind = s("document").unwrap_or_default();
                self.documents.retain(|x| x.document != kind);
                self.documents.push(Document {
                    document: kind,
                    number: s("number").unwrap_or_default(),
                    issued: date("issued"),
                    expires: date("expires"),
                });
            }
            "document.invalidated" => {
                let number = s("number");
                self.documents.retain(|x| Some(&x.number) != number.as_ref());
            }
            "assistance.declared" => self.assisted = Some(Assistance { representative: s("representative") }),
            "assistance.ended" => self.assisted = None,
            "mandate.granted" | "mandate.revoked" => {
                let representative = s("representative").unwrap_or_default();
                self.mandates.retain(|m| m.representative != representative);
                if event.event_type == "mandate.granted" {
                    let purposes = d
                        .get("purposes")
                        .and_then(|v| v.as_array())
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect::<Vec<_>>());
                    let copy = d.get("copy").and_then(|v| v.as_bool()).unwrap_or(false);
                    self.mandates.push(Mandate { representative, purposes, copy });
                }
            }
            "consent.granted" | "consent.refused" | "consent.withdrawn" => {
                let record = Consent {
                    purpose: s("purpose").unwrap_or_default(),
                    channel: s("channel"),
                    granted: event.event_type == "consent.granted",
                    at: event.occurred_at,
                    source: event.source.clone(),
                    text_version: s("text_version"),
                };
                // An older record arriving late does not undo a newer one.
                match self.consents.iter_mut().find(|c| c.purpose == record.purpose && c.channel == record.channel) {
                    Some(c) if c.at <= record.at => *c = record,
                    Some(_) => {}
                    None => self.consents.push(record),
                }
            }
            "company.officer_appointed" => {
                let officer =
                    Officer { officer: s("officer").unwrap_or_default(), role: s("role").unwrap_or_default() };
                if !self.officers.contains(&officer) {
                    self.officers.push(officer);
                }
            }
            "company.officer_removed" => {
                let (o, r) = (s("officer"), s("role"));
                self.officers.retain(|x| Some(&x.officer) != o.as_ref() || Some(&x.role) != r.as_ref());
            }
            "address.declared" => {
                self.address = s("address");
                self.municipality = s("municipality");
            }
            "contact.declared" => {
                self.email = s("email");
                self.phone = s("phone");
                self.language = s("language").or(self.language.take());
            }
            "preferences.declared" => {
                self.channel_order = d
                    .get("channels")
                    .and_then(|c| c.as_array())
                    .map(|l| l.iter().filter_map(|c| c.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                self.quiet_hours = s("quiet_hours");
            }
            "eaddress.activated" => self.eaddress_active = true,
            "eaddress.deactivated" => self.eaddress_active = false,
            "company.registered" => {
                self.name = s("name");
                self.legal_form = s("legal_form");
                self.address = s("address");
            }
            "company.renamed" => self.name = s("name"),
            "company.address_changed" => self.address = s("address"),
            _ => {}
        }
        *self != before
    }

    /// What an event says about *another* subject named in it: a birth
    /// makes the child a parent's child, a marriage the subject a spouse's
    /// spouse. Returns whether anything changed.
    pub fn apply_as_relative(&mut self, event: &EventRow) -> bool {
        let named = |k: &str| event.data.get(k).and_then(|v| v.as_str()) == Some(self.subject.as_str());
        match event.event_type.as_str() {
            "birth.registered" if named("mother") || named("father") => {
                if self.children.contains(&event.subject) {
                    return false;
                }
                self.children.push(event.subject.clone());
                true
            }
            "marriage.registered" if named("spouse") => {
                let changed = self.spouse.as_deref() != Some(event.subject.as_str());
                self.spouse = Some(event.subject.clone());
                changed
            }
            "divorce.registered" if named("spouse") && self.spouse.as_deref() == Some(event.subject.as_str()) => {
                self.spouse = None;
                true
            }
            _ => false,
        }
    }

    /// Undoes what an annulled event set, where that can be told from the
    /// event alone; returns whether anything changed. An address or contact
    /// change cannot be undone this way (the previous value is not in the
    /// event) and stays until the registry sends the right one.
    pub fn unapply(&mut self, annulled: &EventRow) -> bool {
        let d = &annulled.data;
        let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let before = self.clone();
        if annulled.subject == self.subject {
            match annulled.event_type.as_str() {
                "death.registered" => self.death_date = None,
                // The birth date stays (the code says it too), but nothing opens from a void record.
                "birth.registered" if self.birth_seq == Some(annulled.seq) => self.birth_seq = None,
                "marriage.registered" => self.spouse = None,
                "document.issued" => {
                    let n = s("number");
                    self.documents.retain(|x| Some(&x.number) != n.as_ref());
                }
                "guardianship.established" => {
                    let g = s("guardian");
                    self.guardians.retain(|x| Some(x) != g.as_ref());
                }
                "eaddress.activated" => self.eaddress_active = false,
                "company.officer_appointed" => {
                    let o = s("officer");
                    self.officers.retain(|x| Some(&x.officer) != o.as_ref());
                }
                _ => {}
            }
        } else {
            match annulled.event_type.as_str() {
                "birth.registered" => self.children.retain(|c| c != &annulled.subject),
                "marriage.registered" if self.spouse.as_deref() == Some(annulled.subject.as_str()) => {
                    self.spouse = None
                }
                _ => {}
            }
        }
        *self != before
    }

    /// The record that decides `purpose` on `channel`: one for that channel,
    /// else one for every channel.
    pub fn consent_for(&self, purpose: &str, channel: &str) -> Option<&Consent> {
        let of = |ch: Option<&str>| self.consents.iter().find(|c| c.purpose == purpose && c.channel.as_deref() == ch);
        of(Some(channel)).or_else(|| of(None))
    }

    /// Codes of everyone this profile links to, prefetched so that rules can
    /// look at a subject's family or officers without waiting on the store.
    pub fn relatives(&self) -> impl Iterator<Item = &String> {
        self.mother
            .iter()
            .chain(self.father.iter())
            .chain(self.spouse.iter())
            .chain(self.children.iter())
            .chain(self.guardians.iter())
            .chain(self.officers.iter().map(|o| &o.officer))
    }
}

/// Data fields that hold another subject's code; their profiles are
/// prefetched with the batch so rules never wait on the database.
pub const CODE_FIELDS: &[&str] = &["mother", "father", "spouse", "guardian", "officer", "representative"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_counts_full_years() {
        let p = Profile { birth_date: NaiveDate::from_ymd_opt(2008, 11, 28), ..Profile::default() };
        assert_eq!(p.age_on(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()), Some(17));
        assert_eq!(p.age_on(NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()), Some(18));
    }
}
