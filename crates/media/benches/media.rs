//! Per-packet and per-frame costs of the media plane: G.711 per 20 ms frame, Opus decode
//! per frame, G.722 encode and decode per frame, jitter buffer insert + pop, and a relayed
//! packet through a bridged session (parse → rewrite → serialise), plain and with SRTP on
//! both legs: the hot path of every bridged call.

use criterion::{Criterion, criterion_group, criterion_main};
use rtp::header::Header;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use warmline_media::codec::{Decoder, Encoder};
use warmline_media::jitter::JitterBuffer;
use warmline_media::{JitterSettings, LegMedia, LegOptions, LegSetup, Output, Session, g711};
use warmline_signaling::{CodecName, Direction, SrtpKey, SrtpParams, SrtpSuite};
use webrtc_util::marshal::{Marshal, MarshalSize};

fn tone(rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            (8000.0 * (i as f64 * 440.0 * std::f64::consts::TAU / f64::from(rate)).sin()) as i16
        })
        .collect()
}

fn g711_frames(c: &mut Criterion) {
    let pcm = tone(8000, 160);
    let mut out = Vec::with_capacity(160);
    c.bench_function("pcmu_encode_20ms", |b| {
        b.iter(|| {
            out.clear();
            g711::ulaw_encode_frame(black_box(&pcm), &mut out);
        })
    });
    let codes: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
    let mut dec = Vec::with_capacity(160);
    c.bench_function("pcmu_decode_20ms", |b| {
        b.iter(|| {
            dec.clear();
            g711::ulaw_decode_frame(black_box(&codes), &mut dec);
        })
    });
    c.bench_function("pcma_encode_20ms", |b| {
        b.iter(|| {
            out.clear();
            g711::alaw_encode_frame(black_box(&pcm), &mut out);
        })
    });
}

fn opus_decode(c: &mut Criterion) {
    let (Ok(mut enc), Ok(mut dec)) = (Encoder::new(CodecName::Opus), Decoder::new(CodecName::Opus))
    else {
        return;
    };
    let mut payload = Vec::new();
    if enc.encode(&tone(48000, 960), &mut payload).is_err() {
        return;
    }
    let mut pcm = Vec::with_capacity(5760);
    c.bench_function("opus_decode_20ms", |b| {
        b.iter(|| {
            pcm.clear();
            dec.decode(black_box(&payload), &mut pcm);
        })
    });
}

/// A G.722 leg transcoded in the bridge pays one encode and one decode per 20 ms frame.
fn g722_frames(c: &mut Criterion) {
    let (Ok(mut enc), Ok(mut dec)) = (Encoder::new(CodecName::G722), Decoder::new(CodecName::G722))
    else {
        return;
    };
    let pcm = tone(16000, 320);
    let mut payload = Vec::with_capacity(160);
    c.bench_function("g722_encode_20ms", |b| {
        b.iter(|| {
            payload.clear();
            let _ = enc.encode(black_box(&pcm), &mut payload);
        })
    });
    let mut out = Vec::with_capacity(320);
    c.bench_function("g722_decode_20ms", |b| {
        b.iter(|| {
            out.clear();
            dec.decode(black_box(&payload), &mut out);
        })
    });
}

fn jitter(c: &mut Criterion) {
    let payload = [0x55u8; 160];
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(8000, JitterSettings::default());
    let mut n: u32 = 0;
    c.bench_function("jitter_insert_pop", |b| {
        b.iter(|| {
            let now = t0 + Duration::from_millis(u64::from(n) * 20);
            jb.insert(now, n.wrapping_mul(160), black_box(&payload));
            black_box(jb.pop(now + Duration::from_millis(20)));
            n = n.wrapping_add(1);
        })
    });
}

fn relay(c: &mut Criterion) {
    relay_case(c, "relay_one_packet", false);
    relay_case(c, "relay_one_packet_srtp", true);
}

/// One packet in from the caller's leg and out of the agent's, both on PCMU (relayed, not
/// transcoded); with `srtp`, both legs encrypted (AES_CM_128_HMAC_SHA1_80): authenticate
/// and decrypt, rewrite, encrypt and sign again. The caller's packets are made (and for
/// SRTP encrypted) outside the timed part, ten thousand at a time, so only warmline's work
/// is measured.
fn relay_case(c: &mut Criterion, name: &str, srtp: bool) {
    let now = Instant::now();
    let mut s = Session::new(now, Duration::from_secs(1_700_000_000));
    let setup = |ssrc| LegSetup {
        options: LegOptions {
            ssrc,
            initial_seq: 1,
            initial_ts: 1,
            jitter: JitterSettings::default(),
            await_peer: false,
        },
        tap: false,
        record: false,
        rtp_timeout: None,
        hold_timeout: None,
        hold_probe: None,
    };
    let (caller_key, ours) = (SrtpKey([0x11; 30]), SrtpKey([0x22; 30]));
    let keys = |remote: SrtpKey| SrtpParams {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        tag: 1,
        local: ours,
        remote,
        savp: true,
    };
    let media = |port: u16, remote: SrtpKey| LegMedia {
        codec: CodecName::Pcmu,
        payload_type: 0,
        dtmf: Some((101, 8000)),
        remote: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        direction: Direction::SendRecv,
        srtp: srtp.then(|| keys(remote)),
    };
    s.add_leg(0, setup(1));
    s.add_leg(1, setup(2));
    if s.configure(now, 0, media(7000, caller_key)).is_err()
        || s.configure(now, 1, media(8000, SrtpKey([0x33; 30])))
            .is_err()
    {
        return;
    }
    s.bridge(0, 1);
    let Ok(mut caller) = webrtc_srtp::context::Context::new(
        caller_key.master_key(),
        caller_key.master_salt(),
        webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    ) else {
        return;
    };
    let from = SocketAddr::from(([127, 0, 0, 1], 7000));
    let mut seq: u16 = 0;
    let mut make = |n: u64| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let h = Header {
                    version: 2,
                    payload_type: 0,
                    sequence_number: seq,
                    timestamp: u32::from(seq).wrapping_mul(160),
                    ssrc: 0xCAFE,
                    ..Header::default()
                };
                seq = seq.wrapping_add(1);
                let mut datagram = vec![0x55u8; 172];
                let _ = h.marshal_to(&mut datagram[..h.marshal_size()]);
                if srtp {
                    caller
                        .encrypt_rtp(&datagram)
                        .map(|b| b.to_vec())
                        .unwrap_or(datagram)
                } else {
                    datagram
                }
            })
            .collect()
    };
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let batch = make(left.min(10_000));
                left -= batch.len() as u64;
                let start = Instant::now();
                for datagram in &batch {
                    s.handle_rtp(now, 0, from, black_box(datagram));
                    while let Some(o) = s.poll_output() {
                        if let Output::Transmit(t) = o {
                            black_box(t.data);
                        }
                    }
                }
                spent += start.elapsed();
            }
            spent
        })
    });
    // A bench that relays nothing would print a fine figure: make sure it relayed.
    assert!(
        s.stats(1).is_some_and(|st| st.relayed > 0),
        "{name}: nothing relayed"
    );
}

criterion_group!(
    benches,
    g711_frames,
    opus_decode,
    g722_frames,
    jitter,
    relay
);
criterion_main!(benches);
