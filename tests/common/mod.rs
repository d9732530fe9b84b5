//! Shared by the real-binary tests: a warmline on loopback ports the kernel gives it (read from its log), a minimal HTTP
//! client, SIPp runners and raw SIP over UDP.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod baresip;
pub mod pki;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);

/// A port for a peer that must be told its port before it binds it (baresip, Kamailio, a
/// SIPp run): one not bound now on UDP or TCP, from below the kernel's ephemeral range
/// (32768+), so that no socket anywhere is given it at random between this pick and the
/// peer's bind; each test process has its own share of the range, and hands each port
/// out once, with its odd neighbour to spare (baresip listens for TLS one port up).
pub fn free_port() -> u16 {
    free_ports(2)
}

/// The first of `n` consecutive ports, each free as [`free_port`]'s is.
pub fn free_ports(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // 2000-4799: under the accuracy runner's blocks (10000+), the gateways' RTP ranges
    // (20000+) and the benches' fixed ports (5900+).
    const SHARE: u16 = 700;
    let base = 2000 + (std::process::id() % 4) as u16 * SHARE;
    loop {
        let first = NEXT.fetch_add(n, Ordering::Relaxed);
        assert!(
            first + n <= SHARE,
            "this test process has handed out all {SHARE} of its ports"
        );
        let free = (base + first..base + first + n).all(|port| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return base + first;
        }
    }
}

/// `tool` must be on the PATH; the README's test command installs it.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: run the README's test command (it installs it)"
    );
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
    /// The `tls:` listener's port, when the config has one.
    pub tls: Option<u16>,
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
        Self::start_http(extra_sip, extra_media, "", extra)
    }

    /// `extra_http` goes inside `[http]`.
    pub fn start_http(extra_sip: &str, extra_media: &str, extra_http: &str, extra: &str) -> Gw {
        Self::start_under(&[], extra_sip, extra_media, extra_http, extra)
    }

    /// Started through `wrapper` (`["prlimit", "--nofile=200"]`), the binary and its
    /// arguments appended.
    pub fn start_under(
        wrapper: &[&str],
        extra_sip: &str,
        extra_media: &str,
        extra_http: &str,
        extra: &str,
    ) -> Gw {
        let slot = NEXT_RANGE.fetch_add(1, Ordering::Relaxed);
        // 75 port pairs per gateway; slots never overlap inside one test process.
        // Below the kernel's ephemeral range (32768+), which free_port() and SIPp draw
        // from, so a port picked there is never one warmline binds for RTP meanwhile.
        let base = 20000 + (std::process::id() % 4) as u16 * 3000 + slot * 150;
        let rtp = (base, base + 149);
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("warmline.toml");
        // These gateways hear with the pocketsphinx fallback, as they were written for,
        // and never provision a whisper model at start-up; a test that wants whisper
        // names its model (`whisper_model`).
        // They listen to as many callers as they admit, unless the test is about the
        // speech capacity: measured at start-up, it would depend on how busy the machine is.
        let capacity = if extra.contains("capacity =") {
            ""
        } else {
            "capacity = 75\n"
        };
        let no_fetch = format!("[speech]\nfetch_model = \"none\"\n{capacity}");
        let extra = if extra.contains("[speech]\n") {
            extra.replacen("[speech]\n", &no_fetch, 1)
        } else {
            format!("{extra}\n{no_fetch}")
        };
        // As many calls as the slot's 75 RTP port pairs hold, unless the test says.
        let max_calls = if extra_sip.contains("max_calls") {
            ""
        } else {
            "max_calls = 75\n"
        };
        // Port 0: warmline binds what the kernel gives and logs it; nothing is picked
        // here and hoped to be free when warmline gets to it. Only a gateway restarted in
        // place of a killed one names its port (`restart_of`).
        let listen = if extra_sip.contains("listen") {
            ""
        } else {
            "listen = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n"
        };
        std::fs::write(
            &cfg,
            format!(
                "[sip]\n{listen}{max_calls}{extra_sip}\n\
                 [media]\nrtp_port_range = [{}, {}]\n{extra_media}\n[http]\nlisten = \"127.0.0.1:0\"\n{extra_http}\n\
                 [log]\nlevel = \"info\"\n{extra}\n",
                rtp.0, rtp.1
            ),
        )
        .unwrap();
        let bin = env!("CARGO_BIN_EXE_warmline");
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.push(bin);
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("warmline.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let mut gw = Gw {
            child,
            sip: 0,
            tls: None,
            http: 0,
            rtp,
            _dir: dir,
        };
        let start = Instant::now();
        // The ports it bound, from its log.
        loop {
            let log = gw.log();
            let port_of = |what: &str| {
                log.lines()
                    .find(|l| l.contains(what))
                    .and_then(|l| l.rsplit_once("addr=127.0.0.1:"))
                    .and_then(|(_, p)| p.trim().parse::<u16>().ok())
            };
            if let (Some(sip), Some(http)) = (
                port_of("SIP listening transport=udp"),
                port_of("HTTP API listening"),
            ) {
                gw.sip = sip;
                gw.http = http;
                // Every listener is logged before the HTTP API is.
                gw.tls = port_of("SIP listening transport=tls");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40)
                    && gw.child.try_wait().ok().flatten().is_none(),
                "warmline did not report its ports within 40 s; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        while http_req(gw.http, "GET", "/healthz", "").0 != 200 {
            // Generous: on a cold 2-core CI machine several gateways start at once while
            // the test audio is being made, and each loads its recognizers and prompts.
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "warmline did not start within 40 s; its log:\n{}",
                gw.log()
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

    /// The log once it says `needle`, or as it is after 10 s: the gateway writes its log
    /// from a thread of its own, up to 10 ms after the line was logged.
    pub fn log_with(&self, needle: &str) -> String {
        eventually(
            Duration::from_secs(10),
            || self.log(),
            |l| l.contains(needle),
        )
    }

    /// Whether the log says `needle`, waiting for it as [`Gw::log_with`] does.
    pub fn logged(&self, needle: &str) -> bool {
        self.log_with(needle).contains(needle)
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test says what the gateway did: its log goes with the temporary dir.
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(150)..].join("\n");
            eprintln!("---- the gateway's log (last 150 lines) ----\n{tail}");
        }
    }
}

/// One series' value from `/metrics` (`name{labels}` as written there), if present.
pub fn metric(gw: &Gw, series: &str) -> Option<f64> {
    let (status, text) = http_req(gw.http, "GET", "/metrics", "");
    assert_eq!(status, 200, "/metrics: {text}");
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

pub fn scenarios() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sipp-scenarios")
}

/// Minimal HTTP/1.1 client: (status, body). Status 0 when nothing answers.
pub fn http_req(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    http_req_with(port, method, path, body, "")
}

/// A GET with `Authorization: Bearer <token>`.
pub fn http_req_auth(port: u16, path: &str, token: &str) -> (u16, String) {
    http_req_with(
        port,
        "GET",
        path,
        "",
        &format!("Authorization: Bearer {token}\r\n"),
    )
}

/// `headers`: extra header lines, each ending in CRLF.
pub fn http_req_with(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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

/// A SIPp agent running `scenario` (from `sipp-scenarios/`) that `gw` calls through
/// `POST /v1/calls`; the call must be answered. The agent, for [`wait_ok`].
#[allow(dead_code)]
pub fn call_sipp_agent(gw: &Gw, scenario: &str) -> std::process::Child {
    let port = free_port();
    let path = scenarios().join(format!("{scenario}.xml"));
    let agent = sipp(&["-sf", path.to_str().unwrap(), "-m", "1"], port);
    wait_udp_listening(port, scenario);
    let (status, placed) = http_req(
        gw.http,
        "POST",
        "/v1/calls",
        &format!(r#"{{"to":"sip:agent@127.0.0.1:{port}","ring_timeout_s":5}}"#),
    );
    assert!(
        status == 200 && placed.contains(r#""outcome":"answered""#),
        "{scenario}: {status} {placed}"
    );
    agent
}

/// Where each SIPp run writes its errors, by process id, for [`wait_ok`] to show.
static SIPP_ERRORS: std::sync::Mutex<Vec<(u32, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// SIPp with `dir` as its working directory (where `play_pcap_audio` finds its file).
pub fn sipp_in(dir: &std::path::Path, args: &[&str], local_port: u16) -> std::process::Child {
    let errors = dir.join(format!("sipp-{local_port}-errors.log"));
    let child = Command::new("sipp")
        .args(args)
        .args([
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
            "-trace_err",
            "-error_file",
        ])
        .arg(&errors)
        .args(["-p", &local_port.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp");
    SIPP_ERRORS.lock().unwrap().push((child.id(), errors));
    child
}

/// Poll `read` until `done` holds of what it returns, or `within` passes; the last value.
/// What a peer has seen (SIPp's 200 to its BYE) can be a moment ahead of what warmline has
/// counted or stored: a test waits for the condition it asserts, never for a fixed sleep.
pub fn eventually<T>(
    within: Duration,
    mut read: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        let v = read();
        if done(&v) || std::time::Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (with a deadline) until the gateway has ended the inbound call on the caller's
/// BYE, and fails if it has not.
pub fn wait_caller_bye(gw: &Gw) {
    let n = eventually(
        Duration::from_secs(10),
        || {
            metric(
                gw,
                "warmline_calls_total{outcome=\"call.peer_bye\",role=\"inbound\"}",
            )
        },
        |n| *n == Some(1.0),
    );
    assert_eq!(n, Some(1.0), "the caller's BYE ended the call");
}

pub fn wait_ok(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    if !status.success() {
        let errors = SIPP_ERRORS
            .lock()
            .unwrap()
            .iter()
            .find(|(pid, _)| *pid == child.id())
            .and_then(|(_, f)| std::fs::read_to_string(f).ok())
            .unwrap_or_default();
        let tail: String = errors
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!("{what}: sipp exited with {status}; its errors:\n{tail}");
    }
}

/// Wait until something listens on UDP `port` (a SIPp or baresip agent started in the
/// background), read from the kernel's socket table: probing with a bind of our own could
/// take the port from under the peer.
#[allow(dead_code)]
pub fn wait_udp_listening(port: u16, what: &str) {
    let hex = format!(":{port:04X} ");
    let bound = || {
        ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| format!("{a} ").ends_with(&hex))
                })
            })
        })
    };
    let start = std::time::Instant::now();
    while !bound() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} never listened on UDP port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
            require(tool);
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

// ---- RTP captured on loopback (tshark) and what it carried ----

#[derive(Debug, Clone)]
pub struct Rtp {
    pub src: u16,
    pub dst: u16,
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub pt: u8,
    pub payload: Vec<u8>,
    /// Capture time, Unix seconds.
    pub time: f64,
}

/// tshark on loopback for the gateway's RTP port range.
pub struct Capture {
    child: Child,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    pub fn start(range: (u16, u16)) -> Capture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cap.pcap");
        let log = dir.path().join("tshark.log");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-q", "-f"])
            .arg(format!("udp portrange {}-{}", range.0, range.1))
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("tshark");
        let start = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Capturing on")
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "tshark did not start (needs root or the wireshark group)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // "Capturing on" can come before the filter sees traffic (a test once missed the
        // greeting's first packet): probe the range until a probe lands in the file.
        let header = std::fs::metadata(&file).map_or(0, |m| m.len());
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        while std::fs::metadata(&file).map_or(0, |m| m.len()) <= header {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "tshark captures nothing on udp {}-{}",
                range.0,
                range.1
            );
            let _ = probe.send_to(b"capture probe", ("127.0.0.1", range.0));
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture {
            child,
            file,
            _dir: dir,
        }
    }

    pub fn stop(mut self) -> Vec<Rtp> {
        // Let the last packets reach the capture before stopping it.
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if let Ok(keep) = std::env::var("WARMLINE_KEEP_CAPTURE") {
            let _ = std::fs::copy(&self.file, keep);
        }
        // Fields of the UDP layer only, the RTP header parsed here: Wireshark's dissectors
        // are chosen by port first, and some claim a packet of a test's RTP flow by its
        // bytes (the marked first packet of a stream was once taken by one and the flow
        // seemed to start without its marker), so whether a datagram is RTP is decided
        // below by RFC 3550's header, not by which dissector won.
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args(["-Y", "udp", "-T", "fields"])
            .args(["-e", "udp.srcport", "-e", "udp.dstport"])
            .args(["-e", "udp.payload", "-e", "frame.time_epoch"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                if f.len() < 4 {
                    return None;
                }
                // Plain hex on current tshark, colon-separated on older ones.
                let hex: String = f[2].chars().filter(|c| *c != ':').collect();
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                    .collect();
                let mut rtp = Rtp::parse(&bytes)?;
                rtp.src = f[0].parse().ok()?;
                rtp.dst = f[1].parse().ok()?;
                rtp.time = f[3].trim().parse().ok()?;
                Some(rtp)
            })
            .collect()
    }
}

impl Rtp {
    /// An RTP packet's header and payload (RFC 3550 §5.1), or `None` for anything else
    /// (RTCP, whose second byte reads as payload types 72–76, or a capture probe).
    fn parse(b: &[u8]) -> Option<Rtp> {
        if b.len() < 12 || b[0] >> 6 != 2 || (72..=76).contains(&(b[1] & 0x7f)) {
            return None;
        }
        let mut start = 12 + 4 * usize::from(b[0] & 0x0f);
        if b[0] & 0x10 != 0 {
            let words = u16::from_be_bytes([*b.get(start + 2)?, *b.get(start + 3)?]);
            start += 4 + 4 * usize::from(words);
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*b.last()?))?;
        }
        Some(Rtp {
            src: 0,
            dst: 0,
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            seq: u16::from_be_bytes([b[2], b[3]]),
            ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            marker: b[1] & 0x80 != 0,
            pt: b[1] & 0x7f,
            payload: b.get(start..end)?.to_vec(),
            time: 0.0,
        })
    }
}

pub fn flow(pkts: &[Rtp], src: impl Fn(u16) -> bool, dst: u16) -> Vec<Rtp> {
    pkts.iter()
        .filter(|p| src(p.src) && p.dst == dst)
        .cloned()
        .collect()
}

/// One SSRC, sequence +1 and timestamp +160 throughout, a marker on the first packet only.
pub fn assert_one_continuous_stream(pkts: &[Rtp], what: &str) {
    assert!(!pkts.is_empty(), "{what}: no packets");
    assert!(
        pkts[0].marker,
        "{what}: first packet carries the marker; the first: {:?}",
        &pkts[..pkts.len().min(3)]
            .iter()
            .map(|p| (p.ssrc, p.seq, p.ts, p.marker, p.time))
            .collect::<Vec<_>>()
    );
    for w in pkts.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc, "{what}: one SSRC");
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "{what}: sequence");
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160), "{what}: timestamps");
        assert!(!w[1].marker, "{what}: no marker inside the stream");
    }
}

pub fn ulaw(b: &[u8]) -> Vec<i16> {
    b.iter()
        .map(|&c| warmline_media::g711::ulaw_decode(c))
        .collect()
}

pub fn alaw(b: &[u8]) -> Vec<i16> {
    b.iter()
        .map(|&c| warmline_media::g711::alaw_decode(c))
        .collect()
}

pub fn wav(path: &Path) -> Vec<i16> {
    warmline_media::wav::read_clip(std::fs::File::open(path).unwrap())
        .unwrap()
        .pcm
        .to_vec()
}

pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Best normalised correlation of `got` against `want` over lags 0..=max_lag samples.
/// Normalised correlation of two equal stretches of audio.
pub fn corr(a: &[i16], b: &[i16]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1.0)
}

pub fn best_corr(got: &[i16], want: &[i16], max_lag: usize) -> (f64, usize) {
    let mut best = (0.0, 0);
    for lag in 0..=max_lag {
        let n = got.len().saturating_sub(lag).min(want.len());
        if n < 800 {
            break;
        }
        let c = corr(&got[lag..lag + n], &want[..n]);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// Correlation of each voiced `win`-sample window of `got` with `want`, each at its own
/// lag (how far `got` runs behind), so a delay that steps mid-call is not taken for damage.
/// A jitter buffer rightly grows its delay by a frame when the sender stalls and then
/// bursts (SIPp does on a busy 2-core machine). The first window searches `0..=max_lag`;
/// later ones search near the last lag. Returns `(window start, correlation, lag)`.
pub fn windowed_corr(
    got: &[i16],
    want: &[i16],
    win: usize,
    max_lag: usize,
) -> Vec<(usize, f64, usize)> {
    let mut out = Vec::new();
    let mut last: Option<usize> = None;
    for start in (0..got.len().saturating_sub(win)).step_by(win) {
        let seg = &got[start..start + win];
        if rms(seg) < 300.0 {
            continue;
        }
        let (lo, hi) = match last {
            None => (0, max_lag),
            Some(l) => (l.saturating_sub(800), (l + 800).min(max_lag)),
        };
        let mut best = (f64::MIN, lo);
        for lag in lo..=hi.min(start) {
            let from = start - lag;
            if from + win > want.len() {
                continue;
            }
            let c = corr(seg, &want[from..from + win]);
            if c > best.0 {
                best = (c, lag);
            }
        }
        if best.0 > f64::MIN {
            last = Some(best.1);
            out.push((start, best.0, best.1));
        }
    }
    out
}

// ---- an HTTP receiver standing in for the operator's services (a brain, a CRM) ----

/// One request an [`HttpSink`] received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

/// A one-route HTTP server on loopback: every request is kept and answered with `reply`
/// after `delay`.
pub struct HttpSink {
    pub port: u16,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl HttpSink {
    pub fn start(reply: &'static str, delay: Duration) -> HttpSink {
        Self::start_on(0, reply, delay)
    }

    /// On a given port (0: any).
    pub fn start_on(port: u16, reply: &'static str, delay: Duration) -> HttpSink {
        use std::io::{BufRead, BufReader, Read, Write as _};
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut headers = Vec::new();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            let k = k.trim().to_ascii_lowercase();
                            if k == "content-length" {
                                len = v.trim().parse().unwrap_or(0);
                            }
                            headers.push((k, v.trim().to_string()));
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    kept.lock().unwrap().push(Received { headers, body });
                    std::thread::sleep(delay);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                });
            }
        });
        HttpSink { port, received }
    }

    /// The JSON bodies received so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or_default())
            .collect()
    }
}
