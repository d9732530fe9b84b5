//! `[store]`: the SQLite file of the audit trail, packets and the CRM outbox.

use super::Ctx;
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Keep turn texts in the audit trail (otherwise only their timing and confidence).
    pub keep_transcripts: bool,
    /// Audit rows, packets and delivered deliveries older than this are deleted (checked
    /// hourly); `None` (written 0) keeps everything.
    #[serde(rename = "retain_days", deserialize_with = "days_or_never")]
    pub retain: Option<Duration>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: "warmline.db".into(),
            keep_transcripts: false,
            retain: Some(Duration::from_secs(90 * 86_400)),
        }
    }
}

impl StoreConfig {
    pub(super) fn validate(&mut self, cx: &Ctx) {
        self.path = cx.resolve(&self.path);
    }
}

fn days_or_never<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let days = u64::deserialize(d)?;
    Ok((days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400))))
}
