//! The store: the one place that speaks SQL, on SQLite (the embedded default,
//! one file in WAL mode) or PostgreSQL. Both run the same query texts
//! wherever SQL allows (`$n` placeholders work on both); the few that differ
//! say why beside them. On SQLite the engine's bulk reads and its batch
//! commits go through connections of their own, synchronously (`reader`,
//! `writer`); everything else goes through sqlx's pool.

mod api;
mod attempts;
mod audit;
mod cases;
mod citizen;
mod dashboard;
mod delivery_extra;
mod events;
mod leases;
mod openings;
mod outbox;
mod pacing;
mod profiles;
mod reader;
mod receipts;
mod simulate;
mod snapshot;
mod writer;

pub use api::{ApiKeyRow, Stored};
pub use attempts::Attempt;
pub use audit::{ChainHead, Erasure, NoticeDetail};
pub use cases::{DraftLink, NoticeView};
pub use citizen::{DraftInfo, Period, TakeUp, Tally};
pub use dashboard::{Applied, Served};
pub use delivery_extra::{AttemptRow, ReceiptRow};
pub use events::{ConnectorState, EventRow, IngestCounts, NewQuarantine, QuarantineRow};
pub use openings::Dated;
pub use outbox::{BatchWrite, ClaimedNotice, DeliveryRow, DraftRow, NoticeRow, NoticeState, OutcomeRow, Withdraw};
pub use reader::Direct;
pub use receipts::{ReceiptPoll, ReceiptState};
pub use simulate::EndedStep;
pub use snapshot::{CompanyPrint, NewSnapshot, SnapshotRow};

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// Migrations for each database, plain SQL files beside the code.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A connection pool to one of the supported databases.
#[derive(Clone, Debug)]
pub enum Db {
    /// The embedded default: sqlx's pool, and the engine's own connections (`reader`).
    Sqlite(SqlitePool, std::sync::Arc<Direct>),
    /// For deployments that outgrow one machine.
    Postgres(PgPool),
}

/// Runs the same block against whichever pool `$db` holds; the block is
/// compiled once per database, so one query text serves both.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool, _) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Settings of every SQLite connection, the pool's and the engine's own.
pub(crate) const SQLITE_PRAGMAS: &[(&str, &str)] = &[
    // Derived ids (hashes) land anywhere in their indexes; a page cache of
    // 64 MiB a connection keeps those inserts off the disk.
    ("cache_size", "-65536"),
    // Checkpoint every ~160 MiB of WAL rather than SQLite's 4 MiB: batch
    // commits touch the same index pages again and again, and each checkpoint
    // copies them back into the database (measured by the schedule bench: a
    // quarter less time per event).
    ("wal_autocheckpoint", "40000"),
    // A multi-row upsert keeps a statement journal to undo itself on a
    // conflict; kept in memory it costs no file writes.
    ("temp_store", "MEMORY"),
    // WAL with NORMAL survives a process crash; only an OS crash can lose the last commits.
    ("synchronous", "NORMAL"),
];

/// How long an SQLite connection waits for another's write lock.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite allows 32,766 bound values per statement and PostgreSQL 65,535;
/// multi-row statements are cut into chunks that fit both.
pub(crate) const MAX_BINDS: usize = 30_000;

/// Rows per chunk for a multi-row statement binding `cols` values a row.
pub(crate) fn chunk_rows(cols: usize) -> usize {
    (MAX_BINDS / cols).max(1)
}

/// Most rows one multi-row statement carries.
const MAX_STATEMENT_ROWS: usize = 512;

/// Cuts `items` into slices for multi-row statements of `cols` values a row:
/// full slices of one power-of-two size, then the rest in smaller powers of
/// two. Both databases cache a prepared statement per distinct text, and one
/// with thousands of placeholders takes milliseconds to prepare (and memory
/// to keep); this way each table has at most ten statement texts, all cached.
pub fn statement_chunks<T>(items: &[T], cols: usize) -> Vec<&[T]> {
    let fit = (MAX_BINDS / cols.max(1)).clamp(1, MAX_STATEMENT_ROWS);
    let max = if fit.is_power_of_two() { fit } else { fit.next_power_of_two() / 2 };
    let mut out = Vec::with_capacity(items.len() / max + 10);
    let mut rest = items;
    let mut size = max;
    while !rest.is_empty() {
        while size > rest.len() {
            size /= 2;
        }
        let (head, tail) = rest.split_at(size);
        out.push(head);
        rest = tail;
    }
    out
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) without migrating.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url).with_context(|| format!("bad SQLite URL {url}"))?;
            let direct = Direct::new(opts.get_filename().to_path_buf());
            let opts = SQLITE_PRAGMAS.iter().fold(opts, |o, (name, value)| o.pragma(*name, *value));
            let opts = opts
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(false);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(2))
                .connect_with(opts)
                .await
                .with_context(|| format!("cannot open SQLite database {url}"))?;
            Ok(Db::Sqlite(pool, direct))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url).context("bad PostgreSQL URL")?;
            Self::connect_pg(opts, max_connections).await
        } else {
            anyhow::bail!("database.url must start with sqlite: or postgres: (got a URL of another kind)")
        }
    }

    /// Connects to PostgreSQL with prepared options (tests use this to pin a schema).
    pub async fn connect_pg(opts: PgConnectOptions, max_connections: u32) -> Result<Db> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .context("cannot connect to PostgreSQL")?;
        Ok(Db::Postgres(pool))
    }

    /// Connects and brings the schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<Db> {
        let db = Self::connect(url, max_connections).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the migrations this database has not seen yet.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(p, _) => SQLITE_MIGRATIONS.run(p).await.context("SQLite migration failed")?,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await.context("PostgreSQL migration failed")?,
        }
        Ok(())
    }

    /// Whether every migration this binary knows has been applied (a process
    /// started against an older schema, or a newer one's, is not ready).
    pub async fn migrations_current(&self) -> bool {
        let migrator = if matches!(self, Db::Sqlite(..)) { &SQLITE_MIGRATIONS } else { &POSTGRES_MIGRATIONS };
        let sql = "SELECT version FROM _sqlx_migrations WHERE success";
        let applied: Result<Vec<(i64,)>, sqlx::Error> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await);
        let Ok(applied) = applied.map(|v| v.into_iter().map(|(v,)| v).collect::<Vec<i64>>()) else { return false };
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        known.iter().all(|v| applied.contains(v)) && applied.iter().all(|v| known.contains(v))
    }

    /// `sqlite` or `postgres`, for messages and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(..) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Tables and their columns as the database reports them, for the schema-parity test.
    pub async fn columns(&self) -> Result<Vec<(String, String, String)>> {
        use sqlx::Row;
        let mut out = Vec::new();
        match self {
            Db::Sqlite(p, _) => {
                let rows = sqlx::query(
                    "SELECT m.name AS t, c.name AS c, c.type AS ty FROM sqlite_master m \
                     JOIN pragma_table_info(m.name) c WHERE m.type = 'table' \
                     AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
                )
                .fetch_all(p)
                .await?;
                for r in rows {
                    out.push((r.try_get("t")?, r.try_get("c")?, r.try_get::<String, _>("ty")?.to_lowercase()));
                }
            }
            Db::Postgres(p) => {
                let rows = sqlx::query(
                    "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty \
                     FROM information_schema.columns WHERE table_schema = current_schema() \
                     AND table_name NOT LIKE '_sqlx%'",
                )
                .fetch_all(p)
                .await?;
                for r in rows {
                    out.push((r.try_get("t")?, r.try_get("c")?, r.try_get("ty")?));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether the database answers (for readiness).
    pub async fn ping(&self) -> bool {
        // A probe must answer quickly: an unreachable server is "not ready", not a hung request.
        let probe = async { on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.is_ok()) };
        tokio::time::timeout(Duration::from_secs(2), probe).await.unwrap_or(false)
    }

    /// Closes the pool, waiting for connections to return.
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statement_chunks_use_few_distinct_sizes_and_keep_every_item() {
        let items: Vec<u32> = (0..1877).collect();
        let chunks = super::statement_chunks(&items, 14);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![512, 512, 512, 256, 64, 16, 4, 1]);
        let flat: Vec<u32> = chunks.concat();
        assert_eq!(flat, items);
        assert!(super::statement_chunks(&items[..0], 3).is_empty());
        assert!(super::statement_chunks(&items, 20_000).iter().all(|c| c.len() == 1));
    }
}
