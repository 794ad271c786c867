//! When steps are due: offsets from an anchor date (`-90d`, `+{age}y -3m`),
//! durations after the trigger, Riga times of day, and parameters whose
//! value depends on the day (a law changes on a date).

use std::collections::BTreeMap;

use chrono::{Months, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Europe::Riga;

/// One term of an offset: a signed count of a unit, the count literal or a parameter.
#[derive(Clone, Debug, PartialEq)]
struct Term {
    negative: bool,
    amount: Amount,
    unit: Unit,
}

#[derive(Clone, Debug, PartialEq)]
enum Amount {
    Lit(i64),
    Param(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Unit {
    Years,
    Months,
    Weeks,
    Days,
}

/// A parsed `at` offset such as `-90d` or `+{pension_age_years}y -3m`.
#[derive(Clone, Debug, PartialEq)]
pub struct Offset(Vec<Term>);

impl Offset {
    /// Parses the offset grammar: terms `[+-]N UNIT`, UNIT one of `y m w d`,
    /// N digits or `{param}`; spaces between terms are allowed.
    pub fn parse(text: &str) -> Result<Offset, String> {
        let mut terms = Vec::new();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err("an offset needs at least one term, e.g. -90d or +7y".into());
        }
        while !rest.is_empty() {
            let (negative, after_sign) = match rest.as_bytes()[0] {
                b'-' => (true, &rest[1..]),
                b'+' => (false, &rest[1..]),
                _ if terms.is_empty() => (false, rest),
                _ => return Err(format!("expected + or - before {rest:?}")),
            };
            let after_sign = after_sign.trim_start();
            let (amount, after_amount) = if let Some(p) = after_sign.strip_prefix('{') {
                let end = p.find('}').ok_or_else(|| format!("unclosed {{ in {text:?}"))?;
                (Amount::Param(p[..end].trim().to_string()), &p[end + 1..])
            } else {
                let end = after_sign.find(|c: char| !c.is_ascii_digit()).unwrap_or(after_sign.len());
                if end == 0 {
                    return Err(format!("expected a number or {{param}} in {text:?}"));
                }
                let n = after_sign[..end].parse().map_err(|e| format!("{text:?}: {e}"))?;
                (Amount::Lit(n), &after_sign[end..])
            };
            let after_amount = after_amount.trim_start();
            let unit = match after_amount.chars().next() {
                Some('y') => Unit::Years,
                Some('m') => Unit::Months,
                Some('w') => Unit::Weeks,
                Some('d') => Unit::Days,
                _ => return Err(format!("expected a unit y, m, w or d in {text:?}")),
            };
            terms.push(Term { negative, amount, unit });
            rest = after_amount[1..].trim_start();
        }
        Ok(Offset(terms))
    }

    /// The parameters the offset names.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|t| match &t.amount {
            Amount::Param(p) => Some(p.as_str()),
            Amount::Lit(_) => None,
        })
    }

    /// `date` moved by the offset; parameters are read with `param`.
    pub fn apply(&self, date: NaiveDate, param: &dyn Fn(&str) -> Option<i64>) -> Result<NaiveDate, String> {
        let mut d = date;
        for t in &self.0 {
            let n = match &t.amount {
                Amount::Lit(n) => *n,
                Amount::Param(p) => param(p).ok_or_else(|| format!("parameter {p} is not a whole number"))?,
            };
            let n = if t.negative { -n } else { n };
            let moved = match t.unit {
                Unit::Years => add_months(d, n * 12),
                Unit::Months => add_months(d, n),
                Unit::Weeks => d.checked_add_signed(chrono::Duration::days(7 * n)),
                Unit::Days => d.checked_add_signed(chrono::Duration::days(n)),
            };
            d = moved.ok_or_else(|| format!("{date} moved by the offset is out of range"))?;
        }
        Ok(d)
    }
}

/// `d` plus `n` calendar months (the last day of a shorter month when needed).
pub fn add_months(d: NaiveDate, n: i64) -> Option<NaiveDate> {
    let m = Months::new(n.unsigned_abs().min(u32::MAX as u64) as u32);
    if n >= 0 { d.checked_add_months(m) } else { d.checked_sub_months(m) }
}

/// Parses `HH:MM` (a step's time of day).
pub fn parse_time(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| format!("time {text:?} is not HH:MM"))
}

/// The default time of day a dated step is due: mornings, when offices open.
pub fn default_time() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 0, 0).expect("09:00")
}

/// Milliseconds since the epoch of `date` at `time` in Riga (the earlier
/// instant when a DST change makes it ambiguous, the next hour when it does not exist).
pub fn riga_ms(date: NaiveDate, time: NaiveTime) -> i64 {
    let naive = date.and_time(time);
    match Riga.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
        chrono::LocalResult::None => Riga
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map_or(0, |t| t.timestamp_millis()),
    }
}

/// The value of parameter `v` on `day`: plain values stand always; a table
/// `{ source, values = [{ from, to?, value }] }` gives the value in force that day.
pub fn param_on(v: &toml::Value, day: NaiveDate) -> Option<serde_json::Value> {
    let Some(values) = v.as_table().and_then(|t| t.get("values")).and_then(|x| x.as_array()) else {
        return serde_json::to_value(v).ok();
    };
    let date = |e: &toml::Value, k: &str| {
        e.get(k).and_then(|x| match x {
            toml::Value::Datetime(d) => {
                d.date.map(|d| NaiveDate::from_ymd_opt(d.year as i32, d.month.into(), d.day.into()))
            }
            toml::Value::String(s) => Some(NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()),
            _ => None,
        })?
    };
    values
        .iter()
        .filter(|e| date(e, "from").is_none_or(|f| f <= day) && date(e, "to").is_none_or(|t| day < t))
        .max_by_key(|e| date(e, "from"))
        .and_then(|e| e.get("value"))
        .and_then(|x| serde_json::to_value(x).ok())
}

/// Every parameter of a definition as in force on `day`, as JSON.
pub fn params_on(params: &BTreeMap<String, toml::Value>, day: NaiveDate) -> serde_json::Map<String, serde_json::Value> {
    params.iter().filter_map(|(k, v)| param_on(v, day).map(|x| (k.clone(), x))).collect()
}

/// Checks one parameter's shape: a plain value, or a table with `source` and
/// `values` entries that each have a `value` and real dates.
pub fn check_param(name: &str, v: &toml::Value) -> Result<(), String> {
    let Some(t) = v.as_table() else { return Ok(()) };
    let Some(values) = t.get("values") else {
        return Err(format!("params.{name}: a table needs `values = [{{ from = …, value = … }}]`"));
    };
    let Some(values) = values.as_array() else {
        return Err(format!("params.{name}.values: must be a list"));
    };
    if !t.contains_key("source") {
        return Err(format!("params.{name}: say where the figure comes from with `source = \"…\"`"));
    }
    for (i, e) in values.iter().enumerate() {
        if e.get("value").is_none() {
            return Err(format!("params.{name}.values[{i}]: has no `value`"));
        }
        for k in ["from", "to"] {
            if let Some(x) = e.get(k) {
                let ok = match x {
                    toml::Value::Datetime(d) => d.date.is_some() && d.time.is_none(),
                    toml::Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
                    _ => false,
                };
                if !ok {
                    return Err(format!("params.{name}.values[{i}].{k}: must be a date YYYY-MM-DD"));
                }
            }
        }
    }
    Ok(())
}

/// A whole-number parameter on `day` (for offsets such as `{pension_age_years}y`).
pub fn int_param(params: &BTreeMap<String, toml::Value>, name: &str, day: NaiveDate) -> Option<i64> {
    let v = param_on(params.get(name)?, day)?;
    v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn offsets_move_by_calendar_units_and_parameters() {
        let none = |_: &str| None;
        assert_eq!(Offset::parse("-90d").unwrap().apply(d("2027-03-01"), &none).unwrap(), d("2026-12-01"));
        assert_eq!(Offset::parse("+7y").unwrap().apply(d("2019-02-28"), &none).unwrap(), d("2026-02-28"));
        assert_eq!(Offset::parse("+18y").unwrap().apply(d("2008-02-29"), &none).unwrap(), d("2026-02-28"));
        let age = |p: &str| (p == "pension_age_years").then_some(65);
        let o = Offset::parse("+{pension_age_years}y -3m").unwrap();
        assert_eq!(o.apply(d("1961-05-31"), &age).unwrap(), d("2026-02-28"));
        assert_eq!(o.params().collect::<Vec<_>>(), ["pension_age_years"]);
        assert_eq!(Offset::parse("2w").unwrap().apply(d("2026-12-01"), &none).unwrap(), d("2026-12-15"));
    }

    #[test]
    fn bad_offsets_say_what_is_wrong() {
        assert!(Offset::parse("").unwrap_err().contains("at least one term"));
        assert!(Offset::parse("-90").unwrap_err().contains("unit"));
        assert!(Offset::parse("-90x").unwrap_err().contains("unit"));
        assert!(Offset::parse("-{age y").unwrap_err().contains("unclosed"));
        assert!(Offset::parse("+7y 3m").unwrap_err().contains("+ or -"));
        let o = Offset::parse("+{age}y").unwrap();
        assert!(o.apply(d("2000-01-01"), &|_| None).unwrap_err().contains("age"));
    }

    #[test]
    fn parameters_take_the_value_in_force_on_the_day() {
        let v: toml::Value = toml::from_str::<toml::Table>(
            "p = { source = \"law\", values = [{ from = 2024-01-01, value = 10 }, { from = 2027-01-01, value = 12 }] }",
        )
        .unwrap()["p"]
            .clone();
        assert_eq!(param_on(&v, d("2026-12-31")), Some(serde_json::json!(10)));
        assert_eq!(param_on(&v, d("2027-01-01")), Some(serde_json::json!(12)));
        assert_eq!(param_on(&v, d("2023-12-31")), None);
        assert!(check_param("p", &v).is_ok());
        let bad: toml::Value = toml::from_str::<toml::Table>("p = { values = [{ value = 1 }] }").unwrap()["p"].clone();
        assert!(check_param("p", &bad).unwrap_err().contains("source"));
    }

    #[test]
    fn riga_times_follow_summer_time() {
        let winter = riga_ms(d("2026-12-01"), default_time());
        assert_eq!(chrono::DateTime::from_timestamp_millis(winter).unwrap().to_rfc3339(), "2026-12-01T07:00:00+00:00");
        let summer = riga_ms(d("2026-07-01"), default_time());
        assert_eq!(chrono::DateTime::from_timestamp_millis(summer).unwrap().to_rfc3339(), "2026-07-01T06:00:00+00:00");
    }
}
