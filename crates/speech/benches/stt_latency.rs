//! End of utterance → final text, p50/p95, for 1–5 s utterances of espeak-ng speech: the
//! generated whisper model (always), every real model installed in warmline's data
//! directory (or WARMLINE_WHISPER_MODEL) decoding after the gateway's prompt, and the
//! pocketsphinx fallback. Also how many callers talking without pause one worker per
//! core keeps up with (cores / real-time factor).
//!
//!   cargo bench -p warmline-speech --bench stt_latency

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;
use warmline_media::resample::Resampler;
use warmline_speech::sphinx::SphinxSetup;
use warmline_speech::*;

fn speak(text: &str) -> Vec<i16> {
    let out = Command::new("espeak-ng")
        .args(["-v", "en-us+klatt2", "-s", "150", "--stdout", "--", text])
        .output()
        .expect("espeak-ng");
    let clip = warmline_speech::tts::clip_from_espeak(out.stdout).unwrap();
    Resampler::convert(clip.rate, 16000, &clip.pcm)
}

/// Speech cut or padded to exactly `secs`.
fn utterance(secs: usize) -> Vec<i16> {
    let mut pcm = Vec::new();
    let lines = [
        "I need to speak to someone about my bill.",
        "The payment went out twice this month.",
        "Can you check the order number for me?",
    ];
    while pcm.len() < secs * 16000 {
        for l in lines {
            pcm.extend(speak(l));
        }
    }
    pcm.truncate(secs * 16000);
    pcm
}

fn measure(name: &str, rec: &dyn Recognizer, runs: usize) {
    let mut w = rec.worker().unwrap();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut audio_s = 0.0;
    let mut busy_s = 0.0;
    for secs in 1..=5 {
        let pcm = utterance(secs);
        w.recognize(&pcm).unwrap(); // warm-up
        let mut t: Vec<f64> = (0..runs)
            .map(|_| {
                let s = Instant::now();
                w.recognize(&pcm).unwrap();
                s.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        t.sort_by(f64::total_cmp);
        let p = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
        audio_s += secs as f64 * runs as f64;
        busy_s += t.iter().sum::<f64>() / 1000.0;
        println!(
            "{name:28} {secs} s utterance: p50 {:7.1} ms  p95 {:7.1} ms",
            p(0.5),
            p(0.95)
        );
    }
    let rtf = busy_s / audio_s;
    println!(
        "{name:28} real-time factor {rtf:.3} per worker thread; {cores} cores keep up with ~{:.0} callers talking without pause",
        cores as f64 / rtf
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test.
    let runs = if std::env::args().any(|a| a == "--bench") {
        10
    } else {
        1
    };
    let dir = std::env::temp_dir().join(format!("wl-stt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = dir.join("tiny-random.bin");
    ggml::write_tiny_model(&tiny, ggml::TinySpec::default()).unwrap();
    let rec = WhisperRecognizer::load(&tiny, DecodeOptions::default()).unwrap();
    measure("whisper (generated model)", &rec, runs);
    // The real models: WARMLINE_WHISPER_MODEL, else each one installed in warmline's data
    // directory (`warmline model fetch tiny.en`, `… base`).
    let models: Vec<std::path::PathBuf> = match std::env::var_os("WARMLINE_WHISPER_MODEL") {
        Some(p) => vec![p.into()],
        None => ggml::installed_models(),
    };
    if models.is_empty() {
        println!("real whisper model: none installed (`warmline model fetch tiny.en`)");
    }
    for path in models {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for threads in [1, 2] {
            let rec = WhisperRecognizer::load(
                &path,
                DecodeOptions {
                    threads,
                    // The gateway always decodes after its prompt, and the prompt costs
                    // decoder time: measure what a caller gets.
                    prompt: warmline_policy::intent::RECOGNIZER_PROMPT.to_string(),
                    ..DecodeOptions::default()
                },
            )
            .unwrap();
            measure(&format!("{name}, {threads} threads"), &rec, runs.min(5));
        }
    }
    let sphinx = SphinxRecognizer::new(SphinxSetup::escalation()).unwrap();
    measure("pocketsphinx (fallback)", &sphinx, runs);
    let _ = std::fs::remove_dir_all(&dir);
}
