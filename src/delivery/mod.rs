//! Delivery: workers claim due notices from the outbox with a lease, route
//! each (see [`crate::consent`]), render its template in the recipient's
//! language, send it, and record the attempt; passing failures retry with
//! exponential backoff and jitter, and after the last attempt a notice is
//! dead-lettered where an operator can see it.

pub mod channels;
pub mod eaddress;
pub mod email;
mod gateway;
mod outcomes;
pub mod pace;
mod pacing;
mod receipts;
pub mod segments;
pub mod sms;
pub mod templates;
pub mod unsubscribe;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use futures_util::StreamExt;
use rand::RngExt;

pub use channels::{Channels, Outgoing, SendOutcome};

use crate::audit::trace::DeliveryTrace;
use crate::clock::Clock;
use crate::config::DeliveryConfig;
use crate::consent::{Route, route};
use crate::engine::LiveRules;
use crate::engine::definitions::{ChannelName, LifeSituation};
use crate::engine::profile::Profile;
use crate::mask::mask_code;
use crate::store::{Attempt, ClaimedNotice, Db, NoticeState};

/// The delivery stage.
#[derive(Clone)]
pub struct Delivery {
    db: Db,
    rules: LiveRules,
    channels: Arc<Channels>,
    clock: Clock,
    cfg: DeliveryConfig,
    draft_link: String,
    quiet: Option<crate::consent::QuietHours>,
    paces: Arc<std::collections::HashMap<ChannelName, pace::Pace>>,
    /// When receipts were last asked for (real time), so a busy worker asks at most once a second.
    receipts_asked: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// When a wave was last looked for (real time): once a minute is enough.
    staggered: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    audit: crate::audit::Audit,
    outcomes: Arc<outcomes::Outcomes>,
}

/// What became of one claimed notice.
enum Delivered {
    /// It reached this state.
    State(NoticeState),
    /// Held for quiet hours; back in the queue for when they end.
    Deferred,
}

impl From<NoticeState> for Delivered {
    fn from(s: NoticeState) -> Self {
        Delivered::State(s)
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Notices claimed.
    pub claimed: usize,
    /// Sent.
    pub sent: usize,
    /// Put back for a retry.
    pub retried: usize,
    /// Dead-lettered.
    pub dead: usize,
    /// Suppressed (nobody reachable, deceased, …).
    pub suppressed: usize,
    /// Held for quiet hours.
    pub deferred: usize,
    /// Sent e-address messages asked about (receipts).
    pub receipts_polled: usize,
}

impl std::ops::AddAssign for RoundReport {
    fn add_assign(&mut self, o: Self) {
        self.claimed += o.claimed;
        self.sent += o.sent;
        self.retried += o.retried;
        self.dead += o.dead;
        self.suppressed += o.suppressed;
        self.deferred += o.deferred;
        self.receipts_polled += o.receipts_polled;
    }
}

impl Delivery {
    /// A delivery stage over `db`, sending through `channels`; draft links start with `draft_link`.
    pub fn new(
        db: Db,
        rules: impl Into<LiveRules>,
        channels: Arc<Channels>,
        clock: Clock,
        cfg: DeliveryConfig,
        draft_link: String,
    ) -> Self {
        // App::open has checked the text; a bad one here means no quiet hours, said once.
        let quiet = crate::consent::QuietHours::parse(&cfg.quiet_hours).unwrap_or_else(|e| {
            tracing::error!(error = %e, "delivery.quiet_hours is not valid; no quiet hours");
            None
        });
        let paces = [ChannelName::Eaddress, ChannelName::Email, ChannelName::Sms, ChannelName::Letter]
            .into_iter()
            .filter_map(|c| pace::Pace::new(cfg.rate_per_s.get(c.as_str()).copied()).map(|p| (c, p)))
            .collect();
        Delivery {
            db,
            rules: rules.into(),
            channels,
            clock,
            cfg,
            draft_link,
            quiet,
            paces: Arc::new(paces),
            receipts_asked: Arc::default(),
            staggered: Arc::default(),
            audit: crate::audit::Audit::development(),
            outcomes: Arc::default(),
        }
    }

    /// The same stage recording its attempts with `audit`'s key and chains.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Claims one batch of due notices and sends them, up to
    /// `delivery.concurrency` at a time; each notice's outcome is committed
    /// as soon as it is known, together with those known meanwhile.
    pub async fn run_round(&self) -> Result<RoundReport> {
        let now = self.clock.now_ms();
        let released = self.db.release_expired_leases(now).await?;
        if released > 0 {
            tracing::warn!(released, "notices whose worker stopped mid-send are queued again");
        }
        // Leases and retry waits last in real time, whatever speed the clock runs at.
        let lease = self.clock.span_of_real(std::time::Duration::from_secs(self.cfg.lease_secs.max(0) as u64));
        self.stagger_now_and_then().await?;
        let mut claimed = self.db.claim_notices(now, self.cfg.batch_size, lease.num_milliseconds()).await?;
        let receipts_polled = self.poll_receipts().await?;
        let mut report = RoundReport { claimed: claimed.len(), receipts_polled, ..RoundReport::default() };
        if claimed.is_empty() {
            return Ok(report);
        }
        // One look-up for the batch's recipients rather than one per notice.
        let mut recipients: Vec<String> = claimed.iter().map(|n| n.recipient.clone()).collect();
        recipients.sort();
        recipients.dedup();
        let profiles: HashMap<String, Profile> =
            self.db.load_profiles(&recipients).await?.into_iter().map(|p| (p.subject.clone(), p)).collect();
        if self.cfg.digest {
            // A person's other due notices join them, so a digest lists them all.
            let with_digestible: Vec<String> = recipients
                .iter()
                .filter(|r| claimed.iter().any(|n| &n.recipient == *r && n.priority == 0))
                .cloned()
                .collect();
            claimed.extend(self.db.claim_digest_siblings(&with_digestible, now, lease.num_milliseconds()).await?);
            report.claimed = claimed.len();
        }
        let profiles = &profiles;
        // And one for the drafts the notices offer, whose links the messages carry.
        let refs: Vec<String> = claimed.iter().filter_map(|n| n.draft_ref.clone()).collect();
        let drafts: HashMap<String, crate::store::DraftRow> =
            self.db.drafts_by_ref(&refs).await?.into_iter().map(|d| (d.reference.clone(), d)).collect();
        let drafts = &drafts;
        let (units, capped) = self.plan(claimed, profiles).await?;
        report.deferred += capped;
        // Owned notices: a closure over borrowed ones would make the round's future not `Send`.
        let mut states = futures_util::stream::iter(units)
            .map(|u| async move {
                match u {
                    pacing::Unit::One(n) => self.deliver(&n, profiles.get(&n.recipient), drafts).await.map(|d| vec![d]),
                    pacing::Unit::Digest(id, m) => {
                        self.deliver_digest(&id, &m, profiles.get(&m[0].recipient), drafts).await
                    }
                }
            })
            .buffer_unordered(self.cfg.concurrency.max(1));
        // A store error stops the round, but only after the sends in flight have
        // been recorded: their notices must not wait out their lease to be retried.
        let mut first_err = None;
        while let Some(states) = states.next().await {
            match states {
                Ok(states) => {
                    for state in states {
                        match state {
                            Delivered::Deferred => report.deferred += 1,
                            Delivered::State(NoticeState::Sent) => report.sent += 1,
                            Delivered::State(NoticeState::Pending) => report.retried += 1,
                            Delivered::State(NoticeState::Dead) => report.dead += 1,
                            Delivered::State(_) => report.suppressed += 1,
                        }
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        tracing::info!(
            claimed = report.claimed,
            sent = report.sent,
            retried = report.retried,
            dead = report.dead,
            suppressed = report.suppressed,
            "delivery round"
        );
        Ok(report)
    }

    /// Looks for a bulk wave to spread, at most once a minute of real time.
    async fn stagger_now_and_then(&self) -> Result<()> {
        if self.cfg.stagger_per_hour == 0 {
            return Ok(());
        }
        {
            let mut last = self.staggered.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60)) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        self.stagger().await.map(|_| ())
    }

    /// Runs rounds until nothing due is left.
    pub async fn run_until_idle(&self) -> Result<RoundReport> {
        let mut total = RoundReport::default();
        loop {
            let r = self.run_round().await?;
            if r.claimed == 0 {
                return Ok(total);
            }
            total += r;
        }
    }

    async fn deliver(
        &self,
        n: &ClaimedNotice,
        profile: Option<&Profile>,
        drafts: &HashMap<String, crate::store::DraftRow>,
    ) -> Result<Delivered> {
        let now = self.clock.now_ms();
        let rules = self.rules.get();
        let mut tr = DeliveryTrace::new(&self.audit, n, profile);
        let Some(ls) = rules.get(&n.life_situation, n.version) else {
            let err = format!("life situation {} version {} is no longer loaded", n.life_situation, n.version);
            self.record(Attempt::new(&n.id, None, NoticeState::Dead, now).error(&err), &tr).await?;
            return Ok(NoticeState::Dead.into());
        };
        let legal_effect = ls.steps.iter().any(|s| s.id == n.step && s.legal_effect);
        // Channels that answered "not this recipient", with their reasons.
        let mut unreachable: Vec<(ChannelName, String)> = Vec::new();
        let mut msg: Option<Outgoing> = None;
        loop {
            let usable = |c: ChannelName| self.channels.get(c).is_some() && !unreachable.iter().any(|(u, _)| *u == c);
            let (route, why) = route(&n.recipient, profile, ls, &n.purpose, legal_effect, &usable);
            tr.why.clone_from(&why);
            let (channel, address) = match route {
                Route::Suppress(reason) => {
                    let reason = if unreachable.is_empty() {
                        reason
                    } else {
                        // The route calls the channels it was told to skip "not configured"; say what they answered.
                        let mut parts: Vec<String> =
                            unreachable.iter().map(|(c, r)| format!("{}: {r}", c.as_str())).collect();
                        parts.extend(
                            why.into_iter().filter(|w| !unreachable.iter().any(|(c, _)| w.starts_with(c.as_str()))),
                        );
                        crate::consent::unreachable_reason(&parts)
                    };
                    let now = self.clock.now_ms();
                    self.record(Attempt::new(&n.id, None, NoticeState::Suppressed, now).error(&reason), &tr).await?;
                    tracing::info!(notice = %n.id, recipient = %mask_code(&n.recipient), "notice suppressed");
                    return Ok(NoticeState::Suppressed.into());
                }
                Route::Send { channel, address } => (channel, address),
            };
            // Quiet hours hold email and SMS until the window opens: deferred,
            // not an attempt and not a failure. The e-address and urgent steps pass.
            let urgent = ls.steps.iter().any(|s| s.id == n.step && s.urgent);
            if let Some((until, why)) = self.hold(channel, urgent, profile) {
                self.db
                    .defer_notice(&n.id, channel.as_str(), until.timestamp_millis(), &why, self.clock.now_ms(), &tr)
                    .await?;
                return Ok(Delivered::Deferred);
            }
            let m = match msg.take() {
                Some(m) => Outgoing { address, ..m },
                None => match self.render(n, ls, profile, legal_effect, address, drafts)? {
                    Ok(m) => m,
                    Err(e) => {
                        let dead = Attempt::new(&n.id, Some(channel.as_str()), NoticeState::Dead, now).error(&e);
                        self.record(dead, &tr).await?;
                        return Ok(NoticeState::Dead.into());
                    }
                },
            };
            let transport = self.channels.get(channel).expect("routing only picks configured channels");
            if let Some(p) = self.paces.get(&channel) {
                p.wait().await;
            }
            let outcome = transport.send(channel, &m).await;
            let now = self.clock.now_ms();
            let state = match outcome {
                SendOutcome::Unreachable(reason) => {
                    tracing::info!(notice = %n.id, channel = channel.as_str(), "channel does not reach the recipient; trying the next");
                    self.db.record_unreachable(&n.id, channel.as_str(), &reason, now, &tr).await?;
                    if !self.db.hand_to_next_channel(&n.id).await? {
                        tracing::info!(notice = %n.id, "withdrawn meanwhile; not sent on another channel");
                        return Ok(NoticeState::Cancelled.into());
                    }
                    unreachable.push((channel, reason));
                    msg = Some(m);
                    continue;
                }
                outcome => {
                    let eaddress = matches!(transport, channels::Transport::Eaddress(_));
                    self.settle(n, channel, eaddress, outcome, &tr).await?
                }
            };
            return Ok(state.into());
        }
    }

    /// Commits `attempt` with its audit record (from `tr`), in the next group commit.
    async fn record(&self, attempt: Attempt, tr: &DeliveryTrace) -> Result<()> {
        let entry = tr.entry(attempt.outcome(), attempt.channel.as_deref(), attempt.error.as_deref(), attempt.at);
        self.outcomes.record(&self.db, &self.audit, attempt, entry).await
    }

    /// Until when and why a message on `channel` waits now: email and SMS
    /// over quiet hours (the person's own, else the configured ones) and
    /// public holidays, unless `urgent`.
    fn hold(
        &self,
        channel: ChannelName,
        urgent: bool,
        profile: Option<&Profile>,
    ) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        if urgent || !matches!(channel, ChannelName::Email | ChannelName::Sms) {
            return None;
        }
        let rules = self.rules.get();
        let holidays = self.cfg.hold_on_holidays.then_some(&*rules.calendar);
        // The person's own quiet hours replace the configured ones (checked when declared).
        let own = profile.and_then(|p| p.quiet_hours.as_deref()).map(crate::consent::QuietHours::parse);
        let quiet = match own {
            Some(Ok(q)) => q,
            _ => self.quiet,
        };
        crate::consent::timing::held_until(quiet.as_ref(), holidays, self.clock.now())
    }

    /// Records what a send of `n` on `channel` came to (sent, dead, or a
    /// retry with backoff) and returns the notice's new state; "not this
    /// recipient" is the caller's to handle, and counts here as a retry.
    async fn settle(
        &self,
        n: &ClaimedNotice,
        channel: ChannelName,
        eaddress: bool,
        outcome: SendOutcome,
        tr: &DeliveryTrace,
    ) -> Result<NoticeState> {
        let now = self.clock.now_ms();
        let ch = Some(channel.as_str());
        Ok(match outcome {
            SendOutcome::Sent(provider_id) if eaddress => {
                let served = self.served_on(&n.id, now).map(|d| d.to_string());
                let poll = self.next_receipt_poll(now);
                let sent =
                    Attempt::new(&n.id, ch, NoticeState::Sent, now).provider(&provider_id).followed(served, poll);
                self.record(sent, tr).await?;
                NoticeState::Sent
            }
            SendOutcome::Sent(provider_id) => {
                self.record(Attempt::new(&n.id, ch, NoticeState::Sent, now).provider(&provider_id), tr).await?;
                NoticeState::Sent
            }
            SendOutcome::Permanent(err) => {
                tracing::warn!(notice = %n.id, channel = channel.as_str(), "dead-lettered: permanent failure");
                self.record(Attempt::new(&n.id, ch, NoticeState::Dead, now).error(&err), tr).await?;
                NoticeState::Dead
            }
            SendOutcome::Retry(err, after) => self.retry_or_give_up(n, channel, err, after, tr).await?,
            SendOutcome::Unreachable(err) => self.retry_or_give_up(n, channel, err, None, tr).await?,
        })
    }

    async fn retry_or_give_up(
        &self,
        n: &ClaimedNotice,
        channel: ChannelName,
        err: String,
        after: Option<std::time::Duration>,
        tr: &DeliveryTrace,
    ) -> Result<NoticeState> {
        let now = self.clock.now_ms();
        let ch = Some(channel.as_str());
        if n.attempts < self.cfg.max_attempts {
            let real = after.unwrap_or_else(|| std::time::Duration::from_millis(self.backoff_ms(n.attempts) as u64));
            let wait = self.clock.span_of_real(real).num_milliseconds();
            tracing::info!(notice = %n.id, channel = channel.as_str(), wait_ms = wait, "send failed; will retry");
            self.record(Attempt::new(&n.id, ch, NoticeState::Pending, now).error(&err).retry_at(now + wait), tr)
                .await?;
            return Ok(NoticeState::Pending);
        }
        tracing::warn!(notice = %n.id, channel = channel.as_str(), attempts = n.attempts, "dead-lettered: out of attempts");
        let err = format!("gave up after {} attempts; last error: {err}", n.attempts);
        self.record(Attempt::new(&n.id, ch, NoticeState::Dead, now).error(&err), tr).await?;
        Ok(NoticeState::Dead)
    }

    /// The notice's message in the recipient's language, addressed to
    /// `address`; the inner `Err` is a template error (the notice is dead).
    fn render(
        &self,
        n: &ClaimedNotice,
        ls: &LifeSituation,
        profile: Option<&Profile>,
        legal_effect: bool,
        address: String,
        drafts: &HashMap<String, crate::store::DraftRow>,
    ) -> Result<Result<Outgoing, String>> {
        let lang = profile.and_then(|p| p.language.clone()).unwrap_or_else(|| "lv".into());
        let mut ctx = n.data.clone();
        if let Some(m) = ctx.as_object_mut() {
            m.insert("notice_id".into(), n.id.clone().into());
            m.insert("recipient_name".into(), profile.and_then(|p| p.display_name()).unwrap_or_default().into());
            m.insert("life_situation".into(), serde_json::to_value(&ls.name).unwrap_or_default());
            m.insert("owner".into(), ls.owner.clone().into());
            m.insert("legal_basis".into(), ls.legal_basis.clone().into());
            if let Some(reference) = &n.draft_ref
                && let Some(draft) = drafts.get(reference)
            {
                let title = ls.drafts.values().find(|d| d.service_id == draft.service_id).map(|d| d.title.clone());
                let expires = crate::clock::from_ms(draft.expires_at).with_timezone(&chrono_tz::Europe::Riga);
                m.insert(
                    "draft".into(),
                    serde_json::json!({
                        "reference": reference,
                        "url": format!("{}{reference}", self.draft_link),
                        "title": title.and_then(|t| t.get(&lang).or_else(|| t.get("lv")).cloned()),
                        "service_id": draft.service_id,
                        "expires_on": expires.date_naive().to_string(),
                    }),
                );
            }
        }
        let rendered = match self.rules.get().templates.render(ls, &n.template, &lang, &ctx) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(Outgoing {
            notice_id: n.id.clone(),
            recipient: n.recipient.clone(),
            purpose: n.purpose.clone(),
            address,
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            sms: rendered.sms,
            legal_effect,
            language: rendered.language,
        }))
    }

    /// Exponential backoff with full jitter, capped.
    fn backoff_ms(&self, attempts: i64) -> i64 {
        let exp = self.cfg.backoff_base_ms.saturating_mul(1i64 << attempts.clamp(0, 20));
        let cap = exp.min(self.cfg.backoff_max_ms).max(1);
        rand::rng().random_range(cap / 2..=cap)
    }
}
