//! SRTP (RFC 3711, keys by SDES, RFC 4568) against real softphones: baresip (Debian's,
//! its srtp module) calling in encrypted and bridged to a plain agent, and the reverse; a
//! forged stream aimed at the gateway's RTP ports while a call is up; and a gateway that
//! requires SRTP refusing a plain offer. tshark shows what was on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::baresip::{Baresip, tone_share};
use common::*;
use std::time::Duration;

fn bridge_to(agent: &Baresip) -> String {
    format!(
        "[route]\nmode = \"bridge\"\ntarget = \"sip:agent@127.0.0.1:{}\"\n",
        agent.port
    )
}

/// RTP packets on the wire between warmline and `port`, each way: (to it, from it).
fn flows(pkts: &[Rtp], gw: &Gw, port: u16) -> (Vec<Rtp>, Vec<Rtp>) {
    let ours = |p: u16| (gw.rtp.0..=gw.rtp.1).contains(&p);
    (
        pkts.iter()
            .filter(|p| ours(p.src) && p.dst == port)
            .cloned()
            .collect(),
        pkts.iter()
            .filter(|p| p.src == port && ours(p.dst))
            .cloned()
            .collect(),
    )
}

/// A 20 ms PCMU packet on the wire: 160 bytes of audio, plus a tag when it is SRTP (10
/// bytes for _80, 4 for _32).
fn tag_len(p: &Rtp) -> usize {
    p.payload.len() - 160
}

/// The caller's leg as `/v1/calls` shows it once its RTP has come: (the caller's RTP
/// port, warmline's port for it, the SRTP suite if any).
fn caller_leg(gw: &Gw) -> (u16, u16, Option<String>) {
    // The caller's own entry (the agent's leg is listed as a call of its own).
    let caller = |c: &serde_json::Value| {
        c.as_array()
            .and_then(|a| {
                a.iter().find(|x| {
                    x["from"]
                        .as_str()
                        .is_some_and(|f| f.contains("sip:caller@"))
                })
            })
            .cloned()
            .unwrap_or_default()
    };
    let live = eventually(
        Duration::from_secs(15),
        || caller(&calls(gw)),
        |c| c["media"]["latched"].is_string(),
    );
    let m = &live["media"];
    let latched: std::net::SocketAddr = m["latched"]
        .as_str()
        .unwrap_or_else(|| panic!("the caller's RTP never came: {live}"))
        .parse()
        .unwrap();
    (
        latched.port(),
        m["local_port"].as_u64().unwrap() as u16,
        m["srtp"].as_str().map(str::to_string),
    )
}

#[test]
fn an_srtp_caller_is_bridged_to_a_plain_agent_while_forgeries_are_dropped() {
    let agent = Baresip::agent(free_port(), None);
    let gw = Gw::start("", &bridge_to(&agent));
    let cap = Capture::start(gw.rtp);
    let mut caller = Baresip::caller_with(
        "PCMU",
        Some("srtp-mand"),
        free_port(),
        None,
        &format!("sip:warmline@{}", gw.sip_addr()),
        &media().join("tone.wav"),
        8,
    );
    let (caller_port, leg_port, suite) = caller_leg(&gw);
    assert!(
        suite
            .as_deref()
            .is_some_and(|s| s.starts_with("AES_CM_128_HMAC_SHA1_")),
        "the caller's leg is SRTP: {suite:?}"
    );
    // While the call is up, someone who knows the port but not the key sends well-formed
    // RTP with a made-up tag to the caller's leg.
    let forger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for k in 0u16..5 {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xba, 0xd0, 0xba, 0xd0];
        p[2..4].copy_from_slice(&(40_000 + k).to_be_bytes());
        p.extend_from_slice(&[0x42; 170]);
        forger.send_to(&p, ("127.0.0.1", leg_port)).unwrap();
    }
    caller.wait_exit(Duration::from_secs(30));
    wait_caller_bye(&gw);
    let pkts = cap.stop();

    // The caller's leg is SRTP both ways: every packet carries an authentication tag (its
    // length tells the suite baresip chose), the agent's leg plain.
    let (to_caller, from_caller) = flows(&pkts, &gw, caller_port);
    assert!(
        to_caller.len() >= 100 && from_caller.len() >= 100,
        "{} {}",
        to_caller.len(),
        from_caller.len()
    );
    let tag = tag_len(&from_caller[0]);
    assert!(tag == 10 || tag == 4, "caller's SRTP tag {tag}");
    assert!(from_caller.iter().all(|p| tag_len(p) == tag));
    assert!(
        to_caller.iter().all(|p| tag_len(p) == tag),
        "warmline answers in the same suite"
    );
    let agent_port = agent_rtp_port(&pkts, &gw, caller_port);
    let agent_pkts: Vec<&Rtp> = pkts
        .iter()
        .filter(|p| p.src == agent_port || p.dst == agent_port)
        .collect();
    assert!(
        agent_pkts.len() >= 100,
        "{} agent packets",
        agent_pkts.len()
    );
    assert!(
        agent_pkts.iter().all(|p| p.payload.len() == 160),
        "the agent's leg is plain RTP"
    );
    // What went to the caller is not the agent's audio in the clear.
    let clear: Vec<i16> = to_caller
        .iter()
        .flat_map(|p| ulaw(&p.payload[..160]))
        .collect();
    assert!(
        clear.chunks(8000).all(|c| tone_share(c, 600.0) < 0.2),
        "the agent's tone is readable on the caller's wire"
    );

    // Through the bridge, decrypted and encrypted again: each heard the other.
    assert!(
        agent
            .heard()
            .chunks(8000)
            .any(|c| tone_share(c, 1000.0) > 0.5),
        "the agent heard the SRTP caller"
    );
    assert!(
        caller
            .heard()
            .chunks(8000)
            .any(|c| tone_share(c, 600.0) > 0.5),
        "the SRTP caller heard the agent"
    );

    // The forgeries: dropped and counted on the caller's leg, said once in the log; the
    // call went on (both heard each other above).
    let failed = eventually(
        Duration::from_secs(10),
        || metric(&gw, "warmline_srtp_auth_failed_total"),
        |n| n.is_some_and(|n| n >= 5.0),
    );
    assert!(
        failed.is_some_and(|n| n >= 5.0),
        "auth failures counted: {failed:?}"
    );
    assert!(
        gw.logged("SRTP packets dropped"),
        "the log says so:\n{}",
        gw.log()
    );
}

/// The agent's RTP port: the other port warmline exchanged RTP with.
fn agent_rtp_port(pkts: &[Rtp], gw: &Gw, caller_port: u16) -> u16 {
    pkts.iter()
        .find(|p| {
            (gw.rtp.0..=gw.rtp.1).contains(&p.dst)
                && p.src != caller_port
                && !(gw.rtp.0..=gw.rtp.1).contains(&p.src)
                && p.ssrc != 0xbad0_bad0
        })
        .map(|p| p.src)
        .expect("the agent sent RTP")
}

#[test]
fn a_plain_caller_is_bridged_to_an_srtp_agent() {
    // The agent takes SRTP when offered a=crypto; warmline offers it on RTP/AVP (optional).
    let agent = Baresip::agent_with(free_port(), None, Some("srtp"));
    let gw = Gw::start("", &bridge_to(&agent));
    let cap = Capture::start(gw.rtp);
    let mut caller = Baresip::caller(
        free_port(),
        None,
        &format!("sip:warmline@{}", gw.sip_addr()),
        &media().join("tone.wav"),
        8,
    );
    let (caller_port, _, suite) = caller_leg(&gw);
    assert_eq!(suite, None, "the caller's leg is plain");
    caller.wait_exit(Duration::from_secs(30));
    wait_caller_bye(&gw);
    let pkts = cap.stop();
    let (to_caller, _) = flows(&pkts, &gw, caller_port);
    assert!(
        to_caller.iter().all(|p| p.payload.len() == 160),
        "the caller's leg is plain"
    );
    let agent_port = agent_rtp_port(&pkts, &gw, caller_port);
    let (to_agent, from_agent) = flows(&pkts, &gw, agent_port);
    assert!(to_agent.len() >= 100 && from_agent.len() >= 100);
    let tag = tag_len(&from_agent[0]);
    assert!(tag == 10 || tag == 4, "agent's SRTP tag {tag}");
    assert!(
        to_agent.iter().all(|p| tag_len(p) == tag),
        "warmline encrypts to the agent"
    );
    assert!(
        agent
            .heard()
            .chunks(8000)
            .any(|c| tone_share(c, 1000.0) > 0.5),
        "the SRTP agent heard the caller"
    );
    assert!(
        caller
            .heard()
            .chunks(8000)
            .any(|c| tone_share(c, 600.0) > 0.5),
        "the caller heard the SRTP agent"
    );
    assert_eq!(metric(&gw, "warmline_srtp_auth_failed_total"), Some(0.0));
}

#[test]
fn a_gateway_that_requires_srtp_refuses_plain_offers_and_takes_encrypted_ones() {
    let gw = Gw::start_with(
        "",
        "srtp = \"required\"",
        "[[routes]]\nname = \"default\"\n",
    );
    let port = gw.sip_addr().rsplit(':').next().unwrap().parse().unwrap();
    let plain = udp_request(
        port,
        &invite(
            "srtp-plain",
            "m=audio 7000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000\r\n",
        ),
    );
    assert!(plain.starts_with("SIP/2.0 488"), "{plain}");
    assert!(plain.contains("Warning: 302"), "{plain}");
    let bad_key = udp_request(
        port,
        &invite(
            "srtp-bad-key",
            "m=audio 7000 RTP/SAVP 0",
            "a=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:tooshort\r\n",
        ),
    );
    assert!(bad_key.starts_with("SIP/2.0 488"), "{bad_key}");
    assert!(
        bad_key.contains("Warning: 306") && bad_key.contains("a=crypto"),
        "{bad_key}"
    );
    let good = udp_request(
        port,
        &invite(
            "srtp-good",
            "m=audio 7000 RTP/SAVP 0",
            "a=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
        ),
    );
    assert!(good.starts_with("SIP/2.0 200"), "{good}");
    assert!(
        good.contains("RTP/SAVP 0") && good.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{good}"
    );
    assert_eq!(
        metric(
            &gw,
            "warmline_calls_total{outcome=\"call.rejected\",role=\"inbound\"}"
        ),
        Some(2.0),
        "both refusals counted"
    );
    assert!(
        gw.logged("INVITE rejected"),
        "the refusals are logged:\n{}",
        gw.log()
    );
}
