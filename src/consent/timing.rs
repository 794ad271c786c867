//! When a notice may go: quiet hours in Europe/Riga, during which email and
//! SMS wait for the morning (deferred, never dropped), and public holidays,
//! on which they wait for the next working morning.

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Europe::Riga;

/// A daily window of local (Riga) time, e.g. 21:00–08:00 across midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}–{} Riga time", self.start.format("%H:%M"), self.end.format("%H:%M"))
    }
}

impl QuietHours {
    /// Parses `HH:MM-HH:MM`; `none` or an empty text means no quiet hours.
    pub fn parse(text: &str) -> Result<Option<QuietHours>, String> {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let (a, b) = t.split_once('-').ok_or_else(|| format!("{t:?} is not HH:MM-HH:MM (e.g. 21:00-08:00)"))?;
        let time = |s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M")
                .map_err(|_| format!("{:?} in {t:?} is not a time HH:MM", s.trim()))
        };
        let (start, end) = (time(a)?, time(b)?);
        if start == end {
            return Err(format!("{t:?} is a window of no length; say none to have no quiet hours"));
        }
        Ok(Some(QuietHours { start, end }))
    }

    /// If `at` falls inside the window, the moment it ends (the next local
    /// `end`, summer or winter time as that day has it); otherwise none.
    pub fn holds_until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&Riga);
        let t = local.time();
        let inside =
            if self.start < self.end { self.start <= t && t < self.end } else { t >= self.start || t < self.end };
        if !inside {
            return None;
        }
        let day = if t < self.end { local.date_naive() } else { local.date_naive().succ_opt()? };
        DateTime::from_timestamp_millis(crate::engine::schedule::riga_ms(day, self.end))
    }
}

/// When a non-urgent email or SMS due at `at` may go instead, and why: quiet
/// hours, or a public holiday in `holidays` (then the morning after it, the
/// end of the quiet hours or 08:00). None: it may go now.
pub fn held_until(
    quiet: Option<&QuietHours>,
    holidays: Option<&crate::engine::calendar::Calendar>,
    at: DateTime<Utc>,
) -> Option<(DateTime<Utc>, String)> {
    let riga = |t: DateTime<Utc>| t.with_timezone(&Riga).format("%Y-%m-%d %H:%M").to_string();
    if let Some(cal) = holidays {
        let today = at.with_timezone(&Riga).date_naive();
        if let Some(name) = cal.holiday(today) {
            let mut day = today.succ_opt()?;
            while cal.holiday(day).is_some() {
                day = day.succ_opt()?;
            }
            let morning = quiet.map_or(NaiveTime::from_hms_opt(8, 0, 0)?, |q| q.end);
            let until = DateTime::from_timestamp_millis(crate::engine::schedule::riga_ms(day, morning))?;
            return Some((until, format!("deferred: public holiday ({name}) until {}", riga(until))));
        }
    }
    let q = quiet?;
    let until = q.holds_until(at)?;
    Some((until, format!("deferred: quiet hours ({q}) until {}", riga(until))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_window_across_midnight_holds_until_the_morning() {
        let q = QuietHours::parse("21:00-08:00").unwrap().unwrap();
        assert_eq!(q.holds_until(at("2026-12-01T20:59:00+02:00")), None);
        assert_eq!(q.holds_until(at("2026-12-01T21:00:00+02:00")), Some(at("2026-12-02T08:00:00+02:00")));
        assert_eq!(q.holds_until(at("2026-12-02T03:00:00+02:00")), Some(at("2026-12-02T08:00:00+02:00")));
        assert_eq!(q.holds_until(at("2026-12-02T08:00:00+02:00")), None);
    }

    #[test]
    fn the_morning_is_local_time_across_a_summer_time_change() {
        let q = QuietHours::parse("21:00-08:00").unwrap().unwrap();
        // Riga moves to summer time in the night of 28–29 March 2026.
        assert_eq!(q.holds_until(at("2026-03-28T22:00:00+02:00")), Some(at("2026-03-29T08:00:00+03:00")));
        // And back in the night of 24–25 October 2026.
        assert_eq!(q.holds_until(at("2026-10-24T23:00:00+03:00")), Some(at("2026-10-25T08:00:00+02:00")));
    }

    #[test]
    fn a_daytime_window_and_bad_texts() {
        let q = QuietHours::parse("12:00-13:00").unwrap().unwrap();
        assert_eq!(q.holds_until(at("2026-12-01T12:30:00+02:00")), Some(at("2026-12-01T13:00:00+02:00")));
        assert_eq!(q.holds_until(at("2026-12-01T13:30:00+02:00")), None);
        assert_eq!(QuietHours::parse("none").unwrap(), None);
        assert!(QuietHours::parse("21-08").unwrap_err().contains("HH:MM"));
        assert!(QuietHours::parse("21:00-21:00").unwrap_err().contains("no length"));
    }

    #[test]
    fn a_public_holiday_holds_until_the_next_working_morning() {
        let q = QuietHours::parse("21:00-08:00").unwrap().unwrap();
        let cal = crate::engine::calendar::Calendar::builtin();
        // Christmas Eve, noon: 24–26 December are holidays, so Sunday the 27th at 08:00.
        let (until, why) = held_until(Some(&q), Some(cal), at("2026-12-24T12:00:00+02:00")).unwrap();
        assert_eq!(until, at("2026-12-27T08:00:00+02:00"));
        assert!(why.contains("Ziemassvētku vakars") && why.contains("2026-12-27 08:00"), "{why}");
        // Midsummer in summer time, with no quiet hours configured.
        let (until, _) = held_until(None, Some(cal), at("2026-06-23T10:00:00+03:00")).unwrap();
        assert_eq!(until, at("2026-06-25T08:00:00+03:00"));
        // An ordinary evening is the quiet hours' business; an ordinary noon goes.
        let (until, why) = held_until(Some(&q), Some(cal), at("2026-12-01T22:00:00+02:00")).unwrap();
        assert_eq!(until, at("2026-12-02T08:00:00+02:00"));
        assert!(why.starts_with("deferred: quiet hours"), "{why}");
        assert_eq!(held_until(Some(&q), Some(cal), at("2026-12-01T12:00:00+02:00")), None);
        // Holidays not taken into account when the operator says so.
        assert_eq!(held_until(Some(&q), None, at("2026-12-24T12:00:00+02:00")), None);
    }
}
