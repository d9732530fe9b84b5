//! Per-source rate limiting of SIP requests, in the spirit of Kamailio's `pike`: each
//! source address has a token bucket; a source that empties it is banned for a while and
//! its requests are dropped (counted), while everyone else is served. Sans-IO: told the
//! time.
//!
//! The table is bounded: past [`MAX_SOURCES`] entries, the idle ones (full buckets, no
//! ban) are forgotten, so a flood from many addresses cannot grow it without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked at once before idle ones are swept.
pub const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PikeSettings {
    /// Sustained requests per second one source may send; 0 turns the limit off.
    pub requests_per_s: f64,
    /// How many it may send at once above that.
    pub burst: f64,
    /// How long a source that went over is ignored.
    pub ban: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PikeVerdict {
    Pass,
    /// Dropped; `banned_now` on the request that started the ban (log it once).
    Drop {
        banned_now: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    banned_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Pike {
    settings: PikeSettings,
    sources: HashMap<IpAddr, Bucket>,
}

impl Pike {
    pub fn new(settings: PikeSettings) -> Self {
        Self {
            settings,
            sources: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.requests_per_s > 0.0
    }

    /// One request from `ip` at `now`.
    pub fn check(&mut self, now: Instant, ip: IpAddr) -> PikeVerdict {
        if !self.enabled() {
            return PikeVerdict::Pass;
        }
        let s = self.settings;
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&ip) {
            self.sweep(now);
        }
        let b = self.sources.entry(ip.to_canonical()).or_insert(Bucket {
            tokens: s.burst,
            at: now,
            banned_until: None,
        });
        if let Some(until) = b.banned_until {
            if now < until {
                return PikeVerdict::Drop { banned_now: false };
            }
            // The ban is over: a fresh start.
            *b = Bucket {
                tokens: s.burst,
                at: now,
                banned_until: None,
            };
        }
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * s.requests_per_s).min(s.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return PikeVerdict::Pass;
        }
        b.banned_until = Some(now + s.ban);
        PikeVerdict::Drop { banned_now: true }
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Forget sources that are idle: not banned, and with a bucket that has refilled.
    fn sweep(&mut self, now: Instant) {
        let s = self.settings;
        self.sources.retain(|_, b| {
            let banned = b.banned_until.is_some_and(|u| now < u);
            let refilled = b.tokens
                + now.saturating_duration_since(b.at).as_secs_f64() * s.requests_per_s
                >= s.burst;
            banned || !refilled
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pike() -> Pike {
        Pike::new(PikeSettings {
            requests_per_s: 10.0,
            burst: 20.0,
            ban: Duration::from_secs(5),
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_source_over_its_rate_is_banned_for_a_while_and_others_are_served() {
        let mut p = pike();
        let t0 = Instant::now();
        // The burst passes at once...
        for _ in 0..20 {
            assert_eq!(p.check(t0, ip(1)), PikeVerdict::Pass);
        }
        // ...the next request starts the ban, reported once.
        assert_eq!(p.check(t0, ip(1)), PikeVerdict::Drop { banned_now: true });
        assert_eq!(p.check(t0, ip(1)), PikeVerdict::Drop { banned_now: false });
        // Another source is not affected.
        assert_eq!(p.check(t0, ip(2)), PikeVerdict::Pass);
        // Still banned just before the end, even after going quiet.
        let t = t0 + Duration::from_millis(4999);
        assert_eq!(p.check(t, ip(1)), PikeVerdict::Drop { banned_now: false });
        // Then served again, with a full burst.
        let t = t0 + Duration::from_secs(5);
        for _ in 0..20 {
            assert_eq!(p.check(t, ip(1)), PikeVerdict::Pass);
        }
    }

    #[test]
    fn a_source_at_its_sustained_rate_is_never_banned() {
        let mut p = pike();
        let t0 = Instant::now();
        for i in 0..1000u64 {
            // 10 per second, evenly.
            let t = t0 + Duration::from_millis(i * 100);
            assert_eq!(p.check(t, ip(3)), PikeVerdict::Pass, "request {i}");
        }
    }

    #[test]
    fn off_means_off_and_the_table_stays_bounded() {
        let mut off = Pike::new(PikeSettings {
            requests_per_s: 0.0,
            burst: 0.0,
            ban: Duration::ZERO,
        });
        assert_eq!(off.check(Instant::now(), ip(1)), PikeVerdict::Pass);
        assert_eq!(off.sources(), 0);
        let mut p = pike();
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10_000) {
            let a = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            // One request each, a second apart in effect: all idle by the next sweep.
            p.check(t0 + Duration::from_secs(u64::from(i) * 3), a);
        }
        assert!(p.sources() <= MAX_SOURCES, "{}", p.sources());
    }
}
