//! Fakes of the e-address (CONTRACTS.md §4) and SMS (§5) gateways: real axum
//! servers on loopback ports that answer as the contract says — a repeated
//! Idempotency-Key gets the first acceptance again — and can be scripted to
//! refuse, throttle, stall, or drop the connection without answering.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Which contract a fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `POST /messages`, 201 `{message_id, accepted_at}`.
    Eaddress,
    /// `POST /sms`, 202 `{id, segments}`.
    Sms,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `Idempotency-Key`.
    pub key: Option<String>,
    /// The JSON body.
    pub body: Value,
    /// When the request reached the handler.
    pub at: std::time::Instant,
}

/// An answer to give instead of the contract's normal one.
#[derive(Clone, Debug)]
pub enum Script {
    /// This status, body and `Retry-After`.
    Answer(u16, Value, Option<String>),
    /// Accept the message, then answer only after this long.
    Slow(Duration),
    /// Wait this long, then answer this status (with `Retry-After: 0`) without accepting.
    LateRefusal(Duration, u16),
}

/// What a fake knows and saw.
#[derive(Default)]
pub struct FakeState {
    kind: Option<Kind>,
    /// Every POST that reached the handler, in order.
    pub requests: Mutex<Vec<Seen>>,
    /// Idempotency-Key → the first acceptance's body.
    accepted: Mutex<HashMap<String, Value>>,
    /// Answers for the next POSTs (first first).
    pub script: Mutex<VecDeque<Script>>,
    /// E-address recipients without an active account.
    pub no_account: Mutex<HashSet<String>>,
    /// SMS numbers the gateway does not know (400 invalid_number).
    pub unknown_numbers: Mutex<HashSet<String>>,
    /// Message id → status document for `GET /messages/{id}`.
    pub statuses: Mutex<HashMap<String, Value>>,
    /// `GET /messages/{id}` requests answered.
    pub status_asks: AtomicUsize,
    /// Connections to close without answering.
    pub drop_next: AtomicUsize,
    /// Connections closed without answering so far.
    pub dropped: AtomicUsize,
    next_id: AtomicUsize,
}

/// A running fake.
pub struct GatewayFake {
    /// Base URL.
    pub url: String,
    /// Its state.
    pub state: Arc<FakeState>,
}

impl GatewayFake {
    /// Starts a fake of `kind` on a free loopback port.
    pub async fn start(kind: Kind) -> GatewayFake {
        let state = Arc::new(FakeState { kind: Some(kind), ..FakeState::default() });
        let app = axum::Router::new()
            .route("/messages", axum::routing::post(post))
            .route("/sms", axum::routing::post(post))
            .route("/messages/{id}", axum::routing::get(status))
            .route("/accounts/{code}", axum::routing::get(account))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let listener = Dropping { inner: listener, state: state.clone() };
        tokio::spawn(async move { axum::serve(listener, app).await });
        GatewayFake { url, state }
    }

    /// Every POST the handler saw.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Distinct Idempotency-Keys seen.
    pub fn distinct_keys(&self) -> usize {
        self.requests().iter().filter_map(|r| r.key.clone()).collect::<HashSet<_>>().len()
    }

    /// Messages accepted (one per key).
    pub fn accepted(&self) -> usize {
        self.state.accepted.lock().unwrap().len()
    }

    /// Queues an answer for the next POST.
    pub fn script(&self, s: Script) {
        self.state.script.lock().unwrap().push_back(s);
    }
}

/// A listener that closes the next `drop_next` connections right after
/// reading their request, so the client gets no answer at all.
struct Dropping {
    inner: tokio::net::TcpListener,
    state: Arc<FakeState>,
}

impl axum::serve::Listener for Dropping {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((mut sock, addr)) = self.inner.accept().await else { continue };
            let take = self.state.drop_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if take.is_err() {
                return (sock, addr);
            }
            self.state.dropped.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(1), sock.read(&mut buf)).await;
                drop(sock);
            });
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn answer(status: u16, body: Value, retry_after: Option<String>) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if let Some(ra) = retry_after {
        r.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    // One request a connection, so a scripted drop can hit any request.
    r.headers_mut().insert("connection", "close".parse().unwrap());
    r
}

async fn post(State(st): State<Arc<FakeState>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = h("idempotency-key");
    st.requests.lock().unwrap().push(Seen {
        authorization: h("authorization"),
        key: key.clone(),
        body: body.clone(),
        at: std::time::Instant::now(),
    });
    let kind = st.kind.unwrap();
    let ok_status = if kind == Kind::Eaddress { 201 } else { 202 };
    let scripted = st.script.lock().unwrap().pop_front();
    let mut delay = None;
    match scripted {
        Some(Script::Answer(code, b, ra)) => return answer(code, b, ra),
        Some(Script::Slow(d)) => delay = Some(d),
        Some(Script::LateRefusal(d, code)) => {
            tokio::time::sleep(d).await;
            return answer(code, json!({"error": "busy"}), Some("0".into()));
        }
        None => {}
    }
    let Some(key) = key else { return answer(400, json!({"error": "missing Idempotency-Key"}), None) };
    if let Some(first) = st.accepted.lock().unwrap().get(&key).cloned() {
        return answer(ok_status, first, None);
    }
    let accepted = match kind {
        Kind::Eaddress => {
            let recipient = body["recipient"].as_str().unwrap_or_default().to_string();
            let complete = ["subject", "body_text", "body_html", "reference"].iter().all(|f| body[*f].is_string())
                && body["attachments"].is_array()
                && body["legal_effect"].is_boolean();
            if !complete || recipient.is_empty() {
                return answer(400, json!({"error": "malformed message"}), None);
            }
            if st.no_account.lock().unwrap().contains(&recipient) {
                return answer(404, json!({"error": "no_active_account"}), None);
            }
            let id = format!("msg-{}", st.next_id.fetch_add(1, Ordering::SeqCst) + 1);
            st.statuses.lock().unwrap().insert(id.clone(), json!({"status": "accepted"}));
            json!({"message_id": id, "accepted_at": "2026-11-23T09:00:00+02:00"})
        }
        Kind::Sms => {
            let to = body["to"].as_str().unwrap_or_default().to_string();
            let text = body["text"].as_str().unwrap_or_default();
            if st.unknown_numbers.lock().unwrap().contains(&to) || !to.starts_with('+') {
                return answer(400, json!({"error": "invalid_number"}), None);
            }
            let segments = proactive::delivery::segments::segment(text).segments;
            if segments > 10 {
                return answer(400, json!({"error": "too_long"}), None);
            }
            let id = format!("sms-{}", st.next_id.fetch_add(1, Ordering::SeqCst) + 1);
            json!({"id": id, "segments": segments})
        }
    };
    st.accepted.lock().unwrap().insert(key, accepted.clone());
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    answer(ok_status, accepted, None)
}

async fn status(State(st): State<Arc<FakeState>>, Path(id): Path<String>) -> Response {
    st.status_asks.fetch_add(1, Ordering::SeqCst);
    match st.statuses.lock().unwrap().get(&id).cloned() {
        Some(s) => answer(200, s, None),
        None => answer(404, json!({"error": "unknown_message"}), None),
    }
}

async fn account(State(st): State<Arc<FakeState>>, Path(code): Path<String>) -> Response {
    let active = !st.no_account.lock().unwrap().contains(&code);
    answer(200, json!({"active": active}), None)
}
