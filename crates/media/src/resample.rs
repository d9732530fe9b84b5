//! Streaming rational-ratio resampler (8/16/48 kHz on the media path, any rate for prompt
//! files): polyphase windowed-sinc FIR with per-phase coefficients computed once.
//!
//! Written here rather than taken from a crate because the media path needs exactly this
//! shape: fixed 20 ms chunks, integer ratios, no allocation per frame, state carried across
//! frames so there are no clicks at frame edges.
//!
//! Filters are designed once per rate pair for the whole process and shared: designing one
//! takes thousands of `sin`/`cos` calls (22.05 → 8 kHz: 160 phases of 46 taps, 29 KB), which
//! every call used to pay when it started playing a prompt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One direction of rate conversion, with its filter history.
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    l: u64,
    m: u64,
    taps: usize,
    /// `l` phases × `taps` coefficients, shared by every resampler of this rate pair.
    coeffs: Arc<[f32]>,
    /// Input samples from absolute index `start` on.
    buf: Vec<f32>,
    start: u64,
    received: u64,
    produced: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The polyphase filter for `l`/`m`, designed on first use and kept: the rates a gateway
/// meets are few (8, 16, 48 kHz and a prompt file's own).
fn filter(l: u64, m: u64) -> Arc<[f32]> {
    type Filters = Mutex<HashMap<(u64, u64), Arc<[f32]>>>;
    static FILTERS: OnceLock<Filters> = OnceLock::new();
    let filters = FILTERS.get_or_init(Mutex::default);
    if let Some(f) = filters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(l, m))
    {
        return f.clone();
    }
    let designed = design(l, m);
    filters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((l, m))
        .or_insert(designed)
        .clone()
}

fn design(l: u64, m: u64) -> Arc<[f32]> {
    // Down-sampling needs a filter that spans `m` input samples per output zero crossing.
    let ratio = (m as f64 / l as f64).max(1.0);
    let taps = ((16.0 * ratio).ceil() as usize).next_multiple_of(2).max(8);
    let fc = 0.5 * 0.92 / ratio; // cycles per input sample
    let mut coeffs = Vec::with_capacity(l as usize * taps);
    let half = taps as f64 / 2.0;
    for phase in 0..l {
        let frac = phase as f64 / l as f64;
        let row_start = coeffs.len();
        let mut sum = 0.0;
        for j in 0..taps {
            let x = frac + half - 1.0 - j as f64;
            let sinc = if x.abs() < 1e-9 {
                1.0
            } else {
                let a = std::f64::consts::PI * 2.0 * fc * x;
                a.sin() / a
            };
            // Blackman window over [-half, half].
            let w = 0.42
                + 0.5 * (std::f64::consts::PI * x / half).cos()
                + 0.08 * (2.0 * std::f64::consts::PI * x / half).cos();
            let h = 2.0 * fc * sinc * w.max(0.0);
            sum += h;
            coeffs.push(h as f32);
        }
        // Unity DC gain in every phase.
        if sum.abs() > 1e-12 {
            for c in &mut coeffs[row_start..] {
                *c = (f64::from(*c) / sum) as f32;
            }
        }
    }
    coeffs.into()
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Self {
        let g = gcd(u64::from(from), u64::from(to)).max(1);
        // A zero rate is refused where rates are read (WAV headers, SDP); kept finite here.
        let l = (u64::from(to) / g).max(1);
        let m = (u64::from(from) / g).max(1);
        let coeffs = filter(l, m);
        let taps = coeffs.len() / l as usize;
        Self {
            from,
            to,
            l,
            m,
            taps,
            coeffs,
            // Half a filter of silence before the stream, so output 0 is centred on input 0
            // (no group delay; the latency is the half filter the next output waits for).
            buf: vec![0.0; taps / 2],
            start: 0,
            received: taps as u64 / 2,
            produced: 0,
        }
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    pub fn is_passthrough(&self) -> bool {
        self.from == self.to
    }

    /// Feed `input`, append every output sample it completes to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.is_passthrough() {
            out.extend_from_slice(input);
            return;
        }
        self.buf.extend(input.iter().map(|&s| f32::from(s)));
        self.received += input.len() as u64;
        loop {
            let pos = self.produced * self.m;
            let phase = (pos % self.l) as usize;
            // Absolute index, counting the leading half filter of zeros.
            let first = pos / self.l + 1;
            if first + self.taps as u64 > self.received {
                break;
            }
            let at = (first - self.start) as usize;
            let window = &self.buf[at..at + self.taps];
            let row = &self.coeffs[phase * self.taps..(phase + 1) * self.taps];
            let acc: f32 = window.iter().zip(row).map(|(x, c)| x * c).sum();
            out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
            self.produced += 1;
        }
        // Drop what no future output can reach.
        let next_first = (self.produced * self.m) / self.l + 1;
        if next_first > self.start {
            let drop = ((next_first - self.start) as usize).min(self.buf.len());
            self.buf.drain(..drop);
            self.start += drop as u64;
        }
    }

    /// Convert a whole clip at once (prompt files), flushing the filter's tail.
    pub fn convert(from: u32, to: u32, input: &[i16]) -> Vec<i16> {
        if from == to {
            return input.to_vec();
        }
        let mut r = Resampler::new(from, to);
        let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
        let mut out = Vec::with_capacity(expected + r.taps);
        r.process(input, &mut out);
        r.process(&vec![0; r.taps], &mut out);
        out.truncate(expected);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (10000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn streaming_output_length_tracks_the_ratio() {
        for (from, to) in [(8000, 16000), (48000, 16000), (16000, 8000), (8000, 48000)] {
            let mut r = Resampler::new(from, to);
            let mut out = Vec::new();
            let frame = (from / 50) as usize;
            for _ in 0..100 {
                r.process(&vec![0; frame], &mut out);
            }
            let expected = (to / 50 * 100) as i64;
            // Only the filter's latency is missing.
            assert!(
                (out.len() as i64 - expected).abs() <= r.taps as i64 * 6,
                "{from}->{to}"
            );
        }
    }

    #[test]
    fn passband_tone_keeps_its_level_and_stopband_is_removed() {
        // 1 kHz survives 48k -> 8k; 6 kHz (above 4 kHz Nyquist) must not alias in.
        let keep = Resampler::convert(48000, 8000, &tone(48000, 1000.0, 48000));
        let kill = Resampler::convert(48000, 8000, &tone(48000, 6000.0, 48000));
        let level = rms(&keep[800..7200]);
        assert!((level - 7071.0).abs() < 300.0, "passband rms {level}");
        assert!(
            rms(&kill[800..7200]) < 150.0,
            "alias rms {}",
            rms(&kill[800..7200])
        );
    }

    #[test]
    fn odd_rates_convert_without_drift() {
        let out = Resampler::convert(22050, 8000, &tone(22050, 500.0, 22050));
        assert_eq!(out.len(), 8000);
        assert!((rms(&out[400..7600]) - 7071.0).abs() < 300.0);
    }
}
