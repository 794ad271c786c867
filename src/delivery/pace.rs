//! Rate limits per channel: a provider may take only so many messages a
//! second. Each send takes the next free slot on its channel's schedule,
//! so concurrent sends queue in order instead of bursting.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The next free slot of one channel, `gap` apart.
pub struct Pace {
    gap: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pace {
    /// At most `per_second` sends a second; none (or 0) for no limit.
    pub fn new(per_second: Option<f64>) -> Option<Pace> {
        let rate = per_second.filter(|r| r.is_finite() && *r > 0.0)?;
        Some(Pace { gap: Duration::from_secs_f64(1.0 / rate), next: Mutex::new(None) })
    }

    /// Waits for this send's slot.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.gap);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_are_spread_at_the_configured_rate() {
        let pace = std::sync::Arc::new(Pace::new(Some(5.0)).unwrap());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let p = pace.clone();
            tasks.push(tokio::spawn(async move {
                p.wait().await;
                Instant::now()
            }));
        }
        let mut at: Vec<Duration> = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap() - start);
        }
        at.sort();
        assert_eq!(at[0], Duration::ZERO, "the first goes at once");
        assert_eq!(at[9], Duration::from_millis(1800), "ten at 5/s take 1.8 s");
        assert!(at.windows(2).all(|w| w[1] - w[0] == Duration::from_millis(200)));
        assert!(Pace::new(None).is_none() && Pace::new(Some(0.0)).is_none(), "no limit");
    }
}
