//! Profiles: what the engine knows of each subject, one JSON document per
//! subject with the fields queries need (dates, parents) beside it.

use anyhow::Result;

use super::Db;
use crate::engine::profile::Profile;

impl Db {
    /// The stored profiles of `codes` (absent codes are simply missing).
    pub async fn load_profiles(&self, codes: &[String]) -> Result<Vec<Profile>> {
        let reads = super::reader::Statement::in_list("SELECT doc FROM profiles WHERE subject", codes, "");
        self.select(reads, |r| Ok(serde_json::from_str(&r.text("doc")?)?)).await
    }
}
