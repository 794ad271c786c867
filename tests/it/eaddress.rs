//! The e-address channel against a fake of the gateway contract (CONTRACTS.md
//! §4) on a loopback port, through the real delivery stage and store.

use std::sync::Arc;
use std::time::Duration;

use proactive::app::App;
use proactive::config::{ChannelConfig, GatewayConfig};
use proactive::delivery::eaddress::{EaddressClient, MessageState};
use proactive::delivery::{Channels, channels::Transport};
use serde_json::json;

use super::gateways::{GatewayFake, Kind, Script};
use super::support::load;
use super::support::{self, SmtpServer};

const MOTHER: &str = "150394-11002";
const FATHER: &str = "020792-11002";
const CHILD: &str = "321118-20001";
const TOKEN: &str = "test-eaddress-token";

pub fn gateway(url: &str, timeout_secs: u64) -> GatewayConfig {
    GatewayConfig { base_url: url.to_string(), timeout_secs, ..GatewayConfig::default() }
}

/// An app whose e-address goes to `fake` and whose email (if any) to `smtp`.
pub async fn app(t: &support::TestDb, fake: &GatewayFake, smtp: Option<&SmtpServer>, out: &std::path::Path) -> App {
    let mut cfg = support::fixture_config(&t.url, out);
    cfg.channels.email = smtp.map(|s| support::smtp(s.addr)).unwrap_or(ChannelConfig::Disabled);
    cfg.channels.eaddress = ChannelConfig::Disabled;
    cfg.channels.sms = ChannelConfig::Disabled;
    let mut app = App::open(cfg, support::demo_clock()).await.unwrap();
    let mut channels = Channels::from_config(&app.cfg.channels, &app.cfg.links).unwrap();
    let client = EaddressClient::new(&gateway(&fake.url, 1), Some(TOKEN.into())).unwrap();
    channels.eaddress = Some(Transport::Eaddress(client));
    app.channels = Arc::new(channels);
    app
}

pub fn activated(id: &str, subject: &str) -> serde_json::Value {
    json!({
        "source": "eadrese", "id": id, "type": "eaddress.activated", "subject": subject,
        "occurred_at": "2026-11-01T10:00:00+02:00", "data": {}
    })
}

/// The mother with an active e-address and a birth: one notice for her.
async fn one_notice(app: &App) -> String {
    load(app, &[activated("e1", MOTHER), support::birth("b1", CHILD, Some(MOTHER), None, "2026-11-18")]).await;
    let n = app.db.list_notices(None, 10).await.unwrap();
    assert_eq!(n.len(), 1);
    n[0].notice_id.clone()
}

#[tokio::test]
async fn a_notice_is_posted_with_its_id_as_idempotency_key_and_the_contracts_body() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Eaddress).await;
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, &fake, None, out.path()).await;
        let id = one_notice(&app).await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.retried, r.dead), (1, 0, 0), "{}", t.name);

        let seen = fake.requests();
        assert_eq!(seen.len(), 1, "{}", t.name);
        let s = &seen[0];
        assert_eq!(s.authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(s.key.as_deref(), Some(id.as_str()));
        assert_eq!(s.body["recipient"], MOTHER);
        assert_eq!(s.body["reference"], id.as_str());
        assert_eq!(s.body["legal_effect"], false);
        assert_eq!(s.body["attachments"], json!([]));
        assert!(s.body["subject"].as_str().unwrap().contains("Anna Kalniņa"), "{}", s.body);
        assert!(s.body["body_text"].as_str().unwrap().contains("Sveicam"), "{}", s.body);
        assert!(s.body["body_html"].as_str().unwrap().contains("<strong>Anna Kalniņa</strong>"), "{}", s.body);

        let sent = app.db.list_notices(Some("sent"), 10).await.unwrap();
        assert_eq!(sent[0].channel.as_deref(), Some("eaddress"));
        assert_eq!(sent[0].provider_id.as_deref(), Some("msg-1"));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn no_active_account_sends_the_notice_by_email_and_records_both_attempts() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Eaddress).await;
        let smtp = SmtpServer::start();
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, &fake, Some(&smtp), out.path()).await;
        // The registry says both parents have an account; the gateway knows better.
        fake.state.no_account.lock().unwrap().extend([MOTHER.to_string(), FATHER.to_string()]);
        load(
            &app,
            &[
                activated("e1", MOTHER),
                activated("e2", FATHER),
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                support::birth("b1", CHILD, Some(MOTHER), Some(FATHER), "2026-11-18"),
            ],
        )
        .await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.suppressed, r.dead, r.retried), (1, 1, 0, 0), "{}", t.name);
        assert_eq!(fake.requests().len(), 2, "each parent was tried on the e-address once");
        assert_eq!(fake.accepted(), 0);

        let msgs = smtp.messages();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].to, vec!["anna@example.lv".to_string()]);

        let all = app.db.list_notices(None, 10).await.unwrap();
        let mother = all.iter().find(|n| n.recipient == MOTHER).unwrap();
        assert_eq!((mother.state.as_str(), mother.channel.as_deref()), ("sent", Some("email")));
        let attempts = app.db.attempts(&mother.notice_id).await.unwrap();
        let trail: Vec<(&str, &str)> = attempts.iter().map(|a| (a.channel.as_str(), a.outcome.as_str())).collect();
        assert_eq!(trail, vec![("eaddress", "unreachable"), ("email", "sent")], "{}", t.name);
        assert!(attempts[0].error.as_deref().unwrap().contains("no active e-address account"));

        // The father has no other channel: suppressed, saying what the gateway answered.
        let father = all.iter().find(|n| n.recipient == FATHER).unwrap();
        assert_eq!(father.state, "suppressed");
        let why = father.last_error.as_deref().unwrap();
        assert!(why.contains("eaddress: e-address gateway: no active e-address account"), "{why}");
        assert!(why.contains("email: not configured") || why.contains("email: no email declared"), "{why}");
        assert!(!why.contains("eaddress: not configured"), "{why}");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_400_dead_letters_with_the_gateways_reason() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Eaddress).await;
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, &fake, None, out.path()).await;
        one_notice(&app).await;
        fake.script(Script::Answer(400, json!({"error": "body_html is not valid XHTML"}), None));
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.dead, r.retried), (1, 0), "{}", t.name);
        let dead = app.db.list_notices(Some("dead"), 10).await.unwrap();
        let err = dead[0].last_error.as_deref().unwrap();
        assert!(err.contains("refused") && err.contains("body_html is not valid XHTML"), "{err}");
        assert_eq!(fake.requests().len(), 1, "not retried");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_seconds_and_a_503_after_its_date() {
    let t = support::sqlite().await;
    let fake = GatewayFake::start(Kind::Eaddress).await;
    let out = tempfile::tempdir().unwrap();
    let app = app(&t, &fake, None, out.path()).await;
    one_notice(&app).await;
    fake.script(Script::Answer(429, json!({"error": "slow down"}), Some("120".into())));
    let r = app.delivery().run_round().await.unwrap();
    assert_eq!(r.retried, 1);
    let pending = app.db.list_notices(Some("pending"), 10).await.unwrap();
    assert!(pending[0].last_error.as_deref().unwrap().contains("HTTP 429"), "{:?}", pending[0].last_error);
    app.clock.advance(chrono::Duration::seconds(119));
    assert_eq!(app.delivery().run_round().await.unwrap().claimed, 0, "not before Retry-After");

    let date = (chrono::Utc::now() + chrono::Duration::seconds(60)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    fake.script(Script::Answer(503, json!({"error": "maintenance"}), Some(date)));
    app.clock.advance(chrono::Duration::seconds(2));
    let r = app.delivery().run_round().await.unwrap();
    assert_eq!((r.claimed, r.retried), (1, 1));
    app.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(app.delivery().run_round().await.unwrap().claimed, 0, "the date is a minute away");
    app.clock.advance(chrono::Duration::seconds(31));
    let r = app.delivery().run_round().await.unwrap();
    assert_eq!(r.sent, 1);
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.distinct_keys(), 1);
    t.cleanup().await;
}

#[tokio::test]
async fn a_slow_answer_times_out_and_the_retry_gets_the_first_acceptance_again() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Eaddress).await;
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, &fake, None, out.path()).await;
        let id = one_notice(&app).await;
        // The gateway takes the message but answers after the client's 1 s timeout.
        fake.script(Script::Slow(Duration::from_millis(2500)));
        let r = app.delivery().run_round().await.unwrap();
        assert_eq!(r.retried, 1, "{}", t.name);
        let pending = app.db.list_notices(Some("pending"), 10).await.unwrap();
        assert!(pending[0].last_error.as_deref().unwrap().contains("no answer within"), "{:?}", pending[0].last_error);

        app.clock.advance(chrono::Duration::seconds(1));
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!(r.sent, 1);
        assert_eq!(fake.requests().len(), 2, "two requests");
        assert_eq!(fake.distinct_keys(), 1, "one key");
        assert_eq!(fake.accepted(), 1, "one message in the citizen's mailbox");
        let sent = app.db.list_notices(Some("sent"), 10).await.unwrap();
        assert_eq!(sent[0].provider_id.as_deref(), Some("msg-1"), "the first acceptance's id");
        let trail: Vec<String> = app.db.attempts(&id).await.unwrap().into_iter().map(|a| a.outcome).collect();
        assert_eq!(trail, vec!["retry", "sent"]);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Eaddress).await;
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, &fake, None, out.path()).await;
        one_notice(&app).await;
        fake.state.drop_next.store(1, std::sync::atomic::Ordering::SeqCst);
        let r = app.delivery().run_round().await.unwrap();
        assert_eq!(r.retried, 1, "{}", t.name);
        assert_eq!(fake.state.dropped.load(std::sync::atomic::Ordering::SeqCst), 1);
        let pending = app.db.list_notices(Some("pending"), 10).await.unwrap();
        let err = pending[0].last_error.as_deref().unwrap();
        assert!(err.contains("connection failed before an answer"), "{err}");
        assert!(!err.contains(MOTHER), "no personal code in the error");

        app.clock.advance(chrono::Duration::seconds(1));
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!(r.sent, 1);
        assert_eq!(fake.accepted(), 1);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn message_status_and_account_are_read_from_the_gateway() {
    let fake = GatewayFake::start(Kind::Eaddress).await;
    fake.state.statuses.lock().unwrap().insert("msg-1".into(), json!({"status": "accepted"}));
    fake.state.statuses.lock().unwrap().insert(
        "msg-2".into(),
        json!({"status": "read", "delivered_at": "2026-11-23T09:00:05+02:00", "read_at": "2026-11-24T18:30:00+02:00"}),
    );
    fake.state.no_account.lock().unwrap().insert(FATHER.into());
    let c = EaddressClient::new(&gateway(&fake.url, 5), Some(TOKEN.into())).unwrap();

    let s = c.status("msg-1").await.unwrap();
    assert_eq!((s.status, s.delivered_at, s.read_at), (MessageState::Accepted, None, None));
    let s = c.status("msg-2").await.unwrap();
    assert_eq!(s.status, MessageState::Read);
    assert_eq!(s.delivered_at.unwrap().to_rfc3339(), "2026-11-23T09:00:05+02:00");
    assert_eq!(s.read_at.unwrap().to_rfc3339(), "2026-11-24T18:30:00+02:00");
    let err = c.status("msg-404").await.unwrap_err();
    assert!(err.contains("404") && err.contains("unknown_message"), "{err}");

    assert!(c.account_active(MOTHER).await.unwrap());
    assert!(!c.account_active(FATHER).await.unwrap());
}

#[tokio::test]
async fn a_sent_document_is_served_on_the_second_business_day_and_followed_until_read() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Eaddress).await;
        let out = tempfile::tempdir().unwrap();
        let mut app = app(&t, &fake, None, out.path()).await;
        app.cfg.delivery.receipt_poll_secs = 0;
        let id = one_notice(&app).await;
        // Sent on Wednesday 23 December 2026: 24–26 are holidays and 27 a Sunday.
        app.clock.set(chrono::DateTime::parse_from_rfc3339("2026-12-23T10:00:00+02:00").unwrap().to_utc());
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 1);
        let s = app.db.receipt_state(&id).await.unwrap().unwrap();
        assert_eq!(s.served_on.as_deref(), Some("2026-12-29"), "{}: served day", t.name);
        assert_eq!(s.status.as_deref(), Some("accepted"));
        assert!(s.next_poll_at.is_some(), "{}: the message is followed", t.name);

        let delivery = app.delivery();
        let asks = || fake.state.status_asks.load(std::sync::atomic::Ordering::SeqCst);
        let before = asks();
        delivery.run_round().await.unwrap();
        assert!(app.db.receipts(&id).await.unwrap().is_empty(), "{}: still only accepted", t.name);
        fake.state
            .statuses
            .lock()
            .unwrap()
            .insert("msg-1".into(), json!({"status": "delivered", "delivered_at": "2026-12-23T10:00:05+02:00"}));
        delivery.run_round().await.unwrap();
        fake.state.statuses.lock().unwrap().insert(
            "msg-1".into(),
            json!({"status": "read", "delivered_at": "2026-12-23T10:00:05+02:00", "read_at": "2026-12-28T08:15:00+02:00"}),
        );
        delivery.run_round().await.unwrap();
        let receipts = app.db.receipts(&id).await.unwrap();
        let stages: Vec<_> = receipts.iter().map(|r| (r.status.as_str(), r.detail.as_deref())).collect();
        assert_eq!(
            stages,
            [("delivered", Some("2026-12-23T10:00:05+02:00")), ("read", Some("2026-12-28T08:15:00+02:00"))],
            "{}: each stage once, with the gateway's time",
            t.name
        );
        assert!(receipts.iter().all(|r| r.provider_id.as_deref() == Some("msg-1") && r.channel == "eaddress"));
        let s = app.db.receipt_state(&id).await.unwrap().unwrap();
        assert_eq!((s.status.as_deref(), s.next_poll_at), (Some("read"), None), "{}: read ends the follow-up", t.name);
        assert_eq!(asks() - before, 3, "{}: one question a round", t.name);
        delivery.run_round().await.unwrap();
        assert_eq!(asks() - before, 3, "{}: no more questions once read", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn an_unread_document_stops_being_followed_after_the_follow_up_period() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Eaddress).await;
        let out = tempfile::tempdir().unwrap();
        let mut app = app(&t, &fake, None, out.path()).await;
        app.cfg.delivery.receipt_poll_secs = 0;
        app.cfg.delivery.receipt_follow_days = 10;
        let id = one_notice(&app).await;
        let delivery = app.delivery();
        assert_eq!(delivery.run_until_idle().await.unwrap().sent, 1);
        // A gateway that cannot say is asked again later, not given up on.
        fake.state.statuses.lock().unwrap().clear();
        delivery.run_round().await.unwrap();
        assert!(app.db.receipt_state(&id).await.unwrap().unwrap().next_poll_at.is_some(), "{}", t.name);
        fake.state.statuses.lock().unwrap().insert("msg-1".into(), json!({"status": "accepted"}));
        app.clock.advance(chrono::Duration::days(11));
        delivery.run_round().await.unwrap();
        let s = app.db.receipt_state(&id).await.unwrap().unwrap();
        assert_eq!((s.status.as_deref(), s.next_poll_at), (Some("accepted"), None), "{}: given up", t.name);
        assert_eq!(s.served_on.as_deref(), Some("2026-11-25"), "{}: Monday's document is served on Wednesday", t.name);
        t.cleanup().await;
    }
}
