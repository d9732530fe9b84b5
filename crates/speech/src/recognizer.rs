//! Speech to text behind one interface: a [`Recognizer`] is loaded once per process and
//! hands out [`RecognizerWorker`]s, one per worker thread (whisper states and pocketsphinx
//! decoders are single-threaded; the model weights are shared).

use crate::sphinx::{Sphinx, SphinxError, SphinxSetup};
use crate::turn::Word;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error(transparent)]
    Model(#[from] crate::ggml::ModelError),
    #[error("whisper: {0}")]
    Whisper(String),
    #[error(transparent)]
    Sphinx(#[from] SphinxError),
}

/// What a recognizer made of one utterance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recognized {
    pub text: String,
    /// Mean token (whisper) or phrase (pocketsphinx) probability, 0..1.
    pub confidence: f32,
    pub words: Vec<Word>,
}

pub trait RecognizerWorker: Send {
    /// 16 kHz mono PCM of one utterance.
    fn recognize(&mut self, pcm: &[i16]) -> Result<Recognized, SttError>;
}

pub trait Recognizer: Send + Sync {
    fn name(&self) -> &'static str;
    fn worker(&self) -> Result<Box<dyn RecognizerWorker>, SttError>;
}

// ---- whisper ----

pub struct WhisperRecognizer {
    ctx: Arc<whisper_rs::WhisperContext>,
    language: String,
    threads: usize,
}

impl std::fmt::Debug for WhisperRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperRecognizer")
            .field("language", &self.language)
            .finish()
    }
}

impl WhisperRecognizer {
    /// Check the file, then load it (once; workers share the weights).
    pub fn load(path: &Path, language: &str, threads: usize) -> Result<Self, SttError> {
        crate::ggml::validate(path)?;
        silence_whisper_logs();
        let ctx = whisper_rs::WhisperContext::new_with_params(
            path,
            whisper_rs::WhisperContextParameters::default(),
        )
        .map_err(|e| SttError::Whisper(e.to_string()))?;
        Ok(Self {
            ctx: Arc::new(ctx),
            language: language.to_string(),
            threads: threads.max(1),
        })
    }
}

/// whisper.cpp prints to stderr by default; route it through `tracing` (at debug).
fn silence_whisper_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(whisper_rs::install_logging_hooks);
}

impl Recognizer for WhisperRecognizer {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn worker(&self) -> Result<Box<dyn RecognizerWorker>, SttError> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| SttError::Whisper(e.to_string()))?;
        Ok(Box::new(WhisperWorker {
            ctx: self.ctx.clone(),
            state,
            language: self.language.clone(),
            threads: self.threads,
        }))
    }
}

struct WhisperWorker {
    ctx: Arc<whisper_rs::WhisperContext>,
    state: whisper_rs::WhisperState,
    language: String,
    threads: usize,
}

impl RecognizerWorker for WhisperWorker {
    fn recognize(&mut self, pcm: &[i16]) -> Result<Recognized, SttError> {
        // Whisper wants at least a second; pad short utterances with silence.
        let mut audio: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        if audio.len() < 16_000 {
            audio.resize(16_000, 0.0);
        }
        let mut p =
            whisper_rs::FullParams::new(whisper_rs::SamplingStrategy::Greedy { best_of: 1 });
        p.set_n_threads(self.threads as i32);
        p.set_language(Some(&self.language));
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        p.set_single_segment(true);
        p.set_no_timestamps(true);
        p.set_token_timestamps(true);
        p.set_temperature_inc(0.0);
        // The encoder runs on 50 frames per second of audio: fit its context to the
        // utterance instead of the 30 s window, the biggest win for short utterances.
        let secs = audio.len() as f32 / 16_000.0;
        let ctx = ((secs * 50.0).ceil() as i32 + 64).min(self.ctx.n_audio_ctx());
        p.set_audio_ctx(ctx);
        p.set_max_tokens(96);
        self.state
            .full(p, &audio)
            .map_err(|e| SttError::Whisper(e.to_string()))?;
        let eot = self.ctx.token_eot();
        let mut text = String::new();
        let mut words: Vec<Word> = Vec::new();
        let mut probs = Vec::new();
        for seg in 0..self.state.full_n_segments() {
            let Some(segment) = self.state.get_segment(seg) else {
                continue;
            };
            for t in 0..segment.n_tokens() {
                let Some(tok) = segment.get_token(t) else {
                    continue;
                };
                if tok.token_id() >= eot {
                    continue;
                }
                let piece = tok
                    .to_str_lossy()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let data = tok.token_data();
                let prob = tok.token_probability();
                probs.push(prob);
                text.push_str(&piece);
                let (t0, t1) = (data.t0.max(0) as u64 * 10, data.t1.max(0) as u64 * 10);
                match words.last_mut() {
                    Some(w) if !piece.starts_with(' ') => {
                        w.text.push_str(&piece);
                        w.end_ms = t1;
                        w.probability = w.probability.min(prob);
                    }
                    _ => words.push(Word {
                        text: piece.trim_start().to_string(),
                        start_ms: t0,
                        end_ms: t1,
                        probability: prob,
                    }),
                }
            }
        }
        let confidence = if probs.is_empty() {
            0.0
        } else {
            probs.iter().sum::<f32>() / probs.len() as f32
        };
        Ok(Recognized {
            text: text.trim().to_string(),
            confidence,
            words,
        })
    }
}

// ---- pocketsphinx ----

#[derive(Debug)]
pub struct SphinxRecognizer {
    setup: SphinxSetup,
}

impl SphinxRecognizer {
    /// Builds one decoder to prove the model and phrases load.
    pub fn new(setup: SphinxSetup) -> Result<Self, SttError> {
        drop(Sphinx::new(&setup)?);
        Ok(Self { setup })
    }
}

impl Recognizer for SphinxRecognizer {
    fn name(&self) -> &'static str {
        "pocketsphinx"
    }

    fn worker(&self) -> Result<Box<dyn RecognizerWorker>, SttError> {
        Ok(Box::new(Sphinx::new(&self.setup)?))
    }
}

impl RecognizerWorker for Sphinx {
    /// Keyword spotting first (it works inside free speech); when it finds nothing in a
    /// short utterance, the short-answer grammar (yes/no, digits, slot words).
    fn recognize(&mut self, pcm: &[i16]) -> Result<Recognized, SttError> {
        // Keyword spotting misses words at the very edges of its input (its feature
        // normalisation needs some lead-in): give it half a second of silence either side.
        let mut padded = vec![0i16; 8000];
        padded.extend_from_slice(pcm);
        padded.resize(padded.len() + 8000, 0);
        let spotted = self.spot(&padded)?;
        if spotted.is_empty() && pcm.len() < 16_000 * 6 / 5 {
            if let Some((text, p)) = self.answer(pcm)? {
                return Ok(Recognized {
                    words: text
                        .split_whitespace()
                        .map(|w| Word {
                            text: w.to_string(),
                            start_ms: 0,
                            end_ms: pcm.len() as u64 / 16,
                            probability: p,
                        })
                        .collect(),
                    text,
                    confidence: p,
                });
            }
        }
        let mut spots = spotted;
        spots.sort_by(|a, b| a.start.total_cmp(&b.start));
        let text = spots
            .iter()
            .map(|s| s.phrase.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let confidence = if spots.is_empty() {
            0.0
        } else {
            spots.iter().map(|s| s.probability).sum::<f32>() / spots.len() as f32
        };
        Ok(Recognized {
            text,
            confidence,
            words: spots
                .into_iter()
                .map(|s| Word {
                    text: s.phrase,
                    start_ms: (s.start * 1000.0) as u64,
                    end_ms: (s.end * 1000.0) as u64,
                    probability: s.probability,
                })
                .collect(),
        })
    }
}
