//! Leases on singleton work shared by several processes: taken when free
//! or lapsed, renewed by their holder, released on a clean stop.

use anyhow::Result;

use super::{Db, on_pool};

impl Db {
    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`;
    /// true when `holder` has it now, false when another live process does.
    pub async fn take_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO leases (name, holder, until_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_at = excluded.until_at \
                 WHERE leases.holder = excluded.holder OR leases.until_at < $4 RETURNING holder",
            )
            .bind(name)
            .bind(holder)
            .bind(now_ms + ttl_ms)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?
            .is_some()
        }))
    }

    /// Gives the lease up at once (a clean stop), if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(name).bind(holder).execute(pool).await?;
        });
        Ok(())
    }
}

impl Db {
    /// Every lease with its holder and expiry (ms), by name: who does what now.
    pub async fn leases(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query("SELECT name, holder, until_at FROM leases ORDER BY name").fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((sqlx::Row::try_get(r, "name")?, sqlx::Row::try_get(r, "holder")?, sqlx::Row::try_get(r, "until_at")?)))
                .collect::<Result<Vec<_>>>()?
        }))
    }
}
