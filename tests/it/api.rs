//! The agency API against the real router on a loopback port, on SQLite and
//! (when configured) PostgreSQL: single posts and batches (JSONL, CSV) with
//! every error they can get, API keys (scopes, revocation, use counts), the
//! group commit under concurrent posts, `/metrics` and the OpenAPI description.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use proactive::api::keys::{self, Role};
use proactive::app::App;
use serde_json::{Value, json};

use super::support::{self, TestDb};

const MOTHER: &str = "150394-11002";
/// A personal code whose check digit is wrong.
const BAD_CODE: &str = "150394-11003";

struct Server {
    base: String,
    app: App,
    http: reqwest::Client,
    _out: tempfile::TempDir,
}

async fn start(t: &TestDb, tune: impl FnOnce(&mut proactive::config::Config)) -> Server {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = support::config(&t.url, out.path());
    tune(&mut cfg);
    let app = App::open(cfg, support::demo_clock()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = proactive::api::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let _ = rustls::crypto::ring::default_provider().install_default();
    Server { base: format!("http://{addr}"), app, http: reqwest::Client::new(), _out: out }
}

impl Server {
    async fn key(&self, role: Role, sources: &[&str], types: &[&str]) -> (String, String) {
        let s: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let t: Vec<String> = types.iter().map(|s| s.to_string()).collect();
        let (key, row) =
            keys::create(&self.app.db, role, "Test agency", &s, &t, self.app.clock.now_ms()).await.unwrap();
        (key, row.id)
    }

    async fn post(&self, key: Option<&str>, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.send("/api/v1/events", key, content_type, body).await
    }

    async fn send(
        &self,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut r = self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.unwrap()
    }

    async fn post_json(&self, key: &str, record: &Value) -> reqwest::Response {
        self.post(Some(key), "application/json", record.to_string()).await
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

fn birth(id: &str, child: &str) -> Value {
    support::birth(id, child, Some(MOTHER), None, "2026-11-18")
}

/// A distinct new-format personal code per number.
fn child(n: usize) -> String {
    format!("32{:04}-{:05}", n / 100_000, n % 100_000)
}

#[tokio::test]
async fn single_posts_are_accepted_once_validated_and_scoped() {
    for t in support::stores().await {
        let s = start(&t, |_| {}).await;
        let (key, _) = s.key(Role::Agency, &["pmlp"], &["birth.registered", "death.registered"]).await;

        let r = s.post_json(&key, &birth("b1", "321118-20001")).await;
        assert_eq!(r.status(), 202, "{}", t.name);
        let first: Value = r.json().await.unwrap();
        assert_eq!(first["status"], "accepted");
        let id = first["event_id"].as_str().unwrap().to_string();
        let r = s.post_json(&key, &birth("b1", "321118-20001")).await;
        assert_eq!(r.status(), 200, "{}: the same (source, id) again", t.name);
        let again: Value = r.json().await.unwrap();
        assert_eq!((again["status"].as_str(), again["event_id"].as_str()), (Some("duplicate"), Some(id.as_str())));
        assert_eq!(s.app.db.event_count_of("pmlp").await.unwrap(), 1, "{}", t.name);
        let stored = s.app.db.events_by_external(&[("pmlp".into(), "b1".into())]).await.unwrap();
        assert_eq!(stored[0].seq.to_string(), id);

        // 400 names the field, never the value.
        let mut bad = birth("b2", "321118-20002");
        bad["data"]["mother"] = BAD_CODE.into();
        let (code, p) = problem(s.post_json(&key, &bad).await).await;
        assert_eq!((code, p["field"].as_str()), (400, Some("data.mother")), "{}: {p}", t.name);
        assert!(p["detail"].as_str().unwrap().starts_with("data.mother"), "{p}");
        assert!(!p.to_string().contains(BAD_CODE), "the problem repeats no personal code: {p}");
        let mut no_date = birth("b3", "321118-20003");
        no_date.as_object_mut().unwrap().remove("occurred_at");
        let (_, p) = problem(s.post_json(&key, &no_date).await).await;
        assert_eq!(p["field"], "occurred_at", "{p}");
        let (code, p) = problem(s.post(Some(&key), "application/json", "{\"source\": ").await).await;
        assert_eq!(code, 400);
        assert!(p["detail"].as_str().unwrap().contains("not valid JSON"), "{p}");
        assert!(s.app.db.quarantine_list(true).await.unwrap().is_empty(), "a single post's 400 is not quarantined");

        // 401: no key, a key of the wrong shape, an unknown key of the right shape.
        let (code, p) = problem(s.post(None, "application/json", birth("b4", "321118-20004").to_string()).await).await;
        assert_eq!(code, 401, "{p}");
        let (code, _) = problem(s.post(Some("secret"), "application/json", "{}").await).await;
        assert_eq!(code, 401);
        let forged = format!("{}{}", &key[..16], "A".repeat(43));
        let (code, _) = problem(s.post(Some(&forged), "application/json", "{}").await).await;
        assert_eq!(code, 401, "a known id with another secret");

        // 403: a source or a type the key may not send, a staff key.
        let mut other = birth("u1", "321118-20005");
        other["source"] = "ur".into();
        let (code, p) = problem(s.post_json(&key, &other).await).await;
        assert_eq!((code, p["field"].as_str()), (403, Some("source")), "{p}");
        let contact = support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv");
        let mut contact_pmlp = contact.clone();
        contact_pmlp["source"] = "pmlp".into();
        let (code, p) = problem(s.post_json(&key, &contact_pmlp).await).await;
        assert_eq!((code, p["field"].as_str()), (403, Some("type")), "{p}");
        let (staff, _) = s.key(Role::Staff, &[], &[]).await;
        let (code, _) = problem(s.post_json(&staff, &birth("b5", "321118-20006")).await).await;
        assert_eq!(code, 403, "a staff key sends no events");

        // 415, 413, 404, 405: axum's own answers come as problems too.
        let (code, _) = problem(s.post(Some(&key), "text/plain", birth("b6", "321118-20007").to_string()).await).await;
        assert_eq!(code, 415);
        let mut big = birth("b7", "321118-20008");
        big["data"]["address"] = "x".repeat(70 * 1024).into();
        let (code, _) = problem(s.post_json(&key, &big).await).await;
        assert_eq!(code, 413, "{}", t.name);
        let (code, _) = problem(s.http.get(format!("{}/api/v1/nothing", s.base)).send().await.unwrap()).await;
        assert_eq!(code, 404);
        let r = s.http.get(format!("{}/api/v1/events", s.base)).send().await.unwrap();
        assert!(r.headers().contains_key("allow"), "405 says what is allowed");
        let (code, _) = problem(r).await;
        assert_eq!(code, 405);
        assert_eq!(s.app.db.event_count_of("pmlp").await.unwrap(), 1, "{}: nothing else got in", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_and_every_use_is_counted() {
    for t in support::stores().await {
        let s = start(&t, |_| {}).await;
        let (key, id) = s.key(Role::Agency, &["pmlp"], &["birth.registered"]).await;
        let (other, other_id) = s.key(Role::Agency, &["pmlp"], &["birth.registered"]).await;
        assert_eq!(s.post_json(&key, &birth("b1", "321118-20001")).await.status(), 202);
        assert_eq!(s.post_json(&key, &birth("b1", "321118-20001")).await.status(), 200);
        assert_eq!(s.post(Some(&key), "application/json", "[]").await.status(), 400);
        assert_eq!(s.post_json(&other, &birth("b2", "321118-20002")).await.status(), 202);

        assert!(s.app.db.revoke_api_key(&id, s.app.clock.now_ms()).await.unwrap());
        assert!(!s.app.db.revoke_api_key(&id, s.app.clock.now_ms()).await.unwrap(), "once");
        // Keys are cached for a second: the revocation holds within about that.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut let_in = 0;
        loop {
            let r = s.post_json(&key, &birth("b3", "321118-20003")).await;
            if r.status() == 401 {
                let (_, p) = problem(r).await;
                assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
                break;
            }
            assert!(
                [200, 202].contains(&r.status().as_u16()),
                "{}: until the cache lapses the key still works",
                t.name
            );
            let_in += 1;
            assert!(Instant::now() < deadline, "{}: the revoked key is still accepted", t.name);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(s.post_json(&other, &birth("b4", "321118-20004")).await.status(), 202, "other keys go on");

        // Uses reach the store with the next commit, or within a second without one.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let keys = s.app.db.api_keys().await.unwrap();
            let uses: HashMap<&str, i64> = keys.iter().map(|k| (k.id.as_str(), k.uses)).collect();
            let revoked = keys.iter().find(|k| k.id == id).unwrap();
            // Three before the revocation, and the posts that got in before the cache lapsed.
            if uses[id.as_str()] == 3 + let_in && uses[other_id.as_str()] == 2 {
                assert!(revoked.revoked_at.is_some() && revoked.last_used_at.is_some());
                assert!(keys.iter().all(|k| k.hash.len() == 64 && !key.contains(&k.hash)));
                break;
            }
            assert!(Instant::now() < deadline, "{}: uses {uses:?}", t.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        t.cleanup().await;
    }
}

#[tokio::test]
async fn jsonl_batches_answer_every_line_and_quarantine_the_bad_ones() {
    for t in support::stores().await {
        let s = start(&t, |_| {}).await;
        let (key, id) = s.key(Role::Agency, &["pmlp"], &["birth.registered"]).await;
        let mut bad = birth("j2", "321118-20002");
        bad["data"]["mother"] = BAD_CODE.into();
        let mut forbidden = birth("j5", "321118-20005");
        forbidden["source"] = "ur".into();
        let body = [
            birth("j1", "321118-20001").to_string(),
            bad.to_string(),
            String::new(),
            birth("j1", "321118-20001").to_string(),
            forbidden.to_string(),
            "{\"source\": \"pmlp\", \"id\": ".to_string(),
            birth("j7", "321118-20007").to_string(),
        ]
        .join("\n");
        let r = s.send("/api/v1/events:batch", Some(&key), "application/x-ndjson", body.clone()).await;
        assert_eq!(r.status(), 200, "{}", t.name);
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        let text = r.text().await.unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let brief: Vec<(u64, &str)> =
            lines.iter().map(|l| (l["line"].as_u64().unwrap(), l["status"].as_str().unwrap())).collect();
        assert_eq!(
            brief,
            vec![(1, "accepted"), (2, "rejected"), (4, "duplicate"), (5, "rejected"), (6, "rejected"), (7, "accepted")],
            "{}: {text}",
            t.name
        );
        assert_eq!(lines[0]["event_id"], lines[2]["event_id"], "a repeat names the first copy");
        assert_eq!(lines[1]["field"], "data.mother");
        assert!(lines[1]["error"].as_str().unwrap().starts_with("data.mother"), "{}", lines[1]);
        assert_eq!(lines[3]["field"], "source");
        assert!(lines[4]["error"].as_str().unwrap().contains("not valid JSON"), "{}", lines[4]);
        assert!(!text.contains(BAD_CODE), "answers repeat no personal code");
        assert_eq!(s.app.db.event_count_of("pmlp").await.unwrap(), 2);

        // Bad lines are held with their error, like a feed's; the forbidden one is not.
        let held = s.app.db.quarantine_list(true).await.unwrap();
        let mut places: Vec<&str> = held.iter().map(|q| q.location.as_str()).collect();
        places.sort();
        assert_eq!(
            places,
            vec![
                format!("API batch of key {id} (Test agency), line 2"),
                format!("API batch of key {id} (Test agency), line 6")
            ],
            "{}",
            t.name
        );
        let q2 = held.iter().find(|q| q.location.ends_with("line 2")).unwrap();
        assert_eq!((q2.field.as_deref(), q2.source.as_str()), (Some("data.mother"), "pmlp"));
        assert_eq!(q2.raw, bad.to_string(), "kept as received");

        // The same batch again: everything stored answers duplicate, nothing is held twice.
        let again =
            s.send("/api/v1/events:batch", Some(&key), "application/x-ndjson", body).await.text().await.unwrap();
        let statuses: Vec<String> = again
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["status"].as_str().unwrap().into())
            .collect();
        assert_eq!(statuses, ["duplicate", "rejected", "duplicate", "rejected", "rejected", "duplicate"]);
        assert_eq!(s.app.db.quarantine_list(true).await.unwrap().len(), 2);

        let (code, _) = problem(s.send("/api/v1/events:batch", Some(&key), "application/json", "{}").await).await;
        assert_eq!(code, 415, "a batch is JSONL or CSV");
        let (code, p) = problem(s.send("/api/v1/events:batch", Some(&key), "application/x-ndjson", "\n\n").await).await;
        assert_eq!(code, 400, "{p}");
        let (code, _) = problem(s.send("/api/v1/events:batch", None, "application/x-ndjson", "{}").await).await;
        assert_eq!(code, 401);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn csv_batches_read_data_as_json_and_go_on_past_a_bad_line() {
    for t in support::stores().await {
        let s = start(&t, |_| {}).await;
        let (key, _) = s.key(Role::Agency, &["pmlp"], &["birth.registered"]).await;
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["source", "id", "type", "subject", "occurred_at", "data"]).unwrap();
        let row = |r: &Value, data: &str| {
            vec![
                r["source"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
                r["subject"].as_str().unwrap().to_string(),
                r["occurred_at"].as_str().unwrap().to_string(),
                data.to_string(),
            ]
        };
        let c1 = birth("c1", "321118-20001");
        let c3 = birth("c3", "321118-20003");
        let mut c4 = birth("c4", "321118-20004");
        c4["subject"] = BAD_CODE.into();
        w.write_record(row(&c1, &c1["data"].to_string())).unwrap();
        w.write_record(row(&birth("c2", "321118-20002"), "{\"given_name\": \"Anna\",")).unwrap();
        w.write_record(row(&c3, &c3["data"].to_string())).unwrap();
        w.write_record(row(&c4, &c4["data"].to_string())).unwrap();
        let body = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(body.contains("\"\"given_name\"\""), "data is one quoted field: {body}");

        let r = s.send("/api/v1/events:batch", Some(&key), "text/csv; charset=utf-8", body).await;
        assert_eq!(r.status(), 200, "{}", t.name);
        let lines: Vec<Value> = r.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let brief: Vec<(u64, &str, Option<&str>)> = lines
            .iter()
            .map(|l| (l["line"].as_u64().unwrap(), l["status"].as_str().unwrap(), l["field"].as_str()))
            .collect();
        assert_eq!(
            brief,
            vec![
                (2, "accepted", None),
                (3, "rejected", Some("data")),
                (4, "accepted", None),
                (5, "rejected", Some("subject"))
            ],
            "{}: line 1 is the header",
            t.name
        );
        let stored = s.app.db.events_by_external(&[("pmlp".into(), "c1".into())]).await.unwrap();
        assert_eq!(stored[0].data["given_name"], "Anna", "data arrived as a JSON object");
        let held = s.app.db.quarantine_list(true).await.unwrap();
        assert_eq!(held.len(), 2);
        let q = held.iter().find(|q| q.location.ends_with("line 3")).unwrap();
        let raw: Value = serde_json::from_str(&q.raw).unwrap();
        assert_eq!(raw["id"], "c2", "a CSV record is held as the JSON it stands for, so a retry can read it");

        let (code, p) = problem(
            s.send("/api/v1/events:batch", Some(&key), "text/csv", "source,id,type,subject,occurred_at\n").await,
        )
        .await;
        assert_eq!((code, p["field"].as_str()), (400, Some("header")), "{p}");
        assert!(p["detail"].as_str().unwrap().contains("\"data\""), "{p}");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_single_posts_are_all_stored_once() {
    for t in support::stores().await {
        let s = start(&t, |_| {}).await;
        let (key, _) = s.key(Role::Agency, &["pmlp"], &["birth.registered"]).await;
        // 300 distinct events, the first 100 posted twice, 64 requests in flight.
        let ids: Vec<usize> = (0..300).chain(0..100).collect();
        let answers: Vec<(usize, u16, String)> = futures_util::stream::iter(ids)
            .map(|i| {
                let (s, key) = (&s, &key);
                async move {
                    let r = s.post_json(key, &birth(&format!("e{i}"), &child(i))).await;
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap();
                    (i, status, body["event_id"].as_str().unwrap_or_default().to_string())
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let mut by_id: HashMap<usize, Vec<(u16, String)>> = HashMap::new();
        for (i, status, event) in answers {
            by_id.entry(i).or_default().push((status, event));
        }
        for (i, got) in &by_id {
            let accepted = got.iter().filter(|(s, _)| *s == 202).count();
            assert_eq!(accepted, 1, "{}: e{i} answered {got:?}", t.name);
            assert!(got.iter().all(|(s, e)| (*s == 202 || *s == 200) && *e == got[0].1), "{got:?}");
        }
        assert_eq!(s.app.db.event_count_of("pmlp").await.unwrap(), 300, "{}: none lost, none doubled", t.name);
        let distinct: std::collections::HashSet<&String> = by_id.values().map(|g| &g[0].1).collect();
        assert_eq!(distinct.len(), 300);
        t.cleanup().await;
    }
}

/// The value of one sample line of a Prometheus text exposition, 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_move_with_ingestion_and_openapi_lists_every_endpoint() {
    for t in support::stores().await {
        let s = start(&t, |_| {}).await;
        // Counters are per process and the tests share one: a source of this test's own.
        let source = format!("metrics-{}", t.name);
        let (key, _) = s.key(Role::Agency, &[&source], &["birth.registered"]).await;
        let scrape = || async {
            let r = s.http.get(format!("{}/metrics", s.base)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
            r.text().await.unwrap()
        };
        let ingested = format!("proactive_events_ingested_total{{source=\"{source}\"}}");
        let quarantined = format!("proactive_events_quarantined_total{{source=\"{source}\"}}");
        support::load(&s.app, &[support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv")]).await;
        let before = scrape().await;
        let records: Vec<String> = (0..3)
            .map(|i| {
                let mut b = birth(&format!("m{i}"), &child(900 + i));
                b["source"] = source.clone().into();
                b.to_string()
            })
            .collect();
        let mut bad: Value = serde_json::from_str(&records[0]).unwrap();
        bad["id"] = "m-bad".into();
        bad["data"]["sex"] = "X".into();
        assert_eq!(s.post(Some(&key), "application/json", records[0].clone()).await.status(), 202);
        let body = format!("{}\n{}\n{bad}\n", records[1], records[2]);
        assert_eq!(s.send("/api/v1/events:batch", Some(&key), "application/x-ndjson", body).await.status(), 200);
        s.app.engine().run_until_idle().await.unwrap();
        let before_delivery = scrape().await;
        assert!(sample(&before_delivery, "proactive_outbox_depth") >= 1.0, "the births queued notices");
        // The engine's batch for the births read, evaluated and committed (other tests' batches only add).
        for stage in ["read", "evaluate", "commit"] {
            let count = format!("proactive_engine_stage_seconds_count{{stage=\"{stage}\"}}");
            let ran = sample(&before_delivery, &count) - sample(&before, &count);
            assert!(ran >= 1.0, "{}: stage {stage} counted {ran} batches:\n{before_delivery}", t.name);
        }
        assert!(before_delivery.contains("proactive_notices{channel=\"\",state=\"pending\"}"), "{before_delivery}");
        let d = s.app.delivery().run_until_idle().await.unwrap();
        assert!(d.sent >= 1, "{}: {d:?} {:?}", t.name, s.app.db.list_notices(None, 20).await.unwrap());

        let after = scrape().await;
        assert_eq!(sample(&after, &ingested) - sample(&before, &ingested), 3.0, "{}:\n{after}", t.name);
        assert_eq!(sample(&after, &quarantined) - sample(&before, &quarantined), 1.0);
        assert!(sample(&after, "proactive_quarantine_held") >= 1.0);
        assert!(
            sample(&after, "proactive_http_requests_total{route=\"/api/v1/events\",status=\"202\"}") >= 1.0,
            "{after}"
        );
        assert!(after.contains("proactive_rule_runs_total{rule="), "rules ran: {after}");
        assert!(after.contains("proactive_delivery_latency_seconds_count{channel="), "{after}");
        assert!(after.contains(",state=\"sent\"}"), "notices by channel once sent: {after}");
        assert!(after.contains("proactive_timer_backlog "), "{after}");
        assert!(after.contains("proactive_api_group_commit_events_bucket"), "{after}");

        let r = s.http.get(format!("{}/api/openapi.json", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.unwrap();
        let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
        for p in [
            "/api/v1/events",
            "/api/v1/events:batch",
            "/metrics",
            "/healthz",
            "/readyz",
            "/api/openapi.json",
            "/callbacks/sms",
            "/unsubscribe/{token}",
        ] {
            assert!(paths.contains(&p), "{p} is described: {paths:?}");
        }
        let post = &doc["paths"]["/api/v1/events"]["post"];
        for code in ["200", "202", "400", "401", "403", "413", "415"] {
            assert!(post["responses"].get(code).is_some(), "POST /api/v1/events documents {code}");
        }
        assert!(doc["components"]["securitySchemes"]["agency_key"].is_object());
        assert!(doc["components"]["schemas"]["Change"].is_object());
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_request_that_outlasts_the_time_limit_is_answered_503_as_a_problem() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = support::sqlite().await;
    let s = start(&t, |cfg| cfg.http.request_timeout_secs = 1).await;
    let (key, _) = s.key(Role::Agency, &["pmlp"], &["birth.registered"]).await;
    // A client that announces a body and never sends it.
    let mut tcp = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"source\""
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("send it again"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    t.cleanup().await;
}

#[test]
fn keys_are_created_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_proactive"))
            .current_dir(support::root())
            .env_remove("PROACTIVE_CONFIG")
            .env("PROACTIVE_DATABASE__URL", &db)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "keys",
        "create",
        "--role",
        "agency",
        "--agency",
        "PMLP",
        "--sources",
        "pmlp",
        "--types",
        "birth.registered,death.registered",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let id = keys::key_id(&key).expect("the key alone on standard output").to_string();
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only this once"));
    let bad = run(&["keys", "create", "--role", "agency", "--agency", "X", "--sources", "pmlp", "--types", "birth"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("\"birth\" is not an event type"));
    let staff = run(&["keys", "create", "--role", "staff", "--name", "Policy team"]);
    assert!(staff.status.success(), "{}", String::from_utf8_lossy(&staff.stderr));

    let list = run(&["keys", "list", "--format", "json"]);
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["types"], json!(["birth.registered", "death.registered"]));
    let table = run(&["keys", "list"]);
    let text = format!("{}{}", String::from_utf8_lossy(&list.stdout), String::from_utf8_lossy(&table.stdout));
    assert!(!text.contains(&key[16..]) && !text.contains("hash"), "no secret is listed: {text}");

    assert!(run(&["keys", "revoke", &id]).status.success());
    assert_eq!(run(&["keys", "revoke", &id]).status.code(), Some(2), "revoking twice says so");
    let list = run(&["keys", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("revoked"));
}
