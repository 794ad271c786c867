//! The rule sandbox: rhai scripts compiled once, run per event under
//! operation, depth and size limits, with a small read-only helper API.
//! Scripts have no file, network or module access; lookups read the
//! profiles prefetched for the batch, so a rule never waits on the database.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

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
    /// The day "age" and "today" refer to (the event's day, or the day a timed step runs).
    pub today: Cell<NaiveDate>,
    /// Reference data by municipality name (`life-events/data/municipalities.toml`).
    pub municipalities: Arc<HashMap<String, Dynamic>>,
    /// Business days, for `add_business_days()` and `is_business_day()`.
    pub calendar: Arc<super::calendar::Calendar>,
}

impl Lookup {
    /// A lookup over `profiles` on `today`.
    pub fn new(
        profiles: HashMap<String, Profile>,
        today: NaiveDate,
        municipalities: Arc<HashMap<String, Dynamic>>,
        calendar: Arc<super::calendar::Calendar>,
    ) -> Self {
        Lookup { profiles, today: Cell::new(today), municipalities, calendar }
    }
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
    /// End the case now; its later steps are dropped.
    Close {
        /// Why, recorded with the case.
        reason: String,
    },
    /// Drop one later step of the case.
    Skip {
        /// The step's id.
        step: String,
        /// Why, recorded with the step.
        reason: String,
    },
}

/// Compiled rule scripts and the sandboxed engine that runs them.
pub struct Rules {
    engine: Engine,
    asts: HashMap<String, Compiled>,
}

/// A compiled rule and its counters, looked up once at compile time rather
/// than by label on every run (the engine runs rules by the hundred thousand).
struct Compiled {
    ast: AST,
    runs: prometheus::IntCounter,
    errors: prometheus::IntCounter,
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
        let m = crate::metrics::get();
        let (runs, errors) = (m.rule_runs.with_label_values(&[name]), m.rule_errors.with_label_values(&[name]));
        self.asts.insert(name.to_string(), Compiled { ast, runs, errors });
        Ok(())
    }

    /// Runs rule `name` for one event and returns its decisions; an error or
    /// an exceeded limit comes back as a message naming the line.
    pub fn run(&self, name: &str, input: &RuleInput, lookup: &Lookup) -> Result<Vec<Decision>, String> {
        let compiled = self.asts.get(name).ok_or_else(|| format!("rule {name} is not compiled"))?;
        compiled.runs.inc();
        let ast = &compiled.ast;
        let mut scope = Scope::new();
        scope.push_constant("event", input.event.clone());
        scope.push_constant("trigger", input.trigger.clone());
        scope.push_constant("case", input.case.clone());
        scope.push_constant("step", input.step.clone());
        scope.push_constant("params", input.params.clone());
        scope.push_constant("today", lookup.today.get().to_string());
        let out = LOOKUP
            .set(lookup, || self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast))
            .map_err(|e| e.to_string())
            .and_then(decisions_from);
        if out.is_err() {
            compiled.errors.inc();
        }
        out
    }
}

/// The values a rule sees, already converted for rhai.
pub struct RuleInput {
    /// `#{source, id, type, subject, occurred_at, date, data}`: what made the step run.
    pub event: Dynamic,
    /// The event that started the case, in the same shape.
    pub trigger: Dynamic,
    /// `#{id, life_situation, version, subject, fact, started}`.
    pub case: Dynamic,
    /// `#{id, due}`: the step running and the day it was due.
    pub step: Dynamic,
    /// The definition's parameters.
    pub params: Dynamic,
}

/// The names a rule may use, declared for compilation (strict variables).
/// Declared as variables, not constants: the optimiser would otherwise fold
/// the placeholder `()` into the compiled script.
fn input_scope() -> Scope<'static> {
    let mut s = Scope::new();
    for name in ["event", "trigger", "case", "step", "params", "today"] {
        s.push(name, Dynamic::UNIT);
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
            serde_json::from_value(v)
                .map_err(|e| format!("decision {i}: {e} (use notice(…), draft(…), close(…) or skip(…))"))
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
    let codes = |v: &[String]| -> Array { v.iter().map(|c| Dynamic::from(c.clone())).collect() };
    engine.register_fn("children", move |code: &str| -> Array {
        with_profile(code, |p| p.map(|p| codes(&p.children)).unwrap_or_default())
    });
    engine.register_fn("guardians", move |code: &str| -> Array {
        with_profile(code, |p| p.map(|p| codes(&p.guardians)).unwrap_or_default())
    });
    engine.register_fn("spouse", |code: &str| -> Dynamic {
        with_profile(code, |p| p.and_then(|p| p.spouse.clone()).map_or(Dynamic::UNIT, Dynamic::from))
    });
    engine.register_fn("officers", |code: &str| -> Array {
        with_profile(code, |p| {
            let mut out: Vec<String> = Vec::new();
            for o in p.map(|p| p.officers.as_slice()).unwrap_or_default() {
                if !out.contains(&o.officer) {
                    out.push(o.officer.clone());
                }
            }
            out.into_iter().map(Dynamic::from).collect()
        })
    });
    engine.register_fn("age_on", |code: &str, day: &str| -> i64 {
        let Ok(day) = NaiveDate::parse_from_str(day, "%Y-%m-%d") else { return -1 };
        let fallback = Profile::new(code, super::profile::ProfileKind::Person);
        with_profile(code, |p| p.unwrap_or(&fallback).age_on(day)).unwrap_or(-1)
    });
    engine.register_fn("municipality", |name: &str| -> Dynamic {
        if !LOOKUP.is_set() {
            return Dynamic::UNIT;
        }
        LOOKUP.with(|l| l.municipalities.get(name).cloned().unwrap_or(Dynamic::UNIT))
    });
    engine.register_fn("add_days", |day: &str, n: i64| -> Result<String, Box<rhai::EvalAltResult>> {
        let d = parse_day(day)?;
        d.checked_add_signed(chrono::Duration::days(n)).map(|d| d.to_string()).ok_or_else(|| out_of_range(day))
    });
    engine.register_fn("add_months", |day: &str, n: i64| -> Result<String, Box<rhai::EvalAltResult>> {
        let d = parse_day(day)?;
        super::schedule::add_months(d, n).map(|d| d.to_string()).ok_or_else(|| out_of_range(day))
    });
    engine.register_fn("add_business_days", |day: &str, n: i64| -> Result<String, Box<rhai::EvalAltResult>> {
        let d = parse_day(day)?;
        with_calendar(|c| c.add_business_days(d, n).map(|d| d.to_string()).map_err(Into::into))
    });
    engine.register_fn("is_business_day", |day: &str| -> Result<bool, Box<rhai::EvalAltResult>> {
        let d = parse_day(day)?;
        with_calendar(|c| c.is_business_day(d).map_err(Into::into))
    });
    engine.register_fn("days_between", |a: &str, b: &str| -> Result<i64, Box<rhai::EvalAltResult>> {
        Ok((parse_day(b)? - parse_day(a)?).num_days())
    });
    engine.register_fn("close", |reason: &str| -> Map {
        let mut m = Map::new();
        m.insert("kind".into(), "close".into());
        m.insert("reason".into(), reason.into());
        m
    });
    engine.register_fn("skip", |step: &str, reason: &str| -> Map {
        let mut m = Map::new();
        m.insert("kind".into(), "skip".into());
        m.insert("step".into(), step.into());
        m.insert("reason".into(), reason.into());
        m
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

/// Runs `f` on the rule set's calendar (the shipped one outside an evaluation).
fn with_calendar<T>(f: impl FnOnce(&super::calendar::Calendar) -> T) -> T {
    if LOOKUP.is_set() { LOOKUP.with(|l| f(&l.calendar)) } else { f(super::calendar::Calendar::builtin()) }
}

fn parse_day(day: &str) -> Result<NaiveDate, Box<rhai::EvalAltResult>> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| format!("{day:?} is not a date YYYY-MM-DD").into())
}

fn out_of_range(day: &str) -> Box<rhai::EvalAltResult> {
    format!("{day} moved out of the calendar's range").into()
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
        Lookup::new(
            HashMap::new(),
            NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            Arc::default(),
            Arc::new(crate::engine::calendar::Calendar::builtin().clone()),
        )
    }

    fn input() -> RuleInput {
        RuleInput {
            event: Dynamic::from_map(Map::new()),
            trigger: Dynamic::UNIT,
            case: Dynamic::UNIT,
            step: Dynamic::UNIT,
            params: Dynamic::UNIT,
        }
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
    fn inputs_are_seen_at_run_time_not_folded_at_compile_time() {
        let r = rules_with(r#"[close(today)]"#).unwrap();
        let d = r.run("r", &input(), &lookup()).unwrap();
        assert_eq!(d[0], Decision::Close { reason: "2026-11-27".into() });
    }

    #[test]
    fn date_helpers_and_case_decisions() {
        let r = rules_with(
            r#"[close(add_days("2026-12-30", 3)), skip("r7", add_months("2026-01-31", 1)), days_between("2026-01-01", "2026-03-01")]"#,
        )
        .unwrap();
        let err = r.run("r", &input(), &lookup()).unwrap_err();
        assert!(err.contains("decision 2"), "a bare number is not a decision: {err}");
        let r = rules_with(r#"[close(add_days("2026-12-30", 3)), skip("r7", add_months("2026-01-31", 1))]"#).unwrap();
        let d = r.run("r", &input(), &lookup()).unwrap();
        assert_eq!(d[0], Decision::Close { reason: "2027-01-02".into() });
        assert_eq!(d[1], Decision::Skip { step: "r7".into(), reason: "2026-02-28".into() });
        let r = rules_with(r#"add_days("2026-02-30", 1)"#).unwrap();
        assert!(r.run("r", &input(), &lookup()).unwrap_err().contains("not a date"));
    }

    #[test]
    fn a_wrong_decision_shape_is_an_error() {
        let r = rules_with(r#"#{ kind: "telegram" }"#).unwrap();
        assert!(r.run("r", &input(), &lookup()).is_err());
    }

    #[test]
    fn business_days_skip_holidays_and_refuse_years_the_calendar_lacks() {
        let r = rules_with(
            r#"[close(add_business_days("2026-12-23", 2)), skip(add_business_days("2026-12-28", -1), `${is_business_day("2026-06-27")}`)]"#,
        )
        .unwrap();
        let d = r.run("r", &input(), &lookup()).unwrap();
        assert_eq!(d[0], Decision::Close { reason: "2026-12-29".into() });
        assert_eq!(d[1], Decision::Skip { step: "2026-12-23".into(), reason: "true".into() });
        let r = rules_with(r#"[close(add_business_days("2040-01-02", 1))]"#).unwrap();
        let e = r.run("r", &input(), &lookup()).unwrap_err();
        assert!(e.contains("covers 2025..2030"), "{e}");
    }
}
