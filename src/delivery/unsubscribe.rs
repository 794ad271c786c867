//! One-click unsubscribe tokens (RFC 8058) for the `List-Unsubscribe`
//! header: `{notice id}.{HMAC-SHA256 hex}` over the notice id, recipient and
//! purpose, so the engine's endpoint can find the notice and check that the
//! link was ours without storing anything per email.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::LinksConfig;

/// The key used when no `unsubscribe_secret_env` is configured: fine for
/// development and the demo, forgeable anywhere else.
pub const DEV_KEY: &str = "proactive development unsubscribe key: configure links.unsubscribe_secret_env";

/// The MAC key `links` names (`unsubscribe_secret_env`), or [`DEV_KEY`] with a warning.
pub fn unsubscribe_key(links: &LinksConfig) -> anyhow::Result<Vec<u8>> {
    match &links.unsubscribe_secret_env {
        Some(var) => Ok(crate::config::secret(var)?.into_bytes()),
        None => {
            tracing::warn!("links.unsubscribe_secret_env is not set: unsubscribe links use the development key");
            Ok(DEV_KEY.as_bytes().to_vec())
        }
    }
}

fn mac(key: &[u8], notice_id: &str, recipient: &str, purpose: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(b"proactive-unsubscribe-v1");
    // Length-prefixed, so no two (notice, recipient, purpose) triples feed the same bytes.
    for part in [notice_id, recipient, purpose] {
        m.update(format!("\n{}:", part.len()).as_bytes());
        m.update(part.as_bytes());
    }
    m
}

/// The token for one notice's email: `{notice_id}.{64 hex digits}`.
pub fn unsubscribe_token(key: &[u8], notice_id: &str, recipient: &str, purpose: &str) -> String {
    let tag = mac(key, notice_id, recipient, purpose).finalize().into_bytes();
    format!("{notice_id}.{}", hex::encode(tag))
}

/// The notice id a token names (not yet verified).
pub fn token_notice_id(token: &str) -> Option<&str> {
    token.rsplit_once('.').map(|(id, _)| id).filter(|id| !id.is_empty())
}

/// Whether `token` was made with `key` for this notice's recipient and purpose
/// (compared in constant time).
pub fn verify_unsubscribe_token(key: &[u8], token: &str, recipient: &str, purpose: &str) -> bool {
    let Some((notice_id, tag)) = token.rsplit_once('.') else { return false };
    let Ok(tag) = hex::decode(tag) else { return false };
    mac(key, notice_id, recipient, purpose).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test key";

    #[test]
    fn a_token_verifies_for_its_notice_recipient_and_purpose_only() {
        let t = unsubscribe_token(KEY, "0019a-abc", "150394-11002", "birth");
        assert_eq!(token_notice_id(&t), Some("0019a-abc"));
        assert_eq!(t.len(), "0019a-abc.".len() + 64);
        assert!(verify_unsubscribe_token(KEY, &t, "150394-11002", "birth"));
        assert!(!verify_unsubscribe_token(KEY, &t, "020792-11002", "birth"));
        assert!(!verify_unsubscribe_token(KEY, &t, "150394-11002", "death"));
        assert!(!verify_unsubscribe_token(b"other key", &t, "150394-11002", "birth"));
        let other = t.replacen("0019a-abc", "0019a-abd", 1);
        assert!(!verify_unsubscribe_token(KEY, &other, "150394-11002", "birth"));
        assert!(!verify_unsubscribe_token(KEY, "garbage", "150394-11002", "birth"));
        assert!(!verify_unsubscribe_token(KEY, "x.zz", "150394-11002", "birth"));
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        let a = unsubscribe_token(KEY, "n", "ab", "c");
        let b = unsubscribe_token(KEY, "n", "a", "bc");
        assert_ne!(a, b);
    }

    #[test]
    fn the_token_is_stable() {
        assert_eq!(unsubscribe_token(KEY, "n", "r", "p"), unsubscribe_token(KEY, "n", "r", "p"));
    }
}
