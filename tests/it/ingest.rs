//! The event log: validation, deduplication and quarantine on both databases.

use proactive::events::{RawRecord, ingest_records, retry_quarantine};

use super::support;

fn rec(n: usize, v: &serde_json::Value) -> RawRecord {
    RawRecord { location: format!("test:{n}"), text: v.to_string() }
}

#[tokio::test]
async fn good_records_are_stored_once_and_bad_ones_kept_with_their_error() {
    for t in support::stores().await {
        let declared = |p: &str| p == "birth";
        let good = support::birth("pmlp-1", "321118-20001", Some("150394-11002"), None, "2026-11-18");
        let hyphenless = support::contact("portal-1", "15039411002", Some("a@example.lv"), None, "lv");
        let mut bad_code = support::birth("pmlp-2", "321118-20002", Some("060695-11019"), None, "2026-11-18");
        let records = vec![
            rec(1, &good),
            rec(2, &good),
            rec(3, &hyphenless),
            rec(4, &bad_code),
            RawRecord { location: "test:5".into(), text: "{\"source\": \"pmlp\", \"id\": ".into() },
        ];
        let c = ingest_records(&t.db, None, &records, &declared, None, 1).await.unwrap();
        assert_eq!((c.accepted, c.duplicate, c.quarantined), (2, 1, 2), "{}", t.name);

        // Redelivery of the whole page changes nothing, quarantine included.
        let again = ingest_records(&t.db, None, &records, &declared, None, 2).await.unwrap();
        assert_eq!((again.accepted, again.duplicate, again.quarantined), (0, 3, 0), "{}", t.name);

        let pending = t.db.pending_events(10).await.unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[1].subject, "150394-11002", "{}: codes are stored in canonical form", t.name);

        let q = t.db.quarantine_list(true).await.unwrap();
        assert_eq!(q.len(), 2, "{}", t.name);
        let code_err = q.iter().find(|r| r.location == "test:4").expect("the bad code is held");
        assert_eq!(code_err.field.as_deref(), Some("data.mother"));
        assert!(code_err.error.contains("check digit"), "{}", code_err.error);
        assert!(!code_err.error.contains("060695"), "errors must not repeat personal codes");
        assert_eq!(code_err.raw, bad_code.to_string(), "the raw record is kept as received");
        let json_err = q.iter().find(|r| r.location == "test:5").unwrap();
        assert!(json_err.error.contains("not valid JSON"), "{}", json_err.error);

        // Fixed at the source and sent again under the same id: accepted.
        bad_code["data"]["mother"] = "060695-11018".into();
        let fixed = ingest_records(&t.db, None, &[rec(6, &bad_code)], &declared, None, 3).await.unwrap();
        assert_eq!(fixed.accepted, 1, "{}", t.name);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn quarantine_retry_releases_records_once_the_definitions_allow_them() {
    for t in support::stores().await {
        let consent = serde_json::json!({
            "source": "portal", "id": "portal-9", "type": "consent.refused", "subject": "150394-11002",
            "occurred_at": "2026-11-20T10:00:00+02:00",
            "data": { "purpose": "school_age", "channel": "sms", "text_version": "v1" }
        });
        let only_birth = |p: &str| p == "birth";
        let c = ingest_records(&t.db, None, &[rec(1, &consent)], &only_birth, None, 1).await.unwrap();
        assert_eq!(c.quarantined, 1, "{}: an undeclared purpose is quarantined", t.name);

        let r = retry_quarantine(&t.db, None, &only_birth, 2).await.unwrap();
        assert_eq!((r.released, r.still_held), (0, 1), "{}", t.name);
        assert_eq!(t.db.quarantine_list(true).await.unwrap()[0].attempts, 1);

        let with_school = |p: &str| p == "birth" || p == "school_age";
        let r = retry_quarantine(&t.db, None, &with_school, 3).await.unwrap();
        assert_eq!((r.released, r.still_held), (1, 0), "{}", t.name);
        assert!(t.db.quarantine_list(true).await.unwrap().is_empty());
        let all = t.db.quarantine_list(false).await.unwrap();
        assert_eq!(all[0].state, "released");
        let log = t.db.pending_events(10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].event_type, "consent.refused");
        t.cleanup().await;
    }
}
