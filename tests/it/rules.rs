//! A rule that errors or loops forever is recorded against its event and
//! rule; every other rule and event goes on.

use std::sync::Arc;

use proactive::engine::{Engine, RuleSet};
use proactive::events::{RawRecord, ingest_records};

use super::support;

const LOOPING: &str = r#"
id = "looping"
version = 1
status = "active"
valid_from = "2024-01-01"
name = { lv = "Cilpa" }
description = "A broken rule, for the test."
owner = "Test"
legal_basis = "Test"
services = []
channels = ["email"]
[[purposes]]
id = "looping"
mode = "opt-out"
description = "Test."
[trigger]
events = ["birth.registered"]
[[steps]]
id = "spin"
rule = "looping.rhai"
[templates.t.lv]
subject = "x"
text = "x"
"#;

#[tokio::test]
async fn a_looping_rule_is_recorded_and_the_others_go_on() {
    let t = support::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let (le, rules) = (dir.path().join("life-events"), dir.path().join("rules"));
    std::fs::create_dir_all(&le).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    let hello = LOOPING.replace("looping", "hello").replace("\"spin\"", "\"greet\"");
    std::fs::write(le.join("hello.toml"), hello).unwrap();
    std::fs::write(rules.join("hello.rhai"), "parents(event.subject).map(|p| notice(p, \"t\"))").unwrap();
    std::fs::write(le.join("looping.toml"), LOOPING).unwrap();
    // Loops only for one child, so the same rule still works for the others.
    std::fs::write(rules.join("looping.rhai"), "if event.subject == \"321118-20001\" { loop {} } []").unwrap();

    let set = Arc::new(RuleSet::load(&le, &rules).expect("the rule set loads"));
    let records: Vec<RawRecord> = [
        support::birth("b1", "321118-20001", Some("150394-11002"), None, "2026-11-18"),
        support::birth("b2", "321120-20002", Some("200190-11008"), None, "2026-11-20"),
    ]
    .iter()
    .enumerate()
    .map(|(i, r)| RawRecord { location: format!("t:{i}"), text: r.to_string() })
    .collect();
    let declared = |p: &str| p == "hello" || p == "looping";
    ingest_records(&t.db, None, &records, &declared, None, 0).await.unwrap();
    let engine = Engine::new(t.db.clone(), set, support::demo_clock(), 100);
    let r = engine.run_until_idle().await.unwrap();
    assert_eq!(r.events, 2);
    assert_eq!(r.errors, 1, "one looping evaluation");
    assert_eq!(r.notices, 2, "both births still reach their mothers");
    let outcomes = t.db.event_outcomes().await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].life_situation, "looping");
    assert_eq!(outcomes[0].step.as_deref(), Some("spin"));
    assert!(outcomes[0].detail.contains("looping.rhai"), "{}", outcomes[0].detail);
    assert!(outcomes[0].detail.to_lowercase().contains("too many operations"), "{}", outcomes[0].detail);
    t.cleanup().await;
}

#[test]
fn a_broken_definition_set_reports_every_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let (le, rules) = (dir.path().join("life-events"), dir.path().join("rules"));
    std::fs::create_dir_all(&le).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(le.join("a.toml"), LOOPING.replace("version = 1", "version = \"one\"")).unwrap();
    std::fs::write(
        le.join("b.toml"),
        LOOPING.replace("looping", "other").replace("birth.registered", "birth.registred"),
    )
    .unwrap();
    std::fs::write(rules.join("other.rhai"), "let = 1;").unwrap();
    let errors = RuleSet::load(&le, &rules).err().expect("the set must not load");
    let all = errors.join("\n");
    assert!(all.contains("a.toml:3:11: invalid type"), "the TOML error names its line: {all}");
    assert!(all.contains("unknown event type \"birth.registred\""), "{all}");
    assert!(all.contains("other.rhai:1:"), "the script error names its line: {all}");
}

#[tokio::test]
async fn pipelined_batches_see_what_the_batch_before_them_wrote() {
    for t in support::stores().await {
        let set =
            Arc::new(RuleSet::load(&support::root().join("life-events"), &support::root().join("rules")).unwrap());
        let death = serde_json::json!({
            "source": "pmlp", "id": "d1", "type": "death.registered", "subject": "020792-11002",
            "occurred_at": "2026-11-19T08:00:00+02:00", "data": { "death_date": "2026-11-19" }
        });
        let records: Vec<RawRecord> = [
            death,
            support::birth("b1", "321120-20002", Some("150394-11002"), Some("020792-11002"), "2026-11-20"),
            support::birth("b1-corrected", "321120-20002", Some("150394-11002"), Some("020792-11002"), "2026-11-20"),
        ]
        .iter()
        .enumerate()
        .map(|(i, r)| RawRecord { location: format!("t:{i}"), text: r.to_string() })
        .collect();
        let declared = {
            let set = set.clone();
            move |p: &str| set.declares_purpose(p)
        };
        ingest_records(&t.db, None, &records, &declared, None, 0).await.unwrap();
        // One event a batch: each batch is evaluated while the one before it may still be committing.
        let engine = Engine::new(t.db.clone(), set.clone(), support::demo_clock(), 1);
        let r = engine.run_until_idle().await.unwrap();
        assert_eq!(r.events, 3, "{}", t.name);
        let births: Vec<_> =
            t.db.notices_of(None).await.unwrap().into_iter().filter(|n| n.step == "childbirth_benefit").collect();
        assert_eq!(births.len(), 1, "{}: only the living mother, once", t.name);
        assert_eq!(births[0].recipient, "150394-11002");
        assert_eq!(
            t.db.cases_of_subject("321120-20002").await.unwrap().iter().filter(|c| c.life_situation == "birth").count(),
            1
        );
        let outcomes: Vec<_> =
            t.db.event_outcomes().await.unwrap().into_iter().filter(|o| o.life_situation == "birth").collect();
        assert_eq!(outcomes.len(), 1, "{}: {outcomes:?}", t.name);
        assert_eq!(outcomes[0].outcome, "existing_case");
        assert_eq!(t.db.pending_event_count().await.unwrap(), 0);
        t.cleanup().await;
    }
}

/// A complete definition for the `rules check` tests, in the three languages, with SMS.
const GREETING: &str = r#"id = "greeting"
version = 1
status = "draft"
valid_from = "2026-01-01"
name = { lv = "Sveiciens", en = "Greeting", ru = "Приветствие" }
description = "A greeting, for the tests."
owner = "Testu iestāde"
legal_basis = "Testu likums, 1. pants"
services = ["TEST-1"]
channels = ["eaddress", "sms"]

[[purposes]]
id = "greeting"
mode = "opt-out"
description = "Greeting parents."

[trigger]
events = ["birth.registered"]

[[steps]]
id = "greet"
rule = "greeting.rhai"

[templates.greet.lv]
subject = "Sveiciens"
text = "Sveicam ar bērnu {{ child_name }}."
sms = "Sveicam ar bernu {{ child_name }}!"

[templates.greet.en]
subject = "Greetings"
text = "Congratulations on {{ child_name }}."
sms = "Congratulations on {{ child_name }}!"

[templates.greet.ru]
subject = "Поздравление"
text = "Поздравляем с ребёнком {{ child_name }}."
sms = "Поздравляем: {{ child_name }}!"

[samples.greet]
child_name = "Marta"
"#;

/// A folder with `life-events/greeting.toml` (as given) and its rule.
fn greeting_folder(definition: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("life-events/data")).unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("life-events/greeting.toml"), definition).unwrap();
    std::fs::write(dir.path().join("rules/greeting.rhai"), "parents(event.subject).map(|p| notice(p, \"greet\"))")
        .unwrap();
    dir
}

fn proactive_in(dir: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_proactive"));
    c.current_dir(dir).env_remove("PROACTIVE_CONFIG").env("PROACTIVE_LOG", "error");
    c
}

#[test]
fn the_shipped_library_passes_rules_check_and_says_so_as_json_too() {
    let out = proactive_in(&support::root()).args(["rules", "check"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("ok: 10 life situations"), "{said}");
    assert!(!said.contains("\nerror: ") && !said.starts_with("error: "), "{said}");
    let out = proactive_in(&support::root()).args(["rules", "check", "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for d in &all {
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["column", "file", "level", "line", "message"], "{d}");
        assert_eq!(d["level"], "warning", "the shipped library has warnings at most: {d}");
    }
}

#[test]
fn rules_check_exits_non_zero_on_an_error_and_zero_on_warnings_only() {
    let good = greeting_folder(GREETING);
    let out = proactive_in(good.path()).args(["rules", "check"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // No Russian text and an SMS over the cap: two errors, each with its place.
    let no_ru = GREETING.split("[templates.greet.ru]").next().unwrap().to_string()
        + "[samples.greet]\nchild_name = \"Marta\"\n";
    let broken = greeting_folder(&no_ru.replace(
        "sms = \"Congratulations on {{ child_name }}!\"",
        &format!("sms = \"{}\"", "Congratulations on your child! ".repeat(16)),
    ));
    let out = proactive_in(good.path()).args(["rules", "check"]).arg(broken.path()).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let file = broken.path().join("life-events/greeting.toml").display().to_string();
    assert!(
        said.contains(&format!("error: templates.greet: the Russian (ru) text is missing\n --> {file}:24:12\n")),
        "{said}"
    );
    assert!(said.contains("error: templates.greet.en.sms: the SMS takes 4 segments"), "{said}");
    assert!(said.contains(&format!(" --> {file}:32:7\n")), "{said}");
    assert!(said.ends_with("2 errors and 0 warnings: the rule set is not ready\n"), "{said}");

    let out =
        proactive_in(good.path()).args(["rules", "check", "--format", "json"]).arg(broken.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        all[0],
        serde_json::json!({ "level": "error", "file": file, "line": 24, "column": 12,
            "message": "templates.greet: the Russian (ru) text is missing" })
    );
    assert_eq!((all[1]["line"].as_u64(), all[1]["column"].as_u64()), (Some(32), Some(7)));

    // Jargon alone warns and still passes.
    let jargon = greeting_folder(&GREETING.replace("Congratulations on {{ child_name }}.", "Bring your eID."));
    std::fs::write(jargon.path().join("life-events/data/jargon.toml"), "[[term]]\nwords = [\"eID\"]\n").unwrap();
    let out = proactive_in(jargon.path()).args(["rules", "check"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("warning: templates.greet.en.text: \"eID\" is not explained"), "{said}");
    assert!(said.contains("; 1 warning\n"), "{said}");

    let out = proactive_in(good.path()).args(["rules", "check", "no-such-folder"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds life-events/ and rules/"));
}

/// The code blocks of the guide marked `file=PATH`, written under `dir`; returns their paths in order.
fn write_guide_files(guide: &str, dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut rest = guide;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let header_end = after.find('\n').expect("a fence ends its line");
        let body = &after[header_end + 1..];
        let len = body.find("\n```").expect("every block is closed") + 1;
        if let Some(name) = after[..header_end].split_whitespace().find_map(|w| w.strip_prefix("file=")) {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &body[..len]).unwrap();
            files.push(name.to_string());
        }
        rest = &body[len + 3..];
    }
    files
}

/// The rule author's guide's worked example, built from the guide's own
/// blocks, checks and tests as the guide says it does, and breaking it as the
/// guide suggests prints what the guide shows: the guide cannot rot silently.
#[test]
fn the_guides_worked_example_checks_and_tests_as_the_guide_says() {
    let guide = std::fs::read_to_string(support::root().join("docs/rule-authors-guide.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = write_guide_files(&guide, dir.path());
    assert_eq!(
        files,
        [
            "life-events/child_vaccination.toml",
            "rules/child_vaccination/reminder.rhai",
            "life-events/data/jargon.toml",
            "rules/child_vaccination/child_vaccination.test.yaml"
        ]
    );
    let run = |args: &[&str]| proactive_in(dir.path()).args(args).output().unwrap();
    let shown = |out: &std::process::Output| {
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(guide.contains(&said), "the guide should show what the command prints:\n{said}");
        said
    };

    let out = run(&["rules", "check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(shown(&out), "ok: 1 life situation (1 step) in life-events, rules in rules\n");
    let out = run(&["rules", "test"]);
    assert!(out.status.success());
    assert!(shown(&out).ends_with("2 passed, 0 failed\n"));

    // "Delete the line `child_name = "Marta"` … and run `proactive rules check` again".
    let definition = dir.path().join("life-events/child_vaccination.toml");
    let text = std::fs::read_to_string(&definition).unwrap();
    std::fs::write(&definition, text.replace("child_name = \"Marta\"\n", "")).unwrap();
    let out = run(&["rules", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(shown(&out).starts_with("error: templates.vaccination_reminder.en.subject: uses `child_name`"));
    std::fs::write(&definition, text).unwrap();

    // "the test's first `on: 2027-10-20` changed to `2027-10-21`".
    let cases = dir.path().join("rules/child_vaccination/child_vaccination.test.yaml");
    let text = std::fs::read_to_string(&cases).unwrap();
    std::fs::write(&cases, text.replacen("on: 2027-10-20", "on: 2027-10-21", 1)).unwrap();
    let out = run(&["rules", "test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(shown(&out).ends_with("1 passed, 1 failed\n"));
}
