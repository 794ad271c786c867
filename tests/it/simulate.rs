//! `gen population` and `rules simulate`: a generated population run
//! through a year of the shipped rules, its totals checked against a count
//! made from the generated file itself; a changed rule compared with the
//! shipped ones; the report; bad lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike, Duration, NaiveDate};
use proactive::engine::RuleSet;
use proactive::tools::population::{PopulationSpec, write_jsonl};
use proactive::tools::simulate::{Request, load_rules_dir, simulate};
use serde_json::Value;

use super::support;

fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
}

fn shipped() -> Arc<RuleSet> {
    Arc::new(load_rules_dir(&support::root()).unwrap())
}

fn purposes(rules: &RuleSet) -> Vec<String> {
    let mut p: Vec<String> = rules.situations.iter().flat_map(|d| d.purposes.iter().map(|p| p.id.clone())).collect();
    p.sort();
    p.dedup();
    p
}

fn generate(dir: &Path, people: usize, seed: u64) -> PathBuf {
    let path = dir.join(format!("population-{seed}.jsonl"));
    let spec = PopulationSpec { people, seed, start: start(), purposes: purposes(&shipped()) };
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write_jsonl(&spec, &mut f, &mut |_| {}).unwrap();
    std::io::Write::flush(&mut f).unwrap();
    path
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn day(v: &Value) -> NaiveDate {
    v.as_str().unwrap()[..10].parse().unwrap()
}

fn age_on(birth: NaiveDate, at: NaiveDate) -> i32 {
    at.year() - birth.year() - i32::from((at.month(), at.day()) < (birth.month(), birth.day()))
}

/// How many `reminder_90` notices the shipped passport_expiry chain must
/// make over the year, counted from the generated records alone: each
/// document whose reminder falls in the window, unless its holder died or
/// got a newer document of the same kind before it, goes to the holder, or
/// for a minor to each parent alive on the day (the generator records no
/// guardians). Events happen at noon and reminders go at 09:00, so an event
/// on the reminder's own day comes after it.
fn expected_reminders_90(changes: &[Value], from: NaiveDate, to: NaiveDate) -> usize {
    let mut births: HashMap<&str, (NaiveDate, Vec<&str>)> = HashMap::new();
    let mut deaths: HashMap<&str, NaiveDate> = HashMap::new();
    let mut docs: Vec<(&str, &str, NaiveDate, NaiveDate)> = Vec::new();
    for c in changes {
        let subject = c["subject"].as_str().unwrap();
        let d = &c["data"];
        match c["type"].as_str().unwrap() {
            "birth.registered" => {
                let parents = ["mother", "father"].iter().filter_map(|k| d[*k].as_str()).collect();
                births.insert(subject, (day(&d["birth_date"]), parents));
            }
            "death.registered" => {
                deaths.insert(subject, day(&d["death_date"]));
            }
            "document.issued" => {
                docs.push((subject, d["document"].as_str().unwrap(), day(&d["issued"]), day(&d["expires"])))
            }
            _ => {}
        }
    }
    let alive_on = |code: &str, due: NaiveDate| deaths.get(code).is_none_or(|d| *d >= due);
    let mut n = 0;
    for &(holder, kind, issued, expires) in &docs {
        let due = expires - Duration::days(90);
        if due < from || due > to || !alive_on(holder, due) {
            continue;
        }
        let superseded = docs.iter().any(|&(h, k, i, _)| h == holder && k == kind && i > issued && i < due);
        if superseded {
            continue;
        }
        let (birth, parents) = &births[holder];
        if age_on(*birth, due) >= 18 {
            n += 1;
        } else {
            n += parents.iter().filter(|p| alive_on(p, due)).count();
        }
    }
    n
}

fn request(events: PathBuf) -> Request {
    Request { events, from: None, to: None, out: None, report: None, baseline: None }
}

#[tokio::test]
async fn a_simulated_year_sends_the_passport_reminders_the_file_itself_implies() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 3000, 11);
    let out = dir.path().join("notices.jsonl");
    let req = Request { out: Some(out.clone()), ..request(events.clone()) };
    let o = simulate(shipped(), &req).await.unwrap();
    let s = &o.simulated;
    let window = s.window.unwrap();
    assert_eq!((window.from, window.to), (start(), NaiveDate::from_ymd_opt(2027, 11, 30).unwrap()));
    assert_eq!(s.bad_lines, 0);
    assert_eq!(s.rule_errors, 0, "{:?}", s.rule_error_samples);

    let made: Vec<Value> = records(&out);
    let due_in_window = |r: &Value| day(&r["due"]) >= window.from && day(&r["due"]) <= window.to;
    let reminders = made
        .iter()
        .filter(|r| r["kind"] == "notice" || r["kind"] == "suppressed")
        .filter(|r| r["life_situation"] == "passport_expiry" && r["step"] == "reminder_90" && due_in_window(r))
        .count();
    let expected = expected_reminders_90(&records(&events), window.from, window.to);
    assert!(expected > 20, "the population has documents expiring in the year: {expected}");
    assert_eq!(reminders, expected);

    // The file's records add up to the summary, and every sent notice says how it would go.
    let kind = |k: &str| made.iter().filter(|r| r["kind"] == k).count() as u64;
    assert_eq!((kind("notice"), kind("suppressed"), kind("cancelled")), (s.notices, s.suppressed, s.cancelled));
    for r in made.iter().filter(|r| r["kind"] == "notice") {
        for field in [
            "at",
            "life_situation",
            "version",
            "step",
            "recipient",
            "channel",
            "language",
            "template",
            "purpose",
            "case",
        ] {
            assert!(!r[field].is_null(), "{field} in {r}");
        }
    }
    assert!(made.iter().filter(|r| r["kind"] != "notice").all(|r| r["reason"].is_string()));
    // A year of a few thousand people: births, deaths, documents, companies all have something to send.
    for ls in ["birth", "death", "passport_expiry", "marriage", "school_age"] {
        assert!(s.per_situation.get(ls).is_some_and(|n| *n > 0), "{ls}: {:?}", s.per_situation);
    }
    assert!(s.recipients > 0 && s.recipients as u64 <= s.notices);
}

#[test]
fn the_generator_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let a = std::fs::read(generate(dir.path(), 500, 5)).unwrap();
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let b = std::fs::read(generate(&again, 500, 5)).unwrap();
    let c = std::fs::read(generate(dir.path(), 500, 6)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    // What it writes is what `events import` takes: every record validates.
    let rules = shipped();
    let declared = move |p: &str| rules.declares_purpose(p);
    let text = String::from_utf8(a).unwrap();
    let raw: Vec<proactive::events::RawRecord> = text
        .lines()
        .skip(1)
        .enumerate()
        .map(|(i, l)| proactive::events::RawRecord { location: format!("line {}", i + 2), text: l.to_string() })
        .collect();
    let (ok, bad) = proactive::events::validate_records(None, &raw, &declared);
    assert!(bad.is_empty(), "{:?}", bad.first().map(|b| (&b.location, &b.error)));
    let types: std::collections::HashSet<&str> = ok.iter().map(|e| e.event_type.as_str()).collect();
    for t in [
        "birth.registered",
        "death.registered",
        "marriage.registered",
        "document.issued",
        "company.registered",
        "company.officer_appointed",
        "contact.declared",
        "eaddress.activated",
    ] {
        assert!(types.contains(t), "{t} missing from {types:?}");
    }
}

#[tokio::test]
async fn a_silenced_step_shows_as_exactly_its_notices_lost_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 3000, 12);
    let changed = dir.path().join("changed");
    support::copy_tree(&support::root().join("life-events"), &changed.join("life-events"));
    support::copy_tree(&support::root().join("rules"), &changed.join("rules"));
    std::fs::write(changed.join("rules/birth/family_benefits.rhai"), "// silenced for the test\n[]\n").unwrap();

    let report = dir.path().join("report");
    let req = Request { report: Some(report.clone()), baseline: Some(support::root()), ..request(events) };
    let o = simulate(Arc::new(load_rules_dir(&changed).unwrap()), &req).await.unwrap();
    let baseline = o.baseline.as_ref().unwrap();
    let had = baseline.per_step.get("birth / family_benefits").copied().unwrap_or(0);
    let d = o.diff.as_ref().unwrap();
    assert!(had > 0, "the shipped rules send family benefits notices in the year");
    assert_eq!(d.gained, 0);
    assert_eq!(d.per_step.keys().collect::<Vec<_>>(), ["birth / family_benefits"]);
    let lost = d.per_step["birth / family_benefits"].1;
    assert!(lost >= had, "sent and suppressed ones are lost: {lost}, {had} of them sent");
    assert_eq!(lost, baseline.notices + baseline.suppressed - o.simulated.notices - o.simulated.suppressed);
    assert!(d.lost_sample["birth / family_benefits"].iter().all(|m| m.contains('*')), "recipients are masked");

    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<html lang=\"en\">"));
    assert!(html.contains("<svg") && html.contains("<rect"));
    assert!(html.matches("<table>").count() >= 7, "a table under each chart");
    assert!(html.contains("Notices per week") && html.contains("Notices per channel"));
    assert!(html.contains("family_benefits") && html.contains("Compared with the baseline"));
    let outside = html.matches("http").count() - html.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(outside, 0, "the page loads nothing from outside");
    assert!(!html.contains("<script"));
}

#[test]
fn a_bad_line_is_reported_with_its_line_number_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let day = NaiveDate::from_ymd_opt(2027, 1, 10).unwrap();
    let code = |serial| (serial..).find_map(|s| proactive::events::codes::valid_test_personal_code(day, s)).unwrap();
    let (good1, good2) = (code(1), code(100));
    // The same code with another check digit.
    let last = good1.chars().last().unwrap().to_digit(10).unwrap();
    let wrong = format!("{}{}", &good1[..11], (last + 1) % 10);
    let birth = |id: &str, code: &str| support::birth(id, code, None, None, "2027-01-10").to_string();
    let lines = [
        "# a hand-written history".to_string(),
        birth("b1", &good1),
        birth("b2", &wrong),
        "{ not json".to_string(),
        birth("b3", &good2),
    ];
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let report = dir.path().join("report");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_proactive"))
        .current_dir(support::root())
        .env_remove("PROACTIVE_CONFIG")
        .env("PROACTIVE_LOG", "error")
        .args(["rules", "simulate", "--from", "2027-01-01", "--to", "2027-03-31", "--events"])
        .arg(&events)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 lines did not validate"), "{stdout}");
    assert!(stdout.contains(&format!("{}:3: ", events.display())), "the wrong check digit, on line 3: {stdout}");
    assert!(stdout.contains(&format!("{}:4: ", events.display())), "the broken JSON, on line 4: {stdout}");
    assert!(stdout.contains("simulated 2027-01-01 to 2027-03-31: 2 events"), "{stdout}");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("Lines that did not validate"));
}
