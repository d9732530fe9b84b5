//! One caller's ears, sans-IO: 20 ms frames in, what to recognise and which turns are
//! finished out. It owns the endpointer, the per-frame prosody and the caller's arousal
//! baseline, and the speculative recognition of a turn during a pause: a pause of
//! [`SPECULATE_AFTER_MS`] inside a turn asks for what was said so far to be recognised
//! ahead of the turn's end, so the closing silence and the recognition overlap; a guess
//! that turns out to be a request for a person ends the turn at once.
//!
//! The driver owns the recogniser workers and the clock: it feeds [`Listener::frame`],
//! carries out each [`Heard`] (queue a job, stop a stale one, deliver a turn), and hands
//! results back with [`Listener::guessed`]. Nothing here blocks or reads the time.

use crate::prosody::{FrameAnalyzer, FrameFeatures, ProsodyScorer, summarize};
use crate::vad::{EndpointSettings, Endpointer, Utterance, VadEvent};
use crate::{TranscriptTurn, TurnProsody};
use std::collections::VecDeque;

/// A pause this long inside a turn starts recognising it speculatively: if the caller
/// says nothing more, the endpointer's closing silence (`end_silence_ms`) and the
/// recognition overlap, and a request for a person ends the turn as soon as it is heard.
pub const SPECULATE_AFTER_MS: u64 = 240;

const FRAME_MS: u64 = 20;

/// What the listener asks of its driver, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// The caller started talking (barge-in point).
    SpeechStarted { at_ms: u64 },
    /// A finished turn to recognise; `endpoint_ms` is the closing silence the endpointer
    /// waited for after its last word.
    Recognise {
        utterance: Utterance,
        prosody: Option<TurnProsody>,
        endpoint_ms: u64,
    },
    /// What was said so far, to recognise ahead of the turn's end; its result comes back
    /// through [`Listener::guessed`]. Not asked for while the driver says no worker is
    /// free.
    Guess {
        utterance: Utterance,
        endpoint_ms: u64,
    },
    /// The guess in progress is stale (the caller went on talking): stop its job, so a
    /// worker another caller's turn is waiting for is free.
    StopGuess,
    /// A turn recognised from a guess, finished: deliver it.
    Turn(Box<TranscriptTurn>),
}

/// A turn being recognised ahead of its end, keyed by its (start, end) in audio time.
#[derive(Debug)]
struct Guess {
    key: (u64, u64),
    result: Option<Box<TranscriptTurn>>,
    /// The endpointer closed the turn with the same audio: deliver the result as soon as
    /// it arrives, with this prosody.
    closed: Option<Option<TurnProsody>>,
}

#[derive(Debug)]
pub struct Listener {
    endpointer: Endpointer,
    analyzer: FrameAnalyzer,
    scorer: ProsodyScorer,
    /// Per-frame prosody since a little before the current utterance could have started.
    features: VecDeque<(u64, FrameFeatures)>,
    keep: usize,
    audio_ms: u64,
    guess: Option<Guess>,
    /// A guess whose text says this ends its turn (a request for a person).
    ends_turn: fn(&str) -> bool,
    vad: Vec<VadEvent>,
    /// Turns the endpointer closed.
    utterances: u64,
}

impl Listener {
    /// `baseline`: calm turns that make up the caller's arousal baseline.
    pub fn new(endpoint: EndpointSettings, baseline: usize, ends_turn: fn(&str) -> bool) -> Self {
        Self {
            endpointer: Endpointer::new(endpoint),
            analyzer: FrameAnalyzer::default(),
            scorer: ProsodyScorer::new(baseline),
            features: VecDeque::new(),
            keep: (endpoint.max_utterance_ms / FRAME_MS + 100) as usize,
            audio_ms: 0,
            guess: None,
            ends_turn,
            vad: Vec::new(),
            utterances: 0,
        }
    }

    /// Turns the endpointer has closed so far.
    pub fn utterances(&self) -> u64 {
        self.utterances
    }

    /// Audio time so far.
    pub fn audio_ms(&self) -> u64 {
        self.audio_ms
    }

    /// One 20 ms frame (16 kHz): [`Listener::analyse`] then [`Listener::endpoint`].
    /// `worker_free`: a recogniser could take a guess now.
    pub fn frame(&mut self, pcm: &[i16], worker_free: bool, out: &mut Vec<Heard>) {
        self.analyse(pcm);
        self.endpoint(pcm, worker_free, out);
    }

    /// The frame's prosody (split from [`Listener::endpoint`] so a driver can time each).
    pub fn analyse(&mut self, pcm: &[i16]) {
        self.features
            .push_back((self.audio_ms, self.analyzer.frame(pcm)));
        if self.features.len() > self.keep {
            self.features.pop_front();
        }
    }

    /// The frame through the endpointer, and what it leads to.
    pub fn endpoint(&mut self, pcm: &[i16], worker_free: bool, out: &mut Vec<Heard>) {
        self.audio_ms += FRAME_MS;
        self.endpointer.push(pcm, &mut self.vad);
        // Taken out and put back empty: its allocation is reused, and a closed turn's audio
        // moves to the driver instead of being copied.
        let mut events = std::mem::take(&mut self.vad);
        for ev in events.drain(..) {
            match ev {
                VadEvent::SpeechStart { at_ms } => out.push(Heard::SpeechStarted { at_ms }),
                VadEvent::Utterance(u) => self.closed(u, out),
            }
        }
        self.vad = events;
        // A pause inside a turn: recognise what was said so far, once per pause.
        // Checked every frame without copying the turn: only a new pause takes a snapshot.
        let paused = self
            .endpointer
            .pause_ms()
            .is_some_and(|ms| ms >= SPECULATE_AFTER_MS);
        if !paused && self.guess.as_ref().is_some_and(|g| g.closed.is_none()) {
            // Speech resumed.
            self.guess = None;
            out.push(Heard::StopGuess);
        }
        if paused && self.guess.is_none() && worker_free {
            if let Some(u) = self.endpointer.pause_snapshot(SPECULATE_AFTER_MS) {
                self.guess = Some(Guess {
                    key: (u.start_ms, u.end_ms),
                    result: None,
                    closed: None,
                });
                let endpoint_ms = self.audio_ms.saturating_sub(u.end_ms);
                out.push(Heard::Guess {
                    utterance: u,
                    endpoint_ms,
                });
            }
        }
    }

    /// The driver could not queue the guess it was asked for (every worker busy).
    pub fn guess_refused(&mut self) {
        self.guess = None;
    }

    /// The endpointer closed a turn.
    fn closed(&mut self, u: Utterance, out: &mut Vec<Heard>) {
        self.utterances += 1;
        let prosody = self.prosody(u.start_ms, u.end_ms);
        // Already being recognised from the pause before this close: use it.
        if let Some(g) = self
            .guess
            .as_mut()
            .filter(|g| g.key == (u.start_ms, u.end_ms))
        {
            match g.result.take() {
                Some(mut turn) => {
                    turn.prosody = prosody;
                    self.guess = None;
                    out.push(Heard::Turn(turn));
                }
                None => g.closed = Some(prosody),
            }
            return;
        }
        if self.guess.take().is_some() {
            out.push(Heard::StopGuess);
        }
        out.push(Heard::Recognise {
            endpoint_ms: self.audio_ms.saturating_sub(u.end_ms),
            utterance: u,
            prosody,
        });
    }

    /// The text of a guess came back.
    pub fn guessed(&mut self, mut turn: Box<TranscriptTurn>, out: &mut Vec<Heard>) {
        let Some(g) = self
            .guess
            .as_mut()
            .filter(|g| g.key == (turn.start_ms, turn.end_ms))
        else {
            return; // the caller went on talking: a stale guess
        };
        if let Some(prosody) = g.closed.take() {
            turn.prosody = prosody;
            self.guess = None;
            out.push(Heard::Turn(turn));
        } else if (self.ends_turn)(&turn.text) {
            // A request for a person needs no more of the turn: act on it now.
            turn.prosody = self.prosody(turn.start_ms, turn.end_ms);
            self.endpointer.end_now();
            self.guess = None;
            out.push(Heard::Turn(turn));
        } else {
            g.result = Some(turn);
        }
    }

    /// The prosody of `[start_ms, end_ms)`, scored against the caller's baseline.
    fn prosody(&mut self, start_ms: u64, end_ms: u64) -> Option<TurnProsody> {
        let frames: Vec<FrameFeatures> = self
            .features
            .iter()
            .filter(|(t, _)| *t >= start_ms && *t < end_ms)
            .map(|(_, f)| *f)
            .collect();
        summarize(&frames).map(|p| {
            let score = self.scorer.score(&p);
            TurnProsody::new(&p, &score)
        })
    }
}
