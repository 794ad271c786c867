//! What gateways and email clients call back: SMS delivery reports, and the
//! one-click unsubscribe, which becomes a `consent.refused` of the notice's
//! purpose on email in the event log, like a refusal from the state portal.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::problem;
use crate::app::App;
use crate::delivery::channels::Transport;
use crate::store::ReceiptRow;

/// A delivery report as the SMS gateway POSTs it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsReport {
    id: String,
    reference: String,
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// `POST /callbacks/sms`: authenticated by the callback secret; records the
/// receipt (a `failed` report dead-letters the notice with the gateway's error).
#[utoipa::path(post, path = "/callbacks/sms", tag = "callbacks",
    request_body(content = Object, description = "`{\"id\", \"reference\", \"status\": \"delivered\"|\"failed\", \"error\"}` (CONTRACTS.md §5)", content_type = "application/json"),
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "A field is wrong", body = super::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or a wrong callback secret", body = super::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No notice has this reference, or SMS is not an HTTP gateway here", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("callback_secret" = []))
)]
pub async fn sms_report(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(Transport::Sms(client)) = &app.channels.sms else {
        return problem(StatusCode::NOT_FOUND, "the SMS channel is not an HTTP gateway here");
    };
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !client.callback_authorized(auth) {
        return problem(StatusCode::UNAUTHORIZED, "missing or wrong callback secret (Authorization: Bearer …)");
    }
    let report: SmsReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    if !matches!(report.status.as_str(), "delivered" | "failed") {
        return problem(StatusCode::BAD_REQUEST, "status: must be \"delivered\" or \"failed\"");
    }
    let receipt = ReceiptRow {
        notice_id: report.reference.clone(),
        channel: "sms".into(),
        provider_id: Some(report.id),
        status: report.status,
        detail: report.error,
    };
    match app.db.record_receipt(&receipt, app.clock.now_ms()).await {
        Ok(true) => {
            tracing::info!(notice = %receipt.notice_id, status = %receipt.status, "SMS delivery report");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => problem(StatusCode::NOT_FOUND, "reference: no notice has this id"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot record an SMS delivery report");
            problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; send the report again")
        }
    }
}

/// The notice a token is for, if the token is ours: (notice id, recipient, purpose).
async fn verified(app: &App, token: &str) -> Result<(String, String, String), Response> {
    let bad = || problem(StatusCode::NOT_FOUND, "this unsubscribe link is not valid");
    let id = crate::delivery::unsubscribe::token_notice_id(token).ok_or_else(bad)?.to_string();
    let (recipient, purpose, _) = match app.db.notice_brief(&id).await {
        Ok(Some(n)) => n,
        Ok(None) => return Err(bad()),
        Err(_) => return Err(problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; try again")),
    };
    let key = crate::delivery::unsubscribe::unsubscribe_key(&app.cfg.links)
        .map_err(|_| problem(StatusCode::SERVICE_UNAVAILABLE, "unsubscribe links are not configured"))?;
    if !crate::delivery::unsubscribe::verify_unsubscribe_token(&key, token, &recipient, &purpose) {
        return Err(bad());
    }
    Ok((id, recipient, purpose))
}

/// `GET /unsubscribe/{token}`: a page with one button, so that a mail
/// scanner following links never unsubscribes anyone by itself.
#[utoipa::path(get, path = "/unsubscribe/{token}", tag = "callbacks",
    params(("token" = String, Path, description = "The token of the email's List-Unsubscribe link")),
    responses(
        (status = 200, description = "A page with one button", body = String, content_type = "text/html"),
        (status = 404, description = "Not a valid link", body = super::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn unsubscribe_page(State(app): State<App>, Path(token): Path<String>) -> Response {
    if let Err(r) = verified(&app, &token).await {
        return r;
    }
    let page = format!(
        "<!doctype html><html lang=\"lv\"><head><meta charset=\"utf-8\"><title>Atteikties no e-pasta ziņām</title></head>\
         <body><main><h1>Atteikties no šo ziņu saņemšanas e-pastā</h1>\
         <p>Jūs vairs nesaņemsiet e-pastā ziņas par šo dzīves situāciju. Oficiālie paziņojumi joprojām tiks sūtīti uz e-adresi.</p>\
         <p lang=\"en\">You will get no more emails about this life situation. Official notices still go to your e-address.</p>\
         <form method=\"post\" action=\"/unsubscribe/{token}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Atteikties / Unsubscribe</button></form></main></body></html>"
    );
    Html(page).into_response()
}

/// `POST /unsubscribe/{token}` (RFC 8058 one-click): records the refusal of
/// the notice's purpose on email as a `consent.refused` event; a repeated
/// click is the same event again, a no-op.
#[utoipa::path(post, path = "/unsubscribe/{token}", tag = "callbacks",
    params(("token" = String, Path, description = "The token of the email's List-Unsubscribe link")),
    responses(
        (status = 200, description = "Recorded", body = String, content_type = "text/html"),
        (status = 404, description = "Not a valid link", body = super::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn unsubscribe(State(app): State<App>, Path(token): Path<String>) -> Response {
    let (id, recipient, purpose) = match verified(&app, &token).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = app.clock.now();
    let record = serde_json::json!({
        "source": "proactive", "id": format!("unsubscribe-{id}"), "type": "consent.refused", "subject": recipient,
        "occurred_at": now.with_timezone(&chrono_tz::Europe::Riga).to_rfc3339(),
        "data": { "purpose": purpose, "channel": "email", "text_version": "list-unsubscribe" },
    });
    let raw =
        crate::events::RawRecord { location: format!("unsubscribe link of notice {id}"), text: record.to_string() };
    let purposes = app.purposes();
    match crate::events::ingest_records(&app.db, None, &[raw], &*purposes, None, now.timestamp_millis()).await {
        Ok(c) if c.quarantined == 0 => {
            tracing::info!(notice = %id, "one-click unsubscribe recorded");
            Html("<!doctype html><html lang=\"lv\"><head><meta charset=\"utf-8\"><title>Atteikts</title></head><body><main>\
                  <p>Atteikums saņemts. / Done: no more emails about this.</p></main></body></html>")
            .into_response()
        }
        Ok(_) => problem(StatusCode::UNPROCESSABLE_ENTITY, "the refusal could not be recorded (see the quarantine)"),
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; try again"),
    }
}
