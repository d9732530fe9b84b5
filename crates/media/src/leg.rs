//! One RTP party: what we negotiated with it, where its packets come from (symmetric RTP),
//! reception statistics (RFC 3550 A.1/A.8), and the single SSRC/sequence/timestamp space of
//! everything we send it, whatever the source (prompt, hold audio, relay, transcode).

use crate::codec::{Decoder, Encoder, frame_samples, pcm_rate};
use crate::jitter::{JitterBuffer, JitterSettings, JitterStats};
use bytes::Bytes;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtp::header::Header;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use warmline_signaling::{CodecName, Direction, Negotiated, SrtpParams, SrtpSuite};
use webrtc_srtp::context::Context as SrtpContext;
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_util::marshal::{Marshal, MarshalSize};

/// What the leg was told by the last offer/answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
    pub codec: CodecName,
    pub payload_type: u8,
    /// Telephone-event payload type and clock, when negotiated.
    pub dtmf: Option<(u8, u32)>,
    /// From SDP; replaced by the source of the peer's packets once they arrive.
    pub remote: Option<SocketAddr>,
    pub direction: Direction,
    /// SRTP keys and suite when the stream is encrypted (RFC 4568 SDES).
    pub srtp: Option<SrtpParams>,
}

impl From<&Negotiated> for LegMedia {
    fn from(n: &Negotiated) -> Self {
        Self {
            codec: n.codec.name,
            payload_type: n.codec.payload_type,
            dtmf: n.telephone_event.map(|t| (t.payload_type, t.clock_rate)),
            remote: n.remote,
            direction: n.direction,
            srtp: n.srtp,
        }
    }
}

/// Counters a leg exposes to the API, logs and metrics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LegStats {
    pub packets_in: u64,
    pub octets_in: u64,
    pub packets_out: u64,
    pub octets_out: u64,
    /// Expected minus received (RFC 3550 A.3), cumulative.
    pub lost: i64,
    pub duplicates_or_reordered: u64,
    pub jitter_ms: f64,
    pub relayed: u64,
    pub dtmf_in: u64,
    pub dtmf_out: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// Packets dropped: wrong payload type or unparsable.
    pub rejected: u64,
    /// RTP and RTCP dropped because they came from an address that may not speak for this
    /// party (see [`Leg::receive`]), and packets of a source still on probation.
    pub strangers: u64,
    pub relatched: u64,
    pub jitter_buffer: JitterStats,
    pub latched: Option<SocketAddr>,
    /// The SRTP suite, when the leg is encrypted.
    pub srtp: Option<SrtpSuite>,
    /// SRTP and SRTCP packets dropped: the authentication tag did not verify (a wrong key, a
    /// forged or damaged packet) or the packet was too short to carry one.
    pub srtp_auth_failed: u64,
    /// SRTP and SRTCP packets dropped as replays (RFC 3711 §3.3.2).
    pub srtp_replayed: u64,
}

/// What one inbound datagram turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    Audio {
        header: Header,
        payload: &'a [u8],
    },
    Dtmf {
        header: Header,
        payload: &'a [u8],
    },
    /// Comfort noise or anything else we accept but do not play.
    Ignored,
}

#[derive(Debug, Default)]
struct RxState {
    ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    epoch: Option<Instant>,
    transit: Option<i64>,
    jitter: f64,
    last_rx: Option<Instant>,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl RxState {
    fn ext_max(&self) -> u64 {
        u64::from(self.cycles) + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        (self.ext_max() + 1).saturating_sub(u64::from(self.base_seq))
    }
}

#[derive(Debug)]
struct TxState {
    ssrc: u32,
    next_seq: u16,
    last_ts: u32,
    last_at: Option<Instant>,
    /// The inbound SSRC we are relaying, with the offsets mapping it into our space.
    relay: Option<(u32, u16, u32)>,
    packets: u32,
    octets: u32,
}

/// One RTP party. Owned by a [`crate::Session`]; never shared.
#[derive(Debug)]
pub struct Leg {
    media: Option<LegMedia>,
    /// PCM rate of the codec's frames.
    rate: u32,
    /// RTP timestamp rate: the PCM rate except for G.722 (16 kHz audio, 8 kHz clock).
    clock: u32,
    latched: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    /// A source being tried before it is latched: its address and SSRC, its last sequence
    /// number, and how many packets it has sent in order.
    probation: Option<(SocketAddr, u32, u16, u8)>,
    rx: RxState,
    tx: TxState,
    pub(crate) decoder: Option<Decoder>,
    pub(crate) encoder: Option<Encoder>,
    pub(crate) jitter: JitterBuffer,
    jitter_settings: JitterSettings,
    configured_at: Option<Instant>,
    next_rtcp: Option<Instant>,
    /// The peer's address is proven (see [`LegOptions::await_peer`]).
    proven: bool,
    /// When the peer's last RTCP came (a held peer's sign of life).
    last_rtcp: Option<Instant>,
    srtp: Option<Srtp>,
    pub(crate) stats: LegStats,
}

/// An encrypted leg's two SRTP contexts (RFC 3711): the peer's key opens what it sends
/// (with replay windows), ours seals what we send. webrtc-rs `srtp` does the cryptography;
/// the headers it needs come from [`parse_rtp`], never from its own parser (see there).
struct Srtp {
    params: SrtpParams,
    rx: SrtpContext,
    tx: SrtpContext,
}

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Srtp({})", self.params.suite)
    }
}

/// RFC 3711 §3.3.2's minimum replay window, and SRTCP's like it.
const REPLAY_WINDOW: usize = 64;
/// SRTCP's trailer: the E flag and index (4 bytes), then an 80-bit tag whatever the
/// SRTP suite (RFC 4568 §6.2).
const SRTCP_TRAILER: usize = 4 + 10;

impl Srtp {
    fn new(params: SrtpParams) -> Result<Srtp, LegError> {
        let profile = match params.suite {
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        };
        let context = |key: &warmline_signaling::SrtpKey, replay: bool| {
            SrtpContext::new(
                key.master_key(),
                key.master_salt(),
                profile,
                replay.then(|| webrtc_srtp::option::srtp_replay_protection(REPLAY_WINDOW)),
                replay.then(|| webrtc_srtp::option::srtcp_replay_protection(REPLAY_WINDOW)),
            )
            .map_err(|e| LegError::Srtp(e.to_string()))
        };
        Ok(Srtp {
            rx: context(&params.remote, true)?,
            tx: context(&params.local, false)?,
            params,
        })
    }
}

/// What SRTP made of one inbound datagram.
pub(crate) enum Opened {
    /// The leg is not encrypted: use the datagram as it came.
    Plain,
    /// Authenticated and decrypted.
    Decrypted(Bytes),
    /// Dropped and counted (authentication, replay, too short).
    Dropped,
}

/// The header webrtc-rs `srtp` needs for a datagram: from [`parse_rtp`], with any header
/// extension stood in for by one opaque block of the same size, so that `marshal_size()`
/// (where the cipher starts) is the real header length.
fn srtp_header(data: &[u8]) -> Option<Header> {
    let (mut h, payload) = parse_rtp(data)?;
    let fixed = 12 + 4 * h.csrc.len();
    let len = data.len() - payload.len();
    h.extension_profile = 0;
    h.extensions_padding = 0;
    h.extensions.clear();
    if len > fixed {
        h.extension = true;
        h.extensions.push(rtp::header::Extension {
            id: 0,
            payload: Bytes::from(vec![0u8; len - fixed - 4]),
        });
    } else {
        h.extension = false;
    }
    Some(h)
}

/// An RTP packet's header (RFC 3550 §5.1: fixed part, CSRCs, and a header extension,
/// skipped whole since nothing here reads one) and its payload, padding included. Written
/// by hand: the rtp crate's parser (0.17.2, `Header::unmarshal`) panics on a one-byte
/// extension element that runs past its block, which one datagram from anyone could send
/// before the source is even looked at (found by `tests/fuzz.rs`).
pub(crate) fn parse_rtp(data: &[u8]) -> Option<(Header, &[u8])> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    let (b0, b1) = (*data.first()?, *data.get(1)?);
    if b0 >> 6 != 2 {
        return None;
    }
    let cc = usize::from(b0 & 0x0f);
    let mut end = 12 + 4 * cc;
    let csrc = (0..cc)
        .map(|i| word(12 + 4 * i))
        .collect::<Option<Vec<_>>>()?;
    let extension = b0 & 0x10 != 0;
    let mut extension_profile = 0;
    if extension {
        let ext = word(end)?;
        extension_profile = (ext >> 16) as u16;
        end += 4 + 4 * (ext & 0xffff) as usize;
    }
    let payload = data.get(end..)?;
    let header = Header {
        version: 2,
        padding: b0 & 0x20 != 0,
        extension,
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence_number: (word(0)? & 0xffff) as u16,
        timestamp: word(4)?,
        ssrc: word(8)?,
        csrc,
        extension_profile,
        extensions: Vec::new(),
        extensions_padding: 0,
    };
    Some((header, payload))
}

/// A compound RTCP packet checked as RFC 3550 A.2 says (version 2, an SR or RR first, each
/// packet's length inside the datagram and together its whole length, padding only on the
/// last), and the NTP time of its first SR, if any: all a leg reads of the peer's RTCP.
/// Written by hand for the same reason as [`parse_rtp`]: the rtcp crate's parser (0.17.2)
/// panics on a malformed transport-layer NACK (found by `tests/fuzz.rs`).
pub(crate) fn parse_rtcp(data: &[u8]) -> Option<Option<u64>> {
    let mut at = 0;
    let mut sr_ntp = None;
    let mut first = true;
    while at < data.len() {
        let head = data.get(at..at + 4)?;
        if head[0] >> 6 != 2 || (first && !matches!(head[1], 200 | 201)) {
            return None;
        }
        let len = 4 * (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1);
        let end = at.checked_add(len)?;
        let packet = data.get(at..end)?;
        if head[0] & 0x20 != 0 && end != data.len() {
            return None;
        }
        if head[1] == 200 && sr_ntp.is_none() {
            sr_ntp = Some(u64::from_be_bytes(packet.get(8..16)?.try_into().ok()?));
        }
        first = false;
        at = end;
    }
    (!first).then_some(sr_ntp)
}

/// Everything a leg needs at creation; the randomness comes from the driver.
#[derive(Debug, Clone, Copy)]
pub struct LegOptions {
    pub ssrc: u32,
    pub initial_seq: u16,
    pub initial_ts: u32,
    pub jitter: JitterSettings,
    /// Send nothing until the peer has proven its address: its first admitted packet, or
    /// [`Leg::confirm`] (the driver's word that the dialog is confirmed, i.e. the ACK
    /// came). For inbound calls: an unACKed INVITE whose SDP names someone else's
    /// address must not get them a greeting.
    pub await_peer: bool,
}

pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// Packets in sequence (one SSRC) a source other than the SDP address must send before it
/// is latched: RFC 3550's probation (MIN_SEQUENTIAL, A.1), one more for margin.
pub const PROBATION: u8 = 3;

/// How long the latched source must have been silent before another host may take over.
pub const QUIET: Duration = Duration::from_secs(1);

/// Packets in sequence another host must send, after [`QUIET`], to take over: a second of
/// audio, which a stranger's burst cannot fake while the peer still talks.
pub const TAKEOVER: u8 = 50;

#[derive(Debug, thiserror::Error)]
pub enum LegError {
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    #[error("SRTP context: {0}")]
    Srtp(String),
}

impl Leg {
    pub fn new(opts: LegOptions) -> Self {
        Self {
            media: None,
            rate: 8000,
            clock: 8000,
            latched: None,
            latched_rtcp: None,
            probation: None,
            rx: RxState::default(),
            tx: TxState {
                ssrc: opts.ssrc,
                next_seq: opts.initial_seq,
                last_ts: opts.initial_ts,
                last_at: None,
                relay: None,
                packets: 0,
                octets: 0,
            },
            decoder: None,
            encoder: None,
            jitter: JitterBuffer::new(8000, opts.jitter),
            jitter_settings: opts.jitter,
            configured_at: None,
            next_rtcp: None,
            proven: !opts.await_peer,
            last_rtcp: None,
            srtp: None,
            stats: LegStats::default(),
        }
    }

    pub fn media(&self) -> Option<&LegMedia> {
        self.media.as_ref()
    }

    pub fn ssrc(&self) -> u32 {
        self.tx.ssrc
    }

    /// PCM rate of the negotiated codec (what its decoder yields and its encoder takes).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// RTP timestamp rate of the negotiated codec.
    pub fn clock(&self) -> u32 {
        self.clock
    }

    /// PCM samples in one 20 ms frame.
    pub fn frame_samples(&self) -> usize {
        frame_samples(self.rate)
    }

    /// RTP timestamp ticks in one 20 ms frame.
    pub fn frame_ticks(&self) -> u32 {
        frame_samples(self.clock) as u32
    }

    /// Apply a new offer/answer. A codec change rebuilds codecs and the jitter buffer; the
    /// SSRC and sequence space carry on.
    pub fn configure(&mut self, now: Instant, media: LegMedia) -> Result<(), LegError> {
        let codec_changed = self.media.as_ref().is_none_or(|m| m.codec != media.codec);
        if codec_changed {
            self.rate = pcm_rate(media.codec);
            self.clock = media.codec.clock_rate();
            self.decoder = Some(Decoder::new(media.codec)?);
            self.encoder = Some(Encoder::new(media.codec)?);
            // The jitter buffer orders and spaces packets by their timestamps.
            self.jitter = JitterBuffer::new(self.clock, self.jitter_settings);
        }
        // New keys (or none) make new contexts; the same keys in a re-INVITE keep them, and
        // with them the rollover counters and replay windows.
        if self.srtp.as_ref().map(|s| s.params) != media.srtp {
            self.srtp = media.srtp.map(Srtp::new).transpose()?;
            self.stats.srtp = media.srtp.map(|p| p.suite);
        }
        // A new address in SDP (re-INVITE moved the media) wins until packets say otherwise.
        if self.media.as_ref().and_then(|m| m.remote) != media.remote {
            self.latched = None;
            self.latched_rtcp = None;
            self.probation = None;
        }
        self.media = Some(media);
        // The silence timer restarts with every renegotiation (resume from hold).
        self.configured_at = Some(now);
        self.next_rtcp.get_or_insert(now + RTCP_INTERVAL);
        Ok(())
    }

    /// Where RTP goes: the latched source, else the SDP address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched
            .or_else(|| self.media.as_ref().and_then(|m| m.remote))
    }

    fn rtcp_destination(&self) -> Option<SocketAddr> {
        self.latched_rtcp.or_else(|| {
            self.destination().map(|mut a| {
                a.set_port(a.port().wrapping_add(1));
                a
            })
        })
    }

    pub fn sends(&self) -> bool {
        self.proven
            && self.media.as_ref().is_some_and(|m| m.direction.sends())
            && self.destination().is_some()
    }

    /// Whether the peer's address is proven, so that we may send to it.
    pub fn proven(&self) -> bool {
        self.proven
    }

    /// The dialog is confirmed: the peer may be sent to.
    pub fn confirm(&mut self) {
        self.proven = true;
    }

    pub fn receives(&self) -> bool {
        self.media.as_ref().is_some_and(|m| m.direction.receives())
    }

    /// Parse, account and classify one datagram from the RTP socket.
    pub fn receive<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &'a [u8],
    ) -> Option<Inbound<'a>> {
        let Some(media) = self.media else {
            self.stats.rejected += 1;
            return None;
        };
        let Some((header, mut payload)) = parse_rtp(data) else {
            self.stats.rejected += 1;
            return None;
        };
        if header.padding {
            let pad = payload.last().copied().map_or(0, usize::from);
            if pad == 0 || pad > payload.len() {
                self.stats.rejected += 1;
                return None;
            }
            payload = &payload[..payload.len() - pad];
        }
        let pt = header.payload_type;
        let is_audio = pt == media.payload_type;
        let is_dtmf = media.dtmf.is_some_and(|(p, _)| p == pt);
        // 13 is comfort noise (RFC 3389): accepted, keeps the call alive, not played.
        if !is_audio && !is_dtmf && pt != 13 {
            self.stats.rejected += 1;
            return None;
        }
        if !self.admit(now, from, &header, media.remote) {
            self.stats.strangers += 1;
            return None;
        }
        self.account(now, &header, data.len());
        Some(if is_audio {
            Inbound::Audio { header, payload }
        } else if is_dtmf {
            Inbound::Dtmf { header, payload }
        } else {
            Inbound::Ignored
        })
    }

    /// Whether a packet from `from` speaks for this party, latching its source when it
    /// may (symmetric RTP, RFC 4961: we answer where the packets come from, which is what
    /// gets through a NAT).
    ///
    /// The SDP address is trusted at once. Any other source must send [`PROBATION`]
    /// packets in sequence first; once a source is latched, one on the same host as it or
    /// as the SDP address may take over the same way (a NAT rebinding a port). Another
    /// host may take over only after the latched source has been quiet for [`QUIET`], with
    /// [`TAKEOVER`] packets in sequence (a phone that changed networks without a
    /// re-INVITE): a stranger can neither steer our audio to itself nor inject audio or
    /// DTMF while the peer is talking, however fast it sends. A re-INVITE starts the
    /// learning over.
    fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header,
        sdp: Option<SocketAddr>,
    ) -> bool {
        if self.latched == Some(from) {
            return true;
        }
        if self.latched.is_none() && sdp == Some(from) {
            self.latch(from);
            return true;
        }
        let related = |a: Option<SocketAddr>| a.is_some_and(|a| a.ip() == from.ip());
        let needed = if self.latched.is_some() && !related(self.latched) && !related(sdp) {
            let quiet = self
                .rx
                .last_rx
                .is_none_or(|t| now.saturating_duration_since(t) >= QUIET);
            if !quiet {
                // Its count starts over once the peer is quiet, not before.
                if self.probation.is_some_and(|(a, ..)| a == from) {
                    self.probation = None;
                }
                return false;
            }
            TAKEOVER
        } else {
            PROBATION
        };
        let in_order = match self.probation {
            Some((addr, ssrc, last, n)) if addr == from && ssrc == h.ssrc => {
                (h.sequence_number == last.wrapping_add(1)).then_some(n + 1)
            }
            _ => None,
        };
        let n = in_order.unwrap_or(1);
        if n >= needed {
            self.probation = None;
            self.latch(from);
            return true;
        }
        self.probation = Some((from, h.ssrc, h.sequence_number, n));
        false
    }

    fn latch(&mut self, from: SocketAddr) {
        if self.latched.is_some() {
            self.stats.relatched += 1;
        }
        self.latched = Some(from);
        self.stats.latched = Some(from);
        self.proven = true;
        // RTCP follows its RTP: a report from elsewhere is not this party's.
        if self.latched_rtcp.is_some_and(|r| r.ip() != from.ip()) {
            self.latched_rtcp = None;
        }
    }

    fn account(&mut self, now: Instant, h: &Header, len: usize) {
        let rx = &mut self.rx;
        rx.last_rx = Some(now);
        self.stats.packets_in += 1;
        self.stats.octets_in += len as u64;
        let seq = h.sequence_number;
        if rx.ssrc != Some(h.ssrc) {
            // A new source: statistics start over (RFC 3550 A.1 init_seq).
            *rx = RxState {
                ssrc: Some(h.ssrc),
                base_seq: u32::from(seq),
                max_seq: seq,
                last_rx: Some(now),
                last_sr: rx.last_sr,
                ..RxState::default()
            };
        } else {
            let delta = seq.wrapping_sub(rx.max_seq);
            if delta == 0 || delta >= 0x8000 {
                self.stats.duplicates_or_reordered += 1;
            } else if delta < 3000 {
                if seq < rx.max_seq {
                    rx.cycles += 1 << 16;
                }
                rx.max_seq = seq;
            } else {
                // A big jump: the sender restarted its sequence; follow it.
                rx.base_seq = u32::from(seq);
                rx.max_seq = seq;
                rx.cycles = 0;
                rx.received = 0;
                rx.expected_prior = 0;
                rx.received_prior = 0;
            }
        }
        rx.received += 1;
        let epoch = *rx.epoch.get_or_insert(now);
        let arrival = (now.duration_since(epoch).as_micros() as u64 * u64::from(self.clock)
            / 1_000_000) as i64;
        let transit = arrival - i64::from(h.timestamp);
        if let Some(prev) = rx.transit {
            let d = (transit - prev).unsigned_abs() as f64;
            // A timestamp jump is not jitter.
            if d < f64::from(self.clock) {
                rx.jitter += (d - rx.jitter) / 16.0;
            }
        }
        rx.transit = Some(transit);
        self.stats.lost = rx.expected() as i64 - rx.received as i64;
        self.stats.jitter_ms = rx.jitter * 1000.0 / f64::from(self.clock);
    }

    /// RTCP from the peer: remember its address and the last SR for our reports. Only the
    /// host the RTP is latched to (or, before that, the SDP address's host) is heard.
    pub fn receive_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let host = self
            .latched
            .or_else(|| self.media.as_ref().and_then(|m| m.remote))
            .map(|a| a.ip());
        if host != Some(from.ip()) {
            self.stats.strangers += 1;
            return;
        }
        let Some(sr_ntp) = parse_rtcp(data) else {
            self.stats.rejected += 1;
            return;
        };
        self.stats.rtcp_in += 1;
        self.last_rtcp = Some(now);
        self.latched_rtcp = Some(from);
        if let Some(ntp) = sr_ntp {
            self.rx.last_sr = Some(((ntp >> 16) as u32, now));
        }
    }

    /// Authenticate and decrypt an SRTP datagram before anything reads it.
    pub(crate) fn open_rtp(&mut self, data: &[u8]) -> Opened {
        let Some(srtp) = self.srtp.as_mut() else {
            return Opened::Plain;
        };
        let Some(header) = srtp_header(data) else {
            self.stats.rejected += 1;
            return Opened::Dropped;
        };
        match srtp.rx.decrypt_rtp_with_header(data, &header) {
            Ok(plain) => Opened::Decrypted(plain),
            Err(e) => {
                self.count_srtp_error(&e);
                Opened::Dropped
            }
        }
    }

    /// Authenticate and decrypt an SRTCP datagram.
    pub(crate) fn open_rtcp(&mut self, data: &[u8]) -> Opened {
        let Some(srtp) = self.srtp.as_mut() else {
            return Opened::Plain;
        };
        // Shorter than header, SSRC and trailer: webrtc-rs would index past its end. The
        // E flag must be set: the crate passes an unencrypted SRTCP packet through without
        // checking its tag, and we never agree to unencrypted SRTCP.
        if data.len() < 8 + SRTCP_TRAILER || data[data.len() - SRTCP_TRAILER] >> 7 == 0 {
            self.stats.srtp_auth_failed += 1;
            return Opened::Dropped;
        }
        match srtp.rx.decrypt_rtcp(data) {
            Ok(plain) => Opened::Decrypted(plain),
            Err(e) => {
                self.count_srtp_error(&e);
                Opened::Dropped
            }
        }
    }

    fn count_srtp_error(&mut self, e: &webrtc_srtp::Error) {
        match e {
            webrtc_srtp::Error::SrtpSsrcDuplicated(..)
            | webrtc_srtp::Error::SrtcpSsrcDuplicated(..) => self.stats.srtp_replayed += 1,
            _ => self.stats.srtp_auth_failed += 1,
        }
    }

    /// Encrypt what we send on an SRTP leg; `None` (never plain text) if that fails.
    /// `header`: the packet's, when the caller built it (else parsed here).
    fn seal_rtp(&mut self, packet: Vec<u8>, header: Option<&Header>) -> Option<Vec<u8>> {
        let Some(srtp) = self.srtp.as_mut() else {
            return Some(packet);
        };
        let parsed;
        let header = match header {
            Some(h) => h,
            None => {
                parsed = srtp_header(&packet)?;
                &parsed
            }
        };
        // The cipher's output is a fresh Vec behind the Bytes: taken back without a copy.
        srtp.tx
            .encrypt_rtp_with_header(&packet, header)
            .ok()
            .map(Vec::from)
    }

    /// When the last RTP packet arrived.
    pub fn last_rx(&self) -> Option<Instant> {
        self.rx.last_rx
    }

    /// How long the peer has been silent, counted from the last packet or the last
    /// renegotiation, and whether the call is two-way. On hold either way a peer may
    /// legitimately stop sending RTP (many phones do when they hold us with a=sendonly),
    /// so there its RTCP counts as a sign of life too; the caller of this method applies a
    /// longer limit.
    pub fn silent_for(&self, now: Instant) -> Option<(Duration, bool)> {
        let two_way = self.media.as_ref()?.direction == Direction::SendRecv;
        let rtcp = if two_way { None } else { self.last_rtcp };
        let since = [self.rx.last_rx, self.configured_at, rtcp]
            .into_iter()
            .flatten()
            .max()?;
        Some((now.saturating_duration_since(since), two_way))
    }

    /// Sequence, timestamp and marker for a frame we generate (prompt, hold audio,
    /// transcode). After a pause the timestamp jumps by the wall-clock gap and the marker
    /// flags the new talk spurt (RFC 3551 §4.1). `ticks`: the frame's length on the RTP
    /// clock.
    pub(crate) fn stamp_generated(&mut self, now: Instant, ticks: u32) -> (u16, u32, bool) {
        let tx = &mut self.tx;
        let (ts, marker) = match tx.last_at {
            Some(last)
                if tx.relay.is_none() && now.duration_since(last) <= Duration::from_millis(60) =>
            {
                (tx.last_ts.wrapping_add(ticks), false)
            }
            Some(last) => (
                tx.last_ts
                    .wrapping_add(elapsed_samples(last, now, self.clock, ticks)),
                true,
            ),
            None => (tx.last_ts, true),
        };
        tx.relay = None;
        let seq = tx.next_seq;
        tx.next_seq = seq.wrapping_add(1);
        tx.last_ts = ts;
        tx.last_at = Some(now);
        (seq, ts, marker)
    }

    /// Map a relayed packet into our SSRC/sequence/timestamp space. The offsets are fixed
    /// when the relayed source starts, so its own gaps and reordering pass through.
    pub(crate) fn stamp_relayed(&mut self, now: Instant, h: &Header) -> (u16, u32, bool) {
        let frame = (self.clock / 50).max(1);
        let tx = &mut self.tx;
        let switched = tx.relay.is_none_or(|(ssrc, _, _)| ssrc != h.ssrc);
        if switched {
            let ts = match tx.last_at {
                Some(last) => tx
                    .last_ts
                    .wrapping_add(elapsed_samples(last, now, self.clock, frame)),
                None => tx.last_ts,
            };
            tx.relay = Some((
                h.ssrc,
                tx.next_seq.wrapping_sub(h.sequence_number),
                ts.wrapping_sub(h.timestamp),
            ));
        }
        let (_, seq_off, ts_off) = tx.relay.unwrap_or((0, 0, 0));
        let seq = h.sequence_number.wrapping_add(seq_off);
        let ts = h.timestamp.wrapping_add(ts_off);
        // Only a newer packet moves our position; a reordered one keeps its place.
        if seq.wrapping_sub(tx.next_seq) < 0x8000 || switched {
            tx.next_seq = seq.wrapping_add(1);
            tx.last_ts = ts;
        }
        tx.last_at = Some(now);
        (seq, ts, h.marker || switched)
    }

    /// Serialise (and on an SRTP leg, encrypt) one packet of ours.
    pub(crate) fn packet(
        &mut self,
        pt: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let header = Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc: self.tx.ssrc,
            ..Header::default()
        };
        let mut out = vec![0u8; header.marshal_size() + payload.len()];
        let n = header.marshal_to(&mut out).unwrap_or(12);
        out.truncate(n);
        out.extend_from_slice(payload);
        let out = self.seal_rtp(out, Some(&header))?;
        self.count_out(out.len(), payload.len());
        Some(out)
    }

    /// Relay: the peer's (decrypted) datagram with our header fields written over it in
    /// place, encrypted again with our key on an SRTP leg.
    pub(crate) fn rewrite(
        &mut self,
        data: &[u8],
        pt: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        payload_len: usize,
    ) -> Option<Vec<u8>> {
        let mut out = data.to_vec();
        out[1] = (u8::from(marker) << 7) | (pt & 0x7f);
        out[2..4].copy_from_slice(&seq.to_be_bytes());
        out[4..8].copy_from_slice(&ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.tx.ssrc.to_be_bytes());
        let out = self.seal_rtp(out, None)?;
        self.stats.relayed += 1;
        self.count_out(out.len(), payload_len);
        Some(out)
    }

    fn count_out(&mut self, len: usize, payload: usize) {
        self.stats.packets_out += 1;
        self.stats.octets_out += len as u64;
        self.tx.packets = self.tx.packets.wrapping_add(1);
        self.tx.octets = self.tx.octets.wrapping_add(payload as u32);
    }

    /// An SR (we have sent) or RR every [`RTCP_INTERVAL`], with one report block on the
    /// peer's stream. `ntp` is the wall clock as a 64-bit NTP timestamp.
    pub(crate) fn poll_rtcp(&mut self, now: Instant, ntp: u64) -> Option<(SocketAddr, Vec<u8>)> {
        let due = self.next_rtcp?;
        if now < due {
            return None;
        }
        self.next_rtcp = Some(now + RTCP_INTERVAL);
        if !self.proven {
            return None;
        }
        let to = self.rtcp_destination()?;
        let mut reports = Vec::new();
        if let Some(ssrc) = self.rx.ssrc {
            let rx = &mut self.rx;
            let expected = rx.expected();
            let expected_interval = expected.saturating_sub(rx.expected_prior);
            let received_interval = rx.received.saturating_sub(rx.received_prior);
            rx.expected_prior = expected;
            rx.received_prior = rx.received;
            let lost_interval = expected_interval.saturating_sub(received_interval);
            let fraction = (lost_interval << 8)
                .checked_div(expected_interval)
                .map_or(0, |f| f.min(255) as u8);
            let (lsr, dlsr) = match rx.last_sr {
                Some((mid, at)) => (mid, (now.duration_since(at).as_secs_f64() * 65536.0) as u32),
                None => (0, 0),
            };
            reports.push(ReceptionReport {
                ssrc,
                fraction_lost: fraction,
                total_lost: (expected.saturating_sub(rx.received)).min(0x7f_ffff) as u32,
                last_sequence_number: rx.ext_max() as u32,
                jitter: rx.jitter as u32,
                last_sender_report: lsr,
                delay: dlsr,
            });
        }
        let packet: Box<dyn rtcp::packet::Packet + Send + Sync> = if self.tx.last_at.is_some() {
            Box::new(SenderReport {
                ssrc: self.tx.ssrc,
                ntp_time: ntp,
                rtp_time: self.tx.last_ts,
                packet_count: self.tx.packets,
                octet_count: self.tx.octets,
                reports,
                profile_extensions: Bytes::new(),
            })
        } else {
            Box::new(ReceiverReport {
                ssrc: self.tx.ssrc,
                reports,
                profile_extensions: Bytes::new(),
            })
        };
        let mut data = packet.marshal().ok()?.to_vec();
        if let Some(srtp) = self.srtp.as_mut() {
            data = Vec::from(srtp.tx.encrypt_rtcp(&data).ok()?);
        }
        self.stats.rtcp_out += 1;
        Some((to, data))
    }

    /// Sequence number for a telephone-event packet; its timestamp is the event's.
    pub(crate) fn stamp_event(&mut self, now: Instant) -> u16 {
        let seq = self.tx.next_seq;
        self.tx.next_seq = seq.wrapping_add(1);
        self.tx.last_at = Some(now);
        seq
    }

    /// Continue audio after an event of known length.
    pub(crate) fn skip_to(&mut self, ts: u32) {
        self.tx.last_ts = ts;
    }

    pub fn stats(&self) -> LegStats {
        let mut s = self.stats.clone();
        s.jitter_buffer = self.jitter.stats();
        s
    }
}

/// Wall-clock gap since `last`, in RTP units, at least one frame and rounded to frames.
fn elapsed_samples(last: Instant, now: Instant, rate: u32, frame: u32) -> u32 {
    let us = now.duration_since(last).as_micros() as u64;
    let samples = us * u64::from(rate) / 1_000_000;
    let frames = ((samples + u64::from(frame) / 2) / u64::from(frame)).max(1);
    (frames * u64::from(frame)) as u32
}
