//! Citizen bearer tokens: `pc1.` + base64url(`subject|expiry`) + `.` +
//! base64url(HMAC-SHA-256 of that payload), keyed by the secret that
//! `http.token_secret_env` names. This is the integration point for the
//! state's login: in production the portal's own token (an OIDC ID token of
//! the state's identity provider) would be verified here instead, and
//! `proactive token issue` exists for tests and the demo.
//!
//! A home-made HMAC token rather than a JWT: it carries two fields and one
//! algorithm, so it has none of JWT's algorithm-confusion surface, needs no
//! new dependency, and follows the pattern of the unsubscribe links. The
//! expiry is checked against the wall clock, never the engine's (possibly
//! virtual) clock: a login session lives in real time.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::HttpConfig;

/// The key used when no `http.token_secret_env` is configured: fine for
/// development and tests, forgeable anywhere else.
pub const DEV_KEY: &str = "proactive development citizen-token key: configure http.token_secret_env";

const PREFIX: &str = "pc1.";

/// The longest a token may live: a login session, not a standing credential.
pub const MAX_TTL_MINUTES: u64 = 24 * 60;

/// The MAC key `http` names (`token_secret_env`), or [`DEV_KEY`] with a warning.
pub fn token_key(http: &HttpConfig) -> anyhow::Result<Vec<u8>> {
    match &http.token_secret_env {
        Some(var) => Ok(crate::config::secret(var)?.into_bytes()),
        None => {
            tracing::warn!("http.token_secret_env is not set: citizen tokens use the development key");
            Ok(DEV_KEY.as_bytes().to_vec())
        }
    }
}

fn mac(key: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(b"proactive-citizen-token-v1\n");
    m.update(payload);
    m
}

/// A token for the person `subject` (a personal code, any spelling) valid
/// until `expires_at` (seconds since the epoch).
pub fn issue(key: &[u8], subject: &str, expires_at: i64) -> anyhow::Result<String> {
    let subject = crate::events::codes::normalize_personal_code(subject)
        .map_err(|e| anyhow::anyhow!("--subject: invalid personal code: {e}"))?;
    let payload = format!("{subject}|{expires_at}");
    let tag = mac(key, payload.as_bytes()).finalize().into_bytes();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Ok(format!("{PREFIX}{}.{}", b64.encode(payload), b64.encode(tag)))
}

/// Why a token is refused (all answered 401, told apart in the detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not the shape of a citizen token.
    Malformed,
    /// Not signed with our key, or altered.
    BadSignature,
    /// Past its expiry.
    Expired,
}

/// The subject a token was issued to, if it is ours and not expired at `now_s`.
pub fn verify(key: &[u8], token: &str, now_s: i64) -> Result<String, TokenError> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (payload, tag) = rest.split_once('.').ok_or(TokenError::Malformed)?;
    let payload = b64.decode(payload).map_err(|_| TokenError::Malformed)?;
    let tag = b64.decode(tag).map_err(|_| TokenError::Malformed)?;
    // The signature first: nothing of an unsigned payload is believed, not even its shape.
    mac(key, &payload).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
    let text = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
    let (subject, exp) = text.split_once('|').ok_or(TokenError::Malformed)?;
    let exp: i64 = exp.parse().map_err(|_| TokenError::Malformed)?;
    if exp <= now_s {
        return Err(TokenError::Expired);
    }
    Ok(subject.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test key";
    const CODE: &str = "150394-11002";

    #[test]
    fn a_token_names_its_subject_until_it_expires() {
        let t = issue(KEY, "15039411002", 2_000).unwrap();
        assert!(t.starts_with("pc1."));
        assert_eq!(verify(KEY, &t, 1_999), Ok(CODE.to_string()), "the canonical spelling");
        assert_eq!(verify(KEY, &t, 2_000), Err(TokenError::Expired));
        assert_eq!(verify(b"other key", &t, 1_000), Err(TokenError::BadSignature));
    }

    #[test]
    fn altered_or_foreign_tokens_are_refused() {
        let t = issue(KEY, CODE, 2_000).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (_, tag) = t.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let forged = format!("{PREFIX}{}.{tag}", b64.encode("020792-11002|2000"));
        assert_eq!(verify(KEY, &forged, 1_000), Err(TokenError::BadSignature));
        let later = format!("{PREFIX}{}.{tag}", b64.encode(format!("{CODE}|9999999999")));
        assert_eq!(verify(KEY, &later, 1_000), Err(TokenError::BadSignature), "the expiry is signed too");
        for bad in ["", "pc1.", "pc1.x", "pc1.!!.!!", "pk_0123456789ab_AAAA", "pc1.YQ.YQ"] {
            assert!(verify(KEY, bad, 1_000).is_err(), "{bad}");
        }
        assert!(issue(KEY, "150394-11003", 2_000).is_err(), "a wrong check digit is no subject");
        assert!(issue(KEY, "40003245752", 2_000).is_err(), "a company cannot log in as a citizen");
    }
}
