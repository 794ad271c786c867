//! The change-feed connector against a server of the contract on loopback,
//! through the engine to notices and drafts in the store.

use std::sync::Arc;
use std::time::Duration;

use proactive::app::App;
use proactive::connectors::feed::{FeedPoller, PollError};

use super::support::{self, FeedServer};

const MOTHER: &str = "150394-11002";
const FATHER: &str = "020792-11002";
const DEAD_FATHER: &str = "090991-11000";

fn pages() -> Vec<Vec<serde_json::Value>> {
    let b1 = support::birth("pmlp-1", "321118-20001", Some(MOTHER), Some(FATHER), "2026-11-18");
    let mut b2 = support::birth("pmlp-3", "321120-20002", Some("200190-11008"), Some(DEAD_FATHER), "2026-11-20");
    b2["data"]["given_name"] = "Mark".into();
    let mut malformed = support::birth("pmlp-2", "321119-20009", Some("060695-11019"), None, "2026-11-19");
    malformed.as_object_mut().unwrap().remove("source");
    let death = serde_json::json!({
        "id": "pmlp-0", "type": "death.registered", "subject": DEAD_FATHER,
        "occurred_at": "2026-10-01T08:00:00+03:00", "data": { "death_date": "2026-10-01" }
    });
    let mut b1_no_source = b1.clone();
    b1_no_source.as_object_mut().unwrap().remove("source");
    vec![vec![death, b1_no_source.clone(), b1_no_source], vec![malformed, b2]]
}

#[tokio::test]
async fn a_feed_with_a_503_a_duplicate_and_a_malformed_record_ends_as_notices_and_drafts() {
    for t in support::stores().await {
        let feed = FeedServer::start(pages()).await;
        feed.errors.lock().unwrap().push(503);
        let out = tempfile::tempdir().unwrap();
        let app = App::open(support::config(&t.url, out.path()), support::demo_clock()).await.unwrap();
        let poller = FeedPoller::new(support::feed_source("pmlp", &feed.url)).unwrap();
        let purposes = app.purposes();

        match poller.poll(&app.db, &app.clock, &*purposes).await {
            Err(PollError::Busy { status: 503, after }) => assert_eq!(after, Duration::from_secs(1)),
            other => panic!("{}: expected the 503 to ask for a pause, got {other:?}", t.name),
        }
        let counts = poller.poll(&app.db, &app.clock, &*purposes).await.unwrap();
        assert_eq!((counts.accepted, counts.duplicate, counts.quarantined), (3, 1, 1), "{}", t.name);
        assert_eq!(app.db.connector_state("pmlp").await.unwrap().cursor.as_deref(), Some("2"));
        let reqs = feed.requests.lock().unwrap().clone();
        let afters: Vec<_> = reqs.iter().map(|r| r.0.clone()).collect();
        assert_eq!(afters, vec![None, None, Some("1".into()), Some("2".into())], "{}", t.name);
        assert!(reqs.iter().all(|r| r.1.as_deref() == Some("3")), "page size is asked for");

        let q = app.db.quarantine_list(true).await.unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].source, "pmlp", "a record without source takes the feed's");
        assert_eq!(q[0].field.as_deref(), Some("data.mother"));
        assert!(q[0].location.contains("change 1"), "{}", q[0].location);

        let report = app.engine().run_until_idle().await.unwrap();
        assert_eq!((report.events, report.errors), (3, 0), "{}", t.name);
        let births = app.db.all_cases().await.unwrap().into_iter().filter(|c| c.life_situation == "birth").count();
        assert_eq!(births, 2, "{}: one birth case per child", t.name);
        // Three living parents: the father of the second child had died.
        let mut notices = app.db.list_notices(None, 100).await.unwrap();
        notices.retain(|n| n.template == "childbirth_benefit");
        let mut recipients: Vec<_> = notices.iter().map(|n| n.recipient.as_str()).collect();
        recipients.sort();
        assert_eq!(recipients, vec!["020792-11002", "150394-11002", "200190-11008"]);
        assert!(notices.iter().all(|n| n.state == "pending" && n.template == "childbirth_benefit"));

        let mother_notice = notices.iter().find(|n| n.recipient == MOTHER).unwrap();
        let draft_ref = mother_notice.draft_ref.clone().expect("the notice offers a draft");
        let draft = app.db.draft(&draft_ref).await.unwrap().expect("the draft is stored");
        assert_eq!(draft.applicant, MOTHER);
        assert_eq!(draft.service_id, "VSAA-BPP");
        assert_eq!(draft.fields["child_code"]["value"], "321118-20001");
        assert_eq!(draft.fields["child_code"]["source"], "pmlp");
        assert_eq!(draft.fields["child_birth_date"]["value"], "2026-11-18");

        // A second poller (a restart) resumes after the stored cursor and finds nothing new.
        let again = FeedPoller::new(support::feed_source("pmlp", &feed.url)).unwrap();
        let c = again.poll(&app.db, &app.clock, &*purposes).await.unwrap();
        assert_eq!(c.accepted + c.duplicate + c.quarantined, 0);
        assert_eq!(feed.requests.lock().unwrap().last().unwrap().0.as_deref(), Some("2"));
        assert_eq!(app.engine().run_until_idle().await.unwrap().events, 0);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn the_polling_loop_waits_as_told_and_catches_up() {
    let t = support::sqlite().await;
    let feed = FeedServer::start(pages()).await;
    feed.errors.lock().unwrap().extend([429, 503, 500]);
    let out = tempfile::tempdir().unwrap();
    let app = App::open(support::config(&t.url, out.path()), support::demo_clock()).await.unwrap();
    let poller = Arc::new(FeedPoller::new(support::feed_source("pmlp", &feed.url)).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = {
        let (db, clock, purposes, poller) = (app.db.clone(), app.clock.clone(), app.purposes(), poller.clone());
        tokio::spawn(async move { poller.run(db, clock, purposes, stop_rx).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.db.connector_state("pmlp").await.unwrap().cursor.as_deref() != Some("2") {
        assert!(tokio::time::Instant::now() < deadline, "the connector never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let q = app.db.quarantine_list(true).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(app.db.pending_event_count().await.unwrap(), 3);
    assert!(feed.requests.lock().unwrap().len() >= 6, "three failures, then pages");
    t.cleanup().await;
}
