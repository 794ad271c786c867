//! Both databases reach the same tables and columns.

use super::support;

fn type_class(t: &str) -> &'static str {
    match t {
        "integer" | "bigint" => "integer",
        "text" => "text",
        _ => "other",
    }
}

/// Runs one statement of test set-up on either store, failing the test on an error.
async fn exec(db: &proactive::store::Db, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match db {
        proactive::store::Db::Sqlite(p, _) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        proactive::store::Db::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{}: {e}", db.kind()));
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_define_the_same_columns() {
    let sqlite = support::sqlite().await;
    let lite: Vec<_> =
        sqlite.db.columns().await.unwrap().into_iter().map(|(t, c, ty)| (t, c, type_class(&ty))).collect();
    assert!(lite.iter().any(|(t, c, _)| t == "events" && c == "external_id"), "SQLite schema looks empty: {lite:?}");
    assert!(lite.iter().all(|(_, _, ty)| *ty != "other"), "columns must be INTEGER/BIGINT or TEXT: {lite:?}");
    let Some(pg) = support::postgres().await else {
        sqlite.cleanup().await;
        return;
    };
    let post: Vec<_> = pg.db.columns().await.unwrap().into_iter().map(|(t, c, ty)| (t, c, type_class(&ty))).collect();
    assert_eq!(lite, post, "migrations/sqlite and migrations/postgres disagree");
    sqlite.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test]
async fn migrating_twice_is_harmless() {
    for t in support::stores().await {
        t.db.migrate().await.unwrap_or_else(|e| panic!("{}: second migration failed: {e:#}", t.name));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn readiness_knows_whether_the_schema_is_this_versions() {
    for t in support::stores().await {
        assert!(t.db.migrations_current().await, "{}: freshly migrated", t.name);
        let url = t.url.clone();
        // An older schema: the newest migration not applied.
        let db = proactive::store::Db::connect(&url, 1).await.unwrap();
        exec(&db, "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)").await;
        assert!(!t.db.migrations_current().await, "{}: a migration is missing", t.name);
        db.close().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn cases_made_before_0013_get_their_subjects_profile() {
    use proactive::engine::profile::ProfileKind;
    // A company first heard of at its liquidation, and a person with a profile already.
    const COMPANY: &str = "40003123453";
    const PERSON: &str = "150394-11002";
    for t in support::stores().await {
        let db = proactive::store::Db::connect(&t.url, 1).await.unwrap();
        let setup = [
            "DELETE FROM _sqlx_migrations WHERE version = 13".to_string(),
            format!(
                "INSERT INTO cases (id, life_situation, version, subject, fact, trigger_seq, created_at, updated_at) \
                 VALUES ('c1', 'company_liquidation', 1, '{COMPANY}', '{COMPANY}', 1, 0, 0), \
                        ('c2', 'marriage', 1, '{PERSON}', '{PERSON}', 2, 0, 0)"
            ),
            format!(
                "INSERT INTO profiles (subject, kind, doc, updated_at) \
                 VALUES ('{PERSON}', 'person', '{{\"subject\":\"{PERSON}\",\"kind\":\"person\",\"given_name\":\"Anna\"}}', 5)"
            ),
        ];
        for sql in &setup {
            exec(&db, sql).await;
        }
        t.db.migrate().await.unwrap_or_else(|e| panic!("{}: 0013 failed: {e:#}", t.name));
        let mut got = t.db.load_profiles(&[COMPANY.to_string(), PERSON.to_string()]).await.unwrap();
        got.sort_by(|a, b| a.subject.cmp(&b.subject));
        assert_eq!(got.len(), 2, "{}: {got:?}", t.name);
        let (person, company) = (&got[0], &got[1]);
        assert_eq!((company.subject.as_str(), company.kind), (COMPANY, ProfileKind::Company), "{}", t.name);
        assert_eq!(person.given_name.as_deref(), Some("Anna"), "{}: an existing profile is left as it was", t.name);
        db.close().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn profiles_made_before_0014_remember_their_birth_record_and_are_found_by_birth_date() {
    // Two birth records of one person (the later one a correction) and a
    // person known only from another event.
    const CHILD: &str = "150614-20001";
    const OTHER: &str = "150394-11002";
    for t in support::stores().await {
        let db = proactive::store::Db::connect(&t.url, 1).await.unwrap();
        let doc = |code: &str| format!("{{\"subject\":\"{code}\",\"kind\":\"person\",\"birth_date\":\"2014-06-15\"}}");
        let setup = [
            "DELETE FROM _sqlx_migrations WHERE version = 14".to_string(),
            "DROP TABLE openings".to_string(),
            "DROP INDEX profiles_births".to_string(),
            "ALTER TABLE profiles DROP COLUMN birth_seq".to_string(),
            format!(
                "INSERT INTO events (seq, source, external_id, type, subject, occurred_at, received_at, data) \
                 VALUES (7, 'pmlp', 'b1', 'birth.registered', '{CHILD}', 0, 0, '{{}}'), \
                        (9, 'pmlp', 'b2', 'birth.registered', '{CHILD}', 0, 0, '{{}}'), \
                        (8, 'pmlp', 'c1', 'contact.declared', '{OTHER}', 0, 0, '{{}}')"
            ),
            format!(
                "INSERT INTO profiles (subject, kind, birth_date, doc, updated_at) \
                 VALUES ('{CHILD}', 'person', '2014-06-15', '{}', 5), ('{OTHER}', 'person', '1994-03-15', '{}', 5)",
                doc(CHILD),
                doc(OTHER)
            ),
        ];
        for sql in &setup {
            exec(&db, sql).await;
        }
        t.db.migrate().await.unwrap_or_else(|e| panic!("{}: 0014 failed: {e:#}", t.name));
        let got = t.db.load_profiles(&[CHILD.to_string(), OTHER.to_string()]).await.unwrap();
        let seq_of = |code: &str| got.iter().find(|p| p.subject == code).map(|p| p.birth_seq);
        assert_eq!(seq_of(CHILD), Some(Some(9)), "{}: the latest birth record", t.name);
        assert_eq!(seq_of(OTHER), Some(None), "{}: no birth record, nothing opens from it", t.name);
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let born = t.db.born_between(day("1990-01-01"), day("2020-01-01"), None, 10).await.unwrap();
        let found: Vec<(&str, i64)> = born.iter().map(|b| (b.subject.as_str(), b.seq)).collect();
        assert_eq!(found, [(CHILD, 9)], "{}", t.name);
        db.close().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn documents_processed_before_0015_are_found_by_expiry() {
    // Two processed issues (one of them an eID card), one not yet processed
    // (the engine indexes it when it gets to it) and a birth record.
    const HOLDER: &str = "150394-11002";
    for t in support::stores().await {
        let db = proactive::store::Db::connect(&t.url, 1).await.unwrap();
        let issue = |number: &str, expires: &str| {
            format!(
                "{{\"document\":\"passport\",\"number\":\"{number}\",\"issued\":\"2020-01-01\",\"expires\":\"{expires}\"}}"
            )
        };
        let setup = [
            "DELETE FROM _sqlx_migrations WHERE version = 15".to_string(),
            "DROP TABLE document_expiry".to_string(),
            format!(
                "INSERT INTO events (seq, source, external_id, type, subject, occurred_at, received_at, data, processed_at) \
                 VALUES (3, 'pmlp', 'd1', 'document.issued', '{HOLDER}', 0, 0, '{}', 1), \
                        (4, 'pmlp', 'd2', 'document.issued', '{HOLDER}', 0, 0, '{}', 1), \
                        (5, 'pmlp', 'd3', 'document.issued', '{HOLDER}', 0, 0, '{}', NULL), \
                        (6, 'pmlp', 'b1', 'birth.registered', '{HOLDER}', 0, 0, '{{\"birth_date\":\"2030-01-01\"}}', 1)",
                issue("LV1", "2030-06-01"),
                issue("LV2", "2029-01-01"),
                issue("LV3", "2030-02-01"),
            ),
        ];
        for sql in &setup {
            exec(&db, sql).await;
        }
        t.db.migrate().await.unwrap_or_else(|e| panic!("{}: 0015 failed: {e:#}", t.name));
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let found = t.db.documents_expiring(day("2028-01-01"), day("2031-01-01"), None, 10).await.unwrap();
        let got: Vec<(&str, i64)> = found.iter().map(|d| (d.date.as_str(), d.seq)).collect();
        assert_eq!(got, [("2029-01-01", 4), ("2030-06-01", 3)], "{}: in expiry order, processed ones only", t.name);
        let after = t.db.documents_expiring(day("2028-01-01"), day("2031-01-01"), found.first(), 10).await.unwrap();
        assert_eq!(after.iter().map(|d| d.seq).collect::<Vec<_>>(), [3], "{}: after the first", t.name);
        db.close().await;
        t.cleanup().await;
    }
}

/// The engine's bulk reads (their own connections on SQLite) return every key
/// across statement chunks, nothing for absent keys, and after a later
/// commit the new rows rather than a snapshot kept from before.
#[tokio::test]
async fn bulk_reads_see_every_key_and_each_commit() {
    use proactive::engine::profile::Profile;
    use proactive::store::BatchWrite;
    let audit = proactive::audit::Audit::development();
    for t in support::stores().await {
        let codes: Vec<String> = (0..1300).map(|i| format!("P{i:05}")).collect();
        let profiles = |given: &str| -> Vec<Profile> {
            codes
                .iter()
                .map(|c| Profile { subject: c.clone(), given_name: Some(given.into()), ..Profile::default() })
                .collect()
        };
        let w = BatchWrite { profiles: profiles("Anna"), ..BatchWrite::default() };
        t.db.commit_batch(&w, 1, &audit).await.unwrap();
        let mut wanted = codes.clone();
        wanted.extend(["absent-1".to_string(), "absent-2".to_string()]);
        let got = t.db.load_profiles(&wanted).await.unwrap();
        let mut subjects: Vec<&str> = got.iter().map(|p| p.subject.as_str()).collect();
        subjects.sort_unstable();
        assert_eq!(subjects, codes.iter().map(String::as_str).collect::<Vec<_>>(), "{}", t.name);

        let w = BatchWrite { profiles: profiles("Berta"), ..BatchWrite::default() };
        t.db.commit_batch(&w, 2, &audit).await.unwrap();
        let got = t.db.load_profiles(&codes).await.unwrap();
        assert_eq!(got.len(), codes.len(), "{}", t.name);
        assert!(got.iter().all(|p| p.given_name.as_deref() == Some("Berta")), "{}: a read saw an old snapshot", t.name);
        t.cleanup().await;
    }
}
