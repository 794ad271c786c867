//! Delivery benchmark: N notices (`DELIVERY_NOTICES`, default 5,000, or the
//! first numeric argument) through the real delivery stage on a fresh SQLite
//! store per phase, to
//!
//! (a) an in-process e-address gateway fake that answers at once,
//! (b) an SMS gateway fake,
//! (c) a local SMTP server (mailin-embedded) with connection reuse (pool),
//! (d) the same with `pool = false` (one connection per message).
//!
//! Each phase loads N births (one mother each, reachable only on that
//! phase's channel) through ingest and the engine, untimed, then times
//! `Delivery::run_until_idle` until every notice is sent. Progress goes to
//! stderr; the last line on stdout is
//! `delivery: eaddress_per_s=A sms_per_s=B smtp_per_s=C smtp_no_reuse_per_s=D`.
//! A measurement: it asserts only that every notice was sent.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use chrono::NaiveDate;
use proactive::app::App;
use proactive::config::{ChannelConfig, Config, GatewayConfig, SmtpConfig, SmtpTls};
use proactive::delivery::Channels;
use proactive::delivery::channels::Transport;
use proactive::delivery::eaddress::EaddressClient;
use proactive::delivery::sms::SmsClient;
use proactive::events::codes::valid_test_personal_code;
use proactive::events::{RawRecord, ingest_records};
use serde_json::json;

const DEFAULT_NOTICES: usize = 5_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Eaddress,
    Sms,
    Smtp { pool: bool },
}

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let n = common::size_wanted("DELIVERY_NOTICES", DEFAULT_NOTICES, "notices")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> Result<()> {
    ensure!((1..=20_000).contains(&n), "between 1 and 20,000 notices (the generator's distinct newborns)");
    let gateway = start_gateway().await?;
    let smtp = start_smtp().await?;
    let mut rates = Vec::new();
    // `DELIVERY_ONLY=eaddress` (or sms, smtp) runs one channel, for profiling; the last line then has only its figure.
    let only = std::env::var("DELIVERY_ONLY").ok();
    for phase in [Phase::Eaddress, Phase::Sms, Phase::Smtp { pool: true }, Phase::Smtp { pool: false }] {
        let name = match phase {
            Phase::Eaddress => "eaddress",
            Phase::Sms => "sms",
            Phase::Smtp { .. } => "smtp",
        };
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let app = app_for(phase, &dir, &gateway, smtp).await?;
        load(&app, phase, n).await?;
        eprintln!("delivery: {phase:?}: {n} notices queued; sending");
        let before = app.clock.now_ms();
        let t = Instant::now();
        let report = app.delivery().run_until_idle().await?;
        let secs = t.elapsed().as_secs_f64();
        ensure!(app.clock.now_ms() == before, "the clock stands still");
        ensure!(
            report.sent == n && report.claimed == n,
            "{phase:?}: every notice is sent once: {report:?} ({} messages at the SMTP server)",
            SMTP_RECEIVED.load(Ordering::Relaxed)
        );
        let rate = n as f64 / secs;
        println!("{phase:?}: {n} notices in {secs:.2} s = {rate:.0} per s");
        rates.push((phase, rate));
        app.db.close().await;
    }
    println!("batch_size=200 concurrency={}", Config::default().delivery.concurrency);
    let figure = |key: &str, p: Phase| rates.iter().find(|r| r.0 == p).map(|r| format!(" {key}={:.0}", r.1));
    let line: String = [
        figure("eaddress_per_s", Phase::Eaddress),
        figure("sms_per_s", Phase::Sms),
        figure("smtp_per_s", Phase::Smtp { pool: true }),
        figure("smtp_no_reuse_per_s", Phase::Smtp { pool: false }),
    ]
    .into_iter()
    .flatten()
    .collect();
    println!("delivery:{line}");
    Ok(())
}

async fn app_for(phase: Phase, dir: &tempfile::TempDir, gateway: &str, smtp: std::net::SocketAddr) -> Result<App> {
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}", dir.path().join("delivery.db").display());
    // The fixed one-step birth definition of the tests: one notice a birth,
    // whatever steps the shipped library grows.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    cfg.paths.life_events = root.join("tests/fixtures/life-events");
    cfg.paths.rules = root.join("tests/fixtures/rules");
    cfg.delivery.batch_size = 200;
    // Measured at any hour: no quiet hours holding email and SMS back.
    cfg.delivery.quiet_hours = "none".into();
    cfg.channels.eaddress = ChannelConfig::Disabled;
    cfg.channels.sms = ChannelConfig::Disabled;
    cfg.channels.email = match phase {
        Phase::Smtp { pool } => ChannelConfig::Smtp(SmtpConfig {
            host: smtp.ip().to_string(),
            port: smtp.port(),
            tls: SmtpTls::None,
            pool,
            timeout_secs: 30,
            ..SmtpConfig::default()
        }),
        _ => ChannelConfig::Disabled,
    };
    let at = chrono::DateTime::parse_from_rfc3339(proactive::demo::DEMO_START)?.to_utc();
    let mut app = App::open(cfg, proactive::clock::Clock::manual(at)).await.context("run from the crate root")?;
    let g = GatewayConfig { base_url: gateway.to_string(), timeout_secs: 30, ..GatewayConfig::default() };
    let mut channels = Channels::from_config(&app.cfg.channels, &app.cfg.links)?;
    match phase {
        Phase::Eaddress => {
            channels.eaddress = Some(Transport::Eaddress(EaddressClient::new(&g, Some("bench".into()))?))
        }
        Phase::Sms => channels.sms = Some(Transport::Sms(SmsClient::new(&g, Some("bench".into()))?)),
        Phase::Smtp { .. } => {}
    }
    app.channels = Arc::new(channels);
    Ok(app)
}

/// N births, each with one mother reachable only on the phase's channel.
async fn load(app: &App, phase: Phase, n: usize) -> Result<()> {
    let mut records = Vec::with_capacity(2 * n);
    let mut children = codes(NaiveDate::from_ymd_opt(2026, 10, 26).unwrap(), 28);
    let mut mothers = codes(NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(), 3650);
    for i in 0..n {
        let (child, day) = children.next().context("out of newborns' codes")?;
        let (mother, _) = mothers.next().context("out of mothers' codes")?;
        let (email, phone) = match phase {
            Phase::Sms => (None, Some(format!("+3712{:07}", i))),
            Phase::Smtp { .. } => (Some(format!("parent{i}@example.lv")), None),
            Phase::Eaddress => (None, None),
        };
        records.push(if phase == Phase::Eaddress {
            json!({"source": "eadrese", "id": format!("e{i}"), "type": "eaddress.activated", "subject": mother,
                   "occurred_at": "2026-10-01T10:00:00+03:00", "data": {}})
        } else {
            json!({"source": "portal", "id": format!("c{i}"), "type": "contact.declared", "subject": mother,
                   "occurred_at": "2026-10-01T10:00:00+03:00", "data": {"email": email, "phone": phone, "language": "lv"}})
        });
        records.push(json!({
            "source": "pmlp", "id": format!("b{i}"), "type": "birth.registered", "subject": child,
            "occurred_at": format!("{day}T10:00:00+02:00"),
            "data": {"given_name": "Anna", "family_name": "Kalniņa", "birth_date": day.to_string(), "sex": "F",
                     "mother": mother, "father": null, "municipality": "Rīga", "address": "Brīvības iela 1, Rīga"}
        }));
    }
    let purposes = app.purposes();
    for (c, chunk) in records.chunks(5_000).enumerate() {
        let raw: Vec<RawRecord> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| RawRecord { location: format!("bench:{c}:{i}"), text: r.to_string() })
            .collect();
        let counts = ingest_records(&app.db, None, &raw, &*purposes, None, app.clock.now_ms()).await?;
        ensure!(counts.quarantined == 0, "the generated records validate");
    }
    let report = app.engine().run_until_idle().await?;
    ensure!(report.notices == n, "one notice a birth, got {}", report.notices);
    Ok(())
}

/// Valid personal codes of people born on `days` days from `first`, with the day.
fn codes(first: NaiveDate, days: u64) -> impl Iterator<Item = (String, NaiveDate)> {
    (0..days).flat_map(move |d| {
        let day = first + chrono::Days::new(d);
        (0..1000u16).filter_map(move |s| valid_test_personal_code(day, s).map(|c| (c, day)))
    })
}

/// One fake for both gateways, answering at once: 201 on `/messages`, 202 on `/sms`.
async fn start_gateway() -> Result<String> {
    let counter = Arc::new(AtomicUsize::new(0));
    let c1 = counter.clone();
    let app =
        axum::Router::new()
            .route(
                "/messages",
                axum::routing::post(move |_: axum::body::Bytes| {
                    let id = c1.fetch_add(1, Ordering::Relaxed);
                    async move {
                        (
                            axum::http::StatusCode::CREATED,
                            axum::Json(
                                json!({"message_id": format!("m{id}"), "accepted_at": "2026-11-23T09:00:00+02:00"}),
                            ),
                        )
                    }
                }),
            )
            .route(
                "/sms",
                axum::routing::post(move |_: axum::body::Bytes| {
                    let id = counter.fetch_add(1, Ordering::Relaxed);
                    async move {
                        (axum::http::StatusCode::ACCEPTED, axum::Json(json!({"id": format!("s{id}"), "segments": 1})))
                    }
                }),
            );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

static SMTP_RECEIVED: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
struct Counting;

impl mailin_embedded::Handler for Counting {
    fn data_end(&mut self) -> mailin_embedded::Response {
        SMTP_RECEIVED.fetch_add(1, Ordering::Relaxed);
        mailin_embedded::response::OK
    }
}

async fn start_smtp() -> Result<std::net::SocketAddr> {
    // TCP_NODELAY on the listener (accepted sockets inherit it on Linux):
    // mailin answers in small writes, and Nagle against the client's delayed
    // ACK would make every command wait ~40 ms, measuring the kernel, not us.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_nodelay(true)?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(128)?.into_std()?;
    listener.set_nonblocking(false)?;
    let addr = listener.local_addr()?;
    let mut server = mailin_embedded::Server::new(Counting);
    // A thread a connection: more than the pool's connections, so none waits for a thread.
    server.with_name("bench.smtp").with_num_threads(16).with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    Ok(addr)
}
