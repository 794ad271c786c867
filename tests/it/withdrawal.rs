//! A refusal racing the delivery workers: it takes effect at its commit.
//! Notices still queued are cancelled; one already handed to a gateway
//! (`sending`, committed before the call) cannot be recalled and is recorded
//! as in flight; and no delivery starts after the commit — not a retry of a
//! send that failed, not a fallback to another channel.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use super::eaddress::{activated, app};
use super::gateways::{GatewayFake, Kind, Script};
use super::support::{self, load};

const MOTHER: &str = "150394-11002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_cancels_what_is_queued_records_what_is_in_flight_and_nothing_starts_after_it() {
    for t in support::stores().await {
        let fake = GatewayFake::start(Kind::Eaddress).await;
        let out = tempfile::tempdir().unwrap();
        let mut app = app(&t, &fake, None, out.path()).await;
        app.cfg.delivery.batch_size = 8;
        app.cfg.delivery.concurrency = 4;
        app.cfg.delivery.backoff_base_ms = 1;
        app.cfg.delivery.backoff_max_ms = 2;
        // Sixty children of one mother, born in the last days: sixty notices to her under purpose "birth".
        let born = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let mut records = vec![activated("e1", MOTHER)];
        let mut serial = 0;
        while records.len() <= 60 {
            serial += 1;
            if let Some(child) = proactive::events::codes::valid_test_personal_code(born, serial) {
                records.push(support::birth(&format!("b{serial}"), &child, Some(MOTHER), None, &born.to_string()));
            }
        }
        load(&app, &records).await;
        let ids: HashSet<String> =
            app.db.list_notices(None, 100).await.unwrap().into_iter().map(|n| n.notice_id).collect();
        assert_eq!(ids.len(), 60, "{}", t.name);
        // Every answer takes a while. The first twenty are accepted; after
        // them the gateway is overloaded (503, retry at once), so the sends in
        // flight at the refusal fail and must not be retried after it.
        for i in 0..400 {
            let wait = Duration::from_millis(15);
            fake.script(if i < 20 { Script::Slow(wait) } else { Script::LateRefusal(wait, 503) });
        }

        let delivery = app.delivery();
        let running = tokio::spawn(async move { delivery.run_until_idle().await });
        while fake.requests().len() < 20 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let refusal = json!({
            "source": "portal", "id": "r1", "type": "consent.refused", "subject": MOTHER,
            "occurred_at": "2026-11-22T10:00:00+02:00",
            "data": { "purpose": "birth", "channel": null, "text_version": "v3" }
        });
        load(&app, &[refusal]).await;
        let committed = Instant::now();
        running.await.unwrap().unwrap();
        app.delivery().run_until_idle().await.unwrap();

        let notices = app.db.list_notices(None, 100).await.unwrap();
        let with = |state: &str| -> HashSet<String> {
            notices.iter().filter(|n| n.state == state).map(|n| n.notice_id.clone()).collect()
        };
        // Suppressed: claimed before the commit, but routed after it, when the refusal was already known.
        let (sent, cancelled, suppressed) = (with("sent"), with("cancelled"), with("suppressed"));
        let states: Vec<(&str, Option<&str>)> =
            notices.iter().map(|n| (n.state.as_str(), n.last_error.as_deref())).collect();
        assert_eq!(
            sent.len() + cancelled.len() + suppressed.len(),
            60,
            "{}: every notice ends sent, cancelled or suppressed: {states:?}",
            t.name
        );
        assert!(!sent.is_empty() && !cancelled.is_empty(), "{}: the refusal came mid-run", t.name);
        let mut in_flight = HashSet::new();
        for id in &ids {
            let attempts = app.db.attempts(id).await.unwrap();
            if let Some(at) = attempts.iter().position(|a| a.outcome == "in_flight") {
                in_flight.insert(id.clone());
                // The call in progress ends somehow; nothing is tried after it.
                let after: Vec<_> = attempts[at + 1..].iter().map(|a| a.outcome.as_str()).collect();
                assert!(after.len() <= 1, "{}: {id} was tried again after the refusal: {after:?}", t.name);
            }
        }
        assert!(!in_flight.is_empty(), "{}: some notices were with the gateway at the refusal", t.name);

        // What the gateway accepted is exactly what is recorded as sent.
        let accepted: HashSet<String> =
            fake.requests().iter().filter_map(|r| r.key.clone()).filter(|k| sent.contains(k)).collect();
        assert_eq!(accepted, sent, "{}", t.name);
        assert_eq!(fake.accepted(), sent.len(), "{}: no cancelled notice was accepted", t.name);
        // After the commit, only notices handed over before it reach the gateway.
        let late: Vec<String> =
            fake.requests().into_iter().filter(|r| r.at > committed).filter_map(|r| r.key).collect();
        assert!(
            late.iter().all(|k| in_flight.contains(k)),
            "{}: a delivery started after the refusal's commit: {late:?} (in flight: {in_flight:?})",
            t.name
        );
        assert_eq!(late.iter().collect::<HashSet<_>>().len(), late.len(), "{}: one late call a notice at most", t.name);
        assert!(
            suppressed.is_subset(&in_flight),
            "{}: only a notice already claimed is routed after the refusal",
            t.name
        );
        for n in notices.iter().filter(|n| n.state == "cancelled" || n.state == "suppressed") {
            let why = n.last_error.as_deref().unwrap_or_default();
            assert!(why.contains("refused"), "{}: {} cancelled for {why:?}", t.name, n.notice_id);
        }
        t.cleanup().await;
    }
}
