//! The UDP socket rsipstack reads from, with [`warmline_signaling::triage`] in front.
//!
//! rsipstack takes any [`rsipstack::platform::net::UdpSocket`], so the guard sits exactly where
//! datagrams enter the stack: a malformed request is answered (`400`/`505`) or dropped and
//! counted here, and never reaches a parser that would drop it silently.

use rsipstack::platform::net::UdpSocket as PlatformUdpSocket;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use warmline_signaling::{
    Triage, Verdict, answer_options, answer_stray_request, answer_unknown_bye, refuse_new_invite,
    triage, triage_truncated,
};

/// What the guard needs to refuse a new INVITE before the stack sees it: while the gateway
/// is full or draining (or the source is not allowed), a flood of INVITEs is answered
/// statelessly, so none of them becomes a transaction. 50,000 INVITEs once became 50,000
/// transactions whose timers stalled SIP for half a minute.
#[derive(Debug)]
pub struct Shedding {
    pub admission: warmline_signaling::Admission,
    pub legs: Arc<std::sync::atomic::AtomicUsize>,
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// `Retry-After` on a draining gateway's 503s.
    pub retry_after_s: u32,
    /// The gateway's live legs by Call-ID: a BYE for none of them is answered here.
    pub calls: Arc<std::sync::Mutex<std::collections::HashMap<String, super::CallHandle>>>,
}

/// Per-source request limits (see [`warmline_signaling::pike`]), with the networks that are
/// exempt (the configured trunks and PBXs of `allow_from`).
#[derive(Debug)]
pub struct RateLimit {
    pub pike: std::sync::Mutex<warmline_signaling::Pike>,
    pub exempt: Vec<ipnet::IpNet>,
}

impl RateLimit {
    /// Whether a request from `src` is dropped.
    fn drops(&self, src: SocketAddr) -> bool {
        let ip = src.ip().to_canonical();
        if self.exempt.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        let verdict = match self.pike.lock() {
            Ok(mut p) => p.check(std::time::Instant::now(), ip),
            Err(_) => return false,
        };
        match verdict {
            warmline_signaling::PikeVerdict::Pass => false,
            warmline_signaling::PikeVerdict::Drop { banned_now } => {
                if banned_now {
                    tracing::warn!(%ip, "SIP source over its request rate: ignored for a while");
                }
                true
            }
        }
    }
}

#[derive(Debug)]
pub struct GuardedUdp {
    socket: tokio::net::UdpSocket,
    /// Every datagram in and out is counted here by its start line, and what the guard
    /// kept from the stack.
    metrics: Arc<crate::metrics::Metrics>,
    shedding: Shedding,
    limit: Arc<RateLimit>,
}

impl GuardedUdp {
    pub fn new(
        socket: tokio::net::UdpSocket,
        metrics: Arc<crate::metrics::Metrics>,
        shedding: Shedding,
        limit: Arc<RateLimit>,
    ) -> Self {
        Self {
            socket,
            metrics,
            shedding,
            limit,
        }
    }

    /// The stateless refusal of a new INVITE the gateway would refuse anyway, if this is one.
    fn shed(&self, datagram: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        if !datagram.starts_with(b"INVITE ") {
            return None;
        }
        let s = &self.shedding;
        let verdict = s.admission.check(
            src.ip(),
            s.legs.load(Ordering::Acquire),
            s.draining.load(Ordering::Relaxed),
        );
        let Verdict::Reject {
            status,
            reason,
            retry_after,
        } = verdict
        else {
            return None;
        };
        let mut headers = Vec::new();
        if let Some(secs) = retry_after {
            headers.push(("Retry-After", secs.to_string()));
        }
        refuse_new_invite(datagram, status, reason, &headers)
    }

    /// 481 for a BYE that names no live call: nothing the stack could match it to.
    fn stray_bye(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        if !datagram.starts_with(b"BYE ") {
            return None;
        }
        let calls = super::lock(&self.shedding.calls);
        answer_unknown_bye(datagram, |id| calls.contains_key(id))
    }

    /// 481 for an in-dialog request naming no live call, 405 for a method we do not take
    /// outside a dialog: what the stack would answer, without a transaction kept 32 s each.
    fn stray_request(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        if datagram.starts_with(b"SIP/") {
            return None;
        }
        // The calls' lock only once the request is known to be in a dialog: every INVITE,
        // ACK and BYE comes through here, and most return before asking.
        let known = |id: &str| super::lock(&self.shedding.calls).contains_key(id);
        answer_stray_request(datagram, known, super::ALLOW)
    }

    /// The stateless answer to an OPTIONS outside a dialog, if this is one: what the stack
    /// would say (200 with our capabilities, or 503 while draining, so a dispatcher takes
    /// us out of rotation), without a transaction kept 32 s for each probe.
    fn options(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        if !datagram.starts_with(b"OPTIONS ") {
            return None;
        }
        if self.shedding.draining.load(Ordering::Relaxed) {
            let retry = [("Retry-After", self.shedding.retry_after_s.to_string())];
            answer_options(datagram, 503, "Service Unavailable", &retry)
        } else {
            answer_options(datagram, 200, "OK", &super::capabilities())
        }
    }
}

#[async_trait::async_trait]
impl PlatformUdpSocket for GuardedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, src) = self.socket.recv_from(buf).await?;
            // Requests only: a banned peer's responses (to our BYE, say) still count.
            if !buf[..len].starts_with(b"SIP/") && self.limit.drops(src) {
                self.metrics.sip_rate_limited.inc();
                continue;
            }
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
                    if let Some(refusal) = self.shed(&buf[..len], src) {
                        // Counted, not logged: a flood would write a line per datagram.
                        self.metrics.sip_invites_shed.inc();
                        self.metrics.sip_message("out", &refusal);
                        let _ = self.socket.send_to(&refusal, src).await;
                        continue;
                    }
                    if let Some(answer) = self.stray_bye(&buf[..len]) {
                        self.metrics.sip_stray_byes.inc();
                        self.metrics.sip_message("out", &answer);
                        let _ = self.socket.send_to(&answer, src).await;
                        continue;
                    }
                    if let Some(answer) = self.options(&buf[..len]) {
                        self.metrics.sip_options_stateless.inc();
                        self.metrics.sip_message("out", &answer);
                        let _ = self.socket.send_to(&answer, src).await;
                        continue;
                    }
                    if let Some(answer) = self.stray_request(&buf[..len]) {
                        self.metrics.sip_stray_requests.inc();
                        self.metrics.sip_message("out", &answer);
                        let _ = self.socket.send_to(&answer, src).await;
                        continue;
                    }
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
