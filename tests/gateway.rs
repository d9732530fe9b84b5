//! The real `warmline` binary on loopback ports the kernel gives it, against SIPp and raw SIP over UDP:
//! every scenario in `sipp-scenarios/`, refusals (403, 488, 503), malformed input, the RTP
//! port in the answer being really bound, and the SIGTERM drain.

// Test support code: a failed setup step should panic with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn every_sipp_scenario_passes_through_run_sh() {
    require_sipp();
    let gw = Gw::start("answer_after_ms = 1000", "");
    let out = Command::new(scenarios().join("run.sh"))
        .arg(gw.sip_addr())
        .arg(format!("127.0.0.1:{}", gw.http))
        .env("WARMLINE_RINGS", "1")
        .env("LOAD_CALLS", "100")
        .env("LOAD_RATE", "50")
        .env("SIPP_BASE_PORT", free_port().saturating_sub(20).to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "run.sh failed:\n{text}\n{}", gw.log());
    assert!(text.contains("11 passed, 0 failed"), "{text}");
}

#[test]
fn answer_carries_a_bound_rtp_port_from_the_range() {
    require_sipp();
    let gw = Gw::start("", "");
    let cid = format!("rtp-{}@127.0.0.1", std::process::id());
    let child = call_scenario(
        &gw,
        "uac_basic",
        &["-m", "1", "-d", "1500", "-cid_str", &cid],
    );
    let start = Instant::now();
    let body = loop {
        let (status, body) = http_req(gw.http, "GET", &format!("/v1/calls/{cid}"), "");
        if status == 200 && body.contains("\"confirmed\"") {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "call never confirmed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let port: u16 = body
        .split("\"rtp_port\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("rtp_port");
    assert!(
        (gw.rtp.0..=gw.rtp.1).contains(&port),
        "{port} outside {:?}",
        gw.rtp
    );
    assert_eq!(port % 2, 0, "RTP on an even port");
    assert!(
        UdpSocket::bind(("127.0.0.1", port)).is_err(),
        "port {port} in the answer is not bound by warmline"
    );
    wait_ok(child, "basic call");
    // released when the call ends
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        UdpSocket::bind(("127.0.0.1", port)).is_ok(),
        "RTP port leaked"
    );
}

#[test]
fn refusals_carry_the_right_codes_and_headers() {
    // no common codec: 488 with a 305 Warning
    let gw = Gw::start("", "");
    let r = udp_request(
        gw.sip,
        &invite(
            "g729",
            "m=audio 6000 RTP/AVP 18",
            "a=rtpmap:18 G729/8000\r\n",
        ),
    );
    assert!(r.starts_with("SIP/2.0 488 "), "{r}");
    assert!(r.contains("Warning: 305 warmline"), "{r}");
    drop(gw);

    // source outside allow_from: 403
    let gw = Gw::start("allow_from = [\"192.0.2.0/24\"]", "");
    let r = udp_request(gw.sip, &invite("acl", "m=audio 6000 RTP/AVP 0", ""));
    assert!(r.starts_with("SIP/2.0 403 "), "{r}");
    drop(gw);

    // max_calls reached: 503 with Retry-After, and the admitted call is unharmed
    require_sipp();
    let gw = Gw::start("max_calls = 1\nretry_after_s = 9", "");
    let held = call_scenario(&gw, "uac_basic", &["-m", "1", "-d", "2000"]);
    let start = Instant::now();
    while !http_req(gw.http, "GET", "/v1/stats", "")
        .1
        .contains("\"active_calls\":1")
    {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = udp_request(gw.sip, &invite("full", "m=audio 6000 RTP/AVP 0", ""));
    assert!(r.starts_with("SIP/2.0 503 "), "{r}");
    assert!(r.contains("Retry-After: 9"), "{r}");
    wait_ok(held, "call admitted before the limit");
}

#[test]
fn malformed_requests_get_400_and_other_calls_go_on() {
    require_sipp();
    let gw = Gw::start("", "");
    let good = invite("bad-cseq", "m=audio 6000 RTP/AVP 0", "");
    let r = udp_request(gw.sip, &good.replace("CSeq: 1 INVITE", "CSeq: one INVITE"));
    assert!(r.starts_with("SIP/2.0 400 Bad CSeq"), "{r}");
    assert!(r.contains("Call-ID: bad-cseq"), "{r}");
    let r = udp_request(gw.sip, &good.replace("Call-ID: bad-cseq\r\n", ""));
    assert!(r.starts_with("SIP/2.0 400 Missing Call-ID"), "{r}");
    let r = udp_request(gw.sip, &good.replace(" SIP/2.0\r\nVia", " SIP/3.0\r\nVia"));
    assert!(r.starts_with("SIP/2.0 505 "), "{r}");
    // pure garbage is dropped, counted, and nothing else is disturbed
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"\x00\x01garbage\xff", ("127.0.0.1", gw.sip))
        .unwrap();
    let child = call_scenario(&gw, "uac_basic", &["-m", "5", "-r", "5"]);
    wait_ok(child, "calls after malformed input");
    let stats = http_req(gw.http, "GET", "/v1/stats", "").1;
    assert!(stats.contains("\"malformed_answered\":3"), "{stats}");
    assert!(stats.contains("\"malformed_dropped\":1"), "{stats}");
}

#[test]
fn sigterm_refuses_new_calls_then_byes_the_rest_and_exits() {
    require_sipp();
    let mut gw = Gw::start("", "[shutdown]\ndrain_s = 1");
    let cid = format!("drain-{}@127.0.0.1", std::process::id());
    let waiting = call_scenario(&gw, "uac_wait_bye", &["-m", "1", "-cid_str", &cid]);
    let start = Instant::now();
    while !http_req(gw.http, "GET", &format!("/v1/calls/{cid}"), "")
        .1
        .contains("\"confirmed\"")
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "call never confirmed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = gw.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(200));
    let r = udp_request(gw.sip, &invite("late", "m=audio 6000 RTP/AVP 0", ""));
    assert!(
        r.starts_with("SIP/2.0 503 ") && r.contains("Retry-After"),
        "{r}"
    );
    wait_ok(waiting, "call ended by warmline's BYE after the drain time");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "warmline did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

/// The binary's `command --config cfg`, run to its end.
fn warmline_with(command: &str, cfg: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warmline"))
        .args([command, "--config"])
        .arg(cfg)
        .output()
        .unwrap()
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[sip]\nmax_calls = 10\n\n[media]\nrtp_port_range = [30000, 100]\n",
    )
    .unwrap();
    let out = warmline_with("check-config", &cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:5: key `media.rtp_port_range`"),
        "{err}"
    );
    std::fs::write(&cfg, "[sip]\nmax_calls = 10\n").unwrap();
    let out = warmline_with("check-config", &cfg);
    assert!(out.status.success());
}

/// A SIP port another process holds is a start-up error naming it (rsipstack binds TCP
/// late and only warns: warmline checks first), and port 0 takes one the kernel gives,
/// the same for UDP and TCP, reported in the log.
#[test]
fn a_taken_sip_port_stops_the_start_and_port_zero_is_chosen_and_reported() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("warmline.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nlisten = [\"tcp:127.0.0.1:{port}\"]\n[http]\nlisten = \"127.0.0.1:0\"\n[speech]\nfetch_model = \"none\"\n"
        ),
    )
    .unwrap();
    let out = warmline_with("run", &cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a taken port: {err}");
    assert!(
        err.contains(&format!("binding SIP tcp:127.0.0.1:{port}")),
        "{err}"
    );
    drop(held);

    let gw = Gw::start("", "");
    assert_ne!(gw.sip, 0);
    let log = gw.log();
    assert!(
        log.contains(&format!("transport=tcp addr=127.0.0.1:{}", gw.sip)),
        "UDP and TCP share the chosen port: {log}"
    );
    // It answers there.
    let reply = udp_request(
        gw.sip,
        &format!(
            "OPTIONS sip:warmline@127.0.0.1:{p} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{{me}};branch=z9hG4bK-port0\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:warmline@127.0.0.1>\r\nCall-ID: port0@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = gw.sip
        ),
    );
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
}
