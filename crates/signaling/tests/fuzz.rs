//! Mutation fuzzing of every parser that reads bytes from the network in this crate: the
//! SIP triage in front of the stack, the stateless refusals, and SDP offer/answer. Seeded
//! and bounded (it runs in CI): each seed message is mutated the way a fuzzer would (bit
//! flips, byte insertions and deletions, runs of junk, truncation, duplicated spans) and
//! every parser must return, never panic, and answer only with well-formed responses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use warmline_signaling::mutate::{Mutator, executions, report};
use warmline_signaling::{
    CodecName, Direction, LocalMedia, SdpSession, SrtpKey, SrtpMode, Triage, refuse_new_invite,
    triage, triage_truncated,
};

const INVITE: &str = "INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nFrom: \"Ada\" <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: abc@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 168\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
const BYE: &str = "BYE sip:bot@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-2\r\nf: <sip:a@127.0.0.1>;tag=1\r\nt: <sip:bot@127.0.0.1>;tag=2\r\ni: abc@127.0.0.1\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n";
const RESPONSE: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-3\r\nFrom: <sip:w@127.0.0.1>;tag=9\r\nTo: <sip:a@127.0.0.1>;tag=8\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
const SRTP_OFFER: &str = "v=0\r\no=pbx 1 1 IN IP4 198.51.100.5\r\ns=-\r\nc=IN IP4 198.51.100.5\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32\r\na=sendrecv\r\n";
const OFFER: &str = "v=0\r\no=pbx 1 1 IN IP4 198.51.100.5\r\ns=-\r\nc=IN IP4 198.51.100.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 111 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendonly\r\nm=video 5000 RTP/AVP 96\r\n";

/// A response the triage sends back must be one: a status line, no control bytes but the
/// line ends and tabs (whitespace in SIP), and the blank line that ends its headers.
fn well_formed(response: &[u8]) {
    let text = std::str::from_utf8(response).expect("responses are UTF-8");
    assert!(text.starts_with("SIP/2.0 "), "{text:?}");
    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t')),
        "{text:?}"
    );
}

#[test]
fn sip_triage_survives_mutated_messages() {
    let mut rng = Mutator::new(0x5eed_0001);
    let (mut replies, mut drops, mut passes) = (0, 0, 0);
    let n = executions(60_000);
    for i in 0..n {
        let seed = [INVITE, BYE, RESPONSE][i % 3].as_bytes();
        let m = rng.mutate(seed);
        match triage(&m) {
            Triage::Reply { response, .. } => {
                well_formed(&response);
                replies += 1;
            }
            Triage::Drop { .. } => drops += 1,
            Triage::Pass => passes += 1,
        }
        if let Triage::Reply { response, .. } = triage_truncated(&m) {
            well_formed(&response);
        }
        if let Some(r) = refuse_new_invite(
            &m,
            503,
            "Service Unavailable",
            &[("Retry-After", "5".into())],
        ) {
            well_formed(&r);
        }
    }
    // The mutations reach every outcome: the fuzzing is not all caught at the first byte.
    assert!(
        replies > 1000 && drops > 1000 && passes > 1000,
        "{replies} {drops} {passes}"
    );
    report("sip triage", n);
}

#[test]
fn sdp_offer_answer_survives_mutated_bodies() {
    let local = LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        srtp: SrtpMode::Optional,
        srtp_key: SrtpKey([1; 30]),
        port: 20000,
        codecs: vec![
            CodecName::Pcmu,
            CodecName::Pcma,
            CodecName::G722,
            CodecName::Opus,
        ],
    };
    let mut rng = Mutator::new(0x5eed_0002);
    let mut answered = 0;
    let n = executions(30_000);
    for _ in 0..n {
        // Half plain, half SRTP with two a=crypto lines (RFC 4568's parser under mutation).
        let seed = if rng.below(2) == 0 { OFFER } else { SRTP_OFFER };
        let m = rng.mutate(seed.as_bytes());
        let text = String::from_utf8_lossy(&m);
        let mut s = SdpSession::new(local.clone(), 42);
        if let Ok((sdp, n)) = s.answer(&text, Direction::SendRecv) {
            answered += 1;
            assert!(sdp.starts_with("v=0\r\n"), "{sdp}");
            // What we accepted is usable: a unicast address and a real port, if any.
            if let Some(to) = n.remote {
                assert!(
                    to.port() >= 1024 && !to.ip().is_multicast(),
                    "{to} from {text:?}"
                );
            }
            let _ = s.reoffer(&n, Direction::SendOnly);
        }
        let _ = SdpSession::new(local.clone(), 7).accept_answer(&text, Direction::SendRecv);
    }
    assert!(answered > 1000, "{answered}");
    report("sdp offer/answer", n);
}
