//! `proactive gen population`: a synthetic but plausible registry history
//! as change records (one Change plus `source` a line, what `events import`
//! reads), for simulations and benchmarks.
//!
//! The population is made household by household, each from its own
//! random stream derived from the seed, so nothing but a small per-day
//! serial table (for unique personal codes) lives across households: a
//! million people stream through in constant memory. A household is one or
//! two adults and their children; parents, spouses and company officers are
//! always people of the same household, so every code a record names is a
//! person the file also registers. The history is a backfill of everything
//! up to the start day (births long ago, documents, marriages, contacts,
//! consents, e-addresses, companies) plus what happens in the year after it
//! (births, deaths, marriages, renewed documents, moves, new companies and
//! liquidations), so a simulation over that year has things to do.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Europe::Riga;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::engine::schedule::add_months;
use crate::events::codes::{valid_test_personal_code, valid_test_regno};

/// What to generate.
#[derive(Clone, Debug)]
pub struct PopulationSpec {
    /// People alive or recorded at the start (newborns of the year come on top).
    pub people: usize,
    /// The same seed gives the same file.
    pub seed: u64,
    /// The day the backfill reaches; the events of the following year come after it.
    pub start: NaiveDate,
    /// Purposes consent records may name (those the life situations declare).
    pub purposes: Vec<String>,
}

/// One change record.
#[derive(Clone, Debug)]
pub struct Change {
    /// Registry: `pmlp`, `ur`, `portal`, `eadrese`.
    pub source: &'static str,
    /// Unique within the source.
    pub id: String,
    /// Event type of CONTRACTS.md §1.
    pub event_type: &'static str,
    /// Personal code or registration number.
    pub subject: String,
    /// When it happened (noon in Riga on its day).
    pub occurred_at: DateTime<FixedOffset>,
    /// Type-specific data.
    pub data: Value,
}

impl Change {
    /// The record as `events import` reads it.
    pub fn to_json(&self) -> Value {
        json!({
            "source": self.source, "id": self.id, "type": self.event_type, "subject": self.subject,
            "occurred_at": self.occurred_at.to_rfc3339(), "data": self.data,
        })
    }
}

/// The first line of a generated file: a comment (`events import` skips it)
/// that tells `rules simulate` the start day.
pub fn header(spec: &PopulationSpec) -> String {
    format!("# proactive gen population --people {} --seed {} --start {}", spec.people, spec.seed, spec.start)
}

/// Reads the start day out of a generated file's first line.
pub fn start_from_header(line: &str) -> Option<NaiveDate> {
    let rest = line.strip_prefix("# proactive gen population")?;
    let i = rest.find("--start ")?;
    rest[i + 8..].split_whitespace().next()?.parse().ok()
}

/// The population as a stream of change records, household by household.
pub struct Population {
    spec: PopulationSpec,
    end: NaiveDate,
    household: u64,
    people: usize,
    serial_of_day: HashMap<NaiveDate, u16>,
    new_codes: u64,
    companies: u32,
    documents: u64,
    ids: HashMap<&'static str, u64>,
    buffer: VecDeque<Change>,
}

/// The day the personal codes without a birth date began.
fn new_format_since() -> NaiveDate {
    NaiveDate::from_ymd_opt(2017, 7, 1).expect("date")
}

const GIVEN_F: &[&str] = &["Anna", "Marija", "Laura", "Elīza", "Sofija", "Līga", "Ilze", "Inese", "Kristīne", "Olga"];
const GIVEN_M: &[&str] =
    &["Jānis", "Andris", "Pēteris", "Mārtiņš", "Edgars", "Roberts", "Artūrs", "Gints", "Aleksandrs", "Dmitrijs"];
const FAMILY: &[(&str, &str)] = &[
    ("Bērziņš", "Bērziņa"),
    ("Kalniņš", "Kalniņa"),
    ("Ozoliņš", "Ozoliņa"),
    ("Liepa", "Liepa"),
    ("Krūmiņš", "Krūmiņa"),
    ("Zariņš", "Zariņa"),
    ("Jansons", "Jansone"),
    ("Ozols", "Ozola"),
    ("Vītols", "Vītola"),
    ("Kļaviņš", "Kļaviņa"),
    ("Petrovs", "Petrova"),
    ("Ivanovs", "Ivanova"),
];
/// Municipalities of `life-events/data/municipalities.toml`, the larger ones several times (a rough weight).
const MUNICIPALITIES: &[&str] = &[
    "Rīga",
    "Rīga",
    "Rīga",
    "Rīga",
    "Rīga",
    "Daugavpils",
    "Liepāja",
    "Jelgava",
    "Jūrmala",
    "Ventspils",
    "Rēzekne",
    "Ogres novads",
    "Valmieras novads",
    "Tukuma novads",
    "Ķekavas novads",
    "Mārupes novads",
    "Siguldas novads",
    "Cēsu novads",
    "Bauskas novads",
    "Talsu novads",
];
const STREETS: &[&str] = &["Brīvības iela", "Lāčplēša iela", "Raiņa iela", "Skolas iela", "Dārza iela", "Meža iela"];
const COMPANY_WORDS: &[&str] = &["Dzintars", "Ozols", "Saule", "Baltija", "Vārpa", "Līcis", "Kalns", "Gaisma"];

/// A person of a household as generated.
struct Person {
    code: String,
    sex: &'static str,
    given: &'static str,
    family: &'static str,
    birth: NaiveDate,
    /// Set when the person dies (before the start: in the backfill; after: in the year).
    death: Option<NaiveDate>,
    mother: Option<usize>,
    father: Option<usize>,
}

impl Population {
    /// A generator for `spec`.
    pub fn new(spec: PopulationSpec) -> Self {
        let end = spec.start + Duration::days(365);
        Population {
            spec,
            end,
            household: 0,
            people: 0,
            serial_of_day: HashMap::new(),
            new_codes: 0,
            companies: 0,
            documents: 0,
            ids: HashMap::new(),
            buffer: VecDeque::new(),
        }
    }

    /// People generated so far (of the population at the start).
    pub fn people(&self) -> usize {
        self.people
    }

    fn next_id(&mut self, source: &'static str) -> String {
        let n = self.ids.entry(source).or_insert(0);
        *n += 1;
        format!("{source}-{:09}", *n)
    }

    fn push(&mut self, source: &'static str, event_type: &'static str, subject: &str, day: NaiveDate, data: Value) {
        let id = self.next_id(source);
        self.buffer.push_back(Change {
            source,
            id,
            event_type,
            subject: subject.to_string(),
            occurred_at: noon(day),
            data,
        });
    }

    /// A personal code unique in the file: the old format with the birth
    /// date before July 2017, the dateless `32…` one since.
    fn code_for(&mut self, birth: NaiveDate) -> String {
        if birth >= new_format_since() {
            self.new_codes += 1;
            let n = self.new_codes;
            return format!("32{:04}-{:05}", n / 100_000 % 10_000, n % 100_000);
        }
        loop {
            let s = self.serial_of_day.entry(birth).or_insert(0);
            *s += 1;
            if *s > 999 {
                // A day's thousand serials are used up: such a person would get a new-format code today.
                self.new_codes += 1;
                let n = self.new_codes;
                return format!("32{:04}-{:05}", n / 100_000 % 10_000, n % 100_000);
            }
            if let Some(code) = valid_test_personal_code(birth, *s) {
                return code;
            }
        }
    }

    /// Generates the next household into the buffer; false when the population is complete.
    fn household(&mut self) -> bool {
        let room = self.spec.people.saturating_sub(self.people);
        if room == 0 {
            return false;
        }
        self.household += 1;
        let mut rng = StdRng::seed_from_u64(mix(self.spec.seed, self.household));
        let start = self.spec.start;
        let municipality = MUNICIPALITIES[rng.random_range(0..MUNICIPALITIES.len())];
        let address =
            format!("{} {}, {}", STREETS[rng.random_range(0..STREETS.len())], rng.random_range(1..120), municipality);
        let (fam_m, fam_f) = FAMILY[rng.random_range(0..FAMILY.len())];

        let mut people: Vec<Person> = Vec::new();
        let head_age = adult_age(&mut rng);
        let head_sex = if rng.random_bool(0.5) { "F" } else { "M" };
        let head_birth = start - Duration::days(head_age * 365 + rng.random_range(0..365));
        people.push(self.person(&mut rng, head_sex, head_birth, fam_m, fam_f));
        let couple = room >= 2
            && rng.random_bool(if head_age < 25 {
                0.3
            } else if head_age < 80 {
                0.65
            } else {
                0.4
            });
        if couple {
            let age = (head_age + rng.random_range(-4..=4)).clamp(18, 100);
            let sex = if head_sex == "F" { "M" } else { "F" };
            let birth = start - Duration::days(age * 365 + rng.random_range(0..365));
            people.push(self.person(&mut rng, sex, birth, fam_m, fam_f));
            if head_age > 65 && rng.random_bool(0.25) {
                // One of an older couple died before the start: the backfill has the death.
                let who = rng.random_range(0..2);
                let d = start - Duration::days(rng.random_range(30..3650));
                if d > people[who].birth + Duration::days(18 * 365) {
                    people[who].death = Some(d);
                }
            }
        }
        let mother = people.iter().position(|p| p.sex == "F");
        let father = people.iter().position(|p| p.sex == "M");
        let married = couple && rng.random_bool(0.8);
        let marry_in_year = couple && !married && head_age < 50 && rng.random_bool(0.3);

        // Children of the household's mother, born when she was 20–42.
        if let Some(m) = mother {
            let kids = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5][rng.random_range(0..12usize)];
            let kids = kids.min(room - people.len());
            let mut births: Vec<NaiveDate> = (0..kids)
                .map(|_| people[m].birth + Duration::days(rng.random_range(20 * 365..42 * 365)))
                .filter(|b| *b < start && people[m].death.is_none_or(|d| *b < d))
                .collect();
            births.sort();
            for b in births {
                let sex = if rng.random_bool(0.51) { "M" } else { "F" };
                let mut child = self.person(&mut rng, sex, b, fam_m, fam_f);
                child.mother = Some(m);
                child.father = father.filter(|_| couple && rng.random_bool(0.9));
                people.push(child);
            }
        }
        self.people += people.len();

        // The year: deaths by age (Gompertz-like), a birth to a mother of 20–42.
        for p in people.iter_mut().filter(|p| p.death.is_none()) {
            let age = (start - p.birth).num_days() as f64 / 365.25;
            let q = (0.00005 * (0.09 * age).exp()).min(0.4);
            if rng.random_bool(q) {
                p.death = Some(start + Duration::days(rng.random_range(1..365)));
            }
        }
        let newborn_day = mother
            .filter(|m| {
                let age = (start - people[*m].birth).num_days() / 365;
                (20..=42).contains(&age) && rng.random_bool(0.09)
            })
            .map(|_| start + Duration::days(rng.random_range(1..365)))
            .filter(|d| mother.is_some_and(|m| people[m].death.is_none_or(|x| x > *d)));
        if let (Some(day), Some(m)) = (newborn_day, mother) {
            let sex = if rng.random_bool(0.51) { "M" } else { "F" };
            let mut child = self.person(&mut rng, sex, day, fam_m, fam_f);
            child.mother = Some(m);
            child.father = father.filter(|f| couple && people[*f].death.is_none_or(|d| d > day));
            people.push(child);
        }

        // Births (backfilled ones arrive with the rest of the history).
        for i in 0..people.len() {
            let p = &people[i];
            let data = json!({
                "given_name": p.given, "family_name": p.family, "birth_date": p.birth.to_string(), "sex": p.sex,
                "mother": p.mother.map(|m| people[m].code.clone()), "father": p.father.map(|f| people[f].code.clone()),
                "municipality": municipality, "address": address,
            });
            let (code, birth) = (p.code.clone(), p.birth);
            self.push("pmlp", "birth.registered", &code, birth, data);
        }
        // Marriage: before the first child, or in the year.
        if let (Some(m), Some(f)) = (mother, father) {
            let younger = people[m].birth.max(people[f].birth);
            let first_child = people.iter().filter(|p| p.mother == Some(m)).map(|p| p.birth).min();
            let day = if married {
                let latest = first_child.unwrap_or(start - Duration::days(1));
                let earliest = younger + Duration::days(20 * 365);
                (earliest < latest)
                    .then(|| earliest + Duration::days(rng.random_range(0..(latest - earliest).num_days())))
            } else if marry_in_year {
                Some(start + Duration::days(rng.random_range(1..365)))
            } else {
                None
            };
            let alive_then = |p: &Person, d: NaiveDate| p.death.is_none_or(|x| x > d);
            if let Some(d) = day.filter(|d| alive_then(&people[m], *d) && alive_then(&people[f], *d)) {
                let (w, h) = (people[m].code.clone(), people[f].code.clone());
                self.push("pmlp", "marriage.registered", &w, d, json!({ "spouse": h, "date": d.to_string() }));
            }
        }
        // Deaths.
        for p in &people {
            if let Some(d) = p.death {
                let code = p.code.clone();
                self.push("pmlp", "death.registered", &code, d, json!({ "death_date": d.to_string() }));
            }
        }
        // A move in the year.
        if rng.random_bool(0.03) {
            let day = start + Duration::days(rng.random_range(1..365));
            let to = MUNICIPALITIES[rng.random_range(0..MUNICIPALITIES.len())];
            let addr = format!("{} {}, {}", STREETS[rng.random_range(0..STREETS.len())], rng.random_range(1..120), to);
            for p in people.iter().filter(|p| p.birth < day && p.death.is_none_or(|d| d > day)) {
                let code = p.code.clone();
                let data = json!({ "address": addr, "municipality": to, "since": day.to_string() });
                self.push("pmlp", "address.declared", &code, day, data);
            }
        }
        // Per person: documents, contacts, consents, the e-address.
        for p in &people {
            self.documents_of(&mut rng, p);
            if (start - p.birth).num_days() >= 18 * 365 && p.death.is_none_or(|d| d > start) {
                self.portal_of(&mut rng, p);
            }
        }
        // A company of the household's head.
        let head = &people[0];
        if head.death.is_none() && (25..=70).contains(&head_age) && rng.random_bool(0.12) {
            let officers: Vec<String> = people
                .iter()
                .take(if couple { 2 } else { 1 })
                .filter(|p| p.death.is_none())
                .map(|p| p.code.clone())
                .collect();
            self.company(&mut rng, &officers, &address);
        }
        true
    }

    fn person(
        &mut self,
        rng: &mut StdRng,
        sex: &'static str,
        birth: NaiveDate,
        fm: &'static str,
        ff: &'static str,
    ) -> Person {
        let (given, family) = if sex == "F" {
            (GIVEN_F[rng.random_range(0..GIVEN_F.len())], ff)
        } else {
            (GIVEN_M[rng.random_range(0..GIVEN_M.len())], fm)
        };
        Person { code: self.code_for(birth), sex, given, family, birth, death: None, mother: None, father: None }
    }

    /// A passport and/or an eID card valid ten years (five when issued to a
    /// minor), and in the year a new one for most of those that expire.
    fn documents_of(&mut self, rng: &mut StdRng, p: &Person) {
        let start = self.spec.start;
        if p.death.is_some_and(|d| d <= start) || p.birth >= start {
            return;
        }
        let adult = (start - p.birth).num_days() >= 18 * 365;
        for (kind, share) in [("passport", if adult { 0.75 } else { 0.5 }), ("eid", if adult { 0.45 } else { 0.1 })] {
            if !rng.random_bool(share) {
                continue;
            }
            let lived = (start - p.birth).num_days().max(1);
            let mut issued = start - Duration::days(rng.random_range(1..=lived.min(3650)));
            let mut expires = expiry(p.birth, issued);
            if expires <= start && rng.random_bool(0.5) {
                // Renewed before the start: only the current one is in the backfill.
                issued = (expires - Duration::days(rng.random_range(0..60))).min(start - Duration::days(1));
                expires = expiry(p.birth, issued);
            }
            let number = self.document_number(kind);
            let data = json!({ "document": kind, "number": number, "issued": issued.to_string(), "expires": expires.to_string() });
            self.push("pmlp", "document.issued", &p.code, issued, data);
            if expires > start && expires <= self.end && rng.random_bool(0.6) {
                let day = (expires - Duration::days(rng.random_range(0..=100))).max(start + Duration::days(1));
                if p.death.is_none_or(|d| d > day) && day < self.end {
                    let number = self.document_number(kind);
                    let renewed = expiry(p.birth, day);
                    let data = json!({ "document": kind, "number": number, "issued": day.to_string(), "expires": renewed.to_string() });
                    self.push("pmlp", "document.issued", &p.code, day, data);
                }
            }
        }
    }

    fn document_number(&mut self, kind: &str) -> String {
        self.documents += 1;
        format!("{}{:07}", if kind == "passport" { "LV" } else { "PA" }, self.documents % 10_000_000)
    }

    /// Contacts, consents and the e-address of an adult.
    fn portal_of(&mut self, rng: &mut StdRng, p: &Person) {
        let start = self.spec.start;
        let when = |rng: &mut StdRng| {
            if rng.random_bool(0.05) {
                start + Duration::days(rng.random_range(1..365))
            } else {
                start - Duration::days(rng.random_range(1..5 * 365))
            }
        };
        let alive_on = |d: NaiveDate| p.death.is_none_or(|x| x > d);
        if rng.random_bool(0.65) {
            let day = when(rng);
            let language = ["lv", "lv", "lv", "lv", "lv", "lv", "ru", "ru", "ru", "en"][rng.random_range(0..10usize)];
            let n = self.people as u64 * 100 + rng.random_range(0..100u64);
            let email = rng.random_bool(0.8).then(|| format!("person{n}@example.lv"));
            let phone = (email.is_none() || rng.random_bool(0.6)).then(|| format!("+3712{:07}", n % 10_000_000));
            if alive_on(day) {
                let data = json!({ "email": email, "phone": phone, "language": language });
                self.push("portal", "contact.declared", &p.code, day, data);
            }
            if !self.spec.purposes.is_empty() && rng.random_bool(0.25) {
                let purpose = self.spec.purposes[rng.random_range(0..self.spec.purposes.len())].clone();
                let day = when(rng);
                let (kind, channel) = if rng.random_bool(0.4) {
                    ("consent.refused", None)
                } else {
                    ("consent.granted", Some(if phone.is_some() { "sms" } else { "email" }))
                };
                if alive_on(day) {
                    let data = json!({ "purpose": purpose, "channel": channel, "text_version": "2026-1" });
                    self.push("portal", kind, &p.code, day, data);
                }
            }
        }
        if rng.random_bool(0.4) {
            let day = when(rng);
            if alive_on(day) {
                self.push("eadrese", "eaddress.activated", &p.code, day, json!({}));
            }
        }
    }

    /// A company with its officers; some are new in the year, some go into liquidation in it.
    fn company(&mut self, rng: &mut StdRng, officers: &[String], address: &str) {
        let start = self.spec.start;
        let regno = valid_test_regno(self.companies);
        self.companies += 1;
        let registered = if rng.random_bool(0.05) {
            start + Duration::days(rng.random_range(1..365))
        } else {
            start - Duration::days(rng.random_range(30..20 * 365))
        };
        let name = format!("SIA \"{} {}\"", COMPANY_WORDS[rng.random_range(0..COMPANY_WORDS.len())], self.companies);
        let data =
            json!({ "name": name, "legal_form": "SIA", "registered": registered.to_string(), "address": address });
        self.push("ur", "company.registered", &regno, registered, data);
        for (i, o) in officers.iter().enumerate() {
            let role = if i == 0 { "valdes loceklis" } else { "prokūrists" };
            self.push("ur", "company.officer_appointed", &regno, registered, json!({ "officer": o, "role": role }));
        }
        if rng.random_bool(0.5) {
            let day = if registered > start { registered } else { start - Duration::days(rng.random_range(1..365)) };
            self.push("eadrese", "eaddress.activated", &regno, day, json!({}));
        }
        if registered < start && !officers.is_empty() && rng.random_bool(0.04) {
            let day = start + Duration::days(rng.random_range(1..300));
            let deadline = add_months(day, 3).expect("date");
            let data = json!({ "liquidator": officers[0], "claims_deadline": deadline.to_string() });
            self.push("ur", "company.liquidation_started", &regno, day, data);
            let end = add_months(day, 4).expect("date");
            if end < self.end {
                self.push("ur", "company.terminated", &regno, end, json!({ "terminated": end.to_string() }));
            }
        }
    }
}

impl Iterator for Population {
    type Item = Change;

    fn next(&mut self) -> Option<Change> {
        loop {
            if let Some(c) = self.buffer.pop_front() {
                return Some(c);
            }
            if !self.household() {
                return None;
            }
        }
    }
}

/// Noon in Riga on `day`, with its offset (summer time or not).
fn noon(day: NaiveDate) -> DateTime<FixedOffset> {
    let naive = day.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("time"));
    Riga.from_local_datetime(&naive).earliest().expect("noon exists in Riga").fixed_offset()
}

/// Ten years, five for a document issued to a minor.
fn expiry(birth: NaiveDate, issued: NaiveDate) -> NaiveDate {
    let minor = add_months(birth, 18 * 12).is_some_and(|adult| issued < adult);
    add_months(issued, if minor { 60 } else { 120 }).expect("date")
}

/// An adult's age in years, 20–100: flat to 65, then thinning out.
fn adult_age(rng: &mut StdRng) -> i64 {
    loop {
        let a = rng.random_range(20..=100i64);
        let keep = if a <= 65 { 1.0 } else { (100 - a) as f64 / 35.0 };
        if rng.random_bool(keep.clamp(0.0, 1.0)) {
            return a;
        }
    }
}

/// A household's own seed (splitmix64 of the seed and its number).
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes the population as JSONL (the header line first); `progress` is told the people written so far.
pub fn write_jsonl(
    spec: &PopulationSpec,
    out: &mut dyn std::io::Write,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<usize> {
    writeln!(out, "{}", header(spec))?;
    let mut pop = Population::new(spec.clone());
    let mut lines = 0;
    let mut last = 0;
    while let Some(c) = pop.next() {
        serde_json::to_writer(&mut *out, &c.to_json())?;
        out.write_all(b"\n")?;
        lines += 1;
        if pop.people() >= last + 1000 {
            last = pop.people();
            progress(last);
        }
    }
    progress(pop.people());
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::codes::{normalize_personal_code, normalize_regno};
    use chrono::Datelike;

    fn spec(people: usize, seed: u64) -> PopulationSpec {
        PopulationSpec {
            people,
            seed,
            start: NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
            purposes: vec!["birth".into(), "passport_expiry".into()],
        }
    }

    #[test]
    fn same_seed_same_records_other_seed_others() {
        let a: Vec<Value> = Population::new(spec(300, 7)).map(|c| c.to_json()).collect();
        let b: Vec<Value> = Population::new(spec(300, 7)).map(|c| c.to_json()).collect();
        let c: Vec<Value> = Population::new(spec(300, 8)).map(|c| c.to_json()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn codes_are_valid_and_unique_and_ages_spread() {
        let pop = Population::new(spec(3000, 1));
        let mut births = std::collections::HashSet::new();
        let mut ages = [0usize; 11];
        let start = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        for c in pop {
            if c.event_type == "birth.registered" {
                assert!(normalize_personal_code(&c.subject).is_ok(), "{}", c.subject);
                assert!(births.insert(c.subject.clone()), "duplicate code");
                let b: NaiveDate = c.data["birth_date"].as_str().and_then(|s| s.parse().ok()).expect("birth date");
                if b < start {
                    ages[((start.year() - b.year()) / 10).clamp(0, 10) as usize] += 1;
                }
            }
            if c.source == "ur" {
                assert!(normalize_regno(&c.subject).is_ok());
            }
        }
        assert!(births.len() >= 3000);
        // Every decade of life up to the nineties has people.
        assert!(ages[..10].iter().all(|n| *n > 0), "{ages:?}");
    }
}
