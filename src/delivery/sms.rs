//! The SMS gateway (CONTRACTS.md §5): E.164 numbers only, the notice id as
//! the idempotency key, and texts held to the configured number of segments
//! (see [`super::segments`]).

use anyhow::Result;
use serde::Deserialize;

use super::channels::{Outgoing, SendOutcome};
use super::gateway::Gateway;
use super::segments;
use crate::config::GatewayConfig;

/// The SMS channel over HTTP.
pub struct SmsClient {
    gw: Gateway,
    max_segments: usize,
    callback_secret: Option<String>,
}

#[derive(Deserialize)]
struct Accepted {
    id: String,
}

/// Whether `number` is one the gateway takes: E.164 (`+` and 8–15 digits),
/// and for Latvia (`+371`) a mobile: eight digits starting with 2.
pub fn valid_number(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else { return false };
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return false;
    }
    match digits.strip_prefix("371") {
        Some(local) => local.len() == 8 && local.starts_with('2'),
        None => true,
    }
}

impl SmsClient {
    /// A client for `cfg`; `token` overrides `cfg.token_env`. Fails if a
    /// named secret's variable is unset.
    pub fn new(cfg: &GatewayConfig, token: Option<String>) -> Result<SmsClient> {
        let callback_secret = cfg.callback_secret_env.as_deref().map(crate::config::secret).transpose()?;
        Ok(SmsClient {
            gw: Gateway::new("sms", cfg, token)?,
            max_segments: cfg.max_segments.max(1) as usize,
            callback_secret,
        })
    }

    /// The text as it will be sent: the template's short form, shortened at a
    /// word if even that is over the cap; and whether it was shortened.
    pub fn text_for(&self, m: &Outgoing) -> (String, bool) {
        segments::fit(&m.sms, self.max_segments)
    }

    /// The same client with `secret` as the callback secret (tests, embedding).
    pub fn with_callback_secret(mut self, secret: &str) -> SmsClient {
        self.callback_secret = Some(secret.to_string());
        self
    }

    /// Whether a delivery report's `Authorization` header carries the callback secret.
    pub fn callback_authorized(&self, authorization: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        match (&self.callback_secret, authorization.and_then(|a| a.strip_prefix("Bearer "))) {
            (Some(secret), Some(given)) => bool::from(secret.as_bytes().ct_eq(given.as_bytes())),
            _ => false,
        }
    }

    /// Sends one notice's SMS (`202` sent, `400` never, `429`/`503` later).
    pub async fn send(&self, m: &Outgoing) -> SendOutcome {
        if !valid_number(&m.address) {
            // The gateway would answer invalid_number; asking it would only cost a request.
            return SendOutcome::Permanent("invalid_number: the phone number is not an E.164 mobile number".into());
        }
        let (text, shortened) = self.text_for(m);
        if shortened {
            let before = segments::segment(&m.sms).segments;
            tracing::info!(notice = %m.notice_id, segments_before = before, max_segments = self.max_segments, "SMS text shortened to fit");
        }
        let body = serde_json::json!({ "to": m.address, "text": text, "reference": m.notice_id });
        let a = match self.gw.post("/sms", &m.notice_id, &body).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        match a.status.as_u16() {
            200..=202 => match serde_json::from_slice::<Accepted>(&a.body) {
                Ok(ok) => SendOutcome::Sent(ok.id),
                Err(e) => SendOutcome::Retry(format!("SMS gateway: an acceptance without id: {e}"), None),
            },
            400 => SendOutcome::Permanent(format!("SMS gateway refused the message: {}", a.error())),
            _ => a.busy().unwrap_or_else(|| a.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_number;

    #[test]
    fn latvian_mobiles_and_other_e164_numbers_pass() {
        for n in ["+37120000000", "+37129999999", "+4915112345678", "+12025550123", "+4412345678"] {
            assert!(valid_number(n), "{n}");
        }
    }

    #[test]
    fn landlines_short_numbers_and_non_e164_fail() {
        for n in [
            "+37167000000",      // a Rīga landline
            "+3712000000",       // seven digits
            "+371200000000",     // nine digits
            "37120000000",       // no plus
            "+371 2000 0000",    // spaces
            "+1234567",          // seven digits in all
            "+1234567890123456", // sixteen
            "+0123456789",       // no country code starts with 0
            "",
            "+",
        ] {
            assert!(!valid_number(n), "{n}");
        }
    }
}
