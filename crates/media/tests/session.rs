//! The media session on a virtual clock: every behaviour the gateway relies on, without
//! sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use rtp::header::Header;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use warmline_media::dtmf::EventPayload;
use warmline_media::{
    Clip, JitterSettings, LegMedia, LegOptions, LegSetup, MediaEvent, Output, Session, Transmit,
};
use warmline_signaling::{CodecName, Direction, SrtpKey, SrtpParams, SrtpSuite};
use webrtc_util::marshal::{Marshal, Unmarshal};

const CALLER: u32 = 0;
const AGENT: u32 = 1;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn setup(ssrc: u32) -> LegSetup {
    LegSetup {
        options: LegOptions {
            ssrc,
            initial_seq: 65530,
            initial_ts: 4_294_967_000,
            jitter: JitterSettings::default(),
            await_peer: false,
        },
        tap: false,
        record: false,
        rtp_timeout: None,
        hold_timeout: None,
        hold_probe: None,
    }
}

fn media(codec: CodecName, port: u16) -> LegMedia {
    LegMedia {
        codec,
        payload_type: match codec {
            CodecName::Pcmu => 0,
            CodecName::Pcma => 8,
            CodecName::Opus => 111,
            CodecName::G722 => 9,
        },
        dtmf: Some((101, 8000)),
        remote: Some(addr(port)),
        direction: Direction::SendRecv,
        srtp: None,
    }
}

struct Run {
    s: Session,
    now: Instant,
    sent: Vec<Transmit>,
    events: Vec<MediaEvent>,
    taps: Vec<Vec<i16>>,
}

impl Run {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            s: Session::new(now, Duration::from_secs(1_700_000_000)),
            now,
            sent: Vec::new(),
            events: Vec::new(),
            taps: Vec::new(),
        }
    }

    /// Add a leg already negotiated with `codec`, its peer at 127.0.0.1:`port`.
    fn leg(&mut self, id: u32, setup: LegSetup, codec: CodecName, port: u16) {
        self.s.add_leg(id, setup);
        self.s.configure(self.now, id, media(codec, port)).unwrap();
    }

    fn drain(&mut self) {
        while let Some(o) = self.s.poll_output() {
            match o {
                Output::Transmit(t) => self.sent.push(t),
                Output::Event(e) => self.events.push(e),
                Output::Tap { pcm, .. } => self.taps.push(pcm),
                Output::Record { .. } => {}
            }
        }
    }

    /// Advance the clock by `ms`, ticking every 20 ms.
    fn run_ms(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        while self.s.poll_timeout() <= end {
            self.now = self.now.max(self.s.poll_timeout());
            self.s.handle_tick(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn rtp(&mut self, leg: u32, from: SocketAddr, data: &[u8]) {
        self.s.handle_rtp(self.now, leg, from, data);
        self.drain();
    }

    fn rtp_to(&self, leg: u32) -> Vec<(Header, Vec<u8>, SocketAddr)> {
        self.sent
            .iter()
            .filter(|t| t.leg == leg && !t.rtcp)
            .map(|t| {
                let mut b = &t.data[..];
                let h = Header::unmarshal(&mut b).unwrap();
                (h, b.to_vec(), t.to)
            })
            .collect()
    }
}

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let p = rtp::packet::Packet {
        header: Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Header::default()
        },
        payload: Bytes::copy_from_slice(payload),
    };
    p.marshal().unwrap().to_vec()
}

fn tone(rate: u32, n: usize, start: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (start + i) as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect()
}

/// Sequence numbers step by one and timestamps by one frame, on one SSRC.
fn assert_continuous(pkts: &[(Header, Vec<u8>, SocketAddr)], frame: u32) {
    for w in pkts.windows(2) {
        assert_eq!(w[1].0.ssrc, w[0].0.ssrc);
        assert_eq!(
            w[1].0.sequence_number,
            w[0].0.sequence_number.wrapping_add(1)
        );
        assert_eq!(w[1].0.timestamp, w[0].0.timestamp.wrapping_add(frame));
    }
}

#[test]
fn an_unproven_peer_gets_nothing_until_the_ack_or_its_first_packet() {
    for proof in ["ack", "packet"] {
        let mut r = Run::new();
        let mut s = setup(0x2222);
        s.options.await_peer = true;
        r.leg(CALLER, s, CodecName::Pcmu, 7000);
        r.s.play(CALLER, 7, Clip::new(8000, tone(8000, 8000, 0)));
        // Ten seconds without an ACK: no greeting, no RTCP to whoever the SDP named.
        r.run_ms(10_000);
        assert!(r.sent.is_empty(), "{proof}: {} sent", r.sent.len());
        match proof {
            "ack" => r.s.confirm(CALLER),
            _ => r.rtp(CALLER, addr(7000), &packet(0, 1, 0, 9, true, &[0xff; 160])),
        }
        r.run_ms(1100);
        let pkts = r.rtp_to(CALLER);
        assert_eq!(pkts.len(), 50, "{proof}: the whole second of the prompt");
        assert!(pkts[0].0.marker);
        // From its first sample: nothing was played to no one meanwhile.
        let first: Vec<u8> = tone(8000, 160, 0)
            .iter()
            .map(|&x| warmline_media::g711::ulaw_encode(x))
            .collect();
        assert_eq!(pkts[0].1, first, "{proof}");
    }
}

#[test]
fn greeting_is_paced_continuous_and_reports_completion() {
    let mut r = Run::new();
    r.leg(CALLER, setup(0x1111), CodecName::Pcmu, 7000);
    r.s.play(CALLER, 42, Clip::new(16000, tone(16000, 16000, 0)));
    r.run_ms(1100);
    let pkts = r.rtp_to(CALLER);
    assert_eq!(pkts.len(), 50, "one second at 20 ms");
    assert!(pkts[0].0.marker);
    assert!(pkts[1..].iter().all(|p| !p.0.marker));
    assert_continuous(&pkts, 160);
    assert!(pkts.iter().all(|p| p.1.len() == 160 && p.2 == addr(7000)));
    // Sequence and timestamp wrapped on the way without a break.
    assert!(pkts.iter().any(|p| p.0.sequence_number < 10));
    assert_eq!(
        r.events,
        vec![MediaEvent::PlayoutDone {
            leg: CALLER,
            id: 42,
            interrupted: false
        }]
    );
}

#[test]
fn relay_same_codec_rewrites_headers_only_and_continues_after_a_prompt() {
    let mut r = Run::new();
    r.leg(CALLER, setup(0x1111), CodecName::Pcmu, 7000);
    r.leg(AGENT, setup(0x2222), CodecName::Pcmu, 8000);
    // The agent hears a briefing first, then the caller.
    r.s.play(AGENT, 1, Clip::new(8000, vec![100; 1600]));
    r.run_ms(200);
    r.s.bridge(CALLER, AGENT);
    let briefing = r.rtp_to(AGENT);
    assert_eq!(briefing.len(), 10);
    for k in 0..25u16 {
        let payload: Vec<u8> = (0..160).map(|i| (i as u8).wrapping_add(k as u8)).collect();
        let p = packet(
            0,
            500 + k,
            90_000 + u32::from(k) * 160,
            0xCAFE,
            k == 0,
            &payload,
        );
        r.rtp(CALLER, addr(7000), &p);
        r.run_ms(20);
    }
    let all = r.rtp_to(AGENT);
    let relayed = &all[10..];
    assert_eq!(relayed.len(), 25);
    assert!(relayed[0].0.marker, "source switch marks a talk spurt");
    assert_continuous(relayed, 160);
    assert_eq!(relayed[0].0.ssrc, 0x2222);
    assert_eq!(
        relayed[0].0.sequence_number,
        briefing[9].0.sequence_number.wrapping_add(1)
    );
    // The gap since the briefing is in real time (20 ms here), not zero.
    assert_eq!(
        relayed[0].0.timestamp,
        briefing[9].0.timestamp.wrapping_add(160)
    );
    for (k, p) in relayed.iter().enumerate() {
        let expect: Vec<u8> = (0..160).map(|i| (i as u8).wrapping_add(k as u8)).collect();
        assert_eq!(p.1, expect, "payload intact");
    }
    assert_eq!(r.s.stats(AGENT).unwrap().relayed, 25);
}

#[test]
fn relay_keeps_the_senders_gaps_and_marks() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    r.leg(AGENT, setup(2), CodecName::Pcmu, 8000);
    r.s.bridge(CALLER, AGENT);
    r.rtp(CALLER, addr(7000), &packet(0, 10, 1000, 9, true, &[1; 160]));
    r.rtp(
        CALLER,
        addr(7000),
        &packet(0, 12, 1320, 9, false, &[1; 160]),
    );
    let out = r.rtp_to(AGENT);
    assert_eq!(
        out[1].0.sequence_number,
        out[0].0.sequence_number.wrapping_add(2)
    );
    assert_eq!(out[1].0.timestamp, out[0].0.timestamp.wrapping_add(320));
}

#[test]
fn transcodes_pcma_to_pcmu_through_the_jitter_buffer() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcma, 7000);
    r.leg(AGENT, setup(2), CodecName::Pcmu, 8000);
    r.s.bridge(CALLER, AGENT);
    for k in 0..50usize {
        let pcm = tone(8000, 160, k * 160);
        let payload: Vec<u8> = pcm
            .iter()
            .map(|&s| warmline_media::g711::alaw_encode(s))
            .collect();
        r.rtp(
            CALLER,
            addr(7000),
            &packet(8, k as u16, (k * 160) as u32, 5, k == 0, &payload),
        );
        r.run_ms(20);
    }
    let out = r.rtp_to(AGENT);
    assert!(out.len() >= 45, "{} frames", out.len());
    assert!(out.iter().all(|p| p.0.payload_type == 0));
    assert_continuous(&out, 160);
    // The audio is the same tone: compare against the source, aligned on the first frame.
    let got: Vec<i16> = out
        .iter()
        .flat_map(|p| p.1.iter().map(|&c| warmline_media::g711::ulaw_decode(c)))
        .collect();
    let want = tone(8000, got.len(), 0);
    let err: f64 = got
        .iter()
        .zip(&want)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        / want.iter().map(|&b| f64::from(b).powi(2)).sum::<f64>();
    assert!(err < 0.01, "relative error {err}");
}

#[test]
fn opus_leg_bridged_to_g711_leg_transcodes_both_ways() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Opus, 7000);
    r.leg(AGENT, setup(2), CodecName::Pcmu, 8000);
    r.s.bridge(CALLER, AGENT);
    let mut enc = warmline_media::codec::Encoder::new(CodecName::Opus).unwrap();
    for k in 0..50usize {
        let mut payload = Vec::new();
        enc.encode(&tone(48000, 960, k * 960), &mut payload)
            .unwrap();
        r.rtp(
            CALLER,
            addr(7000),
            &packet(111, k as u16, (k * 960) as u32, 5, k == 0, &payload),
        );
        let ulaw: Vec<u8> = tone(8000, 160, k * 160)
            .iter()
            .map(|&s| warmline_media::g711::ulaw_encode(s))
            .collect();
        r.rtp(
            AGENT,
            addr(8000),
            &packet(0, k as u16, (k * 160) as u32, 6, k == 0, &ulaw),
        );
        r.run_ms(20);
    }
    let to_agent = r.rtp_to(AGENT);
    let to_caller = r.rtp_to(CALLER);
    assert!(to_agent.len() >= 45 && to_caller.len() >= 45);
    assert_continuous(&to_caller, 960);
    let energy: f64 = to_agent[20..]
        .iter()
        .flat_map(|p| {
            p.1.iter()
                .map(|&c| f64::from(warmline_media::g711::ulaw_decode(c)).powi(2))
        })
        .sum::<f64>()
        / (to_agent.len() - 20) as f64
        / 160.0;
    assert!(
        energy.sqrt() > 3000.0,
        "agent hears the tone: rms {}",
        energy.sqrt()
    );
}

/// Energy of `hz` in `pcm` at `rate`, relative to the whole (Goertzel).
fn tone_share(pcm: &[i16], rate: f64, hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s = f64::from(x) + 2.0 * w.cos() * s1 - s2;
        (s2, s1) = (s1, s);
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 = pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    power / (total * pcm.len() as f64 / 2.0).max(1.0)
}

/// A desk phone on G.722 bridged to an agent on G.711: its 16 kHz audio reaches the speech
/// tap as it is (a 6 kHz tone G.711 could not carry), the agent hears its speech band, and
/// what goes back is G.722 stamped on the 8 kHz RTP clock (160 ticks, 160 bytes a frame).
#[test]
fn g722_leg_taps_wideband_and_transcodes_to_g711() {
    let mut r = Run::new();
    let mut caller = setup(1);
    caller.tap = true;
    r.leg(CALLER, caller, CodecName::G722, 7000);
    r.leg(AGENT, setup(2), CodecName::Pcmu, 8000);
    r.s.bridge(CALLER, AGENT);
    let mut enc = warmline_media::codec::Encoder::new(CodecName::G722).unwrap();
    let voice = |hz: f64, rate: f64, n: usize, start: usize| -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (start + i) as f64 / rate;
                (6000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    };
    for k in 0..50usize {
        // The caller's 440 Hz and 6 kHz together: speech band and the band above it.
        let pcm: Vec<i16> = voice(440.0, 16000.0, 320, k * 320)
            .iter()
            .zip(voice(6000.0, 16000.0, 320, k * 320))
            .map(|(a, b)| a / 2 + b / 2)
            .collect();
        let mut payload = Vec::new();
        enc.encode(&pcm, &mut payload).unwrap();
        assert_eq!(payload.len(), 160);
        r.rtp(
            CALLER,
            addr(7000),
            &packet(9, k as u16, (k * 160) as u32, 5, k == 0, &payload),
        );
        let ulaw: Vec<u8> = voice(600.0, 8000.0, 160, k * 160)
            .iter()
            .map(|&s| warmline_media::g711::ulaw_encode(s))
            .collect();
        r.rtp(
            AGENT,
            addr(8000),
            &packet(0, k as u16, (k * 160) as u32, 6, k == 0, &ulaw),
        );
        r.run_ms(20);
    }
    let tap: Vec<i16> = r.taps[10..].iter().flatten().copied().collect();
    assert!(r.taps.iter().all(|f| f.len() == 320));
    let wide = tone_share(&tap, 16000.0, 6000.0);
    assert!(wide > 0.3, "the tap hears the 6 kHz half: share {wide}");

    let to_agent: Vec<i16> = r.rtp_to(AGENT)[10..]
        .iter()
        .flat_map(|p| p.1.iter().map(|&c| warmline_media::g711::ulaw_decode(c)))
        .collect();
    let speech = tone_share(&to_agent, 8000.0, 440.0);
    assert!(
        speech > 0.6,
        "the agent hears the 440 Hz half: share {speech}"
    );

    let to_caller = r.rtp_to(CALLER);
    assert!(
        to_caller.len() >= 45,
        "{} packets to the caller",
        to_caller.len()
    );
    assert_continuous(&to_caller, 160);
    assert!(
        to_caller
            .iter()
            .all(|p| p.0.payload_type == 9 && p.1.len() == 160)
    );
    let mut dec = warmline_media::codec::Decoder::new(CodecName::G722).unwrap();
    let mut heard = Vec::new();
    for p in &to_caller {
        dec.decode(&p.1, &mut heard);
    }
    let back = tone_share(&heard[3200..], 16000.0, 600.0);
    assert!(
        back > 0.6,
        "the caller hears the agent's 600 Hz: share {back}"
    );
}

#[test]
fn symmetric_rtp_answers_where_packets_come_from() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    r.s.hold(CALLER, Some(Clip::new(8000, vec![1; 800])));
    r.run_ms(40);
    // A NAT: the packets come from elsewhere than the SDP says. After three in sequence
    // (probation), they are answered there.
    let nat = SocketAddr::from(([127, 0, 0, 9], 40000));
    for k in 0..3 {
        r.rtp(
            CALLER,
            nat,
            &packet(0, 1 + k, 160 * u32::from(k), 77, k == 0, &[0xff; 160]),
        );
        assert_eq!(r.s.stats(CALLER).unwrap().latched.is_some(), k == 2);
    }
    r.run_ms(40);
    let out = r.rtp_to(CALLER);
    assert_eq!(out[0].2, addr(7000));
    assert_eq!(out.last().unwrap().2, nat);
    let st = r.s.stats(CALLER).unwrap();
    assert_eq!(st.latched, Some(nat));
    assert_eq!((st.packets_in, st.strangers), (1, 2));
    // The NAT rebinds the port: the same host may take over, after its own probation.
    let rebound = SocketAddr::from(([127, 0, 0, 9], 40002));
    for k in 0..3 {
        r.rtp(
            CALLER,
            rebound,
            &packet(0, 4 + k, 480 + 160 * u32::from(k), 77, false, &[0xff; 160]),
        );
    }
    let st = r.s.stats(CALLER).unwrap();
    assert_eq!((st.latched, st.relatched), (Some(rebound), 1));
}

#[test]
fn a_stranger_can_neither_take_the_media_nor_press_keys_however_fast_it_sends() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    r.s.set_tap(CALLER, true);
    let stranger = SocketAddr::from(([127, 0, 0, 2], 41000));
    let mut seq = 0u16;
    for frame in 0..50u16 {
        // The caller talks from its SDP address, one packet per 20 ms...
        r.rtp(
            CALLER,
            addr(7000),
            &packet(
                0,
                frame,
                160 * u32::from(frame),
                5,
                frame == 0,
                &[0x7f; 160],
            ),
        );
        // ...while the stranger sends twenty in order, audio and a DTMF 0, every 20 ms.
        for _ in 0..20 {
            seq = seq.wrapping_add(1);
            let dtmf = EventPayload {
                event: 0,
                end: true,
                volume: 10,
                duration: 800,
            };
            let data = if seq % 2 == 0 {
                packet(101, seq, 99, 666, false, &dtmf.to_bytes())
            } else {
                packet(0, seq, 160 * u32::from(seq), 666, false, &[0x00; 160])
            };
            r.rtp(CALLER, stranger, &data);
        }
        r.s.handle_rtcp(r.now, CALLER, stranger, &[0x80, 201, 0, 1, 0, 0, 0, 9]);
        r.run_ms(20);
    }
    let st = r.s.stats(CALLER).unwrap();
    assert_eq!(st.latched, Some(addr(7000)));
    assert_eq!(st.relatched, 0);
    assert_eq!(st.strangers, 1000 + 50);
    assert_eq!(st.packets_in, 50);
    assert_eq!(st.rtcp_in, 0);
    assert!(
        !r.events
            .iter()
            .any(|e| matches!(e, MediaEvent::Dtmf { .. })),
        "{:?}",
        r.events
    );
    assert!(r.rtp_to(CALLER).iter().all(|p| p.2 == addr(7000)));
}

#[test]
fn another_host_takes_over_only_after_the_peer_went_quiet_and_with_a_second_in_sequence() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    let moved = SocketAddr::from(([127, 0, 0, 4], 9000));
    let mut seq = 100u16;
    // The peer talks; the new host's packets in between count for nothing.
    for k in 0..60u16 {
        r.rtp(
            CALLER,
            addr(7000),
            &packet(0, k, 160 * u32::from(k), 5, k == 0, &[0xff; 160]),
        );
        r.rtp(CALLER, moved, &packet(0, seq, 0, 6, false, &[0xff; 160]));
        seq += 1;
        r.run_ms(20);
    }
    assert_eq!(r.s.stats(CALLER).unwrap().latched, Some(addr(7000)));
    // The peer goes quiet (it moved networks); after a second, the new host's sustained
    // stream in sequence takes over, at its fiftieth packet.
    r.run_ms(1000);
    for k in 0..49u16 {
        r.rtp(
            CALLER,
            moved,
            &packet(0, seq + k, 0, 6, false, &[0xff; 160]),
        );
        r.run_ms(20);
    }
    assert_eq!(r.s.stats(CALLER).unwrap().latched, Some(addr(7000)));
    r.rtp(
        CALLER,
        moved,
        &packet(0, seq + 49, 0, 6, false, &[0xff; 160]),
    );
    let st = r.s.stats(CALLER).unwrap();
    assert_eq!((st.latched, st.relatched), (Some(moved), 1));
}

#[test]
fn a_new_address_in_sdp_starts_the_learning_over() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    r.rtp(CALLER, addr(7000), &packet(0, 1, 0, 5, true, &[0xff; 160]));
    assert_eq!(r.s.stats(CALLER).unwrap().latched, Some(addr(7000)));
    // A re-INVITE moves the media to another host: it is trusted at once, the old one
    // is now a stranger.
    let moved = SocketAddr::from(([127, 0, 0, 3], 9000));
    let mut m = media(CodecName::Pcmu, 7000);
    m.remote = Some(moved);
    r.s.configure(r.now, CALLER, m).unwrap();
    r.rtp(
        CALLER,
        addr(7000),
        &packet(0, 2, 160, 5, false, &[0xff; 160]),
    );
    r.rtp(CALLER, moved, &packet(0, 1, 0, 6, true, &[0xff; 160]));
    let st = r.s.stats(CALLER).unwrap();
    assert_eq!(st.latched, Some(moved));
}

#[test]
fn an_extension_element_running_past_its_block_is_rejected_not_a_crash() {
    // One-byte header extension (0xBEDE) of one word whose element claims 16 bytes: the
    // rtp crate's parser panicked on it, killing the call's media task.
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    let mut p = vec![0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x1f, 0, 0, 0]);
    p.extend_from_slice(&[0xff; 6]);
    r.rtp(CALLER, addr(7000), &p);
    // Its bounds are the block's, which this packet keeps: it plays, extension skipped.
    assert_eq!(r.s.stats(CALLER).unwrap().packets_in, 1);
    // A block longer than the packet is not RTP.
    let mut q = vec![0x90, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 9];
    q.extend_from_slice(&[0xbe, 0xde, 0, 9, 0x1f]);
    r.rtp(CALLER, addr(7000), &q);
    let st = r.s.stats(CALLER).unwrap();
    assert_eq!((st.packets_in, st.rejected), (1, 1));
}

#[test]
fn rtcp_is_checked_as_rfc_3550_says_before_anything_is_read() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
    // RR + a transport-layer NACK (205/1) with one FCI word: valid, counted.
    let mut good = rr.to_vec();
    good.extend_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 9, 0, 0, 0, 1, 0, 7, 0, 0]);
    r.s.handle_rtcp(r.now, CALLER, addr(7001), &good);
    // The same NACK claiming more words than the datagram has (the rtcp crate's parser
    // panicked on NACKs like it), an SDES first, version 1: rejected.
    let mut long = rr.to_vec();
    long.extend_from_slice(&[0x81, 205, 0, 9, 0, 0, 0, 9, 0, 0, 0, 1]);
    let sdes_first = [0x81, 202, 0, 1, 0, 0, 0, 9];
    let v1 = [0x40, 201, 0, 1, 0, 0, 0, 9];
    for bad in [&long[..], &sdes_first[..], &v1[..], &[0x80, 201][..]] {
        r.s.handle_rtcp(r.now, CALLER, addr(7001), bad);
    }
    let st = r.s.stats(CALLER).unwrap();
    assert_eq!((st.rtcp_in, st.rejected), (1, 4));
}

#[test]
fn wrong_payload_type_and_garbage_are_rejected_and_counted() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    r.rtp(CALLER, addr(7000), &packet(96, 1, 1, 7, false, &[0; 20]));
    r.rtp(CALLER, addr(7000), &[0x80, 0]);
    r.rtp(CALLER, addr(7000), b"hello world, not rtp at all");
    let st = r.s.stats(CALLER).unwrap();
    assert_eq!(st.rejected, 3);
    assert_eq!(st.packets_in, 0);
}

#[test]
fn dtmf_digits_are_decoded_once_and_sent_as_trains() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    for (n, digit_event) in [(0u16, 1u8), (10, 11)] {
        for k in 0..6u16 {
            let p = EventPayload {
                event: digit_event,
                end: k >= 3,
                volume: 10,
                duration: 160 * (k + 1).min(3),
            };
            let ts = 8000 + u32::from(n) * 800;
            r.rtp(
                CALLER,
                addr(7000),
                &packet(101, n + k, ts, 3, k == 0, &p.to_bytes()),
            );
        }
    }
    let digits: Vec<char> = r
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf { digit, .. } => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec!['1', '#']);

    r.s.send_dtmf(CALLER, "5");
    r.run_ms(300);
    let out = r.rtp_to(CALLER);
    let events: Vec<_> = out.iter().filter(|p| p.0.payload_type == 101).collect();
    assert_eq!(events.len(), 8);
    assert!(events[0].0.marker);
    assert!(
        events
            .iter()
            .all(|p| p.0.timestamp == events[0].0.timestamp)
    );
    assert_eq!(EventPayload::parse(&events[7].1).unwrap().event, 5);
    assert!(EventPayload::parse(&events[7].1).unwrap().end);
}

#[test]
fn silence_times_out_but_not_on_hold() {
    let mut r = Run::new();
    let mut s = setup(1);
    s.rtp_timeout = Some(Duration::from_secs(2));
    r.leg(CALLER, s, CodecName::Pcmu, 7000);
    for k in 0..50 {
        r.rtp(
            CALLER,
            addr(7000),
            &packet(0, k, u32::from(k) * 160, 3, false, &[0xff; 160]),
        );
        r.run_ms(20);
    }
    r.run_ms(1900);
    assert!(r.events.is_empty());
    r.run_ms(200);
    assert!(
        matches!(r.events[..], [MediaEvent::RtpTimeout { leg: CALLER, silent_ms }] if silent_ms >= 2000)
    );

    // The same silence while the peer holds us (we only receive nothing): no timeout.
    let mut r = Run::new();
    r.s.add_leg(CALLER, s);
    let mut m = media(CodecName::Pcmu, 7000);
    m.direction = Direction::SendOnly;
    r.s.configure(r.now, CALLER, m).unwrap();
    r.run_ms(10_000);
    assert!(r.events.is_empty());
    // Resume restarts the clock rather than firing at once.
    m.direction = Direction::SendRecv;
    r.s.configure(r.now, CALLER, m).unwrap();
    r.run_ms(1000);
    assert!(r.events.is_empty());
    r.run_ms(1100);
    assert_eq!(r.events.len(), 1);

    // On hold with a hold timeout: the peer's RTCP keeps the call; when the RTCP stops
    // too (the far end vanished), the call times out.
    let mut s = setup(1);
    s.rtp_timeout = Some(Duration::from_secs(2));
    s.hold_timeout = Some(Duration::from_secs(20));
    let mut r = Run::new();
    r.s.add_leg(CALLER, s);
    let mut m = media(CodecName::Pcmu, 7000);
    m.direction = Direction::SendOnly;
    r.s.configure(r.now, CALLER, m).unwrap();
    // An RR from the peer every 5 s for a minute.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
    for _ in 0..12 {
        r.run_ms(5000);
        r.s.handle_rtcp(r.now, CALLER, addr(7001), &rr);
    }
    assert!(r.events.is_empty(), "{:?}", r.events);
    r.run_ms(19_000);
    assert!(r.events.is_empty());
    r.run_ms(1100);
    assert!(
        matches!(r.events[..], [MediaEvent::RtpTimeout { leg: CALLER, silent_ms }] if silent_ms >= 20_000),
        "{:?}",
        r.events
    );
}

#[test]
fn a_silent_held_peer_is_reported_quiet_each_probe_interval_until_it_speaks() {
    let mut s = setup(1);
    s.rtp_timeout = Some(Duration::from_secs(2));
    s.hold_timeout = Some(Duration::from_secs(300));
    s.hold_probe = Some(Duration::from_secs(30));
    let mut r = Run::new();
    r.s.add_leg(CALLER, s);
    let mut m = media(CodecName::Pcmu, 7000);
    m.direction = Direction::SendOnly;
    r.s.configure(r.now, CALLER, m).unwrap();
    r.run_ms(29_900);
    assert!(r.events.is_empty(), "{:?}", r.events);
    r.run_ms(200);
    assert!(
        matches!(r.events[..], [MediaEvent::Quiet { leg: CALLER, silent_ms }] if silent_ms >= 30_000),
        "{:?}",
        r.events
    );
    r.events.clear();
    r.run_ms(30_000);
    assert_eq!(r.events.len(), 1, "a second interval, a second report");
    r.events.clear();
    // An RR is a sign of life: the count starts again from it.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
    r.s.handle_rtcp(r.now, CALLER, addr(7001), &rr);
    r.run_ms(29_000);
    assert!(r.events.is_empty(), "{:?}", r.events);
    // Within an idle tick (250 ms) of the interval.
    r.run_ms(1_300);
    assert!(
        matches!(r.events[..], [MediaEvent::Quiet { silent_ms, .. }] if silent_ms < 31_000),
        "{:?}",
        r.events
    );
    r.events.clear();
    // Two-way, the probe does not apply (the RTP timeout does).
    m.direction = Direction::SendRecv;
    r.s.configure(r.now, CALLER, m).unwrap();
    r.run_ms(1_900);
    assert!(r.events.is_empty(), "{:?}", r.events);
}

#[test]
fn tap_gets_16khz_frames_and_hold_bridge_ignores_inbound() {
    let mut r = Run::new();
    let mut s = setup(1);
    s.tap = true;
    r.leg(CALLER, s, CodecName::Pcmu, 7000);
    r.leg(AGENT, setup(2), CodecName::Pcmu, 8000);
    r.s.bridge(CALLER, AGENT);
    for k in 0..20u16 {
        r.rtp(
            CALLER,
            addr(7000),
            &packet(0, k, u32::from(k) * 160, 3, false, &[0x10; 160]),
        );
        r.run_ms(20);
    }
    assert!(r.taps.len() >= 17, "{} tap frames", r.taps.len());
    assert!(r.taps.iter().all(|f| f.len() == 320));
    let relayed_before = r.rtp_to(AGENT).len();
    assert_eq!(relayed_before, 20);

    r.s.hold(CALLER, Some(Clip::new(8000, vec![3000; 8000])));
    let taps = r.taps.len();
    for k in 20..40u16 {
        r.rtp(
            CALLER,
            addr(7000),
            &packet(0, k, u32::from(k) * 160, 3, false, &[0x10; 160]),
        );
        r.run_ms(20);
    }
    assert_eq!(
        r.rtp_to(AGENT).len(),
        relayed_before,
        "held caller not relayed"
    );
    assert_eq!(r.taps.len(), taps, "held caller not tapped");
    let music = r.rtp_to(CALLER);
    assert!(music.len() >= 19, "caller hears hold audio");
    assert_continuous(&music, 160);

    // Off hold with the tap turned off (a person has the call): relayed, not tapped.
    r.s.hold(CALLER, None);
    r.s.set_tap(CALLER, false);
    for k in 40..50u16 {
        r.rtp(
            CALLER,
            addr(7000),
            &packet(0, k, u32::from(k) * 160, 3, false, &[0x10; 160]),
        );
        r.run_ms(20);
    }
    assert_eq!(r.taps.len(), taps, "no tap once turned off");
    assert_eq!(r.rtp_to(AGENT).len(), relayed_before + 10);
}

#[test]
fn swapping_the_bridged_leg_keeps_the_stream_continuous() {
    let mut r = Run::new();
    r.s.add_leg(CALLER, setup(1));
    r.s.add_leg(AGENT, setup(2));
    r.s.add_leg(2, setup(3));
    for (leg, port) in [(CALLER, 7000), (AGENT, 8000), (2, 9000)] {
        r.s.configure(r.now, leg, media(CodecName::Pcmu, port))
            .unwrap();
    }
    r.s.bridge(CALLER, AGENT);
    for k in 0..10u16 {
        r.rtp(
            AGENT,
            addr(8000),
            &packet(0, k, u32::from(k) * 160, 0xA, k == 0, &[1; 160]),
        );
        r.run_ms(20);
    }
    r.s.bridge(CALLER, 2);
    assert_eq!(r.s.peer(AGENT), None);
    for k in 0..10u16 {
        r.rtp(
            2,
            addr(9000),
            &packet(
                0,
                3000 + k,
                777 + u32::from(k) * 160,
                0xB,
                k == 0,
                &[2; 160],
            ),
        );
        r.run_ms(20);
    }
    let out = r.rtp_to(CALLER);
    assert_eq!(out.len(), 20);
    assert_continuous(&out[..10], 160);
    assert_continuous(&out[10..], 160);
    assert_eq!(out[10].0.ssrc, out[9].0.ssrc);
    assert_eq!(
        out[10].0.sequence_number,
        out[9].0.sequence_number.wrapping_add(1)
    );
    assert_eq!(out[10].0.timestamp, out[9].0.timestamp.wrapping_add(160));
    assert!(out[10].0.marker);
}

#[test]
fn rtcp_sender_report_carries_our_counts_and_a_reception_block() {
    let mut r = Run::new();
    r.leg(CALLER, setup(0x1111), CodecName::Pcmu, 7000);
    r.s.play(CALLER, 1, Clip::new(8000, vec![5; 8000 * 6]));
    for k in 0..260u16 {
        // Every tenth packet lost.
        if k % 10 != 9 {
            r.rtp(
                CALLER,
                addr(7000),
                &packet(0, k, u32::from(k) * 160, 0xBEEF, false, &[0xff; 160]),
            );
        }
        r.run_ms(20);
    }
    let rtcp: Vec<_> = r.sent.iter().filter(|t| t.rtcp).collect();
    assert_eq!(rtcp.len(), 1);
    assert_eq!(rtcp[0].to, addr(7001));
    let mut b = Bytes::copy_from_slice(&rtcp[0].data);
    let pkts = rtcp::packet::unmarshal(&mut b).unwrap();
    let sr = pkts[0]
        .as_any()
        .downcast_ref::<rtcp::sender_report::SenderReport>()
        .unwrap();
    assert_eq!(sr.ssrc, 0x1111);
    assert!(sr.packet_count >= 240);
    assert_eq!(sr.reports.len(), 1);
    assert_eq!(sr.reports[0].ssrc, 0xBEEF);
    assert!(
        (20..=30).contains(&sr.reports[0].total_lost),
        "{}",
        sr.reports[0].total_lost
    );
    assert!(
        (20..=30).contains(&sr.reports[0].fraction_lost),
        "{}",
        sr.reports[0].fraction_lost
    );
    assert!(r.s.stats(CALLER).unwrap().lost >= 20);
}

#[test]
fn a_late_tick_catches_up_instead_of_leaving_a_gap() {
    let mut r = Run::new();
    r.leg(CALLER, setup(1), CodecName::Pcmu, 7000);
    r.s.play(CALLER, 1, Clip::new(8000, vec![500; 8000]));
    r.run_ms(100);
    // The driver is 80 ms late once (a busy machine).
    r.now += Duration::from_millis(80);
    r.s.handle_tick(r.now);
    r.drain();
    r.run_ms(100);
    let out = r.rtp_to(CALLER);
    assert_continuous(&out, 160);
    assert!(
        out[1..].iter().all(|p| !p.0.marker),
        "no talk-spurt restart"
    );
    assert!(out.len() >= 13, "{} frames", out.len());
}

fn srtp_context(key: SrtpKey, suite: SrtpSuite) -> webrtc_srtp::context::Context {
    let profile = match suite {
        SrtpSuite::AesCm128HmacSha1_80 => {
            webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80
        }
        SrtpSuite::AesCm128HmacSha1_32 => {
            webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_32
        }
    };
    webrtc_srtp::context::Context::new(key.master_key(), key.master_salt(), profile, None, None)
        .unwrap()
}

/// A caller on SRTP bridged to an agent on plain RTP, same codec: the bridge decrypts,
/// relays without transcoding, and encrypts what goes back with our key. A packet under
/// a wrong key and a replayed one are dropped and counted; the call goes on.
#[test]
fn srtp_caller_bridged_to_a_plain_agent_both_ways() {
    for suite in [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ] {
        let mut r = Run::new();
        let (theirs, ours) = (SrtpKey([0x5a; 30]), SrtpKey([0xa5; 30]));
        r.s.add_leg(CALLER, setup(1));
        let mut m = media(CodecName::Pcmu, 7000);
        m.srtp = Some(SrtpParams {
            suite,
            tag: 1,
            local: ours,
            remote: theirs,
            savp: true,
        });
        r.s.configure(r.now, CALLER, m).unwrap();
        r.leg(AGENT, setup(2), CodecName::Pcmu, 8000);
        r.s.bridge(CALLER, AGENT);
        let mut phone = srtp_context(theirs, suite);
        let mut forger = srtp_context(SrtpKey([0x00; 30]), suite);
        let mut sealed = Vec::new();
        for k in 0..20u16 {
            let voice = [k as u8; 160];
            let p = phone
                .encrypt_rtp(&packet(0, k, u32::from(k) * 160, 5, k == 0, &voice))
                .unwrap();
            r.rtp(CALLER, addr(7000), &p);
            sealed.push(p);
            r.rtp(
                AGENT,
                addr(8000),
                &packet(0, k, u32::from(k) * 160, 6, k == 0, &[0x77; 160]),
            );
            r.run_ms(20);
        }
        // The agent got the caller's audio in the clear, byte for byte, relayed.
        let to_agent = r.rtp_to(AGENT);
        assert_eq!(to_agent.len(), 20, "{suite}");
        for (k, p) in to_agent.iter().enumerate() {
            assert_eq!(p.1, vec![k as u8; 160], "{suite}: packet {k}");
        }
        // What the caller got opens with our key, and nothing else: a tag per packet.
        let tag = if suite == SrtpSuite::AesCm128HmacSha1_80 {
            10
        } else {
            4
        };
        let mut caller_side = srtp_context(ours, suite);
        let to_caller: Vec<&Transmit> = r
            .sent
            .iter()
            .filter(|t| t.leg == CALLER && !t.rtcp)
            .collect();
        assert_eq!(to_caller.len(), 20);
        for t in &to_caller {
            assert_eq!(t.data.len(), 12 + 160 + tag);
            assert_ne!(&t.data[12..172], &[0x77; 160][..], "sent in the clear");
            let plain = caller_side.decrypt_rtp(&t.data).unwrap();
            assert_eq!(&plain[12..], &[0x77; 160][..]);
        }
        // A forged packet (wrong key) and a replay of a real one: dropped, counted.
        let forged = forger
            .encrypt_rtp(&packet(0, 20, 3200, 5, false, &[9; 160]))
            .unwrap();
        r.rtp(CALLER, addr(7000), &forged);
        r.rtp(CALLER, addr(7000), &sealed[5]);
        let mut tampered = phone
            .encrypt_rtp(&packet(0, 21, 3360, 5, false, &[9; 160]))
            .unwrap()
            .to_vec();
        tampered[40] ^= 1;
        r.rtp(CALLER, addr(7000), &tampered);
        r.run_ms(20);
        let st = r.s.stats(CALLER).unwrap();
        assert_eq!(
            (st.srtp_auth_failed, st.srtp_replayed),
            (2, 1),
            "{suite}: {st:?}"
        );
        assert_eq!(st.srtp, Some(suite));
        assert_eq!(
            r.rtp_to(AGENT).len(),
            20,
            "{suite}: nothing bad reached the agent"
        );
        // The call goes on: the next real packet is relayed.
        let next = phone
            .encrypt_rtp(&packet(0, 22, 3520, 5, false, &[22; 160]))
            .unwrap();
        r.rtp(CALLER, addr(7000), &next);
        assert_eq!(r.rtp_to(AGENT).last().unwrap().1, vec![22; 160]);
        // RTCP to the caller is SRTCP under our key.
        r.run_ms(6000);
        let rtcp: Vec<&Transmit> = r
            .sent
            .iter()
            .filter(|t| t.leg == CALLER && t.rtcp)
            .collect();
        assert!(!rtcp.is_empty(), "{suite}: no RTCP");
        for t in rtcp {
            caller_side.decrypt_rtcp(&t.data).unwrap();
        }
    }
}
