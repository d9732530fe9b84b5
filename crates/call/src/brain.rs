//! The external assistant ("brain") contract: what warmline POSTs to `[assistant]
//! webhook_url` for each caller turn, and the reply it understands. Versioned, documented in
//! the README, and plain serde so the driver only carries bytes.
//!
//! A missing or failed reply is not an error here: the controller falls back to the
//! built-in dialogue for that turn.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warmline_speech::TurnProsody;

/// Schema version of [`BrainRequest`]; bumped on any incompatible change.
pub const BRAIN_SCHEMA: u32 = 1;

/// One line of the dialogue so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialogueLine {
    /// `caller` or `assistant`.
    pub role: String,
    pub text: String,
    /// Milliseconds since the call was answered.
    pub at_ms: u64,
}

/// What warmline sends for one caller turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrainRequest {
    pub version: u32,
    /// Filled by the driver (the controller does not know the Call-ID).
    pub call_id: String,
    /// Sequence number of this turn in the call; the reply is matched to it.
    pub seq: u64,
    pub caller: String,
    pub caller_name: Option<String>,
    pub transcript: String,
    pub confidence: f32,
    pub prosody: Option<TurnProsody>,
    /// Fields collected so far (by the brain or the built-in flow).
    pub fields: BTreeMap<String, String>,
    /// The last turns of the dialogue, oldest first.
    pub history: Vec<DialogueLine>,
}

/// A transfer the brain asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrainTransfer {
    pub reason: String,
    /// The agent group; the rules' default route when absent.
    #[serde(default)]
    pub route: Option<String>,
}

/// The brain's answer. Every part is optional: `{}` means "nothing to say".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrainReply {
    /// Spoken to the caller (TTS).
    pub say: Option<String>,
    /// Fields learned from this turn; merged into the call's fields.
    pub fields: BTreeMap<String, String>,
    pub intent: Option<String>,
    /// The brain's confidence in `intent`, 0..1.
    pub confidence: Option<f32>,
    pub transfer: Option<BrainTransfer>,
    /// The caller's need is met (elapsed-time rules stand down).
    pub resolved: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reply_parts_are_optional_and_unknown_keys_refused() {
        let r: BrainReply = serde_json::from_str("{}").unwrap();
        assert_eq!(r, BrainReply::default());
        let r: BrainReply = serde_json::from_str(
            r#"{"say":"One moment.","fields":{"name":"Ada"},"intent":"billing","confidence":0.9,
                "transfer":{"reason":"refund over limit","route":"billing"}}"#,
        )
        .unwrap();
        assert_eq!(r.transfer.unwrap().route.as_deref(), Some("billing"));
        assert!(serde_json::from_str::<BrainReply>(r#"{"sya":"typo"}"#).is_err());
    }
}
