//! The staff API (`/api/v1/staff/…`), for policy staff with a staff key
//! (`proactive keys create --role staff`): the life situations in force,
//! counts of cases and notices, take-up of the drafts offered, dead
//! letters, one case in detail, and cancelling a case (recorded in the
//! audit log with the key's owner as the actor). Persons appear masked:
//! staff read figures and cases, not people.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::citizen::{rfc3339, unavailable};
use super::keys::{Caller, Role};
use super::{ApiState, Problem, problem, problem_field};
use crate::mask::{mask_code, mask_codes_in};
use crate::store::Period;

/// Most dead letters one answer lists (oldest first).
const DEAD_LETTERS: i64 = 1000;

/// A staff key, or 401 (no or a bad key) / 403 (an agency key).
pub(super) async fn staff(st: &ApiState, headers: &HeaderMap) -> Result<Caller, Response> {
    let caller = super::events::authenticate(st, headers).await?;
    if caller.key.role != Role::Staff.as_str() {
        return Err(problem(StatusCode::FORBIDDEN, "this key may not read the staff API (it is not a staff key)"));
    }
    Ok(caller)
}

/// A life situation's definition, as staff see it listed.
#[derive(Serialize, ToSchema)]
pub struct LifeSituationView {
    /// Id (also its main purpose).
    #[schema(example = "birth")]
    id: String,
    /// Version.
    version: i64,
    /// `draft`, `shadow`, `active` or `retired`.
    #[schema(example = "active")]
    status: String,
    /// Name per language.
    #[schema(value_type = Object)]
    name: Value,
    /// First day in force.
    valid_from: String,
    /// First day no longer in force, if set.
    valid_to: Option<String>,
    /// Owner institution.
    owner: String,
    /// The law it rests on.
    legal_basis: String,
    /// Purposes it declares.
    purposes: Vec<String>,
    /// Steps of its chain, in order.
    steps: Vec<String>,
    /// Service catalogue ids.
    services: Vec<String>,
}

/// Every definition loaded.
#[derive(Serialize, ToSchema)]
pub struct LifeSituations {
    /// By id, then version.
    life_situations: Vec<LifeSituationView>,
}

/// Lists the life situations and their versions.
#[utoipa::path(get, path = "/api/v1/staff/life-situations", tag = "staff",
    responses(
        (status = 200, description = "Every definition loaded, every version", body = LifeSituations),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a staff key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("staff_key" = []))
)]
pub async fn life_situations(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = staff(&st, &headers).await {
        return r;
    }
    let mut list: Vec<LifeSituationView> = st
        .app
        .rules
        .situations
        .iter()
        .map(|d| LifeSituationView {
            id: d.id.clone(),
            version: d.version,
            status: serde_json::to_value(d.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            name: serde_json::to_value(&d.name).unwrap_or(Value::Null),
            valid_from: d.valid_from.to_string(),
            valid_to: d.valid_to.map(|t| t.to_string()),
            owner: d.owner.clone(),
            legal_basis: d.legal_basis.clone(),
            purposes: d.purposes.iter().map(|p| p.id.clone()).collect(),
            steps: d.steps.iter().map(|s| s.id.clone()).collect(),
            services: d.services.clone(),
        })
        .collect();
    list.sort_by(|a, b| (a.id.as_str(), a.version).cmp(&(b.id.as_str(), b.version)));
    Json(LifeSituations { life_situations: list }).into_response()
}

/// Cases of one life situation in one state.
#[derive(Serialize, ToSchema)]
pub struct CaseCount {
    /// Life situation.
    life_situation: String,
    /// `open`, `done` or `cancelled`.
    state: String,
    /// How many.
    count: i64,
}

/// Case counts.
#[derive(Serialize, ToSchema)]
pub struct CaseStats {
    /// By life situation and state.
    cases: Vec<CaseCount>,
}

/// Counts cases by life situation and state.
#[utoipa::path(get, path = "/api/v1/staff/cases/stats", tag = "staff",
    responses(
        (status = 200, description = "Cases by life situation and state", body = CaseStats),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a staff key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("staff_key" = []))
)]
pub async fn case_stats(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = staff(&st, &headers).await {
        return r;
    }
    match st.app.db.case_stats().await {
        Ok(rows) => {
            let cases = rows
                .into_iter()
                .map(|t| {
                    let mut l = t.labels.into_iter();
                    CaseCount {
                        life_situation: l.next().unwrap_or_default(),
                        state: l.next().unwrap_or_default(),
                        count: t.count,
                    }
                })
                .collect();
            Json(CaseStats { cases }).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// Notices of one life situation on one channel with one outcome.
#[derive(Serialize, ToSchema)]
pub struct NoticeCount {
    /// Life situation.
    life_situation: String,
    /// Channel used or last tried; null before one was chosen.
    channel: Option<String>,
    /// Outcome so far: `pending`, `sending`, `sent`, `suppressed`, `cancelled`, `dead`, `shadow`.
    outcome: String,
    /// How many.
    count: i64,
}

/// Notice counts.
#[derive(Serialize, ToSchema)]
pub struct NoticeStats {
    /// By life situation, channel and outcome.
    notices: Vec<NoticeCount>,
}

/// Counts notices by life situation, channel and outcome.
#[utoipa::path(get, path = "/api/v1/staff/notices/stats", tag = "staff",
    responses(
        (status = 200, description = "Notices by life situation, channel and outcome", body = NoticeStats),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a staff key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("staff_key" = []))
)]
pub async fn notice_stats(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = staff(&st, &headers).await {
        return r;
    }
    match st.app.db.notice_stats(Period::ALL).await {
        Ok(rows) => {
            let notices = rows
                .into_iter()
                .map(|t| {
                    let mut l = t.labels.into_iter();
                    NoticeCount {
                        life_situation: l.next().unwrap_or_default(),
                        channel: l.next().filter(|c| !c.is_empty()),
                        outcome: l.next().unwrap_or_default(),
                        count: t.count,
                    }
                })
                .collect();
            Json(NoticeStats { notices }).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// Take-up of one service's drafts in one life situation.
#[derive(Serialize, ToSchema)]
pub struct TakeUpRow {
    /// Life situation.
    life_situation: String,
    /// Service catalogue id.
    service_id: String,
    /// Drafts offered.
    offered: i64,
    /// Opened and still open.
    opened: i64,
    /// Submitted.
    submitted: i64,
    /// Declined.
    declined: i64,
    /// Lapsed without an answer.
    expired: i64,
    /// Submitted ÷ offered.
    #[schema(example = 0.42)]
    take_up: f64,
}

/// Take-up per life situation.
#[derive(Serialize, ToSchema)]
pub struct TakeUp {
    /// By life situation and service.
    take_up: Vec<TakeUpRow>,
}

/// Drafts submitted ÷ offered, per life situation and service.
#[utoipa::path(get, path = "/api/v1/staff/take-up", tag = "staff",
    responses(
        (status = 200, description = "Drafts offered, opened, submitted, declined and expired, and the take-up", body = TakeUp),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a staff key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("staff_key" = []))
)]
pub async fn take_up(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = staff(&st, &headers).await {
        return r;
    }
    match st.app.db.take_up(st.app.clock.now_ms(), Period::ALL).await {
        Ok(rows) => {
            let take_up = rows
                .into_iter()
                .map(|t| TakeUpRow {
                    take_up: if t.offered == 0 { 0.0 } else { t.submitted as f64 / t.offered as f64 },
                    life_situation: t.life_situation,
                    service_id: t.service_id,
                    offered: t.offered,
                    opened: t.opened,
                    submitted: t.submitted,
                    declined: t.declined,
                    expired: t.expired,
                })
                .collect();
            Json(TakeUp { take_up }).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// A notice delivery gave up on.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    /// Notice id (`proactive outbox replay ID` queues it again).
    notice_id: String,
    /// Life situation.
    life_situation: String,
    /// Template.
    template: String,
    /// Recipient, masked.
    #[schema(example = "******-***02")]
    recipient: String,
    /// The channel last tried.
    channel: Option<String>,
    /// Attempts made.
    attempts: i64,
    /// Why, codes masked.
    error: Option<String>,
}

/// Dead letters.
#[derive(Serialize, ToSchema)]
pub struct DeadLetters {
    /// Oldest first, at most 1000.
    dead_letters: Vec<DeadLetter>,
}

/// Lists dead-lettered notices.
#[utoipa::path(get, path = "/api/v1/staff/dead-letters", tag = "staff",
    responses(
        (status = 200, description = "Notices delivery gave up on, oldest first (at most 1000)", body = DeadLetters),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a staff key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("staff_key" = []))
)]
pub async fn dead_letters(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = staff(&st, &headers).await {
        return r;
    }
    match st.app.db.list_notices(Some("dead"), DEAD_LETTERS).await {
        Ok(rows) => {
            let dead_letters = rows
                .into_iter()
                .map(|r| DeadLetter {
                    notice_id: r.notice_id,
                    life_situation: r.life_situation,
                    template: r.template,
                    recipient: mask_code(&r.recipient),
                    channel: r.channel,
                    attempts: r.attempts,
                    error: r.last_error.as_deref().map(mask_codes_in),
                })
                .collect();
            Json(DeadLetters { dead_letters }).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// Path parameter of the case endpoints.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CasePath {
    /// The case id (from `proactive cases show`, a dead letter, an explanation).
    id: String,
}

/// A step of a case's plan.
#[derive(Serialize, ToSchema)]
pub struct StepView {
    /// Step id.
    step: String,
    /// When it is (or was) due.
    due: String,
    /// `pending`, `done`, `skipped`, `cancelled`, …
    state: String,
    /// Why it ended so, codes masked.
    why: Option<String>,
}

/// A notice of a case.
#[derive(Serialize, ToSchema)]
pub struct CaseNotice {
    /// Notice id.
    id: String,
    /// Step.
    step: String,
    /// Recipient, masked.
    recipient: String,
    /// State.
    state: String,
    /// When due.
    due: String,
    /// Why it was cancelled or failed, codes masked.
    reason: Option<String>,
}

/// One case.
#[derive(Serialize, ToSchema)]
pub struct CaseView {
    /// Case id.
    id: String,
    /// Life situation.
    life_situation: String,
    /// Version it runs under.
    version: i64,
    /// Whom it is about, masked.
    #[schema(example = "******-***01")]
    subject: String,
    /// `open`, `done` or `cancelled`.
    state: String,
    /// When its trigger happened.
    started_at: String,
    /// Why it ended early, codes masked.
    closed_reason: Option<String>,
    /// Its timed steps.
    steps: Vec<StepView>,
    /// Its notices, in due order.
    notices: Vec<CaseNotice>,
}

/// Reads one case.
#[utoipa::path(get, path = "/api/v1/staff/cases/{id}", tag = "staff", params(CasePath),
    responses(
        (status = 200, description = "The case, its steps and notices, persons masked", body = CaseView),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a staff key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
    ),
    security(("staff_key" = []))
)]
pub async fn get_case(State(st): State<ApiState>, headers: HeaderMap, Path(p): Path<CasePath>) -> Response {
    if let Err(r) = staff(&st, &headers).await {
        return r;
    }
    case_answer(&st, &p.id).await
}

async fn case_answer(st: &ApiState, id: &str) -> Response {
    let db = &st.app.db;
    let case = match db.load_cases(&[id.to_string()]).await {
        Ok(mut c) => match c.pop() {
            Some(c) => c,
            None => return problem(StatusCode::NOT_FOUND, "no such case"),
        },
        Err(e) => return unavailable(&e),
    };
    let notices = match db.notices_of(Some(id)).await {
        Ok(n) => n,
        Err(e) => return unavailable(&e),
    };
    let steps = case
        .plan
        .iter()
        .map(|(step, p)| StepView {
            step: step.clone(),
            due: rfc3339(p.due),
            state: serde_json::to_value(p.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            why: p.why.as_deref().map(mask_codes_in),
        })
        .collect();
    let notices = notices
        .into_iter()
        .map(|n| CaseNotice {
            id: n.id,
            step: n.step,
            recipient: mask_code(&n.recipient),
            state: n.state,
            due: rfc3339(n.due_at),
            reason: n.last_error.as_deref().map(mask_codes_in),
        })
        .collect();
    Json(CaseView {
        id: case.id,
        life_situation: case.life_situation,
        version: case.version,
        subject: mask_code(&case.subject),
        state: case.state,
        started_at: rfc3339(case.started_at),
        closed_reason: case.closed_reason.as_deref().map(mask_codes_in),
        steps,
        notices,
    })
    .into_response()
}

/// Why a case is cancelled.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CancelRequest {
    /// Recorded on the case, its steps and notices and in the audit log.
    #[schema(example = "duplicate of a case opened by hand")]
    reason: String,
}

/// Cancels an open case.
#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/cancel", tag = "staff", params(CasePath),
    request_body(content = CancelRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Cancelled with its waiting steps and queued notices; recorded in the audit log \
                                      with the key's owner as the actor", body = CaseView),
        (status = 400, description = "No reason; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a staff key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case is not open", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ),
    security(("staff_key" = []))
)]
pub async fn cancel_case(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(p): Path<CasePath>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match staff(&st, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !media.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type: expected application/json");
    }
    let body = match body {
        Ok(b) => b,
        Err(rej) => return problem(rej.status(), format!("body: {}", rej.body_text())),
    };
    let reason = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| *k != "reason") {
                return problem_field(StatusCode::BAD_REQUEST, k, format!("{k}: unknown field (expected reason)"));
            }
            match m.get("reason") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    return problem_field(
                        StatusCode::BAD_REQUEST,
                        "reason",
                        "reason: required: say why the case is cancelled",
                    );
                }
                Some(_) => return problem_field(StatusCode::BAD_REQUEST, "reason", "reason: expected a string"),
            }
        }
        _ => return problem_field(StatusCode::BAD_REQUEST, "body", "body: expected a JSON object with reason"),
    };
    let db = &st.app.db;
    match db.load_cases(std::slice::from_ref(&p.id)).await {
        Ok(c) if c.is_empty() => return problem(StatusCode::NOT_FOUND, "no such case"),
        Ok(c) if c[0].state != crate::engine::cases::OPEN => {
            return problem(
                StatusCode::CONFLICT,
                format!("the case is {} already; only an open case can be cancelled", c[0].state),
            );
        }
        Ok(_) => {}
        Err(e) => return unavailable(&e),
    }
    let by = format!("{} (staff key {})", caller.key.owner, caller.key.id);
    let now = st.app.clock.now_ms();
    match crate::audit::commands::cancel_case(db, &st.app.audit, &p.id, &reason, &by, now).await {
        Ok(done) => {
            tracing::info!(case = %done.case_id, steps = done.steps, notices = done.notices, key = %caller.key.id, "case cancelled by staff");
            case_answer(&st, &p.id).await
        }
        // Checked open just above: a failure here is the store, or a race with the engine ending it.
        Err(e) => match db.load_cases(std::slice::from_ref(&p.id)).await {
            Ok(c) if c.first().is_some_and(|c| c.state != crate::engine::cases::OPEN) => {
                problem(StatusCode::CONFLICT, "the case ended meanwhile")
            }
            _ => unavailable(&e),
        },
    }
}
