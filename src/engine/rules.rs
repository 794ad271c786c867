//! The rule sandbox: rhai scripts compiled once, run per event under
//! operation, depth and size limits, with a small read-only helper API.
//! Scripts have no file, network or module access; lookups read the
//! profiles prefetched for the batch, so a rule never waits on the database.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use rhai::{AST, Array, Dynamic, Engine, Map, Scope};
use serde::Deserialize;

use super::profile::Profile;

/// Limits every rule runs under; generous for real rules, fatal for loops.
pub const MAX_OPERATIONS: u64 = 200_000;
const MAX_CALL_LEVELS: usize = 32;
const MAX_STRING: usize = 64 * 1024;
const MAX_ARRAY: usize = 10_000;
const MAX_MAP: usize = 10_000;

/// What the helper functions read while a rule runs: the batch's profiles
/// as they stand at this event, and the event's day.
pub struct Lookup {
    /// Profiles by canonical code.
    pub profiles: HashMap<String, Profile>,
    /// The day "age" and "today" refer to (the event's day).
    pub today: Cell<NaiveDate>,
}

scoped_tls::scoped_thread_local!(static LOOKUP: Lookup);

/// A decision a rule returns.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// Send a notice to `to` using `template`, with `data` for the template.
    Notice {
        /// Recipient's code.
        to: String,
        /// Template name in the definition.
        template: String,
        /// Template data.
        #[serde(default)]
        data: serde_json::Value,
    },
    /// Prepare a prefilled application for `to`.
    Draft {
        /// Applicant's code.
        to: String,
        /// Draft name in the definition.
        draft: String,
        /// Field → `{value, source}`.
        fields: serde_json::Map<String, serde_json::Value>,
    },
}

/// Compiled rule scripts and the sandboxed engine that runs them.
pub struct Rules {
    engine: Engine,
    asts: HashMap<String, AST>,
}

impl Default for Rules {
    fn default() -> Self {
        Self::new()
    }
}

impl Rules {
    /// A sandboxed engine with the helper API and no scripts yet.
    pub fn new() -> Self {
        let mut engine = Engine::new();
        engine
            .set_max_operations(MAX_OPERATIONS)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(64, 32)
            .set_max_string_size(MAX_STRING)
            .set_max_array_size(MAX_ARRAY)
            .set_max_map_size(MAX_MAP)
            .set_strict_variables(true);
        register_helpers(&mut engine);
        Rules { engine, asts: HashMap::new() }
    }

    /// Compiles `path` under `name`; the error reads `FILE:LINE:COL: message`.
    pub fn compile(&mut self, name: &str, path: &Path) -> Result<(), String> {
        if self.asts.contains_key(name) {
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let ast = self.engine.compile_with_scope(&input_scope(), &text).map_err(|e| {
            let p = e.1;
            match (p.line(), p.position()) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}: {}", path.display(), e.0),
                (Some(l), None) => format!("{}:{l}: {}", path.display(), e.0),
                _ => format!("{}: {}", path.display(), e.0),
            }
        })?;
        self.asts.insert(name.to_string(), ast);
        Ok(())
    }

    /// Runs rule `name` for one event and returns its decisions; an error or
    /// an exceeded limit comes back as a message naming the line.
    pub fn run(&self, name: &str, input: &RuleInput, lookup: &Lookup) -> Result<Vec<Decision>, String> {
        let ast = self.asts.get(name).ok_or_else(|| format!("rule {name} is not compiled"))?;
        let mut scope = Scope::new();
        scope.push_constant("event", input.event.clone());
        scope.push_constant("case", input.case.clone());
        scope.push_constant("params", input.params.clone());
        scope.push_constant("today", lookup.today.get().to_string());
        let out: Dynamic =
            LOOKUP.set(lookup, || self.engine.eval_ast_with_scope(&mut scope, ast)).map_err(|e| e.to_string())?;
        decisions_from(out)
    }
}

/// The values a rule sees, already converted for rhai.
pub struct RuleInput {
    /// `#{source, id, type, subject, occurred_at, date, data}`.
    pub event: Dynamic,
    /// `#{id, life_situation, version, subject, fact}`.
    pub case: Dynamic,
    /// The definition's parameters.
    pub params: Dynamic,
}

fn input_scope() -> Scope<'static> {
    let mut s = Scope::new();
    for name in ["event", "case", "params", "today"] {
        s.push_constant(name, Dynamic::UNIT);
    }
    s
}

/// A rule may return an array of decisions, one decision, or nothing.
fn decisions_from(out: Dynamic) -> Result<Vec<Decision>, String> {
    if out.is_unit() {
        return Ok(Vec::new());
    }
    let items: Array = if out.is_array() { out.cast::<Array>() } else { vec![out] };
    items
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let v: serde_json::Value =
                rhai::serde::from_dynamic(d).map_err(|e| format!("decision {i}: not a decision map: {e}"))?;
            serde_json::from_value(v).map_err(|e| format!("decision {i}: {e} (use notice(…) or draft(…))"))
        })
        .collect()
}

fn with_profile<T>(code: &str, f: impl FnOnce(Option<&Profile>) -> T) -> T {
    if LOOKUP.is_set() { LOOKUP.with(|l| f(l.profiles.get(code))) } else { f(None) }
}

fn register_helpers(engine: &mut Engine) {
    engine.register_fn("profile", |code: &str| -> Dynamic {
        with_profile(code, |p| p.and_then(|p| rhai::serde::to_dynamic(p).ok()).unwrap_or(Dynamic::UNIT))
    });
    engine.register_fn("is_known", |code: &str| with_profile(code, |p| p.is_some()));
    engine.register_fn("is_alive", |code: &str| with_profile(code, |p| !p.is_some_and(Profile::is_deceased)));
    engine.register_fn("age", |code: &str| -> i64 {
        let today = if LOOKUP.is_set() { LOOKUP.with(|l| l.today.get()) } else { NaiveDate::MIN };
        let fallback = Profile::new(code, super::profile::ProfileKind::Person);
        with_profile(code, |p| p.unwrap_or(&fallback).age_on(today)).unwrap_or(-1)
    });
    engine.register_fn("parents", |code: &str| -> Array {
        with_profile(code, |p| {
            p.map(|p| [&p.mother, &p.father].into_iter().flatten().map(|c| Dynamic::from(c.clone())).collect())
                .unwrap_or_default()
        })
    });
    engine.register_fn("full_name", |code: &str| -> String {
        with_profile(code, |p| p.and_then(Profile::display_name).unwrap_or_default())
    });
    engine.register_fn("notice", |to: &str, template: &str| notice(to, template, Map::new()));
    engine.register_fn("notice", notice);
    engine.register_fn("draft", |to: &str, draft: &str, fields: Map| -> Map {
        let mut m = Map::new();
        m.insert("kind".into(), "draft".into());
        m.insert("to".into(), to.into());
        m.insert("draft".into(), draft.into());
        m.insert("fields".into(), fields.into());
        m
    });
    engine.register_fn("prefill", |value: Dynamic, source: &str| -> Map {
        let mut m = Map::new();
        m.insert("value".into(), value);
        m.insert("source".into(), source.into());
        m
    });
}

fn notice(to: &str, template: &str, data: Map) -> Map {
    let mut m = Map::new();
    m.insert("kind".into(), "notice".into());
    m.insert("to".into(), to.into());
    m.insert("template".into(), template.into());
    m.insert("data".into(), data.into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_with(src: &str) -> Result<Rules, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.rhai");
        std::fs::write(&path, src).unwrap();
        let mut r = Rules::new();
        r.compile("r", &path)?;
        Ok(r)
    }

    fn lookup() -> Lookup {
        Lookup { profiles: HashMap::new(), today: Cell::new(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()) }
    }

    fn input() -> RuleInput {
        RuleInput { event: Dynamic::from_map(Map::new()), case: Dynamic::UNIT, params: Dynamic::UNIT }
    }

    #[test]
    fn a_compile_error_names_line_and_column() {
        let err = rules_with("let x = ;\n").err().unwrap();
        assert!(err.contains("r.rhai:1:"), "{err}");
    }

    #[test]
    fn an_unknown_variable_is_caught_at_compile_time() {
        let err = rules_with("evnt.subject").err().unwrap();
        assert!(err.contains("evnt"), "{err}");
    }

    #[test]
    fn an_endless_loop_stops_at_the_operation_limit() {
        let r = rules_with("loop { }").unwrap();
        let err = r.run("r", &input(), &lookup()).unwrap_err();
        assert!(err.to_lowercase().contains("too many operations"), "{err}");
    }

    #[test]
    fn deep_recursion_stops_at_the_call_limit() {
        let r = rules_with("fn f(n) { f(n + 1) } f(0)").unwrap();
        let err = r.run("r", &input(), &lookup()).unwrap_err();
        assert!(err.to_lowercase().contains("stack overflow") || err.contains("call"), "{err}");
    }

    #[test]
    fn decisions_come_back_typed() {
        let r = rules_with(
            r#"[notice("010101-10006", "t", #{ a: 1 }), draft("010101-10006", "d", #{ x: prefill(2, "pmlp") })]"#,
        )
        .unwrap();
        let d = r.run("r", &input(), &lookup()).unwrap();
        assert_eq!(d.len(), 2);
        assert!(matches!(&d[0], Decision::Notice { template, .. } if template == "t"));
        assert!(matches!(&d[1], Decision::Draft { fields, .. } if fields["x"]["source"] == "pmlp"));
    }

    #[test]
    fn a_wrong_decision_shape_is_an_error() {
        let r = rules_with(r#"#{ kind: "telegram" }"#).unwrap();
        assert!(r.run("r", &input(), &lookup()).is_err());
    }
}
