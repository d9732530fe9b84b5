//! `[log]`: the `tracing` filter.

use super::{ConfigError, Ctx};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl LogConfig {
    pub(super) fn validate(&self, cx: &Ctx) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(cx.err(
                "log.level",
                format!(
                    "`{}` is not a level or filter (error, warn, info, debug, trace)",
                    self.level
                ),
            ));
        }
        Ok(())
    }
}
