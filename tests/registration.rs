//! Registering to a trunk (issue 15 item 6) against a real registrar: SIPp playing a
//! provider's registrar that first says 423 Interval Too Brief, then challenges every
//! REGISTER with a digest and verifies the answer. warmline must adopt Min-Expires, answer the
//! challenge, refresh before the binding lapses, show where it stands on `/readyz` and in
//! the metrics, back off on refusal, and remove its binding when it drains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const AOR: &str = "sip:1001@trunk.test";

fn registrar(port: u16) -> std::process::Child {
    let path = scenarios().join("uas_registrar.xml");
    let child = sipp(&["-sf", path.to_str().unwrap(), "-m", "1"], port);
    wait_udp_listening(port, "the SIPp registrar");
    child
}

fn registration(registrar: &str, password: &str, more: &str) -> String {
    format!(
        "[[registrations]]\nregistrar = \"{registrar}\"\naor = \"{AOR}\"\n\
         password = \"{password}\"\n{more}"
    )
}

fn outcomes(gw: &Gw, outcome: &str) -> f64 {
    metric(
        gw,
        &format!("warmline_sip_registrations_total{{aor=\"{AOR}\",outcome=\"{outcome}\"}}"),
    )
    .unwrap_or(0.0)
}

fn readyz(gw: &Gw) -> String {
    http_req(gw.http, "GET", "/readyz", "").1
}

#[test]
fn registers_with_digest_auth_refreshes_and_unregisters_on_drain() {
    require_sipp();
    let port = free_port();
    let sipp = registrar(port);
    // 2 s asked, the registrar wants at least 4 (423) and grants 4: refreshed every 2 s.
    let gw = Gw::start(
        "",
        &registration(
            &format!("sip:127.0.0.1:{port}"),
            "s3cret",
            "expires_s = 2\nretry_base_s = 1\nretry_max_s = 4\n",
        ),
    );
    let refreshed = eventually(
        Duration::from_secs(20),
        || outcomes(&gw, "registered"),
        |n| *n >= 2.0,
    );
    assert!(
        refreshed >= 2.0,
        "registered {refreshed} times; readyz:\n{}",
        readyz(&gw)
    );
    assert_eq!(outcomes(&gw, "interval_too_brief"), 1.0);
    assert_eq!(outcomes(&gw, "rejected"), 0.0);
    assert_eq!(outcomes(&gw, "no_response"), 0.0);
    assert_eq!(
        metric(&gw, &format!("warmline_sip_registered{{aor=\"{AOR}\"}}")),
        Some(1.0)
    );
    let ready = readyz(&gw);
    assert!(
        ready.contains(&format!("registration {AOR}: registered (granted 4 s)")),
        "{ready}"
    );
    let stats = http_req(gw.http, "GET", "/v1/stats", "").1;
    assert!(stats.contains("\"registrations\""), "{stats}");

    // Draining removes the binding: SIPp's scenario ends only on an authenticated
    // REGISTER with Expires: 0 answered 200 (or on a 403, which the log rules out).
    let mut gw = gw;
    assert!(
        Command::new("kill")
            .args(["-TERM", &gw.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_ok(sipp, "the registrar saw warmline unregister");
    let exited = eventually(
        Duration::from_secs(30),
        || gw.child.try_wait().ok().flatten(),
        |s| s.is_some(),
    );
    assert!(exited.is_some(), "warmline did not exit after its drain");
    let log = gw.log();
    let unregistered = log
        .lines()
        .find(|l| l.contains("unregistered"))
        .unwrap_or_else(|| panic!("no `unregistered` line in:\n{log}"));
    assert!(unregistered.contains("Registered"), "{unregistered}");
    assert!(!log.contains("registration failed"), "{log}");
}

#[test]
fn a_refused_password_fails_with_the_reason_and_backs_off() {
    require_sipp();
    let port = free_port();
    let sipp = registrar(port);
    let gw = Gw::start(
        "",
        &registration(
            &format!("sip:127.0.0.1:{port}"),
            "wrong",
            "expires_s = 2\nretry_base_s = 600\nretry_max_s = 1200\n",
        ),
    );
    // SIPp answers the bad digest 403 and ends its scenario.
    wait_ok(sipp, "the registrar refused the digest");
    let ready = eventually(
        Duration::from_secs(10),
        || readyz(&gw),
        |r| r.contains("failed"),
    );
    assert!(
        ready.contains(&format!(
            "registration {AOR}: failed, not bound (403 Forbidden)"
        )),
        "{ready}"
    );
    assert_eq!(outcomes(&gw, "rejected"), 1.0);
    assert_eq!(outcomes(&gw, "registered"), 0.0);
    assert_eq!(
        metric(&gw, &format!("warmline_sip_registered{{aor=\"{AOR}\"}}")),
        Some(0.0)
    );
    let log = gw.log_with("registration failed");
    let failed = log
        .lines()
        .find(|l| l.contains("registration failed"))
        .unwrap_or_else(|| panic!("no `registration failed` line in:\n{log}"));
    // RFC 5626 §4.5: after one failure, between half and all of twice the base.
    let retry_in: u64 = failed
        .split("retry_in_s=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no retry_in_s in {failed}"));
    assert!((599..=1200).contains(&retry_in), "{failed}");
    assert!(
        failed.contains("status=403") && failed.contains("failures=1"),
        "{failed}"
    );
    // The gateway still takes calls: other trunks and PBXs may send them.
    assert_eq!(http_req(gw.http, "GET", "/readyz", "").0, 200);
}

#[test]
fn an_unreachable_tcp_registrar_fails_at_once_with_the_reason() {
    // A TCP port bound and held but never listening: connecting to it is refused, and
    // nothing else can take it while the test runs.
    let held = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    held.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let port = held
        .local_addr()
        .unwrap()
        .as_socket()
        .map(|a| a.port())
        .unwrap();
    let gw = Gw::start(
        "",
        &registration(
            &format!("sip:127.0.0.1:{port};transport=tcp"),
            "s3cret",
            "retry_base_s = 600\nretry_max_s = 1200\n",
        ),
    );
    // Well inside the 32 s of a transaction timeout: the refused connection is the answer.
    let ready = eventually(
        Duration::from_secs(10),
        || readyz(&gw),
        |r| r.contains("failed"),
    );
    assert!(
        ready.contains(&format!("registration {AOR}: failed, not bound (")),
        "{ready}"
    );
    assert_eq!(outcomes(&gw, "no_response"), 1.0);
    assert!(gw.logged("registration failed"), "{}", gw.log());
    drop(held);
}
