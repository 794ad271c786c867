//! The channels a notice can travel on, behind one interface: each takes an
//! outgoing message and answers sent, retry later, or never.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::email::EmailChannel;
use crate::config::{ChannelConfig, ChannelsConfig};
use crate::engine::definitions::ChannelName;

/// One message ready for a channel.
#[derive(Clone, Debug, Serialize)]
pub struct Outgoing {
    /// The notice id: idempotency key, reference and Message-ID seed.
    pub notice_id: String,
    /// Recipient's code (the e-address recipient).
    pub recipient: String,
    /// Channel address: email, phone, or the code for the e-address.
    pub address: String,
    /// Subject line.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML alternative.
    pub html: String,
    /// SMS short form.
    pub sms: String,
    /// Whether the notice has legal effect.
    pub legal_effect: bool,
    /// Language used.
    pub language: String,
}

/// What a channel made of one message.
#[derive(Clone, Debug, PartialEq)]
pub enum SendOutcome {
    /// Accepted; the provider's id (a file name for file sinks).
    Sent(String),
    /// A passing failure; try again (after the given time, when the provider said).
    Retry(String, Option<Duration>),
    /// Will never succeed as it is; dead-letter with the reason.
    Permanent(String),
}

/// A channel's transport.
pub enum Transport {
    /// Email over SMTP, or written as `.eml` files.
    Email(EmailChannel),
    /// Any channel written as JSON files into a folder.
    File(FileSink),
}

impl Transport {
    /// Sends one message.
    pub async fn send(&self, channel: ChannelName, msg: &Outgoing) -> SendOutcome {
        match self {
            Transport::Email(e) => e.send(msg).await,
            Transport::File(f) => f.write_json(channel, msg).await,
        }
    }
}

/// The configured transports, by channel; a missing one is not used by routing.
pub struct Channels {
    /// Email.
    pub email: Option<Transport>,
    /// The official e-address.
    pub eaddress: Option<Transport>,
    /// SMS.
    pub sms: Option<Transport>,
}

impl Channels {
    /// Builds the transports a configuration describes.
    pub fn from_config(cfg: &ChannelsConfig) -> Result<Channels> {
        let email = match &cfg.email {
            ChannelConfig::Disabled => None,
            ChannelConfig::Smtp(s) => Some(Transport::Email(EmailChannel::smtp(s)?)),
            ChannelConfig::File { dir } => Some(Transport::Email(EmailChannel::file(dir, "proactive.invalid")?)),
        };
        let file_only = |name: &str, c: &ChannelConfig| -> Result<Option<Transport>> {
            match c {
                ChannelConfig::Disabled => Ok(None),
                ChannelConfig::File { dir } => Ok(Some(Transport::File(FileSink::new(dir)?))),
                ChannelConfig::Smtp(_) => {
                    anyhow::bail!("channels.{name}: kind \"smtp\" is only for email; use \"file\"")
                }
            }
        };
        Ok(Channels { email, eaddress: file_only("eaddress", &cfg.eaddress)?, sms: file_only("sms", &cfg.sms)? })
    }

    /// The transport of `channel`, if configured.
    pub fn get(&self, channel: ChannelName) -> Option<&Transport> {
        match channel {
            ChannelName::Email => self.email.as_ref(),
            ChannelName::Eaddress => self.eaddress.as_ref(),
            ChannelName::Sms => self.sms.as_ref(),
        }
    }
}

/// Writes each message into a folder, named by notice id so that a resend
/// overwrites rather than duplicates.
pub struct FileSink {
    dir: PathBuf,
}

impl FileSink {
    /// A sink into `dir`, created if missing.
    pub fn new(dir: &Path) -> Result<FileSink> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(FileSink { dir: dir.to_path_buf() })
    }

    /// Writes `bytes` as `{notice_id}.{ext}` atomically (temp file, then rename).
    pub async fn write(&self, notice_id: &str, ext: &str, bytes: &[u8]) -> SendOutcome {
        let path = self.dir.join(format!("{notice_id}.{ext}"));
        let tmp = self.dir.join(format!(".{notice_id}.{ext}.tmp"));
        let res = async {
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        match res {
            Ok(()) => SendOutcome::Sent(path.display().to_string()),
            Err(e) => SendOutcome::Retry(format!("cannot write {}: {e}", path.display()), None),
        }
    }

    /// Writes the message in the shape the channel's gateway takes (CONTRACTS.md §4–5).
    async fn write_json(&self, channel: ChannelName, m: &Outgoing) -> SendOutcome {
        let body = match channel {
            ChannelName::Sms => serde_json::json!({ "to": m.address, "text": m.sms, "reference": m.notice_id }),
            _ => serde_json::json!({
                "recipient": m.address, "subject": m.subject, "body_text": m.text, "body_html": m.html,
                "attachments": [], "legal_effect": m.legal_effect, "reference": m.notice_id,
            }),
        };
        let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        self.write(&m.notice_id, "json", &bytes).await
    }
}
