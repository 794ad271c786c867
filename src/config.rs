//! Configuration: one TOML file, embedded defaults without it, and every
//! value overridable as `PROACTIVE_SECTION__KEY`. Secrets are never written
//! in the file, only the name of the environment variable that holds them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration of one `proactive` process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store lives.
    pub database: DatabaseConfig,
    /// The folders policy staff and operators write.
    pub paths: PathsConfig,
    /// The HTTP listener of `proactive serve`.
    pub http: HttpConfig,
    /// Batching of the rules engine.
    pub engine: EngineConfig,
    /// The outbox workers.
    pub delivery: DeliveryConfig,
    /// Which clock the engine follows.
    pub clock: ClockConfig,
    /// Where each channel sends.
    pub channels: ChannelsConfig,
    /// Public addresses that messages link to.
    pub links: LinksConfig,
    /// The audit log.
    pub audit: AuditConfig,
}

/// The audit log's pseudonyms.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// The environment variable holding the key of the persons' pseudonyms
    /// (HMAC-SHA-256); without it a fixed development key is used (and a
    /// warning logged). Changing it makes old and new pseudonyms of one
    /// person differ, so keep it for as long as the log is kept.
    pub pseudonym_key_env: Option<String>,
}

/// The store's address and pool size.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (created if missing, WAL) or `postgres://…`.
    pub url: String,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
}

/// Folders of life-event definitions, rule scripts and connector definitions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// `life-events/*.toml`.
    pub life_events: PathBuf,
    /// `rules/*.rhai`, named by the definitions.
    pub rules: PathBuf,
    /// `connectors/*.toml`, one per source.
    pub connectors: PathBuf,
}

/// The HTTP listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to bind, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Largest request body, in bytes, except for batch uploads.
    pub max_body_bytes: usize,
    /// Largest batch upload (`POST /api/v1/events:batch`), in bytes.
    pub max_batch_bytes: usize,
    /// How long a request may take, reading its body included, before it is answered 503.
    pub request_timeout_secs: u64,
    /// After SIGTERM, how long `serve` lets the stages finish what they hold
    /// before it exits anyway (what is left is retaken when its lease lapses).
    pub shutdown_grace_secs: u64,
    /// The environment variable holding the key of citizen bearer tokens
    /// (`proactive token issue`); without it a fixed development key is used
    /// (and a warning logged).
    pub token_secret_env: Option<String>,
}

/// Engine batching.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Events evaluated and committed per transaction.
    pub batch_size: usize,
    /// Events per transaction while a backlog lasts (a backfill, a restart
    /// after a pause): fewer, larger commits write each index page once for
    /// many rows instead of once for a few.
    pub backlog_batch_size: usize,
    /// How long an idle engine waits before looking for new events.
    pub poll_interval_ms: u64,
    /// Seconds a process holds the lease on evaluation or on a connector
    /// without renewing it; after that, another process takes over.
    pub lease_secs: i64,
    /// Due notices in the outbox above which evaluation waits for delivery to catch up.
    pub max_due_notices: i64,
}

/// Outbox workers and their retry policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Notices claimed per round.
    pub batch_size: i64,
    /// How long an idle worker waits before looking again.
    pub poll_interval_ms: u64,
    /// Attempts before a notice is dead-lettered.
    pub max_attempts: i64,
    /// How long a claim holds before another worker may take the notice over.
    pub lease_secs: i64,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base_ms: i64,
    /// Longest retry delay.
    pub backoff_max_ms: i64,
    /// Notices of one claimed batch sent at the same time (gateways answer in
    /// milliseconds, so one at a time leaves the worker waiting on the network).
    pub concurrency: usize,
    /// Riga-time window in which email and SMS wait (`HH:MM-HH:MM`, or `none`).
    pub quiet_hours: String,
    /// Most messages a second per channel (`eaddress`, `email`, `sms`, `letter`), as the provider allows.
    pub rate_per_s: std::collections::BTreeMap<String, f64>,
    /// Whether a person's non-urgent email or SMS notices due together go as one digest.
    pub digest: bool,
    /// Non-urgent notices a bulk wave sends an hour, spread over the sending window (0: no spreading).
    pub stagger_per_hour: u64,
    /// Whether email and SMS also wait out public holidays (from the business-day calendar).
    pub hold_on_holidays: bool,
    /// Seconds between questions to the e-address gateway about a sent message, until it is read.
    pub receipt_poll_secs: i64,
    /// Days after sending when an unread e-address message stops being followed.
    pub receipt_follow_days: i64,
}

/// The engine's clock: the machine's, or a virtual one for rehearsals and the demo.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// Start the clock at this time instead of now.
    pub start: Option<DateTime<FixedOffset>>,
    /// Virtual seconds per real second (0 stands still); only with `start`.
    pub speed: Option<f64>,
}

/// One entry per channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Email.
    pub email: ChannelConfig,
    /// The official e-address.
    pub eaddress: ChannelConfig,
    /// SMS.
    pub sms: ChannelConfig,
    /// Letters and client-centre tasks (a `file` folder that printing or a centre picks up).
    pub letter: ChannelConfig,
}

/// How one channel sends.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    /// Not used: routing skips it.
    #[default]
    Disabled,
    /// Write each message into a folder (`.eml` for email, JSON otherwise).
    File {
        /// The folder, created if missing.
        dir: PathBuf,
    },
    /// Email over SMTP.
    Smtp(SmtpConfig),
    /// The e-address or SMS gateway over HTTP (CONTRACTS.md §4–5).
    Http(GatewayConfig),
}

/// An HTTP gateway: the e-address (CONTRACTS.md §4) or SMS (§5).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Base URL; `/messages` (e-address) or `/sms` is appended.
    pub base_url: String,
    /// The environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// Seconds before a request (connect, send, answer) times out.
    pub timeout_secs: u64,
    /// SMS only: most segments one message may take; longer texts are shortened at a word.
    pub max_segments: u32,
    /// SMS only: the environment variable holding the secret delivery reports carry.
    pub callback_secret_env: Option<String>,
}

/// An SMTP relay.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// `opportunistic` (STARTTLS when offered), `required`, or `none`.
    pub tls: SmtpTls,
    /// Sender address.
    pub from: String,
    /// User name, when the relay wants one.
    pub username: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// Domain part of derived Message-IDs.
    pub message_id_domain: String,
    /// Pooled connections kept open.
    pub pool_size: u32,
    /// Seconds before a command times out.
    pub timeout_secs: u64,
    /// Keep connections open between messages; `false` opens one per message.
    pub pool: bool,
}

/// STARTTLS policy.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Upgrade when the server offers STARTTLS.
    Opportunistic,
    /// Refuse to send without STARTTLS.
    Required,
    /// Never upgrade (local test relays).
    None,
}

/// Addresses messages link to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinksConfig {
    /// Base of a draft application's link; the draft reference is appended.
    pub drafts: String,
    /// Base of the one-click unsubscribe link; the token (notice id and its HMAC) is appended.
    pub unsubscribe: String,
    /// The environment variable holding the key of unsubscribe tokens; without
    /// it a fixed development key is used (and a warning logged).
    pub unsubscribe_secret_env: Option<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://proactive.db".into(), max_connections: 8 }
    }
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig { life_events: "life-events".into(), rules: "rules".into(), connectors: "connectors".into() }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            max_batch_bytes: 32 * 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
            token_secret_env: None,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 1000,
            backlog_batch_size: crate::engine::BACKLOG_BATCH_SIZE,
            poll_interval_ms: 200,
            lease_secs: 15,
            max_due_notices: 500_000,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            batch_size: 50,
            poll_interval_ms: 500,
            max_attempts: 8,
            lease_secs: 120,
            backoff_base_ms: 2_000,
            backoff_max_ms: 3_600_000,
            concurrency: 32,
            quiet_hours: "21:00-08:00".into(),
            rate_per_s: Default::default(),
            digest: true,
            stagger_per_hour: 0,
            hold_on_holidays: true,
            receipt_poll_secs: 900,
            receipt_follow_days: 30,
        }
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            email: ChannelConfig::Smtp(SmtpConfig::default()),
            eaddress: ChannelConfig::Disabled,
            sms: ChannelConfig::Disabled,
            letter: ChannelConfig::Disabled,
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::Opportunistic,
            from: "Proactive services <noreply@proactive.invalid>".into(),
            username: None,
            password_env: None,
            message_id_domain: "proactive.invalid".into(),
            pool_size: 4,
            timeout_secs: 30,
            pool: true,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            base_url: String::new(),
            token_env: None,
            timeout_secs: 10,
            max_segments: 3,
            callback_secret_env: None,
        }
    }
}

impl Default for LinksConfig {
    fn default() -> Self {
        LinksConfig {
            drafts: "https://www.latvija.gov.lv/proactive/drafts/".into(),
            unsubscribe: "http://127.0.0.1:8080/unsubscribe/".into(),
            unsubscribe_secret_env: None,
        }
    }
}

impl Config {
    /// Loads `file` (or `PROACTIVE_CONFIG`, or nothing) over the embedded
    /// defaults, then applies `PROACTIVE_SECTION__KEY` overrides.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let from_env = std::env::var_os("PROACTIVE_CONFIG").map(PathBuf::from);
        let file = file.map(Path::to_path_buf).or(from_env);
        // Defaults come from serde, not from a figment layer: a layer would merge
        // a file's `[channels.email] kind = "file"` into the default SMTP table.
        let mut fig = Figment::new();
        if let Some(path) = &file {
            if !path.exists() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(
            Env::prefixed("PROACTIVE_").split("__").filter(|k| k.as_str().contains("__") || k.as_str().contains('.')),
        );
        let where_ = file.as_ref().map_or("embedded defaults".to_string(), |p| p.display().to_string());
        fig.extract().with_context(|| format!("invalid configuration ({where_} and PROACTIVE_* variables)"))
    }

    /// The clock this configuration asks for.
    pub fn clock(&self) -> crate::clock::Clock {
        match self.clock.start {
            None => crate::clock::Clock::system(),
            Some(start) => crate::clock::Clock::virtual_from(start.into(), self.clock.speed.unwrap_or(1.0)),
        }
    }
}

/// Reads a secret from the environment variable a configuration names.
pub fn secret(var: &str) -> Result<String> {
    std::env::var(var).with_context(|| format!("environment variable {var} (named in the configuration) is not set"))
}
