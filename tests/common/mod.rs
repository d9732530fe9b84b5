//! Shared by the real-binary tests: a warmline on loopback ports it picks, a minimal HTTP
//! client, SIPp runners and raw SIP over UDP.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);

pub fn free_port() -> u16 {
    // Both UDP and TCP must be free on the SIP port.
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn require_sipp() {
    let ok = Command::new("sipp").arg("-v").output().is_ok();
    assert!(
        ok,
        "sipp is not installed: run the README's test command (it installs sip-tester)"
    );
}

pub struct Gw {
    pub child: Child,
    pub sip: u16,
    pub http: u16,
    pub rtp: (u16, u16),
    pub _dir: tempfile::TempDir,
}

impl Gw {
    pub fn start(extra_sip: &str, extra: &str) -> Gw {
        Self::start_with(extra_sip, "", extra)
    }

    /// `extra_media` goes inside `[media]`; `extra` after every table.
    pub fn start_with(extra_sip: &str, extra_media: &str, extra: &str) -> Gw {
        let sip = free_port();
        let http = free_port();
        let slot = NEXT_RANGE.fetch_add(1, Ordering::Relaxed);
        // 75 port pairs per gateway; slots never overlap inside one test process.
        // Below the kernel's ephemeral range (32768+), which free_port() and SIPp draw
        // from, so a port picked there is never one warmline binds for RTP meanwhile.
        let base = 20000 + (std::process::id() % 4) as u16 * 3000 + slot * 150;
        let rtp = (base, base + 149);
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("warmline.toml");
        std::fs::write(
            &cfg,
            format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\", \"tcp:127.0.0.1:{sip}\"]\n{extra_sip}\n\
                 [media]\nrtp_port_range = [{}, {}]\n{extra_media}\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
                 [log]\nlevel = \"info\"\n{extra}\n",
                rtp.0, rtp.1
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_warmline"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("warmline.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let gw = Gw {
            child,
            sip,
            http,
            rtp,
            _dir: dir,
        };
        let start = Instant::now();
        while http_req(gw.http, "GET", "/healthz", "").0 != 200 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "warmline did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    pub fn sip_addr(&self) -> String {
        format!("127.0.0.1:{}", self.sip)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("warmline.log")).unwrap_or_default()
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn scenarios() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sipp-scenarios")
}

/// Minimal HTTP/1.1 client: (status, body). Status 0 when nothing answers.
pub fn http_req(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

pub fn sipp(args: &[&str], local_port: u16) -> std::process::Child {
    let dir = tempfile::tempdir().unwrap().keep();
    sipp_in(&dir, args, local_port)
}

/// A SIPp scenario from `sipp-scenarios/` run against `gw`, with `args` (`-m`, `-d`, …).
pub fn call_scenario(gw: &Gw, scenario: &str, args: &[&str]) -> std::process::Child {
    let path = scenarios().join(format!("{scenario}.xml"));
    let mut all = vec!["-sf", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let target = gw.sip_addr();
    all.push(&target);
    sipp(&all, free_port())
}

/// SIPp with `dir` as its working directory (where `play_pcap_audio` finds its file).
pub fn sipp_in(dir: &std::path::Path, args: &[&str], local_port: u16) -> std::process::Child {
    Command::new("sipp")
        .args(args)
        .args([
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
        ])
        .args(["-p", &local_port.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp")
}

pub fn wait_ok(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{what}: sipp exited with {status}");
}

/// Send one SIP request over UDP and return the first final (>= 200) response.
pub fn udp_request(to: u16, text: &str) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = s.local_addr().unwrap().port();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(
        text.replace("{me}", &me.to_string()).as_bytes(),
        ("127.0.0.1", to),
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = s.recv_from(&mut buf).expect("a SIP response");
        let resp = String::from_utf8_lossy(&buf[..n]).to_string();
        if !resp.starts_with("SIP/2.0 1") {
            return resp;
        }
    }
}

pub fn invite(call_id: &str, sdp_mline: &str, rtpmap: &str) -> String {
    let body = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{sdp_mline}\r\n{rtpmap}"
    );
    format!(
        "INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{{me}};branch=z9hG4bK-{call_id}\r\nFrom: <sip:t@127.0.0.1>;tag=t1\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:t@127.0.0.1:{{me}}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

// ---- media test helpers: audio made by make_media.sh, SIPp callers playing it ----

/// Test audio, made once per run by the project's own script.
pub fn media() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        for tool in ["espeak-ng", "sox", "python3", "tshark"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "{tool} is not installed: run the README's test command (it installs it)"
            );
        }
        let dir = tempfile::tempdir().unwrap().keep();
        let out = Command::new(scenarios().join("make_media.sh"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make_media.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A directory where SIPp finds `audio.pcap` (a copy of one of the made pcaps).
pub fn caller_dir(pcap: &str) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::copy(media().join(pcap), dir.join("audio.pcap")).unwrap();
    dir
}

/// Even media ports for SIPp, distinct across this process's tests, and above the kernel's
/// ephemeral range and below nothing warmline binds (its test RTP ranges sit under 32768).
pub fn media_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    61000 + (std::process::id() % 4) as u16 * 1000 + NEXT.fetch_add(1, Ordering::Relaxed) * 8
}

pub fn calls(gw: &Gw) -> serde_json::Value {
    serde_json::from_str(&http_req(gw.http, "GET", "/v1/calls", "").1).unwrap_or_default()
}

pub fn caller(gw: &Gw, pcap: &str, codec: &str, hold_ms: u32, mp: u16) -> Child {
    let dir = caller_dir(pcap);
    sipp_in(
        &dir,
        &[
            "-sf",
            scenarios().join("uac_media.xml").to_str().unwrap(),
            "-key",
            "codec",
            codec,
            "-m",
            "1",
            "-d",
            &hold_ms.to_string(),
            "-mp",
            &mp.to_string(),
            &gw.sip_addr(),
        ],
        free_port(),
    )
}
