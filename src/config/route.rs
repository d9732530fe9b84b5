//! `[route]`: what warmline does with an answered inbound call.

use super::{ConfigError, Ctx};
use serde::Deserialize;

/// `mode = "assistant"` (the default), or `mode = "bridge"` with a `target`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum RouteMode {
    /// warmline's own assistant answers (on the media plane alone: the greeting).
    #[default]
    Assistant,
    /// No AI: B2BUA the caller straight to `target`.
    Bridge { target: String },
}

impl RouteMode {
    pub(super) fn validate(&self, cx: &Ctx) -> Result<(), ConfigError> {
        match self {
            RouteMode::Bridge { target } if !target.starts_with("sip:") || target.len() < 5 => {
                Err(cx.err("route.target", format!("`{target}` is not a sip: URI")))
            }
            _ => Ok(()),
        }
    }
}
