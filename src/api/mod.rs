//! The HTTP interface of `proactive serve`: the operators' probes
//! (`/healthz`, `/readyz`), the SMS gateway's delivery reports
//! (`POST /callbacks/sms`, CONTRACTS.md §5) and the one-click unsubscribe
//! link of every email (`/unsubscribe/{token}`, RFC 8058). Errors are
//! `application/problem+json`; no personal data is ever in a URL.

mod callbacks;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::App;

/// The router with every endpoint.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/callbacks/sms", post(callbacks::sms_report))
        .route("/unsubscribe/{token}", get(callbacks::unsubscribe_page).post(callbacks::unsubscribe))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(app)
}

async fn ready(State(app): State<App>) -> (StatusCode, &'static str) {
    if app.db.ping().await {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
    }
}

/// An RFC 9457 problem: a status, a title and what exactly is wrong.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    (status, [(axum::http::header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}
