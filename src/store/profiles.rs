//! Profiles: what the engine knows of each subject, one JSON document per
//! subject with the fields queries need (dates, parents) beside it.

use anyhow::Result;
use sqlx::{QueryBuilder, Row};

use super::{Db, on_pool, statement_chunks};
use crate::engine::profile::Profile;

impl Db {
    /// The stored profiles of `codes` (absent codes are simply missing).
    pub async fn load_profiles(&self, codes: &[String]) -> Result<Vec<Profile>> {
        let mut out = Vec::with_capacity(codes.len());
        for chunk in statement_chunks(codes, 1) {
            on_pool!(self, pool => {
                let mut qb = QueryBuilder::new("SELECT doc FROM profiles WHERE subject IN (");
                let mut sep = qb.separated(", ");
                for c in chunk {
                    sep.push_bind(c.clone());
                }
                qb.push(")");
                for r in qb.build().fetch_all(pool).await? {
                    let doc: String = r.try_get("doc")?;
                    out.push(serde_json::from_str(&doc)?);
                }
            });
        }
        Ok(out)
    }
}
