//! Shared test fixtures: stores on both databases, a contract feed server,
//! a real SMTP server, and configurations pointing at them.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Once};

use proactive::config::{ChannelConfig, Config, SmtpConfig, SmtpTls};
use proactive::store::Db;

/// The repository root, where the shipped definitions live.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A store under test and what must be cleaned up after it.
pub struct TestDb {
    /// The store.
    pub db: Db,
    /// `sqlite` or `postgres`, for assertion messages.
    pub name: &'static str,
    /// The SQLite URL (for tests that reopen the store), or the PostgreSQL one with its schema.
    pub url: String,
    dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl TestDb {
    /// Drops the PostgreSQL schema (SQLite's folder goes with the value).
    pub async fn cleanup(self) {
        self.db.close().await;
        if let Some((url, schema)) = &self.schema
            && let Ok(pool) = sqlx::PgPool::connect(url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                .execute(&pool)
                .await;
        }
    }
}

/// Held by the tests that run several processes at once (`serve`
/// processes killed at random, a browser with a server), so that on two
/// cores they do not starve each other past their time limits.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

static SKIP_NOTICE: Once = Once::new();

/// A fresh SQLite store in its own folder.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = Db::open(&url, 4).await.expect("open SQLite");
    TestDb { db, name: "sqlite", url, dir: Some(dir), schema: None }
}

/// A fresh PostgreSQL schema, or `None` (said once, plainly) when no server is configured.
pub async fn postgres() -> Option<TestDb> {
    let Ok(url) = std::env::var("PROACTIVE_TEST_DATABASE_URL") else {
        SKIP_NOTICE.call_once(|| {
            use std::io::Write;
            // Straight to stderr: the test harness captures print macros, not this.
            let _ = writeln!(
                std::io::stderr(),
                "\nNOTE: PROACTIVE_TEST_DATABASE_URL is not set: the PostgreSQL half of the storage tests is SKIPPED (SQLite ran).\n"
            );
        });
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.expect("connect to PROACTIVE_TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.expect("create schema");
    admin.close().await;
    let opts =
        sqlx::postgres::PgConnectOptions::from_str(&url).expect("URL").options([("search_path", schema.as_str())]);
    let db = Db::connect_pg(opts, 4).await.expect("connect");
    db.migrate().await.expect("migrate PostgreSQL");
    let scoped = format!("{url}{}options=-csearch_path%3D{schema}", if url.contains('?') { "&" } else { "?" });
    Some(TestDb { db, name: "postgres", url: scoped, dir: None, schema: Some((url, schema)) })
}

/// Every store the suite runs on: SQLite always, PostgreSQL when configured.
pub async fn stores() -> Vec<TestDb> {
    let mut v = vec![sqlite().await];
    v.extend(postgres().await);
    v
}

/// A configuration on `url` with the shipped definitions and file sinks in `out`.
pub fn config(url: &str, out: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.database.url = url.to_string();
    cfg.paths.life_events = root().join("life-events");
    cfg.paths.rules = root().join("rules");
    cfg.paths.connectors = root().join("connectors");
    cfg.channels.email = ChannelConfig::File { dir: out.join("email") };
    cfg.channels.eaddress = ChannelConfig::File { dir: out.join("eaddress") };
    cfg.channels.sms = ChannelConfig::File { dir: out.join("sms") };
    cfg.delivery.backoff_base_ms = 10;
    cfg.delivery.backoff_max_ms = 50;
    cfg
}

/// As [`config`], with a fixed one-step birth definition (`tests/fixtures`)
/// instead of the shipped library: for tests of delivery, which must not
/// change when policy staff add a step.
pub fn fixture_config(url: &str, out: &std::path::Path) -> Config {
    let mut cfg = config(url, out);
    cfg.paths.life_events = root().join("tests/fixtures/life-events");
    cfg.paths.rules = root().join("tests/fixtures/rules");
    cfg
}

/// An SMTP channel configuration for a local server.
pub fn smtp(addr: SocketAddr) -> ChannelConfig {
    ChannelConfig::Smtp(SmtpConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: SmtpTls::None,
        message_id_domain: "test.proactive".into(),
        timeout_secs: 5,
        ..SmtpConfig::default()
    })
}

/// The clock the sample births are fresh at.
pub fn demo_clock() -> proactive::clock::Clock {
    let at = chrono::DateTime::parse_from_rfc3339(proactive::demo::DEMO_START).unwrap().to_utc();
    proactive::clock::Clock::manual(at)
}

/// A birth record in the contract's shape.
pub fn birth(id: &str, child: &str, mother: Option<&str>, father: Option<&str>, day: &str) -> serde_json::Value {
    serde_json::json!({
        "source": "pmlp", "id": id, "type": "birth.registered", "subject": child,
        "occurred_at": format!("{day}T10:00:00+02:00"),
        "data": {
            "given_name": "Anna", "family_name": "Kalniņa", "birth_date": day, "sex": "F",
            "mother": mother, "father": father, "municipality": "Rīga", "address": "Brīvības iela 1, Rīga"
        }
    })
}

/// A contact declaration in the contract's shape.
pub fn contact(id: &str, subject: &str, email: Option<&str>, phone: Option<&str>, lang: &str) -> serde_json::Value {
    serde_json::json!({
        "source": "portal", "id": id, "type": "contact.declared", "subject": subject,
        "occurred_at": "2026-11-01T10:00:00+02:00",
        "data": { "email": email, "phone": phone, "language": lang }
    })
}

/// One message as the SMTP server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The raw message.
    pub data: String,
    /// When the server accepted it (answered 250).
    pub at: std::time::Instant,
}

#[derive(Clone)]
struct Collector {
    sink: Arc<Mutex<Vec<Received>>>,
    to: Vec<String>,
    buf: Vec<u8>,
    fail: Arc<Mutex<Vec<u16>>>,
}

impl mailin_embedded::Handler for Collector {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> mailin_embedded::Response {
        // Scripted failures refuse the DATA command (mailin stays in a sane
        // state then; after a refused message body it would not).
        if let Some(code) = self.fail.lock().unwrap().pop() {
            return mailin_embedded::Response::custom(code, "scripted failure".into());
        }
        self.to = to.to_vec();
        self.buf.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let data = String::from_utf8_lossy(&self.buf).into_owned();
        self.sink.lock().unwrap().push(Received { to: self.to.clone(), data, at: std::time::Instant::now() });
        mailin_embedded::response::OK
    }
}

/// A real SMTP server on a loopback port, collecting what it accepts.
pub struct SmtpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Messages accepted so far.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Reply codes to answer the next DATA commands with (last first).
    pub fail: Arc<Mutex<Vec<u16>>>,
}

impl SmtpServer {
    /// Starts the server on a free port.
    pub fn start() -> SmtpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind SMTP");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(Mutex::new(Vec::new()));
        let handler = Collector { sink: received.clone(), to: Vec::new(), buf: Vec::new(), fail: fail.clone() };
        let mut server = mailin_embedded::Server::new(handler);
        // As many threads as a pool of clients may hold connections, like a real relay.
        server.with_name("test.smtp").with_num_threads(16).with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        SmtpServer { addr, received, fail }
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Requests a feed server saw: (`after`, `limit`, `Authorization`).
pub type Requests = Arc<Mutex<Vec<(Option<String>, Option<String>, Option<String>)>>>;

/// A change-feed server of CONTRACTS.md §1 on a loopback port, serving
/// fixed pages; the cursor is the index of the next page.
pub struct FeedServer {
    /// Base URL.
    pub url: String,
    /// Requests seen: (after, limit, authorization).
    pub requests: Requests,
    /// Statuses to answer the next requests with before serving pages (first first).
    pub errors: Arc<Mutex<Vec<u16>>>,
}

#[derive(Clone)]
struct FeedState {
    pages: Arc<Vec<Vec<serde_json::Value>>>,
    requests: Requests,
    errors: Arc<Mutex<Vec<u16>>>,
}

impl FeedServer {
    /// Serves `pages` in order, then empty pages.
    pub async fn start(pages: Vec<Vec<serde_json::Value>>) -> FeedServer {
        use axum::extract::{Query, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;

        async fn changes(
            State(st): State<FeedState>,
            Query(q): Query<std::collections::HashMap<String, String>>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
            st.requests.lock().unwrap().push((q.get("after").cloned(), q.get("limit").cloned(), auth));
            let err = {
                let mut e = st.errors.lock().unwrap();
                if e.is_empty() { None } else { Some(e.remove(0)) }
            };
            if let Some(code) = err {
                let status = StatusCode::from_u16(code).unwrap();
                return (status, [("retry-after", "1")], "busy").into_response();
            }
            let idx: usize = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
            let changes = st.pages.get(idx).cloned().unwrap_or_default();
            let next = if changes.is_empty() { q.get("after").cloned() } else { Some((idx + 1).to_string()) };
            axum::Json(serde_json::json!({ "changes": changes, "next": next })).into_response()
        }

        let requests = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let st = FeedState { pages: Arc::new(pages), requests: requests.clone(), errors: errors.clone() };
        let app = axum::Router::new().route("/changes", axum::routing::get(changes)).with_state(st);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FeedServer { url, requests, errors }
    }
}

/// A source definition for a feed at `url`.
pub fn feed_source(source: &str, url: &str) -> proactive::connectors::SourceDef {
    toml::from_str(&format!(
        "source = \"{source}\"\nkind = \"change_feed\"\nbase_url = \"{url}\"\nschedule = \"* * * * * *\"\npage_size = 3\n"
    ))
    .unwrap()
}

/// Copies a folder tree (the shipped rules, to break one of them in a test).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Ingests change records (each must validate) and runs the engine over them.
pub async fn load(app: &proactive::app::App, records: &[serde_json::Value]) {
    let raw: Vec<proactive::events::RawRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| proactive::events::RawRecord { location: format!("t:{i}"), text: r.to_string() })
        .collect();
    let purposes = app.purposes();
    let c = proactive::events::ingest_records(&app.db, None, &raw, &*purposes, None, app.clock.now_ms()).await.unwrap();
    assert_eq!(c.quarantined, 0);
    app.engine().run_until_idle().await.unwrap();
}
