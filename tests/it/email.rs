//! Email against a real SMTP server over TCP (mailin-embedded), not a stub transport.

use proactive::app::App;

use super::support::load;
use super::support::{self, SmtpServer};

const MOTHER: &str = "150394-11002";
const FATHER: &str = "020792-11002";

async fn app_with_smtp(t: &support::TestDb, smtp: &SmtpServer, out: &std::path::Path) -> App {
    let mut cfg = support::fixture_config(&t.url, out);
    cfg.channels.email = support::smtp(smtp.addr);
    cfg.channels.eaddress = proactive::config::ChannelConfig::Disabled;
    cfg.channels.sms = proactive::config::ChannelConfig::Disabled;
    App::open(cfg, support::demo_clock()).await.unwrap()
}

#[tokio::test]
async fn each_parent_receives_one_email_with_text_html_and_a_derived_message_id() {
    for t in support::stores().await {
        let smtp = SmtpServer::start();
        let out = tempfile::tempdir().unwrap();
        let app = app_with_smtp(&t, &smtp, out.path()).await;
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                support::contact("c2", FATHER, Some("janis@example.com"), None, "en"),
                support::birth("b1", "321118-20001", Some(MOTHER), Some(FATHER), "2026-11-18"),
            ],
        )
        .await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.dead, r.retried), (2, 0, 0), "{}", t.name);

        let msgs = smtp.messages();
        assert_eq!(msgs.len(), 2, "{}", t.name);
        let notices = app.db.list_notices(Some("sent"), 10).await.unwrap();
        for n in &notices {
            let (addr, lang_word) = if n.recipient == MOTHER {
                ("anna@example.lv", "Sveicam")
            } else {
                ("janis@example.com", "Congratulations")
            };
            let m = msgs.iter().find(|m| m.to == vec![addr.to_string()]).unwrap_or_else(|| panic!("no mail to {addr}"));
            let parsed = mail_parser::MessageParser::default().parse(m.data.as_bytes()).expect("a parsable message");
            assert_eq!(parsed.message_id(), Some(format!("{}@test.proactive", n.notice_id).as_str()));
            assert!(parsed.subject().unwrap().contains("Anna Kalniņa"), "{:?}", parsed.subject());
            let text = parsed.body_text(0).expect("a text part");
            let html = parsed.body_html(0).expect("an HTML part");
            assert!(text.contains(lang_word), "{text}");
            assert!(html.contains("<strong>Anna Kalniņa</strong>"), "{html}");
            let draft = n.draft_ref.as_deref().unwrap();
            assert!(text.contains(draft), "the text links the prefilled draft {draft}");
            assert_eq!(n.channel.as_deref(), Some("email"));
        }
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_4xx_answer_retries_and_a_5xx_answer_dead_letters() {
    let t = support::sqlite().await;
    let smtp = SmtpServer::start();
    let out = tempfile::tempdir().unwrap();
    let app = app_with_smtp(&t, &smtp, out.path()).await;
    load(
        &app,
        &[
            support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
            support::birth("b1", "321118-20001", Some(MOTHER), None, "2026-11-18"),
        ],
    )
    .await;
    smtp.fail.lock().unwrap().push(451);
    let first = app.delivery().run_round().await.unwrap();
    assert_eq!((first.sent, first.retried), (0, 1));
    assert!(smtp.messages().is_empty());
    app.clock.advance(chrono::Duration::seconds(1));
    let second = app.delivery().run_until_idle().await.unwrap();
    assert_eq!(second.sent, 1, "the retry goes through");
    assert_eq!(smtp.messages().len(), 1);

    load(&app, &[support::birth("b2", "321119-20002", Some(MOTHER), None, "2026-11-19")]).await;
    smtp.fail.lock().unwrap().push(550);
    let r = app.delivery().run_until_idle().await.unwrap();
    assert_eq!(r.dead, 1);
    let dead = app.db.list_notices(Some("dead"), 10).await.unwrap();
    assert!(dead[0].last_error.as_deref().unwrap().contains("550"), "{:?}", dead[0].last_error);
    assert_eq!(smtp.messages().len(), 1, "nothing else was accepted");
    t.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_smtp_server_retries_and_loses_nothing() {
    let t = support::sqlite().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut cfg = support::fixture_config(&t.url, out.path());
    cfg.channels.email = support::smtp(closed);
    let app = App::open(cfg, support::demo_clock()).await.unwrap();
    load(
        &app,
        &[
            support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
            support::birth("b1", "321118-20001", Some(MOTHER), None, "2026-11-18"),
        ],
    )
    .await;
    let r = app.delivery().run_round().await.unwrap();
    assert_eq!(r.retried, 1);
    let pending = app.db.list_notices(Some("pending"), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].last_error.as_deref().unwrap().starts_with("SMTP"), "{:?}", pending[0].last_error);
    t.cleanup().await;
}

#[tokio::test]
async fn emails_carry_a_one_click_unsubscribe_link_the_engine_can_verify() {
    use proactive::delivery::unsubscribe::{DEV_KEY, token_notice_id, verify_unsubscribe_token};
    let t = support::sqlite().await;
    let smtp = SmtpServer::start();
    let out = tempfile::tempdir().unwrap();
    let mut cfg = support::fixture_config(&t.url, out.path());
    cfg.channels.email = support::smtp(smtp.addr);
    cfg.links.unsubscribe = "https://proactive.example.lv/unsubscribe/".into();
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
    let m = &smtp.messages()[0];
    let parsed = mail_parser::MessageParser::default().parse(m.data.as_bytes()).unwrap();
    let header = |name: &str| {
        parsed.headers().iter().find(|h| h.name().eq_ignore_ascii_case(name)).map(|h| {
            let raw = &m.data.as_bytes()[h.offset_start() as usize..h.offset_end() as usize];
            String::from_utf8_lossy(raw).split_whitespace().collect::<String>()
        })
    };
    assert_eq!(header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    let link = header("List-Unsubscribe").expect("a List-Unsubscribe header");
    let token = link
        .strip_prefix("<https://proactive.example.lv/unsubscribe/")
        .and_then(|l| l.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{link}"));
    let notice = &app.db.list_notices(Some("sent"), 10).await.unwrap()[0];
    assert_eq!(token_notice_id(token), Some(notice.notice_id.as_str()));
    assert!(verify_unsubscribe_token(DEV_KEY.as_bytes(), token, MOTHER, "birth"));
    assert!(!verify_unsubscribe_token(DEV_KEY.as_bytes(), token, FATHER, "birth"));
    assert!(!m.data.contains(MOTHER), "the personal code is not in the message");
    t.cleanup().await;
}

#[tokio::test]
async fn quiet_hours_hold_an_email_until_the_morning_without_counting_an_attempt() {
    for t in support::stores().await {
        let smtp = SmtpServer::start();
        let out = tempfile::tempdir().unwrap();
        let app = app_with_smtp(&t, &smtp, out.path()).await;
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                support::birth("b1", "321118-20001", Some(MOTHER), None, "2026-11-18"),
            ],
        )
        .await;
        app.clock.set(chrono::DateTime::parse_from_rfc3339("2026-11-23T22:30:00+02:00").unwrap().to_utc());
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.deferred, r.retried, r.dead), (0, 1, 0, 0), "{}", t.name);
        assert!(smtp.messages().is_empty());
        let held = app.db.list_notices(Some("pending"), 10).await.unwrap();
        assert_eq!(held[0].attempts, 0, "{}: a deferral is not an attempt", t.name);
        assert!(held[0].last_error.as_deref().unwrap().contains("until 2026-11-24 08:00"), "{:?}", held[0].last_error);
        app.clock.set(chrono::DateTime::parse_from_rfc3339("2026-11-24T07:59:00+02:00").unwrap().to_utc());
        assert_eq!(
            app.delivery().run_until_idle().await.unwrap().claimed,
            0,
            "{}: not before the window opens",
            t.name
        );
        app.clock.set(chrono::DateTime::parse_from_rfc3339("2026-11-24T08:00:00+02:00").unwrap().to_utc());
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 1, "{}", t.name);
        assert_eq!(smtp.messages().len(), 1);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn someone_no_digital_channel_reaches_gets_a_letter_task_not_silence() {
    let t = support::sqlite().await;
    let out = tempfile::tempdir().unwrap();
    let mut cfg = support::fixture_config(&t.url, out.path());
    cfg.channels.letter = proactive::config::ChannelConfig::File { dir: out.path().join("letters") };
    let app = App::open(cfg, support::demo_clock()).await.unwrap();
    let moved = serde_json::json!({
        "source": "pmlp", "id": "a1", "type": "address.declared", "subject": MOTHER,
        "occurred_at": "2026-11-01T10:00:00+02:00",
        "data": { "address": "Brīvības iela 1, Rīga", "municipality": "Rīga", "since": "2026-11-01" }
    });
    load(&app, &[moved, support::birth("b1", "321118-20001", Some(MOTHER), None, "2026-11-18")]).await;
    let r = app.delivery().run_until_idle().await.unwrap();
    assert_eq!((r.sent, r.suppressed), (1, 0));
    let sent = app.db.list_notices(Some("sent"), 10).await.unwrap();
    assert_eq!(sent[0].channel.as_deref(), Some("letter"));
    let file = std::fs::read_dir(out.path().join("letters")).unwrap().next().unwrap().unwrap().path();
    let task: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(task["task"], "letter");
    assert_eq!(task["postal_address"], "Brīvības iela 1, Rīga");
    assert_eq!(task["reference"], sent[0].notice_id.as_str());
    assert!(task["body_text"].as_str().unwrap().contains("Sveicam"), "the letter carries the text");
    t.cleanup().await;
}
