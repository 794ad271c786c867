//! Pacing in virtual time: a person's notices due together go as one
//! digest (fixed at its claim, so a retry carries the same id); a legal
//! notice is never digested; a purpose's frequency cap defers what is over
//! it; and a bulk wave is spread over the sending window.

use proactive::app::App;
use proactive::config::ChannelConfig;

use super::support::{self, SmtpServer, load};

const MOTHER: &str = "150394-11002";
const BORN: &str = "2026-11-20";

/// A copy of the fixture definitions with `edit` applied to birth.toml.
fn definitions(dir: &std::path::Path, edit: impl Fn(String) -> String) -> (std::path::PathBuf, std::path::PathBuf) {
    let le = dir.join("life-events");
    support::copy_tree(&support::root().join("tests/fixtures/life-events"), &le);
    let toml = le.join("birth.toml");
    std::fs::write(&toml, edit(std::fs::read_to_string(&toml).unwrap())).unwrap();
    (le, support::root().join("tests/fixtures/rules"))
}

async fn app(t: &support::TestDb, smtp: &SmtpServer, out: &std::path::Path, edit: impl Fn(String) -> String) -> App {
    let mut cfg = support::fixture_config(&t.url, out);
    (cfg.paths.life_events, cfg.paths.rules) = definitions(out, edit);
    cfg.channels.email = support::smtp(smtp.addr);
    cfg.channels.eaddress = ChannelConfig::Disabled;
    cfg.channels.sms = ChannelConfig::Disabled;
    cfg.delivery.quiet_hours = "none".into();
    App::open(cfg, support::demo_clock()).await.unwrap()
}

/// `n` children of the mother (who has only an email): `n` notices to her.
fn births(n: usize, from: u16) -> Vec<serde_json::Value> {
    let day = chrono::NaiveDate::parse_from_str(BORN, "%Y-%m-%d").unwrap();
    let mut out = vec![support::contact("c1", MOTHER, Some("mother@example.lv"), None, "en")];
    let mut serial = from;
    while out.len() <= n {
        serial += 1;
        if let Some(child) = proactive::events::codes::valid_test_personal_code(day, serial) {
            out.push(support::birth(&format!("b{serial}"), &child, Some(MOTHER), None, BORN));
        }
    }
    out
}

fn message_id(raw: &str) -> String {
    mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap().message_id().unwrap().to_string()
}

#[tokio::test]
async fn a_persons_notices_due_together_go_as_one_digest_whose_id_survives_a_retry() {
    for t in support::stores().await {
        let smtp = SmtpServer::start();
        let out = tempfile::tempdir().unwrap();
        let mut app = app(&t, &smtp, out.path(), |s| s).await;
        app.cfg.delivery.backoff_base_ms = 1;
        app.cfg.delivery.backoff_max_ms = 1;
        load(&app, &births(2, 0)).await;
        // The first try meets a 451: both members wait for the retry together.
        smtp.fail.lock().unwrap().push(451);
        let r = app.delivery().run_round().await.unwrap();
        assert_eq!((r.claimed, r.retried, r.sent), (2, 2, 0), "{}", t.name);
        let first = app.db.list_notices(None, 10).await.unwrap();
        let digest = first[0].digest_id.clone().expect("fixed at the claim");
        assert!(first.iter().all(|n| n.digest_id.as_deref() == Some(digest.as_str())), "{}", t.name);
        // A third notice arrives meanwhile; it does not join the fixed digest.
        load(&app, &births(1, 50)[1..]).await;
        app.clock.advance(chrono::Duration::seconds(1));
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!(r.sent, 3, "{}", t.name);
        let mails = smtp.messages();
        assert_eq!(mails.len(), 2, "{}: the digest once, the newcomer alone", t.name);
        let ids: Vec<String> = mails.iter().map(|m| message_id(&m.data)).collect();
        assert!(ids.iter().any(|m| m.starts_with(&digest)), "{}: the retry kept the digest's id: {ids:?}", t.name);
        let digest_mail = mails.iter().find(|m| message_id(&m.data).starts_with(&digest)).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(digest_mail.data.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some("2 notices for you"), "{}: in her language", t.name);
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains("1. ") && body.contains("2. "), "{}: both listed: {body}", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_notice_with_legal_effect_is_never_digested() {
    for t in support::stores().await {
        let smtp = SmtpServer::start();
        let out = tempfile::tempdir().unwrap();
        let legal = |s: String| s.replace("rule = \"birth.rhai\"\n", "rule = \"birth.rhai\"\nlegal_effect = true\n");
        let app = app(&t, &smtp, out.path(), legal).await;
        load(&app, &births(2, 0)).await;
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 2, "{}", t.name);
        assert_eq!(smtp.messages().len(), 2, "{}: two legal notices, two messages", t.name);
        assert!(app.db.list_notices(None, 10).await.unwrap().iter().all(|n| n.digest_id.is_none()));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_notice_over_its_purposes_cap_waits_for_the_next_allowed_time() {
    for t in support::stores().await {
        let smtp = SmtpServer::start();
        let out = tempfile::tempdir().unwrap();
        let capped = |s: String| s.replace("mode = \"opt-out\"\n", "mode = \"opt-out\"\ncap = \"1/7d\"\n");
        let mut app = app(&t, &smtp, out.path(), capped).await;
        app.cfg.delivery.digest = false;
        load(&app, &births(2, 0)).await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.deferred), (1, 1), "{}", t.name);
        let waiting: Vec<_> =
            app.db.list_notices(Some("pending"), 10).await.unwrap().into_iter().map(|n| n.last_error).collect();
        let why = waiting[0].clone().unwrap_or_default();
        assert!(why.contains("frequency cap of \"birth\" (1 per 7 days)"), "{}: {why}", t.name);
        app.clock.advance(chrono::Duration::days(6));
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 0, "{}: not yet", t.name);
        app.clock.advance(chrono::Duration::days(1));
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 1, "{}: a week after the first", t.name);
        assert_eq!(smtp.messages().len(), 2);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_bulk_wave_is_spread_over_the_sending_window() {
    for t in support::stores().await {
        let smtp = SmtpServer::start();
        let out = tempfile::tempdir().unwrap();
        let mut app = app(&t, &smtp, out.path(), |s| s).await;
        app.cfg.delivery.digest = false;
        // 600 an hour is one every 6 s; the clock stands at 09:00, and the window closes at 09:01 for an hour.
        app.cfg.delivery.stagger_per_hour = 600;
        app.cfg.delivery.quiet_hours = "09:01-10:00".into();
        load(&app, &births(30, 0)).await;
        let delivery = app.delivery();
        assert_eq!(delivery.stagger().await.unwrap(), 30, "{}: thirty is a wave (more than ten a minute)", t.name);
        let mut slots: Vec<i64> = Vec::new();
        for n in app.db.list_notices(Some("pending"), 100).await.unwrap() {
            slots.push(app.db.notice_available_at(&n.notice_id).await.unwrap().unwrap());
        }
        slots.sort();
        let start = app.clock.now_ms();
        let offsets: Vec<i64> = slots.iter().map(|s| (s - start) / 1000).collect();
        assert_eq!(&offsets[..10], &[0, 6, 12, 18, 24, 30, 36, 42, 48, 54], "{}", t.name);
        assert_eq!(offsets[10], 3600, "{}: the eleventh waits for the window to open at 10:00", t.name);
        assert_eq!(offsets[29], 3600 + 19 * 6, "{}", t.name);
        assert_eq!(delivery.run_until_idle().await.unwrap().sent, 1, "{}: only the first slot is due", t.name);
        app.clock.advance(chrono::Duration::seconds(55));
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 9, "{}", t.name);
        // 10:00:55: the window is open again and ten more slots have come.
        app.clock.advance(chrono::Duration::hours(1));
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 10, "{}", t.name);
        app.clock.advance(chrono::Duration::minutes(1));
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 10, "{}", t.name);
        assert_eq!(smtp.messages().len(), 30);
        assert_eq!(app.delivery().stagger().await.unwrap(), 0, "{}: nothing due, nothing moved", t.name);
        // Five more at 10:01:55 are no wave, but the last one's slots run to
        // 10:02:00: they queue behind it rather than jump ahead.
        load(&app, &births(5, 100)[1..]).await;
        assert_eq!(app.delivery().stagger().await.unwrap(), 5, "{}", t.name);
        let mut later = Vec::new();
        for n in app.db.list_notices(Some("pending"), 100).await.unwrap() {
            later.push((app.db.notice_available_at(&n.notice_id).await.unwrap().unwrap() - start) / 1000);
        }
        later.sort();
        assert_eq!(later, [3720, 3726, 3732, 3738, 3744], "{}", t.name);
        t.cleanup().await;
    }
}
