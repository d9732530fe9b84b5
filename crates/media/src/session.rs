//! [`Session`]: the media of one call, all of its legs in one owner. It relays or
//! transcodes between bridged legs, runs playout and hold audio, decodes what the speech
//! tap and recorder need, detects DTMF, reports silence, and emits RTCP.
//!
//! Driving loop (sans-IO): feed datagrams with [`Session::handle_rtp`] /
//! [`Session::handle_rtcp`], call [`Session::handle_tick`] every 20 ms at
//! [`Session::poll_timeout`], and drain [`Session::poll_output`] after each call.

use crate::codec::frame_samples;
use crate::dtmf::{DtmfDetector, DtmfTrain};
use crate::jitter::Pop;
use crate::leg::{Inbound, Leg, LegError, LegMedia, LegOptions, LegStats, Opened};
use crate::player::{Clip, Player};
use crate::resample::Resampler;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest gap in a talking peer's packets that is concealed rather than passed on as a pause.
const UNDERRUN_BRIDGE: Duration = Duration::from_millis(200);

/// Frames a late tick may catch up on (100 ms).
const MAX_CATCH_UP: u32 = 5;

/// How often an idle session (relay only, or nothing at all) wakes for timeouts and RTCP.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// A leg's name within its session (the driver uses 0 for the caller, 1.. for others).
pub type LegId = u32;

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub leg: LegId,
    pub to: SocketAddr,
    /// To the RTCP socket rather than the RTP one.
    pub rtcp: bool,
    pub data: Vec<u8>,
}

/// What the controller hears about from the media plane.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MediaEvent {
    PlayoutDone {
        leg: LegId,
        id: u64,
        interrupted: bool,
    },
    Dtmf {
        leg: LegId,
        digit: char,
    },
    /// The leg should be sending and has not for the configured timeout.
    RtpTimeout {
        leg: LegId,
        silent_ms: u64,
    },
    /// On hold, the peer has sent nothing (RTP or RTCP) for another `hold_probe`: time to
    /// ask its signalling whether it is still there.
    Quiet {
        leg: LegId,
        silent_ms: u64,
    },
    /// SRTP or SRTCP packets on this leg failed authentication or were replays, and were
    /// dropped: told at the 1st, 10th, 100th… so a wrong key is heard of at once and a
    /// flood of forgeries does not flood the log.
    SrtpRejected {
        leg: LegId,
        auth_failed: u64,
        replayed: u64,
    },
}

#[derive(Debug)]
pub enum Output {
    Transmit(Transmit),
    /// 20 ms of the leg's inbound audio at 16 kHz mono, for the speech pipeline.
    Tap {
        leg: LegId,
        pcm: Vec<i16>,
    },
    /// 20 ms of the leg's inbound audio at `rate`, for the call recording.
    Record {
        leg: LegId,
        rate: u32,
        pcm: Vec<i16>,
    },
    Event(MediaEvent),
}

/// Per-leg switches, set when the leg is added.
#[derive(Debug, Clone, Copy)]
pub struct LegSetup {
    pub options: LegOptions,
    /// Offer this leg's inbound audio to the speech tap.
    pub tap: bool,
    pub record: bool,
    /// End-of-media detection while the call is two-way; `None` disables it.
    pub rtp_timeout: Option<Duration>,
    /// The same on hold, where RTCP also counts as the peer being there: a held call the
    /// far end abandoned ends after this. `None` disables it.
    pub hold_timeout: Option<Duration>,
    /// On hold, a `Quiet` event after each this long without a sign of life; `None`
    /// disables it.
    pub hold_probe: Option<Duration>,
}

#[derive(Debug)]
struct Slot {
    id: LegId,
    leg: Leg,
    setup: LegSetup,
    player: Player,
    /// Hold bridge: inbound audio is neither relayed nor tapped.
    held: bool,
    peer: Option<LegId>,
    dtmf_in: DtmfDetector,
    dtmf_out: VecDeque<char>,
    train: Option<(DtmfTrain, u32)>,
    timeout_reported: bool,
    /// `Quiet` events sent in the current silence.
    probes_reported: u32,
    /// This tick's decoded inbound frame, at the leg's rate.
    decoded: Option<Vec<i16>>,
    /// Something consumes this leg's PCM (tap, recording, a transcoding peer); kept by
    /// [`Session::refresh`] so the per-packet path does not work it out again.
    decode: bool,
    tap_resampler: Option<Resampler>,
    /// Converts the peer's decoded audio to this leg's rate when transcoding.
    xcode: Option<Resampler>,
}

impl Slot {
    fn relays_from(&self, peer: &Slot) -> bool {
        // Same codec both ways and nothing else playing: copy packets, touch headers only.
        let same = matches!((self.leg.media(), peer.leg.media()), (Some(a), Some(b)) if a.codec == b.codec);
        same && !self.player.is_active() && !peer.held && self.train.is_none()
    }
}

/// All legs of one call.
#[derive(Debug)]
pub struct Session {
    legs: Vec<Slot>,
    out: VecDeque<Output>,
    next_tick: Instant,
    last_tick: Instant,
    /// Whether the 20 ms frame clock must run; kept by [`Session::refresh`].
    framed: bool,
    /// Instant ↔ wall clock, for RTCP sender reports.
    ntp_base: (Instant, u64),
}

impl Session {
    /// `unix_now` is the wall clock at `now` (for RTCP NTP timestamps).
    pub fn new(now: Instant, unix_now: Duration) -> Self {
        const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
        let ntp = ((unix_now.as_secs() + NTP_UNIX_OFFSET) << 32)
            | ((u64::from(unix_now.subsec_nanos()) << 32) / 1_000_000_000);
        Self {
            legs: Vec::new(),
            out: VecDeque::new(),
            next_tick: now,
            last_tick: now,
            framed: false,
            ntp_base: (now, ntp),
        }
    }

    pub fn add_leg(&mut self, id: LegId, setup: LegSetup) {
        self.remove_leg(id);
        self.legs.push(Slot {
            id,
            leg: Leg::new(setup.options),
            setup,
            player: Player::default(),
            held: false,
            peer: None,
            dtmf_in: DtmfDetector::default(),
            dtmf_out: VecDeque::new(),
            train: None,
            timeout_reported: false,
            probes_reported: 0,
            decoded: None,
            decode: false,
            tap_resampler: None,
            xcode: None,
        });
        self.refresh();
    }

    pub fn remove_leg(&mut self, id: LegId) {
        self.unbridge(id);
        if let Some(i) = self.index(id) {
            let mut slot = self.legs.swap_remove(i);
            slot.player.stop();
            Self::flush_finished(&mut self.out, &mut slot);
        }
        self.refresh();
    }

    pub fn has_leg(&self, id: LegId) -> bool {
        self.index(id).is_some()
    }

    pub fn leg_ids(&self) -> impl Iterator<Item = LegId> + '_ {
        self.legs.iter().map(|s| s.id)
    }

    fn index(&self, id: LegId) -> Option<usize> {
        self.legs.iter().position(|s| s.id == id)
    }

    fn slot(&mut self, id: LegId) -> Option<&mut Slot> {
        self.legs.iter_mut().find(|s| s.id == id)
    }

    pub fn configure(&mut self, now: Instant, id: LegId, media: LegMedia) -> Result<(), LegError> {
        let Some(s) = self.slot(id) else {
            return Ok(());
        };
        s.leg.configure(now, media)?;
        s.timeout_reported = false;
        s.probes_reported = 0;
        s.tap_resampler = None;
        s.xcode = None;
        self.refresh();
        Ok(())
    }

    pub fn stats(&self, id: LegId) -> Option<LegStats> {
        self.legs.iter().find(|s| s.id == id).map(|s| s.leg.stats())
    }

    /// The leg's dialog is confirmed (the ACK came): it may send to the SDP address.
    pub fn confirm(&mut self, id: LegId) {
        if let Some(s) = self.slot(id) {
            s.leg.confirm();
        }
    }

    pub fn local_ssrc(&self, id: LegId) -> Option<u32> {
        self.legs.iter().find(|s| s.id == id).map(|s| s.leg.ssrc())
    }

    /// Queue a clip on a leg; [`MediaEvent::PlayoutDone`] reports it.
    pub fn play(&mut self, id: LegId, play_id: u64, clip: Clip) {
        if let Some(s) = self.slot(id) {
            s.player.enqueue(play_id, clip);
        }
        self.refresh();
    }

    /// Barge-in: cut what plays on the leg (queued clips too).
    pub fn stop_playout(&mut self, id: LegId) {
        if let Some(i) = self.index(id) {
            let s = &mut self.legs[i];
            s.player.stop();
            Self::flush_finished(&mut self.out, s);
        }
        self.refresh();
    }

    /// Stop (or start) offering the leg's inbound audio to the speech tap: once a person
    /// has the call, the assistant stops listening.
    pub fn set_tap(&mut self, id: LegId, on: bool) {
        if let Some(s) = self.slot(id) {
            s.setup.tap = on;
            s.tap_resampler = None;
        }
        self.refresh();
    }

    /// Hold bridge: the leg hears `music` (looped, after anything queued) and what it
    /// says is ignored. `None` takes it off hold.
    pub fn hold(&mut self, id: LegId, music: Option<Clip>) {
        if let Some(s) = self.slot(id) {
            s.held = music.is_some();
            s.player.set_loop(music);
        }
        self.refresh();
    }

    pub fn send_dtmf(&mut self, id: LegId, digits: &str) {
        if let Some(s) = self.slot(id) {
            s.dtmf_out.extend(digits.chars());
        }
        self.refresh();
    }

    /// Join two legs both ways. A leg bridged elsewhere is moved, so replacing one party
    /// is a single call: `bridge(caller, new_agent)`.
    pub fn bridge(&mut self, a: LegId, b: LegId) {
        if a == b || !self.has_leg(a) || !self.has_leg(b) {
            return;
        }
        self.unbridge(a);
        self.unbridge(b);
        for (x, y) in [(a, b), (b, a)] {
            if let Some(s) = self.slot(x) {
                s.peer = Some(y);
                s.xcode = None;
            }
        }
        self.refresh();
    }

    pub fn unbridge(&mut self, id: LegId) {
        let peer = self.slot(id).and_then(|s| s.peer.take());
        if let Some(p) = peer.and_then(|p| self.slot(p)) {
            p.peer = None;
        }
        self.refresh();
    }

    pub fn peer(&self, id: LegId) -> Option<LegId> {
        self.legs.iter().find(|s| s.id == id).and_then(|s| s.peer)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The 20 ms frame clock runs only while something needs it (playout, decoding for
    /// the tap, recording or a transcoding bridge, DTMF); a pure relay is driven by its
    /// packets and wakes only for timeouts and RTCP.
    pub fn poll_timeout(&self) -> Instant {
        if self.framed {
            self.next_tick
        } else {
            self.next_tick.max(self.last_tick + IDLE_TICK)
        }
    }

    /// Recompute which legs decode and whether the frame clock runs. Called after anything
    /// that can change them (commands, the end of a tick), never per packet.
    fn refresh(&mut self) {
        for i in 0..self.legs.len() {
            let decode = self.compute_decode(i);
            self.legs[i].decode = decode;
        }
        self.framed = self.legs.iter().any(|s| {
            s.leg.media().is_some()
                && (s.player.is_active() || s.train.is_some() || !s.dtmf_out.is_empty() || s.decode)
        });
    }

    /// One datagram from a leg's RTP socket. Relayed audio leaves at once; decoded audio
    /// waits in the jitter buffer for the next tick.
    pub fn handle_rtp(&mut self, now: Instant, id: LegId, from: SocketAddr, data: &[u8]) {
        let Some(i) = self.index(id) else {
            return;
        };
        let opened = self.legs[i].leg.open_rtp(data);
        let data: &[u8] = match &opened {
            Opened::Plain => data,
            Opened::Decrypted(plain) => plain,
            Opened::Dropped => {
                self.srtp_dropped(i);
                return;
            }
        };
        let (header, payload, dtmf) = {
            let s = &mut self.legs[i];
            match s.leg.receive(now, from, data) {
                Some(Inbound::Audio { header, payload }) => (header, payload, false),
                Some(Inbound::Dtmf { header, payload }) => {
                    if let Some(digit) = s.dtmf_in.on_packet(header.timestamp, payload) {
                        s.leg.stats.dtmf_in += 1;
                        self.out
                            .push_back(Output::Event(MediaEvent::Dtmf { leg: id, digit }));
                    }
                    (header, payload, true)
                }
                Some(Inbound::Ignored) | None => return,
            }
        };
        let s = &mut self.legs[i];
        if !dtmf && s.decode && !s.held {
            s.leg.jitter.insert(now, header.timestamp, payload);
        }
        if s.held {
            return;
        }
        let Some(j) = s.peer.and_then(|p| self.index(p)) else {
            return;
        };
        if !self.legs[j].relays_from(&self.legs[i]) || !self.legs[j].leg.sends() {
            return;
        }
        let target = &mut self.legs[j];
        let Some(media) = target.leg.media().copied() else {
            return;
        };
        let pt = if dtmf {
            match media.dtmf {
                Some((pt, _)) => pt,
                None => return,
            }
        } else {
            media.payload_type
        };
        let Some(to) = target.leg.destination() else {
            return;
        };
        let (seq, ts, marker) = target.leg.stamp_relayed(now, &header);
        let Some(data) = target.leg.rewrite(data, pt, seq, ts, marker, payload.len()) else {
            return;
        };
        self.out.push_back(Output::Transmit(Transmit {
            leg: target.id,
            to,
            rtcp: false,
            data,
        }));
    }

    pub fn handle_rtcp(&mut self, now: Instant, id: LegId, from: SocketAddr, data: &[u8]) {
        let Some(i) = self.index(id) else {
            return;
        };
        let leg = &mut self.legs[i].leg;
        match leg.open_rtcp(data) {
            Opened::Plain => leg.receive_rtcp(now, from, data),
            Opened::Decrypted(plain) => leg.receive_rtcp(now, from, &plain),
            Opened::Dropped => self.srtp_dropped(i),
        }
    }

    fn srtp_dropped(&mut self, i: usize) {
        let s = &self.legs[i];
        let (auth_failed, replayed) = (s.leg.stats.srtp_auth_failed, s.leg.stats.srtp_replayed);
        let n = auth_failed + replayed;
        if n > 0 && 10u64.pow(n.ilog10()) == n {
            self.out.push_back(Output::Event(MediaEvent::SrtpRejected {
                leg: s.id,
                auth_failed,
                replayed,
            }));
        }
    }

    /// A leg's inbound audio must be decoded when something consumes PCM from it.
    fn compute_decode(&self, i: usize) -> bool {
        let s = &self.legs[i];
        if s.setup.tap || s.setup.record {
            return true;
        }
        s.peer
            .and_then(|p| self.legs.iter().find(|x| x.id == p))
            .is_some_and(|peer| peer.leg.media().map(|m| m.codec) != s.leg.media().map(|m| m.codec))
    }

    /// The 20 ms clock: playout, transcoding, taps, DTMF trains, timeouts, RTCP.
    pub fn handle_tick(&mut self, now: Instant) {
        if now < self.poll_timeout() {
            return;
        }
        let framed = self.framed;
        self.last_tick = now;
        // A late driver (a busy machine) catches up by running the frames it missed, up to
        // MAX_CATCH_UP: a short burst keeps every stream's timestamps continuous, where a
        // skipped frame would be a gap in the audio. Longer stalls are let go.
        let frame = Duration::from_millis(20);
        let mut due = 1;
        if framed {
            while due < MAX_CATCH_UP && self.next_tick + frame * due <= now {
                due += 1;
            }
        }
        self.next_tick += frame * due;
        if self.next_tick <= now {
            self.next_tick = now + frame;
        }
        for k in (0..due).rev() {
            // Each caught-up frame is stamped at the time it should have gone out.
            self.frame_tick(now, now.checked_sub(frame * k).unwrap_or(now), framed);
        }
        // Clips end and DTMF trains finish during ticks.
        self.refresh();
    }

    fn frame_tick(&mut self, now: Instant, at: Instant, framed: bool) {
        // 1. Decode this tick's inbound frame where something needs it.
        for i in 0..self.legs.len() {
            if !framed {
                break;
            }
            let s = &mut self.legs[i];
            let decode = s.decode;
            s.decoded = None;
            if !decode || s.leg.media().is_none() {
                continue;
            }
            let n = s.leg.frame_samples();
            let mut pcm = Vec::with_capacity(n);
            // No packet this tick (a pause in the peer's stream, DTX, end of a clip): the
            // tap and the recording still hear 20 ms of silence, so the endpointer can see a
            // turn end and recordings keep their timing. The bridge sends nothing.
            let mut heard = true;
            match s.leg.jitter.pop(now) {
                Pop::Frame(payload) => {
                    if let Some(d) = s.leg.decoder.as_mut() {
                        d.decode(&payload, &mut pcm);
                    }
                }
                Pop::Conceal => {
                    if let Some(d) = s.leg.decoder.as_mut() {
                        d.conceal(n, &mut pcm);
                    }
                }
                // A short underrun while the peer is talking (a late packet, a slow tick):
                // conceal it, so a transcoded stream stays continuous. A longer silence is
                // the peer pausing: nothing is sent on.
                Pop::Nothing
                    if s.leg.receives()
                        && s.leg.jitter.has_played()
                        && s.leg.last_rx().is_some_and(|t| {
                            now.saturating_duration_since(t) <= UNDERRUN_BRIDGE
                        }) =>
                {
                    if let Some(d) = s.leg.decoder.as_mut() {
                        d.conceal(n, &mut pcm);
                    }
                }
                Pop::Nothing if s.leg.stats.packets_in > 0 && s.leg.receives() => heard = false,
                Pop::Nothing => continue,
            }
            pcm.resize(n, 0);
            if s.setup.record {
                self.out.push_back(Output::Record {
                    leg: s.id,
                    rate: s.leg.rate(),
                    pcm: pcm.clone(),
                });
            }
            if s.setup.tap && !s.held {
                // Wideband (G.722) is decoded at the recognizer's own 16 kHz: it goes in
                // as it is, its 7 kHz of band intact.
                let tap = if s.leg.rate() == 16000 {
                    pcm.clone()
                } else {
                    let r = s
                        .tap_resampler
                        .get_or_insert_with(|| Resampler::new(s.leg.rate(), 16000));
                    let mut tap = Vec::with_capacity(320);
                    r.process(&pcm, &mut tap);
                    tap.resize(320, 0);
                    tap
                };
                self.out.push_back(Output::Tap {
                    leg: s.id,
                    pcm: tap,
                });
            }
            if heard {
                s.decoded = Some(pcm);
            }
        }
        // 2. What each leg sends this tick.
        for i in 0..self.legs.len() {
            if framed {
                self.send_tick(at, i);
            }
            let s = &mut self.legs[i];
            Self::flush_finished(&mut self.out, s);
            // 3. Silence detection.
            let silence = s.leg.silent_for(now);
            match (silence, s.setup.hold_probe) {
                (Some((silent, false)), Some(every)) if !every.is_zero() => {
                    let due =
                        u32::try_from(silent.as_millis() / every.as_millis()).unwrap_or(u32::MAX);
                    if due == 0 {
                        s.probes_reported = 0;
                    } else if due > s.probes_reported {
                        s.probes_reported = due;
                        self.out.push_back(Output::Event(MediaEvent::Quiet {
                            leg: s.id,
                            silent_ms: silent.as_millis() as u64,
                        }));
                    }
                }
                _ => s.probes_reported = 0,
            }
            let limit = silence.and_then(|(silent, two_way)| {
                let limit = if two_way {
                    s.setup.rtp_timeout
                } else {
                    s.setup.hold_timeout
                };
                Some((silent, limit?))
            });
            if let Some((silent, limit)) = limit {
                if silent >= limit && !s.timeout_reported {
                    s.timeout_reported = true;
                    self.out.push_back(Output::Event(MediaEvent::RtpTimeout {
                        leg: s.id,
                        silent_ms: silent.as_millis() as u64,
                    }));
                }
            }
            // 4. RTCP.
            let ntp = self.ntp_at(now);
            let s = &mut self.legs[i];
            if let Some((to, data)) = s.leg.poll_rtcp(now, ntp) {
                self.out.push_back(Output::Transmit(Transmit {
                    leg: s.id,
                    to,
                    rtcp: true,
                    data,
                }));
            }
        }
    }

    fn ntp_at(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.ntp_base.0);
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        self.ntp_base.1.wrapping_add((d.as_secs() << 32) + frac)
    }

    fn send_tick(&mut self, now: Instant, i: usize) {
        let rate = self.legs[i].leg.rate();
        let n = frame_samples(rate);
        // DTMF trains take the stream while they last.
        if self.send_dtmf_tick(now, i) {
            return;
        }
        // Hold or prompts first; otherwise the bridged peer, transcoded.
        // The peer's frame has no other consumer: take it rather than copy it.
        let peer_pcm = match self.legs[i].peer.and_then(|p| self.index(p)) {
            Some(j) if !self.legs[i].relays_from(&self.legs[j]) && !self.legs[j].held => {
                let rate = self.legs[j].leg.rate();
                self.legs[j].decoded.take().map(|pcm| (rate, pcm))
            }
            _ => None,
        };
        let s = &mut self.legs[i];
        // A prompt waits for a peer whose address is not proven yet, so the caller hears
        // the greeting from its first word once the ACK (or its first packet) comes.
        if !s.leg.proven() {
            return;
        }
        let pcm = match s.player.next_frame(rate, n) {
            Some(pcm) => pcm,
            None => match peer_pcm {
                Some((from_rate, pcm)) => {
                    if from_rate == rate {
                        pcm
                    } else {
                        let r = s
                            .xcode
                            .get_or_insert_with(|| Resampler::new(from_rate, rate));
                        let mut out = Vec::with_capacity(n);
                        r.process(&pcm, &mut out);
                        out.resize(n, 0);
                        out
                    }
                }
                None => return,
            },
        };
        if !s.leg.sends() {
            return;
        }
        let (Some(to), Some(media)) = (s.leg.destination(), s.leg.media().copied()) else {
            return;
        };
        let mut payload = Vec::with_capacity(n);
        let Some(enc) = s.leg.encoder.as_mut() else {
            return;
        };
        if enc.encode(&pcm, &mut payload).is_err() {
            return;
        }
        let ticks = s.leg.frame_ticks();
        let (seq, ts, marker) = s.leg.stamp_generated(now, ticks);
        if let Some(data) = s.leg.packet(media.payload_type, seq, ts, marker, &payload) {
            self.out.push_back(Output::Transmit(Transmit {
                leg: s.id,
                to,
                rtcp: false,
                data,
            }));
        }
    }

    /// Returns whether a telephone-event packet took this tick.
    fn send_dtmf_tick(&mut self, now: Instant, i: usize) -> bool {
        let s = &mut self.legs[i];
        let Some(media) = s.leg.media().copied() else {
            return false;
        };
        let Some((pt, te_rate)) = media.dtmf else {
            s.dtmf_out.clear();
            return false;
        };
        if s.train.is_none() {
            let Some(digit) = s.dtmf_out.pop_front() else {
                return false;
            };
            let Some(train) = DtmfTrain::new(digit, te_rate, 100) else {
                return false;
            };
            let ticks = s.leg.frame_ticks();
            let (_, ts, _) = s.leg.stamp_generated(now, ticks);
            s.train = Some((train, ts));
            s.leg.stats.dtmf_out += 1;
        }
        let Some((train, ts)) = s.train.as_mut() else {
            return false;
        };
        let ts = *ts;
        match train.next_packet() {
            Some((payload, marker)) => {
                if let Some(to) = s.leg.destination().filter(|_| s.leg.sends()) {
                    let seq = s.leg.stamp_event(now);
                    if let Some(data) = s.leg.packet(pt, seq, ts, marker, &payload) {
                        self.out.push_back(Output::Transmit(Transmit {
                            leg: s.id,
                            to,
                            rtcp: false,
                            data,
                        }));
                    }
                }
                true
            }
            None => {
                let dur = train.duration_samples();
                s.train = None;
                s.leg.skip_to(ts.wrapping_add(dur));
                false
            }
        }
    }

    fn flush_finished(out: &mut VecDeque<Output>, s: &mut Slot) {
        for f in s.player.take_finished() {
            out.push_back(Output::Event(MediaEvent::PlayoutDone {
                leg: s.id,
                id: f.id,
                interrupted: f.interrupted,
            }));
        }
    }
}
