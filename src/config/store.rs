//! `[store]`: the SQLite file of the audit trail, packets and the CRM outbox.

use super::{ConfigError, Ctx};
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

    /// The file must be one SQLite can make or open on this machine: checked by
    /// `check-config` and before `run` binds anything, so the problem is named with its
    /// key rather than found by the store's writer.
    pub(super) fn check_host(&self, cx: &Ctx) -> Result<(), ConfigError> {
        let err = |m: String| cx.err("store.path", format!("{}: {m}", self.path.display()));
        if self.path.is_dir() {
            return Err(err("is a directory".into()));
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(err(format!(
                "the directory {} does not exist",
                dir.display()
            )));
        }
        // SQLite writes its journal beside the file (WAL): the directory must be writable.
        if rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK).is_err() {
            return Err(err(format!(
                "the directory {} is not writable",
                dir.display()
            )));
        }
        Ok(())
    }
}

fn days_or_never<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let days = u64::deserialize(d)?;
    Ok((days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400))))
}
