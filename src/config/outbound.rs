//! `[outbound]`: how warmline places calls (to agents, and to a B2BUA's far end).

use super::{ConfigError, Ctx, secs};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    pub from_user: String,
    #[serde(rename = "ring_timeout_s", deserialize_with = "secs")]
    pub ring_timeout: Duration,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            from_user: "warmline".into(),
            ring_timeout: Duration::from_secs(30),
            auth_username: None,
            auth_password: None,
        }
    }
}

impl OutboundConfig {
    pub(super) fn validate(&self, cx: &Ctx) -> Result<(), ConfigError> {
        if self.auth_username.is_some() != self.auth_password.is_some() {
            return Err(cx.err(
                "outbound.auth_username",
                "auth_username and auth_password go together".into(),
            ));
        }
        Ok(())
    }
}
