//! Business days: public holidays and transferred working days as data
//! (`life-events/data/calendar.toml`), because deadlines and the legal
//! "served" date of an e-address document count business days, and the
//! Cabinet moves working days every year by order, not by a rule a program
//! could derive.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;

/// Holidays and transferred days for a span of years.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calendar {
    from_year: i32,
    to_year: i32,
    holidays: BTreeMap<NaiveDate, String>,
    /// Weekdays made days off by a transfer.
    off: BTreeSet<NaiveDate>,
    /// Saturdays worked instead.
    worked: BTreeSet<NaiveDate>,
    /// Where the data comes from, for `rules check` and explanations.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    source: String,
    from_year: i32,
    to_year: i32,
    #[serde(default)]
    holiday: Vec<Holiday>,
    #[serde(default)]
    transfer: Vec<Transfer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Holiday {
    date: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    off: String,
    worked: String,
    #[allow(dead_code)]
    source: String,
}

impl Calendar {
    /// The calendar shipped in `life-events/data/calendar.toml`, for rule
    /// folders without one of their own: a legal date must not silently
    /// count weekends only.
    pub fn builtin() -> &'static Calendar {
        static BUILTIN: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();
        BUILTIN.get_or_init(|| {
            Calendar::parse(include_str!("../../life-events/data/calendar.toml")).expect("the shipped calendar parses")
        })
    }

    /// Reads `path`; an error names the file and the entry.
    pub fn load(path: &Path) -> Result<Calendar, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Calendar::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the TOML text of a calendar file.
    pub fn parse(text: &str) -> Result<Calendar, String> {
        let f: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if f.from_year > f.to_year {
            return Err(format!("from_year {} is after to_year {}", f.from_year, f.to_year));
        }
        let mut cal = Calendar { from_year: f.from_year, to_year: f.to_year, source: f.source, ..Calendar::default() };
        let day = |s: &str, what: String| -> Result<NaiveDate, String> {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| format!("{what}: {s:?} is not a date YYYY-MM-DD"))?;
            if d.year() < f.from_year || d.year() > f.to_year {
                return Err(format!("{what}: {d} is outside {}..{}", f.from_year, f.to_year));
            }
            Ok(d)
        };
        for (i, h) in f.holiday.iter().enumerate() {
            let d = day(&h.date, format!("holiday[{i}]"))?;
            if cal.holidays.insert(d, h.name.clone()).is_some() {
                return Err(format!("holiday[{i}]: {d} is listed twice"));
            }
        }
        for (i, t) in f.transfer.iter().enumerate() {
            let (off, worked) =
                (day(&t.off, format!("transfer[{i}].off"))?, day(&t.worked, format!("transfer[{i}].worked"))?);
            if is_weekend(off) || cal.holidays.contains_key(&off) {
                return Err(format!("transfer[{i}].off: {off} is not a working day to give off"));
            }
            if !is_weekend(worked) || cal.holidays.contains_key(&worked) {
                return Err(format!("transfer[{i}].worked: {worked} is not a weekend day to work"));
            }
            cal.off.insert(off);
            cal.worked.insert(worked);
        }
        Ok(cal)
    }

    /// The public holiday on `d`, if any.
    pub fn holiday(&self, d: NaiveDate) -> Option<&str> {
        self.holidays.get(&d).map(String::as_str)
    }

    /// Whether `d` is a working day of public institutions; an error when
    /// the calendar does not cover its year (a guess would move deadlines).
    pub fn is_business_day(&self, d: NaiveDate) -> Result<bool, String> {
        if d.year() < self.from_year || d.year() > self.to_year {
            return Err(format!(
                "the business-day calendar covers {}..{}, not {d}; add the year's holidays to calendar.toml",
                self.from_year, self.to_year
            ));
        }
        if self.worked.contains(&d) {
            return Ok(true);
        }
        Ok(!is_weekend(d) && !self.holidays.contains_key(&d) && !self.off.contains(&d))
    }

    /// The `n`-th business day after `d` (before it when `n` is negative);
    /// `n = 0` is `d` itself when that is a business day, else the next one.
    pub fn add_business_days(&self, d: NaiveDate, n: i64) -> Result<NaiveDate, String> {
        let step = if n < 0 { -1 } else { 1 };
        let mut day = d;
        if n == 0 {
            while !self.is_business_day(day)? {
                day = day.succ_opt().ok_or("date out of range")?;
            }
            return Ok(day);
        }
        let mut left = n.abs();
        while left > 0 {
            day = day.checked_add_signed(chrono::Duration::days(step)).ok_or("date out of range")?;
            if self.is_business_day(day)? {
                left -= 1;
            }
        }
        Ok(day)
    }

    /// The day an e-address document sent on `sent` counts as served: the
    /// second business day after sending (Official Electronic Address Law).
    pub fn served_on(&self, sent: NaiveDate) -> Result<NaiveDate, String> {
        self.add_business_days(sent, 2)
    }
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn shipped() -> Calendar {
        let c = Calendar::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("life-events/data/calendar.toml")).unwrap();
        assert_eq!(&c, Calendar::builtin());
        c
    }

    #[test]
    fn the_shipped_calendar_knows_easter_midsummer_and_the_transfers() {
        let c = shipped();
        assert_eq!(c.holiday(d("2026-04-03")), Some("Lielā Piektdiena (Good Friday)"));
        assert!(!c.is_business_day(d("2026-04-06")).unwrap(), "Easter Monday");
        assert!(!c.is_business_day(d("2026-06-22")).unwrap(), "Monday given off before Līgo");
        assert!(c.is_business_day(d("2026-06-27")).unwrap(), "the Saturday worked for it");
        assert!(!c.is_business_day(d("2028-11-20")).unwrap(), "18 Nov 2028 is a Saturday: Monday off");
        assert!(c.is_business_day(d("2026-12-01")).unwrap());
    }

    #[test]
    fn served_is_the_second_business_day_after_sending() {
        let c = shipped();
        // Tuesday → Thursday.
        assert_eq!(c.served_on(d("2026-12-01")).unwrap(), d("2026-12-03"));
        // Friday → Tuesday over a weekend.
        assert_eq!(c.served_on(d("2026-12-04")).unwrap(), d("2026-12-08"));
        // Wednesday 23 Dec → 24, 25, 26 holidays, 27 Sunday: Monday 28, Tuesday 29.
        assert_eq!(c.served_on(d("2026-12-23")).unwrap(), d("2026-12-29"));
        // Wednesday 1 Apr 2026 → Thursday 2, then Good Friday, the weekend and Easter Monday: Tuesday 7.
        assert_eq!(c.served_on(d("2026-04-01")).unwrap(), d("2026-04-07"));
        // Friday 26 June 2026 → Saturday 27 is worked: 27, then Monday 29.
        assert_eq!(c.served_on(d("2026-06-26")).unwrap(), d("2026-06-29"));
    }

    #[test]
    fn counting_backwards_and_from_a_day_off() {
        let c = shipped();
        assert_eq!(c.add_business_days(d("2026-12-28"), -1).unwrap(), d("2026-12-23"));
        assert_eq!(c.add_business_days(d("2026-12-25"), 0).unwrap(), d("2026-12-28"));
        assert_eq!(c.add_business_days(d("2026-12-01"), 0).unwrap(), d("2026-12-01"));
    }

    #[test]
    fn a_year_the_data_does_not_cover_is_an_error_not_a_guess() {
        let e = shipped().served_on(d("2031-01-02")).unwrap_err();
        assert!(e.contains("covers 2025..2030"), "{e}");
    }

    #[test]
    fn bad_files_are_named_by_entry() {
        let head = "source = \"t\"\nfrom_year = 2026\nto_year = 2026\n";
        let e = Calendar::parse(&format!("{head}[[holiday]]\ndate = \"2026-02-30\"\nname = \"x\"\n")).unwrap_err();
        assert!(e.contains("holiday[0]") && e.contains("2026-02-30"), "{e}");
        let e = Calendar::parse(&format!("{head}[[holiday]]\ndate = \"2027-01-01\"\nname = \"x\"\n")).unwrap_err();
        assert!(e.contains("outside 2026..2026"), "{e}");
        let e = Calendar::parse(&format!(
            "{head}[[transfer]]\noff = \"2026-01-03\"\nworked = \"2026-01-17\"\nsource = \"s\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("transfer[0].off"), "{e}");
    }
}
