//! The media driver: one tokio task per call owns that call's RTP/RTCP sockets and its
//! [`warmline_media::Session`], feeds it datagrams and the 20 ms clock, and carries out
//! what it hands back: datagrams to send, speech-tap frames, recording frames, events.
//!
//! Nothing here waits on anything but the sockets and the clock: the speech tap and the
//! recorder are bounded queues that drop (and count) when their consumer falls behind.

use crate::config::{Config, RecognizerChoice};
use crate::rtp_ports::RtpReservation;
use rsipstack::platform::boxed;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::Instrument as _;
use warmline_media::session::LegSetup;
use warmline_media::wav::{Recorder, read_clip};
use warmline_media::{
    Clip, JitterSettings, LegId, LegMedia, LegOptions, LegStats, MediaEvent, Output, Session,
};
use warmline_speech::Tts;

/// Frames the recorder may hold per leg before it drops: five seconds.
const RECORD_QUEUE: usize = 250;

/// Datagrams handled per wake-up before the task yields to its timer and commands.
const BURST: usize = 65;

/// Prompts loaded once at start-up and shared by every call.
#[derive(Debug, Clone)]
pub struct Prompts {
    pub greeting: Option<Clip>,
    pub hold: Clip,
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Wav {
        path: PathBuf,
        source: warmline_media::wav::WavError,
    },
}

fn load_clip(path: &PathBuf) -> Result<Clip, PromptError> {
    let f = std::fs::File::open(path).map_err(|source| PromptError::Open {
        path: path.clone(),
        source,
    })?;
    read_clip(std::io::BufReader::new(f)).map_err(|source| PromptError::Wav {
        path: path.clone(),
        source,
    })
}

impl Prompts {
    /// The configured WAVs; without a greeting WAV, the greeting text is rendered by TTS
    /// here, once, since it never changes.
    pub fn load(cfg: &Config, tts: &dyn Tts) -> Result<Self, PromptError> {
        let greeting = match &cfg.media.greeting {
            Some(p) => Some(load_clip(p)?),
            None if cfg.speech.recognizer != RecognizerChoice::Off => {
                match tts.synth(&cfg.speech.greeting_text, &cfg.speech.tts_voice) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "greeting not rendered: callers will hear no greeting");
                        None
                    }
                }
            }
            None => None,
        };
        let hold = match &cfg.media.hold_music {
            Some(p) => load_clip(p)?,
            None => comfort_tone(),
        };
        for rate in cfg.media.leg_rates() {
            hold.prepare(rate);
            if let Some(g) = &greeting {
                g.prepare(rate);
            }
        }
        Ok(Self { greeting, hold })
    }
}

/// The default hold audio: a soft four-note arpeggio, so a caller on hold hears that the
/// line is alive without a configured file.
pub fn comfort_tone() -> Clip {
    const RATE: u32 = 16000;
    let notes = [523.25f64, 659.25, 783.99, 659.25];
    let note_len = RATE as usize / 2;
    let mut pcm = Vec::with_capacity(notes.len() * note_len + RATE as usize);
    for f in notes {
        for i in 0..note_len {
            let t = i as f64 / f64::from(RATE);
            // 20 ms attack, exponential decay: a chime, not a beep.
            let env = (t / 0.02).min(1.0) * (-3.0 * t).exp();
            let s = (2.0 * std::f64::consts::PI * f * t).sin()
                + 0.3 * (2.0 * std::f64::consts::PI * 2.0 * f * t).sin();
            pcm.push((2500.0 * env * s) as i16);
        }
    }
    // A breath between phrases, short enough that a caller on hold never hears more than
    // half a second of silence.
    pcm.extend(std::iter::repeat_n(0, RATE as usize / 4));
    Clip::new(RATE, pcm)
}

/// What a leg reports about itself, about once a second, for the API.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LegReport {
    pub leg: LegId,
    pub local_port: u16,
    #[serde(flatten)]
    pub stats: LegStats,
    /// Frames offered to the speech pipeline, and those dropped because it was behind.
    pub tap_frames: u64,
    pub tap_dropped: u64,
    pub record_dropped: u64,
}

pub type ReportSink = Box<dyn FnMut(&LegReport) + Send + Sync>;

/// Everything the media task needs to run one leg.
pub struct NewLeg {
    pub id: LegId,
    pub sockets: RtpReservation,
    /// The speech pipeline's input, when this leg is listened to.
    pub tap: Option<mpsc::Sender<Vec<i16>>>,
    pub events: mpsc::UnboundedSender<MediaEvent>,
    pub report: ReportSink,
    /// Recording file name stem (the call id), when recording is on.
    pub record_as: Option<String>,
    /// Send nothing until [`MediaHandle::confirm`] or the peer's first packet.
    pub await_peer: bool,
}

enum Command {
    AddLeg(Box<NewLeg>),
    Configure(LegId, LegMedia),
    Confirm(LegId),
    Play(LegId, u64, Clip),
    StopPlayout(LegId),
    Hold(LegId, Option<Clip>),
    Bridge(LegId, LegId),
    /// Stop feeding the leg's audio to the speech pipeline (its tap sender is dropped).
    StopTap(LegId),
    SendDtmf(LegId, String),
    RemoveLeg(LegId),
}

/// Settings shared by every call's media task.
#[derive(Debug)]
pub struct MediaPlane {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub prompts: Prompts,
    jitter: JitterSettings,
    rtp_timeout: Option<Duration>,
    hold_timeout: Option<Duration>,
    hold_probe: Option<Duration>,
    record_dir: Option<PathBuf>,
}

impl MediaPlane {
    pub fn new(cfg: &Config, prompts: Prompts, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            metrics,
            prompts,
            jitter: JitterSettings {
                min_delay: cfg.media.jitter_min,
                max_delay: cfg.media.jitter_max,
            },
            rtp_timeout: cfg.media.rtp_timeout,
            hold_timeout: cfg.media.hold_timeout,
            hold_probe: cfg.media.hold_probe,
            record_dir: cfg.media.record.then(|| cfg.media.record_dir.clone()),
        }
    }

    pub fn recording(&self) -> bool {
        self.record_dir.is_some()
    }
}

/// The commands side of one call's media task. Cheap to clone; the task ends when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub struct MediaHandle {
    /// Boxed messages, like a call's inbox: a few commands a call, not a 32-slot block.
    tx: boxed::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("media::Command")
    }
}

impl MediaHandle {
    pub fn spawn(plane: Arc<MediaPlane>) -> Self {
        let (tx, rx) = boxed::unbounded_channel();
        tokio::spawn(run(plane, rx).in_current_span());
        Self { tx }
    }

    fn send(&self, c: Command) {
        // The task only goes away once every handle is gone, so this cannot fail while
        // a handle exists; ignore it if it somehow does.
        let _ = self.tx.send(c);
    }

    pub fn add_leg(&self, leg: NewLeg) {
        self.send(Command::AddLeg(Box::new(leg)));
    }
    pub fn configure(&self, id: LegId, media: LegMedia) {
        self.send(Command::Configure(id, media));
    }
    /// The leg's dialog is confirmed: its SDP address may be sent to.
    pub fn confirm(&self, id: LegId) {
        self.send(Command::Confirm(id));
    }
    pub fn play(&self, id: LegId, play_id: u64, clip: Clip) {
        self.send(Command::Play(id, play_id, clip));
    }
    pub fn stop_playout(&self, id: LegId) {
        self.send(Command::StopPlayout(id));
    }
    pub fn hold(&self, id: LegId, music: Option<Clip>) {
        self.send(Command::Hold(id, music));
    }
    pub fn bridge(&self, a: LegId, b: LegId) {
        self.send(Command::Bridge(a, b));
    }
    pub fn stop_tap(&self, id: LegId) {
        self.send(Command::StopTap(id));
    }
    pub fn send_dtmf(&self, id: LegId, digits: &str) {
        self.send(Command::SendDtmf(id, digits.into()));
    }
    pub fn remove_leg(&self, id: LegId) {
        self.send(Command::RemoveLeg(id));
    }
}

struct LegIo {
    id: LegId,
    /// Its sockets: given back to the port pool as a spare when the leg goes.
    io: RtpReservation,
    local_port: u16,
    events: mpsc::UnboundedSender<MediaEvent>,
    tap: Option<mpsc::Sender<Vec<i16>>>,
    tap_frames: u64,
    tap_dropped: u64,
    recorder: Option<std::sync::mpsc::SyncSender<(u32, Vec<i16>)>>,
    record_dropped: u64,
    report: ReportSink,
}

thread_local! {
    /// The datagram being handled, one per worker thread rather than one per call (2 KB of
    /// every call's media task otherwise): a packet is read and handled within one poll,
    /// so on one thread, with no await between.
    static DATAGRAM: std::cell::RefCell<[u8; 2048]> = const { std::cell::RefCell::new([0; 2048]) };
}

async fn run(plane: Arc<MediaPlane>, mut commands: boxed::UnboundedReceiver<Command>) {
    let now = Instant::now();
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut session = Session::new(now, unix);
    let mut legs: Vec<LegIo> = Vec::new();
    let mut next_report = now + Duration::from_secs(1);
    // One timer for the task's life, moved only when the session's deadline moves: a new
    // Sleep per packet would cost a timer-wheel insert and remove for every datagram.
    let mut deadline = session.poll_timeout();
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    loop {
        let tick = session.poll_timeout();
        if tick != deadline {
            deadline = tick;
            sleep.as_mut().reset(tick.into());
        }
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                Some(cmd) => apply(&plane, &mut session, &mut legs, cmd),
                None => break,
            },
            () = readable(&legs) => {
                let now = Instant::now();
                let got = DATAGRAM.with_borrow_mut(|buf| {
                    let mut got = 0u64;
                    // What is queued, up to a burst, before sleeping again.
                    for _ in 0..BURST {
                        let Some((i, rtcp, from, n)) = try_recv_any(&legs, buf) else {
                            break;
                        };
                        let id = legs[i].id;
                        if rtcp {
                            session.handle_rtcp(now, id, from, &buf[..n]);
                        } else {
                            got += 1;
                            session.handle_rtp(now, id, from, &buf[..n]);
                        }
                        flush(&plane, &mut session, &mut legs);
                    }
                    got
                });
                plane.metrics.rtp_in.inc_by(got);
            },
            () = &mut sleep => {
                let now = Instant::now();
                session.handle_tick(now);
                flush(&plane, &mut session, &mut legs);
                if now >= next_report {
                    next_report = now + Duration::from_secs(1);
                    report(&session, &mut legs);
                }
            },
        }
    }
    report(&session, &mut legs);
}

fn report(session: &Session, legs: &mut [LegIo]) {
    for l in legs {
        let Some(stats) = session.stats(l.id) else {
            continue;
        };
        let r = LegReport {
            leg: l.id,
            local_port: l.local_port,
            stats,
            tap_frames: l.tap_frames,
            tap_dropped: l.tap_dropped,
            record_dropped: l.record_dropped,
        };
        (l.report)(&r);
    }
}

fn apply(plane: &Arc<MediaPlane>, session: &mut Session, legs: &mut Vec<LegIo>, cmd: Command) {
    let now = Instant::now();
    match cmd {
        Command::AddLeg(new) => {
            let NewLeg {
                id,
                sockets,
                tap,
                events,
                report,
                record_as,
                await_peer,
            } = *new;
            let local_port = sockets.port();
            session.add_leg(
                id,
                LegSetup {
                    options: LegOptions {
                        ssrc: rand::random(),
                        initial_seq: rand::random(),
                        initial_ts: rand::random(),
                        jitter: plane.jitter,
                        await_peer,
                    },
                    tap: tap.is_some(),
                    record: record_as.is_some() && plane.record_dir.is_some(),
                    rtp_timeout: plane.rtp_timeout,
                    hold_timeout: plane.hold_timeout,
                    hold_probe: plane.hold_probe,
                },
            );
            let recorder = match (&plane.record_dir, record_as) {
                (Some(dir), Some(stem)) => {
                    spawn_recorder(dir.join(format!("{}-leg{id}.wav", sanitize(&stem))))
                }
                _ => None,
            };
            legs.retain(|l| l.id != id);
            legs.push(LegIo {
                id,
                io: sockets,
                local_port,
                events,
                tap,
                tap_frames: 0,
                tap_dropped: 0,
                recorder,
                record_dropped: 0,
                report,
            });
        }
        Command::Configure(id, media) => {
            tracing::debug!(leg = id, codec = %media.codec, remote = ?media.remote, direction = media.direction.as_attr(), "media configured");
            if let Err(e) = session.configure(now, id, media) {
                tracing::error!(leg = id, error = %e, "codec could not be set up");
            }
        }
        Command::Confirm(id) => session.confirm(id),
        Command::Play(id, play_id, clip) => session.play(id, play_id, clip),
        Command::StopPlayout(id) => session.stop_playout(id),
        Command::Hold(id, music) => session.hold(id, music),
        Command::Bridge(a, b) => {
            tracing::info!(a, b, "legs bridged");
            session.bridge(a, b);
        }
        Command::SendDtmf(id, digits) => session.send_dtmf(id, &digits),
        Command::StopTap(id) => {
            session.set_tap(id, false);
            // Dropping the sender ends the call's speech pipeline.
            if let Some(l) = legs.iter_mut().find(|l| l.id == id) {
                l.tap = None;
            }
        }
        Command::RemoveLeg(id) => {
            report(session, legs);
            if let Some(stats) = session.stats(id) {
                plane.metrics.rtp_strangers.inc_by(stats.strangers);
                plane
                    .metrics
                    .srtp_auth_failed
                    .inc_by(stats.srtp_auth_failed);
                plane.metrics.srtp_replayed.inc_by(stats.srtp_replayed);
                let expected = stats.packets_in as i64 + stats.lost.max(0);
                if expected > 0 {
                    plane
                        .metrics
                        .rtp_loss_fraction
                        .observe(stats.lost.max(0) as f64 / expected as f64);
                    plane.metrics.rtp_jitter.observe(stats.jitter_ms / 1000.0);
                }
            }
            session.remove_leg(id);
            flush(plane, session, legs);
            legs.retain(|l| l.id != id);
        }
    }
}

fn flush(plane: &MediaPlane, session: &mut Session, legs: &mut [LegIo]) {
    let mut sent = 0u64;
    while let Some(out) = session.poll_output() {
        match out {
            Output::Transmit(t) => {
                let Some(l) = legs.iter().find(|l| l.id == t.leg) else {
                    continue;
                };
                let Some((rtp, rtcp)) = l.io.sockets() else {
                    continue;
                };
                let sock = if t.rtcp { rtcp } else { rtp };
                if sock.try_send_to(&t.data, t.to).is_err() {
                    plane.metrics.rtp_send_errors.inc();
                } else {
                    sent += u64::from(!t.rtcp);
                }
            }
            Output::Tap { leg, pcm } => {
                let Some(l) = legs.iter_mut().find(|l| l.id == leg) else {
                    continue;
                };
                if let Some(tap) = &l.tap {
                    l.tap_frames += 1;
                    plane.metrics.tap_frames.inc();
                    if tap.try_send(pcm).is_err() {
                        l.tap_dropped += 1;
                        plane.metrics.tap_dropped.inc();
                    }
                }
            }
            Output::Record { leg, pcm, rate } => {
                let Some(l) = legs.iter_mut().find(|l| l.id == leg) else {
                    continue;
                };
                if let Some(rec) = &l.recorder {
                    if rec.try_send((rate, pcm)).is_err() {
                        l.record_dropped += 1;
                        plane.metrics.record_dropped.inc();
                    }
                }
            }
            Output::Event(ev) => {
                let leg = match &ev {
                    MediaEvent::PlayoutDone { leg, .. }
                    | MediaEvent::Dtmf { leg, .. }
                    | MediaEvent::RtpTimeout { leg, .. }
                    | MediaEvent::Quiet { leg, .. }
                    | MediaEvent::SrtpRejected { leg, .. } => *leg,
                };
                if matches!(ev, MediaEvent::RtpTimeout { .. }) {
                    plane.metrics.rtp_timeouts.inc();
                }
                if let Some(l) = legs.iter().find(|l| l.id == leg) {
                    let _ = l.events.send(ev);
                }
            }
        }
    }
    if sent > 0 {
        plane.metrics.rtp_out.inc_by(sent);
    }
}

/// Wait for a datagram on any leg's RTP or RTCP socket.
/// Ready when a leg's RTP or RTCP socket may have a datagram. Readiness only: the read is
/// `try_recv_any`'s, into the thread's [`DATAGRAM`] (a stale readiness is cleared there by
/// the `WouldBlock` it meets).
async fn readable(legs: &[LegIo]) {
    std::future::poll_fn(|cx| {
        for (rtp, rtcp) in legs.iter().filter_map(|l| l.io.sockets()) {
            for sock in [rtp, rtcp] {
                // An error (ICMP, on some systems) is the read's to meet and skip.
                if sock.poll_recv_ready(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
        }
        Poll::Pending
    })
    .await
}

fn try_recv_any(legs: &[LegIo], buf: &mut [u8]) -> Option<(usize, bool, SocketAddr, usize)> {
    for (i, l) in legs.iter().enumerate() {
        let Some((rtp, rtcp)) = l.io.sockets() else {
            continue;
        };
        for (rtcp, sock) in [(false, rtp), (true, rtcp)] {
            if let Ok((n, from)) = sock.try_recv_from(buf) {
                return Some((i, rtcp, from, n));
            }
        }
    }
    None
}

/// A thread writing one leg's WAV, so file I/O never runs on the media task.
fn spawn_recorder(path: PathBuf) -> Option<std::sync::mpsc::SyncSender<(u32, Vec<i16>)>> {
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "recording directory not created");
            return None;
        }
    }
    let file = match std::fs::File::create(&path) {
        Ok(f) => std::io::BufWriter::new(f),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "recording not started");
            return None;
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Vec<i16>)>(RECORD_QUEUE);
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("wl-record".into())
        .spawn(move || {
            let _g = span.enter();
            // The file takes the rate of the first frame (the leg's codec rate).
            let mut rec: Option<Recorder<_>> = None;
            let mut file = Some(file);
            while let Ok((r, frame)) = rx.recv() {
                if rec.is_none() {
                    match file.take().map(|f| Recorder::new(f, r)) {
                        Some(Ok(x)) => rec = Some(x),
                        _ => return,
                    }
                }
                if let Some(w) = rec.as_mut() {
                    if w.write(&frame).is_err() {
                        return;
                    }
                }
            }
            if let Some(w) = rec {
                if let Err(e) = w.finish() {
                    tracing::warn!(error = %e, "recording not finalised");
                }
            }
            tracing::info!(path = %path.display(), "recording written");
        })
        .ok()?;
    Some(tx)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Leg ids within a call's session.
pub const CALLER_LEG: LegId = 0;
pub const FAR_LEG: LegId = 1;

/// Mutex helper for report sinks.
pub fn report_into<T: Send + 'static>(
    target: Arc<Mutex<T>>,
    mut set: impl FnMut(&mut T, &LegReport) + Send + Sync + 'static,
) -> ReportSink {
    Box::new(move |r| {
        let mut t = target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        set(&mut t, r);
    })
}
