//! Writes that run alike on both databases: the engine's batch commits and
//! ingestion's, each a [`Job`] that [`Db::transact`] runs in one transaction.
//!
//! sqlx binds every SQLite value through its own argument buffers and runs
//! each statement on the connection's worker thread; even cut into multi-row
//! statements, a batch's rows cost it about 17 µs each (the pipeline bench's
//! ceiling). On SQLite a batch is written instead through the engine's own
//! connection (`Direct::write`) on a blocking thread: one cached prepared
//! statement per table, stepped once per row, which is how SQLite writes
//! fastest. On PostgreSQL the same [`Rows`] and [`Statement`]s go through
//! sqlx, rows cut into multi-row statements by `statement_chunks`, so every
//! round trip to the server carries hundreds of rows.

use std::collections::HashSet;

use anyhow::Result;
use sqlx::Row;

use super::reader::{MapRow, Param, Statement};
use super::{Db, statement_chunks};

/// Rows for one table: the statement around them, and their values.
pub(crate) struct Rows {
    /// `INSERT INTO t (a, b, …)`.
    head: &'static str,
    /// What follows the values (a conflict clause), or nothing.
    tail: &'static str,
    /// Values a row.
    cols: usize,
    /// Every row's values in column order, one row after another.
    values: Vec<Param>,
}

impl Rows {
    /// No rows yet for `head` (`cols` columns) followed by `tail`.
    pub fn new(head: &'static str, cols: usize, tail: &'static str) -> Rows {
        Rows { head, tail, cols, values: Vec::new() }
    }

    /// Adds a row; it must have a value for every column.
    pub fn push<const N: usize>(&mut self, row: [Param; N]) {
        assert_eq!(N, self.cols, "a row of {} needs {} values", self.head, self.cols);
        self.values.extend(row);
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.values.len() / self.cols
    }

    /// Each row's values.
    pub fn rows(&self) -> std::slice::Chunks<'_, Param> {
        self.values.chunks(self.cols)
    }

    /// The one-row statement SQLite steps once per row.
    fn sqlite_sql(&self) -> String {
        let marks: Vec<String> = (1..=self.cols).map(|i| format!("?{i}")).collect();
        format!("{} VALUES ({}){}", self.head, marks.join(", "), self.tail)
    }
}

/// Work written in one transaction on either database, given as a value
/// (on SQLite it moves to the writer's blocking thread); [`Db::transact`]
/// runs it.
pub(crate) trait Job: Send + 'static {
    /// What it answers once committed.
    type Out: Send + 'static;
    /// Writes in `tx`, which its caller commits.
    async fn run(self, tx: &mut impl Tx) -> Result<Self::Out>;
}

impl Db {
    /// Runs `job` in one write transaction and commits it: on SQLite on the
    /// engine's writer connection (`Direct::write`; `synced` as there), on
    /// PostgreSQL in a sqlx transaction of the pool.
    pub(crate) async fn transact<J: Job>(&self, synced: bool, job: J) -> Result<J::Out> {
        match self {
            Db::Sqlite(_, direct) => {
                let rt = tokio::runtime::Handle::current();
                // No step of a SQLite `Tx` awaits anything: the future runs
                // through at once, on the writer's blocking thread.
                direct.write(synced, move |tx| rt.block_on(job.run(&mut SqliteTx(tx)))).await
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let out = job.run(&mut PgTx(&mut tx)).await?;
                tx.commit().await?;
                Ok(out)
            }
        }
    }
}

/// An open write transaction on either database. A trait rather than an
/// enum: a rusqlite transaction may not leave its thread, and a future that
/// could hold one would not be `Send` even on PostgreSQL.
pub(crate) trait Tx {
    /// Writes every row.
    async fn insert(&mut self, rows: &Rows) -> Result<()> {
        self.insert_rows(rows, None).await.map(drop)
    }

    /// Writes every row and returns the first value (the key, text) of those
    /// that went in, not of those the conflict clause turned away.
    async fn insert_new(&mut self, rows: &Rows, key: &'static str) -> Result<HashSet<String>> {
        self.insert_rows(rows, Some(key)).await
    }

    /// Writes every row, and with `key` returns the keys of those that went in.
    async fn insert_rows(&mut self, rows: &Rows, key: Option<&'static str>) -> Result<HashSet<String>>;

    /// Writes every row and returns, row by row, the integer id (`id`, the
    /// table's rowid on SQLite) each got, or `None` where the conflict clause
    /// turned it away. The rows' leading text columns `key` identify them
    /// (PostgreSQL returns the rows of a multi-row insert in no promised
    /// order); of rows repeating a key, the first one goes in.
    async fn insert_ids(&mut self, rows: &Rows, id: &'static str, key: &[&'static str]) -> Result<Vec<Option<i64>>>;

    /// Runs one statement; the number of rows it changed.
    async fn execute(&mut self, s: &Statement) -> Result<u64>;

    /// Runs one statement that returns rows, and maps them.
    async fn query<T>(&mut self, s: &Statement, map: MapRow<T>) -> Result<Vec<T>>;
}

/// The engine's own SQLite connection in a transaction, on a blocking
/// thread: no step awaits anything.
struct SqliteTx<'a>(&'a rusqlite::Transaction<'a>);

/// A sqlx transaction on PostgreSQL.
struct PgTx<'a>(&'a mut sqlx::Transaction<'static, sqlx::Postgres>);

impl SqliteTx<'_> {
    /// Steps `rows`' one-row statement once per row; `went_in` hears of
    /// each row and whether it was written.
    fn each_row(&self, rows: &Rows, mut went_in: impl FnMut(&[Param], bool)) -> Result<()> {
        if rows.values.is_empty() {
            return Ok(());
        }
        let mut st = self.0.prepare_cached(&rows.sqlite_sql())?;
        for row in rows.rows() {
            for (i, p) in row.iter().enumerate() {
                p.bind_sqlite(&mut st, i + 1)?;
            }
            went_in(row, st.raw_execute()? > 0);
        }
        Ok(())
    }
}

impl Tx for SqliteTx<'_> {
    async fn insert_rows(&mut self, rows: &Rows, key: Option<&'static str>) -> Result<HashSet<String>> {
        let mut made = HashSet::new();
        self.each_row(rows, |row, went_in| {
            if let (Some(_), Param::Text(k), true) = (key, &row[0], went_in) {
                made.insert(k.clone());
            }
        })?;
        Ok(made)
    }

    async fn insert_ids(&mut self, rows: &Rows, _id: &'static str, _key: &[&'static str]) -> Result<Vec<Option<i64>>> {
        let mut ids = Vec::with_capacity(rows.len());
        self.each_row(rows, |_, went_in| ids.push(went_in.then(|| self.0.last_insert_rowid())))?;
        Ok(ids)
    }

    async fn execute(&mut self, s: &Statement) -> Result<u64> {
        Ok(s.sqlite_prepared(self.0)?.raw_execute()? as u64)
    }

    async fn query<T>(&mut self, s: &Statement, map: MapRow<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut st = s.sqlite_prepared(self.0)?;
        let mut rows = st.raw_query();
        while let Some(r) = rows.next()? {
            out.push(map(r)?);
        }
        Ok(out)
    }
}

impl Tx for PgTx<'_> {
    async fn insert_rows(&mut self, rows: &Rows, key: Option<&'static str>) -> Result<HashSet<String>> {
        let mut made = HashSet::new();
        let all: Vec<&[Param]> = rows.rows().collect();
        for chunk in statement_chunks(&all, rows.cols) {
            let mut qb = pg_values(rows, chunk);
            match key {
                Some(k) => {
                    qb.push(format!(" RETURNING {k}"));
                    for r in qb.build().fetch_all(&mut **self.0).await? {
                        made.insert(r.try_get(0)?);
                    }
                }
                None => {
                    qb.build().execute(&mut **self.0).await?;
                }
            }
        }
        Ok(made)
    }

    async fn insert_ids(&mut self, rows: &Rows, id: &'static str, key: &[&'static str]) -> Result<Vec<Option<i64>>> {
        let key_of = |row: &[Param]| -> Vec<String> {
            row[..key.len()].iter().map(|p| if let Param::Text(t) = p { t.clone() } else { String::new() }).collect()
        };
        let mut ids = Vec::with_capacity(rows.len());
        let all: Vec<&[Param]> = rows.rows().collect();
        for chunk in statement_chunks(&all, rows.cols) {
            let mut qb = pg_values(rows, chunk);
            qb.push(format!(" RETURNING {id}, {}", key.join(", ")));
            let mut by_key = std::collections::HashMap::new();
            for r in qb.build().fetch_all(&mut **self.0).await? {
                let k: Vec<String> = (0..key.len()).map(|i| r.try_get(i + 1)).collect::<Result<_, _>>()?;
                by_key.insert(k, r.try_get::<i64, _>(0)?);
            }
            ids.extend(chunk.iter().map(|row| by_key.remove(&key_of(row))));
        }
        Ok(ids)
    }

    async fn execute(&mut self, s: &Statement) -> Result<u64> {
        Ok(s.pg_query().execute(&mut **self.0).await?.rows_affected())
    }

    async fn query<T>(&mut self, s: &Statement, map: MapRow<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for r in s.pg_query().fetch_all(&mut **self.0).await? {
            out.push(map(&r)?);
        }
        Ok(out)
    }
}

/// The multi-row statement of `rows`' head, `chunk`'s values and the tail.
fn pg_values(rows: &Rows, chunk: &[&[Param]]) -> sqlx::QueryBuilder<sqlx::Postgres> {
    let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(rows.head);
    qb.push(" ");
    qb.push_values(chunk, |mut b, row| {
        for p in *row {
            match p {
                Param::Text(t) => b.push_bind(t.as_str()),
                Param::Int(n) => b.push_bind(*n),
                Param::NullText => b.push_bind(None::<&str>),
                Param::NullInt => b.push_bind(None::<i64>),
            };
        }
    });
    qb.push(rows.tail);
    qb
}
