//! warmline's ears and voice, on the gateway itself: VAD and endpointing (`earshot`),
//! speech to text (whisper-rs, or pocketsphinx keyword spotting when no whisper model is
//! configured), prosody scoring against the caller's own baseline, and TTS (espeak-ng).
//!
//! Nothing here knows about calls: the binary's worker pool feeds utterances in and sends
//! results to the call controller.

pub mod convert;
pub mod ggml;
pub mod prosody;
#[cfg(feature = "engines")]
pub mod recognizer;
#[cfg(feature = "engines")]
pub mod sphinx;
pub mod tts;
pub mod turn;
pub mod vad;
pub mod verify;

pub use prosody::{ArousalScore, FrameAnalyzer, ProsodyScorer, UtteranceProsody};
#[cfg(feature = "engines")]
pub use recognizer::{
    DecodeOptions, Recognized, Recognizer, RecognizerWorker, SphinxRecognizer, SttError,
    WhisperRecognizer,
};
pub use tts::{EspeakTts, Tts};
pub use turn::{TranscriptTurn, TurnProsody, Word};
pub use vad::{EndpointSettings, Endpointer, Utterance, VadEvent};

/// Words a caller uses when asking for a person, for the fallback recognizer's keyword
/// spotting, with pocketsphinx thresholds (lower fires more easily). Whole phrases such as
/// "speak to a human" spot far worse than their anchor word, so the anchors are spotted and
/// the policy matches the phrase around them. Tuned on espeak-ng speech (see the note in
/// tests/speech.rs): all ten test requests found, no false alarm on unrelated sentences.
pub const ESCALATION_KEYWORDS: &[(&str, f64)] = &[
    ("human", 1e-20),
    ("person", 1e-15),
    ("agent", 1e-25),
    ("representative", 1e-25),
    ("manager", 1e-15),
    ("operator", 1e-20),
    ("supervisor", 1e-25),
];
