//! The SMS channel against a fake of the gateway contract (CONTRACTS.md §5)
//! on a loopback port, through the real delivery stage and store.

use std::sync::Arc;
use std::time::Duration;

use proactive::app::App;
use proactive::config::{ChannelConfig, GatewayConfig};
use proactive::delivery::segments::{Encoding, segment};
use proactive::delivery::sms::SmsClient;
use proactive::delivery::{Channels, channels::Transport};
use serde_json::json;

use super::gateways::{GatewayFake, Kind, Script};
use super::support;
use super::support::load;

const MOTHER: &str = "150394-11002";
const CHILD: &str = "321118-20001";
const PHONE: &str = "+37120000678";
const TOKEN: &str = "test-sms-token";

async fn app(t: &support::TestDb, fake: &GatewayFake, max_segments: u32, out: &std::path::Path) -> App {
    let mut cfg = support::fixture_config(&t.url, out);
    cfg.channels.email = ChannelConfig::Disabled;
    cfg.channels.eaddress = ChannelConfig::Disabled;
    cfg.channels.sms = ChannelConfig::Disabled;
    let mut app = App::open(cfg, support::demo_clock()).await.unwrap();
    let g = GatewayConfig { base_url: fake.url.clone(), timeout_secs: 1, max_segments, ..GatewayConfig::default() };
    let mut channels = Channels::from_config(&app.cfg.channels, &app.cfg.links).unwrap();
    channels.sms = Some(Transport::Sms(SmsClient::new(&g, Some(TOKEN.into())).unwrap()));
    app.channels = Arc::new(channels);
    app
}

/// The mother with only a phone, and a birth: one SMS notice for her.
async fn one_notice(app: &App, phone: &str, lang: &str) -> String {
    load(
        app,
        &[
            support::contact("c1", MOTHER, None, Some(phone), lang),
            support::birth("b1", CHILD, Some(MOTHER), None, "2026-11-18"),
        ],
    )
    .await;
    app.db.list_notices(None, 10).await.unwrap()[0].notice_id.clone()
}

#[tokio::test]
async fn an_sms_carries_the_short_form_with_the_notice_id_as_idempotency_key() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Sms).await;
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, &fake, 3, out.path()).await;
        let id = one_notice(&app, PHONE, "lv").await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.dead, r.retried), (1, 0, 0), "{}", t.name);

        let seen = fake.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(seen[0].key.as_deref(), Some(id.as_str()));
        assert_eq!(seen[0].body["to"], PHONE);
        assert_eq!(seen[0].body["reference"], id.as_str());
        let text = seen[0].body["text"].as_str().unwrap();
        assert!(text.starts_with("Sveicam ar bērna piedzimšanu!"), "the template's sms form: {text}");
        assert!(!text.ends_with('…'), "fits in three segments: {text}");
        assert_eq!(segment(text).encoding, Encoding::Ucs2, "Latvian diacritics");

        let sent = app.db.list_notices(Some("sent"), 10).await.unwrap();
        assert_eq!((sent[0].channel.as_deref(), sent[0].provider_id.as_deref()), (Some("sms"), Some("sms-1")));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_text_over_the_segment_cap_is_shortened_at_a_word_with_an_ellipsis() {
    let t = support::sqlite().await;
    let fake = GatewayFake::start(Kind::Sms).await;
    let out = tempfile::tempdir().unwrap();
    let app = app(&t, &fake, 1, out.path()).await;
    one_notice(&app, PHONE, "ru").await;
    let r = app.delivery().run_until_idle().await.unwrap();
    assert_eq!(r.sent, 1);
    let text = fake.requests()[0].body["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("Поздравляем с рождением ребёнка!"), "{text}");
    assert!(text.ends_with('…'), "{text}");
    let s = segment(&text);
    assert_eq!((s.encoding, s.segments), (Encoding::Ucs2, 1), "{text}");
    let body = text.trim_end_matches('…');
    let full = "Поздравляем с рождением ребёнка! Пособие";
    assert!(full.starts_with(body) || body.starts_with(full), "cut at a word boundary: {text}");
    assert!(!body.ends_with(' '));
    t.cleanup().await;
}

#[tokio::test]
async fn an_unknown_number_is_dead_with_the_gateways_invalid_number() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Sms).await;
        fake.state.unknown_numbers.lock().unwrap().insert(PHONE.into());
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, &fake, 3, out.path()).await;
        one_notice(&app, PHONE, "lv").await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.dead, r.retried), (1, 0), "{}", t.name);
        let dead = app.db.list_notices(Some("dead"), 10).await.unwrap();
        assert!(dead[0].last_error.as_deref().unwrap().contains("invalid_number"), "{:?}", dead[0].last_error);
        assert_eq!(fake.requests().len(), 1, "not retried");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_landline_is_refused_without_asking_the_gateway() {
    let t = support::sqlite().await;
    let fake = GatewayFake::start(Kind::Sms).await;
    let out = tempfile::tempdir().unwrap();
    let app = app(&t, &fake, 3, out.path()).await;
    one_notice(&app, "+37167000000", "lv").await;
    let r = app.delivery().run_until_idle().await.unwrap();
    assert_eq!(r.dead, 1);
    let dead = app.db.list_notices(Some("dead"), 10).await.unwrap();
    let err = dead[0].last_error.as_deref().unwrap();
    assert!(err.contains("invalid_number") && !err.contains("67000000"), "{err}");
    assert!(fake.requests().is_empty());
    t.cleanup().await;
}

#[tokio::test]
async fn a_429_waits_for_retry_after_and_a_slow_answer_is_retried_with_the_same_key() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Sms).await;
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, &fake, 3, out.path()).await;
        one_notice(&app, PHONE, "en").await;
        fake.script(Script::Answer(429, json!({"error": "rate"}), Some("30".into())));
        fake.script(Script::Slow(Duration::from_millis(2500)));
        assert_eq!(app.delivery().run_round().await.unwrap().retried, 1, "{}", t.name);
        app.clock.advance(chrono::Duration::seconds(29));
        assert_eq!(app.delivery().run_round().await.unwrap().claimed, 0);
        app.clock.advance(chrono::Duration::seconds(2));
        let r = app.delivery().run_round().await.unwrap();
        assert_eq!(r.retried, 1, "timed out");
        let pending = app.db.list_notices(Some("pending"), 10).await.unwrap();
        assert!(pending[0].last_error.as_deref().unwrap().contains("no answer within"));
        app.clock.advance(chrono::Duration::seconds(1));
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!(r.sent, 1);
        assert_eq!((fake.requests().len(), fake.distinct_keys(), fake.accepted()), (3, 1, 1));
        let sent = app.db.list_notices(Some("sent"), 10).await.unwrap();
        assert_eq!(sent[0].provider_id.as_deref(), Some("sms-1"));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let t = support::sqlite().await;
    let fake = GatewayFake::start(Kind::Sms).await;
    let out = tempfile::tempdir().unwrap();
    let app = app(&t, &fake, 3, out.path()).await;
    one_notice(&app, PHONE, "lv").await;
    fake.state.drop_next.store(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(app.delivery().run_round().await.unwrap().retried, 1);
    let pending = app.db.list_notices(Some("pending"), 10).await.unwrap();
    let err = pending[0].last_error.as_deref().unwrap();
    assert!(err.contains("connection failed before an answer"), "{err}");
    assert!(!err.contains(PHONE));
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 1);
    assert_eq!(fake.accepted(), 1);
    t.cleanup().await;
}

#[tokio::test]
async fn a_persons_own_channel_order_and_quiet_hours_are_honoured() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Sms).await;
        let out = tempfile::tempdir().unwrap();
        let mut app = app(&t, &fake, 3, out.path()).await;
        // Email goes to a folder, so both channels reach her; the birth definition prefers email.
        let mut channels = Channels::from_config(&app.cfg.channels, &app.cfg.links).unwrap();
        channels.email = Some(Transport::Email(
            proactive::delivery::email::EmailChannel::file(&out.path().join("mail"), "test.invalid").unwrap(),
        ));
        channels.sms = Some(Transport::Sms(
            SmsClient::new(
                &GatewayConfig { base_url: fake.url.clone(), ..GatewayConfig::default() },
                Some(TOKEN.into()),
            )
            .unwrap(),
        ));
        app.channels = Arc::new(channels);
        app.cfg.delivery.quiet_hours = "none".into();
        let prefs = json!({
            "source": "api", "id": "p1", "type": "preferences.declared", "subject": MOTHER,
            "occurred_at": "2026-11-20T10:00:00+02:00",
            // The demo clock stands at 09:00 Riga time: inside her own quiet hours.
            "data": { "channels": ["sms", "email"], "quiet_hours": "08:00-10:00" }
        });
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("mother@example.lv"), Some(PHONE), "lv"),
                prefs,
                support::birth("b1", CHILD, Some(MOTHER), None, "2026-11-18"),
            ],
        )
        .await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.deferred), (0, 1), "{}: held for her quiet hours", t.name);
        let n = &app.db.list_notices(None, 10).await.unwrap()[0];
        assert!(n.last_error.as_deref().unwrap().contains("08:00–10:00"), "{}: {:?}", t.name, n.last_error);
        app.clock.advance(chrono::Duration::hours(1));
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!(r.sent, 1, "{}", t.name);
        assert_eq!(fake.requests().len(), 1, "{}: by SMS, her first choice", t.name);
        t.cleanup().await;
    }
}
