//! Consent and routing: who can be reached for a notice, and on which
//! channel. Decided at send time, so that a death, a new contact or an
//! e-address activation recorded after the notice was queued still counts.

use crate::engine::definitions::{ChannelName, LifeSituation};
use crate::engine::profile::Profile;

/// Where a notice goes, or why it goes nowhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Send on `channel` to `address`.
    Send {
        /// The channel.
        channel: ChannelName,
        /// Email, phone, or the code for the e-address.
        address: String,
    },
    /// Do not send; the reason is recorded with the notice.
    Suppress(String),
}

/// Picks the channel for a notice to `recipient`: the life situation's
/// channels in order (the e-address first for notices with legal effect),
/// skipping those not configured here or that do not reach the person.
/// Returns the route and, for the record, why each channel was skipped.
pub fn route(
    recipient: &str,
    profile: Option<&Profile>,
    ls: &LifeSituation,
    legal_effect: bool,
    configured: &dyn Fn(ChannelName) -> bool,
) -> (Route, Vec<String>) {
    let mut why = Vec::new();
    if profile.is_some_and(Profile::is_deceased) {
        return (Route::Suppress("the recipient has died".into()), why);
    }
    let mut order = ls.channels.clone();
    if legal_effect {
        order.sort_by_key(|c| *c != ChannelName::Eaddress);
    }
    for ch in order {
        if !configured(ch) {
            why.push(format!("{}: not configured", ch.as_str()));
            continue;
        }
        let address = match ch {
            ChannelName::Eaddress => profile.filter(|p| p.eaddress_active).map(|_| recipient.to_string()),
            ChannelName::Email => profile.and_then(|p| p.email.clone()),
            ChannelName::Sms => profile.and_then(|p| p.phone.clone()),
        };
        match address {
            Some(address) => return (Route::Send { channel: ch, address }, why),
            None => why.push(format!(
                "{}: {}",
                ch.as_str(),
                match ch {
                    ChannelName::Eaddress => "no active e-address account",
                    ChannelName::Email => "no email declared",
                    ChannelName::Sms => "no phone declared",
                }
            )),
        }
    }
    let reason = format!("no channel reaches the recipient ({})", why.join("; "));
    (Route::Suppress(reason), why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls() -> LifeSituation {
        let text = include_str!("../../life-events/birth.toml");
        toml::from_str(text).expect("the shipped birth definition parses")
    }

    fn person() -> Profile {
        Profile { subject: "010190-10003".into(), ..Profile::default() }
    }

    #[test]
    fn the_first_reachable_channel_in_the_definitions_order_wins() {
        let p = Profile { email: Some("a@example.lv".into()), phone: Some("+37120000000".into()), ..person() };
        let (r, why) = route(&p.subject, Some(&p), &ls(), false, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Email, address: "a@example.lv".into() });
        assert_eq!(why, vec!["eaddress: no active e-address account".to_string()]);
    }

    #[test]
    fn an_active_e_address_is_used_first() {
        let p = Profile { eaddress_active: true, email: Some("a@example.lv".into()), ..person() };
        let (r, _) = route(&p.subject, Some(&p), &ls(), true, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Eaddress, address: p.subject.clone() });
    }

    #[test]
    fn unconfigured_channels_are_skipped() {
        let p = Profile { eaddress_active: true, phone: Some("+37120000000".into()), ..person() };
        let (r, _) = route(&p.subject, Some(&p), &ls(), false, &|c| c == ChannelName::Sms);
        assert_eq!(r, Route::Send { channel: ChannelName::Sms, address: "+37120000000".into() });
    }

    #[test]
    fn the_dead_get_nothing() {
        let p = Profile {
            email: Some("a@example.lv".into()),
            death_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1),
            ..person()
        };
        let (r, _) = route(&p.subject, Some(&p), &ls(), false, &|_| true);
        assert_eq!(r, Route::Suppress("the recipient has died".into()));
    }

    #[test]
    fn nobody_reachable_is_suppressed_with_every_reason() {
        let (r, _) = route("010190-10003", None, &ls(), false, &|_| true);
        let Route::Suppress(reason) = r else { panic!("expected suppression") };
        assert!(reason.contains("no email declared") && reason.contains("no active e-address"), "{reason}");
    }
}
