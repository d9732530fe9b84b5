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
