//! Several engine processes on one PostgreSQL: events per second end to end
//! (imported changes → evaluated → notices delivered to a file sink) with
//! 1, 2 and 4 `proactive serve` processes, medians of three runs, and the
//! cost per event in database round trips, counted by a TCP proxy between
//! the processes and the server (each burst a process sends and then waits
//! on is one round trip).
//!
//! `cargo bench --bench scale [-- BIRTHS]` (default 5,000 births, 10,000
//! events, imported once the processes are up); reads `PROACTIVE_TEST_DATABASE_URL`, without it prints
//! `scale: skipped=no-database`. Last line:
//! `scale: p1_events_per_s=A p2_events_per_s=B p4_events_per_s=C roundtrips_per_event=R`.

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

mod common;

use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<()> {
    let Ok(url) = std::env::var("PROACTIVE_TEST_DATABASE_URL") else {
        println!("scale: skipped=no-database");
        return Ok(());
    };
    let births = common::size_wanted("SCALE_BIRTHS", 5_000, "births")?;
    let events = 2 * births;
    let upstream = {
        let u = reqwest::Url::parse(&url)?;
        format!("{}:{}", u.host_str().unwrap_or("127.0.0.1"), u.port().unwrap_or(5432))
    };
    let proxy = Proxy::start(upstream).await?;
    let dir = tempfile::tempdir()?;
    let history = dir.path().join("events.jsonl");
    std::fs::write(&history, history_of(births))?;
    let mut figures = Vec::new();
    for processes in [1usize, 2, 4] {
        let mut rates = Vec::new();
        for run in 0..3 {
            let (rate, _) = one_run(&url, None, &history, dir.path(), processes, births).await?;
            println!(
                "processes={processes} run={run}: {events} events in {:.2} s = {rate:.0} events/s",
                events as f64 / rate
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        figures.push(rates[1]);
    }
    // Counted apart: the proxy's own hop would slow the timed runs.
    let (_, trips) = one_run(&url, Some(&proxy), &history, dir.path(), 1, births).await?;
    let per_event = trips as f64 / events as f64;
    println!("one process through the counting proxy: {trips} round trips for {events} events");
    println!(
        "scale: p1_events_per_s={:.0} p2_events_per_s={:.0} p4_events_per_s={:.0} roundtrips_per_event={per_event:.2}",
        figures[0], figures[1], figures[2]
    );
    Ok(())
}

/// One run on a fresh schema: import, then start `processes` servers and
/// time them until every notice is sent. Returns (events/s, round trips).
async fn one_run(
    url: &str,
    proxy: Option<&Proxy>,
    history: &std::path::Path,
    dir: &std::path::Path,
    processes: usize,
    births: usize,
) -> Result<(f64, u64)> {
    let schema = format!("scale_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await?;
    let opts = sqlx::postgres::PgConnectOptions::from_str(url)?.options([("search_path", schema.as_str())]);
    let db = proactive::store::Db::connect_pg(opts, 2).await?;
    db.migrate().await?;
    let sep = if url.contains('?') { "&" } else { "?" };
    let direct = format!("{url}{sep}options=-csearch_path%3D{schema}");
    let mut via = reqwest::Url::parse(&direct)?;
    if let Some(proxy) = proxy {
        via.set_host(Some("127.0.0.1"))?;
        via.set_port(Some(proxy.addr.port())).map_err(|_| anyhow::anyhow!("cannot set the proxy's port"))?;
    }
    let run_dir = dir.join(&schema);
    std::fs::create_dir_all(run_dir.join("no-connectors"))?;
    let config = write_config(&run_dir, &direct, "direct.toml")?;
    let proxied = write_config(&run_dir, via.as_str(), "proxied.toml")?;
    let mut children: Vec<Child> = (0..processes)
        .map(|_| {
            cli(&proxied)
                .args(["serve", "--listen", "127.0.0.1:0"])
                .env("PROACTIVE_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .context("cannot start proactive serve")
        })
        .collect::<Result<_>>()?;
    // Timed from when the processes are up (one holds the engine's lease, the
    // others have had time to start): start-up is not what scales.
    let up = Instant::now() + Duration::from_secs(30);
    while db.leases().await?.iter().all(|l| l.0 != "engine") {
        anyhow::ensure!(Instant::now() < up, "no process took the engine's lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(p) = proxy {
        p.trips.store(0, Ordering::SeqCst);
    }
    let started = Instant::now();
    let import = cli(&config).args(["events", "import"]).arg(history).output()?;
    anyhow::ensure!(import.status.success(), "import failed: {}", String::from_utf8_lossy(&import.stderr));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let sent: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {schema}.notices WHERE state = 'sent'"
        )))
        .fetch_one(&admin)
        .await?;
        if sent as usize >= births {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {sent} of {births} notices sent after 10 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let trips = proxy.map_or(0, |p| p.trips.load(Ordering::SeqCst));
    for c in &mut children {
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    }
    for mut c in children {
        let _ = c.wait();
    }
    // None lost or doubled: one notice a birth, each sent once.
    let notices: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {schema}.notices")))
        .fetch_one(&admin)
        .await?;
    anyhow::ensure!(notices as usize == births, "{notices} notices for {births} births");
    let files = std::fs::read_dir(run_dir.join("eaddress"))?.count();
    anyhow::ensure!(files == births, "{files} messages written for {births} notices");
    db.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&admin).await?;
    admin.close().await;
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok(((2 * births) as f64 / elapsed, trips))
}

fn cli(config: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_proactive"));
    c.current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("PROACTIVE_CONFIG").arg("--config").arg(config);
    c
}

fn write_config(dir: &std::path::Path, db: &str, name: &str) -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let q = |p: &std::path::Path| toml::Value::String(p.display().to_string()).to_string();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = {db}\n[paths]\nlife_events = {le}\nrules = {rules}\nconnectors = {conn}\n\
             [engine]\npoll_interval_ms = 20\nlease_secs = 5\n\
             [delivery]\npoll_interval_ms = 20\nbatch_size = 200\nquiet_hours = \"none\"\ndigest = false\n\
             [channels.eaddress]\nkind = \"file\"\ndir = {out}\n[channels.email]\nkind = \"disabled\"\n[channels.sms]\nkind = \"disabled\"\n",
            db = toml::Value::String(db.to_string()),
            // The fixed one-step birth definition: one notice a birth.
            le = q(&root.join("tests/fixtures/life-events")),
            rules = q(&root.join("tests/fixtures/rules")),
            conn = q(&dir.join("no-connectors")),
            out = q(&dir.join("eaddress")),
        ),
    )?;
    Ok(path)
}

/// Mothers with an active e-address, each with a newborn.
fn history_of(births: usize) -> String {
    let born = chrono::Utc::now().date_naive() - chrono::Duration::days(2);
    let mut out = String::new();
    let (mut made, mut i) = (0, 0u32);
    while made < births {
        i += 1;
        let mother_day =
            chrono::NaiveDate::from_ymd_opt(1980, 1, 1).unwrap() + chrono::Duration::days(i64::from(i % 7000));
        let child_day = born - chrono::Duration::days(i64::from(i / 900));
        let (Some(mother), Some(child)) = (
            proactive::events::codes::valid_test_personal_code(mother_day, (100 + i / 7000) as u16),
            proactive::events::codes::valid_test_personal_code(child_day, (i % 900 + 1) as u16),
        ) else {
            continue;
        };
        out += &serde_json::json!({"source": "eadrese", "id": format!("ea{i}"), "type": "eaddress.activated",
            "subject": mother, "occurred_at": "2026-01-01T10:00:00+02:00", "data": {}})
        .to_string();
        out += "\n";
        out += &serde_json::json!({"source": "pmlp", "id": format!("b{i}"), "type": "birth.registered",
            "subject": child, "occurred_at": format!("{child_day}T10:00:00+02:00"),
            "data": {"given_name": "Anna", "family_name": "Bērziņa", "birth_date": child_day.to_string(), "sex": "F",
                     "mother": mother, "father": null, "municipality": "Rīga", "address": "Brīvības iela 1, Rīga"}})
        .to_string();
        out += "\n";
        made += 1;
    }
    out
}

/// A loopback TCP proxy to PostgreSQL that counts round trips: every read
/// of a client's bytes is a request it then waits on.
struct Proxy {
    addr: std::net::SocketAddr,
    trips: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: String) -> Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let trips = Arc::new(AtomicU64::new(0));
        let counted = trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counted) = (upstream.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Ok(Proxy { addr, trips })
    }
}
