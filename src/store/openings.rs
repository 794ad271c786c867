//! What the engine needs to open cases ahead of their first step from a
//! profile's dates: the people born, or the documents issued to expire, in a
//! window of dates (one index range each, never a scan of every profile or of
//! the log), which of the would-be cases exist, and how far ahead each life
//! situation has been opened.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::NaiveDate;
use sqlx::Row;

use super::reader::{Param, Statement};
use super::{Db, on_pool};

/// A record whose date falls in a window, as the openings read them: a
/// living person's birth record, or a document's issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dated {
    /// The person's code.
    pub subject: String,
    /// The date as stored (`YYYY-MM-DD`): the birth date, the expiry date.
    pub date: String,
    /// The record it came from.
    pub seq: i64,
}

impl Db {
    /// How far ahead (ms) each life situation has opened its cases.
    pub async fn openings_through(&self) -> Result<HashMap<String, i64>> {
        Ok(on_pool!(self, pool => {
            sqlx::query("SELECT life_situation, through FROM openings")
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("life_situation")?, r.try_get("through")?)))
                .collect::<Result<HashMap<String, i64>>>()?
        }))
    }

    /// Living people with a birth record born from `from` to `to` (both
    /// included), in (birth date, code) order after `after`, at most `limit`.
    pub async fn born_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        after: Option<&Dated>,
        limit: i64,
    ) -> Result<Vec<Dated>> {
        // The conditions repeat the partial index's, so both databases use it.
        let sql = "SELECT subject, birth_date AS date, birth_seq AS seq FROM profiles \
                   WHERE birth_seq IS NOT NULL AND death_date IS NULL \
                   AND birth_date >= $1 AND birth_date <= $2 \
                   AND (birth_date > $3 OR (birth_date = $3 AND subject > $4)) \
                   ORDER BY birth_date, subject LIMIT $6";
        self.dated(sql, from, to, after, limit).await
    }

    /// Issues of identity documents that expire from `from` to `to` (both
    /// included), in (expiry, seq) order after `after`, at most `limit`.
    /// Superseded and invalidated documents are among them: the profile,
    /// not this index, says which is in force.
    pub async fn documents_expiring(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        after: Option<&Dated>,
        limit: i64,
    ) -> Result<Vec<Dated>> {
        let sql = "SELECT subject, expires AS date, seq FROM document_expiry \
                   WHERE expires >= $1 AND expires <= $2 \
                   AND (expires > $3 OR (expires = $3 AND seq > $5)) \
                   ORDER BY expires, seq LIMIT $6";
        self.dated(sql, from, to, after, limit).await
    }

    /// One page of a keyset read over dates: `sql` selects `subject, date,
    /// seq` and takes $1–$2 the window, $3 the date to go on after, $4 the
    /// code or $5 the seq that breaks ties there (whichever its order uses:
    /// both are bound, with their types, so the other may go unused) and $6
    /// the page size.
    async fn dated(
        &self,
        sql: &'static str,
        from: NaiveDate,
        to: NaiveDate,
        after: Option<&Dated>,
        limit: i64,
    ) -> Result<Vec<Dated>> {
        let (date, subject, seq) =
            after.map_or((String::new(), String::new(), 0), |a| (a.date.clone(), a.subject.clone(), a.seq));
        let params = vec![
            Param::Text(from.to_string()),
            Param::Text(to.to_string()),
            Param::Text(date),
            Param::Text(subject),
            Param::Int(seq),
            Param::Int(limit),
        ];
        let read = Statement::new(sql, params);
        self.select(vec![read], |r| {
            Ok(Dated { subject: r.text("subject")?, date: r.text("date")?, seq: r.int("seq")? })
        })
        .await
    }

    /// Which of `ids` are cases in the store, in any state.
    pub async fn existing_case_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let found = self.select(Statement::in_list("SELECT id FROM cases WHERE id", ids, ""), |r| r.text("id")).await?;
        Ok(found.into_iter().collect())
    }
}
