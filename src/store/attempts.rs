//! Delivery outcomes: a notice's new state, its attempt row and its audit
//! record, for a whole group of notices in one transaction, so that the
//! outbox's writes do not cap how fast the gateways can be fed.

use std::collections::HashMap;

use anyhow::{Context, Result};
use sqlx::{QueryBuilder, Row};

use super::audit::append_audit;
use super::{Db, NoticeState, on_pool, statement_chunks};
use crate::audit::{Audit, Entry};

/// What one attempt at a claimed notice came to.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Notice id.
    pub notice_id: String,
    /// The channel tried; none when no channel was (no route, no definition).
    pub channel: Option<String>,
    /// The notice's new state (`pending` for a retry).
    pub state: NoticeState,
    /// The gateway's id for what it accepted.
    pub provider_id: Option<String>,
    /// Why it failed, was suppressed or dead-lettered.
    pub error: Option<String>,
    /// When a retry may be claimed (ms).
    pub retry_at: Option<i64>,
    /// The legal served day of a sent e-address document.
    pub served_on: Option<String>,
    /// When to first ask the gateway for a receipt (ms).
    pub receipt_poll_at: Option<i64>,
    /// When the outcome was known (ms).
    pub at: i64,
}

impl Attempt {
    /// An outcome with nothing but its state.
    pub fn new(notice_id: &str, channel: Option<&str>, state: NoticeState, at: i64) -> Attempt {
        Attempt {
            notice_id: notice_id.to_string(),
            channel: channel.map(str::to_string),
            state,
            provider_id: None,
            error: None,
            retry_at: None,
            served_on: None,
            receipt_poll_at: None,
            at,
        }
    }

    /// The same with its error.
    pub fn error(mut self, e: &str) -> Attempt {
        self.error = Some(e.to_string());
        self
    }

    /// The same with the gateway's id.
    pub fn provider(mut self, id: &str) -> Attempt {
        self.provider_id = Some(id.to_string());
        self
    }

    /// The same, to be retried at `at`.
    pub fn retry_at(mut self, at: i64) -> Attempt {
        self.retry_at = Some(at);
        self
    }

    /// The same, followed for its receipt from `poll_at`, served on `served_on`.
    pub fn followed(mut self, served_on: Option<String>, poll_at: i64) -> Attempt {
        self.served_on = served_on;
        self.receipt_poll_at = Some(poll_at);
        self
    }

    /// The attempt row's and audit record's word for it.
    pub fn outcome(&self) -> &'static str {
        match self.state {
            NoticeState::Sent => "sent",
            NoticeState::Pending => "retry",
            NoticeState::Dead => "dead",
            NoticeState::Suppressed if self.channel.is_some() => "skipped",
            NoticeState::Suppressed => "suppressed",
            _ => "other",
        }
    }
}

/// Binds per notice in the update.
const UPDATE_COLUMNS: usize = 9;

impl Db {
    /// Records `attempts` with their audit records in one transaction: each
    /// notice moves to its state (a retry of a notice withdrawn meanwhile is
    /// cancelled instead), and each tried channel gets an attempt row.
    pub async fn record_attempts(&self, audit: &Audit, attempts: Vec<(Attempt, Entry)>) -> Result<()> {
        let n = attempts.len();
        self.write_attempts(audit, attempts).await.with_context(|| format!("recording {n} delivery outcomes"))
    }

    async fn write_attempts(&self, audit: &Audit, attempts: Vec<(Attempt, Entry)>) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let now = attempts.iter().map(|(a, _)| a.at).max().unwrap_or_default();
        let (attempts, entries): (Vec<Attempt>, Vec<Entry>) = attempts.into_iter().unzip();
        let tried: Vec<&Attempt> = attempts.iter().filter(|a| a.channel.is_some()).collect();
        let due: HashMap<String, i64> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut due = HashMap::with_capacity(attempts.len());
            for chunk in statement_chunks(&attempts, UPDATE_COLUMNS) {
                let mut qb = QueryBuilder::new("WITH v(nid, nstate, nchannel, nerror, nretry, nat, nprovider, nserved, npoll) AS (");
                // Cast, so PostgreSQL knows the types of a `VALUES` list's
                // columns (SQLite reads the same casts as affinities).
                qb.push_values(chunk, |mut b, a| {
                    b.push("CAST(").push_bind_unseparated(a.notice_id.as_str()).push_unseparated(" AS TEXT)");
                    b.push("CAST(").push_bind_unseparated(a.state.as_str()).push_unseparated(" AS TEXT)");
                    b.push("CAST(").push_bind_unseparated(a.channel.as_deref()).push_unseparated(" AS TEXT)");
                    b.push("CAST(").push_bind_unseparated(a.error.as_deref()).push_unseparated(" AS TEXT)");
                    b.push("CAST(").push_bind_unseparated(a.retry_at).push_unseparated(" AS BIGINT)");
                    b.push("CAST(").push_bind_unseparated(a.at).push_unseparated(" AS BIGINT)");
                    b.push("CAST(").push_bind_unseparated(a.provider_id.as_deref()).push_unseparated(" AS TEXT)");
                    b.push("CAST(").push_bind_unseparated(a.served_on.as_deref()).push_unseparated(" AS TEXT)");
                    b.push("CAST(").push_bind_unseparated(a.receipt_poll_at).push_unseparated(" AS BIGINT)");
                });
                // `push_values` opens with VALUES, which a CTE's body may be.
                qb.push(
                    ") UPDATE notices SET \
                     state = CASE WHEN v.nstate = 'pending' AND withdrawn IS NOT NULL THEN 'cancelled' ELSE v.nstate END, \
                     last_error = CASE WHEN v.nstate = 'pending' AND withdrawn IS NOT NULL THEN withdrawn ELSE v.nerror END, \
                     channel = COALESCE(v.nchannel, channel), lease_until = NULL, available_at = COALESCE(v.nretry, available_at), \
                     sent_at = CASE WHEN v.nstate = 'sent' THEN v.nat ELSE sent_at END, \
                     provider_id = COALESCE(v.nprovider, provider_id), served_on = COALESCE(v.nserved, served_on), \
                     receipt_status = CASE WHEN v.npoll IS NULL THEN receipt_status ELSE 'accepted' END, \
                     receipt_poll_at = v.npoll FROM v WHERE notices.id = v.nid \
                     RETURNING notices.id, CASE WHEN notices.created_at > notices.due_at THEN notices.created_at ELSE notices.due_at END",
                );
                for r in qb.build().fetch_all(&mut *tx).await? {
                    due.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?);
                }
            }
            for chunk in statement_chunks(&tried, 6) {
                let mut qb =
                    QueryBuilder::new("INSERT INTO deliveries (notice_id, channel, attempted_at, outcome, provider_id, error) ");
                qb.push_values(chunk, |mut b, a| {
                    b.push_bind(a.notice_id.as_str())
                        .push_bind(a.channel.as_deref())
                        .push_bind(a.at)
                        .push_bind(a.outcome())
                        .push_bind(a.provider_id.as_deref())
                        .push_bind(a.error.as_deref());
                });
                qb.build().execute(&mut *tx).await?;
            }
            let lane = append_audit!(tx, audit, entries, now);
            tx.commit().await?;
            if let Some(l) = lane {
                audit.give_back(l);
            }
            due
        });
        // From when it was due (or made, if later): the delivery latency.
        for a in &attempts {
            if let (NoticeState::Sent, Some(channel), Some(due)) = (a.state, &a.channel, due.get(&a.notice_id)) {
                let seconds = (a.at - due).max(0) as f64 / 1000.0;
                crate::metrics::get().delivery_latency.with_label_values(&[channel]).observe(seconds);
            }
        }
        Ok(())
    }
}
