//! The `proactive` binary as a newcomer uses it: the demo, then the commands it suggests.

use std::process::Command;

use super::support;

fn proactive() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_proactive"));
    c.current_dir(support::root()).env_remove("PROACTIVE_CONFIG").env("PROACTIVE_LOG", "error");
    c
}

#[test]
fn the_demo_delivers_the_sample_and_the_suggested_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let out = proactive().args(["demo", "--dir"]).arg(&demo_dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 not sent (reason recorded)"), "{stdout}");
    assert!(stdout.contains("2 quarantined"), "{stdout}");
    assert!(stdout.contains("waiting steps ran"), "the demo runs the chains' later steps: {stdout}");
    assert!(!stdout.contains("150394-11002 "), "personal codes are masked in the demo's table");

    // What the outbox says was sent is what the file sinks hold, channel by channel.
    let config = demo_dir.join("proactive.toml");
    let out = proactive().arg("--config").arg(&config).args(["outbox", "list", "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let sent = rows.iter().filter(|r| r["state"] == "sent").count();
    assert!(sent >= 10, "births, their later steps and the contacts reach people: {sent}");
    for sub in ["email", "eaddress", "sms"] {
        let files = std::fs::read_dir(demo_dir.join("messages").join(sub)).unwrap().count();
        // A digest is one message for all its notices.
        let messages: std::collections::HashSet<&str> = rows
            .iter()
            .filter(|r| r["state"] == "sent" && r["channel"] == sub)
            .map(|r| r["digest_id"].as_str().or(r["notice_id"].as_str()).unwrap())
            .collect();
        let n = messages.len();
        assert_eq!(files, n, "messages/{sub}");
        assert!(n > 0, "the sample reaches someone by {sub}");
    }
    let templates: std::collections::HashSet<&str> = rows.iter().filter_map(|r| r["template"].as_str()).collect();
    assert!(templates.contains("childbirth_benefit"), "{templates:?}");

    let out =
        proactive().arg("--config").arg(&config).args(["cases", "show", "--subject", "150394-11002"]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && shown.contains("pension_age"), "{shown}");

    let out = proactive()
        .arg("--config")
        .arg(&config)
        .args(["events", "quarantine", "list", "--format", "json"])
        .output()
        .unwrap();
    let held: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(held.len(), 2);
    assert!(held.iter().any(|r| r["field"] == "data.mother"));

    let out = proactive().arg("--config").arg(&config).args(["events", "quarantine", "retry"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "records that still fail make retry exit 2");

    // Running the demo again starts afresh.
    let again = proactive().args(["demo", "--dir"]).arg(&demo_dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout, "the same demo twice");
}

#[test]
fn a_broken_rule_stops_start_up_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    support::copy_tree(&support::root().join("rules"), &rules);
    std::fs::write(rules.join("birth/childbirth_benefit.rhai"), "let x = ;\n").unwrap();
    let out = proactive()
        .env("PROACTIVE_PATHS__RULES", &rules)
        .env("PROACTIVE_DATABASE__URL", format!("sqlite://{}", dir.path().join("x.db").display()))
        .arg("process")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("birth/childbirth_benefit.rhai:1:"), "{err}");
}

#[test]
fn an_unknown_configuration_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[database]\nurl = \"sqlite://x.db\"\npool = 3\n").unwrap();
    let out = proactive().arg("--config").arg(&cfg).arg("migrate").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("pool"), "{err}");
}

#[test]
fn replay_needs_notices_to_name_and_says_which_were_not_dead() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let run = |args: &[&str]| proactive().env("PROACTIVE_DATABASE__URL", &url).args(args).output().unwrap();
    let out = run(&["outbox", "replay"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all-dead"));
    let out = run(&["outbox", "replay", "no-such-notice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-notice is not a dead notice"));
    let out = run(&["outbox", "replay", "--all-dead"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 dead notices queued again"));
}
