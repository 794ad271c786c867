//! The HTTP interface of `proactive serve`. For now the operators' probes:
//! `/healthz` (the process is up) and `/readyz` (the database answers).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::app::App;

/// The router with every endpoint.
pub fn router(app: App) -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(ready)).with_state(app)
}

async fn ready(State(app): State<App>) -> (StatusCode, &'static str) {
    if app.db.ping().await {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
    }
}
