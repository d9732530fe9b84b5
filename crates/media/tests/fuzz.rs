//! Mutation fuzzing of the media plane's parsers: RTP (with CSRCs, extensions, padding),
//! RFC 4733 events and RTCP, fed to a bridged pair of legs that transcode (PCMA to PCMU)
//! and to a relaying pair, on the virtual clock. Seeded and bounded (it runs in CI); every
//! packet must be taken or dropped and counted, never panic, and nothing may be sent
//! anywhere but the legs' own addresses.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use warmline_media::{JitterSettings, LegMedia, LegOptions, LegSetup, Output, Session};
use warmline_signaling::mutate::{Mutator, executions, report};
use warmline_signaling::{CodecName, Direction, SrtpKey, SrtpParams, SrtpSuite};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn leg(s: &mut Session, now: Instant, id: u32, codec: CodecName, pt: u8, port: u16) {
    leg_with(s, now, id, codec, pt, port, None);
}

fn leg_with(
    s: &mut Session,
    now: Instant,
    id: u32,
    codec: CodecName,
    pt: u8,
    port: u16,
    srtp: Option<SrtpParams>,
) {
    s.add_leg(
        id,
        LegSetup {
            options: LegOptions {
                ssrc: 0x1000 + id,
                initial_seq: 1,
                initial_ts: 1,
                jitter: JitterSettings::default(),
                await_peer: false,
            },
            tap: true,
            record: false,
            rtp_timeout: Some(Duration::from_secs(5)),
            hold_timeout: Some(Duration::from_secs(30)),
            hold_probe: None,
        },
    );
    s.configure(
        now,
        id,
        LegMedia {
            codec,
            payload_type: pt,
            dtmf: Some((101, 8000)),
            remote: Some(addr(port)),
            direction: Direction::SendRecv,
            srtp,
        },
    )
    .unwrap();
}

fn rtp(pt: u8, first: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![first, pt, 0, 7, 0, 0, 3, 0xc0, 0xde, 0xad, 0xbe, 0xef];
    p.extend_from_slice(payload);
    p
}

fn seeds() -> Vec<(bool, Vec<u8>)> {
    let audio = rtp(8, 0x80, &[0xd5; 160]);
    let dtmf = rtp(101, 0x80, &[5, 0x8a, 0x03, 0x20]);
    // V=2, X=1, CC=3: three CSRCs, a one-word header extension.
    let mut ext = rtp(8, 0x93, &[]);
    ext.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
    ext.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
    ext.extend_from_slice(&[0xd5; 160]);
    // P=1: four bytes of padding, the last saying so.
    let mut padded = rtp(8, 0xa0, &[0xd5; 160]);
    padded.extend_from_slice(&[0, 0, 0, 4]);
    let mut sr = vec![0x81, 200, 0, 12, 0xde, 0xad, 0xbe, 0xef];
    sr.extend_from_slice(&[
        0xe8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0xc0, 0, 0, 0, 9, 0, 0, 5, 0,
    ]);
    sr.extend_from_slice(&[
        0, 0, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let bye = vec![0x81, 203, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    vec![
        (false, audio),
        (false, dtmf),
        (false, ext),
        (false, padded),
        (true, sr),
        (true, bye),
    ]
}

#[test]
fn rtp_and_rtcp_parsers_survive_mutated_packets() {
    let start = Instant::now();
    let mut now = start;
    let mut s = Session::new(now, Duration::from_secs(1_700_000_000));
    // 0 (PCMA) bridged to 1 (PCMU): transcoded; 2 and 3 (PCMA both): relayed.
    leg(&mut s, now, 0, CodecName::Pcma, 8, 7000);
    leg(&mut s, now, 1, CodecName::Pcmu, 0, 7002);
    leg(&mut s, now, 2, CodecName::Pcma, 8, 7004);
    leg(&mut s, now, 3, CodecName::Pcma, 8, 7006);
    s.bridge(0, 1);
    s.bridge(2, 3);
    let ours = [
        addr(7000),
        addr(7001),
        addr(7002),
        addr(7003),
        addr(7004),
        addr(7005),
        addr(7006),
        addr(7007),
    ];
    let seeds = seeds();
    let mut m = Mutator::new(0x5eed_0003);
    let mut sent = 0usize;
    let n = executions(40_000);
    for i in 0..n {
        let (is_rtcp, seed) = &seeds[m.below(seeds.len())];
        let data = m.mutate(seed);
        let id = m.below(4) as u32;
        let from = addr(7000 + 2 * id as u16 + u16::from(*is_rtcp));
        if *is_rtcp {
            s.handle_rtcp(now, id, from, &data);
        } else {
            s.handle_rtp(now, id, from, &data);
        }
        if i % 8 == 0 {
            now += Duration::from_millis(20);
            while s.poll_timeout() <= now {
                s.handle_tick(now);
            }
        }
        while let Some(o) = s.poll_output() {
            if let Output::Transmit(t) = o {
                assert!(ours.contains(&t.to), "sent to {} after packet {i}", t.to);
                sent += 1;
            }
        }
    }
    // The legs kept working through it: they sent, and they are still latched to their
    // own peers.
    assert!(sent > 1000, "{sent}");
    for id in 0..4 {
        let st = s.stats(id).unwrap();
        assert_eq!(
            st.latched,
            Some(addr(7000 + 2 * id as u16)),
            "leg {id}: {st:?}"
        );
        assert!(st.rejected > 0 && st.packets_in > 0, "leg {id}: {st:?}");
    }
    report("rtp/rtcp/rfc4733", n);
}

/// The same mutations through SRTP legs: what the peer's key encrypted, then damaged, must
/// be dropped and counted by the authentication check (or before it, when too short for
/// one), and the undamaged packets still pass, relayed and transcoded.
#[test]
fn srtp_legs_survive_mutated_packets() {
    let mut now = Instant::now();
    let mut s = Session::new(now, Duration::from_secs(1_700_000_000));
    let theirs = SrtpKey([0x42; 30]);
    let keys = SrtpParams {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        tag: 1,
        local: SrtpKey([0x24; 30]),
        remote: theirs,
        savp: true,
    };
    leg_with(&mut s, now, 0, CodecName::Pcma, 8, 7000, Some(keys));
    leg_with(&mut s, now, 1, CodecName::Pcmu, 0, 7002, Some(keys));
    s.bridge(0, 1);
    let mut peer = Context::new(
        theirs.master_key(),
        theirs.master_salt(),
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap();
    let mut m = Mutator::new(0x5eed_0004);
    let n = executions(20_000);
    let mut seq: u16 = 0;
    for i in 0..n {
        let (is_rtcp, seed) = &seeds()[m.below(6)];
        let id = m.below(2) as u32;
        let from = addr(7000 + 2 * id as u16 + u16::from(*is_rtcp));
        let mut plain = seed.clone();
        if *is_rtcp {
            let Ok(sealed) = peer.encrypt_rtcp(&plain) else {
                continue;
            };
            let data = if i % 4 == 0 {
                sealed.to_vec()
            } else {
                m.mutate(&sealed)
            };
            s.handle_rtcp(now, id, from, &data);
        } else {
            // A fresh sequence number each time, as a real sender's, so the good ones pass
            // the replay window.
            seq = seq.wrapping_add(1);
            plain[2..4].copy_from_slice(&seq.to_be_bytes());
            let Ok(sealed) = peer.encrypt_rtp(&plain) else {
                continue;
            };
            let data = if i % 4 == 0 {
                sealed.to_vec()
            } else {
                m.mutate(&sealed)
            };
            s.handle_rtp(now, id, from, &data);
        }
        if i % 8 == 0 {
            now += Duration::from_millis(20);
            while s.poll_timeout() <= now {
                s.handle_tick(now);
            }
        }
        while let Some(o) = s.poll_output() {
            if let Output::Transmit(t) = o {
                assert!(
                    [addr(7000), addr(7001), addr(7002), addr(7003)].contains(&t.to),
                    "sent to {}",
                    t.to
                );
            }
        }
    }
    for id in 0..2 {
        let st = s.stats(id).unwrap();
        assert!(
            st.srtp_auth_failed > 0 && st.packets_in > 0,
            "leg {id}: {st:?}"
        );
        assert_eq!(st.srtp, Some(SrtpSuite::AesCm128HmacSha1_80));
    }
    report("srtp/srtcp", n);
}
