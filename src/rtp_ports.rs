//! RTP port reservation from `[media] rtp_port_range`.
//!
//! A port in an SDP answer must be ours for real: each call binds its RTP socket (even port)
//! and RTCP socket (the next odd port, RFC 3550 §11) before the answer is built, and holds them
//! until the call ends. The media plane takes the sockets over; until then they keep the ports
//! from being handed out twice.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("no free RTP port pair in {lo}..={hi} on {ip}")]
    Exhausted { ip: IpAddr, lo: u16, hi: u16 },
}

/// How many even/odd RTP/RTCP pairs `[lo, hi]` holds: an odd `lo` loses its first port,
/// and the last pair counts when both its ports are inside.
pub fn pairs_in((lo, hi): (u16, u16)) -> u32 {
    let lo = u32::from(lo) + u32::from(lo % 2);
    (u32::from(hi) + 1).saturating_sub(lo) / 2
}

/// Hands out even/odd port pairs round-robin, so a just-freed port is not reused at once
/// (late packets of the old call would land in the new one).
#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    lo: u16,
    hi: u16,
    cursor: AtomicU32,
}

/// A bound RTP/RTCP socket pair owned by one call leg. Both sockets are non-blocking, as
/// the media plane's reactor needs them.
#[derive(Debug)]
pub struct RtpReservation {
    pub rtp: UdpSocket,
    /// Held so the pair stays ours; the media plane (RTCP) takes it over.
    #[allow(dead_code)]
    pub rtcp: UdpSocket,
    port: u16,
}

impl RtpReservation {
    /// The RTP port (RTCP is the next): known from the bind, not asked of the kernel.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A non-blocking UDP socket bound to `addr`: created non-blocking and close-on-exec in the
/// one `socket` call (socket2), where `UdpSocket::bind` and then `set_nonblocking` take an
/// `ioctl` more. Every call makes two and they are on the set-up path.
fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

impl PortPool {
    pub fn new(ip: IpAddr, (lo, hi): (u16, u16)) -> Self {
        let lo = lo + (lo % 2);
        Self {
            ip,
            lo,
            hi,
            cursor: AtomicU32::new(0),
        }
    }

    /// How many even/odd pairs fit in the range (its last pair included).
    pub fn pairs(&self) -> u32 {
        pairs_in((self.lo, self.hi))
    }

    pub fn reserve(&self) -> Result<RtpReservation, PortError> {
        let pairs = self.pairs();
        for _ in 0..pairs {
            let n = self.cursor.fetch_add(1, Ordering::Relaxed) % pairs;
            // n < pairs <= (hi - lo) / 2, so the port stays inside the range
            let port = self.lo + (n as u16) * 2;
            let Ok(rtp) = bind(SocketAddr::new(self.ip, port)) else {
                continue;
            };
            let Ok(rtcp) = bind(SocketAddr::new(self.ip, port + 1)) else {
                continue;
            };
            return Ok(RtpReservation { rtp, rtcp, port });
        }
        Err(PortError::Exhausted {
            ip: self.ip,
            lo: self.lo,
            hi: self.hi,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_even_ports_inside_the_range_and_skips_busy_ones() {
        let pool = PortPool::new("127.0.0.1".parse().unwrap(), (41001, 41010));
        let a = pool.reserve().unwrap();
        let b = pool.reserve().unwrap();
        assert_eq!(a.port() % 2, 0);
        assert!((41002..=41010).contains(&a.port()));
        assert_ne!(a.port(), b.port());
        assert_eq!(a.rtp.local_addr().unwrap().port(), a.port());
        assert_eq!(a.rtcp.local_addr().unwrap().port(), a.port() + 1);
        // Non-blocking from the start: a read with nothing queued returns at once.
        let mut buf = [0u8; 16];
        for s in [&a.rtp, &a.rtcp] {
            let e = s.recv_from(&mut buf).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn the_last_pair_of_the_range_is_used() {
        // [41200, 41207]: 41200/1, 41202/3, 41204/5 and 41206/7.
        let pool = PortPool::new("127.0.0.1".parse().unwrap(), (41200, 41207));
        assert_eq!(pool.pairs(), 4);
        let held: Vec<_> = std::iter::from_fn(|| pool.reserve().ok()).take(5).collect();
        let mut ports: Vec<u16> = held.iter().map(RtpReservation::port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [41200, 41202, 41204, 41206]);
        // An odd start loses its first port, not a pair past the end.
        assert_eq!(
            PortPool::new("127.0.0.1".parse().unwrap(), (41301, 41306)).pairs(),
            2
        );
    }

    #[test]
    fn exhaustion_is_an_error_not_a_panic() {
        let pool = PortPool::new("127.0.0.1".parse().unwrap(), (41100, 41103));
        let held: Vec<_> = std::iter::from_fn(|| pool.reserve().ok())
            .take(10)
            .collect();
        assert!(!held.is_empty());
        assert!(matches!(pool.reserve(), Err(PortError::Exhausted { .. })));
    }
}
