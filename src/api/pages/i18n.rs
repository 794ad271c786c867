//! The pages' texts in Latvian, English and Russian (`texts.toml`, embedded),
//! and which language a request gets: the `lang` switch (kept in a cookie),
//! else the person's own language from their profile, else the browser's
//! `Accept-Language`, else Latvian.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{HeaderMap, header};

/// The languages the pages speak, the default first.
pub const LANGS: [&str; 3] = ["lv", "en", "ru"];

type Texts = BTreeMap<String, BTreeMap<String, String>>;

fn all() -> &'static Texts {
    static TEXTS: OnceLock<Texts> = OnceLock::new();
    TEXTS.get_or_init(|| toml::from_str(include_str!("texts.toml")).expect("texts.toml is valid (a unit test says so)"))
}

/// Every text of `lang` (one of [`LANGS`]), by key.
pub fn texts(lang: &str) -> &'static BTreeMap<String, String> {
    let all = all();
    all.get(lang).unwrap_or_else(|| &all["lv"])
}

/// `lang` if the pages speak it.
pub fn known(lang: &str) -> Option<&'static str> {
    LANGS.iter().copied().find(|l| l.eq_ignore_ascii_case(lang.trim()))
}

/// The language of a request: `asked` (the switch), the cookie, `profile`, the browser's, Latvian.
pub fn choose(asked: Option<&str>, headers: &HeaderMap, profile: Option<&str>) -> &'static str {
    asked
        .and_then(known)
        .or_else(|| super::session::cookie(headers, super::session::LANG).and_then(known))
        .or_else(|| profile.and_then(known))
        .or_else(|| {
            let accept = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
            accept.split(',').filter_map(|part| known(part.split(';').next()?.split('-').next()?)).next()
        })
        .unwrap_or("lv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_text() {
        let all = all();
        let keys: Vec<&String> = all["en"].keys().collect();
        for lang in LANGS {
            let these: Vec<&String> = all[lang].keys().collect();
            assert_eq!(these, keys, "{lang} has the same keys as en");
            assert!(all[lang].values().all(|v| !v.trim().is_empty()), "{lang}: no empty text");
        }
        assert_eq!(all.len(), LANGS.len());
    }

    #[test]
    fn the_switch_wins_then_the_cookie_the_profile_and_the_browser() {
        let mut h = HeaderMap::new();
        assert_eq!(choose(None, &h, None), "lv");
        h.insert(header::ACCEPT_LANGUAGE, "de-DE, ru;q=0.8, en;q=0.5".parse().unwrap());
        assert_eq!(choose(None, &h, None), "ru");
        assert_eq!(choose(None, &h, Some("en")), "en");
        h.insert(header::COOKIE, "p_lang=lv".parse().unwrap());
        assert_eq!(choose(None, &h, Some("en")), "lv");
        assert_eq!(choose(Some("EN"), &h, None), "en");
        assert_eq!(choose(Some("de"), &h, None), "lv", "an unknown switch is ignored");
    }
}
