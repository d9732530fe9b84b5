//! The SIP driver: the rsipstack endpoint and its transports, the loop over new server
//! transactions, admission, the registry of live calls, and outbound call placement.
//!
//! Decisions are not made here: admission asks [`warmline_signaling::Admission`], and every
//! call runs a [`warmline_call::Controller`] inside the task in [`call`].

pub mod call;
pub mod recover;
pub mod register;
pub mod udp_guard;

use crate::config::{Config, Listen, SipTransport};
use crate::rtp_ports::PortPool;
use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, Transport, Uri};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{
    TcpListenerConnection, TlsConfig, TlsListenerConnection, TransportLayer, udp::UdpConnection,
};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use udp_guard::{GuardedUdp, Shedding};
use warmline_call::{CallEvent, CallSnapshot, OriginateOutcome};
use warmline_signaling::{Admission, Verdict};

/// Methods we answer; sent in `Allow` on OPTIONS and 405.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO";

/// What the HTTP API and logs see of one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallInfo {
    pub id: String,
    pub from: String,
    pub to: String,
    pub rtp_port: u16,
    /// The call's own state, as its controller sees it (transcript, triggers, decision,
    /// briefing, prompts, digits, context packet…): a snapshot, not a copy kept beside it.
    #[serde(flatten)]
    pub snapshot: CallSnapshot,
    /// The other leg this one is bridged to.
    pub partner: Option<String>,
    /// The leg's RTP counters, refreshed about once a second (the snapshot's offer/answer
    /// result is `negotiated`, so each key appears once).
    pub media: Option<crate::media::LegReport>,
}

/// How the rest of the gateway talks to a live call.
#[derive(Debug, Clone)]
pub struct CallHandle {
    pub commands: crate::sip::call::LegEvents,
    pub info: Arc<Mutex<CallInfo>>,
}

/// A request to place an outbound call.
#[derive(Debug, Clone, Default)]
pub struct Originate {
    pub to: String,
    pub ring_timeout: Option<std::time::Duration>,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    /// From: display name and user (the caller's, when calling an agent for them).
    pub from_display: Option<String>,
    pub from_user: Option<String>,
    /// Extra headers on the INVITE (P-Asserted-Identity, Call-Info, X-Warmline-*).
    pub headers: Vec<(String, String)>,
}

/// A leg's place under `max_calls`, given back when the leg ends (dropped).
#[derive(Debug)]
pub struct LegSlot(Arc<AtomicUsize>);

impl Drop for LegSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The running SIP side of warmline.
pub struct Gateway {
    pub cfg: Arc<Config>,
    dialog_layer: Arc<DialogLayer>,
    admission: Admission,
    /// Shared with the UDP guards, which refuse new INVITEs statelessly while it is set.
    draining: Arc<AtomicBool>,
    ports: PortPool,
    /// Every live leg by its Call-ID; the UDP guard reads it to answer stray BYEs.
    calls: Arc<Mutex<HashMap<String, CallHandle>>>,
    /// Legs counted against `max_calls`, each from its admission (or placing) to its end.
    /// Taken at admission, not when the call registers: a burst of INVITEs all checked
    /// before any registered once let max_calls + 1 in.
    legs: Arc<AtomicUsize>,
    contact: Uri,
    /// The Contact for dialogs over TLS (the first `tls:` listener's port), when there is one.
    tls_contact: Option<Uri>,
    advertised: IpAddr,
    /// `[[rules]]` in the order the policy tries them, made once for every call.
    rules: warmline_policy::RuleSet,
    pub planes: Planes,
    /// `[[registrations]]`, started once the stack serves.
    registrations: std::sync::OnceLock<register::Registrations>,
}

/// The shared parts every call uses besides SIP.
pub struct Planes {
    pub media: Arc<crate::media::MediaPlane>,
    pub speech: Option<Arc<crate::speech::SpeechPlane>>,
    pub assistant: Arc<crate::assistant::AssistantPlane>,
    pub store: Arc<crate::store::StoreHandle>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginateError {
    #[error("bad target URI `{0}`")]
    BadUri(String),
    #[error("gateway is shutting down")]
    Draining,
    #[error("no RTP port: {0}")]
    Ports(#[from] crate::rtp_ports::PortError),
    #[error("could not start the INVITE: {0}")]
    Stack(String),
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("contact", &self.contact.to_string())
            .field("active_calls", &self.active_calls())
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Bind every listener and start serving. Returns once the sockets are bound.
    pub async fn start(
        cfg: Arc<Config>,
        planes: Planes,
        cancel: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let advertised = cfg.advertised_ip();
        let transport_layer = TransportLayer::new(cancel.clone());
        // Port 0 asks the kernel for a port: it is bound and held here, and the config the
        // gateway runs on (Contact, Via, what `main` logs) names the port it got. Listeners
        // on one IP share it, so a caller reaches UDP and TCP at the same port; should TCP
        // find that port taken, the kernel is asked again.
        // What admission needs, shared with the UDP guards (see `udp_guard::Shedding`).
        let admission = Admission::new(
            cfg.sip.allow_from.clone(),
            cfg.sip.max_calls,
            cfg.sip.retry_after_s,
        );
        let legs = Arc::new(AtomicUsize::new(0));
        let draining = Arc::new(AtomicBool::new(false));
        let calls: Arc<Mutex<HashMap<String, CallHandle>>> = Arc::default();
        let limit = Arc::new(udp_guard::RateLimit {
            pike: Mutex::new(warmline_signaling::Pike::new(
                warmline_signaling::PikeSettings {
                    requests_per_s: f64::from(cfg.sip.rate_limit_per_s),
                    burst: f64::from(cfg.sip.rate_limit_burst.max(1)),
                    ban: cfg.sip.rate_limit_ban,
                },
            )),
            exempt: cfg.sip.allow_from.clone(),
        });
        // SIP over TCP is counted where the stack reads and writes its streams (rsipstack
        // patch 8), into the series the UDP guard counts datagrams in.
        let counter = planes.metrics.clone();
        if rsipstack::transport::stream::set_message_observer(Box::new(move |dir, bytes| {
            counter.sip_message(dir, bytes)
        }))
        .is_err()
        {
            tracing::debug!("stream message observer already set in this process");
        }
        let pem = &cfg.sip.tls.loaded;
        let tls = TlsConfig {
            cert: pem.certificate.clone(),
            key: pem.key.clone(),
            client_cert: pem.certificate.clone(),
            client_key: pem.key.clone(),
            ca_certs: pem.ca.clone(),
            client_ca: pem.client_ca.clone(),
            sni_hostname: None,
        };
        let mut attempt = 0;
        let (listen, bound) = loop {
            attempt += 1;
            match bind_listeners(&cfg.sip.listen) {
                Ok(done) => break done,
                Err(e) if attempt < 10 && e.chose_port => {
                    tracing::debug!(error = %e.error, "a chosen SIP port was taken on another transport; choosing again");
                }
                Err(e) => return Err(e.error),
            }
        };
        let cfg = if listen == cfg.sip.listen {
            cfg
        } else {
            let mut resolved = (*cfg).clone();
            resolved.sip.listen = listen;
            Arc::new(resolved)
        };
        for (l, socket) in cfg.sip.listen.iter().zip(bound) {
            let external = cfg
                .sip
                .public_addr
                .map(|ip| SocketAddr::new(ip, l.addr.port()));
            match socket {
                Bound::Udp(socket) => {
                    let guarded = GuardedUdp::new(
                        socket,
                        planes.metrics.clone(),
                        Shedding {
                            admission: admission.clone(),
                            legs: legs.clone(),
                            draining: draining.clone(),
                            retry_after_s: cfg.sip.retry_after_s,
                            calls: calls.clone(),
                        },
                        limit.clone(),
                    );
                    let conn = UdpConnection::from_socket(
                        Arc::new(guarded),
                        external,
                        Some(cancel.child_token()),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("udp transport {}: {e}", l.addr))?;
                    transport_layer.add_transport(conn.into());
                }
                Bound::Tcp(listener) => {
                    // Served as bound (rsipstack patch 3): the port is never let go.
                    let conn = TcpListenerConnection::from_listener(listener, external)
                        .map_err(|e| anyhow::anyhow!("serving SIP tcp:{}: {e}", l.addr))?;
                    transport_layer.add_transport(conn.into());
                }
                Bound::Tls(listener) => {
                    let conn =
                        TlsListenerConnection::from_listener(listener, external, tls.clone())
                            .map_err(|e| anyhow::anyhow!("serving SIP tls:{}: {e}", l.addr))?;
                    transport_layer.add_transport(conn.into());
                }
            }
        }
        // TLS that warmline opens (agents and trunks at `sips:` or `;transport=tls`
        // URIs) trusts `[sip.tls] ca` and shows our certificate when asked for one.
        transport_layer.set_tls_config(tls);
        transport_layer.set_stream_limits(rsipstack::transport::stream::StreamLimits {
            max_connections: cfg.sip.tcp_max_connections,
            max_per_ip: cfg.sip.tcp_max_per_ip,
            message_timeout: cfg.sip.tcp_message_timeout,
        });
        transport_layer.set_stream_idle_timeout(cfg.sip.tcp_idle_timeout);
        let option = rsipstack::transaction::endpoint::EndpointOption {
            callid_suffix: Some(advertised.to_string()),
            ..Default::default()
        };
        let endpoint = EndpointBuilder::new()
            .with_option(option)
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transport_layer)
            .with_user_agent(&cfg.sip.user_agent)
            .build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| anyhow::anyhow!("transaction receiver: {e}"))?;
        let dialog_layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let port = cfg.sip.listen[0].addr.port();
        let contact =
            Uri::try_from(format!("sip:warmline@{}", host_port(advertised, port)).as_str())
                .map_err(|e| anyhow::anyhow!("contact URI: {e}"))?;
        let tls_contact = cfg
            .sip
            .listen
            .iter()
            .find(|l| l.transport == SipTransport::Tls)
            .map(|l| {
                Uri::try_from(
                    format!(
                        "sip:warmline@{};transport=tls",
                        host_port(advertised, l.addr.port())
                    )
                    .as_str(),
                )
                .map_err(|e| anyhow::anyhow!("TLS contact URI: {e}"))
            })
            .transpose()?;
        let media_ip = cfg.sip.listen[0].addr.ip();
        let gw = Arc::new(Gateway {
            admission,
            ports: PortPool::new(media_ip, cfg.media.rtp_port_range),
            dialog_layer,
            draining,
            calls,
            legs,
            contact,
            tls_contact,
            advertised,
            rules: cfg.rules.clone().into(),
            planes,
            registrations: std::sync::OnceLock::new(),
            cfg,
        });
        tokio::spawn(async move { endpoint.serve().await });
        let looped = gw.clone();
        tokio::spawn(async move {
            let mut incoming = incoming;
            while let Some(tx) = incoming.recv().await {
                let gw = looped.clone();
                tokio::spawn(async move { gw.on_transaction(tx).await });
            }
        });
        let registrations = register::Registrations::start(&gw, &cancel);
        let _ = gw.registrations.set(registrations);
        Ok(gw)
    }

    /// An inbound leg's place under `max_calls` (`limit`), or `None` when none is left.
    fn claim(&self, limit: usize) -> Option<LegSlot> {
        self.legs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| LegSlot(self.legs.clone()))
    }

    /// The place of a leg we placed: counted, never refused.
    pub(super) fn claim_placed(&self) -> LegSlot {
        self.legs.fetch_add(1, Ordering::AcqRel);
        LegSlot(self.legs.clone())
    }

    pub fn active_calls(&self) -> usize {
        self.calls_lock().len()
    }

    /// What the TCP connection bounds have done (rsipstack patch 2).
    pub fn tcp_stats(&self) -> rsipstack::transport::stream::StreamStats {
        self.dialog_layer.endpoint.transport_layer.stream_stats()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Refuse new calls from now on (503 + Retry-After).
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Where each `[[registrations]]` entry stands.
    pub fn registrations(&self) -> Vec<register::RegistrationStatus> {
        self.registrations
            .get()
            .map(register::Registrations::statuses)
            .unwrap_or_default()
    }

    /// Remove our bindings at the registrars (draining), waiting for their answers up to
    /// `limit`.
    pub async fn unregister_all(&self, limit: std::time::Duration) {
        if let Some(r) = self.registrations.get() {
            r.unregister_all(limit).await;
        }
    }

    pub fn call(&self, id: &str) -> Option<CallHandle> {
        self.calls_lock().get(id).cloned()
    }

    pub fn list_calls(&self) -> Vec<CallInfo> {
        self.calls_lock().values().map(snapshot_of).collect()
    }

    /// Ask every live call to end (BYE, CANCEL or a final response, as its state needs).
    pub fn hangup_all(&self) {
        for h in self.calls_lock().values() {
            let _ = h.commands.send(CallEvent::Hangup);
        }
    }

    fn calls_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallHandle>> {
        lock(&self.calls)
    }

    fn register(&self, id: String, handle: CallHandle) {
        self.calls_lock().insert(id, handle);
    }

    fn unregister(&self, id: &str) {
        self.calls_lock().remove(id);
    }

    async fn on_transaction(self: Arc<Self>, mut tx: Transaction) {
        let in_dialog = tx
            .original
            .to_header()
            .ok()
            .and_then(|h| h.tag().ok().flatten())
            .is_some();
        let method = tx.original.method;
        // Every transaction gets a task of this future's size, and an async fn's future is
        // as large as its largest branch: the INVITE's set-up and the stack's futures are
        // boxed, so that a BYE or an OPTIONS costs a task of 2.8 KB, not 69 KB.
        let result = match (method, in_dialog) {
            (Method::Invite, false) => {
                Box::pin(self.on_invite(tx)).await;
                Ok(())
            }
            // A draining gateway says so to OPTIONS probes too, so a dispatcher in front
            // (Kamailio) takes it out of rotation while its calls finish.
            (Method::Options, false) if self.is_draining() => {
                Box::pin(tx.reply_with(
                    StatusCode::ServiceUnavailable,
                    vec![Header::Other(
                        "Retry-After".into(),
                        self.cfg.sip.retry_after_s.to_string(),
                    )],
                    None,
                ))
                .await
            }
            (Method::Options, false) => {
                Box::pin(tx.reply_with(StatusCode::OK, capability_headers(), None)).await
            }
            (Method::Ack, _) => Ok(()),
            (_, true) | (Method::Bye, false) => match self.dialog_layer.match_dialog(&tx) {
                Some(mut dialog) => Box::pin(dialog.handle(&mut tx)).await,
                None => Box::pin(tx.reply(StatusCode::CallTransactionDoesNotExist)).await,
            },
            _ => {
                Box::pin(tx.reply_with(
                    StatusCode::MethodNotAllowed,
                    vec![Header::Other("Allow".into(), ALLOW.into())],
                    None,
                ))
                .await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%method, error = %e, "transaction ended with an error");
        }
    }

    async fn on_invite(self: &Arc<Self>, mut tx: Transaction) {
        let src = source_ip(&tx);
        let max = self.cfg.sip.max_calls;
        let mut slot = None;
        let verdict = match src {
            Some(ip) => {
                let active = self.legs.load(Ordering::Acquire);
                match self.admission.check(ip, active, self.is_draining()) {
                    Verdict::Admit => match self.claim(max) {
                        Some(s) => {
                            slot = Some(s);
                            Verdict::Admit
                        }
                        // Another INVITE took the last place since the check.
                        None => self.admission.check(ip, max, false),
                    },
                    refused => refused,
                }
            }
            None => Verdict::Reject {
                status: 403,
                reason: "Forbidden",
                retry_after: None,
            },
        };
        if let Verdict::Reject {
            status,
            reason,
            retry_after,
        } = verdict
        {
            tracing::info!(?src, status, reason, "INVITE refused");
            let mut headers = Vec::new();
            if let Some(s) = retry_after {
                headers.push(Header::Other("Retry-After".into(), s.to_string()));
            }
            headers.push(Header::Other(
                "Warning".into(),
                format!("399 warmline \"{reason}\""),
            ));
            if let Err(e) = Box::pin(tx.reply_with(StatusCode::from(status), headers, None)).await {
                tracing::debug!(error = %e, "could not send refusal");
            }
            return;
        }
        call::run_inbound(self.clone(), tx, slot).await;
    }

    /// Place an outbound call; the receiver yields its typed outcome exactly once.
    pub fn originate(
        self: &Arc<Self>,
        req: Originate,
    ) -> Result<(String, oneshot::Receiver<OriginateOutcome>), OriginateError> {
        if self.is_draining() {
            return Err(OriginateError::Draining);
        }
        let callee =
            Uri::try_from(req.to.as_str()).map_err(|_| OriginateError::BadUri(req.to.clone()))?;
        let rtp = self.ports.reserve()?;
        call::start_outbound(self.clone(), callee, req, rtp)
    }
}

pub fn snapshot_of(h: &CallHandle) -> CallInfo {
    lock(&h.info).clone()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What an OPTIONS is told we do (the stack's answer and the UDP guard's stateless one).
fn capabilities() -> [(&'static str, String); 3] {
    [
        ("Allow", ALLOW.into()),
        ("Accept", "application/sdp".into()),
        (
            "Supported",
            warmline_signaling::extensions::SUPPORTED.join(", "),
        ),
    ]
}

fn capability_headers() -> Vec<Header> {
    capabilities()
        .into_iter()
        .map(|(name, value)| Header::Other(name.into(), value))
        .collect()
}

fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The address the INVITE really came from (the socket peer, not what Via claims).
fn source_ip(tx: &Transaction) -> Option<IpAddr> {
    let addr = tx.connection.as_ref()?.get_remote_addr()?;
    match &addr.addr.host {
        rsipstack::sip::Host::IpAddr(ip) => Some(*ip),
        rsipstack::sip::Host::Domain(_) => None,
    }
}

/// A listener's socket, bound before the transport layer takes it.
enum Bound {
    Udp(tokio::net::UdpSocket),
    /// Handed to rsipstack as it is (patch 3 in vendor/rsipstack/PATCHES.md).
    Tcp(std::net::TcpListener),
    /// The same for TLS (patch 10).
    Tls(std::net::TcpListener),
}

struct BindError {
    error: anyhow::Error,
    /// The port was one the kernel chose for another transport of this attempt.
    chose_port: bool,
}

/// Bind every listener; port 0 takes the port the kernel gives the first listener on that
/// IP, and the others on that IP reuse it. Returns the listeners with their real ports.
fn bind_listeners(listen: &[Listen]) -> Result<(Vec<Listen>, Vec<Bound>), BindError> {
    let mut resolved: Vec<Listen> = Vec::with_capacity(listen.len());
    let mut bound = Vec::with_capacity(listen.len());
    for l in listen {
        let mut addr = l.addr;
        let mut chose_port = false;
        // TLS is TCP underneath, so it cannot share TCP's port: a `tls:` listener on port
        // 0 gets a port of its own, and UDP and TCP never take the one it got.
        let shares = |t: SipTransport| t != SipTransport::Tls;
        let chosen_before = listen
            .iter()
            .zip(&resolved)
            .find(|(orig, _)| {
                orig.addr.port() == 0
                    && orig.addr.ip() == addr.ip()
                    && shares(orig.transport)
                    && shares(l.transport)
            })
            .map(|(_, got)| got.addr.port());
        if addr.port() == 0
            && let Some(p) = chosen_before
        {
            addr.set_port(p);
            chose_port = true;
        }
        let what = format!("binding SIP {}:{}", l.transport, l.addr);
        let fail = |e: std::io::Error| BindError {
            error: anyhow::Error::new(e).context(what.clone()),
            chose_port,
        };
        let socket = match l.transport {
            SipTransport::Udp => Bound::Udp(bind_udp(addr).map_err(fail)?),
            SipTransport::Tcp => Bound::Tcp(std::net::TcpListener::bind(addr).map_err(fail)?),
            SipTransport::Tls => Bound::Tls(std::net::TcpListener::bind(addr).map_err(fail)?),
        };
        addr = match &socket {
            Bound::Udp(s) => s.local_addr(),
            Bound::Tcp(s) | Bound::Tls(s) => s.local_addr(),
        }
        .map_err(fail)?;
        resolved.push(Listen {
            transport: l.transport,
            addr,
        });
        bound.push(socket);
    }
    Ok((resolved, bound))
}

/// SIP UDP socket with a receive buffer sized for call bursts: the kernel default (208 KiB)
/// overflows under a few thousand INVITEs per second and shows up as retransmissions.
fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

impl Gateway {
    /// Our Contact for a dialog whose requests travel over `transport` (RFC 3261 §8.1.1.8:
    /// where the peer sends its in-dialog requests). Over TLS it names the TLS listener,
    /// and is a `sips:` URI when the dialog's request was one (§12.1.1 requires it);
    /// otherwise the first listener's address, which UDP and TCP share.
    pub(crate) fn contact_for(&self, transport: Option<Transport>, sips: bool) -> Uri {
        match (transport, &self.tls_contact) {
            (Some(Transport::Tls), Some(tls)) if sips => {
                let mut uri = tls.clone();
                uri.scheme = Some(rsipstack::sip::Scheme::Sips);
                uri.params
                    .retain(|p| !matches!(p, rsipstack::sip::Param::Transport(_)));
                uri
            }
            (Some(Transport::Tls), Some(tls)) => tls.clone(),
            _ => self.contact.clone(),
        }
    }

    pub(crate) fn advertised(&self) -> IpAddr {
        self.advertised
    }

    pub(crate) fn dialog_layer(&self) -> &Arc<DialogLayer> {
        &self.dialog_layer
    }

    pub(crate) fn ports(&self) -> &PortPool {
        &self.ports
    }
}
