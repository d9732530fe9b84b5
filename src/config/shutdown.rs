//! `[shutdown]`: how long a draining instance waits for its calls.

use super::secs;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    #[serde(rename = "drain_s", deserialize_with = "secs")]
    pub drain: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain: Duration::from_secs(30),
        }
    }
}
