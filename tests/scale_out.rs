//! Scale-out behind Kamailio (`deploy/kamailio/kamailio.cfg`, Debian's `kamailio`): two
//! warmline instances on loopback, SIPp callers through the dispatcher. Calls land on both;
//! when one drains (SIGTERM) it answers 503 to INVITEs and OPTIONS probes, the dispatcher
//! takes it out, new calls all go to the other, and the draining one's call in progress
//! finishes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pki::TestCa;
use common::*;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kamailio {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    fn start(instances: &[u16]) -> Kamailio {
        let uris: Vec<String> = instances
            .iter()
            .map(|p| format!("sip:127.0.0.1:{p}"))
            .collect();
        Self::start_with(&uris, None)
    }

    /// Dispatching to `uris`; with `tls`, Kamailio also speaks TLS (its own certificate
    /// signed by that CA, verifying the instances' against it).
    fn start_with(uris: &[String], tls: Option<&TestCa>) -> Kamailio {
        require("kamailio");
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("dispatcher.list");
        let lines: String = uris.iter().map(|u| format!("1 {u}\n")).collect();
        std::fs::write(&list, lines).unwrap();
        let mut tls_args = Vec::new();
        if let Some(ca) = tls {
            let leaf = ca.leaf("kamailio");
            let profile = |verify: &str| {
                format!(
                    "method = TLSv1.2+\nverify_certificate = {verify}\nrequire_certificate = {verify}\n\
                     ca_list = {}\ncertificate = {}\nprivate_key = {}\n",
                    ca.ca_file().display(),
                    leaf.cert.display(),
                    leaf.key.display()
                )
            };
            let cfg = dir.path().join("tls.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "[client:default]\n{}\n[server:default]\n{}",
                    profile("yes"),
                    profile("no")
                ),
            )
            .unwrap();
            tls_args = vec![
                "-A".to_string(),
                "WITH_TLS".to_string(),
                "-A".to_string(),
                format!("LISTEN_TLS=tls:127.0.0.1:{}", free_port()),
                "-A".to_string(),
                format!("TLS_CONFIG=\"{}\"", cfg.display()),
            ];
        }
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let port = free_port();
        let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kamailio/kamailio.cfg");
        let child = Command::new("kamailio")
            .args(["-f", cfg, "-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-A")
            .arg(format!("LISTEN=udp:127.0.0.1:{port}"))
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
            .args(["-A", "PING_INTERVAL=1"])
            .args(&tls_args)
            .arg("-Y")
            .arg(&run)
            // Its own process group, so Drop can end the workers it forks too.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("kamailio.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        // Up once it answers OPTIONS itself (it starts in well under a second).
        std::thread::sleep(Duration::from_secs(1));
        let pong = udp_request(
            port,
            &format!(
                "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{{me}};branch=z9hG4bK-k1\r\n\
                 From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: k-up\r\nCSeq: 1 OPTIONS\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        assert!(pong.starts_with("SIP/2.0 200"), "kamailio: {pong}");
        Kamailio {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGKILL to the main process alone left its workers running after the suite. A
        // SIGTERM lets kamailio end and reap its workers itself; the group is killed only
        // if it has not gone within 3 s.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..30 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

fn inbound_calls(gw: &Gw) -> u64 {
    let (_, text) = http_req(gw.http, "GET", "/metrics", "");
    text.lines()
        .filter(|l| l.starts_with("warmline_calls_total{") && l.contains("role=\"inbound\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn through(k: &Kamailio, calls: u32) -> Child {
    sipp(
        &[
            "-sf",
            scenarios().join("uac_proxied.xml").to_str().unwrap(),
            "-m",
            &calls.to_string(),
            "-r",
            "5",
            "-d",
            "300",
            "-mp",
            &media_port().to_string(),
            &format!("127.0.0.1:{}", k.port),
        ],
        free_port(),
    )
}

fn instance() -> Gw {
    Gw::start(
        "",
        "[speech]\nrecognizer = \"off\"\n[shutdown]\ndrain_s = 30\n",
    )
}

#[test]
fn calls_spread_over_two_instances_and_survive_one_draining() {
    require_sipp();
    let (a, b) = (instance(), instance());
    let k = Kamailio::start(&[a.sip, b.sip]);
    wait_ok(through(&k, 10), "10 calls through kamailio");
    // SIPp has its 200 to the last BYE a moment before warmline counts the call ended.
    let (on_a, on_b) = eventually(
        Duration::from_secs(10),
        || (inbound_calls(&a), inbound_calls(&b)),
        |(x, y)| x + y >= 10,
    );
    assert_eq!(on_a + on_b, 10);
    assert!(on_a >= 3 && on_b >= 3, "spread: {on_a} and {on_b}");

    // A call in progress on A, then A drains.
    let long = call_scenario(
        &a,
        "uac_basic",
        &["-m", "1", "-d", "6000", "-mp", &media_port().to_string()],
    );
    // Up on A (answered and ACKed) before A is told to drain.
    let up = eventually(
        Duration::from_secs(10),
        || calls(&a),
        |c| {
            c.as_array()
                .is_some_and(|c| c.iter().any(|c| c["state"] == "confirmed"))
        },
    );
    assert!(!up.as_array().is_none_or(|c| c.is_empty()), "{up}");
    Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    let ready = eventually(
        Duration::from_secs(10),
        || http_req(a.http, "GET", "/readyz", "").0,
        |s| *s == 503,
    );
    assert_eq!(ready, 503);
    assert_eq!(http_req(a.http, "GET", "/healthz", "").0, 200);
    let probe = udp_request(
        a.sip,
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-d1\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: drain-probe\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(probe.starts_with("SIP/2.0 503"), "{probe}");

    // New calls all land on B.
    let before_b = inbound_calls(&b);
    wait_ok(through(&k, 10), "10 calls while A drains");
    // As above: the last call is counted a moment after SIPp has its 200 to the BYE.
    let on_b = eventually(
        Duration::from_secs(10),
        || inbound_calls(&b),
        |n| n - before_b >= 10,
    );
    assert_eq!(on_b - before_b, 10);
    // A's call in progress finishes normally.
    wait_ok(long, "the call on the draining instance");
}

/// Kamailio with its TLS module in front (`deploy/kamailio/kamailio.cfg -A WITH_TLS`):
/// callers reach it over UDP and it relays to warmline over TLS. warmline asks for
/// Kamailio's certificate (mutual TLS, `client_ca`), Kamailio verifies warmline's, and the
/// dialog's ACK and BYE follow the Record-Route over the same TLS connection.
#[test]
fn calls_reach_warmline_over_tls_through_kamailio() {
    require_sipp();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "trunk");
    let leaf = ca.leaf("warmline");
    let gw = Gw::start(
        &format!(
            "listen = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]\n\
             [sip.tls]\ncertificate = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nclient_ca = \"{}\"\n",
            leaf.cert.display(),
            leaf.key.display(),
            ca.ca_file().display(),
            ca.ca_file().display()
        ),
        "[speech]\nrecognizer = \"off\"\n",
    );
    let tls = gw.tls.unwrap();
    let k = Kamailio::start_with(&[format!("sip:127.0.0.1:{tls};transport=tls")], Some(&ca));
    wait_ok(through(&k, 10), "10 calls through kamailio over TLS");
    let on_gw = eventually(Duration::from_secs(10), || inbound_calls(&gw), |n| *n >= 10);
    assert_eq!(on_gw, 10);
    // Kamailio was given only the TLS port, where nothing but the TLS listener is, and
    // warmline requires a client certificate there: every INVITE came over mutual TLS,
    // counted by the stream observer.
    let invites = metric(
        &gw,
        "warmline_sip_messages_total{direction=\"in\",kind=\"request\",name=\"INVITE\"}",
    );
    assert_eq!(invites, Some(10.0));
    assert_eq!(
        metric(&gw, "warmline_sip_tls_handshake_failures_total"),
        Some(0.0)
    );
    let open = metric(&gw, "warmline_sip_tcp_connections").unwrap_or(0.0);
    assert!(
        open >= 1.0,
        "Kamailio's TLS connection is held open: {open}"
    );
}
