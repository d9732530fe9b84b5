//! Short requests for a person over the phone: how many the recogniser hears as a request
//! (by the policy's own grammar) and how many other short turns it takes for one, with
//! free decoding alone and with the expected-phrase check ([`warmline_speech::verify`]),
//! and what the check costs. Sentences are not the accuracy suite's: wordings are partly
//! held out, so the check is measured on phrasings it was not written from.
//!
//!   cargo bench -p warmline-speech --bench requests
//!
//! `WARMLINE_EXPECT_DUMP=file` writes every clip's scores (for choosing the margins);
//! `WARMLINE_EXPECT_MARGIN` and `WARMLINE_EXPECT_MIN_MEAN` override them.
//! Under `cargo test --all-targets` it runs four clips per model as a smoke test.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{VOICES, pct, phone};
use std::io::Write;
use std::time::Instant;
use warmline_policy::intent::{RECOGNIZER_PROMPT, person_request, request_utterances};
use warmline_speech::*;

const REQUESTS: &[&str] = &[
    "Operator.",
    "Supervisor, please.",
    "Agent, please.",
    "Representative.",
    "Get me a real person!",
    "Let me speak to your supervisor.",
    "Put me through to a manager, now!",
    "Is there a person I can talk to?",
    "Transfer me to an agent.",
    "A human, please.",
    "Can I talk to someone?",
    "I need a person.",
    "Manager, please!",
    "Real person!",
    "Speak to an agent.",
    "Human being, please.",
];

const OTHERS: &[&str] = &[
    "Yes, please.",
    "No, thank you.",
    "My order number is four five six.",
    "I'd like to check my balance.",
    "Thank you, goodbye.",
    "No need for an agent, I'm fine.",
    "It's about my bill.",
    "Can you repeat that?",
    "I moved house last month.",
    "What time do you open?",
    "The package never arrived.",
    "Cancel my appointment, please.",
    "I have a question about my invoice.",
    "Okay, sounds good.",
    "My name is John Smith.",
    "The operator at the desk.",
    "My manager asked me.",
    "I'm fine, thanks.",
    "Hello?",
    "Can I pay by card?",
    "Send me a new password.",
    "I need a refund.",
    "Is the store open today?",
    "Personal details, please.",
];

fn env_f32(key: &str, default: f32) -> f32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let models = common::models();
    let (reqs, others, voices) = if full {
        (REQUESTS, OTHERS, VOICES)
    } else {
        (&REQUESTS[..2], &OTHERS[..2], &VOICES[..1])
    };
    let mut clips = Vec::new();
    for (vi, v) in voices.iter().enumerate() {
        for (si, s) in reqs.iter().chain(others).enumerate() {
            let request = si < reqs.len();
            let agitated = request && (vi + si) % 3 == 0;
            clips.push((*s, *v, agitated, request, phone(s, v, agitated)));
        }
    }
    println!(
        "{} clips ({} requests, {} other short turns; {} voices, G.711 µ-law round trip)",
        clips.len(),
        clips.iter().filter(|c| c.3).count(),
        clips.iter().filter(|c| !c.3).count(),
        voices.len()
    );
    let mut dump = std::env::var("WARMLINE_EXPECT_DUMP")
        .ok()
        .map(|p| std::fs::File::create(p).unwrap());
    let expected = request_utterances();
    for path in models {
        let rec = WhisperRecognizer::load(
            &path,
            DecodeOptions {
                threads: 2,
                prompt: RECOGNIZER_PROMPT.to_string(),
                expected: expected.clone(),
                expected_said: Some(|t| person_request(t).is_some()),
                expect_margin: env_f32("WARMLINE_EXPECT_MARGIN", recognizer::EXPECT_MARGIN),
                expect_min_mean: env_f32("WARMLINE_EXPECT_MIN_MEAN", recognizer::EXPECT_MIN_MEAN),
                ..DecodeOptions::default()
            },
        )
        .unwrap();
        let mut w = rec.worker().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (mut hit_free, mut hit, mut fa_free, mut fa) = (0, 0, 0, 0);
        let (mut n_req, mut n_other) = (0, 0);
        let mut lat = Vec::new();
        let mut steps = Vec::new();
        let mut wrong = Vec::new();
        for (s, v, agitated, request, pcm) in &clips {
            let t = Instant::now();
            let r = w.recognize(pcm).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let free_text = r.free_text.clone().unwrap_or_else(|| r.text.clone());
            let free_says = person_request(&free_text).is_some();
            let says = person_request(&r.text).is_some();
            if let Some(c) = &r.check {
                steps.push(c.steps as f64);
            }
            if let (Some(d), Some(c)) = (dump.as_mut(), &r.check) {
                writeln!(
                    d,
                    "{}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{}\t{}\t{}",
                    u8::from(*request),
                    v,
                    s,
                    c.free_logprob,
                    c.logprob,
                    c.mean,
                    free_text,
                    c.phrase.as_deref().unwrap_or(""),
                    pcm.len() / 16
                )
                .unwrap();
            }
            if *request {
                n_req += 1;
                hit_free += usize::from(free_says);
                hit += usize::from(says);
            } else {
                n_other += 1;
                fa_free += usize::from(free_says);
                fa += usize::from(says);
            }
            if says != *request {
                wrong.push(format!(
                    "  {} ({v}{}): said \"{s}\", heard \"{free_text}\"{}",
                    if *request { "missed" } else { "false" },
                    if *agitated { ", agitated" } else { "" },
                    r.free_text
                        .as_ref()
                        .map(|_| format!(", taken as \"{}\"", r.text))
                        .unwrap_or_default()
                ));
            }
        }
        let p = |a: usize, n: usize| 100.0 * a as f64 / n.max(1) as f64;
        println!(
            "{name}: requests heard {hit}/{n_req} = {:.1}% (free decoding alone {hit_free} = {:.1}%)",
            p(hit, n_req),
            p(hit_free, n_req)
        );
        println!(
            "{name}: other turns taken for a request {fa}/{n_other} = {:.1}% (free decoding alone {fa_free} = {:.1}%)",
            p(fa, n_other),
            p(fa_free, n_other)
        );
        println!(
            "{name}: end of utterance → text with the check p50 {:.0} ms, p95 {:.0} ms; check steps p50 {:.0}, p95 {:.0}, max {:.0} (2 threads)",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.95),
            pct(&mut steps, 0.5),
            pct(&mut steps, 0.95),
            pct(&mut steps, 1.0)
        );
        for line in wrong.iter().take(if full { 30 } else { 4 }) {
            println!("{line}");
        }
    }
}
