//! Billing-dispute topics with an amount, over the phone: how many turns the recogniser
//! hears as the topic (its words and an amount over the limit, as the policy's `topic`
//! rule reads them), with free decoding alone and with the phrase search inside the turn
//! ([`warmline_speech::verify::spot`]), and how many turns that name money but no dispute
//! are read as one. What the search costs.
//!
//!   cargo bench -p warmline-speech --bench topics
//!
//! `WARMLINE_SPOT_DUMP=file` writes every searched clip's scores (for choosing the margin);
//! `WARMLINE_SPOT_MARGIN` overrides it. Under `cargo test --all-targets` it runs four clips
//! per model as a smoke test.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{VOICES, pct, phone};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use warmline_policy::{UnheardTopics, amounts, text};
use warmline_speech::*;

const TOPICS: &[&str] = &[
    "I want to dispute a charge of eight hundred dollars.",
    "There is a wrong charge of nine hundred dollars on my card.",
    "I was overcharged by two thousand dollars.",
    "I'd like to dispute a payment of six hundred dollars.",
    "I need to dispute a bill for twelve hundred dollars.",
    "You overcharged me seven hundred dollars.",
    "There's a wrong charge of fifteen hundred dollars.",
    "I want to dispute the three thousand dollar fee.",
    "I've been overcharged by nine hundred and fifty dollars.",
    "Why is there a wrong charge of a thousand dollars?",
];

const OTHERS: &[&str] = &[
    "I'd like to pay two thousand dollars today.",
    "My balance is eight hundred dollars.",
    "I want to transfer nine hundred dollars to savings.",
    "Can I pay six hundred dollars by card?",
    "I got a refund of a thousand dollars, thank you.",
    "My rent is fifteen hundred dollars a month.",
    "Please send me the invoice for seven hundred dollars.",
    "I'd like to withdraw twelve hundred dollars.",
    "I want to deposit three thousand dollars.",
    "The bill for eight hundred dollars is paid.",
];

const LIMIT: f64 = 500.0;

fn phrases() -> Vec<String> {
    ["dispute", "wrong charge", "overcharged"]
        .map(String::from)
        .to_vec()
}

/// As the policy's `topic` rule reads a turn: one of the phrases, and an amount over it.
fn topic_heard(heard: &str) -> bool {
    let ws = text::words(heard);
    text::match_in_context(&ws, &phrases(), &[], 6).is_some()
        && amounts(heard).iter().any(|a| *a > LIMIT)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let models = common::models();
    let (topics, others, voices) = if full {
        (TOPICS, OTHERS, VOICES)
    } else {
        (&TOPICS[..2], &OTHERS[..2], &VOICES[..1])
    };
    let mut clips = Vec::new();
    for (vi, v) in voices.iter().enumerate() {
        for (si, s) in topics.iter().chain(others).enumerate() {
            let agitated = (vi + si) % 3 == 0;
            clips.push((*s, *v, agitated, si < topics.len(), phone(s, v, agitated)));
        }
    }
    println!(
        "{} clips ({} disputes over ${LIMIT}, {} other turns naming money over it; {} voices, G.711 µ-law round trip)",
        clips.len(),
        clips.iter().filter(|c| c.3).count(),
        clips.iter().filter(|c| !c.3).count(),
        voices.len()
    );
    let mut dump = std::env::var("WARMLINE_SPOT_DUMP")
        .ok()
        .map(|p| std::fs::File::create(p).unwrap());
    let margin = std::env::var("WARMLINE_SPOT_MARGIN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(recognizer::SPOT_MARGIN);
    let gate = Arc::new(UnheardTopics::new(vec![(phrases(), LIMIT)]));
    for path in models {
        let (g, d) = (gate.clone(), gate.clone());
        let rec = WhisperRecognizer::load(
            &path,
            DecodeOptions {
                threads: 2,
                prompt: format!(
                    "{} They may mention: {}.",
                    warmline_policy::intent::RECOGNIZER_PROMPT,
                    phrases().join(", ")
                ),
                spot: Spotting {
                    phrases: phrases(),
                    wanted: Some(Arc::new(move |h: &str| g.wanted(h))),
                    decides: Some(Arc::new(move |h: &str| d.decided(h))),
                    anchor: Some(warmline_policy::amount_word),
                    margin,
                    ..DecodeOptions::default().spot
                },
                ..DecodeOptions::default()
            },
        )
        .unwrap();
        let mut w = rec.worker().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (mut hit_free, mut hit, mut fa_free, mut fa) = (0, 0, 0, 0);
        let (mut n_topic, mut n_other, mut searched) = (0, 0, 0);
        let (mut lat, mut lat_searched, mut steps) = (Vec::new(), Vec::new(), Vec::new());
        let mut wrong = Vec::new();
        for (s, v, agitated, topic, pcm) in &clips {
            let t = Instant::now();
            let r = w.recognize(pcm).unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            lat.push(ms);
            let free_text = r.free_text.clone().unwrap_or_else(|| r.text.clone());
            if let Some(c) = &r.check {
                searched += 1;
                lat_searched.push(ms);
                steps.push(c.steps as f64);
                if let Some(d) = dump.as_mut() {
                    writeln!(
                        d,
                        "{}\t{v}\t{s}\t{:.3}\t{:.3}\t{free_text}\t{}",
                        u8::from(*topic),
                        c.free_logprob,
                        c.logprob,
                        r.text
                    )
                    .unwrap();
                }
            }
            let (free_says, says) = (topic_heard(&free_text), topic_heard(&r.text));
            if *topic {
                n_topic += 1;
                hit_free += usize::from(free_says);
                hit += usize::from(says);
            } else {
                n_other += 1;
                fa_free += usize::from(free_says);
                fa += usize::from(says);
            }
            if says != *topic {
                wrong.push(format!(
                    "  {} ({v}{}): said \"{s}\", heard \"{free_text}\"{}",
                    if *topic { "missed" } else { "false" },
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
            "{name}: disputes heard as the topic {hit}/{n_topic} = {:.1}% (free decoding alone {hit_free} = {:.1}%)",
            p(hit, n_topic),
            p(hit_free, n_topic)
        );
        println!(
            "{name}: other money turns read as the topic {fa}/{n_other} = {:.1}% (free decoding alone {fa_free} = {:.1}%)",
            p(fa, n_other),
            p(fa_free, n_other)
        );
        println!(
            "{name}: searched {searched} of {} turns (margin {margin}); end of utterance → text p50 {:.0} ms, p95 {:.0} ms, searched turns p95 {:.0} ms; search steps p50 {:.0}, p95 {:.0}, max {:.0} (2 threads)",
            clips.len(),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.95),
            pct(&mut lat_searched, 0.95),
            pct(&mut steps, 0.5),
            pct(&mut steps, 0.95),
            pct(&mut steps, 1.0)
        );
        for line in wrong.iter().take(if full { 40 } else { 4 }) {
            println!("{line}");
        }
    }
}
