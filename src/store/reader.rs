//! The engine's bulk reads and batch commits on SQLite, through connections
//! of its own.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every row
//! to the caller's task over a channel, one wake-up per row; the engine's
//! batch reads (profiles, trigger events, cases by id, what is due) fetch
//! thousands of rows by key. Here the same queries
//! run synchronously on a blocking thread through rusqlite (the same
//! bundled SQLite library, so the same file format and locks), all chunks
//! of one read in one read transaction, and come back as one vector.
//! PostgreSQL takes the same SQL text through sqlx; both map rows through
//! [`Cells`], so a row is decoded by one function whatever the database.
//! Measured on the schedule bench (200,000 people, tmpfs), the profiles a
//! year of timers reads took 4.2 s instead of 7.0 s, their trigger events
//! 1.2 s instead of 2.4 s, and the year fired in 25-27 s instead of 33-39 s.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sqlx::Row;

use super::Db;

/// A value bound to a query; the engine's keys and columns are text or integers.
#[derive(Clone, Debug)]
pub(crate) enum Param {
    /// Text (codes, ids, dates).
    Text(String),
    /// An integer (seqs, times in ms).
    Int(i64),
    /// A missing text: PostgreSQL types every bound value, NULL too.
    NullText,
    /// A missing integer.
    NullInt,
}

impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(s)
    }
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(s.to_string())
    }
}

impl From<i64> for Param {
    fn from(i: i64) -> Self {
        Param::Int(i)
    }
}

impl From<Option<String>> for Param {
    fn from(s: Option<String>) -> Self {
        s.map_or(Param::NullText, Param::Text)
    }
}

impl From<Option<i64>> for Param {
    fn from(i: Option<i64>) -> Self {
        i.map_or(Param::NullInt, Param::Int)
    }
}

impl Param {
    /// Binds this value as `$i` (from 1) of a rusqlite statement.
    pub(crate) fn bind_sqlite(&self, st: &mut rusqlite::Statement<'_>, i: usize) -> rusqlite::Result<()> {
        match self {
            Param::Text(t) => st.raw_bind_parameter(i, t),
            Param::Int(n) => st.raw_bind_parameter(i, n),
            Param::NullText | Param::NullInt => st.raw_bind_parameter(i, rusqlite::types::Null),
        }
    }

    /// Binds this value as the next parameter of a sqlx query on PostgreSQL.
    pub(crate) fn bind_pg<'q>(&'q self, q: PgQuery<'q>) -> PgQuery<'q> {
        match self {
            Param::Text(t) => q.bind(t.as_str()),
            Param::Int(n) => q.bind(*n),
            Param::NullText => q.bind(None::<&str>),
            Param::NullInt => q.bind(None::<i64>),
        }
    }
}

/// A sqlx query on PostgreSQL with its arguments.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl From<&String> for Param {
    fn from(s: &String) -> Self {
        Param::Text(s.clone())
    }
}

impl From<&i64> for Param {
    fn from(i: &i64) -> Self {
        Param::Int(*i)
    }
}

/// Column access by name, the same for a row of either database.
pub(crate) trait Cells {
    /// A text column.
    fn text(&self, col: &str) -> Result<String>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    /// An integer column.
    fn int(&self, col: &str) -> Result<i64>;
}

/// sqlx's rows of both databases read alike.
macro_rules! sqlx_cells {
    ($row:ty) => {
        impl Cells for $row {
            fn text(&self, col: &str) -> Result<String> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                Ok(self.try_get(col)?)
            }
            fn int(&self, col: &str) -> Result<i64> {
                Ok(self.try_get(col)?)
            }
        }
    };
}
sqlx_cells!(sqlx::postgres::PgRow);
sqlx_cells!(sqlx::sqlite::SqliteRow);

impl Cells for rusqlite::Row<'_> {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.get(col)?)
    }
}

/// Maps one row to what a read returns.
pub(crate) type MapRow<T> = fn(&dyn Cells) -> Result<T>;

/// One statement of a read: SQL with `$n` placeholders and its values.
pub(crate) struct Statement {
    /// The text, with `$1`, `$2`, … as PostgreSQL writes them.
    pub sql: String,
    /// The values, `$1` first.
    pub params: Vec<Param>,
}

impl Statement {
    /// One statement of `sql` with `params`.
    pub fn new(sql: impl Into<String>, params: Vec<Param>) -> Statement {
        Statement { sql: sql.into(), params }
    }

    /// The statement as a sqlx query on PostgreSQL, its values bound.
    pub(crate) fn pg_query(&self) -> PgQuery<'_> {
        self.params.iter().fold(sqlx::query(sqlx::AssertSqlSafe(self.sql.as_str())), |q, p| p.bind_pg(q))
    }

    /// The statement prepared (and cached) on `conn`, its values bound.
    pub(crate) fn sqlite_prepared<'c>(&self, conn: &'c rusqlite::Connection) -> Result<rusqlite::CachedStatement<'c>> {
        // `?NNN` is SQLite's numbered placeholder; the texts carry no `$` but these.
        let mut st = conn.prepare_cached(&self.sql.replace('$', "?"))?;
        for (i, p) in self.params.iter().enumerate() {
            p.bind_sqlite(&mut st, i + 1)?;
        }
        Ok(st)
    }

    /// `head` + `IN ($1, …)` over `keys` + `tail`, one statement per chunk
    /// that fits both databases (see [`super::statement_chunks`]).
    pub fn in_list<'k, K: 'k>(head: &str, keys: &'k [K], tail: &str) -> Vec<Statement>
    where
        Param: From<&'k K>,
    {
        Self::in_list_after(head, &[], keys, tail)
    }

    /// As [`Statement::in_list`], `head` taking `first` as `$1`, … and the
    /// list numbered after them.
    pub fn in_list_after<'k, K: 'k>(head: &str, first: &[Param], keys: &'k [K], tail: &str) -> Vec<Statement>
    where
        Param: From<&'k K>,
    {
        super::statement_chunks(keys, 1)
            .into_iter()
            .map(|chunk| {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${}", i + first.len())).collect();
                Statement {
                    sql: format!("{head} IN ({}){tail}", marks.join(", ")),
                    params: first.iter().cloned().chain(chunk.iter().map(Param::from)).collect(),
                }
            })
            .collect()
    }
}

/// The engine's own connections to one SQLite file, opened when first
/// needed: idle readers, and the one connection its batch commits use.
#[derive(Debug)]
pub struct Direct {
    path: std::path::PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    writer: Mutex<Option<rusqlite::Connection>>,
    /// WAL pages that call for it ([`CHECKPOINT_PAGES`]; tests take fewer).
    checkpoint_pages: i32,
    /// Checkpoints the writer has run.
    checkpoints: std::sync::atomic::AtomicU64,
}

/// WAL pages after which the writer copies the WAL back into the database
/// once it has answered its commit. SQLite's own checkpoint
/// (`wal_autocheckpoint`) runs inside the commit that crosses its mark, and
/// copying the pages was half of the engine's commit time (schedule bench,
/// 400,000 people). A thread of its own did not do: the engine always has a
/// read or a write going, so a checkpoint beside the writer never caught up
/// with it, and a WAL never wholly copied is never started afresh (it grew
/// to 12 GB backfilling 1,000,000 people).
const CHECKPOINT_PAGES: i32 = 20_000;

std::thread_local! {
    /// Pages in the WAL after the last commit on this thread (see `wal_pages`).
    static WAL_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// The writer's WAL hook: SQLite calls it in the committing thread, which reads it right after.
fn wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// Read connections kept open between reads; more are opened when readers
/// overlap and closed once they are back.
const KEEP_IDLE: usize = 4;

impl Direct {
    /// Connections to the database file at `path` (which the pool has created).
    pub fn new(path: std::path::PathBuf) -> Arc<Direct> {
        Arc::new(Direct {
            path,
            idle: Mutex::new(Vec::new()),
            writer: Mutex::new(None),
            checkpoint_pages: CHECKPOINT_PAGES,
            checkpoints: Default::default(),
        })
    }

    /// A connection with the pool's settings (`super::SQLITE_PRAGMAS`).
    fn open(&self, to: &str) -> Result<rusqlite::Connection> {
        open_at(&self.path, to)
    }

    fn take(&self) -> Result<rusqlite::Connection> {
        if let Some(c) = self.idle.lock().expect("readers' lock").pop() {
            return Ok(c);
        }
        let c = self.open("read")?;
        // A slip into a write is an error on a reader.
        c.execute_batch("PRAGMA query_only = 1;")?;
        Ok(c)
    }

    /// Runs `write` in one immediate write transaction on the writer
    /// connection, on a blocking thread, and commits it; `synced` commits it
    /// to disk (`synchronous = FULL` for this transaction) where the usual
    /// commit survives a crash of the process but not of the machine. A
    /// transaction that fails is rolled back and its connection closed, so
    /// no half-known state is carried into the next.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, synced: bool, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let me = self.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            let mut slot = me.writer.lock().unwrap_or_else(|e| e.into_inner());
            let conn = match slot.as_mut() {
                Some(c) => c,
                None => match me.open("write") {
                    Ok(c) => {
                        // In place of SQLite's own checkpoints (see `CHECKPOINT_PAGES`).
                        c.wal_hook(Some(wal_pages));
                        slot.insert(c)
                    }
                    Err(e) => return drop(answer.send(Err(e))),
                },
            };
            let out = (|| {
                // SQLite changes it only outside a transaction.
                if synced {
                    conn.execute_batch("PRAGMA synchronous = FULL;")?;
                }
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = write(&tx)?;
                WAL_PAGES.set(0);
                tx.commit()?;
                if synced {
                    conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
                }
                Ok(out)
            })();
            let failed = out.is_err();
            // The caller goes on (the engine reads its next batch) while the
            // WAL is copied back; the next write waits for the lock.
            let _ = answer.send(out);
            if failed {
                *slot = None;
            } else if WAL_PAGES.get() >= me.checkpoint_pages {
                // PASSIVE never waits on a reader; done before the next write
                // begins, it lets that write start the WAL afresh.
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    Ok(()) => drop(me.checkpoints.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                }
            }
        });
        match answered.await {
            Ok(out) => out,
            // The task ended without answering: it panicked.
            Err(_) => {
                Err(task.await.err().map_or_else(|| anyhow::anyhow!("the SQLite writer gave no answer"), Into::into))
            }
        }
    }

    fn give_back(&self, c: rusqlite::Connection) {
        let mut idle = self.idle.lock().expect("readers' lock");
        if idle.len() < KEEP_IDLE {
            idle.push(c);
        }
    }

    /// Runs `statements` in one read transaction on a blocking thread.
    async fn run<T: Send + 'static>(self: &Arc<Self>, statements: Vec<Statement>, map: MapRow<T>) -> Result<Vec<T>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = me.take()?;
            let out = read_all(&conn, &statements, map);
            // A failed read may leave its transaction open; such a connection is not kept.
            if out.is_ok() {
                me.give_back(conn);
            }
            out
        })
        .await?
    }
}

/// A connection to `path` with the pool's settings (`super::SQLITE_PRAGMAS`).
fn open_at(path: &std::path::Path, to: &str) -> Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open SQLite database {} to {to}", path.display()))?;
    for (name, value) in super::SQLITE_PRAGMAS {
        c.execute_batch(&format!("PRAGMA {name} = {value};"))?;
    }
    c.busy_timeout(super::SQLITE_BUSY_TIMEOUT)?;
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

fn read_all<T>(conn: &rusqlite::Connection, statements: &[Statement], map: MapRow<T>) -> Result<Vec<T>> {
    let tx = conn.unchecked_transaction()?;
    let mut out = Vec::new();
    for s in statements {
        let mut st = s.sqlite_prepared(&tx)?;
        let mut rows = st.raw_query();
        while let Some(r) = rows.next()? {
            out.push(map(r)?);
        }
    }
    tx.commit()?;
    Ok(out)
}

impl Db {
    /// Runs `statements` (one read, cut into chunks) and maps every row.
    pub(crate) async fn select<T: Send + 'static>(&self, statements: Vec<Statement>, map: MapRow<T>) -> Result<Vec<T>> {
        match self {
            Db::Sqlite(_, readers) => readers.run(statements, map).await,
            Db::Postgres(pool) => {
                let mut out = Vec::new();
                for s in &statements {
                    for r in s.pg_query().fetch_all(pool).await? {
                        out.push(map(&r)?);
                    }
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_past_its_wal_pages_copies_them_back_after_answering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v TEXT NOT NULL);").unwrap();
        drop(c);
        let direct =
            Arc::new(super::Direct { checkpoint_pages: 100, ..Arc::into_inner(super::Direct::new(path)).unwrap() });
        let write = |rows: usize| {
            direct.write(false, move |tx| {
                let mut st = tx.prepare_cached("INSERT INTO t (v) VALUES (?1)")?;
                for i in 0..rows {
                    st.execute([format!("{i:0>500}")])?;
                }
                Ok(())
            })
        };
        // 60 pages: below the mark, nothing to do.
        write(400).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(direct.checkpoints.load(Ordering::Relaxed), 0);
        write(400).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while direct.checkpoints.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "no checkpoint ran after the WAL passed its mark");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = rusqlite::Connection::open(dir.path().join("wal.db")).unwrap();
        let n: i64 = c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 800);
    }
}
