//! The speech driver. At start-up it picks the recognizer (`[speech] recognizer`), loads it
//! once, and starts a pool of worker threads behind a bounded queue. Per call it runs a
//! pipeline task on the speech tap's 16 kHz frames, driving the caller's sans-IO
//! [`Listener`] (endpointing, prosody and baseline, guesses during pauses) and carrying out
//! what it asks: recognition jobs, stale guesses stopped, turns back to the call's task.
//!
//! Nothing here can stall the media path: the tap is a bounded channel the media task never
//! waits on, and a full recognition queue drops the utterance (and counts it).

use crate::config::{Config, RecognizerChoice};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument as _;
use warmline_speech::listener::{Heard, Listener};
use warmline_speech::sphinx::{DEBIAN_MODEL_DIR, Sphinx, SphinxSetup};
use warmline_speech::{
    DecodeOptions, EndpointSettings, Recognizer, SphinxRecognizer, TranscriptTurn, TurnProsody,
    WhisperRecognizer,
};

/// Frames the tap may hold for a call's pipeline: one second.
pub const TAP_QUEUE: usize = 50;

/// What a call's pipeline tells its call task.
#[derive(Debug)]
pub enum PipelineEvent {
    SpeechStarted,
    Turn(Box<TranscriptTurn>),
}

struct Job {
    pcm: Vec<i16>,
    start_ms: u64,
    end_ms: u64,
    prosody: Option<TurnProsody>,
    /// Audio the endpointer took after the last word (its closing silence).
    endpoint_ms: u64,
    queued: Instant,
    reply: mpsc::UnboundedSender<PipelineEvent>,
    span: tracing::Span,
    /// Set when a speculative job's turn went on: the worker stops and takes the next.
    stop: Option<Arc<AtomicBool>>,
}

pub struct SpeechPlane {
    metrics: Arc<crate::metrics::Metrics>,
    pub recognizer: &'static str,
    jobs: std::sync::mpsc::SyncSender<Job>,
    endpoint: EndpointSettings,
    baseline: usize,
    workers: usize,
    /// Jobs queued or being recognised: speculation uses idle workers only, so it never
    /// takes a queue slot a caller's finished turn needs.
    busy: AtomicU64,
    /// Callers it may listen to at once (`[speech] capacity`, or what the start-up self-test
    /// measured), and those it listens to now: one per live pipeline.
    /// Set once, after the self-test (the workers already hold the plane then).
    capacity: AtomicUsize,
    listening: Arc<AtomicUsize>,
}

/// A caller's place under the speech capacity, held by its pipeline; given back when the
/// pipeline ends (the caller's leg ended).
#[derive(Debug)]
pub struct ListenSlot(Arc<AtomicUsize>);

impl Drop for ListenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The end of a caller's turn to its trigger, as the product promises it: the capacity is
/// the number of callers whose turns, ending together, are all decoded within this. The
/// closing silence is not in it: a request is usually heard from a guess made in the pause,
/// before the endpoint closes.
const HEARD_WITHIN_MS: u64 = 1_000;

/// Callers `workers` can hear in time when one of them takes `decode_ms` (all decoding at
/// once) for a 2 s turn: turns that end together queue, and the last one's wait is its
/// share of the queue.
fn capacity_for(workers: usize, decode_ms: u64) -> usize {
    let per_worker = HEARD_WITHIN_MS / decode_ms.max(1);
    (workers * per_worker as usize).max(1)
}

impl std::fmt::Debug for SpeechPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechPlane")
            .field("recognizer", &self.recognizer)
            .finish_non_exhaustive()
    }
}

impl SpeechPlane {
    /// Load the recognizer and start the workers; `None` when speech is off or no
    /// recognizer is available (said in the log).
    pub fn start(
        cfg: &Config,
        whisper_model: Option<&std::path::Path>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let s = &cfg.speech;
        if matches!(cfg.route, crate::config::RouteMode::Bridge { .. }) {
            // Every call goes straight to the target: a recognizer would listen to nobody,
            // and whisper's model and buffers are some 90 MB.
            tracing::info!("speech pipeline off: [route] mode = \"bridge\" listens to nobody");
            return Ok(None);
        }
        let recognizer: Arc<dyn Recognizer> = match (s.recognizer, whisper_model) {
            (RecognizerChoice::Off, _) => {
                tracing::info!("speech pipeline off ([speech] recognizer = \"off\")");
                return Ok(None);
            }
            (RecognizerChoice::Auto | RecognizerChoice::Whisper, Some(model)) => {
                let t = Instant::now();
                // The cores shared out between the workers, never more threads than cores:
                // ggml's threads spin at every barrier, so two workers of two threads on two
                // cores took 57 s to decode what one thread each does in 1 s.
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let opts = DecodeOptions {
                    language: s.language.clone(),
                    threads: (cores / s.threads.max(1)).max(1),
                    prompt: vocabulary_prompt(&cfg.rules),
                    expected: warmline_policy::intent::request_utterances(),
                    expected_said: Some(|t| warmline_policy::intent::person_request(t).is_some()),
                    spot: topic_spotting(&cfg.rules, DecodeOptions::default().spot),
                    ..DecodeOptions::default()
                };
                let r = WhisperRecognizer::load(model, opts)?;
                tracing::info!(model = %model.display(), load_ms = t.elapsed().as_millis() as u64, workers = s.threads, "speech recognizer: whisper");
                Arc::new(r)
            }
            (RecognizerChoice::Whisper, None) => {
                anyhow::bail!("[speech] recognizer = \"whisper\" needs whisper_model")
            }
            (RecognizerChoice::Fallback, _) | (RecognizerChoice::Auto, None) => {
                if !Sphinx::model_dir_ok(DEBIAN_MODEL_DIR.as_ref()) {
                    tracing::warn!(
                        dir = DEBIAN_MODEL_DIR,
                        "no whisper model and no pocketsphinx model installed (apt-get install pocketsphinx-en-us): speech pipeline off, escalation on speech disabled"
                    );
                    return Ok(None);
                }
                let r = SphinxRecognizer::new(SphinxSetup::escalation())?;
                if s.recognizer == RecognizerChoice::Auto {
                    tracing::warn!(
                        workers = s.threads,
                        "speech recognizer: pocketsphinx keyword spotting, because no whisper model could be had (`warmline model fetch`): escalation accuracy is degraded (requests for a person only, no keywords, topics or amounts)"
                    );
                } else {
                    tracing::info!(
                        workers = s.threads,
                        "speech recognizer: pocketsphinx keyword spotting ([speech] recognizer = \"fallback\")"
                    );
                }
                Arc::new(r)
            }
        };
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(s.queue);
        let rx = Arc::new(Mutex::new(rx));
        let plane = Arc::new(SpeechPlane {
            metrics,
            recognizer: recognizer.name(),
            jobs,
            endpoint: EndpointSettings {
                end_silence_ms: s.end_silence_ms,
                max_utterance_ms: s.max_utterance_ms,
                ..EndpointSettings::default()
            },
            baseline: s.baseline_utterances,
            workers: s.threads,
            busy: AtomicU64::new(0),
            capacity: AtomicUsize::new(s.capacity.max(1)),
            listening: Arc::new(AtomicUsize::new(0)),
        });
        // Each worker warms up before the plane is returned, so a gateway that says it is
        // ready can hear at full speed.
        let measure = s.capacity == 0;
        let (warmed_tx, warmed_rx) = std::sync::mpsc::channel::<Result<Option<u64>, String>>();
        for i in 0..s.threads {
            let recognizer = recognizer.clone();
            let warmed = warmed_tx.clone();
            let rx = rx.clone();
            let plane = Arc::downgrade(&plane);
            let name = recognizer.name();
            std::thread::Builder::new()
                .name(format!("wl-stt-{i}"))
                .spawn(move || {
                    // Built on the thread that uses it: a decoder (pocketsphinx's is not
                    // thread-safe) never moves between threads.
                    let mut worker = match recognizer.worker() {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = warmed.send(Err(e.to_string()));
                            return;
                        }
                    };
                    // whisper allocates its compute buffers on a state's first decode:
                    // pay that here, not on the first caller.
                    let warm = Instant::now();
                    let clip = warmline_speech::recognizer::known_clip_pcm16();
                    if name == "whisper" {
                        let _ = worker.recognize(&clip);
                    }
                    tracing::debug!(
                        worker = i,
                        ms = warm.elapsed().as_millis() as u64,
                        "recognizer warmed up"
                    );
                    // The self-test: the known clip (a 2 s request) decoded warm, by every
                    // worker at once, as a burst of callers ending their turns would be.
                    let timed = measure.then(|| {
                        let t = Instant::now();
                        let _ = worker.recognize(&clip);
                        t.elapsed().as_millis() as u64
                    });
                    let _ = warmed.send(Ok(timed));
                    drop(warmed);
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => match r.recv() {
                                Ok(j) => j,
                                Err(_) => return,
                            },
                            Err(_) => return,
                        };
                        let _g = job.span.enter();
                        let result = match &job.stop {
                            Some(stop) => worker.recognize_until(&job.pcm, stop),
                            None => worker.recognize(&job.pcm),
                        };
                        let latency_ms = job.queued.elapsed().as_millis() as u64;
                        let Some(plane) = plane.upgrade() else { return };
                        plane.busy.fetch_sub(1, Ordering::Relaxed);
                        match result {
                            Ok(r) => {
                                if let Some(c) = &r.check {
                                    tracing::debug!(heard = %r.free_text.as_deref().unwrap_or(&r.text), phrase = c.phrase.as_deref().unwrap_or(""), free_logprob = c.free_logprob, logprob = c.logprob, mean = c.mean, steps = c.steps, taken = c.taken, "expected phrases checked");
                                }
                                if let Some(heard) = &r.free_text {
                                    tracing::info!(%heard, taken = %r.text, "heard as an expected phrase: it fits the audio about as well as the free transcript");
                                }
                                plane
                                    .metrics
                                    .stt_latency
                                    .observe(latency_ms as f64 / 1000.0);
                                let turn = TranscriptTurn {
                                    text: r.text,
                                    start_ms: job.start_ms,
                                    end_ms: job.end_ms,
                                    confidence: r.confidence,
                                    words: r.words,
                                    recognizer: name.to_string(),
                                    latency_ms,
                                    endpoint_ms: job.endpoint_ms,
                                    prosody: job.prosody,
                                };
                                let _ = job.reply.send(PipelineEvent::Turn(Box::new(turn)));
                            }
                            Err(warmline_speech::SttError::Stopped) => {
                                plane.metrics.stt_speculation_stopped_total.inc();
                                tracing::debug!(
                                    start_ms = job.start_ms,
                                    end_ms = job.end_ms,
                                    "speculative recognition stopped: the caller went on"
                                );
                            }
                            Err(e) => {
                                plane.metrics.stt_errors.inc();
                                tracing::warn!(error = %e, "recognition failed");
                            }
                        }
                    }
                })?;
        }
        drop(warmed_tx);
        let warm = Instant::now();
        // Every worker sends once, or drops its sender if its thread dies first.
        let mut slowest = None;
        for _ in 0..s.threads {
            match warmed_rx.recv() {
                Ok(Ok(ms)) => slowest = slowest.max(ms),
                Ok(Err(e)) => anyhow::bail!("a speech recognizer worker could not start: {e}"),
                Err(_) => break,
            }
        }
        tracing::info!(
            ms = warm.elapsed().as_millis() as u64,
            "speech recognizers warmed up"
        );
        if let Some(ms) = slowest {
            plane
                .capacity
                .store(capacity_for(s.threads, ms), Ordering::Release);
        }
        tracing::info!(
            capacity = plane.capacity(),
            self_test_ms = slowest,
            workers = s.threads,
            over_capacity = ?s.over_capacity,
            "speech capacity: callers heard at once{}",
            if slowest.is_some() { " (measured)" } else { " ([speech] capacity)" }
        );
        plane.metrics.speech_capacity.set(plane.capacity() as i64);
        Ok(Some(plane))
    }

    /// A place for one more caller to be listened to, or `None` at capacity.
    pub fn claim(&self) -> Option<ListenSlot> {
        self.listening
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity()).then_some(n + 1)
            })
            .ok()
            .map(|_| ListenSlot(self.listening.clone()))
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Acquire)
    }

    /// Callers listened to now.
    pub fn listening(&self) -> usize {
        self.listening.load(Ordering::Acquire)
    }

    /// Start a call's pipeline, which holds `slot` while it runs; returns the tap sender
    /// for the media plane.
    pub fn spawn_pipeline(
        self: &Arc<Self>,
        events: mpsc::UnboundedSender<PipelineEvent>,
        slot: ListenSlot,
    ) -> mpsc::Sender<Vec<i16>> {
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        tokio::spawn(pipeline(self.clone(), rx, events, slot).in_current_span());
        tx
    }
}

/// Whisper's initial prompt: the words this deployment listens for (the rules' phrases
/// and topics), so a clipped "supervisor" or "dispute a charge" is heard as such rather
/// than as a near-sounding common word. Kept short: whisper reads only the last 224 tokens
/// of a prompt, and a long one slows every decode.
fn vocabulary_prompt(rules: &[warmline_policy::Rule]) -> String {
    use warmline_policy::RuleKind;
    let mut words: Vec<String> = Vec::new();
    let mut add = |w: &str| {
        let w = w.trim();
        if !w.is_empty() && !words.iter().any(|x| x.eq_ignore_ascii_case(w)) {
            words.push(w.to_string());
        }
    };
    for r in rules {
        match &r.kind {
            RuleKind::Keyword { phrases, .. } => phrases.iter().for_each(|p| add(p)),
            RuleKind::Topic { topic, phrases, .. } => {
                add(topic);
                phrases.iter().for_each(|p| add(p));
            }
            _ => {}
        }
    }
    words.truncate(24);
    let mut prompt = String::from(warmline_policy::intent::RECOGNIZER_PROMPT);
    if !words.is_empty() {
        prompt.push_str(" They may mention: ");
        prompt.push_str(&words.join(", "));
        prompt.push('.');
    }
    prompt
}

/// What the recognizer looks for inside a turn ([`warmline_speech::Spotting`]): the
/// phrases of the topics with an amount threshold, in the turns
/// [`warmline_policy::UnheardTopics`] says a misheard word decides.
fn topic_spotting(
    rules: &[warmline_policy::Rule],
    defaults: warmline_speech::Spotting,
) -> warmline_speech::Spotting {
    let topics = warmline_policy::UnheardTopics::from_rules(rules);
    let phrases = topics.phrases();
    if phrases.is_empty() {
        return defaults;
    }
    warmline_speech::Spotting {
        phrases,
        wanted: Some(std::sync::Arc::new({
            let topics = topics.clone();
            move |heard: &str| topics.wanted(heard)
        })),
        decides: Some(std::sync::Arc::new(move |reading: &str| {
            topics.decided(reading)
        })),
        // A dispute names its amount after what it is about ("overcharged by $2,000"):
        // a phrase read into the words after the amount was, in the topics bench, the
        // tail of a garbled turn ("$700, wrong charge.").
        anchor: Some(warmline_policy::amount_word),
        ..defaults
    }
}

/// One caller's pipeline: the [`Listener`] decides; this task feeds it frames and the
/// results of its guesses, and carries out what it asks (recognition jobs on the worker
/// pool, a stale guess stopped, turns to the call).
async fn pipeline(
    plane: Arc<SpeechPlane>,
    mut frames: mpsc::Receiver<Vec<i16>>,
    events: mpsc::UnboundedSender<PipelineEvent>,
    _slot: ListenSlot,
) {
    // The listener (VAD state, prosody baseline) and the metric children are built on the
    // first frame, not at set-up: a call that ends before its audio starts (or is bridged
    // before it is heard) never needs them, and set-up is on the SIP path.
    let Some(first) = frames.recv().await else {
        return;
    };
    let mut first = Some(first);
    let mut listener = Listener::new(plane.endpoint, plane.baseline, |text| {
        warmline_policy::intent::person_request(text).is_some()
    });
    // The labelled children are looked up once per call, not per 20 ms frame.
    let prosody_cost = plane.metrics.frame_cost.with_label_values(&["prosody"]);
    let vad_cost = plane.metrics.frame_cost.with_label_values(&["vad"]);
    let (guess_tx, mut guess_rx) = mpsc::unbounded_channel::<PipelineEvent>();
    // The guess being recognised: setting it stops its job.
    let mut guess_stop: Option<Arc<AtomicBool>> = None;
    let mut heard = Vec::new();
    let mut counted = 0;
    loop {
        tokio::select! {
            f = async { match first.take() { Some(f) => Some(f), None => frames.recv().await } } => {
                let Some(frame) = f else { break };
                let t = Instant::now();
                listener.analyse(&frame);
                let analysed = Instant::now();
                listener.endpoint(&frame, plane.idle(), &mut heard);
                prosody_cost.observe((analysed - t).as_secs_f64());
                vad_cost.observe(analysed.elapsed().as_secs_f64());
            }
            Some(PipelineEvent::Turn(turn)) = guess_rx.recv() => listener.guessed(turn, &mut heard),
        }
        // Per frame, the counter is touched only when a turn closed.
        let closed = listener.utterances();
        if closed != counted {
            plane.metrics.stt_utterances.inc_by(closed - counted);
            counted = closed;
        }
        for h in heard.drain(..) {
            match h {
                Heard::SpeechStarted { at_ms } => {
                    tracing::debug!(at_ms, "speech started");
                    let _ = events.send(PipelineEvent::SpeechStarted);
                }
                Heard::Recognise {
                    utterance,
                    prosody,
                    endpoint_ms,
                } => {
                    plane.submit(utterance, prosody, endpoint_ms, events.clone(), None);
                }
                Heard::Guess {
                    utterance,
                    endpoint_ms,
                } => {
                    let stop = Arc::new(AtomicBool::new(false));
                    if plane.submit(
                        utterance,
                        None,
                        endpoint_ms,
                        guess_tx.clone(),
                        Some(stop.clone()),
                    ) {
                        guess_stop = Some(stop);
                    } else {
                        listener.guess_refused();
                    }
                }
                Heard::StopGuess => {
                    if let Some(stop) = guess_stop.take() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                Heard::Turn(turn) => {
                    // Its job is done; a stop changes nothing for it.
                    guess_stop = None;
                    tracing::debug!(text = %turn.text, "turn recognised from a guess");
                    let _ = events.send(PipelineEvent::Turn(turn));
                }
            }
        }
    }
    if let Some(stop) = guess_stop {
        stop.store(true, Ordering::Relaxed);
    }
}

impl SpeechPlane {
    /// A worker has nothing to do: speculation may use it.
    fn idle(&self) -> bool {
        self.busy.load(Ordering::Relaxed) < self.workers as u64
    }

    /// Queue an utterance for recognition; false when every worker is busy and the queue
    /// is full (a real turn is then dropped and counted; a speculative one, which comes
    /// with its `stop` flag, is just not made).
    fn submit(
        &self,
        u: warmline_speech::Utterance,
        prosody: Option<TurnProsody>,
        endpoint_ms: u64,
        reply: mpsc::UnboundedSender<PipelineEvent>,
        stop: Option<Arc<AtomicBool>>,
    ) -> bool {
        let speculative = stop.is_some();
        if speculative && !self.idle() {
            return false;
        }
        let (start_ms, end_ms) = (u.start_ms, u.end_ms);
        let job = Job {
            pcm: u.pcm,
            start_ms,
            end_ms,
            prosody,
            endpoint_ms,
            queued: Instant::now(),
            reply,
            span: tracing::Span::current(),
            stop,
        };
        self.busy.fetch_add(1, Ordering::Relaxed);
        if self.jobs.try_send(job).is_ok() {
            return true;
        }
        self.busy.fetch_sub(1, Ordering::Relaxed);
        if !speculative {
            self.metrics.stt_dropped_total.inc();
            tracing::warn!(
                start_ms,
                end_ms,
                "utterance dropped: every recognizer is busy"
            );
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capacity_is_the_turns_ending_together_that_are_decoded_within_a_second() {
        // tiny.en on this machine kind decodes the 2 s request in about 300 ms.
        assert_eq!(capacity_for(1, 300), 3);
        assert_eq!(capacity_for(2, 300), 6);
        // Slower than the promise: still one caller (refusing everyone helps nobody).
        assert_eq!(capacity_for(1, 1_500), 1);
        assert_eq!(capacity_for(1, 0), 1_000);
    }
}
