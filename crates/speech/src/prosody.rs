//! Prosody: how the caller says it. Per 20 ms frame: energy, voicing and pitch (YIN on the
//! frame decimated to 8 kHz, 40 ms window). Per utterance: pitch mean and range, loudness,
//! speaking rate (syllable nuclei per second from the voiced energy contour). Against the
//! caller's own baseline (their first calm utterances, blended with a population prior,
//! so that a caller agitated from the start is not measured against their own
//! agitation): an arousal score in [0, 1] with the features that raised it, so a trigger
//! can cite its evidence.

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

/// What a calm caller sounds like on the phone before we have heard them: the reference
/// for their first turns, blended away as their own calm turns arrive. Measured on
/// espeak-ng's voices through an 8 kHz G.711 round trip (calm: 100–106 Hz male, 179–195 Hz
/// female, −19 to −23 dBFS; agitated `-p 80 -a 200`: +5 semitones, +5.5 dB).
pub const PRIOR_MALE_HZ: f32 = 110.0;
pub const PRIOR_FEMALE_HZ: f32 = 205.0;
/// Below this a voice is judged against the lower prior.
const PRIOR_SPLIT_HZ: f32 = 165.0;
pub const PRIOR_LOUDNESS_DB: f32 = -21.0;
pub const PRIOR_RANGE_ST: f32 = 3.0;
/// Syllable nuclei per second as `summarize` counts them on calm speech.
pub const PRIOR_RATE_SPS: f32 = 8.5;
/// A turn scoring at or above this is not calm and never joins the baseline, so a caller
/// agitated from their first words is measured against the prior, not against themselves.
pub const ADAPT_GATE: f32 = 0.5;

/// The caller's baseline and the scoring against it.
#[derive(Debug, Clone, Default)]
pub struct ProsodyScorer {
    /// The caller's calm turns (those that scored under [`ADAPT_GATE`]).
    calm: Vec<UtteranceProsody>,
    want: usize,
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl ProsodyScorer {
    /// The baseline adapts to the caller's first `baseline_utterances` calm turns.
    pub fn new(baseline_utterances: usize) -> Self {
        Self {
            calm: Vec::new(),
            want: baseline_utterances.max(1),
        }
    }

    pub fn has_baseline(&self) -> bool {
        self.calm.len() >= self.want
    }

    /// The reference a turn is scored against: the population prior (one pseudo-turn)
    /// blended with the median of the caller's calm turns, feature by feature.
    fn reference(&self, u: &UtteranceProsody) -> UtteranceProsody {
        let own_pitch = if self.calm.is_empty() {
            u.pitch_mean_hz
        } else {
            median(self.calm.iter().map(|c| c.pitch_mean_hz).collect())
        };
        let prior_pitch = if own_pitch < PRIOR_SPLIT_HZ {
            PRIOR_MALE_HZ
        } else {
            PRIOR_FEMALE_HZ
        };
        let n = self.calm.len() as f32;
        let blend = |prior: f32, f: fn(&UtteranceProsody) -> f32| {
            if self.calm.is_empty() {
                prior
            } else {
                let own = median(self.calm.iter().map(f).collect());
                (prior + n * own) / (n + 1.0)
            }
        };
        UtteranceProsody {
            duration_s: u.duration_s,
            voiced_ratio: u.voiced_ratio,
            pitch_mean_hz: blend(prior_pitch, |b| b.pitch_mean_hz),
            pitch_range_st: blend(PRIOR_RANGE_ST, |b| b.pitch_range_st),
            loudness_db: blend(PRIOR_LOUDNESS_DB, |b| b.loudness_db),
            rate_sps: blend(PRIOR_RATE_SPS, |b| b.rate_sps),
        }
    }

    /// Score an utterance against the reference; a calm one then joins the baseline
    /// (until it holds `baseline_utterances` turns).
    pub fn score(&mut self, u: &UtteranceProsody) -> ArousalScore {
        let b = self.reference(u);
        let pitch_st = 12.0 * (u.pitch_mean_hz / b.pitch_mean_hz.max(1.0)).log2();
        let range_st = u.pitch_range_st - b.pitch_range_st;
        let loud_db = u.loudness_db - b.loudness_db;
        let rate_pct = 100.0 * (u.rate_sps / b.rate_sps.max(0.1) - 1.0);
        // Weights per unit: a semitone of pitch, a semitone of range, a dB, a percent of
        // rate. Raised pitch and loudness carry arousal most reliably (Banse & Scherer 1996);
        // over the phone loudness less so (agitated turns measured +1 to +3 dB after the
        // line's gain, against +4.5 semitones of pitch), hence pitch's weight.
        let parts = [
            ("pitch", pitch_st, "semitones", 0.55),
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
        let score = 1.0 / (1.0 + (-logit).exp());
        if score < ADAPT_GATE && !self.has_baseline() {
            self.calm.push(*u);
        }
        ArousalScore {
            score,
            evidence,
            baseline_utterances: self.calm.len(),
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
            pitch_mean_hz: 110.0,
            pitch_range_st: 3.0,
            loudness_db: -22.0,
            rate_sps: 8.0,
        };
        let base = s.score(&calm);
        assert!(base.score < 0.2, "{base:?}");
        let hot = UtteranceProsody {
            pitch_mean_hz: 150.0,
            loudness_db: -17.0,
            rate_sps: 10.0,
            ..calm
        };
        let r = s.score(&hot);
        assert!(r.score > DEFAULT_AROUSAL_THRESHOLD, "{r:?}");
        assert_eq!(r.evidence[0].feature, "pitch");
    }

    fn espeak_like(pitch: f32, loud: f32) -> UtteranceProsody {
        UtteranceProsody {
            duration_s: 3.0,
            voiced_ratio: 0.6,
            pitch_mean_hz: pitch,
            pitch_range_st: 2.5,
            loudness_db: loud,
            rate_sps: 9.0,
        }
    }

    #[test]
    fn agitated_from_the_first_turn_is_not_its_own_baseline() {
        // espeak-ng -p 80 -a 200 through G.711: 138 Hz, −15.5 dBFS (male); 263 Hz (female).
        for hot in [espeak_like(138.0, -15.5), espeak_like(262.0, -15.8)] {
            let mut s = ProsodyScorer::new(2);
            for turn in 0..3 {
                let r = s.score(&hot);
                assert!(r.score > DEFAULT_AROUSAL_THRESHOLD, "turn {turn}: {r:?}");
                assert_eq!(
                    r.baseline_utterances, 0,
                    "agitation never joins the baseline"
                );
            }
        }
    }

    #[test]
    fn calm_voices_stay_calm_and_agitation_after_them_stands_out() {
        for (calm, hot) in [
            (espeak_like(102.0, -21.4), espeak_like(137.0, -15.4)),
            (espeak_like(195.0, -21.5), espeak_like(262.0, -15.8)),
            (espeak_like(179.0, -22.7), espeak_like(247.0, -17.5)),
        ] {
            let mut s = ProsodyScorer::new(2);
            for _ in 0..2 {
                let r = s.score(&calm);
                assert!(r.score < 0.35, "calm scored {r:?}");
            }
            let r = s.score(&hot);
            assert!(r.score > DEFAULT_AROUSAL_THRESHOLD, "{r:?}");
        }
        // A lively but calm voice: wide pitch range, quick, at an ordinary level.
        let lively = UtteranceProsody {
            pitch_range_st: 7.0,
            rate_sps: 11.0,
            ..espeak_like(115.0, -21.0)
        };
        let mut s = ProsodyScorer::new(2);
        for _ in 0..3 {
            let r = s.score(&lively);
            assert!(r.score < DEFAULT_AROUSAL_THRESHOLD, "lively scored {r:?}");
        }
    }
}
