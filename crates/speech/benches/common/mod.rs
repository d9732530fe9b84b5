//! What the speech benches share: telephone-band test speech and the models to measure.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use warmline_media::resample::Resampler;
use warmline_speech::{ggml, tts};

pub const VOICES: &[&str] = &[
    "en-us",
    "en",
    "en+m3",
    "en+f2",
    "en-us+klatt2",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029",
    "en-us+f3",
    "en+m7",
    "en-us-nyc",
    "en+f4",
];

/// The same speech without the telephone: espeak-ng's own rate straight to 16 kHz. Only a
/// reference, to tell what the phone's 4 kHz band costs from what the model cannot hear.
pub fn wideband(text: &str, voice: &str, agitated: bool) -> Vec<i16> {
    let clip = espeak(text, voice, agitated);
    Resampler::convert(clip.rate, 16000, &clip.pcm)
}

fn espeak(text: &str, voice: &str, agitated: bool) -> warmline_media::Clip {
    let mut cmd = Command::new("espeak-ng");
    cmd.args(["-v", voice, "--stdout"]);
    if agitated {
        cmd.args(["-p", "80", "-a", "200", "-s", "220"]);
    }
    let out = cmd.args(["--", text]).output().expect("espeak-ng");
    tts::clip_from_espeak(out.stdout).unwrap()
}

/// espeak-ng speech as a caller's phone delivers it: 8 kHz G.711 µ-law, back to 16 kHz.
pub fn phone(text: &str, voice: &str, agitated: bool) -> Vec<i16> {
    let clip = espeak(text, voice, agitated);
    let narrow = Resampler::convert(clip.rate, 8000, &clip.pcm);
    let mut codes = Vec::new();
    warmline_media::g711::ulaw_encode_frame(&narrow, &mut codes);
    let mut back = Vec::new();
    warmline_media::g711::ulaw_decode_frame(&codes, &mut back);
    Resampler::convert(8000, 16000, &back)
}

/// `WARMLINE_WHISPER_MODELS` (comma-separated paths), else every model installed in
/// warmline's data directory; at least one.
pub fn models() -> Vec<PathBuf> {
    let models = match std::env::var("WARMLINE_WHISPER_MODELS") {
        Ok(v) => v.split(',').map(PathBuf::from).collect(),
        Err(_) => ggml::installed_models(),
    };
    assert!(
        !models.is_empty(),
        "no whisper model: run `warmline model fetch` (or set WARMLINE_WHISPER_MODELS)"
    );
    models
}

/// The `q` quantile (0..1) of `a`, sorting it; NaN when empty.
pub fn pct(a: &mut [f64], q: f64) -> f64 {
    if a.is_empty() {
        return f64::NAN;
    }
    a.sort_by(f64::total_cmp);
    a[((a.len() - 1) as f64 * q).round() as usize]
}
