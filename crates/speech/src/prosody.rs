//! Prosody: how the caller says it. Per 20 ms frame: energy, voicing and pitch (YIN on the
//! frame decimated to 8 kHz, 40 ms window). Per utterance: pitch mean and range, loudness,
//! speaking rate (syllable nuclei per second from the voiced energy contour). Against the
//! caller's own baseline (their first utterances): an arousal score in [0, 1] with the
//! features that raised it, so a trigger can cite its evidence.

use serde::Serialize;

const RATE: f32 = 16_000.0;
const FRAME: usize = 320; // 20 ms at 16 kHz
const DEC: usize = 2; // pitch runs at 8 kHz
const MIN_HZ: f32 = 60.0;
const MAX_HZ: f32 = 400.0;
const YIN_THRESHOLD: f32 = 0.15;
/// Frames quieter than this are silence, whatever YIN says.
const SILENCE_DB: f32 = -50.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameFeatures {
    /// RMS level in dBFS.
    pub energy_db: f32,
    pub voiced: bool,
    pub pitch_hz: Option<f32>,
}

/// Per-frame analysis with the previous frame kept for the 40 ms pitch window.
#[derive(Debug, Clone)]
pub struct FrameAnalyzer {
    window: Vec<f32>,
    diff: Vec<f32>,
}

impl Default for FrameAnalyzer {
    fn default() -> Self {
        Self {
            window: vec![0.0; 2 * FRAME / DEC],
            diff: vec![0.0; (RATE / DEC as f32 / MIN_HZ) as usize + 2],
        }
    }
}

impl FrameAnalyzer {
    /// One 20 ms frame at 16 kHz.
    pub fn frame(&mut self, pcm: &[i16]) -> FrameFeatures {
        let energy =
            pcm.iter().map(|&s| f32::from(s).powi(2)).sum::<f32>() / pcm.len().max(1) as f32;
        let energy_db = 10.0 * (energy.max(1.0) / (32768.0f32 * 32768.0)).log10();
        // Slide the window and append this frame decimated by two (pairs averaged: a crude
        // low-pass that is enough below 400 Hz).
        let half = FRAME / DEC;
        self.window.copy_within(half.., 0);
        for (i, pair) in pcm.chunks(DEC).take(half).enumerate() {
            let v = pair.iter().map(|&s| f32::from(s)).sum::<f32>() / pair.len() as f32;
            self.window[half + i] = v;
        }
        if energy_db < SILENCE_DB {
            return FrameFeatures {
                energy_db,
                voiced: false,
                pitch_hz: None,
            };
        }
        let pitch_hz = self.yin();
        FrameFeatures {
            energy_db,
            voiced: pitch_hz.is_some(),
            pitch_hz,
        }
    }

    /// YIN (de Cheveigné & Kawahara 2002): cumulative-mean-normalised difference, first
    /// dip under the threshold, parabolic interpolation.
    fn yin(&mut self) -> Option<f32> {
        let sr = RATE / DEC as f32;
        let tau_min = (sr / MAX_HZ) as usize;
        let tau_max = ((sr / MIN_HZ) as usize).min(self.window.len() / 2);
        let w = self.window.len() - tau_max;
        let x = &self.window;
        self.diff[0] = 1.0;
        let mut running = 0.0;
        for tau in 1..=tau_max {
            let mut d = 0.0;
            for j in 0..w {
                let delta = x[j] - x[j + tau];
                d += delta * delta;
            }
            running += d;
            self.diff[tau] = if running > 0.0 {
                d * tau as f32 / running
            } else {
                1.0
            };
        }
        let mut tau = tau_min;
        while tau < tau_max {
            if self.diff[tau] < YIN_THRESHOLD {
                while tau + 1 < tau_max && self.diff[tau + 1] < self.diff[tau] {
                    tau += 1;
                }
                let (a, b, c) = (self.diff[tau - 1], self.diff[tau], self.diff[tau + 1]);
                let denom = a + c - 2.0 * b;
                let shift = if denom.abs() > 1e-9 {
                    0.5 * (a - c) / denom
                } else {
                    0.0
                };
                return Some(sr / (tau as f32 + shift.clamp(-1.0, 1.0)));
            }
            tau += 1;
        }
        None
    }
}

/// What one utterance sounded like.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UtteranceProsody {
    pub duration_s: f32,
    pub voiced_ratio: f32,
    pub pitch_mean_hz: f32,
    /// 10th to 90th percentile of voiced pitch, in semitones.
    pub pitch_range_st: f32,
    /// Mean level of voiced frames, dBFS.
    pub loudness_db: f32,
    /// Syllable nuclei per second of speech.
    pub rate_sps: f32,
}

/// Summarise an utterance's frames. `None` when too little of it was voiced to judge.
pub fn summarize(frames: &[FrameFeatures]) -> Option<UtteranceProsody> {
    let voiced: Vec<&FrameFeatures> = frames.iter().filter(|f| f.voiced).collect();
    if voiced.len() < 10 {
        return None;
    }
    let mut pitches: Vec<f32> = voiced.iter().filter_map(|f| f.pitch_hz).collect();
    pitches.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f32| pitches[((pitches.len() - 1) as f32 * p) as usize];
    // The median is robust to YIN's octave errors; the mean of the middle half likewise.
    let mid = &pitches[pitches.len() / 4..pitches.len() * 3 / 4 + 1];
    let pitch_mean_hz = mid.iter().sum::<f32>() / mid.len() as f32;
    let pitch_range_st = 12.0 * (pct(0.9) / pct(0.1)).log2();
    let loudness_db = voiced.iter().map(|f| f.energy_db).sum::<f32>() / voiced.len() as f32;
    // Syllable nuclei: peaks of the smoothed energy contour over voiced frames, at least
    // 2 dB above the dips around them and 80 ms apart (de Jong & Wempe, simplified).
    let smooth: Vec<f32> = (0..frames.len())
        .map(|i| {
            let lo = i.saturating_sub(1);
            let hi = (i + 2).min(frames.len());
            frames[lo..hi].iter().map(|f| f.energy_db).sum::<f32>() / (hi - lo) as f32
        })
        .collect();
    let mut nuclei = 0;
    let mut last_peak: Option<usize> = None;
    let mut valley = f32::MAX;
    for i in 1..smooth.len().saturating_sub(1) {
        valley = valley.min(smooth[i]);
        let peak = smooth[i] >= smooth[i - 1] && smooth[i] > smooth[i + 1];
        if peak
            && frames[i].voiced
            && smooth[i] - valley >= 2.0
            && last_peak.is_none_or(|p| i - p >= 4)
        {
            nuclei += 1;
            last_peak = Some(i);
            valley = smooth[i];
        }
    }
    let speech_s = voiced.len() as f32 * 0.02;
    Some(UtteranceProsody {
        duration_s: frames.len() as f32 * 0.02,
        voiced_ratio: voiced.len() as f32 / frames.len() as f32,
        pitch_mean_hz,
        pitch_range_st,
        loudness_db,
        rate_sps: nuclei as f32 / speech_s.max(0.2),
    })
}

/// One feature's contribution to a score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub feature: &'static str,
    /// Difference from the caller's baseline, in the feature's unit.
    pub delta: f32,
    pub unit: &'static str,
    /// Share of the score's logit.
    pub weight: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArousalScore {
    /// 0 = calm (the caller's own baseline), 1 = highly aroused.
    pub score: f32,
    pub evidence: Vec<Evidence>,
    /// Utterances the baseline was built from.
    pub baseline_utterances: usize,
}

/// The caller's baseline and the scoring against it.
#[derive(Debug, Clone, Default)]
pub struct ProsodyScorer {
    baseline: Vec<UtteranceProsody>,
    want: usize,
}

impl ProsodyScorer {
    /// Build the baseline from the first `baseline_utterances` judged utterances.
    pub fn new(baseline_utterances: usize) -> Self {
        Self {
            baseline: Vec::new(),
            want: baseline_utterances.max(1),
        }
    }

    pub fn has_baseline(&self) -> bool {
        self.baseline.len() >= self.want
    }

    /// Score an utterance; it joins the baseline while the baseline is being built (and
    /// scores against what there is so far).
    pub fn score(&mut self, u: &UtteranceProsody) -> ArousalScore {
        if !self.has_baseline() {
            self.baseline.push(*u);
        }
        let n = self.baseline.len() as f32;
        let mean = |f: fn(&UtteranceProsody) -> f32| self.baseline.iter().map(f).sum::<f32>() / n;
        let b_pitch = mean(|b| b.pitch_mean_hz);
        let b_range = mean(|b| b.pitch_range_st);
        let b_loud = mean(|b| b.loudness_db);
        let b_rate = mean(|b| b.rate_sps);
        let pitch_st = 12.0 * (u.pitch_mean_hz / b_pitch.max(1.0)).log2();
        let range_st = u.pitch_range_st - b_range;
        let loud_db = u.loudness_db - b_loud;
        let rate_pct = 100.0 * (u.rate_sps / b_rate.max(0.1) - 1.0);
        // Weights per unit: a semitone of pitch, a semitone of range, a dB, a percent of
        // rate. Raised pitch and loudness carry arousal most reliably (Banse & Scherer 1996).
        let parts = [
            ("pitch", pitch_st, "semitones", 0.45),
            ("pitch_range", range_st, "semitones", 0.10),
            ("loudness", loud_db, "dB", 0.30),
            ("speaking_rate", rate_pct, "%", 0.02),
        ];
        let mut logit = -2.0f32;
        let mut evidence = Vec::new();
        for (feature, delta, unit, w) in parts {
            let c = (delta * w).clamp(-2.0, 3.0);
            logit += c;
            if c > 0.1 {
                evidence.push(Evidence {
                    feature,
                    delta,
                    unit,
                    weight: c,
                });
            }
        }
        evidence.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        ArousalScore {
            score: 1.0 / (1.0 + (-logit).exp()),
            evidence,
            baseline_utterances: self.baseline.len(),
        }
    }
}

/// The score above which the policy's default `prosody` rule treats a caller as agitated.
pub const DEFAULT_AROUSAL_THRESHOLD: f32 = 0.6;

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, amp: f32, frames: usize) -> Vec<Vec<i16>> {
        (0..frames)
            .map(|f| {
                (0..FRAME)
                    .map(|i| {
                        let t = (f * FRAME + i) as f32 / RATE;
                        (amp * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn yin_finds_the_pitch_of_a_voice_band_tone() {
        for hz in [90.0, 150.0, 220.0, 310.0] {
            let mut a = FrameAnalyzer::default();
            let mut last = None;
            for f in tone(hz, 8000.0, 5) {
                last = a.frame(&f).pitch_hz;
            }
            let got = last.unwrap();
            assert!((got - hz).abs() / hz < 0.03, "{hz} Hz -> {got}");
        }
    }

    #[test]
    fn silence_is_unvoiced() {
        let mut a = FrameAnalyzer::default();
        let f = a.frame(&[0; FRAME]);
        assert!(!f.voiced);
        assert!(f.energy_db < -80.0);
    }

    #[test]
    fn higher_and_louder_scores_higher_against_the_baseline() {
        let mut s = ProsodyScorer::new(1);
        let calm = UtteranceProsody {
            duration_s: 2.0,
            voiced_ratio: 0.6,
            pitch_mean_hz: 120.0,
            pitch_range_st: 4.0,
            loudness_db: -26.0,
            rate_sps: 4.0,
        };
        let base = s.score(&calm);
        assert!(base.score < 0.2);
        let hot = UtteranceProsody {
            pitch_mean_hz: 160.0,
            loudness_db: -20.0,
            rate_sps: 5.0,
            ..calm
        };
        let r = s.score(&hot);
        assert!(r.score > DEFAULT_AROUSAL_THRESHOLD, "{r:?}");
        assert_eq!(r.evidence[0].feature, "pitch");
    }
}
