//! Chains: timers that survive restarts and fire once, dated steps, events
//! that end a case, definitions that change on a date, reloads that keep
//! the running set when the new one is broken, and the shipped library's
//! own test cases.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use proactive::clock::Clock;
use proactive::engine::definitions::OpensFrom;
use proactive::engine::rule_tests;
use proactive::engine::{Engine, LiveRules, RuleSet};
use proactive::events::{RawRecord, ingest_records};
use proactive::store::Db;

use super::support;

fn definition(id: &str, version: i64, valid: &str, body: &str) -> String {
    format!(
        r#"
id = "{id}"
version = {version}
status = "active"
{valid}
name = {{ lv = "Tests", en = "Test" }}
description = "A chain for the tests."
owner = "Test"
legal_basis = "Test"
services = []
channels = ["email"]
[[purposes]]
id = "{id}"
mode = "opt-out"
description = "Test."
{body}
[templates.remind.lv]
subject = "Atgādinājums"
text = "Solis {{{{ step }}}}"
"#
    )
}

const REMINDERS: &str = r#"
[trigger]
events = ["document.issued"]
fact = "{data.document}:{data.number}"
anchor = "data.expires"
[[steps]]
id = "issued"
rule = "remind.rhai"
[[steps]]
id = "r30"
rule = "remind.rhai"
at = "-30d"
[[steps]]
id = "r7"
rule = "remind.rhai"
at = "-7d"
[[steps]]
id = "after14"
rule = "remind.rhai"
after = "14d"
[[cancel]]
events = ["document.issued"]
same = ["document"]
reason = "a new document was issued"
"#;

/// A folder with the given definitions and one rule that sends `remind` to the trigger's subject.
fn rule_dir(defs: &[(&str, String)]) -> (tempfile::TempDir, Arc<RuleSet>) {
    let dir = tempfile::tempdir().unwrap();
    let (le, rules) = (dir.path().join("life-events"), dir.path().join("rules"));
    std::fs::create_dir_all(&le).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    for (name, text) in defs {
        std::fs::write(le.join(name), text).unwrap();
    }
    std::fs::write(rules.join("remind.rhai"), r#"[notice(trigger.subject, "remind", #{ step: step.id })]"#).unwrap();
    let set = RuleSet::load(&le, &rules).expect("the test definitions load");
    (dir, Arc::new(set))
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn document(id: &str, subject: &str, number: &str, day: &str, expires: &str) -> serde_json::Value {
    serde_json::json!({
        "source": "pmlp", "id": id, "type": "document.issued", "subject": subject,
        "occurred_at": format!("{day}T10:00:00+02:00"),
        "data": { "document": "passport", "number": number, "issued": day, "expires": expires }
    })
}

async fn ingest(db: &Db, rules: &RuleSet, records: &[serde_json::Value], now: DateTime<Utc>) {
    let raw: Vec<RawRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| RawRecord { location: format!("t:{i}"), text: r.to_string() })
        .collect();
    let purposes: Vec<String> = rules.situations.iter().flat_map(|d| d.purposes.iter().map(|p| p.id.clone())).collect();
    let declared = move |p: &str| purposes.iter().any(|x| x == p);
    let c = ingest_records(db, None, &raw, &declared, None, now.timestamp_millis()).await.unwrap();
    assert_eq!(c.quarantined, 0, "test records validate");
}

/// (step, state) of every notice, in due order.
async fn steps(db: &Db) -> Vec<(String, String)> {
    db.notices_of(None).await.unwrap().into_iter().map(|n| (n.step, n.state)).collect()
}

const PERSON: &str = "150394-11002";

#[tokio::test]
async fn a_pending_timer_fires_once_after_restarts_and_dated_steps_follow_the_expiry() {
    let (_dir, rules) =
        rule_dir(&[("reminders.toml", definition("reminders", 1, "valid_from = 2024-01-01", REMINDERS))]);
    for t in support::stores().await {
        let t0 = at("2026-12-01T10:00:00+02:00");
        ingest(&t.db, &rules, &[document("d1", PERSON, "LV1", "2026-12-01", "2027-03-01")], t0).await;
        let engine = Engine::new(t.db.clone(), rules.clone(), Clock::manual(t0), 100);
        let r = engine.run_all_due(&|| false).await.unwrap();
        assert_eq!((r.cases, r.notices), (1, 1), "{}: the start step ran", t.name);
        assert_eq!(t.db.pending_timer_count().await.unwrap(), 1, "{}", t.name);
        drop(engine);

        // A new process, weeks later: the 14-day step is due, the dated ones are not.
        let db = if t.name == "sqlite" { Db::open(&t.url, 2).await.unwrap() } else { t.db.clone() };
        let clock = Clock::manual(t0 + Duration::days(20));
        let engine = Engine::new(db.clone(), rules.clone(), clock.clone(), 100);
        assert_eq!(engine.run_due_timers().await.unwrap().notices, 1, "{}", t.name);
        assert_eq!(engine.run_due_timers().await.unwrap().timers, 0, "{}: nothing fires twice", t.name);
        drop(engine);

        // Another restart, and a jump past both dated reminders: they fire in order, once.
        let clock = Clock::manual(at("2027-02-28T12:00:00+02:00"));
        let engine = Engine::new(db.clone(), rules.clone(), clock.clone(), 100);
        let r = engine.run_all_due(&|| false).await.unwrap();
        assert_eq!(r.notices, 2, "{}", t.name);
        assert_eq!(engine.run_all_due(&|| false).await.unwrap().notices, 0, "{}", t.name);
        let made = db.notices_of(None).await.unwrap();
        let order: Vec<&str> = made.iter().map(|n| n.step.as_str()).collect();
        assert_eq!(order, ["issued", "after14", "r30", "r7"], "{}: in due order", t.name);
        let r30 = made.iter().find(|n| n.step == "r30").unwrap();
        assert_eq!(
            r30.due_at,
            at("2027-01-30T09:00:00+02:00").timestamp_millis(),
            "{}: 30 days before, 09:00 Riga",
            t.name
        );
        assert_eq!(db.pending_timer_count().await.unwrap(), 0, "{}: the case is done", t.name);
        let case = &db.cases_of_subject(PERSON).await.unwrap()[0];
        assert_eq!(case.state, "done", "{}", t.name);
        if t.name == "sqlite" {
            db.close().await;
        }
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_new_document_cancels_the_old_ones_queued_notices_and_waiting_steps_but_not_its_own_case() {
    let (_dir, rules) =
        rule_dir(&[("reminders.toml", definition("reminders", 1, "valid_from = 2024-01-01", REMINDERS))]);
    for t in support::stores().await {
        let t0 = at("2026-12-01T10:00:00+02:00");
        ingest(&t.db, &rules, &[document("d1", PERSON, "LV1", "2026-12-01", "2027-03-01")], t0).await;
        let clock = Clock::manual(t0);
        let engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 100);
        engine.run_all_due(&|| false).await.unwrap();
        // Three weeks on: the 14-day notice is queued (not yet sent) when the new passport arrives.
        clock.set(t0 + Duration::days(21));
        engine.run_all_due(&|| false).await.unwrap();
        ingest(&t.db, &rules, &[document("d2", PERSON, "LV2", "2026-12-22", "2036-12-22")], clock.now()).await;
        engine.run_all_due(&|| false).await.unwrap();
        let cases = t.db.cases_of_subject(PERSON).await.unwrap();
        assert_eq!(cases.len(), 2, "{}", t.name);
        let old = cases.iter().find(|c| c.fact == "passport:LV1").unwrap();
        let new = cases.iter().find(|c| c.fact == "passport:LV2").unwrap();
        assert_eq!(old.state, "cancelled", "{}", t.name);
        assert!(old.closed_reason.as_deref().unwrap().contains("a new document was issued"), "{}", t.name);
        assert_eq!(new.state, "open", "{}: the new document's own case goes on", t.name);
        let notices = t.db.notices_of(Some(&old.id)).await.unwrap();
        let queued = notices.iter().find(|n| n.step == "after14").unwrap();
        assert_eq!(queued.state, "cancelled", "{}: the queued notice is withdrawn", t.name);
        assert!(queued.last_error.as_deref().unwrap().contains("new document"), "{}", t.name);
        for s in ["r30", "r7"] {
            assert!(old.plan[s].why.as_deref().unwrap().contains("new document"), "{}: {s}", t.name);
        }
        clock.set(at("2027-03-02T12:00:00+02:00"));
        engine.run_all_due(&|| false).await.unwrap();
        assert!(
            t.db.notices_of(Some(&old.id)).await.unwrap().iter().all(|n| n.step != "r30"),
            "{}: no reminder about the old passport",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_death_ends_the_cases_about_the_person_and_an_annulment_what_its_change_started() {
    let (_dir, rules) =
        rule_dir(&[("reminders.toml", definition("reminders", 1, "valid_from = 2024-01-01", REMINDERS))]);
    let t = support::sqlite().await;
    let t0 = at("2026-12-01T10:00:00+02:00");
    let other = "200190-11008";
    ingest(
        &t.db,
        &rules,
        &[
            document("d1", PERSON, "LV1", "2026-12-01", "2027-03-01"),
            document("d2", other, "LV9", "2026-12-01", "2027-03-01"),
        ],
        t0,
    )
    .await;
    let clock = Clock::manual(t0);
    let engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 100);
    engine.run_all_due(&|| false).await.unwrap();
    let death = serde_json::json!({
        "source": "pmlp", "id": "x1", "type": "death.registered", "subject": PERSON,
        "occurred_at": "2026-12-02T08:00:00+02:00", "data": { "death_date": "2026-12-01" }
    });
    let annul = serde_json::json!({
        "source": "pmlp", "id": "x2", "type": "change.annulled", "subject": other,
        "occurred_at": "2026-12-02T09:00:00+02:00", "data": { "annuls": "d2" }
    });
    clock.set(at("2026-12-02T10:00:00+02:00"));
    ingest(&t.db, &rules, &[death, annul], clock.now()).await;
    engine.run_all_due(&|| false).await.unwrap();
    let dead = &t.db.cases_of_subject(PERSON).await.unwrap()[0];
    assert_eq!(dead.state, "cancelled");
    assert!(dead.closed_reason.as_deref().unwrap().contains("died"));
    let annulled = &t.db.cases_of_subject(other).await.unwrap()[0];
    assert_eq!(annulled.state, "cancelled");
    assert!(annulled.closed_reason.as_deref().unwrap().contains("d2"), "{:?}", annulled.closed_reason);
    let profile = t.db.load_profiles(&[other.to_string()]).await.unwrap().pop().unwrap();
    assert!(profile.documents.is_empty(), "the annulled document is gone from the profile");
    // The start notices were still queued: both withdrawn, with their reasons.
    let states = steps(&t.db).await;
    assert_eq!(states, [("issued".to_string(), "cancelled".to_string()), ("issued".into(), "cancelled".into())]);
    t.cleanup().await;
}

#[tokio::test]
async fn cases_keep_the_version_they_started_under() {
    let v1 = r#"
[trigger]
events = ["birth.registered"]
[[steps]]
id = "hello_v1"
rule = "remind.rhai"
[[steps]]
id = "followup_v1"
rule = "remind.rhai"
after = "30d"
"#;
    let v2 = r#"
[trigger]
events = ["birth.registered"]
[[steps]]
id = "hello_v2"
rule = "remind.rhai"
"#;
    let (_dir, rules) = rule_dir(&[
        ("law_v1.toml", definition("law", 1, "valid_from = 2024-01-01\nvalid_to = 2027-01-01", v1)),
        ("law_v2.toml", definition("law", 2, "valid_from = 2027-01-01", v2)),
    ]);
    for t in support::stores().await {
        let clock = Clock::manual(at("2026-12-20T12:00:00+02:00"));
        let engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 100);
        ingest(&t.db, &rules, &[support::birth("b1", "201226-21007", None, None, "2026-12-20")], clock.now()).await;
        engine.run_all_due(&|| false).await.unwrap();
        clock.set(at("2027-01-05T12:00:00+02:00"));
        ingest(&t.db, &rules, &[support::birth("b2", "050127-21001", None, None, "2027-01-05")], clock.now()).await;
        engine.run_all_due(&|| false).await.unwrap();
        clock.set(at("2027-02-10T12:00:00+02:00"));
        engine.run_all_due(&|| false).await.unwrap();
        let made = t.db.notices_of(None).await.unwrap();
        let by: Vec<(String, String)> = made.iter().map(|n| (n.recipient.clone(), n.step.clone())).collect();
        assert_eq!(
            by,
            [
                ("201226-21007".to_string(), "hello_v1".to_string()),
                ("050127-21001".into(), "hello_v2".into()),
                ("201226-21007".into(), "followup_v1".into()),
            ],
            "{}: the December case ran its v1 follow-up after v2 came into force",
            t.name
        );
        t.cleanup().await;
    }
}

/// A birth-date case waits under the version in force at the birth; it opens
/// under the one in force when it comes near, even when that version adds a
/// step at the birth and so no longer waits: the person still gets the dated
/// step, and the long-past birth step is skipped with its reason.
#[tokio::test]
async fn a_waiting_birth_date_case_opens_under_the_version_in_force_when_it_comes_near() {
    let dated = |extra: &str| {
        format!(
            r#"
[trigger]
events = ["birth.registered"]
anchor = "data.birth_date"
{extra}
[[steps]]
id = "tenth_birthday"
rule = "remind.rhai"
at = "+10y"
"#
        )
    };
    let v2_start = "[[steps]]\nid = \"at_birth\"\nrule = \"remind.rhai\"\n";
    let (_dir, rules) = rule_dir(&[
        ("ten_v1.toml", definition("ten", 1, "valid_from = 2024-01-01\nvalid_to = 2030-01-01", &dated(""))),
        ("ten_v2.toml", definition("ten", 2, "valid_from = 2030-01-01", &dated(v2_start))),
    ]);
    assert_eq!(rules.get("ten", 1).unwrap().opens_from(), Some(OpensFrom::BirthDate));
    assert_eq!(rules.get("ten", 2).unwrap().opens_from(), None);
    for t in support::stores().await {
        let child = "201226-21007";
        let clock = Clock::manual(at("2026-12-20T12:00:00+02:00"));
        let engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 100);
        ingest(&t.db, &rules, &[support::birth("b1", child, None, None, "2026-12-20")], clock.now()).await;
        engine.run_all_due(&|| false).await.unwrap();
        assert!(t.db.cases_of_subject(child).await.unwrap().is_empty(), "{}: it waits", t.name);
        clock.set(at("2036-01-10T12:00:00+02:00"));
        assert_eq!(engine.run_all_due(&|| false).await.unwrap().cases, 1, "{}", t.name);
        let case = &t.db.cases_of_subject(child).await.unwrap()[0];
        assert_eq!(case.version, 2, "{}: the version in force when it opens", t.name);
        assert_eq!(case.plan["tenth_birthday"].due, at("2036-12-20T09:00:00+02:00").timestamp_millis(), "{}", t.name);
        assert!(t.db.notices_of(None).await.unwrap().is_empty(), "{}: no birth step ten years late", t.name);
        clock.set(at("2036-12-21T12:00:00+02:00"));
        engine.run_all_due(&|| false).await.unwrap();
        let steps: Vec<String> = t.db.notices_of(None).await.unwrap().into_iter().map(|n| n.step).collect();
        assert_eq!(steps, ["tenth_birthday"], "{}", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_broken_reload_keeps_the_running_set_and_a_good_one_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (le, rules) = (dir.path().join("life-events"), dir.path().join("rules"));
    std::fs::create_dir_all(&le).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(le.join("reminders.toml"), definition("reminders", 1, "valid_from = 2024-01-01", REMINDERS))
        .unwrap();
    std::fs::write(rules.join("remind.rhai"), r#"[notice(trigger.subject, "remind", #{ step: step.id })]"#).unwrap();
    let mut cfg = proactive::config::Config::default();
    cfg.paths.life_events = le.clone();
    cfg.paths.rules = rules.clone();
    let live = LiveRules::from(Arc::new(RuleSet::load(&le, &rules).unwrap()));
    let before = live.get();

    std::fs::write(rules.join("remind.rhai"), "let x = ;").unwrap();
    proactive::serve::reload(&cfg, &live);
    assert!(Arc::ptr_eq(&before, &live.get()), "a set that does not compile is rejected");

    std::fs::write(rules.join("remind.rhai"), r#"[notice(trigger.subject, "remind", #{ step: "new" })]"#).unwrap();
    proactive::serve::reload(&cfg, &live);
    assert!(!Arc::ptr_eq(&before, &live.get()), "a good set is put in force");
}

#[tokio::test]
async fn offsets_that_do_not_parse_and_unknown_event_types_are_named_by_rules_check() {
    let bad = r#"
[trigger]
events = ["document.issued"]
anchor = "data.expires"
[[steps]]
id = "r30"
rule = "remind.rhai"
at = "-30"
unless = ["application.filed"]
[[cancel]]
events = ["document.renewed"]
reason = "x"
"#;
    let dir = tempfile::tempdir().unwrap();
    let (le, rules) = (dir.path().join("life-events"), dir.path().join("rules"));
    std::fs::create_dir_all(&le).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(le.join("bad.toml"), definition("bad", 1, "valid_from = 2024-01-01", bad)).unwrap();
    std::fs::write(rules.join("remind.rhai"), "[]").unwrap();
    let errors = RuleSet::load(&le, &rules).err().expect("the set is rejected").join("\n");
    assert!(errors.contains("step \"r30\": at: expected a unit"), "{errors}");
    assert!(errors.contains("step \"r30\": unless: unknown event type \"application.filed\""), "{errors}");
    assert!(errors.contains("cancel[0].events: unknown event type \"document.renewed\""), "{errors}");
    assert!(errors.contains("bad.toml"), "{errors}");
}

#[tokio::test]
async fn the_shipped_library_passes_its_own_test_cases() {
    let root = support::root();
    let rules = Arc::new(RuleSet::load(&root.join("life-events"), &root.join("rules")).expect("the library loads"));
    let files = rule_tests::find_test_files(&root.join("rules"));
    let ids: Vec<String> = rules.situations.iter().map(|d| d.id.clone()).collect();
    for id in &ids {
        let file = root.join("rules").join(id).join(format!("{id}.test.yaml"));
        assert!(files.contains(&file), "{id} has test cases at {}", file.display());
    }
    let results = rule_tests::run_files(rules, &files).await;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {}\n    {}", r.file, r.name, r.failures.join("\n    ")))
        .collect();
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), results.len(), failed.join("\n"));
    assert!(results.len() >= 3 * ids.len(), "at least three cases per life situation");
}

#[tokio::test]
async fn a_test_case_that_expects_the_wrong_thing_fails_with_a_readable_diff() {
    let (dir, rules) =
        rule_dir(&[("reminders.toml", definition("reminders", 1, "valid_from = 2024-01-01", REMINDERS))]);
    let file = dir.path().join("reminders.test.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
- name: expects a notice on the wrong day
  given:
    events:
      - {{ at: "2026-12-01T10:00:00+02:00", source: pmlp, type: document.issued, subject: "{PERSON}",
          data: {{ document: passport, number: LV1, issued: 2026-12-01, expires: 2027-03-01 }} }}
  until: 2026-12-31
  expect:
    notices:
      - {{ to: "{PERSON}", template: remind, step: issued, on: 2026-12-02 }}
      - {{ to: "{PERSON}", template: remind, step: after14, on: 2026-12-15 }}
"#
        ),
    )
    .unwrap();
    let results = rule_tests::run_files(rules.clone(), std::slice::from_ref(&file)).await;
    let f = results[0].failures.join("\n");
    assert!(f.contains("missing notice: to 150394-11002 template remind step issued on 2026-12-02"), "{f}");
    assert!(f.contains("unexpected notice: { to: 150394-11002, template: remind, step: issued, on: 2026-12-01"), "{f}");
    assert!(!f.contains("step after14 on"), "the right expectation matched: {f}");

    std::fs::write(&file, "- name: x\n  expect: { notices: [ { to: 1 } ] }\n  bogus: 1\n").unwrap();
    let results = rule_tests::run_files(rules, std::slice::from_ref(&file)).await;
    let f = results[0].failures.join("\n");
    assert!(f.contains("reminders.test.yaml:"), "the file and line are named: {f}");
}

#[tokio::test]
async fn a_corrected_expiry_date_moves_the_waiting_steps() {
    let (_dir, rules) =
        rule_dir(&[("reminders.toml", definition("reminders", 1, "valid_from = 2024-01-01", REMINDERS))]);
    let t = support::sqlite().await;
    let clock = Clock::manual(at("2026-12-01T10:00:00+02:00"));
    let engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 100);
    ingest(&t.db, &rules, &[document("d1", PERSON, "LV1", "2026-12-01", "2027-03-01")], clock.now()).await;
    engine.run_all_due(&|| false).await.unwrap();
    // The register corrects the same document's expiry under a new change id: same fact, same case.
    ingest(&t.db, &rules, &[document("d1-fix", PERSON, "LV1", "2026-12-01", "2027-06-01")], clock.now()).await;
    engine.run_all_due(&|| false).await.unwrap();
    let cases = t.db.cases_of_subject(PERSON).await.unwrap();
    assert_eq!(cases.len(), 1, "one case per document");
    assert_eq!(
        cases[0].plan["r30"].due,
        at("2027-05-02T09:00:00+03:00").timestamp_millis(),
        "30 days before the new date"
    );
    assert_eq!(
        cases[0].plan["after14"].due,
        at("2026-12-15T10:00:00+02:00").timestamp_millis(),
        "counts from the event"
    );
    let outcomes = t.db.event_outcomes().await.unwrap();
    assert!(outcomes.iter().any(|o| o.outcome == "rescheduled" && o.detail.contains("2027-06-01")), "{outcomes:?}");
    clock.set(at("2027-02-15T12:00:00+02:00"));
    engine.run_all_due(&|| false).await.unwrap();
    assert!(steps(&t.db).await.iter().all(|(s, _)| s != "r30"), "nothing fires on the stale date");
    t.cleanup().await;
}

#[tokio::test]
async fn a_twelve_year_old_birth_record_starts_no_birth_chain_but_schedules_what_is_still_ahead() {
    let root = support::root();
    let rules = Arc::new(RuleSet::load(&root.join("life-events"), &root.join("rules")).unwrap());
    for t in support::stores().await {
        let now = at("2026-12-01T10:00:00+02:00");
        let child = "150614-20001";
        let backfill = support::birth("old", child, Some("150394-11002"), None, "2014-06-15");
        ingest(&t.db, &rules, &[backfill], now).await;
        let clock = Clock::manual(now);
        let engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 100);
        engine.run_all_due(&|| false).await.unwrap();
        let outcomes = t.db.event_outcomes().await.unwrap();
        let birth =
            outcomes.iter().find(|o| o.life_situation == "birth").expect("the birth chain says why it did not start");
        assert!(birth.detail.contains("max_age"), "{}: {}", t.name, birth.detail);
        let school = outcomes.iter().find(|o| o.life_situation == "school_age").expect("school age says why");
        assert!(school.detail.contains("was due 2020"), "{}: {}", t.name, school.detail);
        // The 18th birthday (2032-06-15) and the pension age are years ahead:
        // no case is kept for them yet, only the child's profile.
        assert!(t.db.cases_of_subject(child).await.unwrap().is_empty(), "{}", t.name);
        assert_eq!(t.db.load_profiles(&[child.to_string()]).await.unwrap()[0].birth_seq, Some(1), "{}", t.name);

        // Within 400 days of the 18th birthday, its case opens, once; the pension's does not.
        clock.set(at("2031-05-20T10:00:00+03:00"));
        assert_eq!(engine.run_all_due(&|| false).await.unwrap().cases, 1, "{}", t.name);
        assert_eq!(engine.open_ahead().await.unwrap().cases, 0, "{}: opened once", t.name);
        clock.set(at("2031-05-21T10:00:00+03:00"));
        assert_eq!(engine.run_all_due(&|| false).await.unwrap().cases, 0, "{}: opened once", t.name);
        let cases = t.db.cases_of_subject(child).await.unwrap();
        let kinds: Vec<&str> = cases.iter().map(|c| c.life_situation.as_str()).collect();
        assert_eq!(kinds, ["coming_of_age"], "{}", t.name);
        let adult = &cases[0];
        assert_eq!(adult.trigger_seq, 1, "{}: it counts from the birth record", t.name);
        assert_eq!(
            adult.plan["adulthood"].due,
            at("2032-06-15T09:00:00+03:00").timestamp_millis(),
            "{}: on the 18th birthday",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_document_years_from_expiry_waits_in_the_profile_and_opens_once_before_its_first_reminder() {
    let root = support::root();
    let rules = Arc::new(RuleSet::load(&root.join("life-events"), &root.join("rules")).unwrap());
    assert_eq!(rules.get("passport_expiry", 1).unwrap().opens_from(), Some(OpensFrom::Document));
    for t in support::stores().await {
        let clock = Clock::manual(at("2026-12-10T12:00:00+02:00"));
        let engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 100);
        let records = [
            document("d1", PERSON, "LV1111111", "2026-12-10", "2036-12-10"),
            // Another holder's passport, replaced before its case opens.
            document("d2", "050561-11002", "LV3333333", "2026-12-10", "2036-12-10"),
            document("d3", "050561-11002", "LV4444444", "2030-01-10", "2040-01-10"),
        ];
        ingest(&t.db, &rules, &records[..2], clock.now()).await;
        engine.run_all_due(&|| false).await.unwrap();
        assert!(t.db.cases_of_subject(PERSON).await.unwrap().is_empty(), "{}: no case for ten years", t.name);
        let profile = &t.db.load_profiles(&[PERSON.to_string()]).await.unwrap()[0];
        let waiting = proactive::engine::openings::waiting(&rules, profile, &[], clock.now_ms());
        let first: Vec<(&str, &str, &str)> =
            waiting.iter().map(|w| (w.life_situation.as_str(), w.on.as_str(), w.step.as_str())).collect();
        assert!(first.contains(&("passport_expiry", "passport", "reminder_90")), "{}: {first:?}", t.name);

        clock.set(at("2030-01-10T12:00:00+02:00"));
        ingest(&t.db, &rules, &records[2..], clock.now()).await;
        engine.run_all_due(&|| false).await.unwrap();
        // On 2035-08-01 the horizon reaches 2036-09-04, short of the first
        // reminder (2036-09-11); it moves on in steps of 30 days.
        clock.set(at("2035-08-01T12:00:00+03:00"));
        assert_eq!(engine.run_all_due(&|| false).await.unwrap().cases, 0, "{}: not yet", t.name);
        clock.set(at("2035-09-01T12:00:00+03:00"));
        assert_eq!(engine.run_all_due(&|| false).await.unwrap().cases, 1, "{}: only the one in force", t.name);
        assert_eq!(engine.open_ahead().await.unwrap().cases, 0, "{}: opened once", t.name);
        assert!(t.db.cases_of_subject("050561-11002").await.unwrap().is_empty(), "{}: replaced", t.name);
        let case = &t.db.cases_of_subject(PERSON).await.unwrap()[0];
        assert_eq!((case.life_situation.as_str(), case.fact.as_str()), ("passport_expiry", "passport:LV1111111"));
        assert_eq!(case.trigger_seq, 1, "{}: it counts from the document's issue", t.name);
        let due = |s: &str| case.plan[s].due;
        assert_eq!(due("reminder_90"), at("2036-09-11T09:00:00+03:00").timestamp_millis(), "{}", t.name);
        assert_eq!(due("reminder_7"), at("2036-12-03T09:00:00+02:00").timestamp_millis(), "{}", t.name);
        let profile = &t.db.load_profiles(&[PERSON.to_string()]).await.unwrap()[0];
        let opened = [(case.life_situation.clone(), case.fact.clone())];
        let waiting = proactive::engine::openings::waiting(&rules, profile, &opened, clock.now_ms());
        assert!(waiting.iter().all(|w| w.life_situation != "passport_expiry"), "{}: {waiting:?}", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_shadow_definition_records_what_it_would_send_and_sends_nothing() {
    let shadow = definition("reminders", 1, "valid_from = 2024-01-01", REMINDERS)
        .replace("status = \"active\"", "status = \"shadow\"");
    let (dir, rules) = rule_dir(&[("reminders.toml", shadow)]);
    let t = support::sqlite().await;
    let out = tempfile::tempdir().unwrap();
    let mut cfg = support::config(&t.url, out.path());
    cfg.paths.life_events = dir.path().join("life-events");
    cfg.paths.rules = dir.path().join("rules");
    let app = proactive::app::App::open(cfg, Clock::manual(at("2026-12-01T10:00:00+02:00"))).await.unwrap();
    ingest(&app.db, &rules, &[document("d1", PERSON, "LV1", "2026-12-01", "2027-03-01")], app.clock.now()).await;
    let r = app.engine().run_all_due(&|| false).await.unwrap();
    assert_eq!(r.notices, 1);
    assert_eq!(app.delivery().run_until_idle().await.unwrap().claimed, 0, "nothing is sent");
    assert_eq!(steps(&app.db).await, [("issued".to_string(), "shadow".to_string())]);
    t.cleanup().await;
}

#[tokio::test]
async fn a_notice_to_a_minor_goes_to_the_parents_and_one_to_a_mandator_to_the_representative() {
    let (_dir, rules) =
        rule_dir(&[("reminders.toml", definition("reminders", 1, "valid_from = 2024-01-01", REMINDERS))]);
    let t = support::sqlite().await;
    let now = at("2026-12-01T10:00:00+02:00");
    let (child, mother, father, adult, rep) =
        ("150614-20001", "150394-11002", "020792-11002", "200190-11008", "300588-11007");
    let mandate = serde_json::json!({
        "source": "portal", "id": "m1", "type": "mandate.granted", "subject": adult,
        "occurred_at": "2026-11-30T10:00:00+02:00",
        "data": { "representative": rep, "purposes": ["reminders"], "copy": true }
    });
    ingest(
        &t.db,
        &rules,
        &[
            support::birth("b", child, Some(mother), Some(father), "2014-06-15"),
            mandate,
            document("d1", child, "LV1", "2026-12-01", "2031-12-01"),
            document("d2", adult, "LV2", "2026-12-01", "2036-12-01"),
        ],
        now,
    )
    .await;
    Engine::new(t.db.clone(), rules.clone(), Clock::manual(now), 100).run_all_due(&|| false).await.unwrap();
    let mut to: Vec<(String, String)> =
        t.db.notices_of(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.step == "issued")
            .map(|n| (n.recipient, n.state))
            .collect();
    to.sort();
    let mut want = vec![
        (father.to_string(), "pending".to_string()),
        (mother.into(), "pending".into()),
        (adult.into(), "pending".into()),
        (rep.into(), "pending".into()),
    ];
    want.sort();
    assert_eq!(
        to, want,
        "the 12-year-old's notice goes to both parents; the adult's to the representative and, as a copy, to them"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_company_without_an_e_address_is_reached_through_its_officers_and_an_assisted_person_through_their_helper() {
    let companies = r#"
[trigger]
events = ["company.registered", "address.declared"]
[[steps]]
id = "issued"
rule = "remind.rhai"
"#;
    let (_dir, rules) =
        rule_dir(&[("companies.toml", definition("companies", 1, "valid_from = 2024-01-01", companies))]);
    let t = support::sqlite().await;
    let now = at("2026-12-01T10:00:00+02:00");
    let company = proactive::events::codes::valid_test_regno(7);
    let (officer, assisted, helper) = ("150394-11002", "200190-11008", "300588-11007");
    let ev = |id: &str, ty: &str, subject: &str, data: serde_json::Value| {
        serde_json::json!({ "source": "ur", "id": id, "type": ty, "subject": subject,
            "occurred_at": "2026-12-01T09:00:00+02:00", "data": data })
    };
    ingest(
        &t.db,
        &rules,
        &[
            ev("o1", "company.officer_appointed", &company, serde_json::json!({ "officer": officer, "role": "valdes loceklis" })),
            ev("a1", "assistance.declared", assisted, serde_json::json!({ "representative": helper })),
            ev("r1", "company.registered", &company,
                serde_json::json!({ "name": "SIA \"Tests\"", "legal_form": "SIA", "registered": "2026-12-01", "address": "Rīga" })),
            ev("x1", "address.declared", assisted,
                serde_json::json!({ "address": "Rīga, Brīvības iela 1", "municipality": "Rīga", "since": "2026-12-01" })),
        ],
        now,
    )
    .await;
    Engine::new(t.db.clone(), rules.clone(), Clock::manual(now), 100).run_all_due(&|| false).await.unwrap();
    let mut to: Vec<String> = t.db.notices_of(None).await.unwrap().into_iter().map(|n| n.recipient).collect();
    to.sort();
    assert_eq!(to, [officer, helper], "the officer for the company, the helper for the assisted person");
    t.cleanup().await;
}

/// A backlog taken in larger batches after the first full one (a backfill)
/// ends exactly as the same backlog in small batches: the same cases with
/// the same plans, notices and drafts, in fewer commits. Both runs batch
/// across many people's related events (parents, documents, marriages), so
/// a batch that saw only part of what the one before it carried shows here.
#[tokio::test]
async fn a_backlog_in_larger_batches_ends_as_in_small_ones() {
    let (rules, records, declared) = population(300, 7);
    let clock = Clock::manual(DateTime::parse_from_rfc3339("2026-12-01T09:00:00+02:00").unwrap().to_utc());
    for (small, large) in support::stores().await.into_iter().zip(support::stores().await) {
        let mut seen = Vec::new();
        for (t, backlog) in [(&small, None), (&large, Some(50))] {
            let stored = ingest_records(&t.db, None, &records, &declared, None, clock.now_ms()).await.unwrap();
            assert_eq!(stored.quarantined, 0, "{}", t.name);
            let mut engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 7);
            if let Some(n) = backlog {
                engine = engine.with_backlog_batch(n);
            }
            let r = engine.run_until_idle().await.unwrap();
            assert_eq!(r.events, stored.accepted, "{}", t.name);
            assert_eq!(r.errors, 0, "{}", t.name);
            let expected = match backlog {
                None => stored.accepted.div_ceil(7),
                Some(n) => 1 + (stored.accepted - 7).div_ceil(n),
            };
            assert_eq!(r.batches, expected, "{}: {} events, backlog batch {backlog:?}", t.name, stored.accepted);
            let state = store_state(&t.db).await;
            assert!(state.0.len() > 40, "{}: the population started {} cases", t.name, state.0.len());
            seen.push(state);
        }
        assert!(seen[0] == seen[1], "{}: the backlog in larger batches ended otherwise", small.name);
        small.cleanup().await;
        large.cleanup().await;
    }
}

/// A year fired day by day with [`Engine::fire_through`] — the next batch,
/// of the same day or the next, read and evaluated while the one before it
/// commits — ends exactly as the same year fired one batch at a time with
/// every commit awaited. Batches of 3 cases make several a day, so a batch
/// read while its predecessor's plans are not yet in the store shows here.
#[tokio::test]
async fn a_year_fired_pipelined_ends_as_fired_batch_by_batch() {
    let (rules, records, declared) = population(300, 11);
    let start = DateTime::parse_from_rfc3339("2026-12-01T09:00:00+02:00").unwrap().to_utc();
    let days = || (1..=365).map(move |d| start + Duration::days(d));
    for (serial, pipelined) in support::stores().await.into_iter().zip(support::stores().await) {
        let mut seen = Vec::new();
        for (t, pipelining) in [(&serial, false), (&pipelined, true)] {
            let clock = Clock::manual(start);
            ingest_records(&t.db, None, &records, &declared, None, clock.now_ms()).await.unwrap();
            let engine = Engine::new(t.db.clone(), rules.clone(), clock.clone(), 3);
            engine.run_until_idle().await.unwrap();
            let fired = if pipelining {
                engine.fire_through(days()).await.unwrap()
            } else {
                let mut total = proactive::engine::BatchReport::default();
                for day in days() {
                    clock.set(day);
                    total += engine.open_ahead().await.unwrap();
                    loop {
                        let r = engine.run_due_timers().await.unwrap();
                        if r.timers == 0 {
                            break;
                        }
                        total += r;
                    }
                }
                total
            };
            assert_eq!(fired.errors, 0, "{}", t.name);
            assert!(fired.steps > 20, "{}: a year fired only {} steps", t.name, fired.steps);
            assert!(fired.batches > 20, "{}: a year fired in only {} batches", t.name, fired.batches);
            assert!(t.db.pending_timer_count().await.unwrap() > 0, "{}: later years still wait", t.name);
            seen.push((store_state(&t.db).await, fired.steps, fired.notices));
        }
        assert!(seen[0] == seen[1], "{}: the year fired pipelined ended otherwise", serial.name);
        serial.cleanup().await;
        pipelined.cleanup().await;
    }
}

/// The shipped rules and a generated population's history as records.
fn population(people: usize, seed: u64) -> (Arc<RuleSet>, Vec<RawRecord>, impl Fn(&str) -> bool) {
    use proactive::tools::population::{PopulationSpec, write_jsonl};
    let rules = Arc::new(proactive::tools::simulate::load_rules_dir(&support::root()).unwrap());
    let start = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let mut purposes: Vec<String> =
        rules.situations.iter().flat_map(|d| d.purposes.iter().map(|p| p.id.clone())).collect();
    purposes.sort();
    purposes.dedup();
    let spec = PopulationSpec { people, seed, start, purposes };
    let mut buf = Vec::new();
    write_jsonl(&spec, &mut buf, &mut |_| {}).unwrap();
    let records: Vec<RawRecord> = String::from_utf8(buf)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| RawRecord { location: format!("population:{}", i + 2), text: l.to_string() })
        .collect();
    let declared = {
        let r = rules.clone();
        move |p: &str| r.declares_purpose(p)
    };
    (rules, records, declared)
}

/// Every case (with its plan), notice and draft in the store, each sorted, for comparing runs.
async fn store_state(db: &Db) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut cases = db.all_cases().await.unwrap();
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    let cases: Vec<String> = cases.iter().map(|c| format!("{c:?}")).collect();
    let mut notices: Vec<String> =
        db.notices_of(None).await.unwrap().iter().map(|n| serde_json::to_string(n).unwrap()).collect();
    notices.sort();
    let mut drafts: Vec<String> =
        db.all_drafts().await.unwrap().iter().map(|d| format!("{}:{}", d.reference, d.fields)).collect();
    drafts.sort();
    (cases, notices, drafts)
}
