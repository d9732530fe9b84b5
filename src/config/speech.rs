//! `[speech]`: the recogniser and its model, the endpointer, the prosody baseline, and the
//! voice warmline speaks with.

use super::{ConfigError, Ctx};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecognizerChoice {
    /// whisper when a valid model is configured, else the fallback.
    Auto,
    Whisper,
    Fallback,
    /// No speech pipeline.
    Off,
}

/// What happens to a call that arrives when the recognizer already listens to as many
/// callers as it can hear in time (`[speech] capacity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverCapacity {
    /// 503 with Retry-After, so the PBX or Kamailio tries another instance.
    #[default]
    Refuse,
    /// Answered without the assistant and handed straight to the agents (a warm transfer
    /// whose reason says why).
    Agents,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    pub recognizer: RecognizerChoice,
    pub whisper_model: Option<PathBuf>,
    /// The model `run` provisions into the data directory when `whisper_model` is unset
    /// (`None`, written `""` or `"none"`: never fetch, use the fallback).
    #[serde(deserialize_with = "model_name")]
    pub fetch_model: Option<String>,
    /// Recognition workers (each with its share of the cores, see `speech::SpeechPlane`);
    /// 0 in the file: one per two cores.
    pub threads: usize,
    /// Utterances that may wait for a worker before new ones are dropped (and counted);
    /// 0 in the file: four per worker, at least 8.
    pub queue: usize,
    pub language: String,
    pub end_silence_ms: u64,
    pub max_utterance_ms: u64,
    pub baseline_utterances: usize,
    pub tts_voice: String,
    /// Spoken (TTS, rendered once at start-up) when `[media] greeting` is not set.
    pub greeting_text: String,
    /// Callers the recognizer may listen to at once; 0 in the file: measured at start-up
    /// (`speech::SpeechPlane::start`'s self-test).
    pub capacity: usize,
    pub over_capacity: OverCapacity,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            recognizer: RecognizerChoice::Auto,
            whisper_model: None,
            fetch_model: Some(crate::model::DEFAULT_MODEL.into()),
            threads: 0,
            queue: 0,
            language: "en".into(),
            end_silence_ms: 600,
            max_utterance_ms: 15_000,
            baseline_utterances: 2,
            tts_voice: "en-us".into(),
            greeting_text: "Hello, you are speaking with an automated assistant. \
                            You can ask for a person at any time. How can I help?"
                .into(),
            capacity: 0,
            over_capacity: OverCapacity::Refuse,
        }
    }
}

impl SpeechConfig {
    /// Checks the model, fills in the automatic sizes.
    pub(super) fn validate(&mut self, cx: &Ctx) -> Result<(), ConfigError> {
        if let Some(m) = &mut self.whisper_model {
            *m = cx.resolve(m);
            // Checked here, not when whisper.cpp loads it: whisper.cpp aborts the process
            // on some malformed files.
            warmline_speech::ggml::validate(m)
                .map_err(|e| cx.err("speech.whisper_model", format!("{}: {e}", m.display())))?;
        } else if self.recognizer == RecognizerChoice::Whisper {
            return Err(cx.err(
                "speech.whisper_model",
                "recognizer = \"whisper\" needs whisper_model".into(),
            ));
        }
        if let Some(name) = &self.fetch_model {
            crate::model::spec(name).map_err(|e| cx.err("speech.fetch_model", e.to_string()))?;
        }
        if self.end_silence_ms < 100 || self.max_utterance_ms < 1000 {
            return Err(cx.err(
                "speech.end_silence_ms",
                "end_silence_ms must be at least 100 and max_utterance_ms at least 1000".into(),
            ));
        }
        // One worker per two cores, each decoding on two threads: a turn is heard 1.6
        // times sooner than on one thread, and under three callers talking at once on two
        // cores `benches/accuracy.sh` printed end of speech -> trigger p95 794 ms with one
        // two-thread worker against 1,195 ms with two one-thread workers (the same words
        // heard): a turn that waits for the worker still finishes sooner than one that
        // shares the cores from the start.
        if self.threads == 0 {
            self.threads = (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1);
        }
        // Turns are dropped (and counted) only past this: with one worker on a small box, a
        // burst of callers ending their turns together must wait, not be lost.
        if self.queue == 0 {
            self.queue = (self.threads * 4).max(8);
        }
        self.baseline_utterances = self.baseline_utterances.max(1);
        Ok(())
    }
}

fn model_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match String::deserialize(d)?.as_str() {
        "" | "none" => None,
        name => Some(name.to_string()),
    })
}
