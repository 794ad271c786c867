//! What calls back into `proactive serve`, against its real HTTP router on a
//! loopback port: the SMS gateway's delivery reports (CONTRACTS.md §5) and
//! the one-click unsubscribe link of an email (RFC 8058); and dead letters
//! replayed by an operator.

use std::sync::Arc;

use proactive::app::App;
use proactive::config::{ChannelConfig, GatewayConfig};
use proactive::delivery::sms::SmsClient;
use proactive::delivery::{Channels, channels::Transport};

use super::gateways::{GatewayFake, Kind};
use super::support::load;
use super::support::{self, SmtpServer};

const MOTHER: &str = "150394-11002";
const SECRET: &str = "callback-secret";

/// Serves the app's router on a loopback port; returns its base URL.
async fn serve(app: &App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = proactive::api::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// A plain HTTP client (reqwest is built to share the engine's ring TLS provider).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn sms_app(t: &support::TestDb, fake: &GatewayFake, out: &std::path::Path) -> App {
    let mut cfg = support::fixture_config(&t.url, out);
    cfg.channels.email = ChannelConfig::Disabled;
    cfg.channels.eaddress = ChannelConfig::Disabled;
    cfg.channels.sms = ChannelConfig::Disabled;
    let mut app = App::open(cfg, support::demo_clock()).await.unwrap();
    let g = GatewayConfig { base_url: fake.url.clone(), timeout_secs: 2, max_segments: 3, ..GatewayConfig::default() };
    let mut channels = Channels::from_config(&app.cfg.channels, &app.cfg.links).unwrap();
    channels.sms = Some(Transport::Sms(SmsClient::new(&g, Some("t".into())).unwrap().with_callback_secret(SECRET)));
    app.channels = Arc::new(channels);
    app
}

#[tokio::test]
async fn sms_delivery_reports_are_authenticated_validated_and_recorded() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Sms).await;
        let out = tempfile::tempdir().unwrap();
        let mut app = sms_app(&t, &fake, out.path()).await;
        // Each notice its own SMS, so each gets its own report (digests are tested in pacing.rs).
        app.cfg.delivery.digest = false;
        load(
            &app,
            &[
                support::contact("c1", MOTHER, None, Some("+37120000678"), "lv"),
                support::birth("b1", "321118-20001", Some(MOTHER), None, "2026-11-18"),
                support::birth("b2", "321119-20002", Some(MOTHER), None, "2026-11-19"),
            ],
        )
        .await;
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 2, "{}", t.name);
        let sent = app.db.list_notices(Some("sent"), 10).await.unwrap();
        let base = serve(&app).await;
        let http = http();
        let post = |body: serde_json::Value, auth: Option<&str>| {
            let mut r = http.post(format!("{base}/callbacks/sms")).json(&body);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            r.send()
        };
        let report = |n: usize, status: &str| serde_json::json!({ "id": sent[n].provider_id, "reference": sent[n].notice_id, "status": status, "error": null });

        let r = post(report(0, "delivered"), None).await.unwrap();
        assert_eq!(r.status(), 401, "{}: no secret", t.name);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let r = post(report(0, "delivered"), Some("Bearer wrong")).await.unwrap();
        assert_eq!(r.status(), 401);
        let auth = format!("Bearer {SECRET}");
        let r = post(serde_json::json!({ "id": "x", "status": "delivered" }), Some(&auth)).await.unwrap();
        assert_eq!(r.status(), 400);
        let problem: serde_json::Value = r.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("reference"), "{problem}");
        let r = post(serde_json::json!({ "id": "x", "reference": "nope", "status": "delivered" }), Some(&auth))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = post(serde_json::json!({ "id": "x", "reference": sent[0].notice_id, "status": "lost" }), Some(&auth))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "an unknown status is named");

        assert_eq!(post(report(0, "delivered"), Some(&auth)).await.unwrap().status(), 204);
        let mut failed = report(1, "failed");
        failed["error"] = "absent subscriber".into();
        assert_eq!(post(failed, Some(&auth)).await.unwrap().status(), 204);

        let r0 = app.db.receipts(&sent[0].notice_id).await.unwrap();
        assert_eq!(r0.len(), 1);
        assert_eq!(
            (r0[0].status.as_str(), r0[0].provider_id.as_deref()),
            ("delivered", sent[0].provider_id.as_deref())
        );
        let dead = app.db.list_notices(Some("dead"), 10).await.unwrap();
        assert_eq!(dead.len(), 1, "{}: a failed report dead-letters the notice", t.name);
        assert_eq!(dead[0].notice_id, sent[1].notice_id);
        assert!(dead[0].last_error.as_deref().unwrap().contains("absent subscriber"), "{:?}", dead[0].last_error);

        // The operator replays it: queued again, attempts from zero, sent again with the same key.
        let replayed = app.db.replay_dead(None, app.clock.now_ms()).await.unwrap();
        assert_eq!(replayed, vec![sent[1].notice_id.clone()]);
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 1, "{}", t.name);
        let keys: Vec<_> = fake.requests().into_iter().filter_map(|s| s.key).collect();
        assert_eq!(
            keys.iter().filter(|k| **k == sent[1].notice_id).count(),
            2,
            "the replay reuses the idempotency key"
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_one_click_unsubscribe_records_a_refusal_of_the_purpose_on_email_once() {
    let t = support::sqlite().await;
    let smtp = SmtpServer::start();
    let out = tempfile::tempdir().unwrap();
    let mut cfg = support::fixture_config(&t.url, out.path());
    cfg.channels.email = support::smtp(smtp.addr);
    cfg.channels.eaddress = ChannelConfig::Disabled;
    let app = App::open(cfg, support::demo_clock()).await.unwrap();
    load(
        &app,
        &[
            support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
            support::birth("b1", "321118-20001", Some(MOTHER), None, "2026-11-18"),
        ],
    )
    .await;
    assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 1);
    let mail = smtp.messages().pop().unwrap();
    // The header as sent (it may be folded over lines): `List-Unsubscribe: <URL>`.
    let at = mail.data.find("List-Unsubscribe: <").expect("a List-Unsubscribe header");
    let rest = &mail.data[at + "List-Unsubscribe: <".len()..];
    let link: String = rest[..rest.find('>').unwrap()].split_whitespace().collect();
    let token = link.rsplit('/').next().unwrap().to_string();
    assert!(!token.contains(MOTHER), "no personal code in the link");
    let base = serve(&app).await;
    let http = http();

    let page = http.get(format!("{base}/unsubscribe/{token}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form method=\"post\""), "GET asks, it does not unsubscribe");
    assert!(app.db.pending_event_count().await.unwrap() == 0, "a GET records nothing");

    let forged = format!("{}0", &token[..token.len() - 1]);
    let r = http.post(format!("{base}/unsubscribe/{forged}")).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(r.status(), 404, "a forged token is refused");

    for _ in 0..2 {
        let r = http
            .post(format!("{base}/unsubscribe/{token}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let events = app.db.pending_events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1, "two clicks, one refusal");
    assert_eq!(events[0].event_type, "consent.refused");
    assert_eq!(events[0].subject, MOTHER);
    assert_eq!(events[0].data["purpose"], "birth");
    assert_eq!(events[0].data["channel"], "email");

    // It takes effect: the next birth's email to her for that purpose is not sent.
    app.engine().run_until_idle().await.unwrap();
    load(&app, &[support::birth("b2", "321119-20002", Some(MOTHER), None, "2026-11-19")]).await;
    let r = app.delivery().run_until_idle().await.unwrap();
    assert_eq!((r.sent, r.suppressed), (0, 1));
    let held = app.db.list_notices(Some("suppressed"), 10).await.unwrap();
    assert!(held[0].last_error.as_deref().unwrap().contains("refused \"birth\""), "{:?}", held[0].last_error);
    assert_eq!(smtp.messages().len(), 1, "no second email");
    t.cleanup().await;
}

#[tokio::test]
async fn a_refusal_of_a_purpose_withdraws_its_queued_notices_and_leaves_others() {
    for t in support::stores().await {
        let out = tempfile::tempdir().unwrap();
        let mut cfg = support::fixture_config(&t.url, out.path());
        cfg.channels.eaddress = ChannelConfig::Disabled;
        let app = App::open(cfg, support::demo_clock()).await.unwrap();
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                support::contact("c2", "200190-11008", Some("olga@example.lv"), None, "ru"),
                support::birth("b1", "321118-20001", Some(MOTHER), None, "2026-11-18"),
                support::birth("b2", "321119-20002", Some("200190-11008"), None, "2026-11-19"),
            ],
        )
        .await;
        let refusal = serde_json::json!({
            "source": "portal", "id": "r1", "type": "consent.refused", "subject": MOTHER,
            "occurred_at": "2026-11-22T10:00:00+02:00",
            "data": { "purpose": "birth", "channel": null, "text_version": "v3" }
        });
        load(&app, &[refusal]).await;
        let notices = app.db.list_notices(None, 10).await.unwrap();
        let mine = notices.iter().find(|n| n.recipient == MOTHER).unwrap();
        let hers = notices.iter().find(|n| n.recipient == "200190-11008").unwrap();
        assert_eq!(mine.state, "cancelled", "{}: withdrawn at the refusal's commit", t.name);
        assert!(mine.last_error.as_deref().unwrap().contains("refused \"birth\""), "{:?}", mine.last_error);
        assert_eq!(hers.state, "pending", "{}: someone else's notice stays", t.name);
        let profile = app.db.load_profiles(&[MOTHER.to_string()]).await.unwrap().pop().unwrap();
        assert_eq!(profile.consents.len(), 1);
        assert_eq!((profile.consents[0].granted, profile.consents[0].text_version.as_deref()), (false, Some("v3")));
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 1, "{}", t.name);
        t.cleanup().await;
    }
}
