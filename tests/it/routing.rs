//! The routing decision end to end, as a table: who a birth's notice to the
//! mother finally reaches, on which channel, or why it does not go — for an
//! adult with an e-address, a minor under guardianship, a mandate with a
//! copy, an assisted person, a refusal, a death, a preference, and nobody
//! reachable. (Quiet hours, holidays and DST are tabled in
//! `consent::timing::tests`; companies in `chains.rs`.)

use proactive::config::ChannelConfig;
use serde_json::{Value, json};

use super::support::{self, load};

fn code(day: &str, serial: u16) -> String {
    let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    (serial..).find_map(|s| proactive::events::codes::valid_test_personal_code(day, s)).unwrap()
}

fn ev(id: &str, kind: &str, subject: &str, data: Value) -> Value {
    json!({"source": "portal", "id": id, "type": kind, "subject": subject,
           "occurred_at": "2026-11-19T10:00:00+02:00", "data": data})
}

/// One row: what is known before the birth and after it, and what must become of the notices.
struct Row {
    case: &'static str,
    /// Whom the birth names as mother.
    mother: String,
    before: Vec<Value>,
    after: Vec<Value>,
    /// (recipient, state, channel) of every notice, sorted.
    want: Vec<(String, &'static str, Option<&'static str>)>,
}

#[tokio::test]
async fn routing_table() {
    for t in support::stores().await {
        let out = tempfile::tempdir().unwrap();
        let mut cfg = support::fixture_config(&t.url, out.path());
        cfg.channels.letter = ChannelConfig::File { dir: out.path().join("letter") };
        cfg.delivery.quiet_hours = "none".into();
        let app = proactive::app::App::open(cfg, support::demo_clock()).await.unwrap();
        let mut rows = Vec::new();
        let mut n = 0u16;
        let mother = |n: &mut u16| {
            *n += 10;
            code("1990-05-05", *n)
        };
        let contact = |id: String, who: &str, email: bool, phone: bool| {
            support::contact(&id, who, email.then_some("x@example.lv"), phone.then_some("+37120000001"), "lv")
        };

        let m = mother(&mut n);
        rows.push(Row {
            case: "an adult with an active e-address",
            mother: m.clone(),
            before: vec![
                json!({"source": "eadrese", "id": format!("ea{m}"), "type": "eaddress.activated", "subject": m,
                                "occurred_at": "2026-11-01T10:00:00+02:00", "data": {}}),
            ],
            after: vec![],
            want: vec![(m.clone(), "sent", Some("eaddress"))],
        });
        let m = mother(&mut n);
        rows.push(Row {
            case: "no e-address, an email",
            mother: m.clone(),
            before: vec![contact(format!("c{m}"), &m, true, false)],
            after: vec![],
            want: vec![(m.clone(), "sent", Some("email"))],
        });
        let minor = code("2010-03-01", 300);
        let guardian = code("1970-01-01", 300);
        rows.push(Row {
            case: "a minor under guardianship: the guardian",
            mother: minor.clone(),
            before: vec![
                support::birth(&format!("own{minor}"), &minor, None, None, "2010-03-01"),
                ev(&format!("g{minor}"), "guardianship.established", &minor, json!({"guardian": guardian})),
                contact(format!("c{guardian}"), &guardian, true, false),
                contact(format!("c{minor}"), &minor, true, false),
            ],
            after: vec![],
            want: vec![(guardian.clone(), "sent", Some("email"))],
        });
        let m = mother(&mut n);
        let rep = code("1960-02-02", 400);
        rows.push(Row {
            case: "a mandate for the purpose, with a copy",
            mother: m.clone(),
            before: vec![
                ev(
                    &format!("md{m}"),
                    "mandate.granted",
                    &m,
                    json!({"representative": rep, "purposes": ["birth"], "copy": true}),
                ),
                contact(format!("c{m}"), &m, true, false),
                contact(format!("c{rep}"), &rep, false, true),
            ],
            after: vec![],
            want: vec![(m.clone(), "sent", Some("email")), (rep.clone(), "sent", Some("sms"))],
        });
        let m = mother(&mut n);
        rows.push(Row {
            case: "assisted without a representative: a letter",
            mother: m.clone(),
            before: vec![
                ev(&format!("as{m}"), "assistance.declared", &m, json!({"representative": null})),
                contact(format!("c{m}"), &m, true, false),
                json!({"source": "pmlp", "id": format!("ad{m}"), "type": "address.declared", "subject": m,
                       "occurred_at": "2026-11-01T10:00:00+02:00",
                       "data": {"address": "Brīvības iela 1, Rīga", "municipality": "Rīga", "since": "2020-01-01"}}),
            ],
            after: vec![],
            want: vec![(m.clone(), "sent", Some("letter"))],
        });
        let m = mother(&mut n);
        rows.push(Row {
            case: "refused the purpose: suppressed",
            mother: m.clone(),
            before: vec![
                contact(format!("c{m}"), &m, true, true),
                ev(
                    &format!("r{m}"),
                    "consent.refused",
                    &m,
                    json!({"purpose": "birth", "channel": null, "text_version": "v1"}),
                ),
            ],
            after: vec![],
            want: vec![(m.clone(), "suppressed", None)],
        });
        let m = mother(&mut n);
        rows.push(Row {
            case: "died after the birth: withdrawn",
            mother: m.clone(),
            before: vec![contact(format!("c{m}"), &m, true, false)],
            after: vec![json!({"source": "pmlp", "id": format!("d{m}"), "type": "death.registered", "subject": m,
                               "occurred_at": "2026-11-21T10:00:00+02:00", "data": {"death_date": "2026-11-21"}})],
            want: vec![(m.clone(), "cancelled", None)],
        });
        let m = mother(&mut n);
        rows.push(Row {
            case: "prefers SMS over the situation's email",
            mother: m.clone(),
            before: vec![
                contact(format!("c{m}"), &m, true, true),
                ev(&format!("p{m}"), "preferences.declared", &m, json!({"channels": ["sms"], "quiet_hours": null})),
            ],
            after: vec![],
            want: vec![(m.clone(), "sent", Some("sms"))],
        });
        let m = mother(&mut n);
        rows.push(Row {
            case: "nobody reachable: suppressed with the reasons",
            mother: m.clone(),
            before: vec![],
            after: vec![],
            want: vec![(m.clone(), "suppressed", None)],
        });

        for (i, row) in rows.iter().enumerate() {
            let mother = row.mother.clone();
            let child = code("2026-11-18", 500 + i as u16 * 10);
            load(&app, &row.before).await;
            load(&app, &[support::birth(&format!("b{i}"), &child, Some(&mother), None, "2026-11-18")]).await;
            load(&app, &row.after).await;
        }
        app.delivery().run_until_idle().await.unwrap();
        let notices = app.db.list_notices(None, 100).await.unwrap();
        for row in &rows {
            let people: Vec<&String> = row.want.iter().map(|w| &w.0).collect();
            let mut got: Vec<(String, &str, Option<&str>)> = notices
                .iter()
                .filter(|n| people.contains(&&n.recipient))
                .map(|n| {
                    let channel = (n.state == "sent").then_some(n.channel.as_deref()).flatten();
                    (n.recipient.clone(), n.state.as_str(), channel)
                })
                .collect();
            got.sort();
            let mut want = row.want.clone();
            want.sort();
            assert_eq!(got, want, "{}: {}", t.name, row.case);
        }
        t.cleanup().await;
    }
}
