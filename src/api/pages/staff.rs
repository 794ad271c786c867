//! The staff dashboard at `/staff`, signed in with a staff key pasted like a
//! citizen's token: the life situations with their versions, owners and legal
//! bases, and for a period the notices by life situation, channel and
//! outcome, the take-up of drafts, applications within some days of a
//! notice, the share of cases served proactively, why notices were not sent,
//! and the dead letters — each a table with a chart drawn here and a CSV of
//! exactly the table's rows. Persons appear masked, as in the staff API.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::session::{self, STAFF};
use super::svg::{Bar, bars};
use super::{Form, View, see_other};
use crate::api::ApiState;
use crate::mask::{mask_code, mask_codes_in};
use crate::store::Period;

/// Most dead letters a dashboard lists.
const DEAD_LETTERS: i64 = 1000;

/// The dashboard's period: `from` and `to` days (Riga), both included, and
/// the days after a notice within which an application counts.
#[derive(Deserialize, Default)]
pub(super) struct PeriodQuery {
    lang: Option<String>,
    from: Option<String>,
    to: Option<String>,
    days: Option<String>,
}

/// The period a query names (the last 30 days by default), and whether it had to fall back.
struct Chosen {
    from: NaiveDate,
    to: NaiveDate,
    days: i64,
    fallback: bool,
}

impl Chosen {
    fn of(q: &PeriodQuery, today: NaiveDate) -> Chosen {
        let day = |s: &Option<String>| {
            s.as_deref().filter(|s| !s.is_empty()).map(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d"))
        };
        let (from, to) = (day(&q.from), day(&q.to));
        let days = q.days.as_deref().filter(|s| !s.is_empty()).map(str::parse::<i64>);
        let bad = matches!(from, Some(Err(_))) || matches!(to, Some(Err(_))) || matches!(days, Some(Err(_)));
        let to = to.and_then(Result::ok).unwrap_or(today);
        let from = from.and_then(Result::ok).unwrap_or(to - Duration::days(29));
        let days = days.and_then(Result::ok).unwrap_or(30).clamp(1, 366);
        if from > to {
            return Chosen { from: to - Duration::days(29), to, days, fallback: true };
        }
        Chosen { from, to, days, fallback: bad }
    }

    /// Midnight Riga time of `from`, to midnight after `to`.
    fn period(&self) -> Period {
        let midnight = |d: NaiveDate| {
            chrono_tz::Europe::Riga
                .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
                .earliest()
                .map_or(i64::MIN, |t| t.timestamp_millis())
        };
        Period { from_ms: midnight(self.from), to_ms: midnight(self.to + Duration::days(1)) }
    }
}

/// A column: its name in the CSV, its label's text key on the page.
#[derive(Serialize)]
struct Column {
    name: &'static str,
    label: &'static str,
}

/// One table of the dashboard, as shown and as downloaded.
#[derive(Serialize)]
struct Table {
    id: &'static str,
    heading: String,
    intro: Option<&'static str>,
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    chart: Option<String>,
}

fn columns(cols: &[(&'static str, &'static str)]) -> Vec<Column> {
    cols.iter().map(|(name, label)| Column { name, label }).collect()
}

fn share(part: i64, whole: i64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// A share as the CSV carries it (the page shows it as a percentage).
fn ratio(v: f64) -> String {
    format!("{v:.4}")
}

/// The staff key of the session, checked as the staff API checks it.
async fn staff_key(st: &ApiState, headers: &HeaderMap) -> Option<String> {
    let key = session::cookie(headers, STAFF)?;
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}")).ok()?);
    crate::api::staff::staff(st, &h).await.ok().map(|_| key.to_string())
}

/// The tables of the dashboard, in the page's order.
const TABLES: [&str; 7] =
    ["life-situations", "notices", "take-up", "applications", "served", "suppressions", "dead-letters"];

/// Every table for `chosen`, in the page's order.
async fn tables(st: &ApiState, key: &str, chosen: &Chosen, view: &View) -> anyhow::Result<Vec<Table>> {
    let mut out = Vec::new();
    for id in TABLES {
        out.extend(table(st, key, chosen, view, id).await?);
    }
    Ok(out)
}

/// The table `id` for `chosen`, computed alone (a CSV download reads only its own figures); none for an unknown id.
async fn table(st: &ApiState, key: &str, chosen: &Chosen, view: &View, id: &str) -> anyhow::Result<Option<Table>> {
    let db = &st.app.db;
    let period = chosen.period();
    let lang = view.lang;
    let name_of = |id: &str| st.app.rules.situation_name(id, lang);
    Ok(Some(match id {
        "life-situations" => {
            // The life situations, as the staff API lists them.
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}"))?);
            let r = crate::api::staff::life_situations(State(st.clone()), h).await;
            let body = axum::body::to_bytes(r.into_body(), 16 * 1024 * 1024).await?;
            let ls: Value = serde_json::from_slice(&body)?;
            let rows = ls["life_situations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
                    let name = d["name"].get(lang).and_then(Value::as_str).unwrap_or("").to_string();
                    let valid = match d["valid_to"].as_str() {
                        Some(to) => format!("{} – {to}", s("valid_from")),
                        None => format!("{} –", s("valid_from")),
                    };
                    vec![s("id"), d["version"].to_string(), s("status"), name, s("owner"), s("legal_basis"), valid]
                })
                .collect();
            Table {
                id: "life-situations",
                heading: view.t("ls_heading"),
                intro: None,
                columns: columns(&[
                    ("id", "col_id"),
                    ("version", "col_version"),
                    ("status", "col_status"),
                    ("name", "col_name"),
                    ("owner", "col_owner"),
                    ("legal_basis", "col_legal"),
                    ("in_force", "col_valid"),
                ]),
                rows,
                chart: None,
            }
        }
        "notices" => {
            let notices = db.notice_stats(period).await?;
            let mut stacked: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
            for t in &notices {
                stacked.entry(t.labels[0].clone()).or_default().push((t.labels[2].clone(), t.count as f64));
            }
            let heading = view.t("notices_heading");
            let chart = bars(
                &heading,
                &stacked
                    .into_iter()
                    .map(|(ls, parts)| Bar { label: name_of(&ls), parts: merge(parts) })
                    .collect::<Vec<_>>(),
                false,
            );
            Table {
                id: "notices",
                chart: (!notices.is_empty()).then_some(chart),
                heading,
                intro: None,
                columns: columns(&[
                    ("life_situation", "col_life_situation"),
                    ("channel", "col_channel"),
                    ("outcome", "col_outcome"),
                    ("count", "col_count"),
                ]),
                rows: notices
                    .iter()
                    .map(|t| vec![t.labels[0].clone(), t.labels[1].clone(), t.labels[2].clone(), t.count.to_string()])
                    .collect(),
            }
        }
        "take-up" => {
            let take_up = db.take_up(st.app.clock.now_ms(), period).await?;
            let heading = view.t("takeup_heading");
            let chart_rows: Vec<Bar> = take_up
                .iter()
                .map(|t| Bar {
                    label: t.service_id.clone(),
                    parts: vec![(view.t("col_takeup"), share(t.submitted, t.offered))],
                })
                .collect();
            Table {
                id: "take-up",
                chart: (!take_up.is_empty()).then(|| bars(&heading, &chart_rows, true)),
                heading,
                intro: None,
                columns: columns(&[
                    ("life_situation", "col_life_situation"),
                    ("service_id", "col_service"),
                    ("offered", "col_offered"),
                    ("opened", "col_opened"),
                    ("submitted", "col_submitted"),
                    ("declined", "col_declined"),
                    ("expired", "col_expired"),
                    ("take_up", "col_takeup"),
                ]),
                rows: take_up
                    .iter()
                    .map(|t| {
                        vec![
                            t.life_situation.clone(),
                            t.service_id.clone(),
                            t.offered.to_string(),
                            t.opened.to_string(),
                            t.submitted.to_string(),
                            t.declined.to_string(),
                            t.expired.to_string(),
                            ratio(share(t.submitted, t.offered)),
                        ]
                    })
                    .collect(),
            }
        }
        "applications" => {
            let services: HashMap<String, Vec<String>> =
                st.app.rules.situations.iter().map(|d| (d.id.clone(), d.services.clone())).collect();
            let applied = db.applied_within(period, chosen.days * 24 * 3600 * 1000, &services).await?;
            shares(
                view,
                ("applications", view.t("applied_heading").replace("{days}", &chosen.days.to_string()), None),
                [("notified", "col_notified"), ("applied", "col_applied")],
                applied.into_iter().map(|a| (a.life_situation, a.notified, a.applied)).collect(),
                &name_of,
            )
        }
        "served" => {
            let served = db.served(period).await?;
            shares(
                view,
                ("served", view.t("served_heading"), Some("served_intro")),
                [("cases", "col_cases"), ("reached", "col_reached")],
                served.into_iter().map(|s| (s.life_situation, s.cases, s.reached)).collect(),
                &name_of,
            )
        }
        "suppressions" => {
            // Reasons may name a person; masked, the same reason for two people is one row.
            let mut reasons: BTreeMap<(String, String, String), i64> = BTreeMap::new();
            for s in db.suppressions(period).await? {
                let [ls, outcome, reason] =
                    <[String; 3]>::try_from(s.labels).map_err(|_| anyhow::anyhow!("three labels"))?;
                *reasons.entry((ls, outcome, mask_codes_in(&reason))).or_default() += s.count;
            }
            let mut by_reason: BTreeMap<String, f64> = BTreeMap::new();
            for ((_, _, reason), n) in &reasons {
                *by_reason.entry(reason.clone()).or_default() += *n as f64;
            }
            let heading = view.t("supp_heading");
            let chart_rows: Vec<Bar> =
                by_reason.into_iter().map(|(r, n)| Bar { label: r, parts: vec![(view.t("col_count"), n)] }).collect();
            Table {
                id: "suppressions",
                chart: (!reasons.is_empty()).then(|| bars(&heading, &chart_rows, false)),
                heading,
                intro: None,
                columns: columns(&[
                    ("life_situation", "col_life_situation"),
                    ("outcome", "col_outcome"),
                    ("reason", "col_reason"),
                    ("count", "col_count"),
                ]),
                rows: reasons.into_iter().map(|((ls, o, r), n)| vec![ls, o, r, n.to_string()]).collect(),
            }
        }
        "dead-letters" => {
            let dead = db.list_notices_within(Some("dead"), period, DEAD_LETTERS).await?;
            Table {
                id: "dead-letters",
                heading: view.t("dead_heading"),
                intro: None,
                columns: columns(&[
                    ("notice_id", "col_notice"),
                    ("life_situation", "col_life_situation"),
                    ("recipient", "col_recipient"),
                    ("channel", "col_channel"),
                    ("attempts", "col_attempts"),
                    ("error", "col_error"),
                ]),
                rows: dead
                    .into_iter()
                    .map(|d| {
                        vec![
                            d.notice_id,
                            d.life_situation,
                            mask_code(&d.recipient),
                            d.channel.unwrap_or_default(),
                            d.attempts.to_string(),
                            d.last_error.as_deref().map(mask_codes_in).unwrap_or_default(),
                        ]
                    })
                    .collect(),
                chart: None,
            }
        }
        _ => return Ok(None),
    }))
}

/// A table of a part of a whole per life situation (people told and those
/// who applied; cases and those reached), its share, and a chart of the share.
fn shares(
    view: &View,
    (id, heading, intro): (&'static str, String, Option<&'static str>),
    [whole, part]: [(&'static str, &'static str); 2],
    rows: Vec<(String, i64, i64)>,
    name_of: &dyn Fn(&str) -> String,
) -> Table {
    let bars_of: Vec<Bar> = rows
        .iter()
        .map(|(ls, w, p)| Bar { label: name_of(ls), parts: vec![(view.t("col_share"), share(*p, *w))] })
        .collect();
    Table {
        id,
        chart: (!rows.is_empty()).then(|| bars(&heading, &bars_of, true)),
        heading,
        intro,
        columns: columns(&[("life_situation", "col_life_situation"), whole, part, ("share", "col_share")]),
        rows: rows.into_iter().map(|(ls, w, p)| vec![ls, w.to_string(), p.to_string(), ratio(share(p, w))]).collect(),
    }
}

/// Adds up the parts of one bar that share a name (one outcome on several channels).
fn merge(parts: Vec<(String, f64)>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (name, v) in parts {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(p) => p.1 += v,
            None => out.push((name, v)),
        }
    }
    out
}

/// Shares as percentages on the page (the CSV keeps the ratio).
fn for_page(mut t: Table) -> Table {
    let shares: Vec<usize> =
        t.columns.iter().enumerate().filter(|(_, c)| matches!(c.name, "share" | "take_up")).map(|(i, _)| i).collect();
    for row in &mut t.rows {
        for &i in &shares {
            if let Ok(v) = row[i].parse::<f64>() {
                row[i] = format!("{:.0} %", v * 100.0);
            }
        }
    }
    t
}

fn today(st: &ApiState) -> NaiveDate {
    crate::clock::from_ms(st.app.clock.now_ms()).with_timezone(&chrono_tz::Europe::Riga).date_naive()
}

/// `GET /staff`: the dashboard, or the way to sign in.
pub(super) async fn dashboard(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let view = View::new(&headers, q.lang.as_deref(), None);
    let Some(key) = staff_key(&st, &headers).await else {
        return view.render(StatusCode::OK, "signin.html", json!({ "staff": true, "bad": false, "out": false }));
    };
    let chosen = Chosen::of(&q, today(&st));
    let tables = match tables(&st, &key, &chosen, &view).await {
        Ok(t) => t.into_iter().map(for_page).collect::<Vec<_>>(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the dashboard cannot reach the store");
            return view.error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        }
    };
    let query = format!("from={}&to={}&days={}", chosen.from, chosen.to, chosen.days);
    view.render(
        StatusCode::OK,
        "staff.html",
        json!({
            "signout": "/staff/signout", "tables": tables, "query": query, "from": chosen.from.to_string(), "to": chosen.to.to_string(),
            "days": chosen.days, "fallback": chosen.fallback,
        }),
    )
}

/// `GET /staff/export/{table}`: one table of the dashboard as CSV, for the same period.
pub(super) async fn export(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let view = View::new(&headers, q.lang.as_deref(), None);
    let Some(key) = staff_key(&st, &headers).await else { return view.error(StatusCode::UNAUTHORIZED, "staff_bad") };
    let chosen = Chosen::of(&q, today(&st));
    let id = file.strip_suffix(".csv").unwrap_or(&file);
    let t = match table(&st, &key, &chosen, &view, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return view.error(StatusCode::NOT_FOUND, "not_found"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the dashboard cannot reach the store");
            return view.error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        }
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let written = w
        .write_record(t.columns.iter().map(|c| c.name))
        .and_then(|_| t.rows.iter().try_for_each(|r| w.write_record(r)));
    let body =
        match written.map_err(anyhow::Error::from).and_then(|_| w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "a CSV could not be written");
                return view.error(StatusCode::INTERNAL_SERVER_ERROR, "unavailable");
            }
        };
    let name = format!("attachment; filename=\"proactive-{}-{}-{}.csv\"", t.id, chosen.from, chosen.to);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

/// `POST /staff/signin`: a pasted staff key becomes the session cookie.
pub(super) async fn signin(State(st): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let view = View::new(&headers, None, None);
    if !session::same_site_post(&headers, form.get("csrf")) {
        return view.error(StatusCode::FORBIDDEN, "csrf_failed");
    }
    let key = form.get("key").unwrap_or("");
    let mut h = HeaderMap::new();
    let valid = match HeaderValue::from_str(&format!("Bearer {key}")) {
        Ok(v) => {
            h.insert(header::AUTHORIZATION, v);
            crate::api::staff::staff(&st, &h).await.is_ok()
        }
        Err(_) => false,
    };
    if !valid {
        return view.render(
            StatusCode::UNAUTHORIZED,
            "signin.html",
            json!({ "staff": true, "bad": true, "out": false }),
        );
    }
    see_other("/staff", vec![session::set_cookie(&headers, STAFF, key, "/staff", None)])
}

/// `POST /staff/signout`.
pub(super) async fn signout(headers: HeaderMap, body: Bytes) -> Response {
    super::sign_out(&headers, &body, "/staff", &[(STAFF, "/staff")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: &str, to: &str, days: &str) -> PeriodQuery {
        PeriodQuery { lang: None, from: Some(from.into()), to: Some(to.into()), days: Some(days.into()) }
    }

    #[test]
    fn a_period_is_whole_riga_days_with_a_fallback_for_nonsense() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let c = Chosen::of(&PeriodQuery::default(), today);
        assert_eq!(
            (c.from.to_string(), c.to.to_string(), c.days, c.fallback),
            ("2026-10-25".into(), "2026-11-23".into(), 30, false)
        );
        let c = Chosen::of(&q("2026-11-01", "2026-11-30", "14"), today);
        let p = c.period();
        // Riga is UTC+2 in November: midnight there is 22:00 UTC the day before.
        assert_eq!(crate::clock::from_ms(p.from_ms).to_rfc3339(), "2026-10-31T22:00:00+00:00");
        assert_eq!(crate::clock::from_ms(p.to_ms).to_rfc3339(), "2026-11-30T22:00:00+00:00");
        assert_eq!(c.days, 14);
        assert!(Chosen::of(&q("yesterday", "", ""), today).fallback);
        let backwards = Chosen::of(&q("2026-11-20", "2026-11-01", ""), today);
        assert!(backwards.fallback && backwards.from < backwards.to);
        assert_eq!(Chosen::of(&q("", "", "9999"), today).days, 366);
    }
}
