//! `[crm]`: where context packets go.

use super::{ConfigError, Ctx, millis};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrmConfig {
    pub webhook_url: Option<String>,
    /// Signs each POST: `X-Warmline-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub secret: Option<String>,
    #[serde(rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
}

impl Default for CrmConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            secret: None,
            timeout: Duration::from_secs(5),
        }
    }
}

impl CrmConfig {
    pub(super) fn validate(&mut self, cx: &Ctx) -> Result<(), ConfigError> {
        if let Some(u) = &self.webhook_url {
            cx.http_url("crm.webhook_url", u)?;
        }
        self.timeout = self.timeout.max(Duration::from_millis(100));
        Ok(())
    }
}
