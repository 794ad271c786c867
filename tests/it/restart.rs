//! Stopping between stages loses nothing and repeats nothing a person would see.

use proactive::app::App;
use proactive::connectors::feed::FeedPoller;

use super::support::{self, FeedServer, SmtpServer};

#[tokio::test]
async fn a_stop_between_the_feed_commit_and_delivery_delivers_each_notice_exactly_once() {
    for t in support::stores().await {
        let smtp = SmtpServer::start();
        let page = vec![
            support::contact("c1", "150394-11002", Some("anna@example.lv"), None, "lv"),
            support::contact("c2", "020792-11002", Some("janis@example.lv"), None, "lv"),
            support::contact("c3", "200190-11008", Some("olga@example.lv"), None, "ru"),
            support::birth("b1", "321118-20001", Some("150394-11002"), Some("020792-11002"), "2026-11-18"),
            support::birth("b2", "321120-20002", Some("200190-11008"), None, "2026-11-20"),
        ];
        let feed = FeedServer::start(vec![page]).await;
        let out = tempfile::tempdir().unwrap();
        let cfg = || {
            let mut c = support::fixture_config(&t.url, out.path());
            c.channels.email = support::smtp(smtp.addr);
            c.delivery.lease_secs = 60;
            c
        };
        let clock = support::demo_clock();

        // Process 1 stores the feed page and its cursor, then stops.
        let p1 = App::open(cfg(), clock.clone()).await.unwrap();
        let poller = FeedPoller::new(support::feed_source("portal", &feed.url)).unwrap();
        poller.poll(&p1.db, &p1.clock, &*p1.purposes()).await.unwrap();
        p1.db.close().await;

        // Process 2 evaluates, claims one round of notices and dies before sending them.
        let p2 = App::open(cfg(), clock.clone()).await.unwrap();
        assert_eq!(p2.engine().run_until_idle().await.unwrap().notices, 3, "{}", t.name);
        let claimed = p2.db.claim_notices(clock.now_ms(), 2, 60_000).await.unwrap();
        assert_eq!(claimed.len(), 2);
        p2.db.close().await;

        // Process 3 starts: re-polls (nothing new), re-runs the engine (nothing pending),
        // sends what is due now, and after the dead worker's lease lapses, the rest.
        let p3 = App::open(cfg(), clock.clone()).await.unwrap();
        let poller = FeedPoller::new(support::feed_source("portal", &feed.url)).unwrap();
        let c = poller.poll(&p3.db, &p3.clock, &*p3.purposes()).await.unwrap();
        assert_eq!(c.accepted, 0);
        assert_eq!(p3.engine().run_until_idle().await.unwrap().events, 0);
        let first = p3.delivery().run_until_idle().await.unwrap();
        assert_eq!(first.sent, 1, "{}: claimed notices wait for their lease", t.name);
        clock.advance(chrono::Duration::seconds(61));
        let second = p3.delivery().run_until_idle().await.unwrap();
        assert_eq!(second.sent, 2, "{}: lapsed claims are taken over", t.name);
        assert_eq!(p3.delivery().run_until_idle().await.unwrap().claimed, 0);

        let msgs = smtp.messages();
        let mut ids: Vec<String> = msgs
            .iter()
            .map(|m| {
                mail_parser::MessageParser::default()
                    .parse(m.data.as_bytes())
                    .unwrap()
                    .message_id()
                    .unwrap()
                    .to_string()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!((msgs.len(), ids.len()), (3, 3), "{}: three notices, each delivered exactly once", t.name);
        p3.db.close().await;
        t.cleanup().await;
    }
}
