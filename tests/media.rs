//! The media plane end to end: the real binary, SIPp callers playing pcap audio made from
//! espeak-ng speech, a SIPp `-rtp_echo` far end behind the bridge, and tshark captures on
//! loopback to check what each side really received.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::process::Child;
use std::time::{Duration, Instant};

#[test]
fn caller_hears_the_greeting_and_the_tap_and_recording_hear_the_caller() {
    require_sipp();
    let rec = tempfile::tempdir().unwrap();
    let gw = Gw::start_with(
        "",
        &format!(
            "greeting = \"{}\"\nrecord = true\nrecord_dir = \"{}\"",
            media().join("greeting.wav").display(),
            rec.path().display()
        ),
        // A route with no agents: the trigger is recorded and the caller (whose SIPp
        // scenario takes no re-INVITE) is not put on hold.
        "[[routes]]\nname = \"default\"\n",
    );
    let cap = Capture::start(gw.rtp);
    let mp = media_port();
    let sipp = caller(&gw, "ask_pcmu.pcap", "0", 4000, mp);
    // The caller's request goes tap -> VAD -> recognizer while the call is up.
    let start = Instant::now();
    let mut live = calls(&gw);
    while start.elapsed() < Duration::from_millis(3800)
        && live[0]["transcript"]
            .as_array()
            .is_none_or(|t| t.is_empty())
    {
        std::thread::sleep(Duration::from_millis(100));
        live = calls(&gw);
    }
    wait_ok(sipp, "caller with greeting");
    let pkts = cap.stop();

    let heard = flow(&pkts, |p| (gw.rtp.0..=gw.rtp.1).contains(&p), mp);
    assert!(
        heard.len() >= 190,
        "4 s of greeting is ~200 packets, got {}",
        heard.len()
    );
    let odd: Vec<_> = heard
        .iter()
        .filter(|p| p.pt != 0 || p.payload.len() != 160)
        .map(|p| (p.pt, p.payload.len(), p.seq))
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    assert_one_continuous_stream(&heard, "greeting");
    let pcm: Vec<i16> = heard.iter().flat_map(|p| ulaw(&p.payload)).collect();
    let greeting = wav(&media().join("greeting.wav"));
    let (c, lag) = best_corr(&pcm, &greeting, 160);
    assert!(
        c > 0.95,
        "caller hears the greeting: correlation {c:.3} at lag {lag}"
    );
    assert_eq!(lag, 0, "the greeting starts on the first packet");

    let call = &live[0];
    let tap_frames = call["media"]["tap_frames"].as_u64().unwrap_or(0);
    assert!(tap_frames >= 100, "tap frames {tap_frames}: {call}");
    assert_eq!(call["media"]["tap_dropped"].as_u64(), Some(0));
    let turn = &call["transcript"][0];
    assert_eq!(turn["recognizer"], "pocketsphinx", "{call}");
    assert!(
        turn["text"].as_str().unwrap_or("").contains("human"),
        "{turn}"
    );
    assert!(
        turn["prosody"]["pitch_mean_hz"].as_f64().unwrap_or(0.0) > 60.0,
        "{turn}"
    );
    assert!(gw.logged("caller turn"));
    // The default policy heard the request for a person, with its evidence.
    let trigger = &call["triggers"][0];
    assert_eq!(trigger["kind"], "explicit_request", "{call}");
    assert_eq!(trigger["route"], "default");
    assert!(
        trigger["evidence"][0]
            .as_str()
            .unwrap_or("")
            .contains("human"),
        "{trigger}"
    );
    assert!(gw.logged("escalation trigger"));

    // The recording is the caller's speech, in time.
    let file = std::fs::read_dir(rec.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("-leg0.wav"))
        .expect("a caller recording")
        .path();
    let recorded = wav(&file);
    let speech = wav(&media().join("ask.wav"));
    assert!(
        (3.5..=4.5).contains(&(recorded.len() as f64 / 8000.0)),
        "{} samples",
        recorded.len()
    );
    let (c, lag) = best_corr(&recorded, &speech, 8000 / 4);
    assert!(
        c > 0.9,
        "recording matches the caller's speech: {c:.3} at lag {lag}"
    );
}

/// A call's RTP/RTCP pair is not closed when it ends: it rests, still bound, and the next
/// call after the rest gets it, with what reached it meanwhile thrown away. That call hears
/// its own greeting from the first packet and its audio reaches the gateway.
#[test]
fn a_call_on_the_rested_ports_of_an_ended_one_hears_its_own_greeting() {
    require_sipp();
    let greeting = media().join("greeting.wav");
    let gw = Gw::start_with(
        "",
        &format!("greeting = \"{}\"", greeting.display()),
        "[[routes]]\nname = \"default\"\n",
    );
    let cap = Capture::start(gw.rtp);
    let rtp_in = || metric(&gw, "warmline_rtp_packets_total{direction=\"in\"}").unwrap_or(0.0);
    let mp1 = media_port();
    wait_ok(
        caller(&gw, "speech_pcmu.pcap", "0", 1500, mp1),
        "first caller",
    );
    wait_caller_bye(&gw);
    let resting = eventually(
        Duration::from_secs(5),
        || metric(&gw, "warmline_rtp_spare_pairs"),
        |n| *n == Some(1.0),
    );
    assert_eq!(resting, Some(1.0), "the ended call's pair rests");
    // A fresh gateway binds its range from the bottom: the first call had its first pair
    // (checked on the capture below). Late packets of that call's peer reach it at rest.
    let first = gw.rtp.0 + gw.rtp.0 % 2;
    let late = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    late.send_to(
        &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9],
        ("127.0.0.1", first),
    )
    .unwrap();
    late.send_to(&[0x80, 200, 0, 1, 0, 0, 0, 9], ("127.0.0.1", first + 1))
        .unwrap();
    // The rest is a time, not a condition to wait for (rtp_ports::QUARANTINE, 250 ms).
    std::thread::sleep(Duration::from_millis(400));
    let in_before = rtp_in();
    let mp2 = media_port();
    wait_ok(
        caller(&gw, "speech_pcmu.pcap", "0", 1500, mp2),
        "second caller",
    );
    let pkts = cap.stop();

    let ours = |p: u16| (gw.rtp.0..=gw.rtp.1).contains(&p);
    let (one, two) = (flow(&pkts, ours, mp1), flow(&pkts, ours, mp2));
    assert!(
        !one.is_empty() && !two.is_empty(),
        "{} / {}",
        one.len(),
        two.len()
    );
    assert_eq!(
        one[0].src, first,
        "the first call had the range's first pair"
    );
    assert_eq!(two[0].src, first, "the second call got the rested pair");
    assert_one_continuous_stream(&two, "second call's greeting");
    let pcm: Vec<i16> = two.iter().flat_map(|p| ulaw(&p.payload)).collect();
    let (c, lag) = best_corr(&pcm, &wav(&greeting), 160);
    assert!(
        c > 0.95,
        "second caller hears the greeting: {c:.3} at lag {lag}"
    );
    assert_eq!(
        lag, 0,
        "from the first packet: nothing stale played or relayed"
    );
    assert_ne!(one[0].ssrc, two[0].ssrc, "a new call, a new SSRC");
    // What the second caller sent reached warmline through the reused socket.
    let sent = pkts.iter().filter(|p| p.src == mp2).count() as f64;
    assert!(sent >= 50.0, "second caller sent {sent}");
    let got = eventually(
        Duration::from_secs(5),
        || rtp_in() - in_before,
        |n| *n >= sent - 5.0,
    );
    assert!(
        got >= sent - 5.0,
        "warmline counted {got} of the {sent} the second caller sent"
    );
    assert!(metric(&gw, "warmline_rtp_pairs_reused_total").unwrap_or(0.0) >= 1.0);
    // Ours, and whatever the first caller's SIPp sent after its BYE.
    let drained = metric(&gw, "warmline_rtp_spare_drained_total").unwrap_or(0.0);
    assert!(drained >= 2.0, "drained {drained}");
}

/// One call from a SIPp scenario with no audio of its own.
fn one_call(gw: &Gw, scenario: &str) -> Child {
    call_scenario(gw, scenario, &["-m", "1", "-mp", &media_port().to_string()])
}

fn far_end(codec: &str, port: u16, mp: u16) -> Child {
    sipp(
        &[
            "-sf",
            scenarios().join("uas_echo.xml").to_str().unwrap(),
            "-key",
            "codec",
            codec,
            "-rtp_echo",
            "-m",
            "1",
            "-mp",
            &mp.to_string(),
        ],
        port,
    )
}

fn bridge_gw(uas_port: u16) -> Gw {
    Gw::start(
        "",
        &format!("[route]\nmode = \"bridge\"\ntarget = \"sip:echo@127.0.0.1:{uas_port}\""),
    )
}

/// What tshark saw of one bridged call: caller → warmline → echo far end → warmline → caller.
struct EchoCall {
    /// From the caller to warmline.
    sent: Vec<Rtp>,
    /// From warmline to the far end.
    to_far: Vec<Rtp>,
    /// From warmline back to the caller.
    back: Vec<Rtp>,
}

fn echo_call(pcap: &str, caller_codec: &str, far_codec: &str) -> EchoCall {
    require_sipp();
    let uas_port = free_port();
    let gw = bridge_gw(uas_port);
    let cap = Capture::start(gw.rtp);
    let far_mp = media_port();
    let uas = far_end(far_codec, uas_port, far_mp);
    std::thread::sleep(Duration::from_millis(300));
    let mp = media_port();
    let sipp = caller(&gw, pcap, caller_codec, 3000, mp);
    wait_ok(sipp, "caller");
    wait_ok(uas, "echo far end (gets warmline's BYE)");
    let pkts = cap.stop();
    let ours = |p: u16| (gw.rtp.0..=gw.rtp.1).contains(&p);
    EchoCall {
        sent: pkts.iter().filter(|p| p.src == mp).cloned().collect(),
        to_far: flow(&pkts, ours, far_mp),
        back: flow(&pkts, ours, mp),
    }
}

#[test]
fn bridge_relays_the_callers_audio_through_an_echo_and_back_untouched() {
    let EchoCall { sent, to_far, back } = echo_call("speech_pcmu.pcap", "0", "0");
    assert!(sent.len() >= 140, "caller sent {}", sent.len());
    assert!(
        to_far.iter().all(|p| p.pt == 0),
        "same codec: no transcoding"
    );
    assert!(
        back.len() + 2 >= sent.len(),
        "caller got {} of {}",
        back.len(),
        sent.len()
    );
    // Relay rewrites headers only: every payload comes back byte for byte, in order.
    let sent_payloads: Vec<&Vec<u8>> = sent.iter().map(|p| &p.payload).collect();
    let back_payloads: Vec<&Vec<u8>> = back.iter().map(|p| &p.payload).collect();
    let offset = sent_payloads
        .iter()
        .position(|p| *p == back_payloads[0])
        .expect("first echoed payload was sent");
    assert!(offset <= 2);
    for (i, p) in back_payloads.iter().enumerate() {
        assert_eq!(*p, sent_payloads[offset + i], "payload {i} intact");
    }
    assert_one_continuous_stream(&back, "relayed audio to the caller");
    assert_ne!(back[0].ssrc, sent[0].ssrc, "warmline's own SSRC on its leg");
}

#[test]
fn bridge_transcodes_pcma_caller_to_pcmu_far_end() {
    let EchoCall { sent, to_far, back } = echo_call("speech_pcma.pcap", "8", "0");
    let sent: Vec<i16> = sent.iter().flat_map(|p| alaw(&p.payload)).collect();
    assert!(
        !to_far.is_empty() && to_far.iter().all(|p| p.pt == 0),
        "far end gets PCMU"
    );
    assert!(
        back.len() >= 130 && back.iter().all(|p| p.pt == 8),
        "caller gets PCMA: {}",
        back.len()
    );
    assert_one_continuous_stream(&back, "transcoded audio to the caller");
    let got: Vec<i16> = back.iter().flat_map(|p| alaw(&p.payload)).collect();
    // Two jitter buffers on the way: allow up to half a second of delay.
    assert!(rms(&got) > 500.0, "not silence");
    // Window by window: a sender that stalls and bursts makes the jitter buffers take a
    // frame more delay mid-call, which is right; what must hold is that every stretch of
    // speech comes back intact, and the delay steps only a few times.
    let windows = windowed_corr(&got, &sent, 1600, 4000);
    assert!(windows.len() >= 5, "voiced windows: {windows:?}");
    for (i, (start, c, lag)) in windows.iter().enumerate() {
        // A window that straddles a step holds the two delays, half each.
        let at_step = [i.wrapping_sub(1), i + 1]
            .iter()
            .any(|&j| windows.get(j).is_some_and(|w| w.2 != *lag));
        assert!(
            *c > if at_step { 0.5 } else { 0.9 },
            "speech survives A-law -> mu-law -> A-law: {c:.3} at lag {lag} in the window at sample {start}: {windows:?}"
        );
    }
    let steps = windows.windows(2).filter(|w| w[0].2 != w[1].2).count();
    assert!(steps <= 3, "the delay stepped {steps} times: {windows:?}");
}

#[test]
fn dtmf_from_the_caller_is_decoded() {
    require_sipp();
    let gw = Gw::start("", "");
    let sipp = caller(&gw, "dtmf_pcmu.pcap", "0", 2500, media_port());
    let start = Instant::now();
    let mut digits = String::new();
    while start.elapsed() < Duration::from_secs(4) && digits != "15#" {
        std::thread::sleep(Duration::from_millis(100));
        digits = calls(&gw)[0]["digits"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    wait_ok(sipp, "DTMF caller");
    assert_eq!(digits, "15#");
    assert!(gw.logged("DTMF"));
}

#[test]
fn silence_ends_the_call_with_bye_but_hold_does_not() {
    require_sipp();
    let gw = Gw::start_with("", "rtp_timeout_s = 2", "");
    let start = Instant::now();
    let silent = one_call(&gw, "uac_wait_bye");
    let held = one_call(&gw, "uac_hold_silent");
    wait_ok(silent, "silent caller gets warmline's BYE");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "BYE after {took:?}"
    );
    wait_ok(held, "silent caller on hold keeps its call");
    let log = gw.log_with("call.rtp_timeout");
    assert_eq!(log.matches("media.rtp_timeout").count(), 1, "{log}");
    assert!(log.contains("call.rtp_timeout"));
}

/// A caller that holds warmline and then vanishes (no RTP, no RTCP, no BYE) does not keep
/// its call, and a port, forever: `hold_timeout_s` ends it with a BYE.
#[test]
fn a_held_call_whose_far_end_vanished_ends() {
    require_sipp();
    let gw = Gw::start_with("", "rtp_timeout_s = 2\nhold_timeout_s = 3", "");
    let start = Instant::now();
    let vanished = one_call(&gw, "uac_hold_vanish");
    wait_ok(vanished, "the vanished caller on hold gets warmline's BYE");
    let took = start.elapsed();
    // Held about 0.5 s after the answer; the 2 s two-way timeout must not apply on hold.
    assert!(
        took >= Duration::from_millis(3400),
        "BYE after {took:?}: before the hold timeout"
    );
    assert!(gw.logged("call.rtp_timeout"));
}

/// On hold and silent (no RTP, no RTCP), the caller is asked with an in-dialog OPTIONS
/// every `hold_probe_s`: a 200 keeps the call, a 481 (the phone lost the dialog) ends it
/// with a BYE at once, long before `hold_timeout_s`.
#[test]
fn a_held_silent_caller_is_asked_and_a_lost_dialog_ends_the_call() {
    require_sipp();
    let gw = Gw::start_with(
        "",
        "rtp_timeout_s = 2\nhold_timeout_s = 120\nhold_probe_s = 2",
        "",
    );
    let start = Instant::now();
    let caller = one_call(&gw, "uac_hold_probe");
    wait_ok(
        caller,
        "the held caller is asked twice, then gets warmline's BYE",
    );
    let took = start.elapsed();
    // Held about 0.5 s after the answer; asked at 2 s and 4 s of silence.
    assert!(took >= Duration::from_millis(4000), "ended after {took:?}");
    let log = eventually(
        Duration::from_secs(10),
        || gw.log(),
        |l| l.contains("call.peer_gone"),
    );
    assert!(log.contains("call.peer_gone"), "{log}");
    assert_eq!(
        log.matches("on hold and silent; asking the peer").count(),
        2,
        "{log}"
    );
    assert!(!log.contains("call.rtp_timeout"), "{log}");
}

#[test]
fn bridge_gives_the_caller_the_far_ends_refusal_and_hangup() {
    require_sipp();
    let uas_port = free_port();
    let gw = bridge_gw(uas_port);
    let busy = sipp(
        &[
            "-sf",
            scenarios().join("uas_busy.xml").to_str().unwrap(),
            "-m",
            "1",
        ],
        uas_port,
    );
    std::thread::sleep(Duration::from_millis(300));
    let resp = udp_request(
        gw.sip,
        &invite(
            "b2b-busy",
            "m=audio 9000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000\r\n",
        ),
    );
    assert!(resp.starts_with("SIP/2.0 486"), "{resp}");
    wait_ok(busy, "busy far end");

    let far = sipp(
        &[
            "-sf",
            scenarios().join("uas_hangup.xml").to_str().unwrap(),
            "-m",
            "1",
            "-mp",
            &media_port().to_string(),
        ],
        uas_port,
    );
    std::thread::sleep(Duration::from_millis(300));
    let caller = one_call(&gw, "uac_wait_bye");
    wait_ok(caller, "caller gets the BYE the far end started");
    wait_ok(far, "far end's BYE answered");
}

/// The attack of issue 13: during a live call a stranger on another address floods the
/// call's RTP port with audio and an RFC 4733 `0` (the default `dtmf` rule's digit). The
/// call stays latched to the caller, nobody pressed 0, and the stranger's packets are
/// dropped and counted.
#[test]
fn a_stranger_can_neither_take_over_the_media_nor_press_keys_for_the_caller() {
    require_sipp();
    let gw = Gw::start_with("", "", "[[routes]]\nname = \"default\"\n");
    let mp = media_port();
    let sipp = caller(&gw, "dtmf_pcmu.pcap", "0", 4000, mp);
    let caller_addr = format!("127.0.0.1:{mp}");
    let live = eventually(
        Duration::from_secs(10),
        || calls(&gw),
        |c| c[0]["media"]["latched"] == caller_addr.as_str(),
    );
    assert_eq!(live[0]["media"]["latched"], caller_addr.as_str(), "{live}");
    let port = live[0]["media"]["local_port"].as_u64().unwrap() as u16;
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let mut sent = 0u64;
    for seq in 0..2000u16 {
        let (pt, payload): (u8, Vec<u8>) = if seq % 2 == 0 {
            // Event 0, end bit, volume 10, duration 800.
            (101, vec![0, 0x80 | 10, 0x03, 0x20])
        } else {
            (0, vec![0; 160])
        };
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&0x0bad_f00d_u32.to_be_bytes());
        p.extend_from_slice(&payload);
        if stranger.send_to(&p, ("127.0.0.1", port)).is_ok() {
            sent += 1;
        }
        if seq % 100 == 99 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The report refreshes about once a second: wait until it has seen the flood.
    let live = eventually(
        Duration::from_secs(5),
        || calls(&gw),
        |c| c[0]["media"]["strangers"].as_u64().unwrap_or(0) >= sent / 2,
    );
    let call = &live[0];
    assert_eq!(call["media"]["latched"], caller_addr.as_str(), "{call}");
    assert_eq!(call["media"]["relatched"], 0, "{call}");
    assert!(
        call["media"]["strangers"].as_u64().unwrap_or(0) >= sent / 2,
        "{sent} sent: {call}"
    );
    assert!(
        !call["digits"].as_str().unwrap_or("").contains('0'),
        "{call}"
    );
    assert!(
        call["triggers"]
            .as_array()
            .is_none_or(|t| t.iter().all(|t| t["kind"] != "dtmf")),
        "{call}"
    );
    wait_ok(sipp, "the caller's call goes on to its end");
}

fn readyz(gw: &Gw) -> (u16, String) {
    http_req(gw.http, "GET", "/readyz", "")
}

/// The recognizer listens to as many callers at once as `[speech] capacity` says: one
/// more is refused with 503 and Retry-After (a PBX or Kamailio then tries another
/// instance), `/readyz` says so while it lasts, and the place comes back when the caller
/// hangs up.
#[test]
fn a_caller_beyond_the_speech_capacity_is_refused_and_readyz_says_so() {
    require_sipp();
    let gw = Gw::start("retry_after_s = 7", "[speech]\ncapacity = 1\n");
    assert_eq!(
        readyz(&gw),
        (200, "ready\nspeech: 0 of 1 callers heard\n".to_string())
    );
    let first = caller(&gw, "tone_pcmu.pcap", "0", 8000, media_port());
    let busy = eventually(Duration::from_secs(20), || readyz(&gw), |(s, _)| *s == 503);
    assert_eq!(
        busy,
        (
            503,
            "speech capacity reached\nspeech: 1 of 1 callers heard\n".to_string()
        )
    );
    assert_eq!(metric(&gw, "warmline_speech_listening_callers"), Some(1.0));
    let resp = udp_request(
        gw.sip,
        &invite(
            "beyond-capacity",
            "m=audio 40000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000\r\n",
        ),
    );
    assert!(resp.starts_with("SIP/2.0 503"), "{resp}");
    assert!(resp.contains("Retry-After: 7\r\n"), "{resp}");
    assert!(resp.contains("speech capacity reached"), "{resp}");
    assert_eq!(
        metric(
            &gw,
            "warmline_speech_over_capacity_total{action=\"refused\"}"
        ),
        Some(1.0)
    );
    wait_ok(first, "the caller holding the only place");
    let free = eventually(Duration::from_secs(20), || readyz(&gw), |(s, _)| *s == 200);
    assert_eq!(free.1, "ready\nspeech: 0 of 1 callers heard\n");
    // The next caller is heard again.
    wait_ok(
        caller(&gw, "tone_pcmu.pcap", "0", 500, media_port()),
        "a caller after the place came back",
    );
    assert_eq!(
        metric(
            &gw,
            "warmline_speech_over_capacity_total{action=\"refused\"}"
        ),
        Some(1.0)
    );
}

/// Without `[speech] capacity`, warmline measures what it can hear at start-up (every
/// worker decoding a 2 s request at once) and says so.
#[test]
fn the_speech_capacity_is_measured_at_start_up_when_not_configured() {
    let gw = Gw::start("", "[speech]\ncapacity = 0\n");
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("speech capacity: callers heard at once"))
        .unwrap_or_else(|| panic!("no speech capacity line in:\n{log}"));
    assert!(
        line.contains("(measured)") && line.contains("self_test_ms="),
        "{line}"
    );
    let capacity = metric(&gw, "warmline_speech_capacity_callers").unwrap_or(0.0);
    assert!(capacity >= 1.0, "{capacity}");
    assert!(line.contains(&format!("capacity={capacity}")), "{line}");
    assert_eq!(
        readyz(&gw),
        (
            200,
            format!("ready\nspeech: 0 of {capacity} callers heard\n")
        )
    );
}
