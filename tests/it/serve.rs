//! `proactive serve` as an operator runs it: on a fast virtual clock the
//! chains' later steps fire and are delivered within seconds, SIGHUP
//! reloads the rules (refusing a broken set), and SIGTERM stops it cleanly.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support;

fn proactive() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_proactive"));
    c.current_dir(support::root()).env_remove("PROACTIVE_CONFIG");
    c
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

/// Steps of the notices in the outbox that were sent.
fn sent_steps(config: &std::path::Path) -> Vec<String> {
    let out = proactive().arg("--config").arg(config).args(["outbox", "list", "--format", "json"]).output().unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.iter().filter(|r| r["state"] == "sent").filter_map(|r| r["template"].as_str().map(String::from)).collect()
}

#[test]
fn a_fast_virtual_clock_fires_later_steps_and_sighup_reloads_only_a_good_rule_set() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    support::copy_tree(&support::root().join("rules"), &rules);
    let out = dir.path().join("messages");
    let config = dir.path().join("proactive.toml");
    let q = |p: &std::path::Path| toml::Value::String(p.display().to_string()).to_string();
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = {}\n[paths]\nlife_events = {}\nrules = {}\nconnectors = {}\n\
             [clock]\nstart = \"2026-11-23T09:00:00+02:00\"\nspeed = 86400.0\n\
             [channels.email]\nkind = \"file\"\ndir = {}\n[channels.eaddress]\nkind = \"file\"\ndir = {}\n\
             [channels.sms]\nkind = \"disabled\"\n",
            toml::Value::String(format!("sqlite://{}", dir.path().join("p.db").display())),
            q(&support::root().join("life-events")),
            q(&rules),
            q(&dir.path().join("no-connectors")),
            q(&out.join("email")),
            q(&out.join("eaddress")),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("no-connectors")).unwrap();
    let events = dir.path().join("events.jsonl");
    let lines = [
        support::contact("c1", "150394-11002", Some("anna@example.lv"), None, "lv"),
        support::birth("b1", "321118-20001", Some("150394-11002"), None, "2026-11-22"),
    ];
    std::fs::write(&events, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    let import = proactive().arg("--config").arg(&config).args(["events", "import"]).arg(&events).output().unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));

    let mut serve = proactive()
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PROACTIVE_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = serve.id();
    // A virtual day a second: the birth chain's 7-day step is due after about 7 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let steps = sent_steps(&config);
        if steps.iter().any(|s| s == "family_benefits") {
            assert!(steps.iter().any(|s| s == "childbirth_benefit"), "{steps:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the 7-day step never went out: {steps:?}");
        std::thread::sleep(Duration::from_millis(300));
    }

    std::fs::write(rules.join("birth/kindergarten_queue.rhai"), "let x = ;\n").unwrap();
    signal(pid, "-HUP");
    std::thread::sleep(Duration::from_millis(800));
    std::fs::copy(
        support::root().join("rules/birth/kindergarten_queue.rhai"),
        rules.join("birth/kindergarten_queue.rhai"),
    )
    .unwrap();
    signal(pid, "-HUP");
    std::thread::sleep(Duration::from_millis(800));
    assert!(serve.try_wait().unwrap().is_none(), "serve keeps running through a bad reload");
    signal(pid, "-TERM");
    let status = serve.wait().unwrap();
    let mut log = String::new();
    serve.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "a clean stop on SIGTERM: {log}");
    let refused = log.find("rule set NOT reloaded").expect("the broken set is refused");
    assert!(log[refused..].contains("kindergarten_queue.rhai:1:"), "with the error's place: {log}");
    assert!(log[refused..].contains("rule set reloaded"), "then the fixed one is taken: {log}");
    assert!(!log.contains("150394-11002"), "no personal code in the log");
}
