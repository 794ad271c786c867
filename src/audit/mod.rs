//! Audit: the append-only, hash-chained log of what was processed for whom —
//! notices made and decided, deliveries, consent changes, staff actions and
//! erasures — and what is built on it: `explain`, `audit verify`, `audit
//! export` and `retention run`.
//!
//! Each process writes its own chains (one per concurrent writer, a *lane*),
//! appending its records inside the same transaction as the change they
//! record, so a record exists exactly when its change does and no two
//! processes ever wait on one chain. Persons appear only as keyed pseudonyms
//! (HMAC-SHA-256), so their data can be erased at the end of its retention
//! while the chain stays verifiable.

pub mod chain;
pub mod commands;
pub mod explain;
pub mod export;
pub mod plain;
pub mod retention;
pub mod trace;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use chain::{Break, Lane, Problem, Sealed};

use crate::config::AuditConfig;

/// The key used when no `audit.pseudonym_key_env` is configured: fine for
/// development and tests, guessable anywhere else.
pub const DEV_KEY: &str = "proactive development pseudonym key: configure audit.pseudonym_key_env";

/// One thing to record, before it is sealed into a chain. Persons are given
/// by code here and pseudonymised when sealed; nothing else in it may hold a
/// personal code.
#[derive(Clone, Debug)]
pub struct Entry {
    /// What happened (`notice.created`, `delivery.sent`, …).
    pub kind: String,
    /// When, ms since the epoch.
    pub at: i64,
    /// Purpose of processing.
    pub purpose: Option<String>,
    /// The person it was processed for (recipient, consenting person, case subject).
    pub subject: Option<String>,
    /// The notice concerned.
    pub notice_id: Option<String>,
    /// Everything else; persons in it only through [`Audit::pseudonym`].
    pub detail: serde_json::Value,
}

/// A process's audit writer: the pseudonym key and the chains it appends to.
/// One per store: a lane's head is that store's, so sharing a writer between
/// two stores would leave gaps in both.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    key: Vec<u8>,
    writer: String,
    process: String,
    started_at: i64,
    next_lane: AtomicU32,
    idle: Mutex<Vec<Lane>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Audit").field("process", &self.inner.process).finish()
    }
}

impl Audit {
    /// A writer with `key`, its chains named after a fresh process id.
    pub fn new(key: Vec<u8>) -> Audit {
        let process = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let writer = format!("pid {} {host}", std::process::id()).trim().to_string();
        Audit {
            inner: Arc::new(Inner {
                key,
                writer,
                process,
                started_at: chrono::Utc::now().timestamp_millis(),
                next_lane: AtomicU32::new(1),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The key `cfg` names (`pseudonym_key_env`), or [`DEV_KEY`] with a warning.
    pub fn from_config(cfg: &AuditConfig) -> anyhow::Result<Audit> {
        Ok(Audit::new(pseudonym_key(cfg)?))
    }

    /// A writer with the development key (tests, simulations, throw-away stores).
    pub fn development() -> Audit {
        Audit::new(DEV_KEY.as_bytes().to_vec())
    }

    /// The person's pseudonym: `ps_` and 128 bits of HMAC-SHA-256 of the code.
    /// Keyed, because personal codes are few enough to hash them all.
    pub fn pseudonym(&self, code: &str) -> String {
        pseudonym(&self.inner.key, code)
    }

    /// A chain no other transaction is using: an idle one of this process, or a new one.
    pub fn take_lane(&self) -> Lane {
        if let Some(l) = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return l;
        }
        let n = self.inner.next_lane.fetch_add(1, Ordering::Relaxed);
        Lane::new(format!("w-{}-{n}", self.inner.process))
    }

    /// Returns a lane after its transaction committed. A lane whose
    /// transaction failed is not given back: its chain ends at what committed.
    pub fn give_back(&self, lane: Lane) {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()).push(lane);
    }

    /// Seals entries onto `lane`, pseudonymising their persons.
    pub fn seal(&self, lane: &mut Lane, entries: Vec<Entry>) -> Vec<Sealed> {
        let fields = entries
            .into_iter()
            .map(|e| chain::Fields {
                at: e.at,
                kind: e.kind,
                purpose: e.purpose,
                subject_ref: e.subject.as_deref().map(|c| self.pseudonym(c)),
                notice_id: e.notice_id,
                detail: e.detail,
            })
            .collect();
        lane.seal(fields)
    }

    /// Who writes these chains, for `audit_chains.writer`.
    pub fn writer(&self) -> &str {
        &self.inner.writer
    }

    /// When this writer started, ms since the epoch.
    pub fn started_at(&self) -> i64 {
        self.inner.started_at
    }
}

/// The pseudonym key `cfg` names, or [`DEV_KEY`] with a warning.
pub fn pseudonym_key(cfg: &AuditConfig) -> anyhow::Result<Vec<u8>> {
    match &cfg.pseudonym_key_env {
        Some(var) => Ok(crate::config::secret(var)?.into_bytes()),
        None => {
            tracing::warn!("audit.pseudonym_key_env is not set: audit pseudonyms use the development key");
            Ok(DEV_KEY.as_bytes().to_vec())
        }
    }
}

/// `ps_` and the first 32 hex digits of HMAC-SHA-256(key, code).
pub fn pseudonym(key: &[u8], code: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(b"proactive-audit-pseudonym-v1\n");
    m.update(code.trim().as_bytes());
    format!("ps_{}", &hex::encode(m.finalize().into_bytes())[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_hide_the_code() {
        let a = pseudonym(b"k1", "150394-11002");
        assert_eq!(a, pseudonym(b"k1", "150394-11002"));
        assert_ne!(a, pseudonym(b"k2", "150394-11002"));
        assert_ne!(a, pseudonym(b"k1", "020792-11002"));
        assert!(a.starts_with("ps_") && a.len() == 35 && !a.contains("150394"), "{a}");
    }

    #[test]
    fn concurrent_writers_get_different_chains_and_a_returned_lane_continues() {
        let audit = Audit::development();
        let mut a = audit.take_lane();
        let b = audit.take_lane();
        assert_ne!(a.chain, b.chain);
        let sealed = audit.seal(
            &mut a,
            vec![Entry {
                kind: "x".into(),
                at: 1,
                purpose: None,
                subject: Some("150394-11002".into()),
                notice_id: None,
                detail: serde_json::json!({}),
            }],
        );
        assert!(!sealed[0].record.contains("150394-11002"), "the code is pseudonymised: {}", sealed[0].record);
        let chain = a.chain.clone();
        audit.give_back(a);
        let again = audit.take_lane();
        assert_eq!((again.chain.as_str(), again.seq), (chain.as_str(), 1));
    }
}
