//! Time as the engine sees it: the machine's clock in production, a virtual
//! clock (standing still, or running at some speed from a chosen start) in
//! tests, the demo and rehearsals. A virtual clock only moves forward.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};

/// Where "now" comes from; cloned freely, all clones share one time.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Inner>);

#[derive(Debug)]
enum Inner {
    System,
    Virtual { anchor: Mutex<(DateTime<Utc>, Instant)>, speed: f64 },
}

impl Clock {
    /// The machine's clock.
    pub fn system() -> Self {
        Clock(Arc::new(Inner::System))
    }

    /// A clock that stands still at `at` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self::virtual_from(at, 0.0)
    }

    /// A clock that starts at `start` and runs `speed` virtual seconds per real second.
    pub fn virtual_from(start: DateTime<Utc>, speed: f64) -> Self {
        let speed = if speed.is_finite() && speed > 0.0 { speed } else { 0.0 };
        Clock(Arc::new(Inner::Virtual { anchor: Mutex::new((start, Instant::now())), speed }))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.0 {
            Inner::System => Utc::now(),
            Inner::Virtual { anchor, speed } => {
                let (at, since) = *anchor.lock().expect("clock lock");
                if *speed == 0.0 {
                    return at;
                }
                let real = since.elapsed().as_secs_f64() * speed;
                at + chrono::Duration::microseconds((real * 1e6) as i64)
            }
        }
    }

    /// The current time in milliseconds since the epoch, as the store keeps it.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// Moves a virtual clock to `at`, never backwards; the system clock ignores it.
    pub fn set(&self, at: DateTime<Utc>) {
        if let Inner::Virtual { anchor, .. } = &*self.0 {
            let now = self.now();
            if at > now {
                *anchor.lock().expect("clock lock") = (at, Instant::now());
            }
        }
    }

    /// How long to sleep in real time until `virtual_wait` has passed on this
    /// clock (a standing clock never gets there: an hour, to look again).
    pub fn real_wait(&self, virtual_wait: chrono::Duration) -> std::time::Duration {
        let v = virtual_wait.to_std().unwrap_or_default();
        match &*self.0 {
            Inner::System => v,
            Inner::Virtual { speed, .. } if *speed > 0.0 => v.div_f64(*speed),
            Inner::Virtual { .. } => std::time::Duration::from_secs(3600),
        }
    }

    /// How much of this clock's time passes during `real` real time: what a
    /// wait that must last in real time (a retry, a `Retry-After`, a lease)
    /// spans on a running virtual clock. A standing clock (tests, rule tests)
    /// only moves when told, so there the wait is taken as clock time.
    pub fn span_of_real(&self, real: std::time::Duration) -> chrono::Duration {
        let virt = match &*self.0 {
            Inner::Virtual { speed, .. } if *speed > 0.0 => real.mul_f64(*speed),
            _ => real,
        };
        chrono::Duration::from_std(virt).unwrap_or(chrono::Duration::MAX)
    }

    /// Moves a virtual clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        self.set(self.now() + by);
    }
}

/// Milliseconds since the epoch back to a UTC time (the store's representation).
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-20T10:00:00+02:00").unwrap().to_utc();
        let c = Clock::manual(t0);
        assert_eq!(c.now(), t0);
        c.advance(chrono::Duration::days(30));
        assert_eq!(c.now(), t0 + chrono::Duration::days(30));
        c.set(t0);
        assert_eq!(c.now(), t0 + chrono::Duration::days(30), "a clock never goes back");
    }

    #[test]
    fn waits_on_a_fast_clock_are_short_in_real_time() {
        let c = Clock::virtual_from(Utc::now(), 86_400.0);
        assert_eq!(c.real_wait(chrono::Duration::days(2)), std::time::Duration::from_secs(2));
        assert_eq!(Clock::system().real_wait(chrono::Duration::seconds(5)), std::time::Duration::from_secs(5));
        let day = c.span_of_real(std::time::Duration::from_secs(1));
        assert_eq!(day, chrono::Duration::days(1), "a real second is a virtual day at that speed");
    }

    #[test]
    fn fast_clock_runs_ahead_of_real_time() {
        let t0 = Utc::now();
        let c = Clock::virtual_from(t0, 86_400.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(c.now() - t0 > chrono::Duration::minutes(20));
    }
}
