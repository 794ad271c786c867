//! The channels a notice can travel on, behind one interface: each takes an
//! outgoing message and answers sent, retry later, never, or "not this
//! recipient" (try the next channel).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::eaddress::EaddressClient;
use super::email::EmailChannel;
use super::sms::SmsClient;
use crate::config::{ChannelConfig, ChannelsConfig, LinksConfig};
use crate::engine::definitions::ChannelName;

/// One message ready for a channel.
#[derive(Clone, Debug, Serialize)]
pub struct Outgoing {
    /// The notice id: idempotency key, reference and Message-ID seed.
    pub notice_id: String,
    /// Recipient's code (the e-address recipient).
    pub recipient: String,
    /// The consent purpose it is sent under (part of the unsubscribe token).
    pub purpose: String,
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
    /// This channel does not reach the recipient after all (e.g. no active
    /// e-address account); try the next channel, or suppress with the reason.
    Unreachable(String),
}

/// A channel's transport.
pub enum Transport {
    /// Email over SMTP, or written as `.eml` files.
    Email(EmailChannel),
    /// Any channel written as JSON files into a folder.
    File(FileSink),
    /// The e-address gateway over HTTP.
    Eaddress(EaddressClient),
    /// The SMS gateway over HTTP.
    Sms(SmsClient),
}

impl Transport {
    /// Sends one message.
    pub async fn send(&self, channel: ChannelName, msg: &Outgoing) -> SendOutcome {
        match self {
            Transport::Email(e) => e.send(msg).await,
            Transport::File(f) => f.write_json(channel, msg).await,
            Transport::Eaddress(e) => e.send(msg).await,
            Transport::Sms(s) => s.send(msg).await,
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
    /// Letters and client-centre tasks.
    pub letter: Option<Transport>,
}

impl Channels {
    /// Builds the transports a configuration describes; emails link to
    /// `links.unsubscribe`. Fails naming the channel whose settings are wrong
    /// or whose secret's variable is unset.
    pub fn from_config(cfg: &ChannelsConfig, links: &LinksConfig) -> Result<Channels> {
        let email = match &cfg.email {
            ChannelConfig::Disabled => None,
            ChannelConfig::Smtp(s) => Some(Transport::Email(EmailChannel::smtp(s)?.with_unsubscribe(links)?)),
            ChannelConfig::File { dir } => {
                Some(Transport::Email(EmailChannel::file(dir, "proactive.invalid")?.with_unsubscribe(links)?))
            }
            ChannelConfig::Http(_) => anyhow::bail!("channels.email: kind \"http\" is only for eaddress and sms"),
        };
        let eaddress = match &cfg.eaddress {
            ChannelConfig::Http(g) => Some(Transport::Eaddress(EaddressClient::new(g, None)?)),
            other => file_only("eaddress", other)?,
        };
        let sms = match &cfg.sms {
            ChannelConfig::Http(g) => Some(Transport::Sms(SmsClient::new(g, None)?)),
            other => file_only("sms", other)?,
        };
        let letter = file_only("letter", &cfg.letter)?;
        Ok(Channels { email, eaddress, sms, letter })
    }

    /// The transport of `channel`, if configured.
    pub fn get(&self, channel: ChannelName) -> Option<&Transport> {
        match channel {
            ChannelName::Email => self.email.as_ref(),
            ChannelName::Eaddress => self.eaddress.as_ref(),
            ChannelName::Sms => self.sms.as_ref(),
            ChannelName::Letter => self.letter.as_ref(),
        }
    }
}

fn file_only(name: &str, c: &ChannelConfig) -> Result<Option<Transport>> {
    match c {
        ChannelConfig::Disabled => Ok(None),
        ChannelConfig::File { dir } => Ok(Some(Transport::File(FileSink::new(dir)?))),
        ChannelConfig::Smtp(_) => {
            anyhow::bail!("channels.{name}: kind \"smtp\" is only for email; use \"http\" or \"file\"")
        }
        ChannelConfig::Http(_) => anyhow::bail!("channels.{name}: kind \"http\" is not handled here"),
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
            // A task for printing and posting, or for a client centre to call or meet the person.
            ChannelName::Letter => serde_json::json!({
                "task": "letter", "recipient": m.recipient, "postal_address": m.address, "language": m.language,
                "subject": m.subject, "body_text": m.text, "legal_effect": m.legal_effect, "reference": m.notice_id,
            }),
            _ => serde_json::json!({
                "recipient": m.address, "subject": m.subject, "body_text": m.text, "body_html": m.html,
                "attachments": [], "legal_effect": m.legal_effect, "reference": m.notice_id,
            }),
        };
        let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        self.write(&m.notice_id, "json", &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, GatewayConfig};

    fn parse(toml_text: &str) -> Config {
        toml::from_str(toml_text).expect("parses")
    }

    #[test]
    fn http_gateways_parse_with_their_defaults() {
        let cfg = parse(
            "[channels.eaddress]\nkind = \"http\"\nbase_url = \"https://eadrese.example.lv/api\"\n\
             [channels.sms]\nkind = \"http\"\nbase_url = \"https://sms.example.lv\"\nmax_segments = 2\n\
             token_env = \"PROACTIVE_SMS_TOKEN\"\ncallback_secret_env = \"PROACTIVE_SMS_CALLBACK_SECRET\"\n",
        );
        let ChannelConfig::Http(e) = &cfg.channels.eaddress else { panic!("{:?}", cfg.channels.eaddress) };
        assert_eq!(
            (e.base_url.as_str(), e.timeout_secs, e.token_env.as_deref()),
            ("https://eadrese.example.lv/api", 10, None)
        );
        let ChannelConfig::Http(s) = &cfg.channels.sms else { panic!("{:?}", cfg.channels.sms) };
        assert_eq!(s.max_segments, 2);
        assert_eq!(s.token_env.as_deref(), Some("PROACTIVE_SMS_TOKEN"));
        assert_eq!(GatewayConfig::default().max_segments, 3);
    }

    #[test]
    fn a_named_but_unset_secret_or_a_missing_url_is_an_error_naming_it() {
        let links = LinksConfig::default();
        let cfg = parse(
            "[channels.email]\nkind = \"disabled\"\n[channels.sms]\nkind = \"http\"\nbase_url = \"http://127.0.0.1:1\"\n\
             token_env = \"PROACTIVE_TEST_SURELY_UNSET_TOKEN\"\n",
        );
        let err = Channels::from_config(&cfg.channels, &links).err().expect("an error").to_string();
        assert!(err.contains("PROACTIVE_TEST_SURELY_UNSET_TOKEN"), "{err}");
        let cfg = parse("[channels.email]\nkind = \"disabled\"\n[channels.eaddress]\nkind = \"http\"\n");
        let err = Channels::from_config(&cfg.channels, &links).err().expect("an error").to_string();
        assert!(err.contains("channels.eaddress") && err.contains("base_url"), "{err}");
        let cfg = parse("[channels.email]\nkind = \"http\"\nbase_url = \"http://x\"\n");
        let err = Channels::from_config(&cfg.channels, &links).err().expect("an error").to_string();
        assert!(err.contains("channels.email"), "{err}");
    }
}
