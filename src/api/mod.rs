//! The HTTP interface of `proactive serve`: the agency push
//! (`POST /api/v1/events`, `POST /api/v1/events:batch`, CONTRACTS.md §3),
//! the citizen API (`/api/v1/me/…`, bearer tokens of [`token`]), the staff
//! API (`/api/v1/staff/…`, staff keys),
//! the operators' probes (`/healthz`, `/readyz`) and metrics (`/metrics`),
//! the SMS gateway's delivery reports (`POST /callbacks/sms`, CONTRACTS.md
//! §5), the one-click unsubscribe link of every email (`/unsubscribe/{token}`,
//! RFC 8058), the OpenAPI description (`/api/openapi.json`), and the pages for
//! citizens (`/`) and staff (`/staff`) ([`pages`]).
//!
//! Every error of the API is `application/problem+json`, axum's own rejections
//! included (a page's errors are pages);
//! every request has a size limit and a time limit; the request log names
//! the route template (never a concrete path, a query or a body), so no
//! personal data reaches it from a URL.

mod callbacks;
mod citizen;
mod doc;
mod events;
pub mod keys;
mod pages;
mod staff;
pub mod token;
mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::app::App;

pub use doc::openapi;
pub use writer::MAX_GROUP;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The engine's configuration, store, rules and channels.
    pub app: App,
    /// API keys seen lately, and their uses not yet written.
    pub keys: Arc<keys::KeyRing>,
    /// The group-commit writer of pushed events (and of the citizen API's).
    pub writer: writer::Writer,
    /// The key of citizen tokens; none when the configured secret is missing
    /// (the citizen API then answers 503 and the rest works on).
    pub token_key: Option<Arc<[u8]>>,
}

impl FromRef<ApiState> for App {
    fn from_ref(s: &ApiState) -> App {
        s.app.clone()
    }
}

/// The router and the writer task behind it.
pub struct Api {
    /// Every endpoint.
    pub router: Router,
    /// Ends once the router (every clone of it) is dropped and the last commit is written.
    pub writer: JoinHandle<()>,
}

/// Builds the router and starts its writer task (call inside a Tokio runtime).
pub fn start(app: App) -> Api {
    let keys = Arc::new(keys::KeyRing::default());
    let (writer, task) = writer::Writer::start(app.db.clone(), app.clock.clone(), keys.clone());
    let http = app.cfg.http.clone();
    let token_key = match token::token_key(&http) {
        Ok(k) => Some(Arc::from(k)),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "citizen tokens cannot be verified: the citizen API answers 503");
            None
        }
    };
    let state = ApiState { app, keys, writer, token_key };
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/v1/events", post(events::post_event))
        .route("/api/v1/events:batch", post(events::post_batch).layer(DefaultBodyLimit::max(http.max_batch_bytes)))
        .route("/api/v1/me/consents", get(citizen::get_consents).post(citizen::post_consent))
        .route("/api/v1/me/preferences", get(citizen::get_preferences).put(citizen::put_preferences))
        .route("/api/v1/me/notices", get(citizen::get_notices))
        .route("/api/v1/me/drafts", get(citizen::get_drafts))
        .route("/api/v1/me/drafts/{reference}", get(citizen::get_draft).patch(citizen::patch_draft))
        .route("/api/v1/me/drafts/{reference}/submit", post(citizen::submit_draft))
        .route("/api/v1/me/drafts/{reference}/decline", post(citizen::decline_draft))
        .route("/api/v1/staff/life-situations", get(staff::life_situations))
        .route("/api/v1/staff/cases/stats", get(staff::case_stats))
        .route("/api/v1/staff/cases/{id}", get(staff::get_case))
        .route("/api/v1/staff/cases/{id}/cancel", post(staff::cancel_case))
        .route("/api/v1/staff/notices/stats", get(staff::notice_stats))
        .route("/api/v1/staff/take-up", get(staff::take_up))
        .route("/api/v1/staff/dead-letters", get(staff::dead_letters))
        .route("/callbacks/sms", post(callbacks::sms_report))
        .route("/unsubscribe/{token}", get(callbacks::unsubscribe_page).post(callbacks::unsubscribe))
        .merge(pages::routes())
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such endpoint (see /api/openapi.json)") })
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(Duration::from_secs(http.request_timeout_secs.max(1)), guard))
        .with_state(state);
    Api { router, writer: task }
}

/// The router with every endpoint; its writer task runs detached (tests, tools).
pub fn router(app: App) -> Router {
    start(app).router
}

/// Time limit, problem+json for every error, the request log and its counter.
async fn guard(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // The template (`/unsubscribe/{token}`), not the path: nothing a caller put in the URL is logged.
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let mut response = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let mut r = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request took longer than {} s; what was sent may be stored: send it again \
                     (a stored event answers as a duplicate)",
                    limit.as_secs()
                ),
            );
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
    };
    let status = response.status();
    if (status.is_client_error() || status.is_server_error()) && !is_problem(&response) && !pages::is_page(&response) {
        response = as_problem(response).await;
    }
    crate::metrics::get().http_requests.with_label_values(&[route.as_str(), status.as_str()]).inc();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(%method, route, status = status.as_u16(), ms, "HTTP request");
    } else if status.is_client_error() {
        tracing::info!(%method, route, status = status.as_u16(), ms, "HTTP request");
    } else {
        tracing::debug!(%method, route, status = status.as_u16(), ms, "HTTP request");
    }
    response
}

fn is_problem(r: &Response) -> bool {
    r.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}

/// Turns one of axum's plain-text rejections (413, 415, 405, …) into a problem with the same status.
async fn as_problem(r: Response) -> Response {
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let detail = if text.is_empty() { parts.status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let mut p = problem(parts.status, detail);
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            p.headers_mut().insert(name, v.clone());
        }
    }
    p
}

/// Process up.
#[utoipa::path(get, path = "/healthz", tag = "operators", responses((status = 200, description = "The process is up", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Database reachable.
#[utoipa::path(get, path = "/readyz", tag = "operators", responses(
    (status = 200, description = "The store answers and its migrations ran", body = String),
    (status = 503, description = "The store does not answer", body = String),
))]
async fn ready(State(app): State<App>) -> (StatusCode, &'static str) {
    if !app.db.ping().await {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
    } else if !app.db.migrations_current().await {
        (StatusCode::SERVICE_UNAVAILABLE, "the database's schema is not this version's (run proactive migrate)\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operators", responses(
    (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"),
    (status = 503, description = "The store's gauges cannot be read", body = Problem, content_type = "application/problem+json"),
))]
async fn metrics(State(app): State<App>) -> Response {
    match app.db.metric_gauges().await {
        Ok(g) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render(&g))
            .into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read the store's gauges");
            problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
        }
    }
}

/// This description.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operators", responses(
    (status = 200, description = "The OpenAPI description of this server", body = Object)
))]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc::openapi_text()).into_response()
}

/// An RFC 9457 problem, as every error of this API is answered.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    kind: String,
    /// The status's reason phrase.
    #[schema(example = "Bad Request")]
    title: String,
    /// The HTTP status.
    #[schema(example = 400)]
    status: u16,
    /// What exactly is wrong, naming the field; never the value, which may be personal data.
    #[schema(example = "data.mother: invalid personal code: check digit does not match")]
    detail: String,
    /// The field that is wrong (`data.mother`, `occurred_at`, …), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "data.mother")]
    field: Option<String>,
}

fn problem_response(status: StatusCode, field: Option<&str>, detail: String) -> Response {
    let body = Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("error").into(),
        status: status.as_u16(),
        detail,
        field: field.map(str::to_string),
    };
    let text = serde_json::to_string(&body).expect("a problem serializes");
    (status, [(header::CONTENT_TYPE, "application/problem+json")], text).into_response()
}

/// An RFC 9457 problem: a status, a title and what exactly is wrong.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    problem_response(status, None, detail.into())
}

/// A problem naming the field that is wrong (also as the `field` member).
pub fn problem_field(status: StatusCode, field: &str, detail: impl Into<String>) -> Response {
    problem_response(status, Some(field), detail.into())
}
