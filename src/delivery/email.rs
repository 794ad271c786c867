//! Email over SMTP through lettre: text and HTML alternatives, a Message-ID
//! derived from the notice id (SMTP has no idempotency key, so a resend after
//! a crash carries the same id), pooled connections, STARTTLS when the relay
//! offers it, and a one-click `List-Unsubscribe` (RFC 8058) link.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::channels::{FileSink, Outgoing, SendOutcome};
use super::unsubscribe::unsubscribe_token;
use crate::config::{LinksConfig, SmtpConfig, SmtpTls};

/// The email channel: an SMTP relay, or `.eml` files for demos.
pub struct EmailChannel {
    from: Mailbox,
    domain: String,
    timeout: Duration,
    sink: Sink,
    unsubscribe: Option<Unsubscribe>,
    // lettre opens a new connection whenever none is idle; holding sends to
    // the pool's size keeps concurrent delivery on the pooled connections
    // instead of opening one per notice in flight.
    slots: tokio::sync::Semaphore,
}

struct Unsubscribe {
    base: String,
    key: Vec<u8>,
}

const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

enum Sink {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(FileSink),
}

impl EmailChannel {
    /// An SMTP relay as configured.
    pub fn smtp(c: &SmtpConfig) -> Result<EmailChannel> {
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
            .port(c.port)
            .timeout(Some(Duration::from_secs(c.timeout_secs)))
            // A pool of 0 keeps no connection: each message opens and closes its own.
            .pool_config(PoolConfig::new().max_size(if c.pool { c.pool_size.max(1) } else { 0 }));
        let tls = || TlsParameters::new(c.host.clone()).context("cannot set up TLS for the SMTP relay");
        b = match c.tls {
            SmtpTls::None => b.tls(Tls::None),
            SmtpTls::Opportunistic => b.tls(Tls::Opportunistic(tls()?)),
            SmtpTls::Required => b.tls(Tls::Required(tls()?)),
        };
        if let (Some(user), Some(var)) = (&c.username, &c.password_env) {
            b = b.credentials(Credentials::new(user.clone(), crate::config::secret(var)?));
        }
        Ok(EmailChannel {
            from: c.from.parse().context("channels.email.from is not a valid mailbox")?,
            domain: c.message_id_domain.clone(),
            timeout: Duration::from_secs(c.timeout_secs.max(1) * 4),
            sink: Sink::Smtp(b.build()),
            unsubscribe: None,
            slots: tokio::sync::Semaphore::new(c.pool_size.max(1) as usize),
        })
    }

    /// Writes each message as `{notice_id}.eml` into `dir`.
    pub fn file(dir: &Path, domain: &str) -> Result<EmailChannel> {
        Ok(EmailChannel {
            from: "Proactive services <noreply@proactive.invalid>".parse().expect("static mailbox"),
            domain: domain.to_string(),
            timeout: Duration::from_secs(60),
            sink: Sink::File(FileSink::new(dir)?),
            unsubscribe: None,
            slots: tokio::sync::Semaphore::new(64),
        })
    }

    /// Adds `List-Unsubscribe` links under `links.unsubscribe`, keyed as `links` says.
    pub fn with_unsubscribe(mut self, links: &LinksConfig) -> Result<EmailChannel> {
        let key = super::unsubscribe::unsubscribe_key(links)?;
        self.unsubscribe = Some(Unsubscribe { base: links.unsubscribe.clone(), key });
        Ok(self)
    }

    /// The Message-ID a notice's email carries.
    pub fn message_id(&self, notice_id: &str) -> String {
        format!("<{notice_id}@{}>", self.domain)
    }

    /// Builds the MIME message for one notice.
    pub fn build(&self, m: &Outgoing) -> Result<Message, String> {
        let to: Mailbox = m.address.parse().map_err(|_| "the recipient's email address is not valid".to_string())?;
        let b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(self.message_id(&m.notice_id)));
        let b = match &self.unsubscribe {
            Some(u) => {
                let token = unsubscribe_token(&u.key, &m.notice_id, &m.recipient, &m.purpose);
                b.raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, format!("<{}{token}>", u.base)))
                    .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE_POST, "List-Unsubscribe=One-Click".into()))
            }
            None => b,
        };
        b.multipart(MultiPart::alternative_plain_html(m.text.clone(), m.html.clone()))
            .map_err(|e| format!("cannot build the email: {e}"))
    }

    /// Sends one notice's email.
    pub async fn send(&self, m: &Outgoing) -> SendOutcome {
        let msg = match self.build(m) {
            Ok(msg) => msg,
            Err(e) => return SendOutcome::Permanent(e),
        };
        let Ok(_slot) = self.slots.acquire().await else {
            return SendOutcome::Retry("the email channel is shutting down".into(), None);
        };
        match &self.sink {
            Sink::File(f) => f.write(&m.notice_id, "eml", &msg.formatted()).await,
            // lettre's own timeouts cover single commands; a server that stops
            // answering mid-conversation must not hold a worker forever.
            Sink::Smtp(t) => match tokio::time::timeout(self.timeout, t.send(msg)).await {
                Err(_) => SendOutcome::Retry(format!("SMTP: no answer within {:?}", self.timeout), None),
                Ok(Ok(resp)) => SendOutcome::Sent(
                    resp.message().next().map(str::to_string).unwrap_or_else(|| self.message_id(&m.notice_id)),
                ),
                Ok(Err(e)) if e.is_permanent() => SendOutcome::Permanent(format!("SMTP refused the message: {e}")),
                Ok(Err(e)) => SendOutcome::Retry(format!("SMTP: {e}"), None),
            },
        }
    }
}
