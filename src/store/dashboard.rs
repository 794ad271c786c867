//! The staff dashboard's figures that the staff API does not have: how many
//! cases were served proactively, why notices were not sent, and how many
//! people applied within some days of being told. Each counts within a
//! [`Period`], so a dashboard shows one month without reading the rest.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use sqlx::Row;

use super::citizen::tallies;
use super::{Db, Period, Tally, on_pool};

/// Cases of one life situation, and how many of them reached someone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Life situation.
    pub life_situation: String,
    /// Cases opened within the period.
    pub cases: i64,
    /// Of those, cases with at least one notice sent: the state reached the person first.
    pub reached: i64,
}

/// People told of one life situation, and how many applied soon after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Life situation.
    pub life_situation: String,
    /// Recipients with a notice of a case sent within the period (one per case and recipient).
    pub notified: i64,
    /// Of those, the ones who filed an application for one of its services within the days given.
    pub applied: i64,
}

impl Db {
    /// Cases opened within `period`, per life situation, and those reached by a sent notice.
    pub async fn served(&self, period: Period) -> Result<Vec<Served>> {
        let mut out: BTreeMap<String, Served> = BTreeMap::new();
        // The cases, then those reached: from the sent notices to their cases (a
        // primary-key lookup each), not the other way, as notices have no index
        // by case outside the queue.
        let queries = [
            "SELECT life_situation, COUNT(*) AS n FROM cases WHERE created_at >= $1 AND created_at < $2 \
             GROUP BY life_situation",
            "SELECT c.life_situation, COUNT(DISTINCT c.id) AS n FROM notices n JOIN cases c ON c.id = n.case_id \
             WHERE n.state = 'sent' AND c.created_at >= $1 AND c.created_at < $2 GROUP BY c.life_situation",
        ];
        for (i, sql) in queries.into_iter().enumerate() {
            let rows = on_pool!(self, pool => {
                tallies(&sqlx::query(sql).bind(period.from_ms).bind(period.to_ms).fetch_all(pool).await?, &["life_situation"])?
            });
            for t in rows {
                let ls = t.labels.into_iter().next().unwrap_or_default();
                let row = out.entry(ls.clone()).or_insert_with(|| Served { life_situation: ls, ..Served::default() });
                if i == 0 { row.cases = t.count } else { row.reached = t.count }
            }
        }
        Ok(out.into_values().collect())
    }

    /// Notices made within `period` that were not sent (suppressed or
    /// withdrawn), by life situation, outcome and recorded reason (personal
    /// codes in a reason are the caller's to mask).
    pub async fn suppressions(&self, period: Period) -> Result<Vec<Tally>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT life_situation, state, COALESCE(last_error, '') AS reason, COUNT(*) AS n FROM notices \
                 WHERE state IN ('suppressed', 'cancelled') AND created_at >= $1 AND created_at < $2 \
                 GROUP BY life_situation, state, COALESCE(last_error, '') ORDER BY life_situation, state, reason",
            )
            .bind(period.from_ms)
            .bind(period.to_ms)
            .fetch_all(pool)
            .await?;
            tallies(&rows, &["life_situation", "state", "reason"])?
        }))
    }

    /// Per life situation: the recipients sent a notice of a case within
    /// `period`, and how many of them filed an `application.submitted` for
    /// one of `services[life situation]` within `within_ms` of the first such
    /// notice (whoever recorded it: the citizen API, an agency, a feed).
    pub async fn applied_within(
        &self,
        period: Period,
        within_ms: i64,
        services: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<Applied>> {
        // (life situation, recipient) → the first notice sent to them, per case.
        let mut told: Vec<(String, String, i64)> = Vec::new();
        let mut filed: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT life_situation, case_id, recipient, MIN(sent_at) AS first_at FROM notices \
                 WHERE state = 'sent' AND sent_at >= $1 AND sent_at < $2 GROUP BY life_situation, case_id, recipient",
            )
            .bind(period.from_ms)
            .bind(period.to_ms)
            .fetch_all(pool)
            .await?;
            for r in rows {
                told.push((r.try_get("life_situation")?, r.try_get("recipient")?, r.try_get("first_at")?));
            }
            let rows = sqlx::query(
                "SELECT subject, occurred_at, data FROM events WHERE type = 'application.submitted' \
                 AND occurred_at >= $1 AND occurred_at < $2",
            )
            .bind(period.from_ms)
            .bind(period.to_ms.saturating_add(within_ms))
            .fetch_all(pool)
            .await?;
            for r in rows {
                let data: serde_json::Value = serde_json::from_str(&r.try_get::<String, _>("data")?)?;
                let service = data.get("service_id").and_then(|s| s.as_str()).unwrap_or_default().to_string();
                filed.entry(r.try_get("subject")?).or_default().push((r.try_get("occurred_at")?, service));
            }
        });
        let mut out: BTreeMap<String, Applied> = BTreeMap::new();
        for (ls, recipient, at) in told {
            let row =
                out.entry(ls.clone()).or_insert_with(|| Applied { life_situation: ls.clone(), ..Applied::default() });
            row.notified += 1;
            let of_ls = services.get(&ls).map(Vec::as_slice).unwrap_or_default();
            let applied = filed.get(&recipient).is_some_and(|apps| {
                apps.iter().any(|(t, s)| *t >= at && *t <= at.saturating_add(within_ms) && of_ls.contains(s))
            });
            if applied {
                row.applied += 1;
            }
        }
        Ok(out.into_values().collect())
    }
}
