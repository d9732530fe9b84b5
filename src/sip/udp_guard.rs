//! The UDP socket rsipstack reads from, with [`warmline_signaling::triage`] in front.
//!
//! rsipstack takes any [`rsipstack::platform::net::UdpSocket`], so the guard sits exactly where
//! datagrams enter the stack: a malformed request is answered (`400`/`505`) or dropped and
//! counted here, and never reaches a parser that would drop it silently.

use rsipstack::platform::net::UdpSocket as PlatformUdpSocket;
use std::net::SocketAddr;
use std::sync::Arc;
use warmline_signaling::{Triage, triage, triage_truncated};

#[derive(Debug)]
pub struct GuardedUdp {
    socket: tokio::net::UdpSocket,
    /// Every datagram in and out is counted here by its start line, and what the guard
    /// kept from the stack.
    metrics: Arc<crate::metrics::Metrics>,
}

impl GuardedUdp {
    pub fn new(socket: tokio::net::UdpSocket, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self { socket, metrics }
    }
}

#[async_trait::async_trait]
impl PlatformUdpSocket for GuardedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, src) = self.socket.recv_from(buf).await?;
            // The stack reads into 8 KiB: a datagram that fills it was cut, and parsing
            // the cut would answer the wrong thing (a 400 for a short body, or nothing).
            let verdict = if len == buf.len() {
                triage_truncated(&buf[..len])
            } else {
                triage(&buf[..len])
            };
            match verdict {
                Triage::Pass => {
                    self.metrics.sip_message("in", &buf[..len]);
                    return Ok((len, src));
                }
                Triage::Reply { response, why } => {
                    self.metrics.sip_malformed_answered.inc();
                    tracing::warn!(%src, why = ?why, "malformed SIP request answered");
                    if let Err(e) = self.socket.send_to(&response, src).await {
                        tracing::debug!(%src, error = %e, "could not answer malformed request");
                    }
                }
                Triage::Drop { why } => {
                    self.metrics.sip_malformed_dropped.inc();
                    tracing::warn!(%src, why = ?why, "malformed SIP datagram dropped");
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        self.metrics.sip_message("out", buf);
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}
