//! Per-message costs on the signaling hot path: triage of every inbound datagram, SDP
//! answer for every INVITE, and a whole inbound call through the controller.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;
use warmline_call::{CallConfig, CallEvent, Controller};
use warmline_signaling::{CodecName, Direction, LocalMedia, SdpSession, SrtpKey, SrtpMode, triage};

const OFFER: &str = "v=0\r\no=sipp 53655765 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

fn invite() -> String {
    format!(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0\r\nFrom: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\nTo: <sip:service@127.0.0.1:5060>\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    )
}

fn local() -> LocalMedia {
    LocalMedia {
        addr: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        srtp: SrtpMode::Optional,
        srtp_key: SrtpKey([1; 30]),
        port: 20000,
        codecs: vec![
            CodecName::Pcmu,
            CodecName::Pcma,
            CodecName::G722,
            CodecName::Opus,
        ],
    }
}

fn benches(c: &mut Criterion) {
    let msg = invite();
    c.bench_function("triage INVITE datagram", |b| {
        b.iter(|| triage(black_box(msg.as_bytes())))
    });
    c.bench_function("SDP answer to a G.711 offer", |b| {
        b.iter(|| {
            let mut s = SdpSession::new(local(), 1);
            s.answer(black_box(OFFER), Direction::SendRecv)
        })
    });
    c.bench_function("controller: inbound call answer+ack+bye", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut ctl = Controller::inbound(CallConfig::new(local()));
            ctl.handle(
                now,
                CallEvent::Invite {
                    sdp: Some(OFFER.to_string()),
                },
            );
            ctl.handle(now, CallEvent::Ack);
            ctl.handle(now, CallEvent::PeerBye);
            while let Some(a) = ctl.poll_action() {
                black_box(a);
            }
        })
    });
}

criterion_group!(signaling, benches);
criterion_main!(signaling);
