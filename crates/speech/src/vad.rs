//! Voice activity and endpointing on 16 kHz caller audio: `earshot` scores each 16 ms
//! chunk; runs of voiced chunks open an utterance (with a little pre-roll so the first
//! syllable is kept), a run of silence closes it, and a cap cuts overlong ones.
//!
//! Time is audio time (samples pushed), so the endpointer is deterministic and needs no
//! clock.

use std::collections::VecDeque;

const CHUNK: usize = 256; // 16 ms at 16 kHz, what earshot scores
const CHUNK_MS: u64 = 16;
/// Mean square of a chunk below which it is silence without asking the detector
/// (RMS 58, about -55 dBFS).
const SILENCE_ENERGY: i64 = 58 * 58;

#[derive(Debug, Clone, Copy)]
pub struct EndpointSettings {
    /// Silence that ends an utterance.
    pub end_silence_ms: u64,
    /// Longest utterance; a longer one is cut (and marked) and a new one starts.
    pub max_utterance_ms: u64,
    /// Voiced audio needed before an utterance counts as started.
    pub min_speech_ms: u64,
    /// Audio kept from before the start.
    pub pre_roll_ms: u64,
    /// earshot score at or above which a chunk is voiced.
    pub threshold: f32,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        Self {
            end_silence_ms: 600,
            max_utterance_ms: 15_000,
            min_speech_ms: 64,
            pre_roll_ms: 160,
            threshold: 0.5,
        }
    }
}

/// A complete utterance: 16 kHz mono PCM and where it sits in the call's audio time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    pub start_ms: u64,
    pub end_ms: u64,
    pub pcm: Vec<i16>,
    /// Cut at `max_utterance_ms` rather than ended by silence.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VadEvent {
    /// The caller started talking (barge-in point).
    SpeechStart {
        at_ms: u64,
    },
    Utterance(Utterance),
}

pub struct Endpointer {
    detector: Box<earshot::Detector>,
    settings: EndpointSettings,
    pending: Vec<i16>,
    /// Chunks processed so far (audio time).
    chunks: u64,
    /// Recent chunks before an utterance, for pre-roll and for the start run.
    history: VecDeque<Vec<i16>>,
    voiced_run: u64,
    silent_run: u64,
    current: Option<Utterance>,
    /// The last chunk was gated as silence.
    gated: bool,
}

impl std::fmt::Debug for Endpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpointer")
            .field("audio_ms", &(self.chunks * CHUNK_MS))
            .field("in_speech", &self.current.is_some())
            .finish()
    }
}

impl Endpointer {
    pub fn new(settings: EndpointSettings) -> Self {
        Self {
            detector: earshot::Detector::default_boxed(),
            settings,
            pending: Vec::with_capacity(CHUNK * 2),
            chunks: 0,
            history: VecDeque::new(),
            voiced_run: 0,
            silent_run: 0,
            current: None,
            gated: false,
        }
    }

    pub fn in_speech(&self) -> bool {
        self.current.is_some()
    }

    /// Inside an utterance: how long its caller has been silent (cheap, per frame).
    pub fn pause_ms(&self) -> Option<u64> {
        self.current.as_ref().map(|_| self.silent_run * CHUNK_MS)
    }

    /// Inside an utterance whose caller has been silent for at least `pause_ms`: the
    /// utterance as its closing event will carry it if no more speech comes (the same
    /// samples, the same trim), for recognising it speculatively. `None` otherwise.
    pub fn pause_snapshot(&self, pause_ms: u64) -> Option<Utterance> {
        let u = self.current.as_ref()?;
        if self.silent_run * CHUNK_MS < pause_ms {
            return None;
        }
        let trail = (self.silent_run as usize).saturating_sub(2) * CHUNK;
        let pcm = u.pcm[..u.pcm.len().saturating_sub(trail)].to_vec();
        Some(Utterance {
            start_ms: u.start_ms,
            end_ms: u.start_ms + pcm.len() as u64 / 16,
            pcm,
            truncated: false,
        })
    }

    /// End the current utterance here, without its closing event (its words were already
    /// acted on from a snapshot); speech after this starts a new one.
    pub fn end_now(&mut self) {
        self.current = None;
        self.history.clear();
        self.voiced_run = 0;
    }

    /// Feed any amount of 16 kHz audio; events come out in order.
    pub fn push(&mut self, pcm: &[i16], out: &mut Vec<VadEvent>) {
        self.pending.extend_from_slice(pcm);
        let mut at = 0;
        while self.pending.len() - at >= CHUNK {
            let chunk: Vec<i16> = self.pending[at..at + CHUNK].to_vec();
            at += CHUNK;
            self.chunk(chunk, out);
        }
        self.pending.drain(..at);
    }

    fn chunk(&mut self, chunk: Vec<i16>, out: &mut Vec<VadEvent>) {
        // Near-digital silence (below about -55 dBFS) cannot be speech: skip the network,
        // which is most of the cost, for the half of a call where the caller listens.
        let energy = chunk
            .iter()
            .map(|&x| i64::from(x) * i64::from(x))
            .sum::<i64>()
            / CHUNK as i64;
        let voiced = if energy < SILENCE_ENERGY {
            self.gated = true;
            false
        } else {
            if std::mem::take(&mut self.gated) {
                // Its context frames are from before the silence: start it afresh.
                self.detector.reset();
            }
            self.detector.predict_i16(&chunk) >= self.settings.threshold
        };
        let now_ms = self.chunks * CHUNK_MS;
        self.chunks += 1;
        let s = self.settings;
        if voiced {
            self.voiced_run += 1;
            self.silent_run = 0;
        } else {
            self.silent_run += 1;
            self.voiced_run = 0;
        }
        match self.current.as_mut() {
            None => {
                self.history.push_back(chunk);
                let keep = ((s.pre_roll_ms + s.min_speech_ms) / CHUNK_MS + 1) as usize;
                while self.history.len() > keep {
                    self.history.pop_front();
                }
                if self.voiced_run * CHUNK_MS >= s.min_speech_ms {
                    let take = (((s.pre_roll_ms + s.min_speech_ms) / CHUNK_MS) as usize)
                        .min(self.history.len());
                    let skip = self.history.len() - take;
                    let pcm: Vec<i16> = self.history.iter().skip(skip).flatten().copied().collect();
                    let start_ms = (now_ms + CHUNK_MS).saturating_sub(take as u64 * CHUNK_MS);
                    self.history.clear();
                    out.push(VadEvent::SpeechStart { at_ms: start_ms });
                    self.current = Some(Utterance {
                        start_ms,
                        end_ms: now_ms + CHUNK_MS,
                        pcm,
                        truncated: false,
                    });
                }
            }
            Some(u) => {
                u.pcm.extend_from_slice(&chunk);
                u.end_ms = now_ms + CHUNK_MS;
                let ended = self.silent_run * CHUNK_MS >= s.end_silence_ms;
                let too_long = u.end_ms - u.start_ms >= s.max_utterance_ms;
                if !(ended || too_long) {
                    return;
                }
                let Some(mut done) = self.current.take() else {
                    return;
                };
                if ended {
                    // Trailing silence is not part of what was said.
                    let trail = (self.silent_run as usize).saturating_sub(2) * CHUNK;
                    done.pcm.truncate(done.pcm.len().saturating_sub(trail));
                    done.end_ms = done.start_ms + done.pcm.len() as u64 / 16;
                } else {
                    done.truncated = true;
                }
                self.silent_run = 0;
                out.push(VadEvent::Utterance(done));
            }
        }
    }

    /// Audio processed so far, in ms.
    pub fn audio_ms(&self) -> u64 {
        self.chunks * CHUNK_MS
    }
}
