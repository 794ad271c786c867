//! Pacing a person's messages and a population's: several non-urgent email
//! or SMS notices of one person due together go as one **digest**; a
//! purpose's **frequency cap** holds a message over it until the next
//! allowed time; and a bulk wave is **staggered** over the sending window at
//! `delivery.stagger_per_hour`. Urgent and legal-effect notices pass all
//! three: a deadline or a legal document does not wait for a neighbour.

use std::collections::HashMap;

use anyhow::Result;
use sha2::Digest as _;

use super::{Delivered, Delivery};
use crate::audit::trace::DeliveryTrace;
use crate::consent::{Route, route};
use crate::engine::definitions::{ChannelName, FrequencyCap};
use crate::engine::profile::Profile;
use crate::store::{ClaimedNotice, DraftRow, NoticeState};

/// One piece of a round's work.
pub(super) enum Unit {
    /// A notice on its own.
    One(Box<ClaimedNotice>),
    /// Several notices of one person in one message.
    Digest(String, Vec<ClaimedNotice>),
}

/// A digest's id: derived from its members', so the same members always make the same message.
pub fn digest_id(members: &[String]) -> String {
    let mut ids: Vec<&str> = members.iter().map(String::as_str).collect();
    ids.sort_unstable();
    let h = sha2::Sha256::digest(ids.join("\n").as_bytes());
    format!("dg-{}", &hex::encode(h)[..32])
}

/// The words around a digest's items, in its language.
fn digest_heading(lang: &str, n: usize) -> (String, String) {
    match lang {
        "en" => (format!("{n} notices for you"), "You have several notices from the public administration:".into()),
        "ru" => {
            (format!("Для вас уведомлений: {n}"), "Вам несколько уведомлений от государственных учреждений:".into())
        }
        _ => (format!("Jums ir {n} paziņojumi"), "Jums ir vairāki valsts pārvaldes paziņojumi:".into()),
    }
}

impl Delivery {
    /// Turns a round's claimed notices into units: members of a digest fixed
    /// at an earlier claim together again, new digests of a person's
    /// non-urgent notices that go by the same email or phone, the rest on
    /// their own. Notices over their purpose's cap are deferred here.
    pub(super) async fn plan(
        &self,
        claimed: Vec<ClaimedNotice>,
        profiles: &HashMap<String, Profile>,
    ) -> Result<(Vec<Unit>, usize)> {
        let rules = self.rules.get();
        let usable = |c: ChannelName| self.channels.get(c).is_some();
        let mut units = Vec::new();
        let mut fixed: HashMap<String, Vec<ClaimedNotice>> = HashMap::new();
        let mut groups: HashMap<(String, ChannelName, String), Vec<ClaimedNotice>> = HashMap::new();
        for n in claimed {
            if let Some(d) = n.digest_id.clone() {
                fixed.entry(d).or_default().push(n);
                continue;
            }
            let ls = rules.get(&n.life_situation, n.version);
            let key = match ls {
                Some(ls) if self.cfg.digest && n.priority == 0 => {
                    match route(&n.recipient, profiles.get(&n.recipient), ls, &n.purpose, false, &usable).0 {
                        Route::Send { channel: c @ (ChannelName::Email | ChannelName::Sms), address } => {
                            Some((n.recipient.clone(), c, address))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            match key {
                Some(k) => groups.entry(k).or_default().push(n),
                None => units.push(Unit::One(Box::new(n))),
            }
        }
        for (id, members) in fixed {
            units.push(Unit::Digest(id, members));
        }
        for (_, mut members) in groups {
            if members.len() == 1 {
                units.push(Unit::One(Box::new(members.pop().expect("one member"))));
                continue;
            }
            let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
            let id = digest_id(&ids);
            // Fixed before the send, so a crash resends the same digest under the same id.
            self.db.fix_digest(&id, &ids).await?;
            units.push(Unit::Digest(id, members));
        }
        let deferred = self.apply_caps(&mut units, profiles).await?;
        Ok((units, deferred))
    }

    /// Defers each non-urgent notice whose purpose's cap its person has
    /// reached (a digest counts as one message per purpose); returns how many.
    async fn apply_caps(&self, units: &mut Vec<Unit>, profiles: &HashMap<String, Profile>) -> Result<usize> {
        let rules = self.rules.get();
        let cap_of = |n: &ClaimedNotice| -> Option<FrequencyCap> {
            let ls = rules.get(&n.life_situation, n.version)?;
            let p = ls.purposes.iter().find(|p| p.id == n.purpose)?;
            FrequencyCap::parse(p.cap.as_deref()?).ok()
        };
        if !units.iter().any(|u| match u {
            Unit::One(n) => n.priority == 0 && cap_of(n).is_some(),
            Unit::Digest(_, m) => m.iter().any(|n| cap_of(n).is_some()),
        }) {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        // Sends of this round count too: (recipient, purpose) → times.
        let mut sends: HashMap<(String, String), Vec<i64>> = HashMap::new();
        let mut deferred = 0;
        let mut kept = Vec::with_capacity(units.len());
        for unit in std::mem::take(units) {
            let (members, digest) = match unit {
                Unit::One(n) => (vec![*n], None),
                Unit::Digest(id, m) => (m, Some(id)),
            };
            let mut go = Vec::with_capacity(members.len());
            let mut counted: Vec<(String, String)> = Vec::new();
            for n in members {
                let cap = if n.priority == 0 { cap_of(&n) } else { None };
                let Some(cap) = cap else {
                    go.push(n);
                    continue;
                };
                let key = (n.recipient.clone(), n.purpose.clone());
                if !sends.contains_key(&key) {
                    let since = now - cap.window.num_milliseconds();
                    sends.insert(key.clone(), self.db.recent_sends(&n.recipient, &n.purpose, since).await?);
                }
                let times = sends.get_mut(&key).expect("filled above");
                if counted.contains(&key) || times.len() < cap.count {
                    if !counted.contains(&key) {
                        times.push(now);
                        counted.push(key);
                    }
                    go.push(n);
                    continue;
                }
                let until = times[times.len() - cap.count] + cap.window.num_milliseconds();
                let why = format!(
                    "deferred: frequency cap of \"{}\" ({} per {} days) reached; until {}",
                    n.purpose,
                    cap.count,
                    cap.window.num_days(),
                    crate::clock::from_ms(until).with_timezone(&chrono_tz::Europe::Riga).format("%Y-%m-%d %H:%M")
                );
                let tr = DeliveryTrace::new(&self.audit, &n, profiles.get(&n.recipient));
                self.db.defer_notice(&n.id, "outbox", until, &why, now, &tr).await?;
                deferred += 1;
            }
            match (digest, go.len()) {
                (_, 0) => {}
                (Some(id), _) => kept.push(Unit::Digest(id, go)),
                (None, _) => kept.extend(go.into_iter().map(|n| Unit::One(Box::new(n)))),
            }
        }
        *units = kept;
        Ok(deferred)
    }

    /// Sends a digest: routed as its first member, held as they would be,
    /// each member rendered in the person's language and listed in one
    /// message whose id is the digest's; every member gets the outcome.
    pub(super) async fn deliver_digest(
        &self,
        id: &str,
        members: &[ClaimedNotice],
        profile: Option<&Profile>,
        drafts: &HashMap<String, DraftRow>,
    ) -> Result<Vec<Delivered>> {
        let rules = self.rules.get();
        let first = &members[0];
        let Some(ls) = rules.get(&first.life_situation, first.version) else {
            return self.deliver_each(members, profile, drafts).await;
        };
        let usable = |c: ChannelName| self.channels.get(c).is_some();
        let (route, why) = route(&first.recipient, profile, ls, &first.purpose, false, &usable);
        let (channel, address) = match route {
            Route::Send { channel, address } => (channel, address),
            // Consent or reachability changed since the digest was fixed: each member decides alone.
            Route::Suppress(_) => return self.deliver_each(members, profile, drafts).await,
        };
        let now = self.clock.now_ms();
        if let Some((until, why)) = self.hold(channel, false, profile) {
            for n in members {
                let tr = DeliveryTrace::new(&self.audit, n, profile);
                self.db.defer_notice(&n.id, channel.as_str(), until.timestamp_millis(), &why, now, &tr).await?;
            }
            return Ok(members.iter().map(|_| Delivered::Deferred).collect());
        }
        let mut parts = Vec::new();
        let mut out = Vec::new();
        let mut sendable = Vec::new();
        for n in members {
            let Some(ls_n) = rules.get(&n.life_situation, n.version) else {
                out.push(self.deliver(n, profile, drafts).await?);
                continue;
            };
            match self.render(n, ls_n, profile, false, address.clone(), drafts)? {
                Ok(m) => {
                    parts.push(m);
                    sendable.push(n);
                }
                Err(e) => {
                    let tr = DeliveryTrace::new(&self.audit, n, profile);
                    let ch = Some(channel.as_str());
                    self.record(crate::store::Attempt::new(&n.id, ch, NoticeState::Dead, now).error(&e), &tr).await?;
                    out.push(NoticeState::Dead.into());
                }
            }
        }
        let Some(head) = parts.first() else { return Ok(out) };
        let (subject, intro) = digest_heading(&head.language, parts.len());
        let text = parts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}. {}\n\n{}", i + 1, p.subject, p.text.trim()))
            .collect::<Vec<_>>()
            .join("\n\n---\n\n");
        let html = parts
            .iter()
            .map(|p| format!("<section><h2>{}</h2>{}</section>", html_escape(&p.subject), p.html))
            .collect::<String>();
        let sms = parts.iter().map(|p| p.sms.trim()).collect::<Vec<_>>().join(" | ");
        let m = super::Outgoing {
            notice_id: id.to_string(),
            subject,
            text: format!("{intro}\n\n{text}\n"),
            html: format!("<p>{}</p>{html}", html_escape(&intro)),
            sms,
            ..head.clone()
        };
        let transport = self.channels.get(channel).expect("routing only picks configured channels");
        if let Some(p) = self.paces.get(&channel) {
            p.wait().await;
        }
        tracing::info!(digest = %id, members = sendable.len(), channel = channel.as_str(), "sending a digest");
        let outcome = transport.send(channel, &m).await;
        for n in sendable {
            let mut tr = DeliveryTrace::new(&self.audit, n, profile);
            tr.why.clone_from(&why);
            tr.why.push(format!("sent in the digest {id} with {} others", members.len() - 1));
            out.push(self.settle(n, channel, false, outcome.clone(), &tr).await?.into());
        }
        Ok(out)
    }

    /// Each member on its own, when the digest cannot go as one.
    async fn deliver_each(
        &self,
        members: &[ClaimedNotice],
        profile: Option<&Profile>,
        drafts: &HashMap<String, DraftRow>,
    ) -> Result<Vec<Delivered>> {
        let mut out = Vec::with_capacity(members.len());
        for n in members {
            out.push(self.deliver(n, profile, drafts).await?);
        }
        Ok(out)
    }

    /// Spreads a bulk wave of due non-urgent notices over the sending
    /// window at `delivery.stagger_per_hour`; a wave is more than a minute's
    /// worth due at once. Returns how many notices were given later slots.
    pub async fn stagger(&self) -> Result<usize> {
        let per_hour = self.cfg.stagger_per_hour;
        if per_hour == 0 {
            return Ok(0);
        }
        let gap = (3_600_000 / per_hour.max(1)).max(1) as i64;
        let holidays = self.cfg.hold_on_holidays.then(|| self.rules.get().calendar.clone());
        let quiet = self.quiet;
        let mut started = false;
        // The first call places the wave's first notice at its start; each
        // later one a gap after the one before, skipping quiet hours and holidays.
        let slots = move |prev: i64| {
            let mut at = if started { prev + gap } else { prev };
            started = true;
            while let Some((until, _)) = chrono::DateTime::from_timestamp_millis(at)
                .and_then(|t| crate::consent::timing::held_until(quiet.as_ref(), holidays.as_deref(), t))
            {
                at = until.timestamp_millis();
            }
            at
        };
        let threshold = (per_hour / 60).max(1) as usize;
        let moved = self.db.stagger_due(self.clock.now_ms(), threshold, slots).await?;
        if moved > 0 {
            tracing::info!(moved, per_hour, "a wave of notices spread over the sending window");
        }
        Ok(moved)
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_id_depends_on_its_members_not_their_order() {
        let a = digest_id(&["n1".into(), "n2".into()]);
        assert_eq!(a, digest_id(&["n2".into(), "n1".into()]));
        assert_ne!(a, digest_id(&["n1".into(), "n3".into()]));
        assert!(a.starts_with("dg-") && a.len() == 35, "{a}");
    }

    #[test]
    fn caps_parse_and_refuse_nonsense() {
        let c = FrequencyCap::parse("2/7d").unwrap();
        assert_eq!((c.count, c.window), (2, chrono::Duration::days(7)));
        assert_eq!(FrequencyCap::parse("1/12h").unwrap().window, chrono::Duration::hours(12));
        for bad in ["2", "0/7d", "x/7d", "2/7y", "2/-1d"] {
            assert!(FrequencyCap::parse(bad).is_err(), "{bad}");
        }
    }
}
