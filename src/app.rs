//! Assembly: a configuration turned into a migrated store, a checked rule
//! set and the stages that share them. The CLI, the demo and tests all start
//! from here.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::{Channels, Delivery};
use crate::engine::{Engine, RuleSet};
use crate::events::PurposeCheck;
use crate::store::Db;

/// A ready-to-run instance of the engine.
#[derive(Clone)]
pub struct App {
    /// The configuration it was built from.
    pub cfg: Config,
    /// The store, migrated.
    pub db: Db,
    /// The rule set in force.
    pub rules: Arc<RuleSet>,
    /// The engine's clock.
    pub clock: Clock,
    /// The configured channels.
    pub channels: Arc<Channels>,
    /// The audit writer of this process (pseudonym key, chains).
    pub audit: crate::audit::Audit,
}

/// Loads the rule set a configuration names, or fails listing every error.
pub fn load_rules(cfg: &Config) -> Result<RuleSet> {
    RuleSet::load(&cfg.paths.life_events, &cfg.paths.rules).map_err(|errors| {
        anyhow::anyhow!("the rule set does not load ({} errors):\n  {}", errors.len(), errors.join("\n  "))
    })
}

impl App {
    /// Opens the store (migrating it), loads and checks the rule set, builds the channels.
    pub async fn open(cfg: Config, clock: Clock) -> Result<App> {
        crate::consent::QuietHours::parse(&cfg.delivery.quiet_hours)
            .map_err(|e| anyhow::anyhow!("delivery.quiet_hours: {e}"))?;
        for (channel, rate) in &cfg.delivery.rate_per_s {
            if !["eaddress", "email", "sms", "letter"].contains(&channel.as_str()) || rate.is_nan() || *rate < 0.0 {
                anyhow::bail!("delivery.rate_per_s.{channel}: a channel (eaddress, email, sms, letter) and a rate ≥ 0");
            }
        }
        let rules = Arc::new(load_rules(&cfg)?);
        let db = Db::open(&cfg.database.url, cfg.database.max_connections).await?;
        // A virtual clock only moves forward, across restarts too: it resumes
        // at the last moment the store recorded when that is past its start.
        if cfg.clock.start.is_some()
            && let Some(last) = db.last_seen_ms().await?
        {
            clock.set(crate::clock::from_ms(last));
        }
        let channels =
            Arc::new(Channels::from_config(&cfg.channels, &cfg.links).context("invalid channel configuration")?);
        let audit = crate::audit::Audit::from_config(&cfg.audit)?;
        Ok(App { cfg, db, rules, clock, channels, audit })
    }

    /// The engine stage.
    pub fn engine(&self) -> Engine {
        Engine::new(self.db.clone(), self.rules.clone(), self.clock.clone(), self.cfg.engine.batch_size)
            .with_backlog_batch(self.cfg.engine.backlog_batch_size)
            .with_audit(self.audit.clone())
    }

    /// The delivery stage.
    pub fn delivery(&self) -> Delivery {
        Delivery::new(
            self.db.clone(),
            self.rules.clone(),
            self.channels.clone(),
            self.clock.clone(),
            self.cfg.delivery.clone(),
            self.cfg.links.drafts.clone(),
        )
        .with_audit(self.audit.clone())
    }

    /// Answers whether a purpose is declared, for validating consent events.
    pub fn purposes(&self) -> Arc<PurposeCheck> {
        let rules = self.rules.clone();
        Arc::new(move |p: &str| rules.declares_purpose(p))
    }
}
