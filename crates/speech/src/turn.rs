//! What the speech pipeline hands the call controller: one caller turn, with its words,
//! timing, confidence and how it sounded. Plain data (serde), shared with the controller,
//! the audit trail and the HTTP API.

use crate::prosody::{ArousalScore, UtteranceProsody};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub text: String,
    /// Milliseconds from the utterance start.
    pub start_ms: u64,
    pub end_ms: u64,
    pub probability: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptTurn {
    pub text: String,
    /// Milliseconds of the caller's audio since the call was answered.
    pub start_ms: u64,
    pub end_ms: u64,
    /// 0..1: mean token probability (whisper) or spotted-phrase posterior (fallback).
    pub confidence: f32,
    pub words: Vec<Word>,
    /// `whisper` or `pocketsphinx`.
    pub recognizer: String,
    /// End of utterance to text, in ms (queue wait included).
    pub latency_ms: u64,
    /// Silence the endpointer waited for after the last word before it ended the turn:
    /// end of speech → text is this plus `latency_ms`.
    #[serde(default)]
    pub endpoint_ms: u64,
    pub prosody: Option<TurnProsody>,
}

/// The turn's prosody and its arousal against the caller's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnProsody {
    pub pitch_mean_hz: f32,
    pub pitch_range_st: f32,
    pub loudness_db: f32,
    pub rate_sps: f32,
    pub arousal: f32,
    /// The features that raised the score, strongest first, as `feature:+delta unit`.
    pub evidence: Vec<String>,
    pub baseline_utterances: usize,
}

impl TurnProsody {
    pub fn new(p: &UtteranceProsody, s: &ArousalScore) -> Self {
        Self {
            pitch_mean_hz: p.pitch_mean_hz,
            pitch_range_st: p.pitch_range_st,
            loudness_db: p.loudness_db,
            rate_sps: p.rate_sps,
            arousal: s.score,
            evidence: s
                .evidence
                .iter()
                .map(|e| format!("{}:{:+.1} {}", e.feature, e.delta, e.unit))
                .collect(),
            baseline_utterances: s.baseline_utterances,
        }
    }
}
