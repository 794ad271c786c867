//! API keys: `pk_` + a public id (12 hex digits) + `_` + 32 random bytes in
//! base64url. Only the SHA-256 of the whole key is stored; a fast hash is
//! enough for 256 random bits, where a password hash would cap the API at a
//! few hundred requests a second. Keys are cached in memory for a second, so
//! a request costs no read of the store and a revocation (by another
//! process, `proactive keys revoke`) takes effect within that second. Uses
//! are counted in memory and written with the API's next group commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use base64::Engine as _;
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::store::{ApiKeyRow, Db};

/// How long a key read from the store is trusted before it is read again.
const CACHE_TTL: Duration = Duration::from_secs(1);
const PREFIX: &str = "pk_";
const ID_LEN: usize = 12;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Push events for its sources and event types.
    Agency,
    /// Read the staff endpoints.
    Staff,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agency => "agency",
            Role::Staff => "staff",
        }
    }
}

/// SHA-256 of a key, hex, as stored.
pub fn hash_key(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// The public id inside a key, if it has the key's shape.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    (id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43).then_some(id)
}

/// Creates and stores a key; returns the key itself (shown once, never stored) and its row.
pub async fn create(
    db: &Db,
    role: Role,
    owner: &str,
    sources: &[String],
    types: &[String],
    now_ms: i64,
) -> Result<(String, ApiKeyRow)> {
    let owner = owner.trim();
    if owner.is_empty() {
        bail!("a key needs an owner: --agency NAME (or --name for a staff key)");
    }
    match role {
        Role::Agency => {
            if sources.is_empty() || types.is_empty() {
                bail!("an agency key needs --sources and --types (what it may send)");
            }
            let known: Vec<&str> = crate::events::known_event_types().collect();
            for t in types {
                if !known.contains(&t.as_str()) {
                    bail!("--types: {t:?} is not an event type (known: {})", known.join(", "));
                }
            }
            if let Some(s) = sources.iter().find(|s| s.trim().is_empty() || s.contains(char::is_whitespace)) {
                bail!("--sources: {s:?} is not a source name");
            }
        }
        Role::Staff => {
            if !sources.is_empty() || !types.is_empty() {
                bail!("a staff key sends no events: --sources and --types are for agency keys");
            }
        }
    }
    let mut bytes = [0u8; 38];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut bytes)
        .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
    let id = hex::encode(&bytes[..ID_LEN / 2]);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[ID_LEN / 2..]);
    let key = format!("{PREFIX}{id}_{secret}");
    let row = ApiKeyRow {
        id,
        hash: hash_key(&key),
        role: role.as_str().into(),
        owner: owner.into(),
        sources: dedup(sources),
        types: dedup(types),
        created_at: now_ms,
        revoked_at: None,
        uses: 0,
        last_used_at: None,
    };
    db.create_api_key(&row).await?;
    Ok((key, row))
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.trim().to_string()).collect();
    v.sort();
    v.dedup();
    v
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key's row as last read.
    pub key: Arc<ApiKeyRow>,
}

/// Why a request is not authenticated (all answered 401, told apart in the detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …`.
    Missing,
    /// Not a key of ours.
    Unknown,
    /// A key that was revoked.
    Revoked,
    /// The store could not be read.
    Unavailable,
}

/// The keys the server has seen lately, and their uses not yet written.
#[derive(Default)]
pub struct KeyRing {
    cache: Mutex<HashMap<String, (Arc<ApiKeyRow>, Instant)>>,
    uses: Mutex<HashMap<String, u64>>,
}

impl KeyRing {
    /// Authenticates a bearer key and counts the use.
    pub async fn authenticate(&self, db: &Db, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let key = authorization
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(AuthError::Missing)?;
        let id = key_id(key).ok_or(AuthError::Unknown)?;
        let cached = self.cache.lock().expect("key cache").get(id).filter(|(_, at)| at.elapsed() < CACHE_TTL).cloned();
        let row = match cached {
            Some((row, _)) => row,
            None => {
                let row = db.api_key(id).await.map_err(|_| AuthError::Unavailable)?.ok_or(AuthError::Unknown)?;
                let row = Arc::new(row);
                self.cache.lock().expect("key cache").insert(id.to_string(), (row.clone(), Instant::now()));
                row
            }
        };
        if !bool::from(hash_key(key).as_bytes().ct_eq(row.hash.as_bytes())) {
            return Err(AuthError::Unknown);
        }
        if row.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        *self.uses.lock().expect("key uses").entry(row.id.clone()).or_default() += 1;
        Ok(Caller { key: row })
    }

    /// Takes the uses counted since the last call, to be written.
    pub fn take_uses(&self) -> Vec<(String, u64)> {
        let mut uses = self.uses.lock().expect("key uses");
        let mut v: Vec<(String, u64)> = uses.drain().collect();
        // One order for every writer, so concurrent flushes on PostgreSQL never deadlock on key rows.
        v.sort();
        v
    }

    /// Puts back uses whose write failed.
    pub fn restore_uses(&self, taken: Vec<(String, u64)>) {
        let mut uses = self.uses.lock().expect("key uses");
        for (id, n) in taken {
            *uses.entry(id).or_default() += n;
        }
    }

    /// Drops a key from the cache (after this process revoked it).
    pub fn forget(&self, id: &str) {
        self.cache.lock().expect("key cache").remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_read_only_from_well_formed_keys() {
        let key = format!("pk_0123456789ab_{}", "A".repeat(43));
        assert_eq!(key_id(&key), Some("0123456789ab"));
        assert_eq!(key_id("pk_0123456789ab"), None);
        assert_eq!(key_id(&format!("pk_0123456789ax_{}", "A".repeat(43))), None);
        assert_eq!(key_id(&format!("xx_0123456789ab_{}", "A".repeat(43))), None);
        assert_eq!(key_id(&format!("pk_0123456789ab_{}", "A".repeat(42))), None);
        assert_eq!(key_id("pk_é"), None);
    }
}
