//! Adaptive jitter buffer for legs whose audio is decoded (speech tap, recording,
//! transcoding bridge). A same-codec relay never goes through it.
//!
//! Packets are keyed by their extended RTP timestamp and played one 20 ms frame per
//! [`JitterBuffer::pop`]. Playout starts `target` after the first packet; an underrun
//! stalls playout (the delay grows by what the network took), a buffer that stays deeper
//! than needed drops a frame (the delay shrinks), never outside `[min, max]`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct JitterSettings {
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for JitterSettings {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// What one 20 ms tick of playout yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop {
    Frame(Vec<u8>),
    /// A frame is missing but later ones are here: conceal it.
    Conceal,
    /// Not started, underrun, or between talk spurts.
    Nothing,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct JitterStats {
    pub played: u64,
    pub concealed: u64,
    pub late: u64,
    pub resyncs: u64,
    pub shrinks: u64,
    pub underruns: u64,
    /// Current playout delay, in ms.
    pub delay_ms: u32,
}

#[derive(Debug)]
pub struct JitterBuffer {
    rate: u32,
    frame: u64,
    min: u64,
    max: u64,
    packets: BTreeMap<u64, Vec<u8>>,
    last_ext: Option<u64>,
    next: Option<u64>,
    start_at: Option<Instant>,
    /// Pops in a row where the buffer held more than the target needs.
    deep_pops: u32,
    epoch: Option<Instant>,
    prev_transit: Option<i64>,
    /// RFC 3550 interarrival jitter, in samples.
    jitter: f64,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(rate: u32, settings: JitterSettings) -> Self {
        let to_samples = |d: Duration| d.as_millis() as u64 * u64::from(rate) / 1000;
        let frame = u64::from(rate) / 50;
        Self {
            rate,
            frame,
            min: to_samples(settings.min_delay).max(frame),
            max: to_samples(settings.max_delay).max(2 * frame),
            packets: BTreeMap::new(),
            last_ext: None,
            next: None,
            start_at: None,
            deep_pops: 0,
            epoch: None,
            prev_transit: None,
            jitter: 0.0,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.delay_ms = (self.target() * 1000 / u64::from(self.rate)) as u32;
        s
    }

    /// Playout has begun (so a missing frame now is an underrun, not initial buffering).
    pub fn has_played(&self) -> bool {
        self.stats.played > 0
    }

    /// Interarrival jitter in samples (RFC 3550 §6.4.1).
    pub fn jitter_samples(&self) -> u32 {
        self.jitter as u32
    }

    /// The delay the measured jitter asks for: a frame plus four jitters, in bounds.
    fn target(&self) -> u64 {
        (self.frame + 4 * self.jitter as u64).clamp(self.min, self.max)
    }

    fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last_ext {
            None => u64::from(ts) + (1 << 32),
            Some(last) => {
                let base = last & !0xffff_ffff;
                let candidates = [
                    base.wrapping_sub(1 << 32) | u64::from(ts),
                    base | u64::from(ts),
                    (base + (1 << 32)) | u64::from(ts),
                ];
                candidates
                    .into_iter()
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(base | u64::from(ts))
            }
        };
        if self.last_ext.is_none_or(|l| ext > l) {
            self.last_ext = Some(ext);
        }
        ext
    }

    pub fn insert(&mut self, now: Instant, ts: u32, payload: &[u8]) {
        let ext = self.extend(ts);
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = (now.duration_since(epoch).as_micros() as u64 * u64::from(self.rate)
            / 1_000_000) as i64;
        let transit = arrival - ext as i64;
        if let Some(prev) = self.prev_transit {
            let d = (transit - prev).abs() as f64;
            // A timeline jump is not jitter.
            if d < f64::from(self.rate) {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.prev_transit = Some(transit);

        if let Some(next) = self.next {
            // A jump of more than two seconds either way is a new timeline (a source
            // switch upstream, or a sender restart), not jitter.
            if ext.abs_diff(next) > 2 * u64::from(self.rate) {
                self.resync();
            } else if ext < next {
                self.stats.late += 1;
                return;
            }
        }
        self.packets.insert(ext, payload.to_vec());
        if self.packets.len() > 64 {
            self.packets.pop_first();
        }
        match self.next {
            None => {
                self.next = Some(ext);
                self.start_at =
                    Some(now + Duration::from_millis(self.target() * 1000 / u64::from(self.rate)));
            }
            // Reordered first packets: start from the earliest.
            Some(n) if ext < n && self.start_at.is_some_and(|s| now < s) => self.next = Some(ext),
            Some(_) => {}
        }
    }

    fn resync(&mut self) {
        self.packets.clear();
        self.next = None;
        self.start_at = None;
        self.prev_transit = None;
        self.deep_pops = 0;
        self.stats.resyncs += 1;
    }

    pub fn pop(&mut self, now: Instant) -> Pop {
        let (Some(next), Some(start)) = (self.next, self.start_at) else {
            return Pop::Nothing;
        };
        if now < start {
            return Pop::Nothing;
        }
        let Some((&first, _)) = self.packets.first_key_value() else {
            self.stats.underruns += 1;
            return Pop::Nothing;
        };
        // Shrink: held deeper than the target for a second, drop one frame.
        let depth = self.last_ext.unwrap_or(first).saturating_sub(next);
        if depth > self.target() + 2 * self.frame {
            self.deep_pops += 1;
            if self.deep_pops >= 50 {
                self.deep_pops = 0;
                self.stats.shrinks += 1;
                self.packets.remove(&next);
                self.next = Some(next + self.frame);
                return self.pop(now);
            }
        } else {
            self.deep_pops = 0;
        }
        if first <= next {
            let payload = self.packets.remove(&first).unwrap_or_default();
            self.next = Some(first + self.frame);
            self.stats.played += 1;
            return Pop::Frame(payload);
        }
        if first - next > 3 * self.frame {
            // A silence gap (DTX, talk-spurt boundary): jump to the next spurt.
            self.next = Some(first);
            self.stats.resyncs += 1;
            return self.pop(now);
        }
        self.next = Some(next + self.frame);
        self.stats.concealed += 1;
        Pop::Conceal
    }
}
