//! The citizen API (`/api/v1/me/…`): consent, preferences, the history of
//! notices with their explanation, and prefilled drafts. A caller is a
//! person with a bearer token ([`super::token`]); they act for themselves
//! or, with `?for=CODE`, for someone they represent — their minor child, their
//! ward, or a person who gave them a mandate (for the mandate's purposes
//! only). The relation is checked on every request from the profiles, so a
//! guardianship that ended or a mandate revoked ends the access at once.
//!
//! What a citizen changes becomes an event of source `api`, validated by the
//! feed's own validator and stored through the agency API's group-commit
//! writer before the answer, so the engine applies it like any registry
//! change (a refusal withdraws the queued notices at its commit).

// A check that fails answers its problem right away: an error here *is* the
// response, built once on the rare path, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::token::TokenError;
use super::{ApiState, Problem, problem, problem_field};
use crate::audit::Entry;
use crate::engine::definitions::ConsentMode;
use crate::events::ValidEvent;
use crate::store::DraftInfo;

/// The source of every event the citizen API records.
pub const SOURCE: &str = "api";

const NOT_YOURS: &str = "you may see and act only for yourself, your minor children, your wards \
                         and the people who gave you a mandate";

/// `?for=CODE`: the person acted for, when it is not the caller.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForQuery {
    /// Personal code of a person the caller represents (a minor child, a ward,
    /// a person who gave them a mandate); absent: the caller themself. Sent
    /// as a query parameter, never in the path; the server logs route
    /// templates only.
    #[serde(rename = "for")]
    #[param(rename = "for", example = "150394-11002")]
    pub(super) for_: Option<String>,
}

/// Who is acting, for whom, and for which purposes.
pub(super) struct Acting {
    /// The caller's code.
    pub caller: String,
    /// The person acted for (the caller themself, or whom they represent).
    pub target: String,
    /// How the caller may act for the target.
    pub relation: &'static str,
    /// The purposes the caller may act for; none for every purpose.
    pub purposes: Option<Vec<String>>,
}

impl Acting {
    fn covers(&self, purpose: &str) -> bool {
        self.purposes.as_ref().is_none_or(|p| p.iter().any(|x| x == purpose))
    }

    fn for_self(&self) -> bool {
        self.caller == self.target
    }

    /// Whoever acted, as events and audit records name them.
    fn by(&self) -> &'static str {
        if self.for_self() { "the person" } else { self.relation }
    }
}

fn unauthorized(detail: &str) -> Response {
    let mut r = problem(StatusCode::UNAUTHORIZED, detail);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    r
}

fn forbidden() -> Response {
    problem(StatusCode::FORBIDDEN, NOT_YOURS)
}

pub(super) fn unavailable(e: &anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "the citizen or staff API cannot reach the store");
    let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; try again");
    r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// The caller's personal code, from their bearer token.
async fn caller(st: &ApiState, headers: &HeaderMap) -> Result<String, Response> {
    let Some(key) = st.token_key.as_deref() else {
        return Err(problem(StatusCode::SERVICE_UNAVAILABLE, "citizen tokens are not configured on this server"));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| unauthorized("no token: send Authorization: Bearer <citizen token>"))?;
    super::token::verify(key, token, chrono::Utc::now().timestamp()).map_err(|e| match e {
        TokenError::Malformed => unauthorized("not a citizen token"),
        TokenError::BadSignature => unauthorized("the token is not valid"),
        TokenError::Expired => unauthorized("the token has expired: log in again"),
    })
}

/// How `caller` may act for `target` (both canonical), or 403 — the same
/// answer whether or not the target is known, so nothing leaks.
pub(super) async fn relation(st: &ApiState, caller: &str, target: &str) -> Result<Acting, Response> {
    let acting = |relation, purposes| Acting { caller: caller.into(), target: target.into(), relation, purposes };
    if caller == target {
        return Ok(acting("the person", None));
    }
    let profile = match st.app.db.load_profiles(&[target.to_string()]).await {
        Ok(mut p) => p.pop(),
        Err(e) => return Err(unavailable(&e)),
    };
    let Some(p) = profile else { return Err(forbidden()) };
    if p.guardians.iter().any(|g| g == caller) {
        return Ok(acting("a guardian", None));
    }
    let parent = p.mother.as_deref() == Some(caller) || p.father.as_deref() == Some(caller);
    let today = crate::engine::event_day(st.app.clock.now_ms());
    if parent && p.age_on(today).is_some_and(|a| (0..18).contains(&a)) {
        return Ok(acting("a parent", None));
    }
    if let Some(m) = p.mandates.iter().find(|m| m.representative == caller) {
        return Ok(acting("a representative", m.purposes.clone()));
    }
    Err(forbidden())
}

/// The caller and whom they act for, from the token and `?for=`.
async fn acting_for(st: &ApiState, headers: &HeaderMap, q: &ForQuery) -> Result<Acting, Response> {
    let caller = caller(st, headers).await?;
    let target = match q.for_.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => caller.clone(),
        Some(code) => crate::events::codes::normalize_personal_code(code)
            .map_err(|e| problem_field(StatusCode::BAD_REQUEST, "for", format!("for: invalid personal code: {e}")))?,
    };
    relation(st, &caller, &target).await
}

/// Riga wall time, RFC 3339.
pub(super) fn rfc3339(ms: i64) -> String {
    crate::clock::from_ms(ms).with_timezone(&chrono_tz::Europe::Riga).to_rfc3339()
}

/// A request body that must be a JSON object.
fn json_object(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, Response> {
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !media.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type: expected application/json"));
    }
    let body = body.map_err(|rej| problem(rej.status(), format!("body: {}", rej.body_text())))?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(problem_field(StatusCode::BAD_REQUEST, "body", "body: expected a JSON object")),
        Err(e) => Err(problem_field(
            StatusCode::BAD_REQUEST,
            "body",
            format!(
                "body: not valid JSON (line {}, column {}): {}",
                e.line(),
                e.column(),
                crate::events::json_error_kind(&e)
            ),
        )),
    }
}

/// 400 naming the first key that is not one of `allowed`.
fn only_keys(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), Response> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(problem_field(
            StatusCode::BAD_REQUEST,
            k,
            format!("{k}: unknown field (expected one of {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A string member, or none when absent or null; 400 naming it when it is something else.
fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, Response> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(problem_field(StatusCode::BAD_REQUEST, key, format!("{key}: expected a string or null"))),
    }
}

fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, Response> {
    opt_str(m, key)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| problem_field(StatusCode::BAD_REQUEST, key, format!("{key}: required")))
}

/// An event of the citizen API, checked by the feed's validator; a wrong
/// field is answered 400 under the request's own name for it (`purpose`,
/// not `data.purpose`).
fn api_event(st: &ApiState, id: String, kind: &str, subject: &str, data: Value) -> Result<ValidEvent, Response> {
    let record = json!({
        "source": SOURCE, "id": id, "type": kind, "subject": subject,
        "occurred_at": rfc3339(st.app.clock.now_ms()), "data": data,
    });
    let purposes = st.app.purposes();
    crate::events::validate_change(None, &record, &*purposes).map_err(|e| {
        let field = e.field.strip_prefix("data.").unwrap_or(&e.field).to_string();
        problem_field(StatusCode::BAD_REQUEST, &field, format!("{field}: {}", e.message))
    })
}

fn fresh_id(kind: &str) -> String {
    format!("{kind}-{}", uuid::Uuid::new_v4().simple())
}

/// Events stored, as answered.
#[derive(Serialize, ToSchema)]
pub struct Recorded {
    /// Always `accepted`: stored durably; the engine applies it within its poll interval.
    #[schema(example = "accepted")]
    status: &'static str,
    /// The events' ids in the log, in the order of `types`.
    event_ids: Vec<String>,
    /// The event types recorded (`consent.refused`, `preferences.declared`, `contact.declared`, …).
    types: Vec<String>,
}

async fn record(st: &ApiState, events: Vec<ValidEvent>) -> Response {
    let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
    match st.writer.store(events, Vec::new()).await {
        Ok(stored) => (
            StatusCode::ACCEPTED,
            Json(Recorded { status: "accepted", event_ids: stored.iter().map(|s| s.seq.to_string()).collect(), types }),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

// --- consent -----------------------------------------------------------------

/// A person's latest word on one purpose and channel.
#[derive(Serialize, ToSchema)]
pub struct ConsentView {
    /// The purpose.
    #[schema(example = "birth")]
    purpose: String,
    /// `eaddress`, `email` or `sms`; null for every channel.
    channel: Option<String>,
    /// `granted` or `refused` (a withdrawal counts as a refusal until a new grant).
    #[schema(example = "refused")]
    state: &'static str,
    /// When it was given.
    at: String,
    /// Where it came from: `portal`, `api`, `proactive` (an unsubscribe link), …
    source: String,
    /// The consent text shown, if recorded.
    text_version: Option<String>,
}

/// A purpose a person can grant or refuse.
#[derive(Serialize, ToSchema)]
pub struct PurposeView {
    /// Its id.
    #[schema(example = "birth")]
    id: String,
    /// The life situation declaring it.
    life_situation: String,
    /// `opt-in` (sent only with a grant) or `opt-out` (sent unless refused).
    #[schema(example = "opt-out")]
    mode: &'static str,
    /// What it is for.
    description: String,
}

/// A person's consents and the purposes they can decide on.
#[derive(Serialize, ToSchema)]
pub struct Consents {
    /// The latest record per purpose and channel.
    consents: Vec<ConsentView>,
    /// Every purpose the life situations declare (the mandate's, for a representative).
    purposes: Vec<PurposeView>,
}

/// Lists consents.
#[utoipa::path(get, path = "/api/v1/me/consents", tag = "citizens", params(ForQuery),
    responses(
        (status = 200, description = "The person's consent records and the purposes", body = Consents),
        (status = 400, description = "`for` is not a personal code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller does not represent that person", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn get_consents(State(st): State<ApiState>, headers: HeaderMap, Query(q): Query<ForQuery>) -> Response {
    let acting = match acting_for(&st, &headers, &q).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let profile = match st.app.db.load_profiles(std::slice::from_ref(&acting.target)).await {
        Ok(mut p) => p.pop().unwrap_or_default(),
        Err(e) => return unavailable(&e),
    };
    let consents = profile
        .consents
        .iter()
        .filter(|c| acting.covers(&c.purpose))
        .map(|c| ConsentView {
            purpose: c.purpose.clone(),
            channel: c.channel.clone(),
            state: if c.granted { "granted" } else { "refused" },
            at: rfc3339(c.at),
            source: c.source.clone(),
            text_version: c.text_version.clone(),
        })
        .collect();
    let mut purposes: Vec<PurposeView> = Vec::new();
    for d in &st.app.rules.situations {
        for p in &d.purposes {
            if acting.covers(&p.id) && !purposes.iter().any(|x| x.id == p.id) {
                purposes.push(PurposeView {
                    id: p.id.clone(),
                    life_situation: d.id.clone(),
                    mode: match p.mode {
                        ConsentMode::OptIn => "opt-in",
                        ConsentMode::OptOut => "opt-out",
                    },
                    description: p.description.clone(),
                });
            }
        }
    }
    purposes.sort_by(|a, b| a.id.cmp(&b.id));
    Json(Consents { consents, purposes }).into_response()
}

/// A consent decision.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConsentRequest {
    /// A purpose some life situation declares.
    #[schema(example = "birth")]
    purpose: String,
    /// `eaddress`, `email` or `sms`; null or absent for every channel.
    #[schema(example = "sms")]
    channel: Option<String>,
    /// `grant`, `refuse` or `withdraw` (a withdrawal is a refusal from now on, until a new grant).
    #[schema(example = "refuse")]
    action: String,
    /// The version of the consent text the person was shown.
    text_version: Option<String>,
}

/// Grants, refuses or withdraws consent.
#[utoipa::path(post, path = "/api/v1/me/consents", tag = "citizens", params(ForQuery),
    request_body(content = ConsentRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Recorded as a consent event (durably); the engine applies it, a refusal \
                                      withdrawing the queued notices of the purpose", body = Recorded),
        (status = 400, description = "A field is wrong; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller does not represent that person for this purpose", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn post_consent(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<ForQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let acting = match acting_for(&st, &headers, &q).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let event = (|| {
        let m = json_object(&headers, body)?;
        only_keys(&m, &["purpose", "channel", "action", "text_version"])?;
        let purpose = req_str(&m, "purpose")?;
        let kind = match req_str(&m, "action")?.as_str() {
            "grant" => "consent.granted",
            "refuse" => "consent.refused",
            "withdraw" => "consent.withdrawn",
            _ => {
                return Err(problem_field(
                    StatusCode::BAD_REQUEST,
                    "action",
                    "action: expected one of grant, refuse, withdraw",
                ));
            }
        };
        let mut data = json!({
            "purpose": purpose, "channel": m.get("channel").cloned().unwrap_or(Value::Null),
            "text_version": opt_str(&m, "text_version")?,
        });
        if !acting.for_self() {
            data["acted_by"] = json!({ "code": acting.caller, "as": acting.relation });
        }
        let event = api_event(&st, fresh_id("consent"), kind, &acting.target, data)?;
        if !acting.covers(&purpose) {
            return Err(problem_field(
                StatusCode::FORBIDDEN,
                "purpose",
                "purpose: the mandate you hold for this person does not cover it",
            ));
        }
        Ok(event)
    })();
    match event {
        Ok(e) => record(&st, vec![e]).await,
        Err(r) => r,
    }
}

// --- preferences -------------------------------------------------------------

/// A person's channel order, quiet hours, language and contacts.
#[derive(Serialize, ToSchema)]
pub struct Preferences {
    /// Their channel order, first preferred; null: each life situation's.
    #[schema(example = json!(["sms", "email"]))]
    channels: Option<Vec<String>>,
    /// Their quiet hours (`HH:MM-HH:MM` Riga time, or `none`); null: the server's.
    #[schema(example = "22:00-07:30")]
    quiet_hours: Option<String>,
    /// `lv`, `en` or `ru`; null: Latvian.
    #[schema(example = "lv")]
    language: Option<String>,
    /// Email declared for notices.
    email: Option<String>,
    /// Phone (E.164) declared for notices.
    phone: Option<String>,
    /// Whether their official e-address account is active (the registry says; not set here).
    eaddress_active: bool,
}

/// Reads preferences.
#[utoipa::path(get, path = "/api/v1/me/preferences", tag = "citizens", params(ForQuery),
    responses(
        (status = 200, description = "The person's preferences and contacts", body = Preferences),
        (status = 400, description = "`for` is not a personal code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller does not represent that person (for every purpose)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn get_preferences(State(st): State<ApiState>, headers: HeaderMap, Query(q): Query<ForQuery>) -> Response {
    let acting = match acting_for(&st, &headers, &q).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if acting.purposes.is_some() {
        return problem(StatusCode::FORBIDDEN, "a mandate for some purposes does not cover the person's preferences");
    }
    let p = match st.app.db.load_profiles(std::slice::from_ref(&acting.target)).await {
        Ok(mut p) => p.pop().unwrap_or_default(),
        Err(e) => return unavailable(&e),
    };
    Json(Preferences {
        channels: (!p.channel_order.is_empty()).then_some(p.channel_order),
        quiet_hours: p.quiet_hours,
        language: p.language,
        email: p.email,
        phone: p.phone,
        eaddress_active: p.eaddress_active,
    })
    .into_response()
}

/// New preferences: `channels` and `quiet_hours` are one group, `language`,
/// `email` and `phone` another; a group named at all is replaced whole (a
/// member left out is null: back to the default, or no such contact).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PreferencesRequest {
    /// Channel order (`eaddress`, `email`, `sms`, `letter`), first preferred; null for each life situation's.
    #[schema(example = json!(["sms", "email"]))]
    channels: Option<Vec<String>>,
    /// `HH:MM-HH:MM` (Riga time) or `none`; null for the server's.
    #[schema(example = "22:00-07:30")]
    quiet_hours: Option<String>,
    /// `lv`, `en` or `ru`; left out with the contacts named: the current one (Latvian if none).
    #[schema(example = "en")]
    language: Option<String>,
    /// Email for notices; null: none.
    #[schema(example = "anna@example.lv")]
    email: Option<String>,
    /// Phone (E.164) for notices; null: none.
    #[schema(example = "+37120000000")]
    phone: Option<String>,
}

/// Replaces preferences.
#[utoipa::path(put, path = "/api/v1/me/preferences", tag = "citizens", params(ForQuery),
    request_body(content = PreferencesRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Recorded as `preferences.declared` and/or `contact.declared` (durably)", body = Recorded),
        (status = 400, description = "A field is wrong, or none is given; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller does not represent that person (for every purpose)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn put_preferences(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<ForQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let acting = match acting_for(&st, &headers, &q).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if acting.purposes.is_some() {
        return problem(StatusCode::FORBIDDEN, "a mandate for some purposes does not cover the person's preferences");
    }
    let m = match json_object(&headers, body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let build = async {
        only_keys(&m, &["channels", "quiet_hours", "language", "email", "phone"])?;
        let member = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
        let acted_by = (!acting.for_self()).then(|| json!({ "code": acting.caller, "as": acting.relation }));
        let mut events = Vec::new();
        if m.contains_key("channels") || m.contains_key("quiet_hours") {
            let mut data = json!({ "channels": member("channels"), "quiet_hours": member("quiet_hours") });
            if let Some(a) = &acted_by {
                data["acted_by"] = a.clone();
            }
            events.push(api_event(&st, fresh_id("preferences"), "preferences.declared", &acting.target, data)?);
        }
        if ["language", "email", "phone"].iter().any(|k| m.contains_key(*k)) {
            let language = match opt_str(&m, "language")? {
                Some(l) => l,
                None => match st.app.db.load_profiles(std::slice::from_ref(&acting.target)).await {
                    Ok(mut p) => p.pop().and_then(|p| p.language).unwrap_or_else(|| "lv".into()),
                    Err(e) => return Err(unavailable(&e)),
                },
            };
            let mut data = json!({ "email": member("email"), "phone": member("phone"), "language": language });
            if let Some(a) = &acted_by {
                data["acted_by"] = a.clone();
            }
            events.push(api_event(&st, fresh_id("contact"), "contact.declared", &acting.target, data)?);
        }
        if events.is_empty() {
            return Err(problem_field(
                StatusCode::BAD_REQUEST,
                "body",
                "body: name at least one of channels, quiet_hours, language, email, phone",
            ));
        }
        Ok(events)
    };
    match build.await {
        Ok(events) => record(&st, events).await,
        Err(r) => r,
    }
}

// --- history -----------------------------------------------------------------

/// A notice to the person, explained.
#[derive(Serialize, ToSchema)]
pub struct NoticeEntry {
    /// Notice id.
    id: String,
    /// Life situation that made it.
    life_situation: String,
    /// Purpose it serves.
    purpose: String,
    /// Step of the chain.
    step: String,
    /// `pending` (waiting or deferred), `sending`, `sent`, `suppressed`, `cancelled`, `dead`, `shadow`.
    #[schema(example = "sent")]
    state: String,
    /// The channel used or last tried.
    channel: Option<String>,
    /// When the engine made it.
    made_at: String,
    /// When it was sent.
    sent_at: Option<String>,
    /// How far it got once sent, as the channel reported: `accepted`, `delivered` or `read`; null before.
    #[schema(example = "read")]
    receipt: Option<String>,
    /// The draft offered with it.
    draft_ref: Option<String>,
    /// What became of it, in one sentence (English, for a service clerk).
    headline: String,
    /// Why it was made, for whom, under which consent, and each attempt — other people's codes masked
    /// (English, for a service clerk: rule, version and event ids included).
    explanation: Vec<String>,
    /// Why the person got it, or why it was not sent, in plain sentences in the answer's `lang`: the
    /// life situation and the fact that began it, whom it is about, the sender and legal basis, the
    /// channel and why that one; no personal codes, names, rule or event ids.
    #[schema(example = json!(["It concerns “Moving home”, because a new place of residence was declared on 20 November 2026.", "It was sent to your email on 23 November 2026."]))]
    why: Vec<String>,
}

/// Every notice to a person.
#[derive(Serialize, ToSchema)]
pub struct Notices {
    /// The language of every notice's `why`: `lv`, `en` or `ru`.
    #[schema(example = "lv")]
    lang: &'static str,
    /// Newest first.
    notices: Vec<NoticeEntry>,
}

/// `?for=CODE&lang=…` of the notices.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NoticesQuery {
    /// As in every citizen call: the person acted for; absent: the caller themself.
    #[serde(rename = "for")]
    #[param(rename = "for", example = "150394-11002")]
    pub(super) for_: Option<String>,
    /// The language of `why`: `lv`, `en` or `ru`; absent: the caller's own language from their
    /// profile (the reader's, also when acting for someone), else `lv`.
    #[param(example = "en")]
    pub(super) lang: Option<String>,
}

/// Lists the notices to the person, with their explanation.
#[utoipa::path(get, path = "/api/v1/me/notices", tag = "citizens", params(NoticesQuery),
    responses(
        (status = 200, description = "Every notice to the person — sent, waiting, deferred, suppressed, withdrawn — explained", body = Notices),
        (status = 400, description = "`for` is not a personal code, or `lang` not one of `lv`, `en`, `ru`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller does not represent that person", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn get_notices(State(st): State<ApiState>, headers: HeaderMap, Query(q): Query<NoticesQuery>) -> Response {
    let asked = match q.lang.as_deref().map(|l| (l, super::pages::known_lang(l))) {
        Some((_, Some(l))) => Some(l),
        Some((l, None)) => {
            return problem_field(StatusCode::BAD_REQUEST, "lang", format!("lang: {l:?} is not one of lv, en, ru"));
        }
        None => None,
    };
    let acting = match acting_for(&st, &headers, &ForQuery { for_: q.for_ }).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let db = &st.app.db;
    let lang = match asked {
        Some(l) => l,
        None => match db.load_profiles(std::slice::from_ref(&acting.caller)).await {
            Ok(mut p) => p.pop().and_then(|p| p.language).as_deref().and_then(super::pages::known_lang).unwrap_or("lv"),
            Err(e) => return unavailable(&e),
        },
    };
    let rows = match db.notices_to(&acting.target, &st.app.audit.pseudonym(&acting.target)).await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    let mut notices = Vec::new();
    for n in rows.iter().filter(|n| acting.covers(&n.purpose)) {
        let (e, reasons) = match crate::audit::explain::explain_masked(db, Some(&st.app.rules), n).await {
            Ok(e) => e,
            Err(e) => return unavailable(&e),
        };
        notices.push(NoticeEntry {
            id: n.id.clone(),
            life_situation: n.life_situation.clone(),
            purpose: n.purpose.clone(),
            step: n.step.clone(),
            state: n.state.clone(),
            channel: n.channel.clone(),
            made_at: rfc3339(n.created_at),
            sent_at: n.sent_at.map(rfc3339),
            receipt: n.receipt_status.clone(),
            draft_ref: n.draft_ref.clone(),
            headline: e.headline,
            explanation: e.lines,
            why: super::pages::why_words(&reasons, lang, &st.app.rules),
        });
    }
    Json(Notices { lang, notices }).into_response()
}

// --- drafts ------------------------------------------------------------------

/// One field of a draft, with where its value came from.
#[derive(Serialize, ToSchema)]
pub struct DraftField {
    /// Field name.
    #[schema(example = "child_name")]
    name: String,
    /// Its value.
    #[schema(value_type = Object)]
    value: Value,
    /// Where it came from: a registry (`pmlp`, …), or `corrected by the applicant` / `corrected by a representative`.
    #[schema(example = "pmlp")]
    source: String,
    /// For a corrected field: what the state had prefilled, and from where.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    prefilled: Option<Value>,
    /// For a corrected field: when.
    #[serde(skip_serializing_if = "Option::is_none")]
    corrected_at: Option<String>,
}

/// A prefilled application.
#[derive(Serialize, ToSchema)]
pub struct Draft {
    /// Its reference.
    #[schema(example = "PR-261118-1A2B-3C4D")]
    reference: String,
    /// Life situation that offered it.
    life_situation: String,
    /// Service catalogue id.
    #[schema(example = "VSAA-BPP")]
    service_id: String,
    /// Title per language.
    title: BTreeMap<String, String>,
    /// `offered`, `opened`, `submitted`, `declined` or `expired`.
    #[schema(example = "offered")]
    status: String,
    /// When it was offered.
    offered_at: String,
    /// When the offer lapses.
    expires_at: String,
    /// When the status last changed.
    status_at: Option<String>,
    /// Its fields with their sources (only in the answer for one draft).
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<DraftField>>,
}

/// The drafts offered to a person.
#[derive(Serialize, ToSchema)]
pub struct Drafts {
    /// Newest first.
    drafts: Vec<Draft>,
}

fn status_of(d: &DraftInfo, now_ms: i64) -> String {
    if matches!(d.status.as_str(), "offered" | "opened") && d.expires_at <= now_ms {
        "expired".into()
    } else {
        d.status.clone()
    }
}

fn draft_view(st: &ApiState, d: &DraftInfo, with_fields: bool) -> Draft {
    let title = st
        .app
        .rules
        .get(&d.life_situation, d.version)
        .and_then(|def| def.drafts.values().find(|x| x.service_id == d.service_id))
        .map(|x| x.title.clone())
        .unwrap_or_default();
    let fields = with_fields.then(|| {
        let obj = d.fields.as_object().cloned().unwrap_or_default();
        obj.into_iter()
            .map(|(name, f)| DraftField {
                name,
                value: f.get("value").cloned().unwrap_or(Value::Null),
                source: f.get("source").and_then(Value::as_str).unwrap_or("unknown").to_string(),
                prefilled: f.get("prefilled").cloned(),
                corrected_at: f.get("corrected_at").and_then(Value::as_i64).map(rfc3339),
            })
            .collect()
    });
    Draft {
        reference: d.reference.clone(),
        life_situation: d.life_situation.clone(),
        service_id: d.service_id.clone(),
        title,
        status: status_of(d, st.app.clock.now_ms()),
        offered_at: rfc3339(d.created_at),
        expires_at: rfc3339(d.expires_at),
        status_at: d.status_at.map(rfc3339),
        fields,
    }
}

/// Lists the drafts offered to the person.
#[utoipa::path(get, path = "/api/v1/me/drafts", tag = "citizens", params(ForQuery),
    responses(
        (status = 200, description = "The drafts offered to the person", body = Drafts),
        (status = 400, description = "`for` is not a personal code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller does not represent that person", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn get_drafts(State(st): State<ApiState>, headers: HeaderMap, Query(q): Query<ForQuery>) -> Response {
    let acting = match acting_for(&st, &headers, &q).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match st.app.db.drafts_of_applicant(&acting.target).await {
        Ok(rows) => {
            let drafts = rows.iter().filter(|d| acting.covers(&d.life_situation)).map(|d| draft_view(&st, d, false));
            Json(Drafts { drafts: drafts.collect() }).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// The draft a reference names, if the caller may act for its applicant:
/// an unknown reference gets the same 403 as someone else's, so a caller
/// cannot tell which references exist.
async fn own_draft(st: &ApiState, headers: &HeaderMap, reference: &str) -> Result<(Acting, DraftInfo), Response> {
    let caller = caller(st, headers).await?;
    let draft = match st.app.db.draft_info(reference).await {
        Ok(Some(d)) if d.erased_at.is_none() => d,
        Ok(_) => return Err(forbidden()),
        Err(e) => return Err(unavailable(&e)),
    };
    let acting = relation(st, &caller, &draft.applicant).await?;
    if !acting.covers(&draft.life_situation) {
        return Err(forbidden());
    }
    Ok((acting, draft))
}

/// 409 unless the draft can still be changed, submitted or declined.
fn still_open(d: &DraftInfo, now_ms: i64) -> Result<(), Response> {
    match status_of(d, now_ms).as_str() {
        "offered" | "opened" => Ok(()),
        s => Err(problem(StatusCode::CONFLICT, format!("the draft is {s}; it can no longer be changed"))),
    }
}

fn draft_entry(st: &ApiState, kind: &str, acting: &Acting, d: &DraftInfo, detail: Value) -> Entry {
    let mut detail = detail;
    detail["draft_ref"] = d.reference.clone().into();
    detail["service_id"] = d.service_id.clone().into();
    detail["by"] = acting.by().into();
    if !acting.for_self() {
        detail["actor"] = st.app.audit.pseudonym(&acting.caller).into();
    }
    Entry {
        kind: kind.into(),
        at: st.app.clock.now_ms(),
        purpose: Some(d.life_situation.clone()),
        subject: Some(d.applicant.clone()),
        notice_id: None,
        detail,
    }
}

/// Path parameter of the draft endpoints.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DraftPath {
    /// The draft's reference (as in its notice).
    #[param(example = "PR-261118-1A2B-3C4D")]
    pub(super) reference: String,
}

/// Reads one draft with its fields.
#[utoipa::path(get, path = "/api/v1/me/drafts/{reference}", tag = "citizens", params(DraftPath),
    responses(
        (status = 200, description = "The draft with each field and its source; an offered draft becomes opened", body = Draft),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a draft of the caller or of anyone they represent (or no such draft)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn get_draft(State(st): State<ApiState>, headers: HeaderMap, Path(p): Path<DraftPath>) -> Response {
    let (_, mut d) = match own_draft(&st, &headers, &p.reference).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = st.app.clock.now_ms();
    if d.status == "offered" && d.expires_at > now {
        match st.app.db.mark_draft_opened(&d.reference, now).await {
            Ok(true) => {
                d.status = "opened".into();
                d.status_at = Some(now);
            }
            Ok(false) => {}
            Err(e) => return unavailable(&e),
        }
    }
    Json(draft_view(&st, &d, true)).into_response()
}

/// A correction of one field.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Correction {
    /// The field's name (one the draft has; not an identity code).
    #[schema(example = "child_name")]
    field: String,
    /// The right value: a string, number or true/false.
    #[schema(value_type = Object, example = "Anna Kalniņa")]
    value: Value,
}

/// Longest corrected text.
const MAX_VALUE_CHARS: usize = 500;

/// Corrects a field of a draft.
#[utoipa::path(patch, path = "/api/v1/me/drafts/{reference}", tag = "citizens", params(DraftPath),
    request_body(content = Correction, content_type = "application/json"),
    responses(
        (status = 200, description = "Corrected: the field's source is now the applicant, the prefilled value kept beside it", body = Draft),
        (status = 400, description = "A field is wrong; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a draft of the caller or of anyone they represent (or no such draft)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Submitted, declined or expired already, or changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn patch_draft(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(p): Path<DraftPath>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (acting, d) = match own_draft(&st, &headers, &p.reference).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = st.app.clock.now_ms();
    let checked = (|| {
        let m = json_object(&headers, body)?;
        only_keys(&m, &["field", "value"])?;
        let field = req_str(&m, "field")?;
        let Some(current) = d.fields.get(&field) else {
            return Err(problem_field(StatusCode::BAD_REQUEST, "field", "field: the draft has no such field"));
        };
        if field.ends_with("_code") {
            return Err(problem_field(
                StatusCode::BAD_REQUEST,
                "field",
                "field: an identity code cannot be corrected here; the registry that holds it can",
            ));
        }
        let value = match m.get("value") {
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(problem_field(StatusCode::BAD_REQUEST, "value", "value: must not be empty"));
            }
            Some(Value::String(s)) if s.chars().count() > MAX_VALUE_CHARS => {
                return Err(problem_field(
                    StatusCode::BAD_REQUEST,
                    "value",
                    format!("value: longer than {MAX_VALUE_CHARS} characters"),
                ));
            }
            Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => v.clone(),
            None => return Err(problem_field(StatusCode::BAD_REQUEST, "value", "value: required")),
            Some(_) => {
                return Err(problem_field(
                    StatusCode::BAD_REQUEST,
                    "value",
                    "value: expected a string, number or true/false",
                ));
            }
        };
        still_open(&d, now)?;
        Ok((field, current.clone(), value))
    })();
    let (field, current, value) = match checked {
        Ok(x) => x,
        Err(r) => return r,
    };
    // The state's own value is kept beside the correction, the first one only:
    // a second correction corrects the applicant, not the registry.
    let prefilled = current.get("prefilled").cloned().unwrap_or_else(|| {
        json!({ "value": current.get("value").cloned().unwrap_or(Value::Null), "source": current.get("source").cloned().unwrap_or(Value::Null) })
    });
    let source = if acting.for_self() { "corrected by the applicant" } else { "corrected by a representative" };
    let mut fields = d.fields.clone();
    fields[field.as_str()] = json!({ "value": value, "source": source, "prefilled": prefilled, "corrected_at": now });
    let entry = draft_entry(&st, "citizen.draft_corrected", &acting, &d, json!({ "field": field }));
    match st.app.db.correct_draft(&d.reference, &d.fields, &fields, &st.app.audit, entry, now).await {
        Ok(true) => {
            let d = DraftInfo { fields, ..d };
            Json(draft_view(&st, &d, true)).into_response()
        }
        Ok(false) => problem(StatusCode::CONFLICT, "the draft changed meanwhile (or is no longer open); read it again"),
        Err(e) => unavailable(&e),
    }
}

/// The receipt of a submitted application.
#[derive(Serialize, ToSchema)]
pub struct Submitted {
    /// `submitted`.
    #[schema(example = "submitted")]
    status: &'static str,
    /// The draft's reference, which the receiving agency files it under.
    reference: String,
    /// Service catalogue id.
    service_id: String,
    /// The `application.submitted` event in the log.
    event_id: String,
    /// When.
    submitted_at: String,
    /// The confirmation, in words.
    receipt: String,
}

/// Submits a draft.
#[utoipa::path(post, path = "/api/v1/me/drafts/{reference}/submit", tag = "citizens", params(DraftPath),
    responses(
        (status = 202, description = "Recorded as `application.submitted` (durably), which stops the case's reminders; \
                                      the answer is the receipt, also kept in the audit log", body = Submitted),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a draft of the caller or of anyone they represent (or no such draft)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Submitted, declined or expired already", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn submit_draft(State(st): State<ApiState>, headers: HeaderMap, Path(p): Path<DraftPath>) -> Response {
    let (acting, d) = match own_draft(&st, &headers, &p.reference).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = st.app.clock.now_ms();
    if let Err(r) = still_open(&d, now) {
        return r;
    }
    let stored = match record_decision(&st, &acting, &d, "submit", "application.submitted").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // The event is durable first; if this status change is lost, sending the
    // submission again finds the draft still open and the event a duplicate.
    let entry = draft_entry(&st, "citizen.draft_submitted", &acting, &d, json!({ "event_seq": stored.seq }));
    match st.app.db.decide_draft(&d.reference, "submitted", &st.app.audit, entry, now).await {
        Ok(_) => {}
        Err(e) => return unavailable(&e),
    }
    let when = rfc3339(now);
    let receipt = format!(
        "Application {} for the service {} was received on {}; reminders about it stop.",
        d.reference, d.service_id, when
    );
    (
        StatusCode::ACCEPTED,
        Json(Submitted {
            status: "submitted",
            reference: d.reference,
            service_id: d.service_id,
            event_id: stored.seq.to_string(),
            submitted_at: when,
            receipt,
        }),
    )
        .into_response()
}

/// Stores the event of a person's decision on a draft (the service, the
/// draft, and who acted when a representative did), durably, before the
/// draft's status changes. One id per draft and decision: a request sent
/// again after a lost answer is the same event.
async fn record_decision(
    st: &ApiState,
    acting: &Acting,
    d: &DraftInfo,
    id_prefix: &str,
    event_type: &str,
) -> Result<crate::store::Stored, Response> {
    let mut data = json!({ "service_id": d.service_id, "draft_ref": d.reference });
    if !acting.for_self() {
        data["acted_by"] = json!({ "code": acting.caller, "as": acting.relation });
    }
    let event = api_event(st, format!("{id_prefix}-{}", d.reference), event_type, &d.applicant, data)?;
    match st.writer.store(vec![event], Vec::new()).await {
        Ok(s) => Ok(s[0]),
        Err(e) => Err(unavailable(&e)),
    }
}

/// Declines a draft.
#[utoipa::path(post, path = "/api/v1/me/drafts/{reference}/decline", tag = "citizens", params(DraftPath),
    responses(
        (status = 200, description = "Declined: recorded as `application.declined` (durably), which stops the case's \
                                      reminders about it, and in the audit log", body = Draft),
        (status = 401, description = "No, a bad or an expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a draft of the caller or of anyone they represent (or no such draft)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Submitted, declined or expired already", body = Problem, content_type = "application/problem+json"),
    ),
    security(("citizen_token" = []))
)]
pub async fn decline_draft(State(st): State<ApiState>, headers: HeaderMap, Path(p): Path<DraftPath>) -> Response {
    let (acting, d) = match own_draft(&st, &headers, &p.reference).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = st.app.clock.now_ms();
    if let Err(r) = still_open(&d, now) {
        return r;
    }
    // Recorded in the log like a submission, so that the case's reminders
    // about this application stop: the person has said no.
    let stored = match record_decision(&st, &acting, &d, "decline", "application.declined").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let entry = draft_entry(&st, "citizen.draft_declined", &acting, &d, json!({ "event_seq": stored.seq }));
    match st.app.db.decide_draft(&d.reference, "declined", &st.app.audit, entry, now).await {
        Ok(true) => {
            let d = DraftInfo { status: "declined".into(), status_at: Some(now), ..d };
            Json(draft_view(&st, &d, false)).into_response()
        }
        Ok(false) => problem(StatusCode::CONFLICT, "the draft was submitted or declined meanwhile"),
        Err(e) => unavailable(&e),
    }
}
