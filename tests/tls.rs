//! SIP over TLS (RFC 3261 §26) against real peers on loopback, with certificates made at
//! test time: baresip calling in over TLS and answering as the agent over TLS; a rustls
//! client for what baresip cannot do (mutual TLS, a missing or untrusted client certificate,
//! plain text on the TLS port); and an agent whose certificate has expired.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::baresip::{Baresip, BaresipTls, tone_share};
use common::pki::{Leaf, TestCa};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `[sip]` lines for a gateway listening on UDP, TCP and TLS with `leaf`, trusting `ca` for
/// the TLS it opens; `more` goes inside `[sip.tls]`.
fn tls_sip(leaf: &Leaf, ca: &Path, more: &str) -> String {
    format!(
        "listen = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\", \"tls:127.0.0.1:0\"]\n\
         tcp_message_timeout_s = 2\n\
         [sip.tls]\ncertificate = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n{more}",
        leaf.cert.display(),
        leaf.key.display(),
        ca.display()
    )
}

/// A port for baresip whose next port (its TLS listener) is free too.
fn baresip_port() -> u16 {
    loop {
        let p = free_port();
        if std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

#[test]
fn a_caller_over_tls_is_bridged_to_an_agent_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "trunk");
    let (gw_leaf, agent_leaf, caller_leaf) =
        (ca.leaf("warmline"), ca.leaf("agent"), ca.leaf("caller"));
    let agent_port = baresip_port();
    let agent = Baresip::agent(
        agent_port,
        Some(&BaresipTls {
            combined: &agent_leaf.combined,
            ca: &ca.ca_file(),
        }),
    );
    let gw = Gw::start(
        &tls_sip(&gw_leaf, &ca.ca_file(), ""),
        &format!(
            "[route]\nmode = \"bridge\"\ntarget = \"sip:agent@127.0.0.1:{};transport=tls\"\n",
            agent_port + 1
        ),
    );
    let tls_port = gw.tls.expect("the gateway logs its TLS port");
    let mut caller = Baresip::caller(
        baresip_port(),
        Some(&BaresipTls {
            combined: &caller_leaf.combined,
            ca: &ca.ca_file(),
        }),
        &format!("sip:warmline@127.0.0.1:{tls_port};transport=tls"),
        &media().join("tone.wav"),
        8,
    );
    caller.wait_exit(Duration::from_secs(30));

    // Both legs were SIP over TLS: the INVITE in came on the TLS listener (UDP's guard
    // counts its own datagrams elsewhere, and baresip was told transport=tls), the one out
    // went to the agent's TLS port, and each was counted by the stream observer.
    wait_caller_bye(&gw);
    let invites_in = metric(
        &gw,
        "warmline_sip_messages_total{direction=\"in\",kind=\"request\",name=\"INVITE\"}",
    );
    assert_eq!(invites_in, Some(1.0), "one INVITE in, over TLS");
    assert_eq!(
        metric(&gw, "warmline_sip_tls_handshake_failures_total"),
        Some(0.0)
    );
    assert!(
        caller.log().contains("Call established") || caller.log().contains("established"),
        "the caller's call over TLS was answered: {}",
        caller.log()
    );
    // Media went both ways across the bridge: the agent heard the caller's 1 kHz tone,
    // the caller the agent's 600 Hz one.
    let agent_heard = agent.heard();
    assert!(
        agent_heard
            .chunks(8000)
            .any(|c| tone_share(c, 1000.0) > 0.5),
        "the agent heard the caller"
    );
    let caller_heard = caller.heard();
    assert!(
        caller_heard
            .chunks(8000)
            .any(|c| tone_share(c, 600.0) > 0.5),
        "the caller heard the agent"
    );
}

/// A rustls client trusting `ca`, presenting `leaf` if given.
fn client_config(ca: &Path, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match leaf {
        Some(l) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&l.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&l.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// An OPTIONS over a new TLS connection: the response's head, or why there was none.
fn options_over_tls(port: u16, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let local = sock.local_addr().unwrap().port();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let req = format!(
        "OPTIONS sip:warmline@127.0.0.1:{port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:{local};branch=z9hG4bK-tls{local}\r\n\
         From: <sip:probe@127.0.0.1>;tag=t{local}\r\nTo: <sip:warmline@127.0.0.1>\r\n\
         Call-ID: tls-{local}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn mutual_tls_refuses_bad_peers_and_serves_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "trunk");
    let rogue = TestCa::new(dir.path(), "rogue");
    let gw = Gw::start(
        &tls_sip(
            &ca.leaf("warmline"),
            &ca.ca_file(),
            &format!("client_ca = \"{}\"\n", ca.ca_file().display()),
        ),
        "[speech]\nrecognizer = \"off\"\n",
    );
    let port = gw.tls.unwrap();
    let failures = || metric(&gw, "warmline_sip_tls_handshake_failures_total").unwrap_or(-1.0);
    let good = client_config(&ca.ca_file(), Some(&ca.leaf("pbx")));

    let pong = options_over_tls(port, good.clone()).unwrap();
    assert!(pong.starts_with("SIP/2.0 200"), "{pong}");
    assert!(pong.contains("Supported: timer, 100rel"), "{pong}");
    assert_eq!(failures(), 0.0);

    // No client certificate, and one from a CA warmline does not trust: refused in the
    // handshake, counted, and nothing else is disturbed.
    let none = options_over_tls(port, client_config(&ca.ca_file(), None));
    assert!(none.is_err(), "{none:?}");
    let untrusted = options_over_tls(port, client_config(&ca.ca_file(), Some(&rogue.leaf("pbx"))));
    assert!(untrusted.is_err(), "{untrusted:?}");
    assert_eq!(
        eventually(Duration::from_secs(5), failures, |n| *n == 2.0),
        2.0,
        "two failed handshakes counted"
    );

    // Plain SIP on the TLS port, and a connection that says nothing: both closed (the
    // latter at tcp_message_timeout_s), both counted.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .write_all(b"OPTIONS sip:warmline@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for s in [&mut plain, &mut silent] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let mut n = 1;
        // Whatever alert comes, then the close.
        while n > 0 {
            n = s.read(&mut buf).unwrap_or(0);
        }
    }
    assert_eq!(
        eventually(Duration::from_secs(5), failures, |n| *n == 4.0),
        4.0,
        "four failed handshakes counted"
    );

    let pong = options_over_tls(port, good).unwrap();
    assert!(pong.starts_with("SIP/2.0 200"), "still serving: {pong}");
    assert!(gw.logged("TLS handshake failed"), "each refusal is logged");
}

#[test]
fn an_agent_with_an_expired_certificate_is_unreachable_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "trunk");
    let gw = Gw::start(
        &tls_sip(&ca.leaf("warmline"), &ca.ca_file(), ""),
        "[speech]\nrecognizer = \"off\"\n",
    );
    // A TLS server with an expired certificate, bound and held here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expired = ca.expired_leaf("agent");
    let server = {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                CertificateDer::pem_file_iter(&expired.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&expired.key).unwrap(),
            )
            .unwrap(),
        )
    };
    let accepted = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut tls =
            rustls::StreamOwned::new(rustls::ServerConnection::new(server).unwrap(), sock);
        let mut buf = [0u8; 64];
        // warmline aborts the handshake: no SIP ever arrives.
        matches!(tls.read(&mut buf), Ok(0) | Err(_))
    });
    let (status, body) = http_req(
        gw.http,
        "POST",
        "/v1/calls",
        &format!("{{\"to\": \"sip:agent@127.0.0.1:{port};transport=tls\", \"ring_timeout_s\": 5}}"),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reason = v["outcome"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        v["outcome"]["outcome"] == "unreachable" || body.contains("unreachable"),
        "{body}"
    );
    assert!(
        reason.contains("expired"),
        "the reason says the certificate expired: {body}"
    );
    assert!(accepted.join().unwrap(), "no SIP reached the agent");
}
