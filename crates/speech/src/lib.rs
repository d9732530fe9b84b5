//! warmline's ears and voice, on the gateway itself: VAD and endpointing (`earshot`),
//! speech to text (whisper-rs, or pocketsphinx keyword spotting when no whisper model is
//! configured), prosody scoring against the caller's own baseline, and TTS (espeak-ng).
//!
//! Nothing here knows about calls. One caller's [`listener::Listener`] decides, frame by
//! frame, what to recognise and when a turn is over; the binary's worker pool runs the
//! recognition and sends the turns to the call controller.

pub mod convert;
pub mod ggml;
pub mod listener;
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
    DecodeOptions, Recognized, Recognizer, RecognizerWorker, SphinxRecognizer, Spotting, SttError,
    WhisperRecognizer,
};
pub use tts::{EspeakTts, Tts};
pub use turn::{TranscriptTurn, TurnProsody, Word};
pub use vad::{EndpointSettings, Endpointer, Utterance, VadEvent};

/// Words a caller uses when asking for a person, for the fallback recognizer's keyword
/// spotting, with pocketsphinx thresholds (lower fires more easily). A word alone says
/// nothing of its context ("a travel agent", "no need for an agent"), and spotted alone it
/// fires on near sounds ("invoice", "moved house": one routine call in five escalated on
/// the accuracy suite), so an anchor counts only when it is nearly all the caller said
/// ([`SHORT_TURN_MS`]): "Operator.", "Agent, please.".
pub const ESCALATION_KEYWORDS: &[(&str, f64)] = &[
    ("human", 1e-20),
    ("person", 1e-15),
    ("agent", 1e-25),
    ("representative", 1e-25),
    ("manager", 1e-15),
    ("operator", 1e-20),
    ("supervisor", 1e-25),
];

/// In a longer turn, what counts is a phrase that carries its context: who is asked for,
/// after "to" ("speak to a human", "put me through to someone") or as a whole ("a real
/// person"). Longer phrases take smaller thresholds.
pub const ESCALATION_PHRASES: &[(&str, f64)] = &[
    ("to a human", 1e-20),
    ("speak to a human", 1e-30),
    ("human being", 1e-25),
    ("a real person", 1e-30),
    ("to a person", 1e-30),
    ("to an agent", 1e-25),
    ("me an agent", 1e-25),
    ("with an agent", 1e-25),
    ("to someone", 1e-25),
    ("to somebody", 1e-25),
    ("to a manager", 1e-30),
    ("to your manager", 1e-30),
    ("to a representative", 1e-35),
    ("to a supervisor", 1e-35),
    ("to your supervisor", 1e-35),
    ("to an operator", 1e-30),
    ("put me through", 1e-30),
    ("transfer me", 1e-25),
];

/// A turn this short (as the endpointer cuts it, lead-in and tail included) is one word or
/// two: a spotted anchor word is the request itself. 2 s keeps "I want to speak to a
/// human." (1.8 s as cut), in which no phrase is spotted; "Could you resend my last
/// invoice?" (1.9 s) still fires as "agent" (the fallback's one routine false alarm on
/// the accuracy suite).
pub const SHORT_TURN_MS: u64 = 2_000;
