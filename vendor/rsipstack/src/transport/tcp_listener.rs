use crate::platform::CancellationToken;
use crate::transport::tcp::TcpConnection;
use crate::transport::transport_layer::TransportLayerInnerRef;
use crate::transport::SipAddr;
use crate::transport::SipConnection;
use crate::Result;
use socket2::{Domain, Protocol, Socket, Type};
use std::fmt;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};
pub struct TcpListenerConnectionInner {
    pub local_addr: SipAddr,
    pub external: Option<SipAddr>,
    /// warmline patch 3: a bound, listening socket to serve instead of binding anew.
    pub held: parking_lot::Mutex<Option<std::net::TcpListener>>,
}

const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);
const ACCEPT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub struct TcpListenerConnection {
    pub inner: Arc<TcpListenerConnectionInner>,
}

impl TcpListenerConnection {
    pub async fn new(local_addr: SocketAddr, external: Option<SocketAddr>) -> Result<Self> {
        let inner = TcpListenerConnectionInner {
            local_addr: SipAddr {
                r#type: Some(crate::sip::transport::Transport::Tcp),
                addr: local_addr.into(),
            },
            external: external.map(|addr| SipAddr {
                r#type: Some(crate::sip::transport::Transport::Tcp),
                addr: addr.into(),
            }),
            held: parking_lot::Mutex::new(None),
        };
        Ok(TcpListenerConnection {
            inner: Arc::new(inner),
        })
    }

    /// warmline patch 3: serve `listener`, already bound and listening, as it is.
    pub fn from_listener(
        listener: std::net::TcpListener,
        external: Option<SocketAddr>,
    ) -> Result<Self> {
        let local_addr = listener.local_addr()?;
        let inner = TcpListenerConnectionInner {
            local_addr: SipAddr {
                r#type: Some(crate::sip::transport::Transport::Tcp),
                addr: local_addr.into(),
            },
            external: external.map(|addr| SipAddr {
                r#type: Some(crate::sip::transport::Transport::Tcp),
                addr: addr.into(),
            }),
            held: parking_lot::Mutex::new(Some(listener)),
        };
        Ok(TcpListenerConnection {
            inner: Arc::new(inner),
        })
    }

    pub async fn serve_listener(
        &self,
        transport_layer_inner: TransportLayerInnerRef,
    ) -> Result<()> {
        let local = self.inner.local_addr.get_socketaddr()?;
        let domain = if local.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        // warmline patch 3 (PATCHES.md): a socket the application bound and held is served
        // as it is, so the port is never released between choosing and serving it.
        let held = self.inner.held.lock().take();
        let listener = match held {
            Some(held) => {
                held.set_nonblocking(true)?;
                TcpListener::from_std(held)?
            }
            None => {
                let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
                if let Err(e) = socket.set_reuse_address(true) {
                    warn!(error = %e, "failed to set SO_REUSEADDR on TCP listener");
                }
                socket.set_nonblocking(true)?;
                socket.bind(&local.into())?;
                socket.listen(128)?;
                TcpListener::from_std(socket.into())?
            }
        };
        let listener_local_addr = self.get_addr().clone();
        crate::platform::spawn(async move {
            let mut pacer = AcceptPacer::new("TCP");
            loop {
                let Some((stream, _remote, slot)) =
                    pacer.next(&listener, &transport_layer_inner, &listener_local_addr).await
                else {
                    break;
                };
                let local_addr = listener_local_addr.clone();
                let tcp_connection = match TcpConnection::from_stream(
                    stream,
                    local_addr.clone(),
                    Some(transport_layer_inner.cancel_token.child_token()),
                ) {
                    Ok(tcp_connection) => tcp_connection,
                    Err(e) => {
                        warn!(error = ?e, %local_addr, "Failed to create TCP connection");
                        continue;
                    }
                };
                *tcp_connection.inner.slot.lock() = Some(slot);
                let sip_connection = SipConnection::Tcp(tcp_connection.clone());
                transport_layer_inner.add_connection(sip_connection.clone());
                debug!(?local_addr, "new tcp connection");
            }
        });
        Ok(())
    }
}

/// Accepts the next connection, or returns `None` once `cancel_token` fires.
///
/// Listener accept loops run in detached tasks; racing the token lets them exit
/// and release the listening socket (and the transport layer they hold) when the
/// transport layer is cancelled.
pub(crate) async fn accept_or_cancelled(
    listener: &TcpListener,
    cancel_token: &CancellationToken,
) -> Option<std::io::Result<(TcpStream, SocketAddr)>> {
    let mut cancel_f = core::pin::pin!(cancel_token.cancelled());
    let mut accept_f = core::pin::pin!(listener.accept());
    match crate::platform::select::select2(&mut cancel_f, &mut accept_f).await {
        crate::platform::select::Either::A(()) => None,
        crate::platform::select::Either::B(accepted) => Some(accepted),
    }
}

/// warmline patches 2 and 10: the accept side every stream listener (TCP, TLS) shares.
///
/// A failing accept (descriptors exhausted) backs off, from 5 ms doubling to 1 s, and is
/// logged at most once a second with a count; upstream retried at once and logged every
/// failure, which spun a core and wrote gigabytes of log while the condition lasted. A
/// connection over the [`StreamGate`](super::stream::StreamGate)'s bounds is closed at
/// once and counted, logged at most once a second.
pub(crate) struct AcceptPacer {
    what: &'static str,
    backoff: std::time::Duration,
    last_log: Option<tokio::time::Instant>,
    refused_logged: u64,
}

impl AcceptPacer {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            backoff: ACCEPT_BACKOFF_MIN,
            last_log: None,
            refused_logged: 0,
        }
    }

    /// Whether a rate-limited log line may be written now (and, if so, marks it written).
    pub(crate) fn may_log(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let ok = self
            .last_log
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_EVERY);
        if ok {
            self.last_log = Some(now);
        }
        ok
    }

    /// The next accepted connection that passes the whitelist and the gate, with its
    /// place; `None` once the transport layer is cancelled.
    pub(crate) async fn next(
        &mut self,
        listener: &TcpListener,
        inner: &TransportLayerInnerRef,
        local: &SipAddr,
    ) -> Option<(TcpStream, SocketAddr, crate::transport::stream::StreamSlot)> {
        loop {
            let (stream, remote_addr) = match accept_or_cancelled(listener, &inner.cancel_token)
                .await
            {
                Some(Ok(accepted)) => {
                    self.backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Some(Err(e)) => {
                    let errors = inner.streams.count_accept_error();
                    if self.may_log() {
                        warn!(error = %e, errors, %local, "failed to accept a {} connection; backing off", self.what);
                    }
                    let sleep = tokio::time::sleep(self.backoff);
                    let cancel = inner.cancel_token.cancelled();
                    tokio::select! {
                        _ = sleep => {}
                        _ = cancel => return None,
                    }
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
                None => {
                    debug!(%local, "{} listener cancelled", self.what);
                    return None;
                }
            };
            if !inner.is_whitelisted(remote_addr.ip()).await {
                debug!(remote = %remote_addr, "{} connection rejected by whitelist", self.what);
                continue;
            }
            let Some(slot) = inner.streams.try_enter(remote_addr.ip()) else {
                let refused = inner.streams.stats().refused;
                if self.may_log() {
                    warn!(remote = %remote_addr, refused, since_last = refused - self.refused_logged, "{} connection refused: connection bound reached", self.what);
                    self.refused_logged = refused;
                }
                drop(stream);
                continue;
            };
            return Some((stream, remote_addr, slot));
        }
    }
}

impl TcpListenerConnection {
    pub fn get_addr(&self) -> &SipAddr {
        if let Some(external) = &self.inner.external {
            external
        } else {
            &self.inner.local_addr
        }
    }

    pub async fn close(&self) -> Result<()> {
        Ok(())
    }
}

impl fmt::Display for TcpListenerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TCP Listener {}", self.get_addr())
    }
}

impl fmt::Debug for TcpListenerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
