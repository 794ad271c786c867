//! e-address receipts: after a document is sent, the gateway is asked now
//! and then how far it has got (`delivered`, `read`), and each new stage is
//! recorded once, until it is read or the follow-up period ends. The legal
//! "served" day does not wait for these: it is fixed at sending, from the
//! business-day calendar.

use anyhow::Result;
use chrono::NaiveDate;

use super::Delivery;
use super::channels::Transport;
use super::eaddress::{MessageState, MessageStatus};
use crate::store::ReceiptPoll;

/// Stages in the order a message passes them.
const STAGES: [(MessageState, &str); 3] =
    [(MessageState::Accepted, "accepted"), (MessageState::Delivered, "delivered"), (MessageState::Read, "read")];

fn rank(status: &str) -> usize {
    STAGES.iter().position(|(_, s)| *s == status).unwrap_or(0)
}

/// The stages `answer` adds beyond `known`, each with the gateway's time of it.
fn new_stages(known: &str, answer: &MessageStatus) -> Vec<(String, Option<String>)> {
    let reached = STAGES.iter().position(|(s, _)| *s == answer.status).unwrap_or(0);
    (rank(known) + 1..=reached)
        .map(|i| {
            let at = match STAGES[i].0 {
                MessageState::Delivered => answer.delivered_at,
                MessageState::Read => answer.read_at,
                MessageState::Accepted => None,
            };
            (STAGES[i].1.to_string(), at.map(|t| t.to_rfc3339()))
        })
        .collect()
}

impl Delivery {
    /// The legal served day of an e-address document sent at `sent_ms`;
    /// none (said in the log) when the calendar does not cover the year.
    pub(super) fn served_on(&self, notice_id: &str, sent_ms: i64) -> Option<NaiveDate> {
        let day = crate::clock::from_ms(sent_ms).with_timezone(&chrono_tz::Europe::Riga).date_naive();
        match self.rules.get().calendar.served_on(day) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(notice = %notice_id, error = %e, "no served day for an e-address document");
                None
            }
        }
    }

    /// When a sent e-address message is next asked about, `delivery.receipt_poll_secs` of real time from `now_ms`.
    pub(super) fn next_receipt_poll(&self, now_ms: i64) -> i64 {
        let every = std::time::Duration::from_secs(self.cfg.receipt_poll_secs.max(0) as u64);
        now_ms + self.clock.span_of_real(every).num_milliseconds()
    }

    /// Asks the e-address gateway about one batch of sent messages due a
    /// question and records what moved; returns how many were asked.
    pub async fn poll_receipts(&self) -> Result<usize> {
        let Some(Transport::Eaddress(client)) = self.channels.eaddress.as_ref() else {
            return Ok(0);
        };
        {
            let gap = std::time::Duration::from_secs(self.cfg.receipt_poll_secs.clamp(0, 1) as u64);
            let mut last = self.receipts_asked.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < gap) {
                return Ok(0);
            }
            *last = Some(std::time::Instant::now());
        }
        let now = self.clock.now_ms();
        let lease = self.clock.span_of_real(std::time::Duration::from_secs(self.cfg.lease_secs.max(0) as u64));
        let due = self.db.claim_receipt_polls(now, self.cfg.batch_size, lease.num_milliseconds()).await?;
        let give_up_after = chrono::Duration::days(self.cfg.receipt_follow_days.max(0)).num_milliseconds();
        for poll in &due {
            let (reached, read) = match client.status(&poll.provider_id).await {
                Ok(answer) => (new_stages(&poll.status, &answer), answer.status == MessageState::Read),
                Err(e) => {
                    tracing::warn!(notice = %poll.notice_id, error = %e, "e-address status unknown; asking again later");
                    (Vec::new(), false)
                }
            };
            let now = self.clock.now_ms();
            let next = self.follow_on(poll, read, now, give_up_after);
            self.db.record_receipt_progress(poll, &reached, next, now).await?;
        }
        Ok(due.len())
    }

    fn follow_on(&self, poll: &ReceiptPoll, read: bool, now: i64, give_up_after: i64) -> Option<i64> {
        if read {
            return None;
        }
        if now - poll.sent_at >= give_up_after {
            tracing::info!(notice = %poll.notice_id, "e-address message not read within the follow-up period; no more questions");
            return None;
        }
        Some(self.next_receipt_poll(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: MessageState) -> MessageStatus {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00+02:00").unwrap();
        MessageStatus { status, delivered_at: Some(t), read_at: Some(t) }
    }

    #[test]
    fn each_stage_is_recorded_once_and_a_skipped_one_is_filled_in() {
        assert!(new_stages("accepted", &answer(MessageState::Accepted)).is_empty());
        let s = new_stages("accepted", &answer(MessageState::Read));
        assert_eq!(s.iter().map(|(x, _)| x.as_str()).collect::<Vec<_>>(), ["delivered", "read"]);
        assert_eq!(s[0].1.as_deref(), Some("2026-12-01T10:00:00+02:00"));
        assert_eq!(new_stages("delivered", &answer(MessageState::Read)).len(), 1);
        assert!(new_stages("read", &answer(MessageState::Delivered)).is_empty(), "never backwards");
    }
}
