//! The citizen and staff API against the real router on a loopback port, on
//! SQLite and (when configured) PostgreSQL: citizen tokens (and `proactive
//! token issue`), consent, preferences, the history of notices, drafts
//! (correct, submit, decline), who may act for whom, the staff figures and
//! the audited case cancel — with every 4xx a caller can get.

use std::collections::BTreeMap;

use proactive::api::keys::{self, Role};
use proactive::api::token;
use proactive::app::App;
use proactive::engine::cases::StepState;
use reqwest::Method;
use serde_json::{Value, json};

use super::support::{self, TestDb};

const MOTHER: &str = "150394-11002";
const FATHER: &str = "329900-00002";
const STRANGER: &str = "329900-00003";
const GUARDIAN: &str = "329900-00004";
const REP: &str = "329900-00005";
const MANDATOR: &str = "329900-00006";
const CHILD: &str = "321118-20001";
const OTHER_CHILD: &str = "321118-20002";

struct Server {
    base: String,
    app: App,
    http: reqwest::Client,
    _out: tempfile::TempDir,
}

async fn start_with(t: &TestDb, tune: impl FnOnce(&mut proactive::config::Config, &std::path::Path)) -> Server {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = support::config(&t.url, out.path());
    tune(&mut cfg, out.path());
    let app = App::open(cfg, support::demo_clock()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = proactive::api::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let _ = rustls::crypto::ring::default_provider().install_default();
    Server { base: format!("http://{addr}"), app, http: reqwest::Client::new(), _out: out }
}

async fn start(t: &TestDb) -> Server {
    start_with(t, |_, _| {}).await
}

/// A token for `code` with the development key the test servers use, valid for an hour.
fn token(code: &str) -> String {
    token::issue(token::DEV_KEY.as_bytes(), code, chrono::Utc::now().timestamp() + 3600).unwrap()
}

impl Server {
    async fn send(&self, method: Method, path: &str, auth: Option<&str>, body: Option<Value>) -> reqwest::Response {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b.to_string());
        }
        r.send().await.unwrap()
    }

    async fn get(&self, path: &str, auth: &str) -> reqwest::Response {
        self.send(Method::GET, path, Some(auth), None).await
    }

    async fn post(&self, path: &str, auth: &str, body: Value) -> reqwest::Response {
        self.send(Method::POST, path, Some(auth), Some(body)).await
    }

    /// GET expecting 200, its JSON.
    async fn ok(&self, path: &str, auth: &str) -> Value {
        let r = self.get(path, auth).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn key(&self, role: Role) -> String {
        let (sources, types, owner) = match role {
            Role::Agency => (vec!["pmlp".to_string()], vec!["birth.registered".to_string()], "PMLP"),
            Role::Staff => (vec![], vec![], "Policy unit"),
        };
        keys::create(&self.app.db, role, owner, &sources, &types, self.app.clock.now_ms()).await.unwrap().0
    }

    async fn load(&self, records: &[Value]) {
        support::load(&self.app, records).await;
    }

    async fn process(&self) {
        self.app.engine().run_until_idle().await.unwrap();
    }

    /// The references of the drafts offered to `code`, as the store has them.
    async fn draft_refs(&self, code: &str) -> Vec<String> {
        self.app.db.drafts_of_applicant(code).await.unwrap().into_iter().map(|d| d.reference).collect()
    }

    /// Events of source `api` in the log.
    async fn api_events(&self) -> i64 {
        self.app.db.event_count_of("api").await.unwrap()
    }
}

/// Status and body of a problem answer, checking it is one.
async fn problem(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/problem+json", "status {status}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], status);
    (status, body)
}

async fn json_of(r: reqwest::Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn birth(id: &str, child: &str, mother: Option<&str>, father: Option<&str>) -> Value {
    support::birth(id, child, mother, father, "2026-11-18")
}

fn mandate(id: &str, person: &str, rep: &str, purposes: Option<&[&str]>, copy: bool) -> Value {
    json!({
        "source": "portal", "id": id, "type": "mandate.granted", "subject": person,
        "occurred_at": "2026-11-01T10:00:00+02:00",
        "data": { "representative": rep, "purposes": purposes, "copy": copy }
    })
}

fn guardianship(id: &str, ward: &str, guardian: &str) -> Value {
    json!({
        "source": "pmlp", "id": id, "type": "guardianship.established", "subject": ward,
        "occurred_at": "2026-11-01T10:00:00+02:00", "data": { "guardian": guardian }
    })
}

#[tokio::test]
async fn citizen_routes_need_a_valid_unexpired_token_and_staff_routes_a_staff_key() {
    for t in support::stores().await {
        let s = start(&t).await;
        let me = "/api/v1/me/consents";
        let (code, p) = problem(s.send(Method::GET, me, None, None).await).await;
        assert_eq!(code, 401, "{}: no token: {p}", t.name);
        let r = s.get(me, "not-a-token").await;
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let (code, p) = problem(r).await;
        assert_eq!((code, p["detail"].as_str()), (401, Some("not a citizen token")));
        let forged = token::issue(b"someone else's key", MOTHER, chrono::Utc::now().timestamp() + 3600).unwrap();
        let (code, p) = problem(s.get(me, &forged).await).await;
        assert_eq!((code, p["detail"].as_str()), (401, Some("the token is not valid")), "{p}");
        let expired = token::issue(token::DEV_KEY.as_bytes(), MOTHER, chrono::Utc::now().timestamp() - 1).unwrap();
        let (code, p) = problem(s.get(me, &expired).await).await;
        assert_eq!(code, 401);
        assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
        let staff = s.key(Role::Staff).await;
        let agency = s.key(Role::Agency).await;
        let (code, _) = problem(s.get(me, &staff).await).await;
        assert_eq!(code, 401, "an API key is no citizen token");
        assert_eq!(s.get(me, &token(MOTHER)).await.status(), 200, "{}", t.name);

        let staff_routes = [
            "/api/v1/staff/life-situations",
            "/api/v1/staff/cases/stats",
            "/api/v1/staff/notices/stats",
            "/api/v1/staff/take-up",
            "/api/v1/staff/dead-letters",
            "/api/v1/staff/cases/no-such-case",
        ];
        for route in staff_routes {
            let (code, p) = problem(s.get(route, &agency).await).await;
            assert_eq!(code, 403, "{}: an agency key on {route}: {p}", t.name);
            let (code, _) = problem(s.get(route, &token(MOTHER)).await).await;
            assert_eq!(code, 401, "a citizen token on {route}");
            let (code, _) = problem(s.send(Method::GET, route, None, None).await).await;
            assert_eq!(code, 401, "no key on {route}");
        }
        let (code, _) = problem(s.post("/api/v1/staff/cases/x/cancel", &agency, json!({"reason": "test"})).await).await;
        assert_eq!(code, 403, "an agency key cannot cancel a case");
        // And the other way round, as keys.rs has it: a staff key sends no events.
        let (code, _) = problem(s.post("/api/v1/events", &staff, birth("b1", CHILD, Some(MOTHER), None)).await).await;
        assert_eq!(code, 403);
        assert_eq!(s.app.db.event_count_of("pmlp").await.unwrap(), 0);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn the_token_command_issues_tokens_the_server_accepts_with_the_same_key() {
    let t = support::sqlite().await;
    let s = start(&t).await;
    let issue = |extra: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_proactive"));
        c.current_dir(support::root()).env_remove("PROACTIVE_CONFIG").env("PROACTIVE_LOG", "error");
        for (k, v) in extra {
            c.env(k, v);
        }
        c.args(["token", "issue", "--subject", "15039411002", "--ttl-minutes", "5"]).output().unwrap()
    };
    let out = issue(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tok = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(MOTHER), "the code is masked on stderr");
    let body = s.ok("/api/v1/me/preferences", &tok).await;
    assert_eq!(body["eaddress_active"], false, "the token names the mother, canonical: {body}");

    // Signed with another secret, it is refused by a server on the development key.
    let other =
        issue(&[("PROACTIVE_HTTP__TOKEN_SECRET_ENV", "CITIZEN_TEST_SECRET"), ("CITIZEN_TEST_SECRET", "s3cret")]);
    assert!(other.status.success(), "{}", String::from_utf8_lossy(&other.stderr));
    let other = String::from_utf8(other.stdout).unwrap().trim().to_string();
    assert_ne!(other, tok);
    let (code, _) = problem(s.get("/api/v1/me/preferences", &other).await).await;
    assert_eq!(code, 401);
    let missing = issue(&[("PROACTIVE_HTTP__TOKEN_SECRET_ENV", "CITIZEN_TEST_SECRET_UNSET")]);
    assert!(!missing.status.success(), "a named but unset secret is an error, not the development key");

    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_proactive"));
    c.current_dir(support::root()).env_remove("PROACTIVE_CONFIG");
    let bad = c.args(["token", "issue", "--subject", "150394-11003"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--subject"), "names the argument");
    t.cleanup().await;
}

#[tokio::test]
async fn a_refusal_through_the_api_is_an_event_that_withdraws_the_queued_notices() {
    for t in support::stores().await {
        let s = start(&t).await;
        s.load(&[birth("b1", CHILD, Some(MOTHER), None)]).await;
        let mine = |n: &&proactive::store::NoticeView| n.recipient == MOTHER && n.purpose == "birth";
        let before = s.app.db.notices_of(None).await.unwrap();
        let queued = before.iter().filter(mine).filter(|n| n.state == "pending").count();
        assert!(queued >= 1, "{}: the birth queued notices to the mother: {before:?}", t.name);

        let tok = token(MOTHER);
        let c = s.ok("/api/v1/me/consents", &tok).await;
        assert_eq!(c["consents"], json!([]), "{c}");
        let ids: Vec<&str> = c["purposes"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&"birth") && ids.contains(&"passport_expiry"), "{ids:?}");

        // 400s name the field and store nothing.
        let bad: [(Value, &str); 6] = [
            (json!({"purpose": "birth", "action": "maybe"}), "action"),
            (json!({"purpose": "marketing", "action": "refuse"}), "purpose"),
            (json!({"purpose": "birth", "action": "refuse", "channel": "fax"}), "channel"),
            (json!({"action": "refuse"}), "purpose"),
            (json!({"purpose": "birth", "action": "refuse", "colour": "red"}), "colour"),
            (json!(["birth"]), "body"),
        ];
        for (body, field) in bad {
            let (code, p) = problem(s.post("/api/v1/me/consents", &tok, body.clone()).await).await;
            assert_eq!((code, p["field"].as_str()), (400, Some(field)), "{}: {body}: {p}", t.name);
        }
        let r = s
            .http
            .post(format!("{}/api/v1/me/consents", s.base))
            .bearer_auth(&tok)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(problem(r).await.0, 415);
        let r = s
            .http
            .post(format!("{}/api/v1/me/consents", s.base))
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .body("x".repeat(70 * 1024))
            .send()
            .await
            .unwrap();
        assert_eq!(problem(r).await.0, 413, "the body limit of every route");
        assert_eq!(s.api_events().await, 0, "{}: nothing stored by a bad request", t.name);

        let r = s.post("/api/v1/me/consents", &tok, json!({"purpose": "birth", "action": "refuse"})).await;
        let ok = json_of(r, 202).await;
        assert_eq!(ok["types"], json!(["consent.refused"]), "{ok}");
        assert_eq!(s.api_events().await, 1, "durable before the answer");
        let seq: i64 = ok["event_ids"][0].as_str().unwrap().parse().unwrap();
        let ev = &s.app.db.events_by_seq(&[seq]).await.unwrap()[0];
        assert_eq!(
            (ev.source.as_str(), ev.event_type.as_str(), ev.subject.as_str()),
            ("api", "consent.refused", MOTHER)
        );

        s.process().await;
        let after = s.app.db.notices_of(None).await.unwrap();
        let withdrawn: Vec<_> = after.iter().filter(mine).filter(|n| n.state == "cancelled").collect();
        assert_eq!(withdrawn.len(), queued, "{}: every queued birth notice to her withdrawn: {after:?}", t.name);
        assert!(withdrawn.iter().all(|n| n.last_error.as_deref().unwrap_or("").contains("refused")));

        let c = s.ok("/api/v1/me/consents", &tok).await;
        assert_eq!(c["consents"][0]["purpose"], "birth", "{c}");
        assert_eq!(c["consents"][0]["state"], "refused");
        assert_eq!(c["consents"][0]["source"], "api");
        assert_eq!(c["consents"][0]["channel"], Value::Null);

        // The history tells her so, in words; a grant on one channel is another event.
        let h = s.ok("/api/v1/me/notices", &tok).await;
        let notices = h["notices"].as_array().unwrap();
        assert_eq!(notices.len(), after.iter().filter(|n| n.recipient == MOTHER).count(), "{h}");
        for n in notices.iter().filter(|n| n["purpose"] == "birth") {
            assert_eq!(n["state"], "cancelled");
            assert!(n["headline"].as_str().unwrap().starts_with("Withdrawn before it was sent"), "{n}");
            assert!(
                n["explanation"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("Why it was made"))
            );
        }
        // And in plain words, in the language asked, else hers (none recorded: Latvian).
        assert_eq!(h["lang"], "lv", "{}", t.name);
        let plain = |h: &Value| -> Vec<String> {
            let birth = h["notices"].as_array().unwrap().iter().find(|n| n["purpose"] == "birth").unwrap().clone();
            birth["why"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
        };
        let lv = plain(&h);
        assert!(lv.iter().any(|l| l.starts_with("Jūs ") && l.contains("atteicāties saņemt paziņojumus")), "{lv:?}");
        let en = plain(&s.ok("/api/v1/me/notices?lang=en", &tok).await);
        assert_eq!(
            en[0], "It concerns “Birth of a child”, because a birth was registered on 18 November 2026.",
            "{}: {en:?}",
            t.name
        );
        assert!(en.last().unwrap().starts_with("You refused notices about “Birth of a child” on "), "{en:?}");
        let ru = plain(&s.ok("/api/v1/me/notices?lang=ru", &tok).await);
        assert!(
            ru.last().unwrap().contains("вы отказались от уведомлений о жизненной ситуации «Рождение ребёнка»"),
            "{ru:?}"
        );
        for l in lv.iter().chain(&en).chain(&ru) {
            assert!(!l.contains(MOTHER) && !l.contains(CHILD) && !l.contains("b1"), "no code, no event id: {l}");
        }
        let (code, p) = problem(s.get("/api/v1/me/notices?lang=de", &tok).await).await;
        assert_eq!((code, p["field"].as_str()), (400, Some("lang")), "{p}");
        let r =
            s.post("/api/v1/me/consents", &tok, json!({"purpose": "birth", "channel": "sms", "action": "grant"})).await;
        assert_eq!(r.status(), 202);
        s.process().await;
        let c = s.ok("/api/v1/me/consents", &tok).await;
        assert_eq!(c["consents"].as_array().unwrap().len(), 2, "{c}");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_citizen_sees_and_acts_only_for_themselves_and_those_they_represent() {
    for t in support::stores().await {
        let s = start(&t).await;
        s.load(&[
            birth("b1", CHILD, Some(MOTHER), None),
            birth("b2", OTHER_CHILD, Some(STRANGER), None),
            guardianship("g1", OTHER_CHILD, GUARDIAN),
            mandate("m1", MANDATOR, REP, Some(&["birth"]), true),
        ])
        .await;
        let a = token(MOTHER);
        let b_ref = s.draft_refs(STRANGER).await.pop().expect("the stranger was offered a draft");
        let a_ref = s.draft_refs(MOTHER).await.pop().expect("the mother was offered a draft");
        let theirs_listed = s.ok("/api/v1/me/notices", &token(STRANGER)).await;
        assert!(!theirs_listed["notices"].as_array().unwrap().is_empty(), "B has notices to hide: {theirs_listed}");

        // A cannot read B's notices, consents, drafts or preferences, nor act for B.
        let q = format!("?for={STRANGER}");
        for path in ["/api/v1/me/notices", "/api/v1/me/consents", "/api/v1/me/drafts", "/api/v1/me/preferences"] {
            let (code, p) = problem(s.get(&format!("{path}{q}"), &a).await).await;
            assert_eq!(code, 403, "{}: {path}: {p}", t.name);
        }
        let (code, _) = problem(
            s.post(&format!("/api/v1/me/consents{q}"), &a, json!({"purpose": "birth", "action": "refuse"})).await,
        )
        .await;
        assert_eq!(code, 403);
        let (code, _) = problem(
            s.send(Method::PUT, &format!("/api/v1/me/preferences{q}"), Some(&a), Some(json!({"channels": ["sms"]})))
                .await,
        )
        .await;
        assert_eq!(code, 403);
        let theirs = format!("/api/v1/me/drafts/{b_ref}");
        let (code, denied) = problem(s.get(&theirs, &a).await).await;
        assert_eq!(code, 403);
        let (code, _) =
            problem(s.send(Method::PATCH, &theirs, Some(&a), Some(json!({"field": "child_name", "value": "X"}))).await)
                .await;
        assert_eq!(code, 403);
        assert_eq!(problem(s.send(Method::POST, &format!("{theirs}/submit"), Some(&a), None).await).await.0, 403);
        assert_eq!(problem(s.send(Method::POST, &format!("{theirs}/decline"), Some(&a), None).await).await.0, 403);
        // An unknown reference is answered exactly like someone else's: nothing tells which exist.
        let (code, unknown) = problem(s.get("/api/v1/me/drafts/PR-000000-0000-0000", &a).await).await;
        assert_eq!((code, &unknown["detail"]), (403, &denied["detail"]));
        // An unknown person likewise; a malformed code is a 400 naming `for`.
        let (code, _) = problem(s.get("/api/v1/me/notices?for=329900-00099", &a).await).await;
        assert_eq!(code, 403);
        let (code, p) = problem(s.get("/api/v1/me/notices?for=150394-11003", &a).await).await;
        assert_eq!((code, p["field"].as_str()), (400, Some("for")), "{p}");
        assert!(!p.to_string().contains("150394-11003"), "the problem repeats no code: {p}");
        assert_eq!(s.api_events().await, 0, "{}: nothing was recorded for B", t.name);
        let b_draft = s.app.db.draft_info(&b_ref).await.unwrap().unwrap();
        assert_eq!(b_draft.status, "offered", "B's draft untouched");

        // A acts for her own minor child; the stranger does not.
        assert_eq!(s.get(&format!("/api/v1/me/consents?for={CHILD}"), &a).await.status(), 200);
        assert_eq!(problem(s.get(&format!("/api/v1/me/drafts?for={CHILD}"), &token(STRANGER)).await).await.0, 403);
        assert_eq!(s.get(&format!("/api/v1/me/drafts/{a_ref}"), &a).await.status(), 200);
        // A guardian acts for the ward; the ward's mother too (a minor), nobody else.
        let r = s
            .post(
                &format!("/api/v1/me/consents?for={OTHER_CHILD}"),
                &token(GUARDIAN),
                json!({"purpose": "school_age", "action": "refuse"}),
            )
            .await;
        let ok = json_of(r, 202).await;
        let seq: i64 = ok["event_ids"][0].as_str().unwrap().parse().unwrap();
        let ev = &s.app.db.events_by_seq(&[seq]).await.unwrap()[0];
        assert_eq!(ev.subject, OTHER_CHILD, "recorded for the ward");
        assert_eq!(ev.data["acted_by"], json!({"code": GUARDIAN, "as": "a guardian"}), "and who acted");
        assert_eq!(problem(s.get(&format!("/api/v1/me/consents?for={OTHER_CHILD}"), &a).await).await.0, 403);

        // A representative acts for the purposes of the mandate only, and not on preferences.
        let rep = token(REP);
        let q = format!("?for={MANDATOR}");
        let c = s.ok(&format!("/api/v1/me/consents{q}"), &rep).await;
        let ids: Vec<&str> = c["purposes"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["birth"], "only the mandate's purposes: {c}");
        let r = s.post(&format!("/api/v1/me/consents{q}"), &rep, json!({"purpose": "birth", "action": "grant"})).await;
        assert_eq!(r.status(), 202);
        let (code, p) = problem(
            s.post(&format!("/api/v1/me/consents{q}"), &rep, json!({"purpose": "passport_expiry", "action": "refuse"}))
                .await,
        )
        .await;
        assert_eq!((code, p["field"].as_str()), (403, Some("purpose")), "{p}");
        assert_eq!(problem(s.get(&format!("/api/v1/me/preferences{q}"), &rep).await).await.0, 403);
        assert_eq!(s.get(&format!("/api/v1/me/notices{q}"), &rep).await.status(), 200);
        // The mandator does not act for the representative.
        assert_eq!(problem(s.get(&format!("/api/v1/me/notices?for={REP}"), &token(MANDATOR)).await).await.0, 403);
        assert_eq!(s.api_events().await, 2, "{}: the guardian's and the representative's", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_parent_reads_and_corrects_their_minor_childs_draft() {
    for t in support::stores().await {
        let s = start_with(&t, |cfg, _| {
            cfg.paths.life_events = support::root().join("tests/fixtures/citizen/life-events");
            cfg.paths.rules = support::root().join("tests/fixtures/citizen/rules");
        })
        .await;
        // A 14-year-old (born long ago, so the birth only fills in the profile) gets an eID card.
        let mut teen = support::birth("b1", CHILD, Some(MOTHER), None, "2012-05-01");
        teen["occurred_at"] = "2012-05-02T10:00:00+03:00".into();
        let doc = json!({
            "source": "pmlp", "id": "d1", "type": "document.issued", "subject": CHILD,
            "occurred_at": "2026-11-20T10:00:00+02:00",
            "data": { "document": "eid", "number": "YC1", "issued": "2026-11-20", "expires": "2031-11-20" }
        });
        s.load(&[teen, doc]).await;
        let refs = s.draft_refs(CHILD).await;
        assert_eq!(refs.len(), 1, "{}: the draft is the child's", t.name);
        let notices = s.app.db.notices_of(None).await.unwrap();
        assert!(notices.iter().any(|n| n.recipient == MOTHER && n.draft_ref.as_ref() == Some(&refs[0])), "{notices:?}");

        let mum = token(MOTHER);
        let own = s.ok("/api/v1/me/drafts", &mum).await;
        assert_eq!(own["drafts"], json!([]), "none of her own");
        let list = s.ok(&format!("/api/v1/me/drafts?for={CHILD}"), &mum).await;
        let d = &list["drafts"][0];
        assert_eq!(
            (d["reference"].as_str(), d["service_id"].as_str()),
            (Some(refs[0].as_str()), Some("TEST-YC")),
            "{list}"
        );
        assert_eq!(d["title"]["en"], "Application for a youth card");
        assert_eq!(d["status"], "offered");
        assert!(d.get("fields").is_none(), "the list has no fields");

        let path = format!("/api/v1/me/drafts/{}", refs[0]);
        let one = s.ok(&path, &mum).await;
        assert_eq!(one["status"], "opened", "reading it opens it");
        let fields: BTreeMap<String, Value> = one["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap().to_string(), f.clone()))
            .collect();
        assert_eq!(fields["document_number"]["value"], "YC1", "{one}");
        assert_eq!(fields["document_number"]["source"], "pmlp");
        assert_eq!(fields["holder_name"]["value"], "Anna Kalniņa");

        let r = s
            .send(
                Method::PATCH,
                &path,
                Some(&mum),
                Some(json!({"field": "holder_name", "value": "Anna Kalniņa-Ozola"})),
            )
            .await;
        let fixed = json_of(r, 200).await;
        let f = fixed["fields"].as_array().unwrap().iter().find(|f| f["name"] == "holder_name").unwrap().clone();
        assert_eq!(f["value"], "Anna Kalniņa-Ozola");
        assert_eq!(f["source"], "corrected by a representative", "the mother corrected her child's draft");
        assert_eq!(f["prefilled"], json!({"value": "Anna Kalniņa", "source": "pmlp"}));
        assert!(f["corrected_at"].is_string());
        // Stored so, with the audit record of who did it.
        let stored = s.app.db.draft_info(&refs[0]).await.unwrap().unwrap();
        assert_eq!(stored.fields["holder_name"]["value"], "Anna Kalniņa-Ozola");
        let records = s.app.db.audit_of_subject(&s.app.audit.pseudonym(CHILD)).await.unwrap();
        let rec = records.iter().find(|r| r.kind == "citizen.draft_corrected").expect("audited");
        assert!(rec.record.contains("holder_name") && rec.record.contains("a parent"), "{}", rec.record);
        assert!(!rec.record.contains(MOTHER) && !rec.record.contains("Ozola"), "pseudonyms, no values: {}", rec.record);

        // Bad corrections name what is wrong.
        for (body, field) in [
            (json!({"field": "shoe_size", "value": "42"}), "field"),
            (json!({"field": "holder_code", "value": "329900-00009"}), "field"),
            (json!({"field": "holder_name", "value": {"a": 1}}), "value"),
            (json!({"field": "holder_name", "value": " "}), "value"),
            (json!({"field": "holder_name"}), "value"),
            (json!({"field": "holder_name", "value": "x", "why": "typo"}), "why"),
        ] {
            let (code, p) = problem(s.send(Method::PATCH, &path, Some(&mum), Some(body.clone())).await).await;
            assert_eq!((code, p["field"].as_str()), (400, Some(field)), "{}: {body}: {p}", t.name);
        }
        // Somebody else's child is not hers; the child's guardian-less father is unknown here.
        assert_eq!(problem(s.get(&path, &token(STRANGER)).await).await.0, 403);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn submitting_a_draft_stops_the_reminders_and_answers_with_a_receipt() {
    for t in support::stores().await {
        let s = start(&t).await;
        // Two births: the first mother submits, the second (the control) does not.
        s.load(&[birth("b1", CHILD, Some(MOTHER), Some(FATHER)), birth("b2", OTHER_CHILD, Some(STRANGER), None)]).await;
        let mum = token(MOTHER);
        let list = s.ok("/api/v1/me/drafts", &mum).await;
        let drafts = list["drafts"].as_array().unwrap();
        assert_eq!(drafts.len(), 1, "{list}");
        let reference = drafts[0]["reference"].as_str().unwrap().to_string();
        assert_eq!(drafts[0]["service_id"], "VSAA-BPP");
        let path = format!("/api/v1/me/drafts/{reference}");
        let r = s
            .send(
                Method::PATCH,
                &path,
                Some(&mum),
                Some(json!({"field": "child_name", "value": "Anna Marija Kalniņa"})),
            )
            .await;
        let fixed = json_of(r, 200).await;
        let f = fixed["fields"].as_array().unwrap().iter().find(|f| f["name"] == "child_name").unwrap().clone();
        assert_eq!(f["source"], "corrected by the applicant", "{f}");

        let receipt = json_of(s.send(Method::POST, &format!("{path}/submit"), Some(&mum), None).await, 202).await;
        assert_eq!(receipt["status"], "submitted", "{receipt}");
        assert_eq!(receipt["reference"], reference.as_str());
        assert!(receipt["receipt"].as_str().unwrap().contains(&reference), "{receipt}");
        let seq: i64 = receipt["event_id"].as_str().unwrap().parse().unwrap();
        let ev = &s.app.db.events_by_seq(&[seq]).await.unwrap()[0];
        assert_eq!(
            (ev.source.as_str(), ev.event_type.as_str(), ev.subject.as_str()),
            ("api", "application.submitted", MOTHER)
        );
        assert_eq!(ev.data["draft_ref"], reference.as_str());
        assert_eq!(ev.data["service_id"], "VSAA-BPP");
        assert_eq!(s.ok(&path, &mum).await["status"], "submitted");
        let records = s.app.db.audit_of_subject(&s.app.audit.pseudonym(MOTHER)).await.unwrap();
        assert!(records.iter().any(|r| r.kind == "citizen.draft_submitted"), "the receipt is kept in the audit log");

        // Once submitted it is closed.
        let (code, _) = problem(s.send(Method::POST, &format!("{path}/submit"), Some(&mum), None).await).await;
        assert_eq!(code, 409);
        let (code, _) =
            problem(s.send(Method::PATCH, &path, Some(&mum), Some(json!({"field": "child_name", "value": "X"}))).await)
                .await;
        assert_eq!(code, 409);
        assert_eq!(problem(s.send(Method::POST, &format!("{path}/decline"), Some(&mum), None).await).await.0, 409);

        // The father declines his; declining twice is a conflict.
        let his = s.draft_refs(FATHER).await.pop().unwrap();
        let dad = token(FATHER);
        let declined =
            json_of(s.send(Method::POST, &format!("/api/v1/me/drafts/{his}/decline"), Some(&dad), None).await, 200)
                .await;
        assert_eq!(declined["status"], "declined", "{declined}");
        let again = s.send(Method::POST, &format!("/api/v1/me/drafts/{his}/decline"), Some(&dad), None).await;
        assert_eq!(problem(again).await.0, 409);
        // The decline is in the log, as the submission is, for the engine to act on.
        let records = s.app.db.audit_of_subject(&s.app.audit.pseudonym(FATHER)).await.unwrap();
        let rec = records.iter().find(|r| r.kind == "citizen.draft_declined").expect("the decline is audited");
        let rec: Value = serde_json::from_str(&rec.record).unwrap();
        let seq = rec["detail"]["event_seq"].as_i64().expect("the audit record names the event");
        let ev = &s.app.db.events_by_seq(&[seq]).await.unwrap()[0];
        assert_eq!(
            (ev.source.as_str(), ev.event_type.as_str(), ev.subject.as_str()),
            ("api", "application.declined", FATHER)
        );
        assert_eq!(ev.data["draft_ref"], his.as_str());

        // The engine takes the application: the case's reminder step is dropped …
        s.process().await;
        let case_of = |child: &str| proactive::engine::case_id("birth", child, child);
        let case = s.app.db.load_cases(&[case_of(CHILD)]).await.unwrap().pop().unwrap();
        assert_eq!(case.plan["childbirth_benefit_reminder"].state, StepState::Skipped, "{}: {:?}", t.name, case.plan);
        // … and 61 days on, only the control's parent is reminded.
        s.app.clock.advance(chrono::Duration::days(61));
        s.app.engine().run_all_due(&|| false).await.unwrap();
        let reminders: Vec<_> = s
            .app
            .db
            .notices_of(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.step == "childbirth_benefit_reminder")
            .map(|n| n.recipient)
            .collect();
        assert_eq!(reminders, vec![STRANGER.to_string()], "{}: no reminder after the submission", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn preferences_are_read_and_replaced_through_events() {
    for t in support::stores().await {
        let s = start(&t).await;
        s.load(&[support::contact("c1", MOTHER, Some("anna@example.lv"), None, "ru")]).await;
        let tok = token(MOTHER);
        let p = s.ok("/api/v1/me/preferences", &tok).await;
        assert_eq!(
            p,
            json!({"channels": null, "quiet_hours": null, "language": "ru", "email": "anna@example.lv",
                   "phone": null, "eaddress_active": false})
        );
        let put = |body: Value| s.send(Method::PUT, "/api/v1/me/preferences", Some(&tok), Some(body));
        for (body, field) in [
            (json!({"channels": ["pigeon"]}), "channels[0]"),
            (json!({"channels": ["sms", "sms"]}), "channels[1]"),
            (json!({"quiet_hours": "late"}), "quiet_hours"),
            (json!({"email": "not-an-address"}), "email"),
            (json!({"phone": "2000 0000"}), "phone"),
            (json!({"language": "de"}), "language"),
            (json!({"language": 3}), "language"),
            (json!({"colour": "red"}), "colour"),
            (json!({}), "body"),
        ] {
            let (code, p) = problem(put(body.clone()).await).await;
            assert_eq!((code, p["field"].as_str()), (400, Some(field)), "{}: {body}: {p}", t.name);
            assert!(!p.to_string().contains("not-an-address"), "no value repeated: {p}");
        }
        assert_eq!(s.api_events().await, 0);

        // The channel group alone leaves the contacts as they are.
        let ok = json_of(put(json!({"channels": ["sms", "email"], "quiet_hours": "22:00-07:00"})).await, 202).await;
        assert_eq!(ok["types"], json!(["preferences.declared"]));
        s.process().await;
        let p = s.ok("/api/v1/me/preferences", &tok).await;
        assert_eq!(p["channels"], json!(["sms", "email"]), "{p}");
        assert_eq!((p["quiet_hours"].as_str(), p["email"].as_str()), (Some("22:00-07:00"), Some("anna@example.lv")));

        // The contact group is replaced whole; a language left out stays.
        let ok = json_of(put(json!({"phone": "+37120000000"})).await, 202).await;
        assert_eq!(ok["types"], json!(["contact.declared"]));
        s.process().await;
        let p = s.ok("/api/v1/me/preferences", &tok).await;
        assert_eq!(
            (p["phone"].as_str(), p["email"].as_str(), p["language"].as_str()),
            (Some("+37120000000"), None, Some("ru"))
        );
        assert_eq!(p["channels"], json!(["sms", "email"]), "the other group is untouched");

        let ok = json_of(
            put(json!({"channels": null, "quiet_hours": null, "language": "en", "email": "a@b.lv"})).await,
            202,
        )
        .await;
        assert_eq!(ok["types"], json!(["preferences.declared", "contact.declared"]));
        s.process().await;
        let p = s.ok("/api/v1/me/preferences", &tok).await;
        assert_eq!(
            (p["channels"].clone(), p["language"].as_str()),
            (Value::Null, Some("en")),
            "back to the defaults: {p}"
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn staff_figures_reflect_the_store_and_a_cancel_is_audited() {
    for t in support::stores().await {
        let smtp = support::SmtpServer::start();
        let s = start_with(&t, |cfg, _| {
            cfg.channels.email = support::smtp(smtp.addr);
            cfg.delivery.digest = false;
            cfg.delivery.quiet_hours = "none".into();
        })
        .await;
        s.load(&[
            support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
            birth("b1", CHILD, Some(MOTHER), Some(FATHER)),
            birth("b2", OTHER_CHILD, Some(STRANGER), None),
        ])
        .await;
        // The mail server refuses the first message for good: a dead letter.
        smtp.fail.lock().unwrap().push(550);
        s.app.delivery().run_until_idle().await.unwrap();
        let key = s.key(Role::Staff).await;

        let ls = s.ok("/api/v1/staff/life-situations", &key).await;
        let birth_def = ls["life_situations"].as_array().unwrap().iter().find(|d| d["id"] == "birth").unwrap().clone();
        assert_eq!(
            (birth_def["version"].as_i64(), birth_def["status"].as_str()),
            (Some(2), Some("active")),
            "{birth_def}"
        );
        assert!(birth_def["steps"].as_array().unwrap().iter().any(|x| x == "childbirth_benefit_reminder"));
        assert_eq!(ls["life_situations"].as_array().unwrap().len(), s.app.rules.situations.len());

        let mut cases: BTreeMap<(String, String), i64> = BTreeMap::new();
        for c in s.app.db.all_cases().await.unwrap() {
            *cases.entry((c.life_situation, c.state)).or_default() += 1;
        }
        let got = s.ok("/api/v1/staff/cases/stats", &key).await;
        let got: BTreeMap<(String, String), i64> = got["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    (r["life_situation"].as_str().unwrap().into(), r["state"].as_str().unwrap().into()),
                    r["count"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, cases, "{}", t.name);
        assert_eq!(got[&("birth".to_string(), "open".to_string())], 2);

        let mut notices: BTreeMap<(String, Option<String>, String), i64> = BTreeMap::new();
        for n in s.app.db.list_notices(None, 100_000).await.unwrap() {
            *notices.entry((n.life_situation, n.channel, n.state)).or_default() += 1;
        }
        let got = s.ok("/api/v1/staff/notices/stats", &key).await;
        let got: BTreeMap<(String, Option<String>, String), i64> = got["notices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let ch = r["channel"].as_str().map(String::from);
                (
                    (r["life_situation"].as_str().unwrap().into(), ch, r["outcome"].as_str().unwrap().into()),
                    r["count"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, notices, "{}", t.name);
        assert!(notices.keys().any(|(_, ch, st)| ch.as_deref() == Some("email") && st == "sent"), "{notices:?}");

        let dead = s.ok("/api/v1/staff/dead-letters", &key).await;
        let dead = dead["dead_letters"].as_array().unwrap();
        let stored = s.app.db.list_notices(Some("dead"), 1000).await.unwrap();
        assert_eq!(dead.len(), stored.len());
        assert_eq!(dead.len(), 1, "{}: the refused mail: {dead:?}", t.name);
        assert_eq!(dead[0]["notice_id"], stored[0].notice_id.as_str());
        assert_eq!(dead[0]["recipient"], "******-***02", "masked");

        // Take-up: three drafts offered (both parents of the first child, the second mother), one submitted.
        let mum_ref = s.draft_refs(MOTHER).await.pop().unwrap();
        let r = s.send(Method::POST, &format!("/api/v1/me/drafts/{mum_ref}/submit"), Some(&token(MOTHER)), None).await;
        assert_eq!(r.status(), 202);
        let up = s.ok("/api/v1/staff/take-up", &key).await;
        let row = up["take_up"].as_array().unwrap().iter().find(|r| r["service_id"] == "VSAA-BPP").unwrap().clone();
        assert_eq!((row["offered"].as_i64(), row["submitted"].as_i64()), (Some(3), Some(1)), "{up}");
        assert!((row["take_up"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);

        // One case in detail, then cancelled with a reason, audited with the key's owner.
        let id = proactive::engine::case_id("birth", OTHER_CHILD, OTHER_CHILD);
        let case = s.ok(&format!("/api/v1/staff/cases/{id}"), &key).await;
        assert_eq!((case["state"].as_str(), case["subject"].as_str()), (Some("open"), Some("******-***02")), "{case}");
        assert!(!case.to_string().contains(STRANGER) && !case.to_string().contains(OTHER_CHILD), "persons masked");
        assert_eq!(problem(s.get("/api/v1/staff/cases/no-such-case", &key).await).await.0, 404);
        let cancel = format!("/api/v1/staff/cases/{id}/cancel");
        for (body, field) in [
            (json!({}), "reason"),
            (json!({"reason": "  "}), "reason"),
            (json!({"reason": 1}), "reason"),
            (json!({"reason": "x", "by": "me"}), "by"),
        ] {
            let (code, p) = problem(s.post(&cancel, &key, body.clone()).await).await;
            assert_eq!((code, p["field"].as_str()), (400, Some(field)), "{body}: {p}");
        }
        assert_eq!(
            problem(s.post("/api/v1/staff/cases/no-such-case/cancel", &key, json!({"reason": "x"})).await).await.0,
            404
        );
        let done = json_of(s.post(&cancel, &key, json!({"reason": "registered twice by mistake"})).await, 200).await;
        assert_eq!(done["state"], "cancelled", "{done}");
        assert!(done["steps"].as_array().unwrap().iter().all(|st| st["state"] != "pending"), "{done}");
        let records = s.app.db.audit_of_subject(&s.app.audit.pseudonym(OTHER_CHILD)).await.unwrap();
        let rec = records.iter().find(|r| r.kind == "staff.case_cancelled").expect("audited");
        assert!(
            rec.record.contains("Policy unit (staff key ") && rec.record.contains("registered twice"),
            "{}",
            rec.record
        );
        assert!(proactive::audit::commands::verify(&s.app.db).await.unwrap().ok());
        assert_eq!(problem(s.post(&cancel, &key, json!({"reason": "again"})).await).await.0, 409);
        let got = s.ok("/api/v1/staff/cases/stats", &key).await;
        assert!(got["cases"].as_array().unwrap().iter().any(|r| r["state"] == "cancelled" && r["count"] == 1), "{got}");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn every_citizen_and_staff_endpoint_is_described() {
    let t = support::sqlite().await;
    let s = start(&t).await;
    let doc: Value = s.http.get(format!("{}/api/openapi.json", s.base)).send().await.unwrap().json().await.unwrap();
    let routes = [
        ("/api/v1/me/consents", "get"),
        ("/api/v1/me/consents", "post"),
        ("/api/v1/me/preferences", "get"),
        ("/api/v1/me/preferences", "put"),
        ("/api/v1/me/notices", "get"),
        ("/api/v1/me/drafts", "get"),
        ("/api/v1/me/drafts/{reference}", "get"),
        ("/api/v1/me/drafts/{reference}", "patch"),
        ("/api/v1/me/drafts/{reference}/submit", "post"),
        ("/api/v1/me/drafts/{reference}/decline", "post"),
        ("/api/v1/staff/life-situations", "get"),
        ("/api/v1/staff/cases/stats", "get"),
        ("/api/v1/staff/cases/{id}", "get"),
        ("/api/v1/staff/cases/{id}/cancel", "post"),
        ("/api/v1/staff/notices/stats", "get"),
        ("/api/v1/staff/take-up", "get"),
        ("/api/v1/staff/dead-letters", "get"),
    ];
    for (path, method) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is described");
        let scheme = if path.starts_with("/api/v1/me") { "citizen_token" } else { "staff_key" };
        assert!(op["security"][0].get(scheme).is_some(), "{method} {path} names {scheme}: {}", op["security"]);
        for code in ["401", "403"] {
            let ct = &op["responses"][code]["content"]["application/problem+json"];
            assert!(ct.is_object(), "{method} {path} describes its {code} as a problem");
        }
    }
    let me = &doc["paths"]["/api/v1/me/notices"]["get"]["parameters"];
    assert!(me.as_array().unwrap().iter().any(|p| p["name"] == "for" && p["in"] == "query"), "{me}");
    for scheme in ["citizen_token", "staff_key", "agency_key"] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object(), "{scheme}");
    }
    t.cleanup().await;
}
