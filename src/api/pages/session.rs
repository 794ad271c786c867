//! Cookies, CSRF and the signed "acting for" value of the pages.
//!
//! The session cookie holds the credential the person pasted (a citizen
//! token, a staff key) and nothing else: every request verifies it again, so
//! an expired token or a revoked key ends the session at once, and the
//! server keeps no session table. Cookies are `HttpOnly` and
//! `SameSite=Strict`, and `Secure` when the request came over TLS (a
//! terminating proxy says so with `X-Forwarded-Proto: https`; a client
//! claiming it only makes its own cookie stricter).
//!
//! CSRF: every POST form carries the value of the `p_csrf` cookie in a hidden
//! field (double submit), compared in constant time, and a request whose
//! `Origin` (or `Sec-Fetch-Site`) names another site is refused. A
//! `SameSite=Strict` cookie alone would stop most forged posts; the token
//! covers browsers that ignore SameSite and the sign-in form, which has no
//! session cookie yet.
//!
//! Acting for someone: the person chosen is never put in a URL. Each person
//! the caller represents has an opaque [`handle`] (a MAC of the caller and
//! that person, with the server's key); the choice is posted as one, kept in
//! a cookie for the pages and put in a hidden field of every form, so a form
//! says whom it acts for. A handle that names none of the people the caller
//! represents now — altered, another caller's, a mandate since revoked — is
//! answered 403.

use axum::http::{HeaderMap, HeaderValue, header};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The citizen's session: their token.
pub const CITIZEN: &str = "pc_token";
/// The person the citizen acts for, as a [`handle`].
pub const ACTING: &str = "pc_for";
/// The staff member's session: their key.
pub const STAFF: &str = "ps_key";
/// The double-submit CSRF token.
pub const CSRF: &str = "p_csrf";
/// The language chosen with the switch.
pub const LANG: &str = "p_lang";

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the request reached us over TLS (directly or through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value; `max_age` none: until the browser closes; `Some(0)`: delete.
pub fn set_cookie(req: &HeaderMap, name: &str, value: &str, path: &str, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if let Some(s) = max_age {
        c.push_str(&format!("; Max-Age={s}"));
    }
    if over_tls(req) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are base64url or hex")
}

/// A fresh random token (hex), for the CSRF cookie.
pub fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

/// The CSRF token of this browser, and whether it must be set (it was not sent).
pub fn csrf_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF).filter(|v| v.len() == 48 && v.bytes().all(|b| b.is_ascii_hexdigit())) {
        Some(v) => (v.to_string(), false),
        None => (random_token(), true),
    }
}

/// Whether a POST is this site's own form: the CSRF field matches the
/// cookie, and neither `Origin` nor `Sec-Fetch-Site` names another site.
pub fn same_site_post(headers: &HeaderMap, form_token: Option<&str>) -> bool {
    let Some(cookie) = cookie(headers, CSRF) else { return false };
    let Some(sent) = form_token else { return false };
    if !bool::from(cookie.as_bytes().ct_eq(sent.as_bytes())) {
        return false;
    }
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "cross-site") {
        return false;
    }
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), headers.get(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            let host = host.to_str().unwrap_or("");
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
    }
}

/// An opaque handle of `target` for `caller`: a MAC of both, so it names no
/// code (not even encoded), differs per caller, and is resolved only by
/// matching it against the people the server finds the caller represents.
pub fn handle(key: &[u8], caller: &str, target: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(b"proactive-pages-acting-for-v1\n");
    m.update(caller.as_bytes());
    m.update(b"|");
    m.update(target.as_bytes());
    hex::encode(&m.finalize().into_bytes()[..16])
}

/// Which of `candidates` the handle `value` names, for `caller` (compared in constant time).
pub fn resolve<'a>(key: &[u8], caller: &str, value: &str, candidates: &'a [String]) -> Option<&'a String> {
    candidates.iter().find(|c| bool::from(handle(key, caller, c).as_bytes().ct_eq(value.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn an_acting_for_handle_is_opaque_and_the_callers_own() {
        let (me, child, other) = ("150394-11002", "321118-20001", "321118-20002");
        let h = handle(b"k", me, child);
        assert_eq!(h.len(), 32);
        let candidates = vec![other.to_string(), child.to_string()];
        assert_eq!(resolve(b"k", me, &h, &candidates).map(String::as_str), Some(child));
        assert_eq!(resolve(b"k", "329900-00003", &h, &candidates), None, "another caller cannot use it");
        assert_eq!(resolve(b"other key", me, &h, &candidates), None);
        assert_eq!(resolve(b"k", me, &h, &candidates[..1]), None, "only among the people represented");
        for bad in ["", "0", &h[..31]] {
            assert_eq!(resolve(b"k", me, bad, &candidates), None, "{bad}");
        }
    }

    #[test]
    fn a_post_needs_the_cookies_token_and_no_foreign_origin() {
        let t = "a".repeat(48);
        let cookie = format!("{CSRF}={t}; other=1");
        let ok = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert!(same_site_post(&ok, Some(&t)));
        assert!(!same_site_post(&ok, Some(&"b".repeat(48))), "another token");
        assert!(!same_site_post(&ok, None), "no token");
        let foreign = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("origin", "http://evil.example")]);
        assert!(!same_site_post(&foreign, Some(&t)));
        let cross = headers(&[("cookie", &cookie), ("sec-fetch-site", "cross-site")]);
        assert!(!same_site_post(&cross, Some(&t)));
        let no_cookie = headers(&[("host", "127.0.0.1:8080")]);
        assert!(!same_site_post(&no_cookie, Some(&t)));
        assert!(same_site_post(&headers(&[("cookie", &cookie)]), Some(&t)), "no Origin: the token decides");
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        let plain = set_cookie(&HeaderMap::new(), CITIZEN, "v", "/", None);
        assert_eq!(plain, "pc_token=v; Path=/; HttpOnly; SameSite=Strict");
        let tls = set_cookie(&headers(&[("x-forwarded-proto", "https")]), CITIZEN, "", "/", Some(0));
        assert_eq!(tls, "pc_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure");
        assert_eq!(cookie(&headers(&[("cookie", "a=1; pc_token=xyz")]), CITIZEN), Some("xyz"));
        assert_eq!(cookie(&headers(&[("cookie", "pc_token=")]), CITIZEN), None);
    }
}
