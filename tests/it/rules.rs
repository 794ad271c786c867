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
