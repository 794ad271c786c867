//! Explanation and audit: what a clerk reads out about a notice, the
//! hash-chained audit log and its verification against edits, deletions and
//! reorderings made directly in the store, the export for a data-protection
//! officer, a staff action, and retention that erases personal data while
//! the chains stay verifiable.

use std::process::Command;

use proactive::app::App;
use proactive::audit::Problem;
use proactive::audit::commands::{cancel_case, verify};
use proactive::audit::explain::{explain_notice, explain_subject};
use proactive::audit::export::{ExportFormat, export};
use proactive::config::ChannelConfig;
use proactive::store::Db;

use super::support::{self, load};

const MOTHER: &str = "150394-11002";
const FATHER: &str = "020792-11002";
const CHILD: &str = "321118-20001";
const FIXTURE_BASIS: &str = "Valsts sociālo pabalstu likums, 8. pants (bērna piedzimšanas pabalsts)";

async fn app(t: &support::TestDb, out: &std::path::Path) -> App {
    let mut cfg = support::fixture_config(&t.url, out);
    cfg.channels.eaddress = ChannelConfig::Disabled;
    App::open(cfg, support::demo_clock()).await.unwrap()
}

fn refusal(id: &str, who: &str, day: &str) -> serde_json::Value {
    serde_json::json!({
        "source": "portal", "id": id, "type": "consent.refused", "subject": who,
        "occurred_at": format!("{day}T10:00:00+02:00"),
        "data": { "purpose": "birth", "channel": null, "text_version": "v3" }
    })
}

/// Runs a statement on either store (the tests' tampering).
async fn exec(db: &Db, sql: &str) {
    match db {
        Db::Sqlite(p, _) => sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(p).await.map(|_| ()),
        Db::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(p).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// One text column of the first row a query returns.
async fn text(db: &Db, sql: &str) -> String {
    use sqlx::Row;
    match db {
        Db::Sqlite(p, _) => sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(p).await.unwrap().get(0),
        Db::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(p).await.unwrap().get(0),
    }
}

#[tokio::test]
async fn a_sent_notice_is_explained_with_its_rule_event_legal_basis_and_the_channels_tried() {
    for t in support::stores().await {
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, out.path()).await;
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                support::birth("b1", CHILD, Some(MOTHER), None, "2026-11-18"),
            ],
        )
        .await;
        assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 1, "{}", t.name);
        let id = app.db.list_notices(Some("sent"), 10).await.unwrap()[0].notice_id.clone();

        let e = explain_notice(&app.db, Some(&app.rules), &id, None).await.unwrap().expect("the notice is known");
        let text = e.text();
        assert_eq!(e.headline, "Sent on 2026-11-23 09:00 by email to ******-***02.", "{}: {text}", t.name);
        for want in [
            "the rule `birth` (step childbirth_benefit) of the life situation \"Birth of a child\" (birth) version 1",
            "on event pmlp/b1 (birth.registered, 2026-11-18)",
            "Recipient: ******-***02, to whom the rule addressed it.",
            &format!("legal basis: {FIXTURE_BASIS}"),
            "Consent: the recipient has no consent record for \"birth\"; the purpose is opt-out",
            "2026-11-23 09:00: sent by email. Channels considered: eaddress skipped (not configured); email taken.",
        ] {
            assert!(text.contains(want), "{}: missing {want:?} in\n{text}", t.name);
        }
        assert!(!text.contains(MOTHER), "{}: codes are masked: {text}", t.name);
        assert_eq!(
            (e.details["via"].as_str(), e.details["event"]["external_id"].as_str()),
            (Some("direct"), Some("b1"))
        );

        // Asked about the mother, the clerk sees her code; the notice is found through her case's child too.
        let s = explain_subject(&app.db, Some(&app.rules), &app.audit, MOTHER).await.unwrap();
        assert_eq!(s.notices.len(), 1, "{}", t.name);
        assert!(s.text().contains(&format!("Recipient: {MOTHER}, to whom")), "{}", s.text());
        let s = explain_subject(&app.db, Some(&app.rules), &app.audit, CHILD).await.unwrap();
        assert_eq!(s.notices.len(), 1, "{}: the notice about the child's birth", t.name);
        assert!(!s.text().contains(MOTHER), "{}", s.text());
        t.cleanup().await;
    }
}

/// A life situation whose rule addresses the document's holder, a minor here.
const DOCUMENTS: &str = r#"
id = "documents"
version = 4
status = "active"
valid_from = "2024-01-01"
name = { lv = "Dokuments izsniegts", en = "Document issued" }
description = "The holder hears that a document was issued."
owner = "Pilsonības un migrācijas lietu pārvalde (PMLP)"
legal_basis = "Personu apliecinošu dokumentu likums"
services = []
channels = ["eaddress", "email", "sms"]
[[purposes]]
id = "documents"
mode = "opt-out"
description = "Telling holders about their documents."
[trigger]
events = ["document.issued"]
fact = "{data.document}:{data.number}"
[[steps]]
id = "issued"
rule = "issued.rhai"
[templates.issued.lv]
subject = "Dokuments izsniegts"
text = "Dokuments {{ number }} ir izsniegts."
"#;

#[tokio::test]
async fn a_minors_notice_routed_to_the_parents_is_explained_as_such() {
    const MINOR: &str = "150614-20001";
    for t in support::stores().await {
        let out = tempfile::tempdir().unwrap();
        let defs = out.path().join("defs");
        support::copy_tree(&support::root().join("tests/fixtures"), &defs);
        std::fs::write(defs.join("life-events/documents.toml"), DOCUMENTS).unwrap();
        std::fs::write(
            defs.join("rules/issued.rhai"),
            r#"[notice(event.subject, "issued", #{ number: event.data.number })]"#,
        )
        .unwrap();
        let mut cfg = support::fixture_config(&t.url, out.path());
        cfg.paths.life_events = defs.join("life-events");
        cfg.paths.rules = defs.join("rules");
        cfg.channels.eaddress = ChannelConfig::Disabled;
        let app = App::open(cfg, support::demo_clock()).await.unwrap();
        let issued = serde_json::json!({
            "source": "pmlp", "id": "d1", "type": "document.issued", "subject": MINOR,
            "occurred_at": "2026-11-20T10:00:00+02:00",
            "data": { "document": "passport", "number": "LV1234567", "issued": "2026-11-20", "expires": "2031-11-20" }
        });
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                // Twelve years ago: the profile learns the parents, no birth case starts.
                support::birth("b0", MINOR, Some(MOTHER), Some(FATHER), "2014-06-15"),
                issued,
            ],
        )
        .await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.suppressed), (1, 1), "{}: the father has no contact", t.name);
        let sent = app.db.list_notices(Some("sent"), 10).await.unwrap();
        assert_eq!(sent[0].recipient, MOTHER, "{}", t.name);

        let e = explain_notice(&app.db, Some(&app.rules), &sent[0].notice_id, None).await.unwrap().unwrap();
        let text = e.text();
        assert_eq!(e.headline, "Sent on 2026-11-23 09:00 by email to the child's mother (******-***02).", "{text}");
        for want in [
            "the rule `issued` (step issued) of the life situation \"Document issued\" (documents) version 4",
            "on event pmlp/d1 (document.issued, 2026-11-20)",
            "it is about ******-***01, a minor, so it went to the child's mother ******-***02 instead",
            "legal basis: Personu apliecinošu dokumentu likums",
        ] {
            assert!(text.contains(want), "{}: missing {want:?} in\n{text}", t.name);
        }
        // The father's copy went nowhere, and says why.
        let other = app.db.list_notices(Some("suppressed"), 10).await.unwrap();
        let e = explain_notice(&app.db, Some(&app.rules), &other[0].notice_id, None).await.unwrap().unwrap();
        assert!(
            e.headline.starts_with("Not sent (decided on 2026-11-23 09:00): no channel reaches the recipient"),
            "{}",
            e.headline
        );
        assert!(e.text().contains("so it went to the child's father ******-***02 instead"), "{}", e.text());

        // Asked about the child, the clerk sees the child's code and not the parents'.
        let s = explain_subject(&app.db, Some(&app.rules), &app.audit, MINOR).await.unwrap();
        assert_eq!(s.notices.len(), 2, "{}", t.name);
        let said = s.text();
        assert!(said.contains(&format!("it is about {MINOR}, a minor")), "{said}");
        assert!(!said.contains(MOTHER) && !said.contains(FATHER), "{said}");
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_notice_suppressed_by_a_refusal_names_the_consent_record_and_the_refusal_is_audited() {
    for t in support::stores().await {
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, out.path()).await;
        // The refusal is committed before the birth is processed: one in the same
        // batch would withdraw the new notice at once rather than let routing suppress it.
        load(
            &app,
            &[support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"), refusal("r1", MOTHER, "2026-11-17")],
        )
        .await;
        load(&app, &[support::birth("b1", CHILD, Some(MOTHER), None, "2026-11-18")]).await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.suppressed), (0, 1), "{}", t.name);
        let id = app.db.list_notices(Some("suppressed"), 10).await.unwrap()[0].notice_id.clone();
        let e = explain_notice(&app.db, Some(&app.rules), &id, None).await.unwrap().unwrap();
        let text = e.text();
        assert!(
            e.headline.starts_with(
                "Not sent (decided on 2026-11-23 09:00): the recipient's consent allows no channel for \"birth\""
            ),
            "{}: {}",
            t.name,
            e.headline
        );
        assert!(
            text.contains(
                "Consent records consulted for \"birth\": refused on every channel on 2026-11-17 (portal, text version v3)."
            ),
            "{}: {text}",
            t.name
        );
        assert!(text.contains("email skipped (the person refused \"birth\" on 2026-11-17 (portal))"), "{text}");

        let s = explain_subject(&app.db, Some(&app.rules), &app.audit, MOTHER).await.unwrap();
        assert_eq!(s.notices.len(), 1, "{}", t.name);
        assert!(
            s.other.iter().any(|l| l
                .contains("refused consent for \"birth\" on every channel (text version v3, recorded from portal/r1)")),
            "{}: {:?}",
            t.name,
            s.other
        );
        t.cleanup().await;
    }
}

/// A store with one engine batch of four notices (one chain, records 1–4)
/// and their deliveries (other chains); returns the engine's chain.
async fn four_notices(t: &support::TestDb, out: &std::path::Path) -> (App, String) {
    let app = app(t, out).await;
    load(
        &app,
        &[
            support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
            support::contact("c2", FATHER, Some("janis@example.com"), None, "en"),
            support::birth("b1", CHILD, Some(MOTHER), Some(FATHER), "2026-11-18"),
            support::birth("b2", "321119-20002", Some(MOTHER), Some(FATHER), "2026-11-19"),
        ],
    )
    .await;
    assert_eq!(app.delivery().run_until_idle().await.unwrap().sent, 4);
    let chain = text(&app.db, "SELECT chain FROM audit_log WHERE kind = 'notice.created' AND seq = 4").await;
    (app, chain)
}

/// What is done to the store, the record expected to be named (-1: the
/// chain's last), and what it must be said to be.
type Tamper = (&'static str, &'static str, i64, fn(&Problem) -> bool);

#[tokio::test]
async fn audit_verify_names_an_edited_a_deleted_and_a_reordered_record() {
    for t in support::stores().await {
        let name = t.name;
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = four_notices(&t, dir.path()).await;
        let r = verify(&app.db).await.unwrap();
        assert!(r.ok(), "{name}: {:?}", r.breaks);
        assert!(r.chains >= 1 && r.records >= 8, "{name}: four notices made and four sent: {r:?}");
        t.cleanup().await;
    }
    let tampers: [Tamper; 5] = [
        (
            "edited",
            "UPDATE audit_log SET record = replace(record, '\"state\":\"pending\"', '\"state\":\"shadow\"') WHERE chain = '{c}' AND seq = 2",
            2,
            |p| matches!(p, Problem::Edited { .. }),
        ),
        (
            "column edited",
            "UPDATE audit_log SET purpose = 'death' WHERE chain = '{c}' AND seq = 3",
            3,
            |p| matches!(p, Problem::Edited { detail } if detail.contains("column purpose")),
        ),
        ("deleted", "DELETE FROM audit_log WHERE chain = '{c}' AND seq = 2", 2, |p| {
            *p == Problem::Deleted { from: 2, to: 2 }
        }),
        // -1: the chain's last record, whose loss only its head shows.
        (
            "deleted last",
            "DELETE FROM audit_log WHERE chain = '{c}' AND seq = {last}",
            -1,
            |p| matches!(p, Problem::Deleted { from, to } if from == to),
        ),
        (
            "reordered",
            "UPDATE audit_log SET seq = -1 WHERE chain = '{c}' AND seq = 2; \
             UPDATE audit_log SET seq = 2 WHERE chain = '{c}' AND seq = 3; \
             UPDATE audit_log SET seq = 3 WHERE chain = '{c}' AND seq = -1",
            2,
            |p| matches!(p, Problem::Reordered { .. }),
        ),
    ];
    for (what, sql, seq, is) in tampers {
        for t in support::stores().await {
            let dir = tempfile::tempdir().unwrap();
            let (app, chain) = four_notices(&t, dir.path()).await;
            let last: i64 =
                text(&app.db, &format!("SELECT CAST(MAX(seq) AS TEXT) FROM audit_log WHERE chain = '{chain}'"))
                    .await
                    .parse()
                    .unwrap();
            let seq = if seq == -1 { last } else { seq };
            for stmt in sql.split("; ") {
                exec(&app.db, &stmt.replace("{c}", &chain).replace("{last}", &last.to_string())).await;
            }
            let r = verify(&app.db).await.unwrap();
            assert_eq!(r.breaks.len(), 1, "{} {what}: only the tampered chain breaks: {:?}", t.name, r.breaks);
            let b = &r.breaks[0];
            assert_eq!((b.chain.as_str(), b.seq), (chain.as_str(), seq), "{} {what}: {b:?}", t.name);
            assert!(is(&b.problem), "{} {what}: {:?}", t.name, b.problem);
            t.cleanup().await;
        }
    }
}

#[tokio::test]
async fn the_export_for_a_purpose_lists_processing_by_pseudonym_with_its_legal_basis() {
    for t in support::stores().await {
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, out.path()).await;
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                support::birth("b1", CHILD, Some(MOTHER), Some(FATHER), "2026-11-18"),
            ],
        )
        .await;
        let r = app.delivery().run_until_idle().await.unwrap();
        assert_eq!((r.sent, r.suppressed), (1, 1), "{}: the father has no contact", t.name);
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut buf = Vec::new();
        let n = export(
            &app.db,
            Some(&app.rules),
            "birth",
            day("2026-11-01"),
            day("2026-11-30"),
            ExportFormat::Jsonl,
            &mut buf,
        )
        .await
        .unwrap();
        let body = String::from_utf8(buf).unwrap();
        let rows: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(n, 4, "{}: two notices made, one sent, one suppressed:\n{body}", t.name);
        let mut kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
        kinds.sort();
        assert_eq!(kinds, ["delivery.sent", "delivery.suppressed", "notice.created", "notice.created"], "{}", t.name);
        for code in [MOTHER, FATHER, CHILD] {
            assert!(!body.contains(code), "{}: {code} appears in the export", t.name);
        }
        let mother = app.audit.pseudonym(MOTHER);
        let sent = rows.iter().find(|r| r["kind"] == "delivery.sent").unwrap();
        assert_eq!(sent["subject"], mother.as_str());
        assert_eq!((sent["channel"].as_str(), sent["outcome"].as_str()), (Some("email"), Some("sent")));
        assert!(rows.iter().all(|r| r["legal_basis"] == FIXTURE_BASIS && r["purpose"] == "birth"), "{body}");
        assert!(rows.iter().all(|r| r["owner"].as_str().unwrap().contains("VSAA")), "{body}");
        let suppressed = rows.iter().find(|r| r["kind"] == "delivery.suppressed").unwrap();
        assert_eq!(suppressed["subject"], app.audit.pseudonym(FATHER).as_str());
        assert!(suppressed["outcome"].as_str().unwrap().contains("no channel reaches the recipient"), "{body}");

        let mut csv = Vec::new();
        export(&app.db, Some(&app.rules), "birth", day("2026-11-23"), day("2026-11-23"), ExportFormat::Csv, &mut csv)
            .await
            .unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(csv.starts_with("at,kind,what,subject,purpose,life_situation,version,legal_basis"), "{csv}");
        assert_eq!(csv.lines().count(), 5, "{}: a header and four rows:\n{csv}", t.name);

        for (purpose, from, to) in [("death", "2026-11-01", "2026-11-30"), ("birth", "2026-11-24", "2026-12-31")] {
            let mut none = Vec::new();
            let n = export(&app.db, Some(&app.rules), purpose, day(from), day(to), ExportFormat::Jsonl, &mut none)
                .await
                .unwrap();
            assert_eq!((n, none.len()), (0, 0), "{}: {purpose} {from}..{to}", t.name);
        }
        t.cleanup().await;
    }
}

#[tokio::test]
async fn a_case_cancelled_by_staff_withdraws_its_notices_and_timers_and_is_audited_with_the_reason() {
    for t in support::stores().await {
        let out = tempfile::tempdir().unwrap();
        // The shipped birth chain: steps a week, a month and two months later.
        let mut cfg = support::config(&t.url, out.path());
        cfg.channels.eaddress = ChannelConfig::Disabled;
        let app = App::open(cfg, support::demo_clock()).await.unwrap();
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                support::birth("b1", CHILD, Some(MOTHER), None, "2026-11-18"),
            ],
        )
        .await;
        let case =
            app.db.cases_of_subject(CHILD).await.unwrap().into_iter().find(|c| c.life_situation == "birth").unwrap();
        let queued = app.db.notices_of(Some(&case.id)).await.unwrap().len();
        assert!(queued > 0, "{}", t.name);
        let reason = "the family moved abroad (phoned in by 150394-11002)";
        let c = cancel_case(&app.db, &app.audit, &case.id, reason, "clerk.anna", app.clock.now_ms()).await.unwrap();
        assert_eq!(c.notices, queued, "{}", t.name);
        assert!(c.steps >= 3, "{}: the week, month and two-month steps: {c:?}", t.name);

        let after = app.db.load_cases(std::slice::from_ref(&case.id)).await.unwrap().pop().unwrap();
        assert_eq!(after.state, "cancelled", "{}", t.name);
        assert_eq!(after.next_due(), None, "{}: no timer left", t.name);
        for n in app.db.notices_of(Some(&case.id)).await.unwrap() {
            assert_eq!(n.state, "cancelled", "{}", t.name);
            assert!(n.last_error.as_deref().unwrap().contains("cancelled by clerk.anna: the family moved abroad"));
        }
        assert_eq!(app.delivery().run_until_idle().await.unwrap().claimed, 0, "{}", t.name);
        app.clock.set(chrono::DateTime::parse_from_rfc3339("2027-02-01T10:00:00+02:00").unwrap().to_utc());
        let r = app.engine().run_all_due(&|| false).await.unwrap();
        assert_eq!(r.notices, 0, "{}: the cancelled timers do not fire", t.name);

        let s = explain_subject(&app.db, Some(&app.rules), &app.audit, CHILD).await.unwrap();
        let staff = s.other.iter().find(|l| l.contains("clerk.anna cancelled the case")).expect("the staff action");
        assert!(staff.contains("phoned in by ******-***02"), "{}: the code in the reason is masked: {staff}", t.name);
        let e = &s.notices[0];
        assert!(
            e.headline.starts_with("Withdrawn before it was sent on 2026-11-23 09:00: cancelled by clerk.anna"),
            "{}",
            e.headline
        );
        assert!(verify(&app.db).await.unwrap().ok(), "{}", t.name);
        let again = cancel_case(&app.db, &app.audit, &case.id, reason, "clerk.anna", app.clock.now_ms()).await;
        assert!(again.unwrap_err().to_string().contains("is cancelled already"), "{}", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn retention_erases_personal_data_past_the_purposes_period_and_the_chains_still_verify() {
    for t in support::stores().await {
        let out = tempfile::tempdir().unwrap();
        let app = app(&t, out.path()).await;
        load(
            &app,
            &[
                support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
                support::birth("b1", CHILD, Some(MOTHER), None, "2026-11-18"),
            ],
        )
        .await;
        app.delivery().run_until_idle().await.unwrap();
        // A second birth a year later is still within its two years when the first is past them.
        app.clock.set(chrono::DateTime::parse_from_rfc3339("2027-11-23T09:00:00+02:00").unwrap().to_utc());
        load(
            &app,
            &[
                support::contact("c2", "200190-11008", Some("olga@example.lv"), None, "ru"),
                support::birth("b2", "321119-20002", Some("200190-11008"), None, "2027-11-20"),
            ],
        )
        .await;
        app.delivery().run_until_idle().await.unwrap();
        let sent = app.db.list_notices(Some("sent"), 10).await.unwrap();
        let (old, new) = (sent[0].notice_id.clone(), sent[1].notice_id.clone());
        assert_eq!(sent[0].recipient, MOTHER);

        let now = chrono::DateTime::parse_from_rfc3339("2028-11-24T09:00:00+02:00").unwrap().timestamp_millis();
        let dry = proactive::audit::retention::run(&app.db, &app.rules, &app.audit, now, true).await.unwrap();
        assert_eq!(dry["birth"].notices, 1, "{}", t.name);
        let data = format!("SELECT data FROM notices WHERE id = '{old}'");
        assert!(text(&app.db, &data).await.contains("Anna"), "{}: a dry run erases nothing", t.name);

        let r = proactive::audit::retention::run(&app.db, &app.rules, &app.audit, now, false).await.unwrap();
        assert_eq!((r["birth"].notices, r["birth"].drafts, r["birth"].retention_days), (1, 1, 730), "{}", t.name);
        assert_eq!(text(&app.db, &data).await, "{}", "{}: the template data is gone", t.name);
        let row = format!("SELECT recipient || ' ' || trace FROM notices WHERE id = '{old}'");
        let row = text(&app.db, &row).await;
        assert!(row.starts_with(&app.audit.pseudonym(MOTHER)), "{}: {row}", t.name);
        assert!(!row.contains(MOTHER) && !row.contains(CHILD), "{}: no code left: {row}", t.name);
        let drafts = app.db.all_drafts().await.unwrap();
        let erased = drafts.iter().find(|d| d.applicant == app.audit.pseudonym(MOTHER)).expect("the first draft");
        assert_eq!(erased.fields, serde_json::json!({}), "{}", t.name);
        assert!(drafts.iter().any(|d| d.applicant == "200190-11008" && d.fields != serde_json::json!({})));
        let kept = format!("SELECT data FROM notices WHERE id = '{new}'");
        assert!(text(&app.db, &kept).await.contains("Anna"), "{}: the newer notice is kept", t.name);

        let v = verify(&app.db).await.unwrap();
        assert!(v.ok(), "{}: the chains hold pseudonyms only and still verify: {:?}", t.name, v.breaks);
        let e = explain_notice(&app.db, Some(&app.rules), &old, None).await.unwrap().unwrap();
        let said = e.text();
        assert!(said.contains("was erased on 2028-11-24"), "{}: {said}", t.name);
        assert!(
            said.starts_with(&format!(
                "Notice {old}\n  Sent on 2026-11-23 09:00 by email to a person whose data was erased."
            )),
            "{said}"
        );
        let s = explain_subject(&app.db, Some(&app.rules), &app.audit, MOTHER).await.unwrap();
        assert_eq!(s.notices.len(), 1, "{}: found by pseudonym after erasure", t.name);
        let again = proactive::audit::retention::run(&app.db, &app.rules, &app.audit, now, false).await.unwrap();
        assert_eq!(again["birth"].notices, 0, "{}: erased once", t.name);
        t.cleanup().await;
    }
}

#[test]
fn the_cli_explains_verifies_exports_and_exits_non_zero_on_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(support::sqlite());
    let url = t.url.clone();
    let (id, chain) = rt.block_on(async {
        let (app, chain) = four_notices(&t, dir.path()).await;
        let id = app.db.list_notices(Some("sent"), 10).await.unwrap()[0].notice_id.clone();
        app.db.close().await;
        (id, chain)
    });
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_proactive"))
            .current_dir(support::root())
            .env_remove("PROACTIVE_CONFIG")
            .env("PROACTIVE_LOG", "error")
            .env("PROACTIVE_DATABASE__URL", &url)
            .env("PROACTIVE_PATHS__LIFE_EVENTS", support::root().join("tests/fixtures/life-events"))
            .env("PROACTIVE_PATHS__RULES", support::root().join("tests/fixtures/rules"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["explain", &id]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("Sent on 2026-11-23 09:00 by email to ******-***"), "{said}");
    assert!(!said.contains(MOTHER) && !said.contains(FATHER), "{said}");
    let by_flag = run(&["explain", "--notice", &id]);
    assert!(by_flag.status.success(), "{}", String::from_utf8_lossy(&by_flag.stderr));
    assert_eq!(String::from_utf8_lossy(&by_flag.stdout), said, "--notice ID says what the positional form says");
    assert_eq!(run(&["explain", "--notice", "no-such-notice"]).status.code(), Some(2));
    let both = run(&["explain", "--notice", &id, "--subject", MOTHER]);
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"), "{both:?}");
    let neither = run(&["explain"]);
    assert!(!neither.status.success());
    assert!(String::from_utf8_lossy(&neither.stderr).contains("required"), "{neither:?}");
    let out = run(&["explain", "--subject", MOTHER, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["notices"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(run(&["explain", "no-such-notice"]).status.code(), Some(2));

    let out = run(&[
        "audit",
        "export",
        "--purpose",
        "birth",
        "--from",
        "2026-11-23",
        "--to",
        "2026-11-23",
        "--format",
        "csv",
    ]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(csv.lines().count(), 9, "a header, four notices made and four sent:\n{csv}");

    let out = run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    rt.block_on(async {
        let db = Db::connect(&url, 2).await.unwrap();
        exec(
            &db,
            &format!(
                "UPDATE audit_log SET record = replace(record, 'pending', 'shadow') WHERE chain = '{chain}' AND seq = 3"
            ),
        )
        .await;
        db.close().await;
    });
    let out = run(&["audit", "verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("BROKEN  chain {chain} at record 3: hash mismatch: the record was edited")),
        "{said}"
    );
}

#[tokio::test]
async fn a_notice_held_for_quiet_hours_is_explained_as_waiting_until_the_morning() {
    let t = support::sqlite().await;
    let out = tempfile::tempdir().unwrap();
    let app = app(&t, out.path()).await;
    load(
        &app,
        &[
            support::contact("c1", MOTHER, Some("anna@example.lv"), None, "lv"),
            support::birth("b1", CHILD, Some(MOTHER), None, "2026-11-18"),
        ],
    )
    .await;
    app.clock.set(chrono::DateTime::parse_from_rfc3339("2026-11-23T22:30:00+02:00").unwrap().to_utc());
    assert_eq!(app.delivery().run_until_idle().await.unwrap().deferred, 1);
    let id = app.db.list_notices(Some("pending"), 10).await.unwrap()[0].notice_id.clone();
    let e = explain_notice(&app.db, Some(&app.rules), &id, None).await.unwrap().unwrap();
    let text = e.text();
    // The window's own wording is the quiet-hours module's; what is explained is that it waits, and till when.
    assert!(e.headline.starts_with("Waiting to be sent to ******-***02: deferred: quiet hours"), "{text}");
    assert!(e.headline.ends_with("until 2026-11-24 08:00."), "{text}");
    let line = text.lines().find(|l| l.contains("2026-11-23 22:30: deferred: quiet hours")).expect("the deferral");
    assert!(line.ends_with("Channels considered: eaddress skipped (not configured); email taken."), "{text}");
    t.cleanup().await;
}
