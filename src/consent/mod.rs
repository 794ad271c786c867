//! Consent and routing: who can be reached for a notice, and on which
//! channel. Decided at send time, so that a death, a new contact or an
//! e-address activation recorded after the notice was queued still counts.

pub mod timing;

pub use timing::QuietHours;

use crate::engine::definitions::{ChannelName, ConsentMode, LifeSituation};
use crate::engine::profile::Profile;

/// A suppression's reason for a recipient who has died.
pub const RECIPIENT_DIED: &str = "the recipient has died";
/// How a suppression's reason begins when consent ruled out every usable channel.
pub const NO_CHANNEL_CONSENTED: &str = "the recipient's consent allows no channel";
/// How a suppression's reason begins when no channel reaches the recipient.
pub const NO_CHANNEL_REACHES: &str = "no channel reaches the recipient";

/// The suppression's reason when no channel reaches the recipient, with why each did not.
pub fn unreachable_reason(why: &[String]) -> String {
    format!("{NO_CHANNEL_REACHES} ({})", why.join("; "))
}

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

/// Picks the channel for a notice to `recipient` serving `purpose`: the life
/// situation's channels in order (the e-address first for notices with legal
/// effect), skipping those not configured here, those that do not reach the
/// person, and those the person's consent does not allow — a refusal or
/// withdrawal (for that channel or for all) always, and for an opt-in
/// purpose anything without a grant. Returns the route and, for the record,
/// why each channel was skipped.
pub fn route(
    recipient: &str,
    profile: Option<&Profile>,
    ls: &LifeSituation,
    purpose: &str,
    legal_effect: bool,
    configured: &dyn Fn(ChannelName) -> bool,
) -> (Route, Vec<String>) {
    let mut why = Vec::new();
    if profile.is_some_and(Profile::is_deceased) {
        return (Route::Suppress(RECIPIENT_DIED.into()), why);
    }
    let mut order = ls.channels.clone();
    // The person's own order first, among the channels the situation uses.
    if let Some(p) = profile.filter(|p| !p.channel_order.is_empty()) {
        let rank = |c: &ChannelName| p.channel_order.iter().position(|x| x == c.as_str()).unwrap_or(usize::MAX);
        order.sort_by_key(rank);
        why.push(format!("the person's channel order: {}", p.channel_order.join(", ")));
    }
    if legal_effect {
        order.sort_by_key(|c| *c != ChannelName::Eaddress);
    }
    // A letter (or a client centre's task) comes after every digital channel,
    // and first for a person marked as assisted with no representative.
    order.retain(|c| *c != ChannelName::Letter);
    if profile.and_then(|p| p.assisted.as_ref()).is_some_and(|a| a.representative.is_none()) {
        why.push("assisted: letters or a client centre instead of digital channels".into());
        order.clear();
    }
    order.push(ChannelName::Letter);
    let opt_in = ls.purposes.iter().any(|p| p.id == purpose && p.mode == ConsentMode::OptIn);
    let mut refused = 0;
    for ch in order {
        if !configured(ch) {
            why.push(format!("{}: not configured", ch.as_str()));
            continue;
        }
        match profile.and_then(|p| p.consent_for(purpose, ch.as_str())) {
            Some(c) if !c.granted => {
                refused += 1;
                let day = crate::engine::event_day(c.at);
                why.push(format!("{}: the person refused \"{purpose}\" on {day} ({})", ch.as_str(), c.source));
                continue;
            }
            None if opt_in => {
                refused += 1;
                why.push(format!("{}: \"{purpose}\" is opt-in and the person has not granted it", ch.as_str()));
                continue;
            }
            _ => {}
        }
        let address = match ch {
            ChannelName::Eaddress => profile.filter(|p| p.eaddress_active).map(|_| recipient.to_string()),
            ChannelName::Email => profile.and_then(|p| p.email.clone()),
            ChannelName::Sms => profile.and_then(|p| p.phone.clone()),
            ChannelName::Letter => profile.and_then(|p| p.address.clone()),
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
                    ChannelName::Letter => "no declared address",
                }
            )),
        }
    }
    // Only the per-channel lines count: a refusal on every usable channel is the consent's doing.
    let per_channel = |w: &&String| ["eaddress:", "email:", "sms:", "letter:"].iter().any(|c| w.starts_with(c));
    let usable = why.iter().filter(per_channel).filter(|w| !w.ends_with("not configured")).count();
    let reason = if refused > 0 && refused == usable {
        format!("{NO_CHANNEL_CONSENTED} for \"{purpose}\" ({})", why.join("; "))
    } else {
        unreachable_reason(&why)
    };
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
        let (r, why) = route(&p.subject, Some(&p), &ls(), "birth", false, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Email, address: "a@example.lv".into() });
        assert_eq!(why, vec!["eaddress: no active e-address account".to_string()]);
    }

    #[test]
    fn an_active_e_address_is_used_first() {
        let p = Profile { eaddress_active: true, email: Some("a@example.lv".into()), ..person() };
        let (r, _) = route(&p.subject, Some(&p), &ls(), "birth", true, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Eaddress, address: p.subject.clone() });
    }

    #[test]
    fn unconfigured_channels_are_skipped() {
        let p = Profile { eaddress_active: true, phone: Some("+37120000000".into()), ..person() };
        let (r, _) = route(&p.subject, Some(&p), &ls(), "birth", false, &|c| c == ChannelName::Sms);
        assert_eq!(r, Route::Send { channel: ChannelName::Sms, address: "+37120000000".into() });
    }

    #[test]
    fn the_dead_get_nothing() {
        let p = Profile {
            email: Some("a@example.lv".into()),
            death_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1),
            ..person()
        };
        let (r, _) = route(&p.subject, Some(&p), &ls(), "birth", false, &|_| true);
        assert_eq!(r, Route::Suppress("the recipient has died".into()));
    }

    fn consent(purpose: &str, channel: Option<&str>, granted: bool) -> crate::engine::profile::Consent {
        crate::engine::profile::Consent {
            purpose: purpose.into(),
            channel: channel.map(String::from),
            granted,
            at: 1_764_000_000_000,
            source: "portal".into(),
            text_version: None,
        }
    }

    #[test]
    fn a_refusal_on_one_channel_moves_to_the_next_and_on_all_suppresses() {
        let reachable = Profile { email: Some("a@example.lv".into()), phone: Some("+37120000000".into()), ..person() };
        let p = Profile { consents: vec![consent("birth", Some("email"), false)], ..reachable.clone() };
        let (r, why) = route(&p.subject, Some(&p), &ls(), "birth", false, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Sms, address: "+37120000000".into() });
        assert!(why.iter().any(|w| w.starts_with("email: the person refused \"birth\"")), "{why:?}");
        let p = Profile { consents: vec![consent("birth", None, false)], ..reachable.clone() };
        let (r, _) = route(&p.subject, Some(&p), &ls(), "birth", false, &|_| true);
        let Route::Suppress(reason) = r else { panic!("a refusal of the purpose suppresses") };
        assert!(reason.contains("consent allows no channel"), "{reason}");
        // A grant for one channel after refusing all: that channel only.
        let p = Profile {
            consents: vec![consent("birth", None, false), consent("birth", Some("sms"), true)],
            ..reachable.clone()
        };
        let (r, _) = route(&p.subject, Some(&p), &ls(), "birth", false, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Sms, address: "+37120000000".into() });
        // Another purpose is not touched.
        let p = Profile { consents: vec![consent("death", None, false)], ..reachable };
        let (r, _) = route(&p.subject, Some(&p), &ls(), "birth", false, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Email, address: "a@example.lv".into() });
    }

    #[test]
    fn a_letter_is_the_last_resort_and_the_first_for_an_assisted_person_without_a_helper() {
        let p = Profile { address: Some("Brīvības iela 1, Rīga".into()), ..person() };
        let (r, why) = route(&p.subject, Some(&p), &ls(), "birth", false, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Letter, address: "Brīvības iela 1, Rīga".into() });
        assert!(why.iter().any(|w| w == "email: no email declared"), "{why:?}");
        let (r, _) = route(&p.subject, Some(&p), &ls(), "birth", false, &|c| c != ChannelName::Letter);
        assert!(matches!(r, Route::Suppress(_)), "no letter channel configured: {r:?}");
        let assisted = Profile {
            email: Some("a@example.lv".into()),
            assisted: Some(crate::engine::profile::Assistance { representative: None }),
            ..p
        };
        let (r, _) = route(&assisted.subject, Some(&assisted), &ls(), "birth", false, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Letter, address: "Brīvības iela 1, Rīga".into() });
    }

    #[test]
    fn an_opt_in_purpose_needs_a_grant() {
        let mut d = ls();
        d.purposes[0].mode = ConsentMode::OptIn;
        let p = Profile { email: Some("a@example.lv".into()), ..person() };
        let (r, _) = route(&p.subject, Some(&p), &d, "birth", false, &|_| true);
        assert!(matches!(r, Route::Suppress(ref why) if why.contains("opt-in")), "{r:?}");
        let p = Profile { consents: vec![consent("birth", Some("email"), true)], ..p };
        let (r, _) = route(&p.subject, Some(&p), &d, "birth", false, &|_| true);
        assert_eq!(r, Route::Send { channel: ChannelName::Email, address: "a@example.lv".into() });
    }

    #[test]
    fn nobody_reachable_is_suppressed_with_every_reason() {
        let (r, _) = route("010190-10003", None, &ls(), "birth", false, &|_| true);
        let Route::Suppress(reason) = r else { panic!("expected suppression") };
        assert!(reason.contains("no email declared") && reason.contains("no active e-address"), "{reason}");
    }

    /// The routing decision for a table of people: who they are, what they
    /// declared, and the channel (or the suppression) that must follow.
    #[test]
    fn routing_table() {
        let email = Some("a@example.lv".to_string());
        let phone = Some("+37120000000".to_string());
        let reachable = Profile { email: email.clone(), phone: phone.clone(), eaddress_active: true, ..person() };
        let dead = Profile { death_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 1), ..reachable.clone() };
        let no_eaddress = Profile { eaddress_active: false, ..reachable.clone() };
        let refused_all = Profile { consents: vec![consent("birth", None, false)], ..reachable.clone() };
        let refused_eaddress =
            Profile { consents: vec![consent("birth", Some("eaddress"), false)], ..reachable.clone() };
        let prefers_sms = Profile { channel_order: vec!["sms".into(), "email".into()], ..reachable.clone() };
        let assisted = Profile {
            address: Some("Brīvības iela 1, Rīga".into()),
            assisted: Some(crate::engine::profile::Assistance { representative: None }),
            ..reachable.clone()
        };
        let nothing = person();
        // (case, profile, legal effect, expected channel, or the suppression's words)
        let table: Vec<(&str, &Profile, bool, Result<ChannelName, &str>)> = vec![
            ("reachable, informational", &reachable, false, Ok(ChannelName::Eaddress)),
            ("reachable, legal effect", &reachable, true, Ok(ChannelName::Eaddress)),
            ("deceased", &dead, false, Err("has died")),
            ("no e-address account, legal effect", &no_eaddress, true, Ok(ChannelName::Email)),
            ("refused the purpose on every channel", &refused_all, false, Err("consent allows no channel")),
            ("refused the purpose on the e-address only", &refused_eaddress, true, Ok(ChannelName::Email)),
            ("prefers SMS, informational", &prefers_sms, false, Ok(ChannelName::Sms)),
            ("prefers SMS, legal effect: the e-address still first", &prefers_sms, true, Ok(ChannelName::Eaddress)),
            ("assisted without a representative", &assisted, false, Ok(ChannelName::Letter)),
            ("nothing declared", &nothing, false, Err("no channel reaches")),
        ];
        for (case, p, legal, want) in table {
            let (r, why) = route(&p.subject, Some(p), &ls(), "birth", legal, &|_| true);
            match (r, want) {
                (Route::Send { channel, .. }, Ok(c)) => assert_eq!(channel, c, "{case}: {why:?}"),
                (Route::Suppress(reason), Err(words)) => assert!(reason.contains(words), "{case}: {reason}"),
                (r, want) => panic!("{case}: got {r:?}, wanted {want:?} ({why:?})"),
            }
        }
    }
}
