//! The loaded rule set: every life-situation definition, its compiled rule
//! scripts and its templates, checked as a whole so that a broken set never
//! starts (and, on a reload, never replaces the running one).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::NaiveDate;

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
    by_type: HashMap<String, Vec<usize>>,
    purposes: HashSet<String>,
}

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
            if !d.purposes.iter().any(|p| p.id == d.id) {
                errors.push(format!(
                    "{at}: purposes must include the main purpose \"{}\" (the life situation's id)",
                    d.id
                ));
            }
            if d.channels.is_empty() {
                errors.push(format!("{at}: channels must name at least one channel"));
            }
            for t in &d.trigger.events {
                if !known_types.contains(t.as_str()) {
                    errors.push(format!("{at}: trigger.events: unknown event type \"{t}\""));
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
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in situations.iter().enumerate() {
            for t in &d.trigger.events {
                by_type.entry(t.clone()).or_default().push(i);
            }
        }
        let purposes = situations.iter().flat_map(|d| d.purposes.iter().map(|p| p.id.clone())).collect();
        Ok(RuleSet { situations, rules, templates, by_type, purposes })
    }

    /// Whether any life situation declares `purpose` (consent events must name one).
    pub fn declares_purpose(&self, purpose: &str) -> bool {
        self.purposes.contains(purpose)
    }

    /// Definitions an event of `event_type` on `day` starts: running ones
    /// (active or shadow) in force that day.
    pub fn triggered_by<'a>(&'a self, event_type: &str, day: NaiveDate) -> impl Iterator<Item = &'a LifeSituation> {
        self.by_type
            .get(event_type)
            .into_iter()
            .flatten()
            .map(|&i| &self.situations[i])
            .filter(move |d| matches!(d.status, Status::Active | Status::Shadow) && d.in_force_on(day))
    }

    /// A definition by id and version.
    pub fn get(&self, id: &str, version: i64) -> Option<&LifeSituation> {
        self.situations.iter().find(|d| d.id == id && d.version == version)
    }
}
