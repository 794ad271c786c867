//! Losing the database: `proactive serve` reaches PostgreSQL through a TCP
//! proxy on loopback that the test controls (stopping the shared server
//! would break the rest of the suite). The proxy cuts every connection and
//! refuses new ones for a while: readiness goes false, the stages say so
//! and back off, and when the proxy lets connections through again they go
//! on by themselves — nothing committed is lost, nothing is sent twice.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::support;

/// A TCP proxy that can cut its connections and refuse new ones.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, l) = (cut.clone(), live.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                l.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { addr, cut, live }
    }

    /// Drops every connection now and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for t in self.live.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn births(from: usize, n: usize) -> String {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let mut out = String::new();
    let mut serial = from as u16;
    let mut made = 0;
    while made < n {
        serial += 1;
        let Some(child) = proactive::events::codes::valid_test_personal_code(day, serial) else { continue };
        let mother = proactive::events::codes::valid_test_personal_code(
            chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap() + chrono::Duration::days(serial as i64),
            100,
        );
        let Some(mother) = mother else { continue };
        out += &support::contact(&format!("c{serial}"), &mother, Some(&format!("m{serial}@example.lv")), None, "lv")
            .to_string();
        out += "\n";
        out += &support::birth(&format!("b{serial}"), &child, Some(&mother), None, "2026-11-20").to_string();
        out += "\n";
        made += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_connection_is_reported_waited_out_and_recovered_from() {
    let Some(t) = support::postgres().await else { return };
    let mut url = reqwest::Url::parse(&t.url).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("no-connectors")).unwrap();
    let q = |p: &std::path::Path| toml::Value::String(p.display().to_string()).to_string();
    let config = |db: &str, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[database]\nurl = {db}\n[paths]\nlife_events = {le}\nrules = {rules}\nconnectors = {conn}\n\
                 [engine]\npoll_interval_ms = 50\n[delivery]\npoll_interval_ms = 50\nquiet_hours = \"none\"\n\
                 [channels.email]\nkind = \"file\"\ndir = {mail}\n[channels.eaddress]\nkind = \"disabled\"\n[channels.sms]\nkind = \"disabled\"\n",
                db = toml::Value::String(db.to_string()),
                le = q(&support::root().join("tests/fixtures/life-events")),
                rules = q(&support::root().join("tests/fixtures/rules")),
                conn = q(&dir.path().join("no-connectors")),
                mail = q(&dir.path().join("mail")),
            ),
        )
        .unwrap();
        path
    };
    let direct = config(&t.url, "direct.toml");
    let proxied = config(url.as_str(), "proxied.toml");
    let cli = |cfg: &std::path::Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_proactive"));
        c.current_dir(support::root()).env_remove("PROACTIVE_CONFIG").arg("--config").arg(cfg);
        c
    };
    let import = |part: usize, n: usize| {
        let file = dir.path().join(format!("part{part}.jsonl"));
        std::fs::write(&file, births(part * 300, n)).unwrap();
        let out = cli(&direct).args(["events", "import"]).arg(&file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let sent = || async { t.db.list_notices(Some("sent"), 1000).await.unwrap().len() };

    import(1, 20);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.path().join("serve.log");
    let mut serve = cli(&proxied)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PROACTIVE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let ready = || async {
        http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    };
    let wait_for = |what: &'static str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        move |ok: bool| {
            assert!(ok || Instant::now() < deadline, "never {what}");
            ok
        }
    };
    let first = wait_for("the first part sent", 60);
    while !first(sent().await == 20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready().await, 200);

    proxy.cut();
    let down = wait_for("not ready once the database is gone", 20);
    while !down(ready().await == 503) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    import(2, 20);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sent().await, 20, "nothing of the second part can be done without the database");

    proxy.restore();
    let back = wait_for("ready again and the second part sent", 90);
    while !back(ready().await == 200 && sent().await == 40) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    assert!(serve.wait().unwrap().success(), "a clean stop after the outage");

    let files = std::fs::read_dir(dir.path().join("mail")).unwrap().count();
    assert_eq!(files, 40, "every notice sent once, none twice");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("stage failed; retrying"), "the outage is logged: {said}");
    assert!(said.contains("stage recovered"), "and the recovery: {said}");
    t.cleanup().await;
}
