//! `[sip]`: where warmline listens, who may call it, and how it answers.

use super::{ConfigError, Ctx, millis, secs};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 §26), with the certificate in `[sip.tls]`.
    Tls,
}

impl fmt::Display for SipTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
            SipTransport::Tls => "tls",
        })
    }
}

/// One `listen` entry: `udp:127.0.0.1:5060`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: SipTransport,
    pub addr: SocketAddr,
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (transport, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` should look like udp:127.0.0.1:5060"))?;
        let transport = match transport.to_ascii_lowercase().as_str() {
            "udp" => SipTransport::Udp,
            "tcp" => SipTransport::Tcp,
            "tls" => SipTransport::Tls,
            other => return Err(format!("transport `{other}` is not udp, tcp or tls")),
        };
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|_| format!("`{addr}` is not an ip:port"))?;
        Ok(Listen { transport, addr })
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    pub listen: Vec<Listen>,
    #[serde(deserialize_with = "public_addr")]
    pub public_addr: Option<IpAddr>,
    pub max_calls: usize,
    #[serde(deserialize_with = "networks")]
    pub allow_from: Vec<IpNet>,
    #[serde(rename = "answer_after_ms", deserialize_with = "millis")]
    pub answer_after: Duration,
    pub retry_after_s: u32,
    pub user_agent: String,
    /// Per-source request rate (Kamailio's pike): requests per second one address may
    /// send over UDP, sustained; 0 turns the limit off. Sources in `allow_from` are exempt.
    pub rate_limit_per_s: u32,
    /// Requests one source may send at once above the rate.
    pub rate_limit_burst: u32,
    /// How long a source that went over is ignored.
    #[serde(rename = "rate_limit_ban_s", deserialize_with = "secs")]
    pub rate_limit_ban: Duration,
    /// TCP connections peers may hold open at once, in all and from one address: past
    /// either, a new connection is closed at accept (counted).
    pub tcp_max_connections: usize,
    pub tcp_max_per_ip: usize,
    /// How long a TCP connection may take to deliver a whole SIP message: its first,
    /// counted from the accept, and each later one from its first byte.
    #[serde(rename = "tcp_message_timeout_s", deserialize_with = "secs")]
    pub tcp_message_timeout: Duration,
    /// A TCP connection that carries nothing for this long is closed.
    #[serde(rename = "tcp_idle_timeout_s", deserialize_with = "secs")]
    pub tcp_idle_timeout: Duration,
    /// The least session interval we run (RFC 4028 Min-SE, seconds): an INVITE or refresh
    /// asking for a shorter `Session-Expires` is answered 422 with it. RFC 4028 has peers
    /// ask for at least 90; a lower value only accepts shorter intervals (tests use it).
    pub min_se_s: u32,
    /// The session interval we ask for on the calls we place (agents, API calls), seconds;
    /// 0 asks for none.
    pub session_expires_s: u32,
    /// `[sip.tls]`: the certificate of `tls:` listeners and what TLS connections trust.
    pub tls: TlsSettings,
}

/// `[sip.tls]`. Paths are relative to the config file; each is read and checked when the
/// config is loaded, so a bad one is a config error naming its key, never a failure at the
/// first handshake.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain (end-entity first) that `tls:` listeners present, and that
    /// TLS connections warmline opens present when the peer asks for one.
    pub certificate: Option<PathBuf>,
    /// Its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM CA certificates a connecting peer's certificate must chain to. Set, every TLS
    /// peer must present a certificate (mutual TLS); unset, none is asked for.
    pub client_ca: Option<PathBuf>,
    /// PEM CA certificates the servers warmline connects to (agents, trunks with
    /// `sips:` or `;transport=tls`) must chain to. Default: the system's bundle.
    pub ca: Option<PathBuf>,
    /// What was read from the files above, once `validate` has run.
    #[serde(skip)]
    pub loaded: TlsPem,
}

/// The PEM text of `[sip.tls]`'s files.
#[derive(Debug, Clone, Default)]
pub struct TlsPem {
    pub certificate: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    pub client_ca: Option<Vec<u8>>,
    pub ca: Option<Vec<u8>>,
}

/// Where Debian (and most Linux systems) keep the CA bundle, `[sip.tls] ca`'s default.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl TlsSettings {
    fn validate(&mut self, cx: &Ctx, tls_listeners: bool) -> Result<(), ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |key: &str, path: &mut PathBuf| -> Result<Vec<u8>, ConfigError> {
            *path = cx.resolve(path);
            std::fs::read(&*path)
                .map_err(|e| cx.err(key, format!("cannot read {}: {e}", path.display())))
        };
        let certs = |key: &str, pem: &[u8]| -> Result<Vec<CertificateDer<'static>>, ConfigError> {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cx.err(key, format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(cx.err(key, "holds no PEM certificate".into()));
            }
            Ok(certs)
        };
        match (&mut self.certificate, &mut self.key) {
            (Some(cert_path), Some(key_path)) => {
                let cert_pem = read("sip.tls.certificate", cert_path)?;
                let key_pem = read("sip.tls.key", key_path)?;
                let chain = certs("sip.tls.certificate", &cert_pem)?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| cx.err("sip.tls.key", format!("no PEM private key: {e}")))?;
                rustls::sign::CertifiedKey::from_der(
                    chain,
                    key,
                    &rustls::crypto::ring::default_provider(),
                )
                .map_err(|e| {
                    cx.err(
                        "sip.tls.key",
                        format!("does not go with sip.tls.certificate: {e}"),
                    )
                })?;
                self.loaded.certificate = Some(cert_pem);
                self.loaded.key = Some(key_pem);
            }
            (None, None) if !tls_listeners => {}
            (None, _) => {
                return Err(cx.err(
                    "sip.tls.certificate",
                    "a tls: listener (or sip.tls.key) needs a certificate".into(),
                ));
            }
            (Some(_), None) => {
                return Err(cx.err("sip.tls.key", "sip.tls.certificate needs its key".into()));
            }
        }
        if let Some(path) = &mut self.client_ca {
            let pem = read("sip.tls.client_ca", path)?;
            certs("sip.tls.client_ca", &pem)?;
            self.loaded.client_ca = Some(pem);
        }
        match &mut self.ca {
            Some(path) => {
                let pem = read("sip.tls.ca", path)?;
                certs("sip.tls.ca", &pem)?;
                self.loaded.ca = Some(pem);
            }
            // Without a bundle, TLS to agents trusts nothing and fails saying so.
            None => self.loaded.ca = std::fs::read(SYSTEM_CA_BUNDLE).ok(),
        }
        Ok(())
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        let udp = |a: &str| Listen {
            transport: SipTransport::Udp,
            addr: a.parse().unwrap_or_else(|_| unreachable!()),
        };
        let l = udp("127.0.0.1:5060");
        Self {
            listen: vec![
                l,
                Listen {
                    transport: SipTransport::Tcp,
                    ..l
                },
            ],
            public_addr: None,
            max_calls: 1000,
            allow_from: Vec::new(),
            answer_after: Duration::ZERO,
            retry_after_s: 5,
            user_agent: concat!("warmline/", env!("CARGO_PKG_VERSION")).into(),
            // A PBX or trunk sending 1,000 calls a second (three requests each) from one
            // address fits; a flood from one address does not. Trunks listed in
            // allow_from are never limited.
            rate_limit_per_s: 3000,
            rate_limit_burst: 6000,
            rate_limit_ban: Duration::from_secs(10),
            // Far below the descriptors warmline raises its limit to at start, so RTP
            // sockets, the store and HTTP always have theirs; a Kamailio or PBX in front
            // uses one or a few connections.
            tcp_max_connections: 2048,
            tcp_max_per_ip: 128,
            tcp_message_timeout: Duration::from_secs(10),
            // Kamailio closes an idle connection after 120 s (tcp_connection_lifetime);
            // a peer that wants it open sends CRLF keepalives (RFC 5626).
            tcp_idle_timeout: Duration::from_secs(300),
            min_se_s: warmline_signaling::session_timer::RFC_MIN_SE,
            // RFC 4028's recommended interval.
            session_expires_s: 1800,
            tls: TlsSettings::default(),
        }
    }
}

impl SipConfig {
    pub(super) fn validate(&mut self, cx: &Ctx) -> Result<(), ConfigError> {
        let Some(first) = self.listen.first() else {
            return Err(cx.err("sip.listen", "at least one listen address is needed".into()));
        };
        if self.public_addr.is_none() && first.addr.ip().is_unspecified() {
            return Err(cx.err(
                "sip.public_addr",
                "listening on a wildcard address needs public_addr for SDP c= and Contact".into(),
            ));
        }
        if self.max_calls == 0 {
            return Err(cx.err("sip.max_calls", "must be at least 1".into()));
        }
        if self.tcp_max_connections == 0 {
            return Err(cx.err("sip.tcp_max_connections", "must be at least 1".into()));
        }
        if self.tcp_max_per_ip == 0 {
            return Err(cx.err("sip.tcp_max_per_ip", "must be at least 1".into()));
        }
        if self.tcp_message_timeout.is_zero() {
            return Err(cx.err("sip.tcp_message_timeout_s", "must be at least 1".into()));
        }
        if self.min_se_s == 0 {
            return Err(cx.err("sip.min_se_s", "must be at least 1".into()));
        }
        if self.session_expires_s != 0 && self.session_expires_s < self.min_se_s {
            return Err(cx.err(
                "sip.session_expires_s",
                format!(
                    "{} is under min_se_s ({}): the interval we ask for must be one we accept",
                    self.session_expires_s, self.min_se_s
                ),
            ));
        }
        let tls_listeners = self.listen.iter().any(|l| l.transport == SipTransport::Tls);
        self.tls.validate(cx, tls_listeners)
    }
}

/// An IP address, or nothing (unset or empty).
fn public_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not an IP address"))),
    }
}

/// CIDRs, or bare addresses (a /32 or /128).
fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a CIDR or an IP")))
        })
        .collect()
}
