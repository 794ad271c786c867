//! Several `proactive serve` processes on one store: a connector's polling
//! and rule evaluation are done by the one process holding their lease; the
//! other stands by, takes over within the lease's time when the holder is
//! killed, and a clean stop gives the lease up at once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{self, FeedServer};

fn serve(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_proactive"))
        .current_dir(support::root())
        .env_remove("PROACTIVE_CONFIG")
        .env("PROACTIVE_LOG", "info")
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0", "--stages", "connectors,engine"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until `check` holds on the leases, or fails saying what they were.
async fn until(
    t: &support::TestDb,
    what: &str,
    check: impl Fn(&[(String, String, i64)]) -> bool,
) -> Vec<(String, String, i64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leases = t.db.leases().await.unwrap();
        if check(&leases) {
            return leases;
        }
        assert!(Instant::now() < deadline, "{}: never {what}: {leases:?}", t.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_holds_each_lease_and_another_takes_over_when_it_dies() {
    for t in support::stores().await {
        let pages: Vec<Vec<serde_json::Value>> = (0..3)
            .map(|i| vec![support::contact(&format!("c{i}"), "150394-11002", Some("m@example.lv"), None, "lv")])
            .collect();
        let feed = FeedServer::start(pages).await;
        let dir = tempfile::tempdir().unwrap();
        let connectors = dir.path().join("connectors");
        std::fs::create_dir_all(&connectors).unwrap();
        std::fs::write(
            connectors.join("portal.toml"),
            format!(
                "source = \"portal\"\nkind = \"change_feed\"\nbase_url = \"{}\"\nschedule = \"* * * * * *\"\n",
                feed.url
            ),
        )
        .unwrap();
        let config = dir.path().join("proactive.toml");
        let q = |p: &std::path::Path| toml::Value::String(p.display().to_string()).to_string();
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = {db}\n[paths]\nlife_events = {le}\nrules = {rules}\nconnectors = {conn}\n\
                 [engine]\nlease_secs = 2\npoll_interval_ms = 50\n",
                db = toml::Value::String(t.url.clone()),
                le = q(&support::root().join("tests/fixtures/life-events")),
                rules = q(&support::root().join("tests/fixtures/rules")),
                conn = q(&connectors),
            ),
        )
        .unwrap();

        let mut a = serve(&config, &dir.path().join("a.log"));
        let held = until(&t, "both leases taken", |l| l.len() == 2).await;
        let first = held[0].1.clone();
        assert!(held.iter().all(|l| l.1 == first), "{}: one process holds both: {held:?}", t.name);
        assert_eq!(held.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), ["connector:portal", "engine"], "{}", t.name);

        let mut b = serve(&config, &dir.path().join("b.log"));
        // Well past a renewal: the second process stands by and the holder keeps both.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let still = t.db.leases().await.unwrap();
        assert!(still.iter().all(|l| l.1 == first), "{}: the holder renewed and kept them: {still:?}", t.name);
        let b_log = std::fs::read_to_string(dir.path().join("b.log")).unwrap();
        assert!(b_log.contains("standing by"), "{}: {b_log}", t.name);

        a.kill().unwrap(); // SIGKILL: no release
        a.wait().unwrap();
        let killed = Instant::now();
        let taken = until(&t, "taken over", |l| l.len() == 2 && l.iter().all(|x| x.1 != first)).await;
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "{}: within the lease's time: {:?}",
            t.name,
            killed.elapsed()
        );
        let second = taken[0].1.clone();
        assert!(taken.iter().all(|l| l.1 == second), "{}", t.name);

        // The feed was read to its end, each change once, by whichever process held it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !t.db.pending_events_after(0, 10).await.unwrap().is_empty()
            || t.db.event_count_of("portal").await.unwrap() < 3
        {
            assert!(Instant::now() < deadline, "{}: the feed's changes were not all processed", t.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let _ = Command::new("kill").args(["-TERM", &b.id().to_string()]).status();
        assert!(b.wait().unwrap().success(), "{}: a clean stop", t.name);
        assert!(t.db.leases().await.unwrap().is_empty(), "{}: a clean stop gives the leases up", t.name);
        t.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_waits_while_delivery_is_behind_and_goes_on_when_it_catches_up() {
    let t = support::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("no-connectors")).unwrap();
    let q = |p: &std::path::Path| toml::Value::String(p.display().to_string()).to_string();
    let config = dir.path().join("proactive.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = {db}\n[paths]\nlife_events = {le}\nrules = {rules}\nconnectors = {conn}\n\
             [engine]\nbatch_size = 10\npoll_interval_ms = 50\nmax_due_notices = 5\n\
             [delivery]\nquiet_hours = \"none\"\npoll_interval_ms = 50\n\
             [channels.email]\nkind = \"file\"\ndir = {mail}\n[channels.eaddress]\nkind = \"disabled\"\n[channels.sms]\nkind = \"disabled\"\n",
            db = toml::Value::String(t.url.clone()),
            le = q(&support::root().join("tests/fixtures/life-events")),
            rules = q(&support::root().join("tests/fixtures/rules")),
            conn = q(&dir.path().join("no-connectors")),
            mail = q(&dir.path().join("mail")),
        ),
    )
    .unwrap();
    // Thirty mothers with an email, each with a newborn: thirty notices.
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let mut lines = String::new();
    let mut made = 0;
    for serial in 1u16.. {
        if made == 30 {
            break;
        }
        let (Some(child), Some(mother)) = (
            proactive::events::codes::valid_test_personal_code(day, serial),
            proactive::events::codes::valid_test_personal_code(
                chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap() + chrono::Duration::days(i64::from(serial)),
                100,
            ),
        ) else {
            continue;
        };
        lines += &format!("{}\n", support::contact(&format!("c{serial}"), &mother, Some("m@example.lv"), None, "lv"));
        lines += &format!("{}\n", support::birth(&format!("b{serial}"), &child, Some(&mother), None, "2026-11-20"));
        made += 1;
    }
    let cli = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_proactive"));
        c.current_dir(support::root()).env_remove("PROACTIVE_CONFIG").arg("--config").arg(&config);
        c
    };
    let lines: Vec<&str> = lines.lines().collect();
    let import = |part: &[&str], name: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, part.join("\n") + "\n").unwrap();
        let out = cli().args(["events", "import"]).arg(&file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let spawn = |stages: &str, log: &std::path::Path| {
        cli()
            .args(["serve", "--listen", "127.0.0.1:0", "--stages", stages])
            .env("PROACTIVE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    };

    // Evaluation alone: ten births make ten due notices, more than five.
    import(&lines[..20], "first.jsonl");
    let log = dir.path().join("engine.log");
    let engine = spawn("engine", &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap().contains("delivery is behind") {
        assert!(Instant::now() < deadline, "the backlog was never noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(t.db.list_notices(None, 100).await.unwrap().len(), 10);
    // Twenty more wait in the event log while delivery is behind.
    import(&lines[20..], "second.jsonl");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.db.list_notices(None, 100).await.unwrap().len(), 10, "evaluation waited");
    assert!(!t.db.pending_events_after(0, 100).await.unwrap().is_empty());

    // A delivery process catches up; evaluation goes on to the end.
    let delivery = spawn("delivery", &dir.path().join("delivery.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.db.list_notices(Some("sent"), 100).await.unwrap().len() < 30 {
        assert!(Instant::now() < deadline, "delivery and evaluation never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut c in [engine, delivery] {
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        assert!(c.wait().unwrap().success());
    }
    assert!(std::fs::read_to_string(&log).unwrap().contains("delivery has caught up"));
    t.cleanup().await;
}
