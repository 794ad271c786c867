//! The loaded rule set: every life-situation definition, its compiled rule
//! scripts and its templates, checked as a whole so that a broken set never
//! starts (and, on a reload, never replaces the running one).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use rhai::Dynamic;

use super::definitions::{self, LifeSituation, Status};
use super::rules::Rules;
use crate::delivery::templates::Templates;

/// Definitions, compiled rules and templates, ready to run.
pub struct RuleSet {
    /// Every definition read, in file order.
    pub situations: Vec<LifeSituation>,
    /// Compiled rule scripts, by file name.
    pub rules: Rules,
    /// Compiled templates.
    pub templates: Templates,
    /// Reference data by municipality name, for the `municipality()` helper.
    pub municipalities: Arc<HashMap<String, Dynamic>>,
    /// Public holidays and transferred working days (`life-events/data/calendar.toml`).
    pub calendar: Arc<super::calendar::Calendar>,
    /// Per event type, the running versions (active or shadow) of each life
    /// situation it starts, one group per id, highest version first.
    by_type: HashMap<String, Vec<Vec<usize>>>,
    listened: HashSet<String>,
    purposes: HashSet<String>,
}

/// The rule set in force, shared by the stages of a process and swapped
/// whole on a reload (SIGHUP), so a batch runs on one set from start to end.
#[derive(Clone)]
pub struct LiveRules(Arc<std::sync::RwLock<Arc<RuleSet>>>);

impl LiveRules {
    /// The set in force now.
    pub fn get(&self) -> Arc<RuleSet> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts a checked set in force.
    pub fn set(&self, rules: Arc<RuleSet>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }
}

impl From<Arc<RuleSet>> for LiveRules {
    fn from(r: Arc<RuleSet>) -> Self {
        LiveRules(Arc::new(std::sync::RwLock::new(r)))
    }
}

/// Event types the engine always matches against open cases and queued
/// notices: a death ends every case about the deceased, an annulment what
/// its change started, a refusal or withdrawal the queued notices of its purpose.
pub const ALWAYS_LISTENED: &[&str] = &["death.registered", "change.annulled", "consent.refused", "consent.withdrawn"];

impl RuleSet {
    /// Loads `life_events/*.toml` and the scripts they name from `rules_dir`;
    /// returns every error found, each naming its file (and line where known).
    pub fn load(life_events: &Path, rules_dir: &Path) -> Result<RuleSet, Vec<String>> {
        let mut errors = Vec::new();
        let mut files: Vec<_> = match std::fs::read_dir(life_events) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => return Err(vec![format!("{}: cannot read the life-events folder: {e}", life_events.display())]),
        };
        files.sort();
        let mut situations = Vec::new();
        for f in &files {
            match definitions::parse_file(f) {
                Ok(d) => situations.push(d),
                Err(e) => errors.push(e),
            }
        }
        let mut rules = Rules::new();
        let mut templates = Templates::new();
        let mut seen = HashSet::new();
        let known_types: HashSet<&str> = crate::events::known_event_types().collect();
        for d in &situations {
            let at = d.file.display();
            if !seen.insert((d.id.clone(), d.version)) {
                errors.push(format!("{at}: life situation {} version {} is defined twice", d.id, d.version));
            }
            if d.id.is_empty() || !d.id.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()) {
                errors.push(format!("{at}: id must be lower-case letters, digits and _"));
            }
            for p in &d.purposes {
                if let Some(Err(e)) = p.cap.as_deref().map(super::definitions::FrequencyCap::parse) {
                    errors.push(format!("{at}: purpose \"{}\": {e}", p.id));
                }
            }
            if !d.purposes.iter().any(|p| p.id == d.id) {
                errors.push(format!(
                    "{at}: purposes must include the main purpose \"{}\" (the life situation's id)",
                    d.id
                ));
            }
            if d.channels.is_empty() {
                errors.push(format!("{at}: channels must name at least one channel"));
            }
            let mut typed: Vec<(String, &String)> =
                d.trigger.events.iter().map(|t| ("trigger.events".into(), t)).collect();
            for s in &d.steps {
                typed.extend(s.on.iter().map(|t| (format!("step \"{}\": on", s.id), t)));
                typed.extend(s.unless.iter().map(|t| (format!("step \"{}\": unless", s.id), t)));
            }
            for (i, c) in d.cancel.iter().enumerate() {
                typed.extend(c.events.iter().map(|t| (format!("cancel[{i}].events"), t)));
            }
            for (place, t) in typed {
                if !known_types.contains(t.as_str()) {
                    errors.push(format!("{at}: {place}: unknown event type \"{t}\""));
                }
            }
            errors.extend(super::cases::check_timing(d));
            for (name, v) in &d.params {
                if let Err(e) = super::schedule::check_param(name, v) {
                    errors.push(format!("{at}: {e}"));
                }
            }
            if d.steps.is_empty() {
                errors.push(format!("{at}: steps: a life situation needs at least one step"));
            }
            let mut step_ids = HashSet::new();
            for s in &d.steps {
                if !step_ids.insert(&s.id) {
                    errors.push(format!("{at}: step \"{}\" is defined twice", s.id));
                }
                if let Some(p) = &s.purpose
                    && !d.purposes.iter().any(|x| &x.id == p)
                {
                    errors.push(format!("{at}: step \"{}\": purpose \"{p}\" is not declared in purposes", s.id));
                }
                if let Err(e) = rules.compile(&s.rule, &rules_dir.join(&s.rule)) {
                    errors.push(e);
                }
            }
            for (name, draft) in &d.drafts {
                if !d.services.contains(&draft.service_id) {
                    errors.push(format!(
                        "{at}: drafts.{name}: service_id \"{}\" is not listed in services",
                        draft.service_id
                    ));
                }
            }
            errors.extend(templates.add(d));
        }
        let municipalities = match load_municipalities(&life_events.join("data").join("municipalities.toml")) {
            Ok(m) => m,
            Err(e) => {
                errors.push(e);
                HashMap::new()
            }
        };
        let calendar_file = life_events.join("data").join("calendar.toml");
        let calendar = if calendar_file.exists() {
            super::calendar::Calendar::load(&calendar_file).unwrap_or_else(|e| {
                errors.push(e);
                super::calendar::Calendar::default()
            })
        } else {
            super::calendar::Calendar::builtin().clone()
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut listened: HashSet<String> = ALWAYS_LISTENED.iter().map(|s| s.to_string()).collect();
        for d in &situations {
            listened.extend(d.cancel.iter().flat_map(|c| c.events.iter().cloned()));
            for s in &d.steps {
                listened.extend(s.on.iter().chain(&s.unless).cloned());
            }
        }
        let mut by_type: HashMap<String, Vec<Vec<usize>>> = HashMap::new();
        for (i, d) in situations.iter().enumerate() {
            if !matches!(d.status, Status::Active | Status::Shadow) {
                continue;
            }
            for t in &d.trigger.events {
                let groups = by_type.entry(t.clone()).or_default();
                match groups.iter_mut().find(|g| situations[g[0]].id == d.id) {
                    Some(g) => g.push(i),
                    None => groups.push(vec![i]),
                }
            }
        }
        for g in by_type.values_mut().flatten() {
            g.sort_by_key(|&i| std::cmp::Reverse(situations[i].version));
        }
        let purposes = situations.iter().flat_map(|d| d.purposes.iter().map(|p| p.id.clone())).collect();
        Ok(RuleSet {
            situations,
            rules,
            templates,
            municipalities: Arc::new(municipalities),
            calendar: Arc::new(calendar),
            by_type,
            listened,
            purposes,
        })
    }

    /// Whether any life situation declares `purpose` (consent events must name one).
    pub fn declares_purpose(&self, purpose: &str) -> bool {
        self.purposes.contains(purpose)
    }

    /// Definitions an event of `event_type` that happened on `day` and
    /// arrives on `arrival` starts: of each life situation, the running
    /// version (active or shadow) in force on the trigger date, the highest
    /// if versions overlap. The trigger date is the event's day; for a
    /// definition whose steps count from an anchor date (school age from a
    /// birth years ago), it is the day the fact arrives. An event from before
    /// any version was in force is judged by the version in force on arrival
    /// (which then records why an old event starts nothing).
    pub fn triggered_by<'a>(
        &'a self,
        event_type: &str,
        day: NaiveDate,
        arrival: NaiveDate,
    ) -> impl Iterator<Item = &'a LifeSituation> {
        self.by_type.get(event_type).into_iter().flatten().filter_map(move |group| {
            let versions = || group.iter().map(|&i| &self.situations[i]);
            let pick = |on: NaiveDate| versions().find(|d| d.in_force_on(on));
            if versions().any(|d| d.trigger.anchor.is_some()) {
                pick(arrival)
            } else {
                pick(day).or_else(|| pick(arrival))
            }
        })
    }

    /// Whether events of this type may concern open cases (cancel, unless, on).
    pub fn is_listened(&self, event_type: &str) -> bool {
        self.listened.contains(event_type)
    }

    /// A definition by id and version.
    pub fn get(&self, id: &str, version: i64) -> Option<&LifeSituation> {
        self.situations.iter().find(|d| d.id == id && d.version == version)
    }

    /// A life situation's name in `lang`, else in Latvian, else its id: for
    /// the pages and the citizen API, which show it to people.
    pub fn situation_name(&self, id: &str, lang: &str) -> String {
        let d = self.situations.iter().find(|d| d.id == id);
        d.and_then(|d| d.name.get(lang).or_else(|| d.name.get("lv")).cloned()).unwrap_or_else(|| id.to_string())
    }
}

/// Reads the municipalities reference file, if there is one: `[[municipality]]`
/// tables with at least `name`; rules get each table by name.
fn load_municipalities(path: &Path) -> Result<HashMap<String, Dynamic>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let doc: toml::Table = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| definitions::line_col(&text, s.start));
        match at {
            Some((l, c)) => format!("{}:{l}:{c}: {}", path.display(), e.message()),
            None => format!("{}: {}", path.display(), e.message()),
        }
    })?;
    let mut out = HashMap::new();
    let list = doc.get("municipality").and_then(|m| m.as_array()).cloned().unwrap_or_default();
    for (i, m) in list.iter().enumerate() {
        let name = m
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| format!("{}: municipality[{i}]: has no name", path.display()))?;
        let dynamic = rhai::serde::to_dynamic(m).map_err(|e| format!("{}: municipality[{i}]: {e}", path.display()))?;
        if out.insert(name.to_string(), dynamic).is_some() {
            return Err(format!("{}: municipality \"{name}\" is listed twice", path.display()));
        }
    }
    Ok(out)
}
