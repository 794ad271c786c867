//! The official e-address gateway (CONTRACTS.md §4): a notice is POSTed with
//! its id as the idempotency key, so a resend after a timeout or a crash is
//! answered with the first acceptance instead of a second message.

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;

use super::channels::{Outgoing, SendOutcome};
use super::gateway::Gateway;
use crate::config::GatewayConfig;

/// The e-address channel over HTTP.
pub struct EaddressClient {
    gw: Gateway,
}

/// How far a sent e-address message has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// The gateway has it.
    Accepted,
    /// In the recipient's mailbox.
    Delivered,
    /// Opened by the recipient.
    Read,
}

/// `GET /messages/{id}`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MessageStatus {
    /// Where the message is.
    pub status: MessageState,
    /// When it reached the mailbox.
    #[serde(default)]
    pub delivered_at: Option<DateTime<FixedOffset>>,
    /// When it was opened.
    #[serde(default)]
    pub read_at: Option<DateTime<FixedOffset>>,
}

#[derive(Deserialize)]
struct Accepted {
    message_id: String,
}

/// The gateway's error for a recipient without an active account.
const NO_ACCOUNT: &str = "no_active_account";

impl EaddressClient {
    /// A client for `cfg`; `token` overrides `cfg.token_env`.
    pub fn new(cfg: &GatewayConfig, token: Option<String>) -> Result<EaddressClient> {
        Ok(EaddressClient { gw: Gateway::new("eaddress", cfg, token)? })
    }

    /// Sends one notice (`201` sent, `404 no_active_account` unreachable, `400` never, `429`/`503` later).
    pub async fn send(&self, m: &Outgoing) -> SendOutcome {
        let body = serde_json::json!({
            "recipient": m.address,
            "subject": m.subject,
            "body_text": m.text,
            "body_html": m.html,
            "attachments": [],
            "legal_effect": m.legal_effect,
            "reference": m.notice_id,
        });
        let a = match self.gw.post("/messages", &m.notice_id, &body).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        match a.status.as_u16() {
            200 | 201 => match serde_json::from_slice::<Accepted>(&a.body) {
                Ok(ok) => SendOutcome::Sent(ok.message_id),
                // Accepted but unreadable: the same key again gets the same answer, so retrying is safe.
                Err(e) => SendOutcome::Retry(format!("e-address gateway: an acceptance without message_id: {e}"), None),
            },
            404 if a.error() == NO_ACCOUNT => {
                SendOutcome::Unreachable("e-address gateway: no active e-address account".into())
            }
            400 => SendOutcome::Permanent(format!("e-address gateway refused the message: {}", a.error())),
            _ => a.busy().unwrap_or_else(|| a.unexpected()),
        }
    }

    /// Where a sent message is now (`GET /messages/{id}`); `Err` says why it is not known.
    pub async fn status(&self, message_id: &str) -> Result<MessageStatus, String> {
        let path = format!("/messages/{}", urlencode(message_id));
        let a = self.gw.get(&path).await.map_err(outcome_text)?;
        if !a.status.is_success() {
            return Err(format!("e-address gateway answered HTTP {}: {}", a.status.as_u16(), a.error()));
        }
        serde_json::from_slice(&a.body).map_err(|e| format!("e-address gateway: an unreadable status: {e}"))
    }

    /// Whether `code` has an active e-address account (`GET /accounts/{code}`).
    pub async fn account_active(&self, code: &str) -> Result<bool, String> {
        #[derive(Deserialize)]
        struct Account {
            active: bool,
        }
        let a = self.gw.get(&format!("/accounts/{}", urlencode(code))).await.map_err(outcome_text)?;
        if !a.status.is_success() {
            return Err(format!("e-address gateway answered HTTP {}: {}", a.status.as_u16(), a.error()));
        }
        serde_json::from_slice::<Account>(&a.body)
            .map(|a| a.active)
            .map_err(|e| format!("e-address gateway: an unreadable account: {e}"))
    }
}

/// A path segment, percent-encoded (ids are the gateway's and may hold anything).
fn urlencode(s: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("static URL");
    url.path_segments_mut().expect("a base URL").push(s);
    url.path().trim_start_matches('/').to_string()
}

fn outcome_text(o: SendOutcome) -> String {
    match o {
        SendOutcome::Retry(e, _) | SendOutcome::Permanent(e) | SendOutcome::Unreachable(e) => e,
        SendOutcome::Sent(_) => "unexpected".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::urlencode("a/b c"), "a%2Fb%20c");
        assert_eq!(super::urlencode("msg-1"), "msg-1");
    }
}
