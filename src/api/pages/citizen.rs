//! The citizen's page: sign-in with a token, then their notices (and why),
//! consents, preferences, drafts, and the people they represent — each read
//! and changed through the citizen API's own handlers, with the token from
//! the session cookie as the bearer token.
//!
//! Integration point: a person is signed in by [`crate::api::token::verify`]
//! accepting the token in the session cookie. With the state's login, the
//! portal's callback would set that cookie from its own verified token, and
//! `verify` would check that token instead; nothing else here changes.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::session::{self, ACTING, CITIZEN};
use super::{Form, View, see_other};
use crate::api::ApiState;
use crate::api::citizen as api;
use crate::mask::mask_code;

/// Query of the GET pages: the language switch and the outcome of the last form.
#[derive(Deserialize, Default)]
pub(super) struct PageQuery {
    lang: Option<String>,
    done: Option<String>,
    n: Option<u32>,
    err: Option<String>,
    field: Option<String>,
}

/// How long a form's answer waits for the engine to apply the event it recorded.
const SETTLE: Duration = Duration::from_secs(5);

/// The signed-in person: their token and code.
struct Signed {
    token: String,
    caller: String,
}

/// The session's person, if its token is (still) valid.
fn signed_in(st: &ApiState, headers: &HeaderMap) -> Option<Signed> {
    let key = st.token_key.as_deref()?;
    let token = session::cookie(headers, CITIZEN)?;
    let caller = crate::api::token::verify(key, token, chrono::Utc::now().timestamp()).ok()?;
    Some(Signed { token: token.to_string(), caller })
}

/// The headers an API handler expects from a client holding `token`.
fn bearer(token: &str, json_body: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("a verified token"));
    if json_body {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    h
}

/// Why an API call did not answer 2xx: its status and the field it names.
struct Failed {
    status: StatusCode,
    field: Option<String>,
}

/// The JSON of a handler's answer, or why it failed.
async fn answer(r: Response) -> Result<Value, Failed> {
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 16 * 1024 * 1024).await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(v)
    } else {
        Err(Failed { status, field: v.get("field").and_then(Value::as_str).map(String::from) })
    }
}

/// The error page for a failed call.
fn failed(view: View, f: &Failed) -> Response {
    let key = match f.status {
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::CONFLICT => "conflict",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "unavailable",
        _ => "error_title",
    };
    view.error(f.status, key)
}

/// Someone the caller represents, as the page lists them.
#[derive(Serialize)]
struct Person {
    #[serde(skip)]
    code: String,
    handle: String,
    name: String,
    masked: String,
    relation: &'static str,
    purposes: Option<Vec<String>>,
}

fn full_name(p: &crate::engine::profile::Profile) -> String {
    let name = [p.given_name.as_deref(), p.family_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    if name.is_empty() { mask_code(&p.subject) } else { name }
}

/// The people `caller` represents now: minor children, wards, mandators —
/// each confirmed by the API's own relation check.
async fn represented(st: &ApiState, key: &[u8], caller: &str) -> anyhow::Result<Vec<Person>> {
    let me = st.app.db.load_profiles(&[caller.to_string()]).await?.pop().unwrap_or_default();
    let mut leads: Vec<String> = me.children.clone();
    leads.extend(st.app.db.represented_leads(caller).await?);
    let mut seen = HashSet::new();
    leads.retain(|c| c != caller && seen.insert(c.clone()));
    let profiles = st.app.db.load_profiles(&leads).await?;
    let mut out = Vec::new();
    for code in leads {
        let Ok(acting) = api::relation(st, caller, &code).await else { continue };
        let relation = match acting.relation {
            "a parent" => "rel_parent",
            "a guardian" => "rel_guardian",
            _ => "rel_representative",
        };
        let name = profiles.iter().find(|p| p.subject == code).map(full_name).unwrap_or_else(|| mask_code(&code));
        out.push(Person {
            handle: session::handle(key, caller, &code),
            masked: mask_code(&code),
            name,
            relation,
            purposes: acting.purposes,
            code,
        });
    }
    Ok(out)
}

/// Whom a form or the session acts for: `None` for the caller themself;
/// `Err` for a handle that names nobody the caller represents.
async fn target_of(
    st: &ApiState,
    key: &[u8],
    who: &Signed,
    handle: Option<&str>,
) -> anyhow::Result<Result<Option<String>, ()>> {
    let Some(h) = handle.filter(|h| !h.is_empty()) else { return Ok(Ok(None)) };
    let people: Vec<String> = represented(st, key, &who.caller).await?.into_iter().map(|p| p.code).collect();
    Ok(session::resolve(key, &who.caller, h, &people).cloned().map(Some).ok_or(()))
}

fn channel_key(ch: Option<&str>) -> String {
    match ch {
        Some(c @ ("eaddress" | "email" | "sms" | "letter")) => format!("ch_{c}"),
        Some(_) | None => "ch_none".into(),
    }
}

fn unavailable(view: View, e: &anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "the pages cannot reach the store");
    view.error(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
}

/// `GET /`: the citizen's page, or the way to sign in.
pub(super) async fn home(State(st): State<ApiState>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let Some(key) = st.token_key.clone() else {
        return View::new(&headers, q.lang.as_deref(), None).error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    };
    let Some(who) = signed_in(&st, &headers) else { return see_other("/signin", Vec::new()) };
    let me = match st.app.db.load_profiles(std::slice::from_ref(&who.caller)).await {
        Ok(mut p) => p.pop().unwrap_or_default(),
        Err(e) => return unavailable(View::new(&headers, q.lang.as_deref(), None), &e),
    };
    let view = View::new(&headers, q.lang.as_deref(), me.language.as_deref());
    let people = match represented(&st, &key, &who.caller).await {
        Ok(p) => p,
        Err(e) => return unavailable(view, &e),
    };
    // A chosen person no longer represented (or a cookie of another caller) falls back to oneself.
    let acting = session::cookie(&headers, ACTING).and_then(|h| people.iter().find(|p| p.handle == h));
    let for_q = || api::ForQuery { for_: acting.map(|p| p.code.clone()) };
    let auth = bearer(&who.token, false);
    let notices_q = api::NoticesQuery { for_: acting.map(|p| p.code.clone()), lang: Some(view.lang.to_string()) };
    let notices = answer(api::get_notices(State(st.clone()), auth.clone(), Query(notices_q)).await).await;
    let consents = answer(api::get_consents(State(st.clone()), auth.clone(), Query(for_q())).await).await;
    let drafts = answer(api::get_drafts(State(st.clone()), auth.clone(), Query(for_q())).await).await;
    let prefs = answer(api::get_preferences(State(st.clone()), auth.clone(), Query(for_q())).await).await.ok();
    let (notices, consents, drafts) = match (notices, consents, drafts) {
        (Ok(n), Ok(c), Ok(d)) => (n, c, d),
        (Err(f), _, _) | (_, Err(f), _) | (_, _, Err(f)) => return failed(view, &f),
    };
    let lang = view.lang;

    let mut sent = Vec::new();
    let mut not_sent = Vec::new();
    for n in notices["notices"].as_array().into_iter().flatten() {
        let state = n["state"].as_str().unwrap_or("pending");
        let shown = match (state, n["receipt"].as_str()) {
            ("sent", Some(r @ ("delivered" | "read"))) => r,
            (s, _) => s,
        };
        let entry = json!({
            "what": st.app.rules.situation_name(n["life_situation"].as_str().unwrap_or(""), lang),
            "step": n["step"].as_str().unwrap_or("").replace('_', " "),
            "made_at": n["made_at"], "sent_at": n["sent_at"],
            "channel": channel_key(n["channel"].as_str()),
            "state": format!("state_{shown}"), "raw_state": state,
            "why": n["why"],
        });
        if matches!(state, "suppressed" | "cancelled" | "dead") { not_sent.push(entry) } else { sent.push(entry) }
    }

    let records = consents["consents"].as_array().cloned().unwrap_or_default();
    let mut purposes = Vec::new();
    for p in consents["purposes"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or("");
        let opt_in = p["mode"] == "opt-in";
        let name = st.app.rules.situation_name(p["life_situation"].as_str().unwrap_or(id), lang);
        let record = |ch: Option<&str>| {
            records.iter().find(|r| r["purpose"] == id && r["channel"].as_str() == ch).and_then(|r| r["state"].as_str())
        };
        let all = record(None);
        let rows: Vec<Value> = [None, Some("eaddress"), Some("email"), Some("sms")]
            .into_iter()
            .map(|ch| {
                let own = record(ch);
                // A channel without its own record follows the all-channels one, then the purpose's mode.
                let state = match own.or(if ch.is_some() { all } else { None }) {
                    Some("granted") => "consent_granted",
                    Some(_) => "consent_refused",
                    None if opt_in => "consent_default_in",
                    None => "consent_default_out",
                };
                let channel = ch.map_or("ch_all".to_string(), |c| format!("ch_{c}"));
                json!({ "channel": ch.unwrap_or(""), "channel_key": channel, "state": state, "granted": own == Some("granted") })
            })
            .collect();
        purposes.push(json!({
            "id": id, "name": name, "mode": if opt_in { "mean_optin" } else { "mean_optout" },
            "description": p["description"], "rows": rows,
        }));
    }

    let drafts: Vec<Value> = drafts["drafts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let title = d["title"].get(lang).or_else(|| d["title"].get("lv")).cloned().unwrap_or(d["service_id"].clone());
            json!({ "reference": d["reference"], "title": title, "service_id": d["service_id"],
                    "status": format!("draft_{}", d["status"].as_str().unwrap_or("offered")), "expires_at": d["expires_at"] })
        })
        .collect();

    let prefs = prefs.map(|p| {
        let order: Vec<String> =
            p["channels"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(String::from)).collect();
        json!({
            "order": [order.first(), order.get(1), order.get(2)],
            "quiet_hours": p["quiet_hours"], "language": p["language"].as_str().unwrap_or("lv"),
            "email": p["email"], "phone": p["phone"], "eaddress_active": p["eaddress_active"],
        })
    });

    let representatives = representatives_of(&st, &me).await;
    let acting_name = acting.map(|p| p.name.clone());
    let flash = flash(&view, &q);
    let error_field = q.err.as_deref().map(|_| field_label(&view, q.field.as_deref().unwrap_or("")));
    view.render(
        StatusCode::OK,
        "citizen.html",
        json!({
            "me": full_name(&me), "acting": acting_name, "signout": "/signout",
            "for_handle": acting.map(|p| p.handle.clone()).unwrap_or_default(),
            "sent": sent, "not_sent": not_sent, "purposes": purposes, "drafts": drafts, "prefs": prefs,
            "people": people, "representatives": representatives, "flash": flash, "error_field": error_field,
            "channels": ["eaddress", "email", "sms", "letter"],
        }),
    )
}

/// Who represents `me`: guardians, parents while a minor, representatives by mandate.
async fn representatives_of(st: &ApiState, me: &crate::engine::profile::Profile) -> Vec<Value> {
    let today = crate::engine::event_day(st.app.clock.now_ms());
    let minor = me.age_on(today).is_some_and(|a| (0..18).contains(&a));
    let mut reps: Vec<(String, &str, Option<Vec<String>>)> =
        me.guardians.iter().map(|g| (g.clone(), "rep_guardian", None)).collect();
    if minor {
        reps.extend([&me.mother, &me.father].into_iter().flatten().map(|p| (p.clone(), "rep_parent", None)));
    }
    reps.extend(me.mandates.iter().map(|m| (m.representative.clone(), "rep_mandate", m.purposes.clone())));
    let codes: Vec<String> = reps.iter().map(|r| r.0.clone()).collect();
    let profiles = st.app.db.load_profiles(&codes).await.unwrap_or_default();
    reps.into_iter()
        .map(|(code, role, purposes)| {
            let name = profiles.iter().find(|p| p.subject == code).map(full_name).unwrap_or_else(|| mask_code(&code));
            json!({ "name": name, "masked": mask_code(&code), "role": role, "purposes": purposes })
        })
        .collect()
}

/// The sentence saying what the last form did.
fn flash(view: &View, q: &PageQuery) -> Option<String> {
    let n = q.n.unwrap_or(0);
    match q.done.as_deref()? {
        "consent" if n > 0 => {
            Some(format!("{} {}", view.t("done_consent"), view.t("done_cancelled").replace("{n}", &n.to_string())))
        }
        "consent" => Some(format!("{} {}", view.t("done_consent"), view.t("done_none_cancelled"))),
        "later" => Some(view.t("done_later")),
        "prefs" => Some(view.t("done_prefs")),
        "corrected" => Some(view.t("done_corrected")),
        _ => None,
    }
}

/// The label of a field an API problem names (`channels[1]`, `email`, `child_name`, …).
fn field_label(view: &View, field: &str) -> String {
    let key = match field.split('[').next().unwrap_or("") {
        "channels" => "pref_first".to_string(),
        "quiet_hours" => "quiet_hours".into(),
        "language" => "language_pref".into(),
        f @ ("email" | "phone") => f.into(),
        f => format!("field_{f}"),
    };
    let label = view.t(&key);
    if label == key { field.replace('_', " ") } else { label }
}

/// `GET /signin`.
pub(super) async fn signin_page(headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let view = View::new(&headers, q.lang.as_deref(), None);
    let out = q.done.as_deref() == Some("out");
    view.render(StatusCode::OK, "signin.html", json!({ "staff": false, "bad": false, "out": out }))
}

/// `POST /signin`: a pasted token becomes the session cookie.
pub(super) async fn signin(State(st): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let view = View::new(&headers, None, None);
    if !session::same_site_post(&headers, form.get("csrf")) {
        return view.error(StatusCode::FORBIDDEN, "csrf_failed");
    }
    let Some(key) = st.token_key.as_deref() else { return view.error(StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    let token = form.get("token").unwrap_or("");
    match crate::api::token::verify(key, token, chrono::Utc::now().timestamp()) {
        Ok(_) => see_other(
            "/",
            vec![
                session::set_cookie(&headers, CITIZEN, token, "/", None),
                session::set_cookie(&headers, ACTING, "", "/", Some(0)),
            ],
        ),
        Err(_) => {
            view.render(StatusCode::UNAUTHORIZED, "signin.html", json!({ "staff": false, "bad": true, "out": false }))
        }
    }
}

/// `POST /signout`.
pub(super) async fn signout(headers: HeaderMap, body: Bytes) -> Response {
    super::sign_out(&headers, &body, "/signin?done=out", &[(CITIZEN, "/"), (ACTING, "/")])
}

/// What every citizen POST checks first: same-site form, signed in, and for whom.
async fn posted(st: &ApiState, headers: &HeaderMap, form: &Form) -> Result<(Signed, Option<String>), Response> {
    let view = || View::new(headers, None, None);
    if !session::same_site_post(headers, form.get("csrf")) {
        return Err(view().error(StatusCode::FORBIDDEN, "csrf_failed"));
    }
    let Some(key) = st.token_key.clone() else {
        return Err(view().error(StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    };
    let Some(who) = signed_in(st, headers) else { return Err(see_other("/signin", Vec::new())) };
    match target_of(st, &key, &who, form.get("for")).await {
        Ok(Ok(target)) => Ok((who, target)),
        Ok(Err(())) => Err(view().error(StatusCode::FORBIDDEN, "forbidden")),
        Err(e) => Err(unavailable(view(), &e)),
    }
}

/// `POST /act-for`: choose a person to act for (by handle), or oneself.
pub(super) async fn act_for(State(st): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let choice = Form(vec![
        ("csrf".into(), form.get("csrf").unwrap_or("").into()),
        ("for".into(), form.get("choice").unwrap_or("").into()),
    ]);
    match posted(&st, &headers, &choice).await {
        Ok((_, None)) => see_other("/", vec![session::set_cookie(&headers, ACTING, "", "/", Some(0))]),
        Ok((_, Some(_))) => {
            let handle = choice.get("for").unwrap_or("");
            see_other("/", vec![session::set_cookie(&headers, ACTING, handle, "/", None)])
        }
        Err(r) => r,
    }
}

/// Calls a citizen API handler that takes a JSON body, as the signed-in person acting for `target`.
async fn call<F, Fut>(
    handler: F,
    st: &ApiState,
    who: &Signed,
    target: Option<String>,
    body: &Value,
) -> Result<Value, Failed>
where
    F: FnOnce(State<ApiState>, HeaderMap, Query<api::ForQuery>, Result<Bytes, BytesRejection>) -> Fut,
    Fut: Future<Output = Response>,
{
    let for_q = Query(api::ForQuery { for_: target });
    answer(handler(State(st.clone()), bearer(&who.token, true), for_q, Ok(Bytes::from(body.to_string()))).await).await
}

/// Waits (a few seconds at most) until the engine has applied the events `seqs`.
async fn settle(st: &ApiState, seqs: &[i64]) -> bool {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let mut all = true;
        for s in seqs {
            if !st.app.db.event_processed(*s).await.unwrap_or(false) {
                all = false;
                break;
            }
        }
        if all {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seqs_of(recorded: &Value) -> Vec<i64> {
    recorded["event_ids"].as_array().into_iter().flatten().filter_map(|s| s.as_str()?.parse().ok()).collect()
}

/// The ids of the person's notices of `purpose` in `state`.
async fn notices_in(st: &ApiState, person: &str, purpose: &str, state: &str) -> anyhow::Result<HashSet<String>> {
    let rows = st.app.db.notices_to(person, &st.app.audit.pseudonym(person)).await?;
    Ok(rows.into_iter().filter(|n| n.purpose == purpose && n.state == state).map(|n| n.id).collect())
}

/// `POST /consents`: grant, refuse or withdraw one purpose on one channel; the
/// answer waits for the engine and says how many queued notices it withdrew.
pub(super) async fn consent(State(st): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let (who, target) = match posted(&st, &headers, &form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let view = View::new(&headers, None, None);
    let person = target.clone().unwrap_or_else(|| who.caller.clone());
    let purpose = form.get("purpose").unwrap_or("").to_string();
    let queued = match notices_in(&st, &person, &purpose, "pending").await {
        Ok(q) => q,
        Err(e) => return unavailable(view, &e),
    };
    let channel = form.get("channel").filter(|c| !c.is_empty());
    let request = json!({ "purpose": purpose, "channel": channel, "action": form.get("action").unwrap_or("") });
    let recorded = match call(api::post_consent, &st, &who, target, &request).await {
        Ok(v) => v,
        Err(f) => return failed(view, &f),
    };
    if !settle(&st, &seqs_of(&recorded)).await {
        return see_other("/?done=later#consents", Vec::new());
    }
    let cancelled = match notices_in(&st, &person, &purpose, "cancelled").await {
        Ok(c) => c.intersection(&queued).count(),
        Err(e) => return unavailable(view, &e),
    };
    see_other(&format!("/?done=consent&n={cancelled}#consents"), Vec::new())
}

/// `POST /preferences`: channel order, quiet hours, language and contacts, as one PUT.
pub(super) async fn preferences(State(st): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let (who, target) = match posted(&st, &headers, &form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = |k: &str| form.get(k).filter(|v| !v.is_empty()).map(String::from);
    let channels: Vec<String> = ["channel1", "channel2", "channel3"].iter().filter_map(|k| text(k)).collect();
    let request = json!({
        "channels": if channels.is_empty() { Value::Null } else { json!(channels) },
        "quiet_hours": text("quiet_hours"), "language": text("language"),
        "email": text("email"), "phone": text("phone"),
    });
    match call(api::put_preferences, &st, &who, target, &request).await {
        Ok(recorded) if settle(&st, &seqs_of(&recorded)).await => see_other("/?done=prefs#preferences", Vec::new()),
        Ok(_) => see_other("/?done=later#preferences", Vec::new()),
        Err(f) if f.status == StatusCode::BAD_REQUEST => {
            let field = f.field.unwrap_or_default();
            let field: String = field.chars().filter(|c| c.is_ascii_alphanumeric() || "_[]".contains(*c)).collect();
            see_other(&format!("/?err=prefs&field={field}#preferences"), Vec::new())
        }
        Err(f) => failed(View::new(&headers, None, None), &f),
    }
}

/// A draft reference as it may appear in a URL of ours (the API checks the rest).
fn safe_reference(r: &str) -> Option<&str> {
    (!r.is_empty() && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(r)
}

/// `GET /drafts/{reference}`: one draft, each field with its source, and what can be done with it.
pub(super) async fn draft_page(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(reference): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(who) = signed_in(&st, &headers) else { return see_other("/signin", Vec::new()) };
    let lang_of_caller =
        st.app.db.load_profiles(std::slice::from_ref(&who.caller)).await.ok().and_then(|mut p| p.pop()?.language);
    let view = View::new(&headers, q.lang.as_deref(), lang_of_caller.as_deref());
    let Some(reference) = safe_reference(&reference).map(String::from) else {
        return view.error(StatusCode::FORBIDDEN, "forbidden");
    };
    let r = api::get_draft(State(st.clone()), bearer(&who.token, false), Path(api::DraftPath { reference })).await;
    let d = match answer(r).await {
        Ok(d) => d,
        Err(f) => return failed(view, &f),
    };
    let status = d["status"].as_str().unwrap_or("offered").to_string();
    let open = matches!(status.as_str(), "offered" | "opened");
    let fields: Vec<Value> = d["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let name = f["name"].as_str().unwrap_or("");
            let source = match f["source"].as_str().unwrap_or("") {
                "pmlp" => view.t("source_pmlp"),
                "corrected by the applicant" => view.t("source_corrected_applicant"),
                "corrected by a representative" => view.t("source_corrected_rep"),
                other => other.to_string(),
            };
            json!({
                "name": name, "label": field_label(&view, name), "value": scalar(&f["value"]), "source": source,
                "prefilled": f.get("prefilled").map(|p| scalar(&p["value"])),
                "editable": open && !name.ends_with("_code"),
            })
        })
        .collect();
    let lang = view.lang;
    let title = d["title"].get(lang).or_else(|| d["title"].get("lv")).cloned().unwrap_or(d["service_id"].clone());
    let at = d["status_at"].as_str().map(|s| super::when(s.to_string())).unwrap_or_default();
    let receipt = (status == "submitted").then(|| {
        view.t("receipt_text")
            .replace("{ref}", d["reference"].as_str().unwrap_or(""))
            .replace("{service}", d["service_id"].as_str().unwrap_or(""))
            .replace("{when}", &at)
    });
    let declined = (status == "declined").then(|| view.t("declined_text").replace("{when}", &at));
    let flash = flash(&view, &q);
    let error_field = q.err.as_deref().map(|_| field_label(&view, q.field.as_deref().unwrap_or("")));
    view.render(
        StatusCode::OK,
        "draft.html",
        json!({
            "signout": "/signout", "reference": d["reference"], "service_id": d["service_id"], "title": title,
            "status": format!("draft_{status}"), "expires_at": d["expires_at"], "fields": fields, "open": open,
            "receipt": receipt, "declined": declined, "flash": flash, "error_field": error_field,
        }),
    )
}

/// A field's value as text.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `POST /drafts/{reference}`: correct one field (`action=correct`), submit or decline.
pub(super) async fn draft_action(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(reference): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let view = View::new(&headers, None, None);
    if !session::same_site_post(&headers, form.get("csrf")) {
        return view.error(StatusCode::FORBIDDEN, "csrf_failed");
    }
    let Some(who) = signed_in(&st, &headers) else { return see_other("/signin", Vec::new()) };
    let Some(reference) = safe_reference(&reference).map(String::from) else {
        return view.error(StatusCode::FORBIDDEN, "forbidden");
    };
    let here = format!("/drafts/{reference}");
    let path = || Path(api::DraftPath { reference: reference.clone() });
    let (r, done) = match form.get("action") {
        Some("correct") => {
            let field = form.get("field").unwrap_or("");
            let body = json!({ "field": field, "value": form.get("value").unwrap_or("") });
            let r = api::patch_draft(
                State(st.clone()),
                bearer(&who.token, true),
                path(),
                Ok(Bytes::from(body.to_string())),
            )
            .await;
            (r, "corrected")
        }
        Some("submit") => (api::submit_draft(State(st.clone()), bearer(&who.token, false), path()).await, "submitted"),
        Some("decline") => (api::decline_draft(State(st.clone()), bearer(&who.token, false), path()).await, "declined"),
        _ => return view.error(StatusCode::BAD_REQUEST, "error_title"),
    };
    match answer(r).await {
        Ok(_) => see_other(&format!("{here}?done={done}"), Vec::new()),
        Err(f) if f.status == StatusCode::BAD_REQUEST => {
            let field: String =
                form.get("field").unwrap_or("").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            see_other(&format!("{here}?err=value&field={field}"), Vec::new())
        }
        Err(f) => failed(view, &f),
    }
}
