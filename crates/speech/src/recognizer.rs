//! Speech to text behind one interface: a [`Recognizer`] is loaded once per process and
//! hands out [`RecognizerWorker`]s, one per worker thread (whisper states and pocketsphinx
//! decoders are single-threaded; the model weights are shared).

use crate::sphinx::{Sphinx, SphinxError, SphinxSetup};
use crate::turn::Word;
use crate::verify::{PhraseTrie, Primed, StepModel};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error(transparent)]
    Model(#[from] crate::ggml::ModelError),
    #[error("whisper: {0}")]
    Whisper(String),
    #[error(transparent)]
    Sphinx(#[from] SphinxError),
    /// The caller of [`RecognizerWorker::recognize_until`] no longer wanted the text.
    #[error("recognition stopped: its result was no longer wanted")]
    Stopped,
}

/// What a recognizer made of one utterance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recognized {
    pub text: String,
    /// Mean token (whisper) or phrase (pocketsphinx) probability, 0..1.
    pub confidence: f32,
    pub words: Vec<Word>,
    /// What free decoding heard, when an expected phrase ([`DecodeOptions::expected`])
    /// fitted the audio about as well and was taken instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_text: Option<String>,
    /// How the expected phrases scored, when they were checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<ExpectCheck>,
}

/// The expected-phrase check of one turn ([`crate::verify`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectCheck {
    /// log P(free transcript, end | audio).
    pub free_logprob: f32,
    /// The best expected phrase above the floor, with its log-probability and mean per
    /// token; none when every phrase fell below.
    pub phrase: Option<String>,
    pub logprob: f32,
    pub mean: f32,
    /// Taken in place of the free transcript.
    pub taken: bool,
    /// Decoder steps spent.
    pub steps: usize,
}

/// One decoder. Not `Send`: a worker is built on the thread that uses it.
pub trait RecognizerWorker {
    /// 16 kHz mono PCM of one utterance.
    fn recognize(&mut self, pcm: &[i16]) -> Result<Recognized, SttError>;

    /// As [`Self::recognize`], but give up ([`SttError::Stopped`]) soon after `stop` is
    /// set: a guess at a turn the caller went on talking over frees its worker for a turn
    /// that needs it. A recognizer that cannot stop midway finishes.
    fn recognize_until(&mut self, pcm: &[i16], stop: &AtomicBool) -> Result<Recognized, SttError> {
        if stop.load(Ordering::Relaxed) {
            return Err(SttError::Stopped);
        }
        self.recognize(pcm)
    }
}

pub trait Recognizer: Send + Sync {
    fn name(&self) -> &'static str;
    fn worker(&self) -> Result<Box<dyn RecognizerWorker>, SttError>;
}

// ---- whisper ----

/// How whisper decodes an utterance. The defaults follow whisper.cpp's own fallback scheme
/// (OpenAI's `transcribe()`): greedy at temperature 0, and a warmer retry while the
/// result looks like a loop (token entropy too low), is improbable (mean log-probability
/// too low) or the model thinks there was no speech. Retries are 0.4 apart with two
/// candidates each (whisper.cpp: 0.2 and five), so a bad turn costs at most three decodes,
/// not six: under three concurrent callers the six-decode tail held a worker for 3 s. Greedy decoding with that fallback
/// off, a shortened audio context and one segment loops: the same sentence ten times.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub language: String,
    /// Threads per recognition (each worker runs one at a time).
    pub threads: usize,
    /// Words the caller is likely to say (the rules' phrases, the fields' names): whisper
    /// is prompted with them, which steers short, clipped requests ("operator") to them.
    pub prompt: String,
    /// 0 or 1: greedy; more: beam search of this width.
    pub beam_size: usize,
    pub temperature_inc: f32,
    pub entropy_thold: f32,
    pub logprob_thold: f32,
    pub no_speech_thold: f32,
    /// Phrases a short turn may be (every wording of a request for a person the policy
    /// knows): when free decoding heard none of them, each is scored against the audio,
    /// and the best is taken if it is nearly as likely as what was heard
    /// ([`crate::verify`]).
    pub expected: Vec<String>,
    /// Free text that already says what the expected phrases say (a request for a person,
    /// in these words or others): it needs no check, and is never cut down to a shorter
    /// phrase. Without it every short turn is checked.
    pub expected_said: Option<fn(&str) -> bool>,
    /// How much less likely than the free transcript (natural log of the ratio) an
    /// expected phrase may be and still be taken.
    pub expect_margin: f32,
    /// And the least mean log-probability per token it must have on its own.
    pub expect_min_mean: f32,
    /// Turns longer than this (ms) are not checked: a request said inside a long turn is
    /// heard in context, and a short phrase cannot explain a long turn.
    pub expect_max_ms: u64,
    /// Encoder frames (20 ms) of silence beyond the turn ([`AUDIO_CTX_MARGIN`]).
    pub audio_ctx_margin: i32,
    /// Phrases looked for inside a turn heard without them ([`crate::verify::spot`]).
    pub spot: Spotting,
}

/// A question about a transcript, shared by the workers.
pub type TextTest = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Phrases a longer turn may hold that free decoding can miss, and which turns to look in:
/// a billing-dispute topic's words ("dispute", "overcharged") in a turn whose amount was
/// heard but whose topic was not ("I want to return to $2,000").
#[derive(Clone, Default)]
pub struct Spotting {
    /// As a caller says them; each is tried at every word of the turn.
    pub phrases: Vec<String>,
    /// Whether the turn, as heard, is one a phrase would decide. None: never look.
    pub wanted: Option<TextTest>,
    /// Whether a reading found is one a phrase decides (the topic's words and its amount
    /// both in it): any other is not taken, since it only trades what was heard for
    /// something no likelier. None: every reading found.
    pub decides: Option<TextTest>,
    /// A word the phrases come before ("dispute a charge of $800": the amount): none is
    /// tried at or after the first word it accepts. None: anywhere.
    pub anchor: Option<fn(&str) -> bool>,
    /// How much less likely than the free transcript (natural log) a reading with a
    /// phrase may be and still be taken.
    pub margin: f32,
    /// Turns longer than this (ms) are not searched: the search costs a decoder step per
    /// token of the turn and more.
    pub max_ms: u64,
}

impl std::fmt::Debug for Spotting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spotting")
            .field("phrases", &self.phrases)
            .field("wanted", &self.wanted.is_some())
            .field("decides", &self.decides.is_some())
            .field("anchor", &self.anchor.is_some())
            .field("margin", &self.margin)
            .field("max_ms", &self.max_ms)
            .finish()
    }
}

impl Spotting {
    fn wants(&self, text: &str) -> bool {
        !self.phrases.is_empty() && self.wanted.as_ref().is_some_and(|w| w(text))
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            language: "en".into(),
            threads: 1,
            prompt: String::new(),
            beam_size: 0,
            temperature_inc: 0.4,
            entropy_thold: 2.4,
            logprob_thold: -1.0,
            no_speech_thold: 0.6,
            expected: Vec::new(),
            expected_said: None,
            expect_margin: EXPECT_MARGIN,
            expect_min_mean: EXPECT_MIN_MEAN,
            expect_max_ms: 3_000,
            audio_ctx_margin: AUDIO_CTX_MARGIN,
            spot: Spotting {
                margin: SPOT_MARGIN,
                max_ms: 8_000,
                ..Spotting::default()
            },
        }
    }
}

pub struct WhisperRecognizer {
    ctx: Arc<whisper_rs::WhisperContext>,
    opts: Arc<DecodeOptions>,
    expect: Arc<Expect>,
}

/// What the expected-phrase check needs, tokenized once per model and shared by the
/// workers.
#[derive(Debug)]
struct Expect {
    /// The decoder's start sequence (prompt, start of transcript, …, no timestamps).
    prompt: Vec<i32>,
    trie: PhraseTrie,
    /// Tokens that end an expected phrase: end of text, ".", "!", "?".
    ends: Vec<i32>,
    /// The spotted phrases' tokens ([`Spotting`]), leading space included.
    spot: Vec<Vec<i32>>,
    /// Their texts, in the same order.
    spot_texts: Vec<String>,
}

impl std::fmt::Debug for WhisperRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperRecognizer")
            .field("opts", &self.opts)
            .finish()
    }
}

impl WhisperRecognizer {
    /// Check the file, then load it (once: workers share the weights and the tokenized
    /// expected phrases).
    pub fn load(path: &Path, opts: DecodeOptions) -> Result<Self, SttError> {
        crate::ggml::validate(path)?;
        silence_whisper_logs();
        let ctx = whisper_rs::WhisperContext::new_with_params(
            path,
            whisper_rs::WhisperContextParameters::default(),
        )
        .map_err(|e| SttError::Whisper(e.to_string()))?;
        let tokenize = |text: &str| {
            ctx.tokenize(text, 512)
                .map_err(|e| SttError::Whisper(format!("tokenizing \"{text}\": {e}")))
        };
        // The decoder's start as whisper_full builds it: the prompt after "previous",
        // then start of transcript, language and task (multilingual models), no timestamps.
        let mut prompt = Vec::new();
        if !opts.prompt.is_empty() {
            prompt.push(ctx.token_prev());
            let mut p = tokenize(&opts.prompt)?;
            let keep = (ctx.n_text_ctx() / 2 - 1).max(0) as usize;
            if p.len() > keep {
                p.drain(..p.len() - keep);
            }
            prompt.extend(p);
        }
        prompt.push(ctx.token_sot());
        if ctx.is_multilingual() {
            let lang = whisper_rs::get_lang_id(&opts.language).unwrap_or(0);
            prompt.push(ctx.token_lang(lang));
            prompt.push(ctx.token_transcribe());
        }
        prompt.push(ctx.token_not());
        let mut ends = vec![ctx.token_eot()];
        for p in [".", "!", "?"] {
            if let [t] = tokenize(p)?[..] {
                ends.push(t);
            }
        }
        let mut tokenized = Vec::with_capacity(opts.expected.len());
        for phrase in &opts.expected {
            tokenized.push((phrase.clone(), tokenize(&format!(" {phrase}"))?));
        }
        let (mut spot, mut spot_texts) = (Vec::new(), Vec::new());
        for phrase in &opts.spot.phrases {
            let t = tokenize(&format!(" {phrase}"))?;
            if !t.is_empty() {
                spot.push(t);
                spot_texts.push(phrase.clone());
            }
        }
        Ok(Self {
            ctx: Arc::new(ctx),
            opts: Arc::new(opts),
            expect: Arc::new(Expect {
                prompt,
                trie: PhraseTrie::new(tokenized),
                ends,
                spot,
                spot_texts,
            }),
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
            opts: self.opts.clone(),
            expect: self.expect.clone(),
        }))
    }
}

struct WhisperWorker {
    ctx: Arc<whisper_rs::WhisperContext>,
    state: whisper_rs::WhisperState,
    opts: Arc<DecodeOptions>,
    expect: Arc<Expect>,
}

/// An expected phrase is taken when it is at most this much less likely than the free
/// transcript (natural log: e^-4 ≈ 1/55) and its tokens, its ending included, are on
/// average at least e^-2.4 ≈ 1/11 likely; or when it is outright more likely than the free
/// transcript (by e^1) and a fair fit (e^-3.2 per token). Chosen on `benches/requests.rs`
/// (480 telephone-band clips, 12 voices): free decoding hears a third of short requests,
/// the check all but a few, and no other short turn scored within 0.35 of either line.
/// "I need …" and "I want …" are not expected: "I need a person" was the likeliest reading
/// of "I need a refund" (see `warmline_policy::intent::request_utterances`).
pub const EXPECT_MARGIN: f32 = 4.0;
pub const EXPECT_MIN_MEAN: f32 = -2.4;
const EXPECT_BETTER: f32 = 1.0;
const EXPECT_BETTER_MIN_MEAN: f32 = -3.2;
/// Decoder steps one check may take: each costs ~11 ms for tiny.en on one thread (5.6 ms on
/// two), nearly all of it the projection onto the 51,864-token vocabulary. The requests
/// bench needed at most 113 (p95 56).
const EXPECT_BUDGET: usize = 128;
/// A reading with a spotted phrase is taken when it is at most this much less likely than
/// the free transcript (natural log), both whole transcripts of the same audio: 0, taken
/// only when the model itself finds it at least as likely as what it heard. Chosen on
/// `benches/topics.rs` (240 telephone-band clips, 12 voices): a turn naming money and no
/// dispute scored a reading with a dispute in it 0.1 below its free transcript.
pub const SPOT_MARGIN: f32 = 0.0;
/// Decoder steps one search may take: the forced pass over the free tokens (one a token),
/// then each reading tried.
const SPOT_BUDGET: usize = 64;

/// The whisper decoder one token at a time, on the audio the worker last encoded.
struct Steps<'a> {
    state: &'a mut whisper_rs::WhisperState,
    threads: usize,
    stop: Option<&'a AtomicBool>,
}

impl StepModel for Steps<'_> {
    type Error = whisper_rs::WhisperError;

    fn step(&mut self, token: i32, pos: usize) -> Result<&[f32], Self::Error> {
        if self.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            // Told apart from a real failure by the caller, which reads the same flag.
            return Err(whisper_rs::WhisperError::GenericError(0));
        }
        self.state.decode(&[token], pos, self.threads)?;
        self.state.get_logits()
    }

    fn prime(&mut self, prompt: &[i32]) -> Result<&[f32], Self::Error> {
        // One pass for all but the last token: whisper.cpp keeps only the last row of
        // logits of a batch, and whisper-rs returns the first.
        let (last, head) = prompt.split_last().map_or((0, &[][..]), |(l, h)| (*l, h));
        if !head.is_empty() {
            self.state.decode(head, 0, self.threads)?;
        }
        self.step(last, head.len())
    }
}

/// Silence before and after the speech handed to whisper (0.2 s).
const LEAD_IN: usize = 3_200;
/// Encoder frames (20 ms) of context beyond the audio.
pub const AUDIO_CTX_MARGIN: i32 = 120;

/// The most tokens a turn of this many seconds can need: agitated speech (220 words a
/// minute) is under 5 tokens a second; more is the decoder looping, not the caller
/// talking, and each extra token costs decode time.
pub fn token_cap(secs: f32) -> i32 {
    ((secs * 5.0).ceil() as i32 + 4).clamp(10, 224)
}

/// Cut a transcript where it starts repeating itself (whisper's loop): a run of 1 to 3
/// words said three times or more in a row, or of 4 to 24 words said twice, is kept
/// once. Returns the text and whether it was cut.
pub fn cut_repetition(text: &str) -> (String, bool) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let norm: Vec<String> = words
        .iter()
        .map(|w| {
            let core = w.trim_matches(|c: char| !c.is_alphanumeric());
            // "$" or "…" alone: the symbol is the word.
            if core.is_empty() { *w } else { core }.to_lowercase()
        })
        .collect();
    for start in 0..norm.len() {
        for n in 1..=24usize {
            let needed = if n >= 4 { 2 } else { 3 };
            if start + n > norm.len() {
                break;
            }
            let unit = &norm[start..start + n];
            let mut reps = 1;
            while start + (reps + 1) * n <= norm.len()
                && norm[start + reps * n..start + (reps + 1) * n] == *unit
            {
                reps += 1;
            }
            if reps >= needed {
                return (words[..start + n].join(" "), true);
            }
            // A loop cut off by the token cap: the unit, then a copy of its first four
            // words or more that runs to the end.
            let tail = norm.len() - (start + n);
            if n >= 4 && reps == 1 && tail >= 4 && tail < n && norm[start + n..] == unit[..tail] {
                return (words[..start + n].join(" "), true);
            }
        }
    }
    (text.to_string(), false)
}

/// Whether a transcript says the same three words twice ("My rent in $1,500,000 a month.
/// My rent in $1,"): the decoder going round, short of a loop [`cut_repetition`] cuts.
/// Such a transcript is no yardstick for a reading with a phrase in it: the topics bench's
/// one false reading was measured against one.
pub fn says_twice(text: &str) -> bool {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    let grams: Vec<&[String]> = words.windows(3).collect();
    grams
        .iter()
        .enumerate()
        .any(|(i, g)| grams[i + 1..].contains(g))
}

/// whisper.cpp's abort callback: true once the job's stop flag is set. whisper.cpp asks
/// after each graph it computes (the encoder, each decoder step), so a stop is heard
/// within one encode at worst.
extern "C" fn stop_requested(flag: *mut std::ffi::c_void) -> bool {
    // SAFETY: `flag` is the `&AtomicBool` that `WhisperWorker::decode` holds borrowed for the whole
    // `whisper_full` call, the only time whisper.cpp calls this.
    #[allow(unsafe_code)]
    let flag = unsafe { &*(flag as *const AtomicBool) };
    flag.load(Ordering::Relaxed)
}

impl RecognizerWorker for WhisperWorker {
    fn recognize(&mut self, pcm: &[i16]) -> Result<Recognized, SttError> {
        self.decode(pcm, None)
    }

    fn recognize_until(&mut self, pcm: &[i16], stop: &AtomicBool) -> Result<Recognized, SttError> {
        match self.decode(pcm, Some(stop)) {
            Err(_) if stop.load(Ordering::Relaxed) => Err(SttError::Stopped),
            r => r,
        }
    }
}

impl WhisperWorker {
    fn decode(&mut self, pcm: &[i16], stop: Option<&AtomicBool>) -> Result<Recognized, SttError> {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(SttError::Stopped);
        }
        // Whisper wants at least a second; pad short utterances with silence, and give
        // every turn a little silence before its first word and after its last (measured:
        // a word at the very edge is often lost).
        let mut audio: Vec<f32> = Vec::with_capacity(pcm.len() + 8_000);
        audio.resize(LEAD_IN, 0.0);
        audio.extend(pcm.iter().map(|&s| f32::from(s) / 32768.0));
        let target = (audio.len() + LEAD_IN).max(16_000);
        audio.resize(target, 0.0);
        let o = &*self.opts;
        // Greedy at temperature 0; two candidates when the fallback samples warmer.
        // Beam search (5) was measured worse on telephone speech (WER 50% against 42%) and
        // half again slower.
        let mut p = whisper_rs::FullParams::new(if o.beam_size > 1 {
            whisper_rs::SamplingStrategy::BeamSearch {
                beam_size: o.beam_size as i32,
                patience: -1.0,
            }
        } else {
            whisper_rs::SamplingStrategy::Greedy { best_of: 2 }
        });
        p.set_n_threads(o.threads.max(1) as i32);
        p.set_language(Some(&o.language));
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_special(false);
        p.set_print_timestamps(false);
        p.set_single_segment(true);
        p.set_no_timestamps(true);
        p.set_token_timestamps(true);
        p.set_no_context(true);
        p.set_suppress_nst(true);
        p.set_temperature(0.0);
        p.set_temperature_inc(o.temperature_inc);
        p.set_entropy_thold(o.entropy_thold);
        p.set_logprob_thold(o.logprob_thold);
        p.set_no_speech_thold(o.no_speech_thold);
        if !o.prompt.is_empty() {
            p.set_initial_prompt(&o.prompt);
        }
        // The encoder runs on 50 frames per second of audio: fit its context to the
        // utterance instead of the 30 s window, the biggest win for short utterances. But
        // give it 2.4 s of silence beyond the speech: with 64 frames the decoder did not
        // see the turn end and said it again (before the temperature fallback and the
        // repetition cut). Measured with `--bench hearing` (256 telephone turns): WER
        // 44.1% at 200 frames, 44.3% at 120, 46.2% at 100, 0–1 runaway turns each; a 3 s
        // turn decodes in 257 ms at 120 against 313 ms at 200 (`--bench stt_latency`).
        let secs = audio.len() as f32 / 16_000.0;
        let ctx = ((secs * 50.0).ceil() as i32 + o.audio_ctx_margin).min(self.ctx.n_audio_ctx());
        p.set_audio_ctx(ctx);
        p.set_max_tokens(token_cap(pcm.len() as f32 / 16_000.0));
        if let Some(flag) = stop {
            // SAFETY: the callback only reads the flag, which outlives `full` below.
            #[allow(unsafe_code)]
            unsafe {
                p.set_abort_callback(Some(stop_requested));
                p.set_abort_callback_user_data(flag as *const AtomicBool as *mut std::ffi::c_void);
            }
        }
        self.state
            .full(p, &audio)
            .map_err(|e| SttError::Whisper(e.to_string()))?;
        let eot = self.ctx.token_eot();
        let mut text = String::new();
        let mut words: Vec<Word> = Vec::new();
        let mut logprobs = Vec::new();
        let mut tokens = Vec::new();
        let mut no_speech = 0.0f32;
        for seg in 0..self.state.full_n_segments() {
            let Some(segment) = self.state.get_segment(seg) else {
                continue;
            };
            no_speech = no_speech.max(segment.no_speech_probability());
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
                logprobs.push(data.plog);
                tokens.push(tok.token_id());
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
        let (text, looped) = cut_repetition(text.trim());
        if looped {
            let kept = text.split_whitespace().count();
            words.truncate(kept);
        }
        // Confidence: the geometric mean of the token probabilities (exp of the mean log
        // probability, as OpenAI's avg_logprob), scaled down by the no-speech probability
        // and halved for a transcript that had to be cut out of a loop. An arithmetic
        // mean of probabilities stays high on confidently hallucinated text.
        let confidence = if logprobs.is_empty() || text.is_empty() {
            0.0
        } else {
            let mean = logprobs.iter().sum::<f32>() / logprobs.len() as f32;
            let c = mean.exp() * (1.0 - no_speech);
            if looped { c * 0.5 } else { c }
        };
        let heard = Recognized {
            text,
            confidence: confidence.clamp(0.0, 1.0),
            words,
            free_text: None,
            check: None,
        };
        if !self.expect.spot.is_empty()
            && (pcm.len() as u64) <= o.spot.max_ms * 16
            && no_speech <= o.no_speech_thold
            && o.spot.wants(&heard.text)
            && !says_twice(&heard.text)
        {
            return self.check_spot(heard, &tokens, pcm.len(), stop);
        }
        if self.expect.trie.is_empty()
            || (pcm.len() as u64) > o.expect_max_ms * 16
            || no_speech > o.no_speech_thold
            || o.expected_said.is_some_and(|said| said(&heard.text))
        {
            return Ok(heard);
        }
        self.check_expected(heard, &tokens, pcm.len(), stop)
    }

    /// Look for the spotted phrases inside the turn ([`crate::verify::spot`]), and take the
    /// likeliest reading that says one if it fits nearly as well as what was heard.
    fn check_spot(
        &mut self,
        heard: Recognized,
        tokens: &[i32],
        samples: usize,
        stop: Option<&AtomicBool>,
    ) -> Result<Recognized, SttError> {
        let o = &*self.opts;
        let eot = self.ctx.token_eot();
        // Where a word begins, up to the first the anchor accepts (a phrase is tried before
        // it only).
        let mut word_starts = vec![false; tokens.len()];
        let mut word = Vec::new();
        let mut start = 0;
        for (i, t) in tokens
            .iter()
            .copied()
            .enumerate()
            .chain([(tokens.len(), eot)])
        {
            let piece = self.ctx.token_to_bytes(t).unwrap_or(&[]);
            if i == tokens.len() || (i > 0 && piece.first() == Some(&b' ')) {
                let w = String::from_utf8_lossy(&word);
                if o.spot.anchor.as_ref().is_some_and(|a| a(w.trim())) {
                    break;
                }
                word_starts[start] = true;
                word.clear();
                start = i;
            }
            word.extend_from_slice(piece);
        }
        let mut steps = Steps {
            state: &mut self.state,
            threads: o.threads.max(1),
            stop,
        };
        let err = |e: whisper_rs::WhisperError| SttError::Whisper(e.to_string());
        let primed = Primed::new(&mut steps, &self.expect.prompt).map_err(err)?;
        let found = crate::verify::spot(
            &mut steps,
            &primed,
            tokens,
            &word_starts,
            &self.expect.spot,
            eot,
            o.spot.margin,
            SPOT_BUDGET,
        )
        .map_err(err)?;
        let Some(best) = found.best else {
            return Ok(Recognized {
                check: Some(ExpectCheck {
                    free_logprob: found.free_logprob,
                    phrase: None,
                    logprob: f32::NEG_INFINITY,
                    mean: f32::NEG_INFINITY,
                    taken: false,
                    steps: found.stats.steps,
                }),
                ..heard
            });
        };
        let mut bytes = Vec::new();
        for &t in &best.tokens {
            bytes.extend_from_slice(self.ctx.token_to_bytes(t).map_err(err)?);
        }
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        let mean = best.logprob / (best.tokens.len() + 1) as f32;
        // A reading that loops ("wrong charge, wrong charge, …") is the decoder stuck on
        // the phrase, not hearing it.
        let taken = !cut_repetition(&text).1 && o.spot.decides.as_ref().is_none_or(|d| d(&text));
        let check = ExpectCheck {
            free_logprob: found.free_logprob,
            phrase: self.expect.spot_texts.get(best.phrase).cloned(),
            logprob: best.logprob,
            mean,
            taken,
            steps: found.stats.steps,
        };
        if !taken {
            return Ok(Recognized {
                check: Some(check),
                ..heard
            });
        }
        Ok(reading(heard, text, mean, samples, check))
    }

    /// Score the expected phrases against the audio just encoded (see [`crate::verify`]),
    /// and take the best if it fits nearly as well as what free decoding heard.
    fn check_expected(
        &mut self,
        heard: Recognized,
        tokens: &[i32],
        samples: usize,
        stop: Option<&AtomicBool>,
    ) -> Result<Recognized, SttError> {
        let o = &*self.opts;
        let eot = self.ctx.token_eot();
        let mut steps = Steps {
            state: &mut self.state,
            threads: o.threads.max(1),
            stop,
        };
        let err = |e: whisper_rs::WhisperError| SttError::Whisper(e.to_string());
        let primed = Primed::new(&mut steps, &self.expect.prompt).map_err(err)?;
        // All the tokens decoded, a loop cut from the text included: a looping transcript is
        // an unlikely one, which is what it should count as against a phrase.
        let free = crate::verify::score(&mut steps, &primed, tokens, eot).map_err(err)?;
        let (best, stats) = crate::verify::best_phrase(
            &mut steps,
            &self.expect.trie,
            &primed,
            &self.expect.ends,
            free - o.expect_margin,
            EXPECT_BUDGET,
        )
        .map_err(err)?;
        // Per token, the end of text included.
        let (phrase, logprob, mean) = match best {
            Some(b) => (
                Some(self.expect.trie.phrase(b.phrase).to_string()),
                b.logprob,
                b.logprob / (b.tokens + 1) as f32,
            ),
            None => (None, f32::NEG_INFINITY, f32::NEG_INFINITY),
        };
        let better = logprob - free >= EXPECT_BETTER && mean >= EXPECT_BETTER_MIN_MEAN;
        let check = ExpectCheck {
            free_logprob: free,
            phrase,
            logprob,
            mean,
            taken: mean >= o.expect_min_mean || better,
            steps: stats.steps,
        };
        let Some(phrase) = check.phrase.clone().filter(|_| check.taken) else {
            return Ok(Recognized {
                check: Some(check),
                ..heard
            });
        };
        Ok(reading(heard, phrase, mean, samples, check))
    }
}

/// A reading taken in place of what free decoding heard: its words span the turn, each as
/// likely as the reading's mean token.
fn reading(
    heard: Recognized,
    text: String,
    mean: f32,
    samples: usize,
    check: ExpectCheck,
) -> Recognized {
    let end_ms = samples as u64 / 16;
    Recognized {
        words: text
            .split_whitespace()
            .map(|w| Word {
                text: w.to_string(),
                start_ms: 0,
                end_ms,
                probability: mean.exp(),
            })
            .collect(),
        confidence: mean.exp(),
        free_text: Some(heard.text),
        check: Some(check),
        text,
    }
}

/// The clip every provisioned model must transcribe: "Please put me through to a real
/// person.", espeak-ng's en-us voice through an 8 kHz µ-law round trip (as a caller
/// arrives).
pub const KNOWN_CLIP_ULAW: &[u8] = include_bytes!("../assets/known-clip.ulaw");
const KNOWN_CLIP_WORDS: &[&str] = &["please", "put", "through", "real", "person"];

/// The known clip as 16 kHz PCM, as the speech tap delivers a caller.
pub fn known_clip_pcm16() -> Vec<i16> {
    let mut pcm8 = Vec::with_capacity(KNOWN_CLIP_ULAW.len());
    warmline_media::g711::ulaw_decode_frame(KNOWN_CLIP_ULAW, &mut pcm8);
    let mut pcm = Vec::with_capacity(pcm8.len() * 2);
    let mut rs = warmline_media::resample::Resampler::new(8_000, 16_000);
    rs.process(&pcm8, &mut pcm);
    rs.process(&[0; 64], &mut pcm);
    pcm
}

/// Load a model and transcribe the known clip; the text heard, or why it is not fit.
pub fn self_test(path: &Path) -> Result<String, SttError> {
    let r = WhisperRecognizer::load(path, DecodeOptions::default())?;
    let mut w = r.worker()?;
    let heard = w.recognize(&known_clip_pcm16())?.text;
    let lower = heard.to_lowercase();
    // A sound model hears most of these (tiny.en all five, base "please … through"); a
    // damaged one hears none, or loops.
    let found = KNOWN_CLIP_WORDS
        .iter()
        .filter(|k| lower.contains(*k))
        .count();
    if found >= 2 && heard.split_whitespace().count() <= 12 {
        Ok(heard)
    } else {
        Err(SttError::Whisper(format!(
            "the known clip (\"Please put me through to a real person.\") was heard as \"{heard}\""
        )))
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
        // A lone word counts only when it is nearly all the turn (see ESCALATION_KEYWORDS);
        // in a longer turn, only a phrase that says who is asked for.
        let short = (pcm.len() as u64) <= crate::SHORT_TURN_MS * 16;
        let spotted = if short {
            self.spot(&padded)?
        } else {
            self.spot_in_sentence(&padded)?
        };
        if spotted.is_empty() && pcm.len() < 16_000 * 6 / 5 {
            if let Some((text, p)) = self.answer(pcm)? {
                return Ok(Recognized {
                    free_text: None,
                    check: None,
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
            free_text: None,
            check: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_looping_transcript_is_kept_once() {
        let (t, cut) = cut_repetition(
            "Hello, I'm calling about my appointment. Hello, I'm calling about my appointment. Hello, I'm",
        );
        assert_eq!(t, "Hello, I'm calling about my appointment.");
        assert!(cut);
        let (t, cut) = cut_repetition("$ $ $ $ $ $");
        assert_eq!((t.as_str(), cut), ("$", true));
        let (t, cut) = cut_repetition("the Raver, the Raver, the Raver, the Raver");
        assert_eq!((t.as_str(), cut), ("the Raver,", true));
        let (t, cut) = cut_repetition(
            "I would like to check my standards on my order. I would like to check my",
        );
        assert_eq!(t, "I would like to check my standards on my order.");
        assert!(cut);
    }

    #[test]
    fn a_transcript_going_round_says_three_words_twice() {
        assert!(says_twice("My rent in $1,500,000 a month. My rent in $1,"));
        assert!(!says_twice("I want to return to $2,000."));
        assert!(!says_twice(
            "I want to dispute the $3,000 fee, I want it back."
        ));
    }

    #[test]
    fn ordinary_repetition_is_speech() {
        for text in [
            "no no I said no",
            "agent, agent please",
            "I need to talk to someone, I need help",
            "four five six seven",
            "I want to speak to a person, I want to",
        ] {
            assert_eq!(cut_repetition(text), (text.to_string(), false), "{text}");
        }
    }

    #[test]
    fn the_token_cap_follows_the_turn() {
        assert_eq!(token_cap(0.5), 10);
        assert_eq!(token_cap(3.0), 19);
        assert!(token_cap(15.0) >= 75, "15 s of fast speech fits");
        assert_eq!(token_cap(120.0), 224);
    }
}
