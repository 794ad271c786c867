//! Both databases reach the same tables and columns.

use super::support;

fn type_class(t: &str) -> &'static str {
    match t {
        "integer" | "bigint" => "integer",
        "text" => "text",
        _ => "other",
    }
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
        match &db {
            proactive::store::Db::Sqlite(p) => {
                sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
                    .execute(p)
                    .await
                    .unwrap();
            }
            proactive::store::Db::Postgres(p) => {
                sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
                    .execute(p)
                    .await
                    .unwrap();
            }
        }
        assert!(!t.db.migrations_current().await, "{}: a migration is missing", t.name);
        db.close().await;
        t.cleanup().await;
    }
}
