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
        .env("SIPP_BASE_PORT", free_ports(32).to_string())
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
    // Given back when the call ends: the pair rests as a spare for later calls (still
    // bound, so no stranger takes the port meanwhile), not held by a call that is gone.
    let spare = eventually(
        Duration::from_secs(5),
        || metric(&gw, "warmline_rtp_spare_pairs"),
        |n| *n == Some(1.0),
    );
    assert_eq!(
        spare,
        Some(1.0),
        "the ended call's RTP pair is not back in the pool"
    );
    assert!(UdpSocket::bind(("127.0.0.1", port)).is_err());
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

/// Media aimed where no phone listens is refused, and an INVITE's SDP is a claim that the
/// ACK proves: until it comes, nothing goes to the address it names (one unACKed INVITE
/// once bought 52 KB of greeting for someone else's address).
#[test]
fn media_cannot_be_aimed_at_someone_else() {
    let gw = Gw::start_with("", "", "[[routes]]\nname = \"default\"\n");
    for (c, port) in [
        ("224.0.0.1", 9000),
        ("255.255.255.255", 9000),
        ("127.0.0.1", 1),
    ] {
        let text = invite(
            &format!("aim-{c}-{port}"),
            &format!("m=audio {port} RTP/AVP 0"),
            "a=rtpmap:0 PCMU/8000\r\n",
        )
        .replace("c=IN IP4 127.0.0.1", &format!("c=IN IP4 {c}"));
        let resp = udp_request(gw.sip, &text);
        assert!(
            resp.starts_with("SIP/2.0 488") && resp.contains("Warning: 301"),
            "{c}:{port}: {resp}"
        );
    }

    let victim = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
    let vport = victim.local_addr().unwrap().port();
    victim
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let caller = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap().port();
    let call_id = "aim-victim";
    let text = invite(
        call_id,
        &format!("m=audio {vport} RTP/AVP 0"),
        "a=rtpmap:0 PCMU/8000\r\n",
    )
    .replace("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.3")
    .replace("{me}", &me.to_string());
    caller
        .send_to(text.as_bytes(), ("127.0.0.1", gw.sip))
        .unwrap();
    let mut buf = [0u8; 8192];
    let ok = loop {
        let (n, _) = caller.recv_from(&mut buf).expect("a response");
        let r = String::from_utf8_lossy(&buf[..n]).to_string();
        if !r.starts_with("SIP/2.0 1") {
            break r;
        }
    };
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    // Answered and not ACKed: the greeting would be playing now. Watch for two seconds
    // of it (a window: what is asserted is that nothing happens).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok((n, from)) = victim.recv_from(&mut buf) {
            panic!("{n} bytes from {from} reached an address nobody proved");
        }
    }
    let live = eventually(
        Duration::from_secs(5),
        || calls(&gw),
        |c| !c[0]["media"].is_null(),
    );
    assert_eq!(live[0]["media"]["packets_out"], 0, "{live}");
    // The ACK proves the dialog: now the greeting goes where the SDP said, from its start.
    let header = |name: &str| {
        ok.lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(|l| l[name.len() + 1..].trim().to_string())
            .unwrap_or_default()
    };
    let contact = header("contact");
    let uri = contact
        .trim_start_matches('<')
        .split(['>', ';'])
        .next()
        .unwrap_or_default()
        .to_string();
    let ack = format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-ack-{call_id}\r\nFrom: <sip:t@127.0.0.1>;tag=t1\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header("to")
    );
    caller
        .send_to(ack.as_bytes(), ("127.0.0.1", gw.sip))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        if let Ok((n, _)) = victim.recv_from(&mut buf) {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no greeting after the ACK: {}",
            calls(&gw)
        );
    };
    assert_eq!(got, 12 + 160, "an RTP packet of PCMU");
    assert_eq!(
        buf[1] & 0x80,
        0x80,
        "the greeting's first packet, with its marker"
    );
}

/// A burst of INVITEs all arriving before any call has registered admits exactly
/// `max_calls` (it once admitted one more: the check and the count were apart).
#[test]
fn a_burst_of_invites_admits_exactly_max_calls() {
    let gw = Gw::start("max_calls = 5", "");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = s.local_addr().unwrap().port();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for i in 0..60 {
        let text = invite(
            &format!("burst-{i}"),
            "m=audio 9000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000\r\n",
        )
        .replace("{me}", &me.to_string());
        s.send_to(text.as_bytes(), ("127.0.0.1", gw.sip)).unwrap();
    }
    // One final answer per Call-ID (a 2xx is retransmitted until ACKed: counted once).
    let mut finals = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 8192];
    while finals.len() < 60 && Instant::now() < deadline {
        let Ok((n, _)) = s.recv_from(&mut buf) else {
            continue;
        };
        let r = String::from_utf8_lossy(&buf[..n]).to_string();
        let Some(code) = r.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)) else {
            continue;
        };
        if code.starts_with('1') {
            continue;
        }
        let id = r
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap_or_default()
            .to_string();
        finals.entry(id).or_insert_with(|| code.to_string());
    }
    assert_eq!(finals.len(), 60, "{finals:?}");
    let admitted = finals.values().filter(|c| *c == "200").count();
    let refused = finals.values().filter(|c| *c == "503").count();
    assert_eq!((admitted, refused), (5, 55), "{finals:?}");
}

/// The parser's edges, over a real socket: each gets the answer RFC 3261 gives it, and a
/// call after them is answered as usual.
#[test]
fn parser_edges_get_the_right_answer() {
    require_sipp();
    let gw = Gw::start("", "");
    let good = invite("edge", "m=audio 6000 RTP/AVP 0", "");
    let r = udp_request(
        gw.sip,
        &good.replace("Contact: <sip:t@127.0.0.1:{me}>\r\n", ""),
    );
    assert!(r.starts_with("SIP/2.0 400 Missing Contact"), "{r}");
    let r = udp_request(
        gw.sip,
        &good.replace("<sip:t@127.0.0.1:{me}>", "<sip:t@127.0.0.1:4294967296>"),
    );
    assert!(r.starts_with("SIP/2.0 400 Bad Contact"), "{r}");
    let r = udp_request(
        gw.sip,
        &good.replace("Max-Forwards: 70", "Subject: \u{1b}[2J\u{0}"),
    );
    assert!(r.starts_with("SIP/2.0 400 Control character"), "{r}");
    // 9,000 bytes: over the stack's 8 KiB UDP buffer.
    let body = format!("v=0\r\n{}", "a=x-pad:0123456789abcdef\r\n".repeat(340));
    let big = good.replace("Content-Length: ", "X-Old-Length: ").replace(
        "\r\n\r\n",
        &format!("\r\nContent-Length: {}\r\n\r\n", body.len()),
    ) + &body;
    assert!(big.len() > 9000);
    let r = udp_request(gw.sip, &big);
    assert!(r.starts_with("SIP/2.0 513 Message Too Large"), "{r}");
    assert!(
        !gw.log().contains('\u{1b}'),
        "an escape byte reached the log"
    );
    let child = call_scenario(&gw, "uac_basic", &["-m", "2", "-r", "2"]);
    wait_ok(child, "calls after the edges");
}

/// The API's edges: a token in a URL opens only the agent's page and its live view, the
/// bearer scheme is read in any case, a call's JSON has each key once, DTMF commands are
/// bounded, and a client that trickles its headers is cut.
#[test]
fn api_edges() {
    require_sipp();
    let gw = Gw::start_http("", "", "token = \"t0k\"", "");
    let cid = format!("api-edges-{}@127.0.0.1", std::process::id());
    let caller = call_scenario(&gw, "uac_wait_bye", &["-m", "1", "-cid_str", &cid]);
    let auth = "Authorization: Bearer t0k\r\n";
    let view = eventually(
        Duration::from_secs(10),
        || http_req_with(gw.http, "GET", &format!("/v1/calls/{cid}"), "", auth),
        |(status, _)| *status == 200,
    );
    assert_eq!(view.0, 200, "{view:?}");
    for key in ["\"role\":", "\"media\":", "\"negotiated\":"] {
        assert_eq!(view.1.matches(key).count(), 1, "{key} in {}", view.1);
    }
    // The scheme in lower case is the same scheme.
    let (status, _) = http_req_with(
        gw.http,
        "GET",
        "/v1/calls",
        "",
        "Authorization: bearer t0k\r\n",
    );
    assert_eq!(status, 200);
    // A URL token changes nothing, and reads nothing but the page's own routes.
    let (status, _) = http_req(
        gw.http,
        "POST",
        &format!("/v1/calls/{cid}/hold?token=t0k"),
        "",
    );
    assert_eq!(status, 401);
    let (status, _) = http_req(gw.http, "GET", "/v1/stats?token=t0k", "");
    assert_eq!(status, 401);
    let (status, _) = http_req(gw.http, "GET", &format!("/api/calls/{cid}?token=t0k"), "");
    assert_eq!(status, 200);
    let digits = format!("{{\"digits\": \"{}\"}}", "1".repeat(100));
    let (status, body) = http_req_with(
        gw.http,
        "POST",
        &format!("/v1/calls/{cid}/dtmf"),
        &digits,
        auth,
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = http_req_with(
        gw.http,
        "POST",
        &format!("/v1/calls/{cid}/dtmf"),
        "{\"digits\": \"12#\"}",
        auth,
    );
    assert_eq!(status, 202);
    // One header byte at a time, slower than the header deadline allows: cut.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", gw.http)).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    use std::io::{Read, Write};
    slow.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let cut = loop {
        let _ = slow.write_all(b"a");
        match slow.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => break true,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break true,
        }
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
    };
    assert!(
        cut,
        "a client trickling its headers kept its connection for 30 s"
    );
    let (status, _) = http_req(gw.http, "GET", "/healthz", "");
    assert_eq!(status, 200);
    let (status, _) = http_req_with(gw.http, "DELETE", &format!("/v1/calls/{cid}"), "", auth);
    assert_eq!(status, 202);
    wait_ok(caller, "the caller gets the API's BYE");
}

/// A gateway killed mid-call leaves the call's trail without its `end`; the next start
/// ends it there (`call.gateway_restart`), so every trail ends.
#[test]
fn a_call_left_live_by_a_killed_gateway_ends_in_its_trail_at_the_next_start() {
    require_sipp();
    let db = tempfile::tempdir().unwrap();
    let extra = format!(
        "[store]\npath = \"{}\"\n",
        db.path().join("warmline.db").display()
    );
    let mut gw = Gw::start("", &extra);
    let cid = format!("orphan-{}@127.0.0.1", std::process::id());
    let mut caller = call_scenario(&gw, "uac_wait_bye", &["-m", "1", "-cid_str", &cid]);
    let path = format!("/api/calls/{cid}/audit");
    let (_, trail) = eventually(
        Duration::from_secs(10),
        || http_req(gw.http, "GET", &path, ""),
        |(_, body)| body.contains("call_start"),
    );
    assert!(trail.contains("call_start"), "{trail}");
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    let _ = caller.kill();
    let _ = caller.wait();
    let again = Gw::start("", &extra);
    let (_, trail) = eventually(
        Duration::from_secs(10),
        || http_req(again.http, "GET", &path, ""),
        |(_, body)| body.contains("call.gateway_restart"),
    );
    assert!(trail.contains("call.gateway_restart"), "{trail}");
    assert!(again.logged("calls the last run left live"));
}

/// A flood of INVITEs at a full gateway is refused at the socket, statelessly: none becomes
/// a transaction, SIP stays answerable during and after it, and a call is admitted as soon
/// as a place frees (once, the flood's transactions stalled SIP for half a minute).
#[test]
fn an_invite_flood_at_a_full_gateway_is_shed_without_state() {
    require_sipp();
    let gw = Gw::start("max_calls = 1", "");
    let cid = format!("flood-holder-{}@127.0.0.1", std::process::id());
    let holder = call_scenario(&gw, "uac_wait_bye", &["-m", "1", "-cid_str", &cid]);
    let path = format!("/v1/calls/{cid}");
    let held = eventually(
        Duration::from_secs(10),
        || http_req(gw.http, "GET", &path, ""),
        |(_, body)| body.contains("\"confirmed\""),
    );
    assert!(held.1.contains("\"confirmed\""), "{held:?}");
    // From its own address: the bystander and the holder (127.0.0.1) are other sources.
    let flood = UdpSocket::bind("127.0.0.5:0").unwrap();
    let me = flood.local_addr().unwrap().port();
    for i in 0..20_000 {
        let text = invite(&format!("flood-{i}"), "m=audio 9000 RTP/AVP 0", "")
            .replace("{me}", &me.to_string());
        let _ = flood.send_to(text.as_bytes(), ("127.0.0.1", gw.sip));
    }
    // SIP still answers: a bystander's INVITE (retransmitted as a UA does, Timer A: the
    // flood may have filled the socket's buffer when it first came) gets its 503, not
    // silence while the flood's timers run.
    let r = retransmitted_request(gw.sip, &invite("bystander", "m=audio 9000 RTP/AVP 0", ""));
    assert!(
        r.starts_with("SIP/2.0 503") && r.contains("Retry-After"),
        "{r}"
    );
    let stats = eventually(
        Duration::from_secs(10),
        || http_req(gw.http, "GET", "/v1/stats", "").1,
        |s| {
            serde_json::from_str::<serde_json::Value>(s)
                .is_ok_and(|v| v["invites_shed"].as_u64().unwrap_or(0) >= 1000)
        },
    );
    // Refused at the socket (how many reached it depends on the kernel's buffer and the
    // box's speed; past the source's rate the rest are dropped): none became a call or a
    // transaction.
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(v["invites_shed"].as_u64().unwrap_or(0) >= 1000, "{stats}");
    assert_eq!(v["active_calls"], 1, "{stats}");
    // The place frees: the next call is in.
    let (status, _) = http_req(gw.http, "DELETE", &path, "");
    assert_eq!(status, 202);
    wait_ok(holder, "the holder's call ends");
    let admitted = eventually(
        Duration::from_secs(10),
        || retransmitted_request(gw.sip, &invite("after-flood", "m=audio 9000 RTP/AVP 0", "")),
        |r| r.starts_with("SIP/2.0 200"),
    );
    assert!(admitted.starts_with("SIP/2.0 200"), "{admitted}");
}

/// OPTIONS outside a dialog (trunk keepalives, dispatcher probes, or a flood of them) are
/// answered at the socket without a transaction, with what the stack would have said: 200
/// and our capabilities, or 503 with Retry-After once draining. In-dialog OPTIONS still
/// reach their dialog (481 here: there is none); a BYE naming no live call gets its 481
/// from the socket.
#[test]
fn options_outside_a_dialog_and_stray_byes_are_answered_without_state() {
    let gw = Gw::start("", "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap().port();
    let options = |i: u32, to_tag: &str| {
        format!(
            "OPTIONS sip:warmline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-ka{i}\r\n\
             From: <sip:ka@127.0.0.1>;tag=ka\r\nTo: <sip:warmline@127.0.0.1>{to_tag}\r\n\
             Call-ID: ka-{i}@127.0.0.1\r\nCSeq: {i} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // The answer to `text`; a request with `method` in place of OPTIONS.
    let ask = |text: &str| {
        let mut buf = [0u8; 4096];
        sock.send_to(text.as_bytes(), ("127.0.0.1", gw.sip))
            .unwrap();
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let with_method = |text: String, i: u32, method: &str| {
        text.replacen("OPTIONS sip", &format!("{method} sip"), 1)
            .replace(
                &format!("CSeq: {i} OPTIONS"),
                &format!("CSeq: {i} {method}"),
            )
    };
    for i in 1..=200 {
        let r = ask(&options(i, ""));
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
        assert!(r.contains(&format!("CSeq: {i} OPTIONS\r\n")), "{r}");
        assert!(
            r.contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"),
            "{r}"
        );
    }
    let r = ask(&options(201, ";tag=gone"));
    assert!(r.starts_with("SIP/2.0 481"), "{r}");
    // A BYE for no live call: 481 from the socket, no transaction kept for it.
    let r = ask(&with_method(options(202, ";tag=gone"), 202, "BYE"));
    assert!(
        r.starts_with("SIP/2.0 481") && r.contains("CSeq: 202 BYE"),
        "{r}"
    );
    // Any other in-dialog request for no live call: 481; a method not taken outside a
    // dialog: 405 with Allow. Both from the socket.
    let r = ask(&with_method(options(203, ";tag=gone"), 203, "INFO"));
    assert!(
        r.starts_with("SIP/2.0 481") && r.contains("CSeq: 203 INFO"),
        "{r}"
    );
    let r = ask(&with_method(options(204, ""), 204, "REGISTER"));
    assert!(
        r.starts_with("SIP/2.0 405") && r.contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"),
        "{r}"
    );
    let stats = http_req(gw.http, "GET", "/v1/stats", "").1;
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["options_stateless"], 200, "{stats}");
    assert_eq!(v["stray_byes"], 1, "{stats}");
    assert_eq!(v["stray_requests"], 2, "{stats}");
}

/// A request sent as a UA over UDP sends it (RFC 3261 Timer A: again after 0.5 s, 1 s, 2 s,
/// ...), and its first final response; empty if none came within 16 s.
fn retransmitted_request(to: u16, text: &str) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = s.local_addr().unwrap().port();
    let text = text.replace("{me}", &me.to_string());
    let start = Instant::now();
    let mut wait = Duration::from_millis(500);
    let mut buf = [0u8; 8192];
    while start.elapsed() < Duration::from_secs(16) {
        s.send_to(text.as_bytes(), ("127.0.0.1", to)).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        let until = Instant::now() + wait;
        while Instant::now() < until {
            let Ok((n, _)) = s.recv_from(&mut buf) else {
                break;
            };
            let r = String::from_utf8_lossy(&buf[..n]).to_string();
            if !r.starts_with("SIP/2.0 1") {
                return r;
            }
        }
        wait = (wait * 2).min(Duration::from_secs(4));
    }
    String::new()
}

/// Kamailio's pike, in warmline: a source over its request rate is ignored for the ban's
/// length while everyone else is served, and is served again after it.
#[test]
fn a_source_over_its_request_rate_is_ignored_for_a_while() {
    let gw = Gw::start(
        "rate_limit_per_s = 50\nrate_limit_burst = 100\nrate_limit_ban_s = 2",
        "",
    );
    let options = |call_id: &str| {
        format!(
            "OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.6:{{me}};branch=z9hG4bK-{call_id}\r\nFrom: <sip:p@127.0.0.6>;tag=p\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let flood = UdpSocket::bind("127.0.0.6:0").unwrap();
    let me = flood.local_addr().unwrap().port();
    for i in 0..1000 {
        let text = options(&format!("pike-{i}")).replace("{me}", &me.to_string());
        flood
            .send_to(text.as_bytes(), ("127.0.0.1", gw.sip))
            .unwrap();
    }
    // Someone else is answered meanwhile.
    let r = retransmitted_request(
        gw.sip,
        &invite("not-the-flood", "m=audio 9000 RTP/AVP 0", ""),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    // The flooder got at most its burst (and a little refill) answered.
    flood
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    while flood.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    assert!(
        (50..=200).contains(&answered),
        "{answered} of 1000 answered"
    );
    let stats = http_req(gw.http, "GET", "/v1/stats", "").1;
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(v["rate_limited"].as_u64().unwrap_or(0) >= 700, "{stats}");
    assert!(gw.logged("over its request rate"));
    // After the ban, the source is served again.
    let again = eventually(
        Duration::from_secs(10),
        || {
            let text = options("pike-after").replace("{me}", &me.to_string());
            let _ = flood.send_to(text.as_bytes(), ("127.0.0.1", gw.sip));
            flood
                .recv_from(&mut buf)
                .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).to_string())
                .unwrap_or_default()
        },
        |r| r.starts_with("SIP/2.0 200"),
    );
    assert!(again.starts_with("SIP/2.0 200"), "{again}");
}

fn tcp_options(port: u16, conn: &mut std::net::TcpStream, n: u32) -> String {
    use std::io::{Read, Write};
    let me = conn.local_addr().unwrap().port();
    let req = format!(
        "OPTIONS sip:warmline@127.0.0.1:{port};transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:{me};branch=z9hG4bK-tcp-{me}-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=t{me}\r\n\
         To: <sip:warmline@127.0.0.1>\r\nCall-ID: tcp-{me}-{n}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).expect("an answer over TCP");
        assert!(n > 0, "the connection closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits (up to `within`) for the far end to close `conn`: true if it did.
fn closed_by_peer(conn: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// SIP over TCP: one address holds at most `tcp_max_per_ip` connections (more are closed
/// at accept), and a connection that brings no whole message in time, silent or a byte
/// at a time, is cut; one that speaks SIP keeps its connection past that deadline.
#[test]
fn tcp_connections_are_bounded_and_a_silent_or_trickling_one_is_cut() {
    use std::io::Write;
    use std::net::TcpStream;
    let gw = Gw::start("tcp_max_per_ip = 4\ntcp_message_timeout_s = 4", "");
    let mut talker = TcpStream::connect(("127.0.0.1", gw.sip)).unwrap();
    let answer = tcp_options(gw.sip, &mut talker, 1);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    // Messages over TCP are counted as those over UDP are (rsipstack patch 8).
    let counted = |series: &str| metric(&gw, &format!("warmline_sip_messages_total{{{series}}}"));
    assert_eq!(
        counted(r#"direction="in",kind="request",name="OPTIONS""#),
        Some(1.0)
    );
    assert_eq!(
        counted(r#"direction="out",kind="response",name="200""#),
        Some(1.0)
    );
    let mut silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", gw.sip)).unwrap())
        .collect();
    let mut trickler = TcpStream::connect(("127.0.0.1", gw.sip)).unwrap();
    trickler.write_all(b"OPTIONS sip:w").unwrap();
    let open = eventually(
        Duration::from_secs(10),
        || metric(&gw, "warmline_sip_tcp_connections"),
        |v| *v == Some(4.0),
    );
    assert_eq!(open, Some(4.0), "four connections held");
    // The fifth from this address is over the bound: closed at once.
    let mut fifth = TcpStream::connect(("127.0.0.1", gw.sip)).unwrap();
    assert!(
        closed_by_peer(&mut fifth, Duration::from_secs(3)),
        "a fifth connection from one address was kept"
    );
    // The trickler sends a byte now and then; neither it nor the silent ones complete a
    // message, so all three are cut after the deadline.
    let start = Instant::now();
    let mut cut = false;
    while start.elapsed() < Duration::from_secs(20) {
        if trickler.write_all(b"a").is_err()
            || closed_by_peer(&mut trickler, Duration::from_millis(300))
        {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a connection trickling one header byte at a time was kept 20 s"
    );
    for s in &mut silent {
        assert!(
            closed_by_peer(s, Duration::from_secs(20)),
            "a connection that never sent a message was kept"
        );
    }
    // The talker, past the deadline, still has its connection.
    let answer = tcp_options(gw.sip, &mut talker, 2);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    let refused = metric(&gw, "warmline_sip_tcp_closed_total{reason=\"refused\"}");
    let cut = metric(&gw, "warmline_sip_tcp_closed_total{reason=\"cut\"}");
    assert!(refused >= Some(1.0), "refused: {refused:?}");
    assert_eq!(cut, Some(3.0));
}

/// With its descriptors spent by idle TCP connections, warmline backs off its accepts
/// (not millions of retries and log lines), still answers SIP over UDP, and accepts
/// again once descriptors are free.
#[test]
fn tcp_accepts_back_off_when_descriptors_run_out() {
    use std::net::TcpStream;
    let gw = Gw::start_under(
        &["prlimit", "--nofile=160:160"],
        "tcp_max_per_ip = 1000\ntcp_max_connections = 1000\nmax_calls = 10",
        "",
        "",
        "",
    );
    let mut held = Vec::new();
    for _ in 0..250 {
        match TcpStream::connect(("127.0.0.1", gw.sip)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    // The listener's queue holds connections warmline cannot accept; give the failures
    // some seconds to pile up (a spinning loop would count millions here).
    let options = "OPTIONS sip:warmline@127.0.0.1 SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-emfile\r\n\
                   Max-Forwards: 70\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\n\
                   To: <sip:warmline@127.0.0.1>\r\nCall-ID: emfile@127.0.0.1\r\n\
                   CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    // Failures are logged at most once a second, each line with the count so far. By the
    // second line the backoff (5 ms doubling) has let a handful through; a loop without
    // one has counted millions, and a log without a limit writes the second line at once.
    let failures = |log: &str| -> Vec<u64> {
        log.lines()
            .filter(|l| l.contains("failed to accept a TCP connection"))
            .filter_map(|l| {
                l.split("errors=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let log = eventually(
        Duration::from_secs(30),
        || gw.log(),
        |l| failures(l).len() >= 2,
    );
    let counts = failures(&log);
    assert!(
        counts.len() >= 2,
        "accept failures logged: {counts:?}; log:\n{log}"
    );
    assert!(
        (3..=50).contains(&counts[1]),
        "accept failures when the second line was logged: {} (first line at {})",
        counts[1],
        counts[0]
    );
    let answer = udp_request(gw.sip, options);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    drop(held);
    let mut again = TcpStream::connect(("127.0.0.1", gw.sip)).unwrap();
    let answer = tcp_options(gw.sip, &mut again, 1);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
}

/// RFC 4028 against SIPp: a caller that refreshes (re-INVITE, then a body-less UPDATE) keeps
/// its call past the interval; one that asks warmline to refresh gets two re-INVITE refreshes;
/// one that stops refreshing gets warmline's BYE before expiry; an interval under our minimum
/// gets 422 with Min-SE and the retry is taken; and a call warmline places asks for a timer
/// and refreshes it when the agent's 2xx says so. One gateway, all five at once.
#[test]
fn session_timers_are_refreshed_answered_and_enforced() {
    require_sipp();
    // A small minimum, so the intervals (and the test) are seconds long; RFC 4028's floor
    // of 90 s is the default.
    let gw = Gw::start("min_se_s = 3", "");
    let callers: Vec<_> = [
        "uac_session_refresh",
        "uac_session_refreshed_by_warmline",
        "uac_session_expiry",
        "uac_session_too_small",
    ]
    .into_iter()
    .map(|s| (s, call_scenario(&gw, s, &["-m", "1"])))
    .collect();
    // The same on a call warmline places: it asks for a timer, the agent's 200 makes
    // warmline the refresher, and two refreshes must come before the agent hangs up.
    let agent = call_sipp_agent(&gw, "uas_session_timer");
    for (name, child) in callers {
        wait_ok(child, name);
    }
    wait_ok(agent, "the agent refreshed by warmline");
    // What the callers saw is in the gateway's counters too; they may trail the last BYE.
    let expired = eventually(
        Duration::from_secs(10),
        || {
            metric(
                &gw,
                r#"warmline_calls_total{outcome="call.session_expired",role="inbound"}"#,
            )
        },
        |v| *v == Some(1.0),
    );
    assert_eq!(expired, Some(1.0), "{}", gw.log());
    assert_eq!(
        metric(&gw, "warmline_sip_session_timer_refused_total"),
        Some(1.0),
        "the one 422"
    );
    let by_peer = eventually(
        Duration::from_secs(10),
        || {
            metric(
                &gw,
                r#"warmline_calls_total{outcome="call.peer_bye",role="inbound"}"#,
            )
        },
        |v| *v == Some(3.0),
    );
    assert_eq!(by_peer, Some(3.0), "{}", gw.log());
    let agent_bye = eventually(
        Duration::from_secs(10),
        || {
            metric(
                &gw,
                r#"warmline_calls_total{outcome="call.peer_bye",role="outbound"}"#,
            )
        },
        |v| *v == Some(1.0),
    );
    assert_eq!(agent_bye, Some(1.0), "{}", gw.log());
}

/// RFC 3262 and RFC 3261 §8.2.2.3 against SIPp: a caller that requires 100rel gets its 180
/// reliably (RSeq, retransmitted until its PRACK, which gets 200) from a gateway that rings
/// first; one that requires an unknown extension gets 420 naming it; and an agent that
/// rings reliably gets warmline's PRACK before it answers.
#[test]
fn reliable_provisionals_and_required_extensions() {
    require_sipp();
    let gw = Gw::start("answer_after_ms = 2000", "");
    let callers: Vec<_> = ["uac_require_100rel", "uac_require_unknown"]
        .into_iter()
        .map(|s| (s, call_scenario(&gw, s, &["-m", "1"])))
        .collect();
    let agent = call_sipp_agent(&gw, "uas_100rel");
    for (name, child) in callers {
        wait_ok(child, name);
    }
    wait_ok(agent, "the agent that rings reliably");
    // The OPTIONS answer says what we support, and nothing we do not.
    let options = udp_request(
        gw.sip,
        &format!(
            "OPTIONS sip:warmline@127.0.0.1:{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{{me}};branch=z9hG4bK-ext\r\n\
             From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:warmline@127.0.0.1>\r\nCall-ID: ext-{1}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            gw.sip,
            std::process::id()
        ),
    );
    assert!(
        options.contains("Supported: timer, 100rel\r\n"),
        "{options}"
    );
    // Over a raw socket, what SIPp hides: the reliable 180 is retransmitted with the same
    // RSeq until its PRACK; a PRACK naming another RSeq gets 481 and stops nothing.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = s.local_addr().unwrap().port();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let call_id = format!("rel-{}", std::process::id());
    let inv = invite(
        &call_id,
        "m=audio 9000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000\r\n",
    )
    .replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSupported: 100rel\r\nRequire: 100rel\r\n",
        1,
    )
    .replace("{me}", &me.to_string());
    s.send_to(inv.as_bytes(), ("127.0.0.1", gw.sip)).unwrap();
    let recv = |s: &UdpSocket| {
        let mut b = [0u8; 4096];
        let (n, _) = s.recv_from(&mut b).expect("a response");
        String::from_utf8_lossy(&b[..n]).into_owned()
    };
    let header = |msg: &str, name: &str| {
        msg.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let mut ringing = Vec::new();
    let mut first_at = None;
    while ringing.len() < 2 {
        let m = recv(&s);
        if m.starts_with("SIP/2.0 180") {
            first_at.get_or_insert_with(Instant::now);
            ringing.push(m);
        }
    }
    assert!(
        first_at.unwrap().elapsed() >= Duration::from_millis(400),
        "the 180 came twice at once: a retransmission waits T1"
    );
    let rseq = header(&ringing[0], "RSeq:").expect("RSeq on the reliable 180");
    assert_eq!(
        header(&ringing[1], "RSeq:"),
        Some(rseq.clone()),
        "same RSeq"
    );
    assert_eq!(header(&ringing[0], "Require:").as_deref(), Some("100rel"));
    let to = header(&ringing[0], "To:").unwrap();
    let prack = |rack: &str, cseq: u32| {
        format!(
            "PRACK sip:warmline@127.0.0.1:{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-prack-{cseq}\r\n\
             From: <sip:t@127.0.0.1>;tag=t1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} PRACK\r\n\
             RAck: {rack} 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            gw.sip
        )
    };
    // The final answer to a PRACK, skipping the 180s that cross it.
    let answer_to = |req: String| {
        s.send_to(req.as_bytes(), ("127.0.0.1", gw.sip)).unwrap();
        loop {
            let m = recv(&s);
            if m.contains(" PRACK\r\n") {
                return m;
            }
        }
    };
    let wrong = rseq.parse::<u64>().unwrap() + 7;
    let refused = answer_to(prack(&wrong.to_string(), 2));
    assert!(refused.starts_with("SIP/2.0 481"), "{refused}");
    let taken = answer_to(prack(&rseq, 3));
    assert!(taken.starts_with("SIP/2.0 200"), "{taken}");
    // PRACKed: no 180 after this, only the 200 to the INVITE at answer_after_ms.
    loop {
        let m = recv(&s);
        assert!(!m.starts_with("SIP/2.0 180"), "a 180 after its PRACK: {m}");
        if m.starts_with("SIP/2.0 200") && m.contains(" INVITE\r\n") {
            break;
        }
    }
}
