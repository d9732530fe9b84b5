//! RTP port reservation from `[media] rtp_port_range`, and the spare socket pairs of calls
//! that ended.
//!
//! A port in an SDP answer must be ours for real: each call binds its RTP socket (even port)
//! and RTCP socket (the next odd port, RFC 3550 §11) before the answer is built, and holds them
//! until the call ends. The media plane takes the sockets over; until then they keep the ports
//! from being handed out twice.
//!
//! A pair is not closed when its call ends: it waits, still bound and still registered with
//! the reactor, in a bounded queue of spares, and a call that starts after [`QUARANTINE`] takes
//! it (what arrived meanwhile is drained first). Creating, binding, registering, deregistering
//! and closing two sockets was 8 % of warmline's CPU at 2,500 call set-ups a second (issue 14).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("no free RTP port pair in {lo}..={hi} on {ip}")]
    Exhausted { ip: IpAddr, lo: u16, hi: u16 },
}

/// How long a freed pair rests before another call gets it: late packets of the old call
/// (sent before its peer saw the BYE) land, and are drained, in the meantime. A source
/// other than the new call's SDP address must pass the leg's probation anyway.
pub const QUARANTINE: Duration = Duration::from_millis(250);

/// At most this many spare pairs (two descriptors each) are kept; 250 ms of frees at 5,000
/// call set-ups a second is 1,250.
const MAX_SPARES: usize = 2048;

/// What a pair may have queued while spare is read and dropped, up to this many datagrams
/// a socket (its receive buffer holds fewer at RTP sizes).
const DRAIN_MAX: usize = 1024;

/// How many even/odd RTP/RTCP pairs `[lo, hi]` holds: an odd `lo` loses its first port,
/// and the last pair counts when both its ports are inside.
pub fn pairs_in((lo, hi): (u16, u16)) -> u32 {
    let lo = u32::from(lo) + u32::from(lo % 2);
    (u32::from(hi) + 1).saturating_sub(lo) / 2
}

/// Hands out even/odd port pairs: a spare pair whose quarantine is over, else a newly bound
/// one, round-robin, so a just-freed port is not reused at once (late packets of the old
/// call would land in the new one).
#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    lo: u16,
    hi: u16,
    cursor: AtomicU32,
    spares: Arc<Spares>,
}

#[derive(Debug)]
struct Spares {
    queue: Mutex<VecDeque<Spare>>,
    cap: usize,
    quarantine: Duration,
    reused: AtomicU64,
    drained: AtomicU64,
}

#[derive(Debug)]
struct Spare {
    pair: Pair,
    freed: Instant,
}

#[derive(Debug)]
struct Pair {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    port: u16,
}

/// What [`PortPool::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub spare: usize,
    pub reused: u64,
    pub drained: u64,
}

/// A bound RTP/RTCP socket pair owned by one call leg, non-blocking and registered with the
/// reactor. Dropping it gives the pair back to its pool as a spare.
#[derive(Debug)]
pub struct RtpReservation {
    pair: Option<Pair>,
    port: u16,
    home: Arc<Spares>,
}

impl RtpReservation {
    /// The RTP port (RTCP is the next): known from the bind, not asked of the kernel.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The RTP and RTCP sockets. `None` never happens before the drop that takes them.
    pub fn sockets(&self) -> Option<(&UdpSocket, &UdpSocket)> {
        self.pair.as_ref().map(|p| (&p.rtp, &p.rtcp))
    }
}

impl Drop for RtpReservation {
    fn drop(&mut self) {
        if let Some(pair) = self.pair.take() {
            self.home.keep(pair, Instant::now());
        }
    }
}

impl Spares {
    fn keep(&self, pair: Pair, now: Instant) {
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Full: this pair is closed (dropped after the lock), the older ones stay.
        if q.len() < self.cap {
            q.push_back(Spare { pair, freed: now });
        }
    }

    /// The oldest spare, once its quarantine is over (or at once when `any`: nothing else
    /// could be bound), with what it received while spare read and thrown away.
    fn take(&self, now: Instant, any: bool) -> Option<Pair> {
        let pair = {
            let mut q = self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let ripe = q
                .front()
                .is_some_and(|s| any || now.duration_since(s.freed) >= self.quarantine);
            if !ripe {
                return None;
            }
            q.pop_front()?.pair
        };
        let mut buf = [0u8; 2048];
        let mut drained = 0u64;
        for sock in [&pair.rtp, &pair.rtcp] {
            for _ in 0..DRAIN_MAX {
                match sock.try_recv_from(&mut buf) {
                    Ok(_) => drained += 1,
                    // WouldBlock: empty. Another error (an ICMP report of the old call's)
                    // is consumed by the read that met it: go on draining.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {}
                }
            }
        }
        self.reused.fetch_add(1, Ordering::Relaxed);
        self.drained.fetch_add(drained, Ordering::Relaxed);
        Some(pair)
    }
}

/// A non-blocking UDP socket bound to `addr`: created non-blocking and close-on-exec in the
/// one `socket` call (socket2), where `UdpSocket::bind` and then `set_nonblocking` take an
/// `ioctl` more.
fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

impl PortPool {
    pub fn new(ip: IpAddr, range: (u16, u16)) -> Self {
        Self::with_quarantine(ip, range, QUARANTINE)
    }

    pub fn with_quarantine(ip: IpAddr, (lo, hi): (u16, u16), quarantine: Duration) -> Self {
        let lo = lo + (lo % 2);
        let pairs = pairs_in((lo, hi)) as usize;
        Self {
            ip,
            lo,
            hi,
            cursor: AtomicU32::new(0),
            spares: Arc::new(Spares {
                queue: Mutex::new(VecDeque::new()),
                // Half the range at most, so that round-robin binding always has ports
                // to walk through.
                cap: MAX_SPARES.min(pairs / 2),
                quarantine,
                reused: AtomicU64::new(0),
                drained: AtomicU64::new(0),
            }),
        }
    }

    /// How many even/odd pairs fit in the range (its last pair included).
    pub fn pairs(&self) -> u32 {
        pairs_in((self.lo, self.hi))
    }

    /// Spare pairs resting now, pairs taken from the spares so far, and datagrams drained
    /// from them on the way.
    pub fn stats(&self) -> PortStats {
        PortStats {
            spare: self
                .spares
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len(),
            reused: self.spares.reused.load(Ordering::Relaxed),
            drained: self.spares.drained.load(Ordering::Relaxed),
        }
    }

    /// A pair for a new leg. Must run inside the runtime (the sockets are registered with
    /// its reactor).
    pub fn reserve(&self) -> Result<RtpReservation, PortError> {
        let now = Instant::now();
        let pair = match self.spares.take(now, false) {
            Some(p) => Some(p),
            // Every port is bound, some by spares still resting: one of those, its
            // quarantine cut short, is better than refusing the call.
            None => self.bind_next().or_else(|| self.spares.take(now, true)),
        };
        let Some(pair) = pair else {
            return Err(PortError::Exhausted {
                ip: self.ip,
                lo: self.lo,
                hi: self.hi,
            });
        };
        Ok(RtpReservation {
            port: pair.port,
            pair: Some(pair),
            home: self.spares.clone(),
        })
    }

    fn bind_next(&self) -> Option<Pair> {
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
            return Some(Pair { rtp, rtcp, port });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr_of(s: &UdpSocket) -> SocketAddr {
        s.local_addr().unwrap()
    }

    /// A block of `len` ports, its first even, that nothing holds now: each test its own,
    /// from 4800-5899. That is under the kernel's ephemeral range and outside the ports the
    /// integration tests (2000-4799, 10000 up) and the benches (5900 up) take: a fixed block
    /// at 41000 failed these tests while a soak's gateway held 40000-50999.
    fn free_block(len: u16) -> u16 {
        use std::sync::atomic::{AtomicU16, Ordering};
        static NEXT: AtomicU16 = AtomicU16::new(4800);
        loop {
            let lo = NEXT.fetch_add(len.next_multiple_of(2), Ordering::Relaxed);
            assert!(lo + len <= 5900, "no free block of {len} ports left");
            if (lo..lo + len).all(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
                return lo;
            }
        }
    }

    #[tokio::test]
    async fn reserves_even_ports_inside_the_range_and_skips_busy_ones() {
        let lo = free_block(12);
        let pool = PortPool::new("127.0.0.1".parse().unwrap(), (lo + 1, lo + 10));
        let a = pool.reserve().unwrap();
        let b = pool.reserve().unwrap();
        assert_eq!(a.port() % 2, 0);
        assert!((lo + 2..=lo + 10).contains(&a.port()));
        assert_ne!(a.port(), b.port());
        let (rtp, rtcp) = a.sockets().unwrap();
        assert_eq!(addr_of(rtp).port(), a.port());
        assert_eq!(addr_of(rtcp).port(), a.port() + 1);
        // Non-blocking from the start: a read with nothing queued returns at once.
        let mut buf = [0u8; 16];
        for s in [rtp, rtcp] {
            let e = s.try_recv_from(&mut buf).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        }
    }

    #[tokio::test]
    async fn the_last_pair_of_the_range_is_used() {
        // [lo, lo + 7]: four pairs, the last lo + 6 / lo + 7.
        let lo = free_block(8);
        let pool = PortPool::new("127.0.0.1".parse().unwrap(), (lo, lo + 7));
        assert_eq!(pool.pairs(), 4);
        let held: Vec<_> = std::iter::from_fn(|| pool.reserve().ok()).take(5).collect();
        let mut ports: Vec<u16> = held.iter().map(RtpReservation::port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [lo, lo + 2, lo + 4, lo + 6]);
        // An odd start loses its first port, not a pair past the end.
        assert_eq!(
            PortPool::new("127.0.0.1".parse().unwrap(), (41301, 41306)).pairs(),
            2
        );
    }

    #[tokio::test]
    async fn exhaustion_is_an_error_not_a_panic() {
        let lo = free_block(4);
        let pool = PortPool::new("127.0.0.1".parse().unwrap(), (lo, lo + 3));
        let held: Vec<_> = std::iter::from_fn(|| pool.reserve().ok())
            .take(10)
            .collect();
        assert!(!held.is_empty());
        assert!(matches!(pool.reserve(), Err(PortError::Exhausted { .. })));
    }

    /// A pair whose call ended rests, still bound, and is handed out again only after the
    /// quarantine, with what was sent to it meanwhile thrown away.
    #[tokio::test]
    async fn a_freed_pair_rests_then_returns_drained() {
        let ip = "127.0.0.1".parse().unwrap();
        let lo = free_block(20);
        let pool = PortPool::with_quarantine(ip, (lo, lo + 19), Duration::from_millis(200));
        let a = pool.reserve().unwrap();
        let port = a.port();
        let (rtp, rtcp) = (
            addr_of(a.sockets().unwrap().0),
            addr_of(a.sockets().unwrap().1),
        );
        drop(a);
        // Still bound while it rests: nobody else can take the port.
        assert!(std::net::UdpSocket::bind(rtp).is_err());
        // A late packet of the old call, to each socket.
        let old_peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        old_peer.send_to(b"late rtp", rtp).unwrap();
        old_peer.send_to(b"late rtcp", rtcp).unwrap();
        // During the quarantine a new call gets another port.
        let b = pool.reserve().unwrap();
        assert_ne!(b.port(), port);
        assert_eq!(pool.stats().spare, 1);
        assert_eq!(pool.stats().reused, 0);
        // After it, the rested pair, empty.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let c = pool.reserve().unwrap();
        assert_eq!(c.port(), port);
        let PortStats {
            spare,
            reused,
            drained,
        } = pool.stats();
        assert_eq!((spare, reused, drained), (0, 1, 2));
        let mut buf = [0u8; 16];
        for s in [c.sockets().unwrap().0, c.sockets().unwrap().1] {
            let e = s.try_recv_from(&mut buf).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        }
    }

    /// With every port bound, a resting spare is handed out rather than the call refused.
    #[tokio::test]
    async fn a_full_range_takes_a_resting_spare() {
        let ip = "127.0.0.1".parse().unwrap();
        let lo = free_block(8);
        let pool = PortPool::with_quarantine(ip, (lo, lo + 7), Duration::from_secs(3600));
        let mut held: Vec<_> = std::iter::from_fn(|| pool.reserve().ok()).take(4).collect();
        assert!(pool.reserve().is_err());
        let freed = held.pop().unwrap();
        let port = freed.port();
        drop(freed);
        assert_eq!(pool.reserve().unwrap().port(), port);
    }
}
