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
