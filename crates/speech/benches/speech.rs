//! Per-frame costs of the speech pipeline: VAD/endpointing and prosody per 20 ms frame of
//! 16 kHz caller audio (targets ≤ 10 µs and ≤ 100 µs).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use warmline_speech::prosody::FrameAnalyzer;
use warmline_speech::{EndpointSettings, Endpointer};

/// A voiced, speech-like signal: a 120 Hz glottal-ish pulse train through two formants.
fn voice(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / 16000.0;
            let f0 = 120.0 + 20.0 * (t * 3.0).sin();
            let p = (t * f0).fract();
            let src = if p < 0.1 { 1.0 } else { -0.1 };
            let a = (2.0 * std::f64::consts::PI * 700.0 * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * 1200.0 * t).sin();
            (6000.0 * src * a) as i16
        })
        .collect()
}

fn vad(c: &mut Criterion) {
    for (name, audio) in [
        ("vad_20ms_frame_voiced", voice(16000 * 10)),
        // A call as the tap sees it: the caller talks about half the time.
        ("vad_20ms_frame_talk_and_listen", {
            let mut a = Vec::new();
            for _ in 0..5 {
                a.extend(voice(16000));
                a.extend(std::iter::repeat_n(0i16, 16000));
            }
            a
        }),
    ] {
        vad_on(c, name, &audio);
    }
}

fn vad_on(c: &mut Criterion, name: &str, audio: &[i16]) {
    let mut ep = Endpointer::new(EndpointSettings::default());
    let mut out = Vec::new();
    let mut i = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            let f = &audio[i..i + 320];
            ep.push(black_box(f), &mut out);
            out.clear();
            i = (i + 320) % (audio.len() - 320);
        })
    });
}

fn prosody(c: &mut Criterion) {
    let audio = voice(16000 * 10);
    let mut a = FrameAnalyzer::default();
    let mut i = 0;
    c.bench_function("prosody_20ms_frame", |b| {
        b.iter(|| {
            black_box(a.frame(black_box(&audio[i..i + 320])));
            i = (i + 320) % (audio.len() - 320);
        })
    });
}

/// earshot alone, per 16 ms chunk, to tell its cost from the endpointer's.
fn earshot_chunk(c: &mut Criterion) {
    let audio = voice(16000 * 10);
    let mut d = earshot::Detector::default_boxed();
    let mut i = 0;
    c.bench_function("earshot_16ms_chunk", |b| {
        b.iter(|| {
            black_box(d.predict_i16(black_box(&audio[i..i + 256])));
            i = (i + 256) % (audio.len() - 256);
        })
    });
}

criterion_group!(benches, vad, prosody, earshot_chunk);
criterion_main!(benches);
