//! Agency API benchmark: accepted events per second on `POST /api/v1/events`
//! (single changes, many connections at once, so the group commit has
//! something to group) and on `POST /api/v1/events:batch` (JSONL uploads),
//! against a real server in this process on a loopback port, on SQLite and
//! on PostgreSQL.
//!
//! Run it as `cargo bench --bench api` (20,000 single events and 200,000
//! batched by default; `API_EVENTS=50000`, or the number as an argument after
//! `--`, sets the single count, the batched one is ten times that).
//! PostgreSQL runs when `PROACTIVE_TEST_DATABASE_URL` is set, in a schema of
//! its own that is dropped afterwards; otherwise its figures read `skipped`.
//!
//! Each phase has a fresh, migrated store and one agency key; the records
//! (births with distinct children) are made before the clock starts. Time
//! runs from the first request to the last answer. Afterwards the bench
//! checks that every answer was 202 and that the store holds exactly as many
//! events as were sent: none lost, none doubled. The server is the router
//! `proactive serve` runs (auth, validation, group commit, metrics), without
//! the engine and delivery stages, which other benches measure.
//!
//! The last line reads
//! `api: single_per_s=A batch_per_s=B single_pg_per_s=C batch_pg_per_s=D`.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use anyhow::{Context, Result, bail, ensure};
use futures_util::StreamExt;
use proactive::api::keys::{self, Role};
use proactive::app::App;
use proactive::config::{ChannelConfig, Config};

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

const DEFAULT_SINGLE: usize = 20_000;
/// Requests in flight at once for single posts (each its own connection).
const CONNECTIONS: usize = 128;
/// Lines per batch upload, and uploads in flight at once.
const BATCH_LINES: usize = 5_000;
const BATCH_UPLOADS: usize = 4;

fn main() -> Result<()> {
    let single = common::size_wanted("API_EVENTS", DEFAULT_SINGLE, "events")?;
    ensure!(single > 0, "the number of events must be positive");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(single, single * 10))
}

async fn run(single: usize, batched: usize) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let lite = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    eprintln!("api: {single} single and {batched} batched events, SQLite files in {}", dir.path().display());
    let s = phase("sqlite", &lite("single.db"), Mode::Single, single).await?;
    let b = phase("sqlite", &lite("batch.db"), Mode::Batch, batched).await?;
    let (sp, bp) = match std::env::var("PROACTIVE_TEST_DATABASE_URL") {
        Ok(url) => {
            let sp = on_postgres(&url, Mode::Single, single).await?;
            let bp = on_postgres(&url, Mode::Batch, batched).await?;
            (format!("{sp:.0}"), format!("{bp:.0}"))
        }
        Err(_) => {
            eprintln!("api: PROACTIVE_TEST_DATABASE_URL is not set: PostgreSQL skipped");
            ("skipped".into(), "skipped".into())
        }
    };
    println!("api: single_per_s={s:.0} batch_per_s={b:.0} single_pg_per_s={sp} batch_pg_per_s={bp}");
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Single,
    Batch,
}

/// Runs one phase in a schema of its own, dropped afterwards.
async fn on_postgres(url: &str, mode: Mode, n: usize) -> Result<f64> {
    let schema = format!("bench_api_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(url).await.context("connect to PROACTIVE_TEST_DATABASE_URL")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await?;
    let scoped = format!("{url}{}options=-csearch_path%3D{schema}", if url.contains('?') { "&" } else { "?" });
    let result = phase("postgres", &scoped, mode, n).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&admin).await?;
    admin.close().await;
    result
}

/// Starts a server on `url`, sends `n` events, checks the store; answers events/s.
async fn phase(db_name: &str, url: &str, mode: Mode, n: usize) -> Result<f64> {
    let mut cfg = Config::default();
    cfg.database.url = url.to_string();
    // The sinks are never used (no delivery runs), but must not point anywhere real.
    cfg.channels.email = ChannelConfig::Disabled;
    cfg.channels.eaddress = ChannelConfig::Disabled;
    cfg.channels.sms = ChannelConfig::Disabled;
    let app =
        App::open(cfg, proactive::clock::Clock::system()).await.context("run the benchmark from the crate root")?;
    let types = ["birth.registered".to_string()];
    let (key, _) = keys::create(&app.db, Role::Agency, "Bench", &["pmlp".into()], &types, app.clock.now_ms()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let api = proactive::api::start(app.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, api.router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS * 2).timeout(Duration::from_secs(120)).build()?;
    let records: Vec<String> = (0..n).map(record).collect();
    let groups = proactive::metrics::get().group_commit_events.with_label_values::<&str>(&[]);
    let (commits_before, grouped_before) = (groups.get_sample_count(), groups.get_sample_sum());

    let started = Instant::now();
    let accepted = match mode {
        Mode::Single => send_single(&client, &base, &key, records).await?,
        Mode::Batch => send_batches(&client, &base, &key, records).await?,
    };
    let elapsed = started.elapsed();

    let commits = groups.get_sample_count() - commits_before;
    let grouped = groups.get_sample_sum() - grouped_before;
    let _ = stop_tx.send(());
    server.await??;
    api.writer.await?;
    let stored = app.db.event_count_of("pmlp").await?;
    app.db.close().await;
    if accepted != n || stored != n as i64 {
        bail!("{db_name} {mode:?}: sent {n}, answered 202 for {accepted}, the store holds {stored}");
    }
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{db_name} {}: {n} events in {:.2} s = {rate:.0} events/s; {commits} group commits of {:.1} events on average; \
         all {n} answered 202 and stored once",
        match mode {
            Mode::Single => format!("single ({CONNECTIONS} connections)"),
            Mode::Batch => format!("batch ({BATCH_LINES} lines an upload, {BATCH_UPLOADS} at once)"),
        },
        elapsed.as_secs_f64(),
        grouped / commits.max(1) as f64,
    );
    Ok(rate)
}

/// A birth change record with a child of its own (new-format codes, no check digit).
fn record(i: usize) -> String {
    serde_json::json!({
        "source": "pmlp", "id": format!("bench-{i}"), "type": "birth.registered",
        "subject": format!("32{:04}-{:05}", i / 100_000, i % 100_000),
        "occurred_at": "2026-11-18T10:00:00+02:00",
        "data": {
            "given_name": "Anna", "family_name": "Kalniņa", "birth_date": "2026-11-18", "sex": "F",
            "mother": "150394-11002", "father": null, "municipality": "Rīga", "address": "Brīvības iela 1, Rīga"
        }
    })
    .to_string()
}

/// Posts every record alone, `CONNECTIONS` at a time; answers how many got 202.
async fn send_single(client: &reqwest::Client, base: &str, key: &str, records: Vec<String>) -> Result<usize> {
    let url = Arc::new(format!("{base}/api/v1/events"));
    let answers: Vec<Result<u16>> = futures_util::stream::iter(records)
        .map(|body| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client
                    .post(url.as_str())
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                Ok(r.status().as_u16())
            }
        })
        .buffer_unordered(CONNECTIONS)
        .collect()
        .await;
    count_accepted(answers.into_iter().map(|a| a.map(|s| usize::from(s == 202))))
}

/// Uploads the records as JSONL batches, `BATCH_UPLOADS` at a time; answers how many lines were accepted.
async fn send_batches(client: &reqwest::Client, base: &str, key: &str, records: Vec<String>) -> Result<usize> {
    let url = Arc::new(format!("{base}/api/v1/events:batch"));
    let bodies: Vec<String> = records.chunks(BATCH_LINES).map(|c| c.join("\n")).collect();
    let answers: Vec<Result<usize>> = futures_util::stream::iter(bodies)
        .map(|body| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client
                    .post(url.as_str())
                    .bearer_auth(key)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await?;
                ensure!(r.status() == 200, "a batch was answered {}", r.status());
                let text = r.text().await?;
                Ok(text.lines().filter(|l| l.contains("\"status\":\"accepted\"")).count())
            }
        })
        .buffer_unordered(BATCH_UPLOADS)
        .collect()
        .await;
    count_accepted(answers.into_iter())
}

fn count_accepted(answers: impl Iterator<Item = Result<usize>>) -> Result<usize> {
    let mut n = 0;
    for a in answers {
        n += a?;
    }
    Ok(n)
}
