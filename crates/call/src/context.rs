//! The context packet: what the CRM and the agent's screen get about a call being handed
//! over. A versioned JSON schema (documented in the README), built whole by the caller's
//! controller.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Schema version of [`ContextPacket`]; bumped on any incompatible change.
pub const CONTEXT_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketCaller {
    /// Digits of the number (From, or P-Asserted-Identity when sent), `+` kept.
    pub number: String,
    pub name: Option<String>,
    /// The SIP URI as received.
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketTrigger {
    pub rule: String,
    pub kind: warmline_policy::TriggerKind,
    pub evidence: Vec<String>,
    pub confidence: f32,
    /// Milliseconds since the call was answered.
    pub at_ms: u64,
    /// In words, for people.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketIntent {
    pub text: String,
    pub confidence: f32,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketTurn {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub confidence: f32,
    pub arousal: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProsodySummary {
    /// Turns that had a prosody score.
    pub scored_turns: usize,
    pub mean_arousal: Option<f32>,
    pub max_arousal: Option<f32>,
    /// The evidence of the most aroused turn.
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PacketLinks {
    pub context: String,
    pub audit: String,
    pub agent_page: String,
}

impl PacketLinks {
    /// Where the gateway at `base` serves call `id`'s packet, trail and agent page.
    pub fn for_call(base: &str, id: &str) -> Self {
        Self {
            context: format!("{base}/api/calls/{id}/context"),
            audit: format!("{base}/api/calls/{id}/audit"),
            agent_page: format!("{base}/agent/calls/{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextPacket {
    pub version: u32,
    pub call_id: String,
    pub caller: PacketCaller,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub trigger: PacketTrigger,
    pub disposition: String,
    pub route: String,
    pub intent: Option<PacketIntent>,
    /// Two or three sentences for people.
    pub summary: String,
    /// What the agent hears privately before the bridge.
    pub briefing: String,
    pub fields: BTreeMap<String, String>,
    /// The caller's last turns, oldest first (at most 10).
    pub turns: Vec<PacketTurn>,
    pub prosody: ProsodySummary,
    /// Every rule that fired in this call, in order, and whether the route was closed.
    pub policy_flags: Vec<String>,
    pub next_step: String,
    pub links: PacketLinks,
}
