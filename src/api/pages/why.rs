//! [`Reason`]s in words: the sentences of "why did I get this?" and "why
//! was it not sent?" in Latvian, English or Russian, from the `why_*` texts
//! of `texts.toml`. Each channel and each registry fact has its own words
//! per language, so a sentence never declines a word it was handed.

use chrono::{Datelike, NaiveDate};

use super::i18n;
use crate::audit::plain::{Hold, Reason, Skip, Whom};
use crate::engine::RuleSet;

/// The sentences of `reasons` in `lang` (one of [`i18n::LANGS`]), life situations named as `rules` name them.
pub fn words(reasons: &[Reason], lang: &str, rules: &RuleSet) -> Vec<String> {
    let texts = i18n::texts(lang);
    let t = |key: &str| texts.get(key).cloned().unwrap_or_else(|| key.to_string());
    let date = |d: NaiveDate| {
        t("why_date")
            .replace("{d}", &d.day().to_string())
            .replace("{month}", &t(&format!("why_month_{}", d.month())))
            .replace("{y}", &d.year().to_string())
    };
    let event = |ty: &str| {
        let key = format!("why_ev_{}", ty.replace('.', "_"));
        if texts.contains_key(&key) { t(&key) } else { t("why_ev_other") }
    };
    let channel = |ch: &str| t(&format!("ch_{ch}"));
    // The purpose's name is its life situation's: the one sentence that names it is about that situation.
    let situation = reasons.iter().find_map(|r| match r {
        Reason::Situation { life_situation, .. } => Some(rules.situation_name(life_situation, lang)),
        _ => None,
    });
    let situation = situation.unwrap_or_default();
    let mut out = Vec::new();
    for r in reasons {
        let s = match r {
            Reason::Situation { event: Some(f), .. } => t("why_situation")
                .replace("{situation}", &situation)
                .replace("{event}", &event(&f.event_type))
                .replace("{date}", &date(f.on)),
            Reason::Situation { event: None, .. } => t("why_situation_only").replace("{situation}", &situation),
            Reason::About { whom } => t(match whom {
                Whom::Child => "why_about_child",
                Whom::Ward => "why_about_ward",
                Whom::Mandator => "why_about_mandator",
                Whom::Copy => "why_about_copy",
                Whom::Assisted => "why_about_assisted",
                Whom::Company => "why_about_company",
            }),
            Reason::Basis { owner, legal_basis } => {
                t("why_basis").replace("{owner}", owner).replace("{basis}", legal_basis)
            }
            Reason::Skipped { channel: ch, why } => {
                let because = match why {
                    Skip::NoContact => t(&format!("why_no_{ch}")),
                    Skip::Refused { on } => t("why_skip_refused").replace("{date}", &date(*on)),
                    Skip::NotAllowed => t("why_skip_not_allowed"),
                    Skip::NotReached => t("why_skip_not_reached"),
                };
                t("why_skipped").replace("{channel}", &channel(ch)).replace("{why}", &because)
            }
            Reason::Failed { channel: ch, times } => {
                t("why_failed").replace("{channel}", &channel(ch)).replace("{n}", &times.to_string())
            }
            Reason::Sent { channel: ch, on } => t(&format!("why_sent_{ch}")).replace("{date}", &date(*on)),
            Reason::Official => t("why_official"),
            Reason::Allowed { on } => t("why_allowed").replace("{date}", &date(*on)),
            Reason::MayRefuse => t("why_may_refuse"),
            Reason::Waiting { hold } => t(match hold {
                Some(Hold::QuietHours) => "why_held_quiet",
                Some(Hold::Holiday) => "why_held_holiday",
                Some(Hold::Cap) => "why_held_cap",
                None => "why_waiting",
            }),
            Reason::Refused { channel: ch, on, withdrawn } => {
                let by = ch.as_deref().map_or(String::new(), |c| t(&format!("why_by_{c}")));
                t(if *withdrawn { "why_withdrew" } else { "why_refused" })
                    .replace("{situation}", &situation)
                    .replace("{by}", &by)
                    .replace("{date}", &date(*on))
            }
            Reason::NotAllowed => t("why_not_allowed").replace("{situation}", &situation),
            Reason::Unreachable => t("why_unreachable"),
            Reason::RecipientDied => t("why_recipient_died"),
            Reason::SubjectDied => t("why_subject_died"),
            Reason::Ended { event: f } => {
                t("why_ended").replace("{event}", &event(&f.event_type)).replace("{date}", &date(f.on))
            }
            Reason::ClosedByStaff => t("why_closed_by_staff"),
            Reason::Rejected { channel: ch } => t("why_rejected").replace("{channel}", &channel(ch)),
            Reason::GaveUp => t("why_gave_up"),
            Reason::Fault => t("why_fault"),
            Reason::Shadow => t("why_shadow"),
            Reason::Other => t("why_other"),
        };
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::words;
    use crate::audit::Sealed;
    use crate::audit::plain::{Reason, ended_reason, reasons};
    use crate::audit::trace::{EventRef, NoticeTrace, Via};
    use crate::engine::RuleSet;
    use crate::engine::profile::{Consent, Profile};
    use crate::store::NoticeDetail;

    const MOTHER: &str = "150394-11002";
    const CHILD: &str = "321118-20001";

    fn rules() -> &'static RuleSet {
        static RULES: std::sync::OnceLock<RuleSet> = std::sync::OnceLock::new();
        RULES.get_or_init(|| {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            RuleSet::load(&root.join("life-events"), &root.join("rules")).expect("the shipped definitions load")
        })
    }

    /// Riga noon of a day, ms.
    fn ms(day: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&format!("{day}T12:00:00+02:00")).unwrap().timestamp_millis()
    }

    /// A notice of `ls` to `recipient`, made on an `event` of 18 November 2026, reaching them `via`.
    fn notice(ls: &str, recipient: &str, event: &str, via: Via, legal_effect: bool) -> NoticeDetail {
        let version = rules().situations.iter().find(|d| d.id == ls).unwrap().version;
        let subject = if via == Via::Direct { recipient } else { CHILD };
        NoticeDetail {
            id: "n1".into(),
            case_id: "c1".into(),
            life_situation: ls.into(),
            version,
            step: "s1".into(),
            recipient: recipient.into(),
            purpose: ls.into(),
            template: "t".into(),
            state: "pending".into(),
            channel: None,
            last_error: None,
            available_at: ms("2026-11-20"),
            created_at: ms("2026-11-20"),
            sent_at: None,
            trace: Some(NoticeTrace {
                life_situation: ls.into(),
                version,
                step: "s1".into(),
                rule: "rule.rhai".into(),
                purpose: ls.into(),
                legal_effect,
                event: EventRef {
                    seq: 7,
                    source: "pmlp".into(),
                    external_id: "PMLP-2026-000123".into(),
                    event_type: event.into(),
                    occurred_at: ms("2026-11-18"),
                },
                addressed_to: Some(subject.into()),
                via,
                mandates: Vec::new(),
                made_at: ms("2026-11-20"),
                erased_at: None,
            }),
            erased_at: None,
            draft_ref: None,
            receipt_status: None,
        }
    }

    fn rec(kind: &str, at: &str, detail: Value) -> Sealed {
        Sealed {
            chain: "l1".into(),
            seq: 1,
            at: ms(at),
            kind: kind.into(),
            purpose: None,
            subject_ref: None,
            notice_id: Some("n1".into()),
            record: json!({ "kind": kind, "detail": detail }).to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// A delivery record as the delivery trace writes it.
    fn delivery(outcome: &str, at: &str, channel: Option<&str>, why: &[String], consents: Value) -> Sealed {
        rec(
            &format!("delivery.{outcome}"),
            at,
            json!({ "channel": channel, "outcome": outcome, "why": why, "consents": consents, "error": null }),
        )
    }

    /// The sentences in each language, checked to name no person.
    fn said(n: &NoticeDetail, records: &[Sealed]) -> [Vec<String>; 3] {
        let r = reasons(n, records, Some(rules()));
        ["lv", "en", "ru"].map(|lang| {
            let lines = words(&r, lang, rules());
            for l in &lines {
                assert_eq!(crate::mask::mask_codes_in(l), *l, "{lang}: no personal code in {l:?}");
                for secret in [MOTHER, CHILD, "PMLP-2026-000123", "rule", "birth.registered", "{", "why_"] {
                    assert!(!l.contains(secret), "{lang}: {secret:?} in {l:?}");
                }
            }
            lines
        })
    }

    /// The last sentence in Latvian, English and Russian is `want`'s.
    fn last_sentences(said: [Vec<String>; 3], want: [&str; 3]) {
        for (lines, want) in said.iter().zip(want) {
            assert_eq!(lines.last().map(String::as_str), Some(want), "{lines:?}");
        }
    }

    fn consent(channel: Option<&str>, granted: bool, day: &str) -> Consent {
        Consent {
            purpose: "birth".into(),
            channel: channel.map(String::from),
            granted,
            at: ms(day),
            source: "portal".into(),
            text_version: None,
        }
    }

    /// Routes a birth notice to `p` as delivery would, and records the suppression it comes to.
    fn suppressed(p: &Profile) -> (NoticeDetail, Vec<Sealed>) {
        let ls = rules().situations.iter().find(|d| d.id == "birth").unwrap();
        let (route, why) = crate::consent::route(MOTHER, Some(p), ls, "birth", false, &|_| true);
        let reason = match route {
            crate::consent::Route::Suppress(reason) => reason,
            other => panic!("not suppressed: {other:?}"),
        };
        let consents: Vec<Value> = p
            .consents
            .iter()
            .map(|c| json!({ "purpose": c.purpose, "channel": c.channel, "granted": c.granted, "at": c.at }))
            .collect();
        let mut n = notice("birth", MOTHER, "birth.registered", Via::Mother, false);
        n.state = "suppressed".into();
        n.last_error = Some(reason);
        (n, vec![delivery("suppressed", "2026-11-20", None, &why, json!(consents))])
    }

    #[test]
    fn sent_to_the_e_address_as_the_official_channel() {
        let mut n = notice("passport_expiry", MOTHER, "document.issued", Via::Direct, true);
        n.state = "sent".into();
        n.channel = Some("eaddress".into());
        n.sent_at = Some(ms("2026-11-23"));
        let [lv, en, ru] = said(&n, &[delivery("sent", "2026-11-23", Some("eaddress"), &[], json!([]))]);
        assert_eq!(
            en,
            [
                "It concerns “Identity document about to expire”, because an identity document was issued on 18 November 2026.",
                "Sender: Pilsonības un migrācijas lietu pārvalde (PMLP); legal basis: Personu apliecinošu dokumentu likums; \
                 MK 2012. gada 21. februāra noteikumi Nr. 134 \"Personu apliecinošu dokumentu noteikumi\".",
                "It was sent to your e-address on 23 November 2026.",
                "The e-address is the official channel for documents with legal effect, so it comes first.",
                "These notices are sent unless you refuse them; you can do so under “My consents”.",
            ]
        );
        assert_eq!(
            lv[0],
            "Tas attiecas uz dzīves situāciju “Personu apliecinoša dokumenta derīguma termiņa beigas”, jo 2026. gada \
             18. novembrī izsniegts personu apliecinošs dokuments."
        );
        assert_eq!(lv[2], "Tas nosūtīts uz jūsu e-adresi 2026. gada 23. novembrī.");
        assert_eq!(
            lv[3],
            "E-adrese ir oficiālais kanāls dokumentiem ar juridisku spēku, tāpēc tā tiek izmantota vispirms."
        );
        assert_eq!(ru[2], "Оно отправлено на ваш э-адрес 23 ноября 2026 года.");
        assert_eq!(
            ru[3],
            "Э-адрес — официальный канал для документов с юридической силой, поэтому он используется в первую очередь."
        );
    }

    #[test]
    fn sent_by_sms_after_the_e_address_did_not_reach_and_sms_failed_once() {
        let mut n = notice("residence_change", MOTHER, "address.declared", Via::Direct, false);
        n.state = "sent".into();
        n.channel = Some("sms".into());
        n.sent_at = Some(ms("2026-11-21"));
        let why = ["eaddress: not configured".to_string(), "email: no email declared".to_string()];
        let records = [
            rec("notice.created", "2026-11-20", json!({})),
            delivery("unreachable", "2026-11-20", Some("eaddress"), &[], json!([])),
            delivery("retry", "2026-11-20", Some("sms"), &why, json!([])),
            delivery("sent", "2026-11-21", Some("sms"), &why, json!([])),
        ];
        let [lv, en, ru] = said(&n, &records);
        assert_eq!(
            en[2..],
            [
                "We did not use the channel “e-address”, because it did not reach you.",
                "We did not use the channel “email”, because we have no email address of yours.",
                "Attempts to send it through the channel “SMS” that failed: 1.",
                "It was sent to your phone by SMS on 21 November 2026.",
                "These notices are sent unless you refuse them; you can do so under “My consents”.",
            ]
        );
        assert_eq!(
            lv[2..6],
            [
                "Kanālu “e-adrese” neizmantojām, jo tas jūs nesasniedza.",
                "Kanālu “e-pasts” neizmantojām, jo mums nav jūsu e-pasta adreses.",
                "Neizdevušies mēģinājumi to nosūtīt pa kanālu “īsziņa (SMS)”: 1.",
                "Tas nosūtīts īsziņā uz jūsu tālruni 2026. gada 21. novembrī.",
            ]
        );
        assert_eq!(
            ru[2..6],
            [
                "Канал «э-адрес» не использован, потому что он до вас не дошёл.",
                "Канал «эл. почта» не использован, потому что у нас нет адреса вашей эл. почты.",
                "Неудачных попыток отправить его по каналу «SMS»: 1.",
                "Оно отправлено по SMS на ваш телефон 21 ноября 2026 года.",
            ]
        );
    }

    #[test]
    fn not_sent_because_the_reader_refused_the_purpose() {
        let p = Profile {
            subject: MOTHER.into(),
            email: Some("anna@example.lv".into()),
            consents: vec![consent(None, false, "2026-03-03")],
            ..Profile::default()
        };
        let (n, records) = suppressed(&p);
        assert_eq!(
            reasons(&n, &records, Some(rules())).last(),
            Some(&Reason::Refused {
                channel: None,
                on: chrono::NaiveDate::from_ymd_opt(2026, 3, 3).unwrap(),
                withdrawn: false
            })
        );
        last_sentences(
            said(&n, &records),
            [
                "Jūs 2026. gada 3. martā atteicāties saņemt paziņojumus par dzīves situāciju “Bērna piedzimšana”.",
                "You refused notices about “Birth of a child” on 3 March 2026.",
                "3 марта 2026 года вы отказались от уведомлений о жизненной ситуации «Рождение ребёнка».",
            ],
        );
    }

    #[test]
    fn not_sent_because_sms_was_refused_and_nothing_else_reaches() {
        let p = Profile {
            subject: MOTHER.into(),
            phone: Some("+37120000000".into()),
            consents: vec![consent(Some("sms"), false, "2026-03-03")],
            ..Profile::default()
        };
        let (n, records) = suppressed(&p);
        let [lv, en, ru] = said(&n, &records);
        let from = en.iter().position(|l| l.starts_with("It was not sent")).expect("the headline reason");
        assert_eq!(
            en[from..],
            [
                "It was not sent: we have no way to reach you.",
                "We did not use the channel “e-address”, because you have no active e-address account.",
                "We did not use the channel “email”, because we have no email address of yours.",
                "We did not use the channel “SMS”, because you refused it for these notices on 3 March 2026.",
                "We did not use the channel “letter”, because we have no postal address of yours.",
            ]
        );
        assert!(
            lv.contains(&"Kanālu “īsziņa (SMS)” neizmantojām, jo jūs no tā atteicāties 2026. gada 3. martā.".into())
        );
        assert!(ru.contains(&"Канал «SMS» не использован, потому что вы отказались от него 3 марта 2026 года.".into()));
    }

    #[test]
    fn about_a_child_to_a_parent() {
        let mut n = notice("birth", MOTHER, "birth.registered", Via::Mother, false);
        n.state = "sent".into();
        n.channel = Some("email".into());
        n.sent_at = Some(ms("2026-11-20"));
        let why = ["eaddress: no active e-address account".to_string()];
        let [lv, en, ru] = said(&n, &[delivery("sent", "2026-11-20", Some("email"), &why, json!([]))]);
        assert_eq!(en[0], "It concerns “Birth of a child”, because a birth was registered on 18 November 2026.");
        assert_eq!(en[1], "It is about your child: notices about a minor go to their parents.");
        assert_eq!(
            lv[0],
            "Tas attiecas uz dzīves situāciju “Bērna piedzimšana”, jo 2026. gada 18. novembrī reģistrēta bērna dzimšana."
        );
        assert_eq!(lv[1], "Tas ir par jūsu bērnu: paziņojumus par nepilngadīgo sūtām viņa vecākiem.");
        assert_eq!(
            ru[0],
            "Оно касается жизненной ситуации «Рождение ребёнка», потому что 18 ноября 2026 года зарегистрировано рождение ребёнка."
        );
        assert_eq!(ru[1], "Оно касается вашего ребёнка: уведомления о несовершеннолетнем отправляются его родителям.");
        assert_eq!(
            en.last().unwrap(),
            "These notices are sent unless you refuse them; you can do so under “My consents”."
        );
        assert!(en.contains(&"It was sent to your email on 20 November 2026.".into()), "{en:?}");
    }

    #[test]
    fn withdrawn_because_a_new_document_was_issued() {
        let mut n = notice("passport_expiry", MOTHER, "document.issued", Via::Direct, true);
        n.state = "cancelled".into();
        let on = chrono::NaiveDate::from_ymd_opt(2027, 3, 3).unwrap();
        n.last_error = Some(ended_reason("a new document of the same kind was issued", "document.issued", on));
        last_sentences(
            said(&n, &[rec("notice.withdrawn", "2027-03-03", json!({ "reason": n.last_error }))]),
            [
                "Tas vairs nebija vajadzīgs, jo 2027. gada 3. martā izsniegts personu apliecinošs dokuments.",
                "It was no longer needed, because an identity document was issued on 3 March 2027.",
                "Оно больше не нужно, потому что 3 марта 2027 года выдан документ, удостоверяющий личность.",
            ],
        );
    }

    #[test]
    fn every_fact_a_definition_starts_ends_or_skips_on_has_its_words() {
        let texts = super::i18n::texts("en");
        for d in &rules().situations {
            let cancels = d.cancel.iter().flat_map(|c| c.events.iter());
            let unless = d.steps.iter().flat_map(|s| s.unless.iter());
            for ty in d.trigger.events.iter().chain(cancels).chain(unless) {
                assert!(texts.contains_key(&format!("why_ev_{}", ty.replace('.', "_"))), "{}: {ty}", d.id);
            }
        }
    }
}
