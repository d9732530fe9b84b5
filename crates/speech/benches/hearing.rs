//! How well each whisper model hears callers: word error rate and end of utterance → text
//! latency on labelled telephone-band speech (espeak-ng, 12 voices, calm and agitated, each
//! clip through an 8 kHz G.711 µ-law round trip as a caller arrives), plus how many turns
//! came back as a loop. Models: `WARMLINE_WHISPER_MODELS` (comma-separated paths), else
//! every model installed in warmline's data directory (`warmline model fetch`).
//!
//!   cargo bench -p warmline-speech --bench hearing
//!
//! Under `cargo test --all-targets` it runs two clips per model as a smoke test.
//! `WARMLINE_BEAM=5` decodes with beam search instead of greedy;
//! `WARMLINE_AUDIO_CTX_MARGIN=N` gives the encoder N frames beyond the speech;
//! `WARMLINE_WIDEBAND=1` plays the same speech without the telephone (espeak-ng's rate straight
//! to 16 kHz), a reference for what the 4 kHz band costs.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{VOICES, phone, wideband};
use std::time::Instant;
use warmline_speech::*;

/// What callers say (numbers spelled as said, so the reference needs no normaliser).
const SENTENCES: &[&str] = &[
    "I would like to check the status of my order.",
    "Can I speak to someone in person?",
    "I need to talk to somebody, not a machine.",
    "Put me through to a representative, please.",
    "Operator.",
    "Supervisor, please.",
    "Can I talk to a real person, please?",
    "I want to dispute a charge on my card.",
    "No need for an agent, I'm fine.",
    "My manager asked me to check the invoice date.",
    "I booked a holiday through a travel agent.",
    "I have moved house and need to change my address.",
    "This is useless, completely useless!",
    "I want to cancel my appointment and reschedule it for Friday.",
    "My account number is four five six seven.",
    "Is there a person I can talk to?",
];

fn norm(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Word-level edit distance.
fn edits(r: &[String], h: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let models = common::models();
    let (sentences, voices) = if full {
        (SENTENCES, VOICES)
    } else {
        (&SENTENCES[..2], &VOICES[..1])
    };
    let wide = std::env::var_os("WARMLINE_WIDEBAND").is_some();
    let render = if wide { wideband } else { phone };
    let mut clips = Vec::new();
    for (vi, v) in voices.iter().enumerate() {
        for (si, s) in sentences.iter().enumerate() {
            // Every third voice/sentence pair also agitated.
            let agitated = (vi + si) % 3 == 0;
            clips.push((s, *v, false, render(s, v, false)));
            if agitated {
                clips.push((s, *v, true, render(s, v, true)));
            }
        }
    }
    println!(
        "{} clips ({} voices, {})",
        clips.len(),
        voices.len(),
        if wide {
            "wideband reference, no telephone"
        } else {
            "G.711 µ-law round trip"
        }
    );
    for path in models {
        let rec = WhisperRecognizer::load(
            &path,
            DecodeOptions {
                threads: 2,
                beam_size: std::env::var("WARMLINE_BEAM")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                audio_ctx_margin: std::env::var("WARMLINE_AUDIO_CTX_MARGIN")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(recognizer::AUDIO_CTX_MARGIN),
                ..DecodeOptions::default()
            },
        )
        .unwrap();
        let mut w = rec.worker().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (mut errs, mut words, mut loops) = (0usize, 0usize, 0usize);
        let (mut errs_ag, mut words_ag) = (0usize, 0usize);
        let mut lat = Vec::new();
        let mut lat3 = Vec::new();
        let mut worst: Vec<(usize, String, String)> = Vec::new();
        let mut per_voice: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for (s, v, agitated, pcm) in &clips {
            let t = Instant::now();
            let r = w.recognize(pcm).unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            lat.push(ms);
            let secs = pcm.len() as f64 / 16000.0;
            if (2.5..=3.5).contains(&secs) {
                lat3.push(ms);
            }
            let (rw, hw) = (norm(s), norm(&r.text));
            let e = edits(&rw, &hw);
            errs += e;
            words += rw.len();
            let pv = per_voice.entry(v).or_default();
            pv.0 += e;
            pv.1 += rw.len();
            if *agitated {
                errs_ag += e;
                words_ag += rw.len();
            }
            if hw.len() > rw.len() * 2 + 4 {
                loops += 1;
            }
            if e > 0 {
                worst.push((e, s.to_string(), r.text.clone()));
            }
        }
        let pct = |a: &mut Vec<f64>, q: f64| {
            if a.is_empty() {
                return f64::NAN;
            }
            a.sort_by(f64::total_cmp);
            a[((a.len() - 1) as f64 * q).round() as usize]
        };
        println!(
            "{name}: WER {:.1}% ({errs}/{words} words), agitated {:.1}%, runaway turns {loops}/{}",
            100.0 * errs as f64 / words.max(1) as f64,
            100.0 * errs_ag as f64 / words_ag.max(1) as f64,
            clips.len()
        );
        println!(
            "{name}: end of utterance → text p50 {:.0} ms, p95 {:.0} ms (all); 2.5–3.5 s utterances p50 {:.0} ms, p95 {:.0} ms (2 threads)",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.95),
            pct(&mut lat3, 0.5),
            pct(&mut lat3, 0.95)
        );
        let by_voice: Vec<String> = per_voice
            .iter()
            .map(|(v, (e, n))| format!("{v} {:.0}%", 100.0 * *e as f64 / (*n).max(1) as f64))
            .collect();
        println!("{name}: WER by voice: {}", by_voice.join(", "));
        worst.sort_by_key(|b| std::cmp::Reverse(b.0));
        for (e, r, h) in worst.iter().take(if full { 12 } else { 2 }) {
            println!("  {e} errors: \"{r}\" → \"{h}\"");
        }
    }
}
