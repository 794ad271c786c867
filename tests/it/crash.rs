//! Exactly-once effect across crashes: `proactive serve` processes and
//! delivers 700 births (2,100 events, 2,800 notices, half of them from a timer a virtual day later) to an e-address fake and a real SMTP
//! server, and is killed with SIGKILL at random moments several times; after
//! the last restart every notice has arrived, the e-address fake has seen
//! every message under one idempotency key, and email was resent at most
//! once per kill (CONTRACTS.md §6), always with the same Message-ID.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};

use super::gateways::{GatewayFake, Kind};
use super::support::{self, SmtpServer};

fn proactive(config: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_proactive"));
    c.current_dir(support::root()).env_remove("PROACTIVE_CONFIG").arg("--config").arg(config);
    c.env("PROACTIVE_LOG", "error").env("CRASH_TEST_TOKEN", "t");
    c
}

/// Notices by state, from the outbox listing.
fn states(config: &std::path::Path) -> Vec<(String, String, Option<String>)> {
    let out = proactive(config).args(["outbox", "list", "--format", "json", "--limit", "100000"]).output().unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.iter()
        .map(|r| {
            (
                r["notice_id"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
                r["channel"].as_str().map(String::from),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_and_sends_nothing_twice() {
    let _alone = support::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    chaos(&db, 1, dir).await;
}

/// The same with three processes sharing PostgreSQL, a random one killed each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_postgres_killed_at_random_lose_nothing_and_send_nothing_twice() {
    let Some(t) = support::postgres().await else { return };
    chaos(&t.url, 3, tempfile::tempdir().unwrap()).await;
    t.cleanup().await;
}

/// Runs `processes` servers on `db`, kills one at random moments
/// (`CRASH_KILLS`, seeded by `CRASH_SEED`) and restarts it, and checks at
/// the fakes that every notice arrived once (email: once more per kill at most).
async fn chaos(db: &str, processes: usize, dir: tempfile::TempDir) {
    let seed: u64 = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let kills: usize = std::env::var("CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let births: usize = 700;
    eprintln!("crash test: seed {seed}, {kills} kills of {processes} process(es), {births} births");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let fake = GatewayFake::start(Kind::Eaddress).await;
    let smtp = SmtpServer::start();
    let config = dir.path().join("proactive.toml");
    let q = |p: &std::path::Path| toml::Value::String(p.display().to_string()).to_string();
    std::fs::create_dir_all(dir.path().join("no-connectors")).unwrap();
    // The fixed birth definition with a timer: the same notice again four
    // days after the birth (three days ago), so about a virtual day after the
    // start on a clock of two hours a second (12 s): kills land before, while
    // and after the timers fire.
    let life_events = dir.path().join("life-events");
    support::copy_tree(&support::root().join("tests/fixtures/life-events"), &life_events);
    let toml_path = life_events.join("birth.toml");
    let definition = std::fs::read_to_string(&toml_path).unwrap().replace(
        "[[steps]]\nid = \"childbirth_benefit\"\nrule = \"birth.rhai\"\n",
        "[[steps]]\nid = \"childbirth_benefit\"\nrule = \"birth.rhai\"\n\n[[steps]]\nid = \"reminder\"\nrule = \"birth.rhai\"\nafter = \"4d\"\n",
    );
    assert!(definition.contains("id = \"reminder\""), "the fixture's first step is where the test expects it");
    std::fs::write(&toml_path, definition).unwrap();
    let clock_start = chrono::Utc::now().to_rfc3339();
    // Each notice its own message (no digests), so the fakes count them one to one.
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = {db}\n[paths]\nlife_events = {le}\nrules = {rules}\nconnectors = {conn}\n\
             [delivery]\nquiet_hours = \"none\"\ndigest = false\nlease_secs = 3\nbatch_size = 20\nbackoff_base_ms = 50\nbackoff_max_ms = 200\npoll_interval_ms = 20\n\
             [engine]\nbatch_size = 50\npoll_interval_ms = 20\nlease_secs = 2\n\
             [clock]\nstart = \"{clock_start}\"\nspeed = 7200.0\n\
             [channels.eaddress]\nkind = \"http\"\nbase_url = \"{ea}\"\ntoken_env = \"CRASH_TEST_TOKEN\"\ntimeout_secs = 2\n\
             [channels.email]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nmessage_id_domain = \"crash.test\"\npool_size = 1\n\
             [channels.sms]\nkind = \"disabled\"\n",
            db = toml::Value::String(db.to_string()),
            le = q(&life_events),
            rules = q(&support::root().join("tests/fixtures/rules")),
            conn = q(&dir.path().join("no-connectors")),
            ea = fake.url,
            port = smtp.addr.port(),
        ),
    )
    .unwrap();

    // Mothers with an active e-address, fathers with only an email: one notice each per birth.
    // The first valid code at or after `serial` (a check digit of 10 has no code).
    let code = |day: chrono::NaiveDate, serial: &mut u16| loop {
        *serial += 1;
        if let Some(c) = proactive::events::codes::valid_test_personal_code(day, *serial) {
            return c;
        }
    };
    let mut lines = Vec::new();
    // Born three days ago on the machine's clock, so the births are fresh whenever the test runs.
    let born = chrono::Utc::now().date_naive() - chrono::Duration::days(3);
    let mut child_serial = 0;
    for i in 0..births {
        let day = chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap() + chrono::Duration::days(i as i64);
        let mother = code(day, &mut 100);
        let father = code(day, &mut 200);
        let child = code(born, &mut child_serial);
        lines.push(serde_json::json!({
            "source": "eadrese", "id": format!("ea{i}"), "type": "eaddress.activated", "subject": mother,
            "occurred_at": "2026-11-01T10:00:00+02:00", "data": {}
        }));
        lines.push(support::contact(&format!("c{i}"), &father, Some(&format!("father{i}@example.lv")), None, "lv"));
        lines.push(support::birth(&format!("b{i}"), &child, Some(&mother), Some(&father), &born.to_string()));
    }
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    let import = proactive(&config).args(["events", "import"]).arg(&events).output().unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));

    let logs: Vec<std::path::PathBuf> = (0..processes).map(|i| dir.path().join(format!("serve{i}.log"))).collect();
    let spawn = |i: usize| {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&logs[i]).unwrap();
        proactive(&config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("PROACTIVE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut children: Vec<std::process::Child> = (0..processes).map(spawn).collect();
    // After each kill (and the server's reading of what the dead process had
    // written): a copy of a mail before one of these and another after it is
    // the resend a kill may cause.
    let mut restarted_at = Vec::new();
    for k in 0..kills {
        let wait = Duration::from_millis(rng.random_range(500..3000));
        tokio::time::sleep(wait).await;
        let i = rng.random_range(0..processes);
        children[i].kill().unwrap(); // SIGKILL
        children[i].wait().unwrap();
        // The server may still be reading what the dead process wrote before
        // the kill; let it finish, so its copies stamp before the restart.
        tokio::time::sleep(Duration::from_millis(300)).await;
        restarted_at.push(Instant::now());
        children[i] = spawn(i);
        eprintln!(
            "  kill {} (process {i}): after {wait:?}, {} e-address requests so far",
            k + 1,
            fake.requests().len()
        );
    }
    // They run on until the outbox is empty, then stop on SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(90);
    let final_states = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = states(&config);
        if s.len() == 4 * births && s.iter().all(|(_, state, _)| state == "sent") {
            break s;
        }
        if Instant::now() > deadline {
            let log: String = logs.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let mut by: Vec<_> = s.iter().map(|x| x.1.clone()).collect();
            by.sort();
            by.dedup();
            panic!("the outbox never emptied: {by:?}; the log ends:\n{}", tail.join("\n"));
        }
    };
    for mut child in children {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(child.wait().unwrap().success(), "a clean stop at the end");
    }

    let ea_ids: HashSet<String> =
        final_states.iter().filter(|s| s.2.as_deref() == Some("eaddress")).map(|s| s.0.clone()).collect();
    let mail_ids: HashSet<String> =
        final_states.iter().filter(|s| s.2.as_deref() == Some("email")).map(|s| s.0.clone()).collect();
    assert_eq!(
        (ea_ids.len(), mail_ids.len()),
        (2 * births, 2 * births),
        "every mother by e-address, every father by email, at once and a day later"
    );

    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.key.is_some()), "every e-address request carries its idempotency key");
    let keys: HashSet<String> = requests.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(keys, ea_ids, "the e-address fake saw exactly the e-address notices");
    assert_eq!(fake.accepted(), 2 * births, "one message a notice, whatever was resent with its key");

    let mails = smtp.messages();
    let message_ids: Vec<String> = mails
        .iter()
        .map(|m| {
            mail_parser::MessageParser::default().parse(m.data.as_bytes()).unwrap().message_id().unwrap().to_string()
        })
        .collect();
    let distinct: HashSet<&str> =
        message_ids.iter().map(|m| m.strip_suffix("@crash.test").expect("Message-ID from the notice id")).collect();
    assert_eq!(distinct.len(), 2 * births, "every father's email arrived");
    assert!(distinct.iter().all(|id| mail_ids.contains(*id)), "and nothing else did");
    // CONTRACTS.md §6: a crash between the server's 250 and the commit may
    // resend that mail once, and nothing else may resend it. So between any
    // two copies of one Message-ID there is a restart after a kill, and a
    // kill resends at most the mails its process had claimed (one batch:
    // sends run concurrently, so several can be past their 250 and not yet
    // recorded; a mail whose data the server read as the client died counts
    // as past its 250).
    let mut copies: std::collections::HashMap<&str, Vec<Instant>> = std::collections::HashMap::new();
    for (m, mail) in message_ids.iter().zip(&mails) {
        copies.entry(m.as_str()).or_default().push(mail.at);
    }
    let mut resent_by_kill = vec![0usize; kills];
    for (id, times) in &copies {
        for pair in times.windows(2) {
            let kill = restarted_at.iter().position(|r| pair[0] < *r && *r <= pair[1]);
            let kill = kill.unwrap_or_else(|| {
                let logs: String = logs.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
                let said: Vec<&str> = logs.lines().filter(|l| !l.contains("delivery round")).take(40).collect();
                panic!("{id} was sent twice with no restart between the copies; the logs say:\n{}", said.join("\n"))
            });
            resent_by_kill[kill] += 1;
        }
    }
    let extra = mails.len() - 2 * births;
    eprintln!("crash test: {extra} email resends for {kills} kills, by kill: {resent_by_kill:?}");
    assert!(
        resent_by_kill.iter().all(|n| *n <= 20),
        "a kill resent more mails than one claimed batch (20): {resent_by_kill:?}"
    );
}
