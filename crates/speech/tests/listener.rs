//! The listener on espeak-ng speech, frame by frame: what it asks to recognise, when it
//! guesses during a pause, when it stops a stale guess, and how a guess that asks for a
//! person ends the turn at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use warmline_media::resample::Resampler;
use warmline_speech::listener::{Heard, Listener, SPECULATE_AFTER_MS};
use warmline_speech::*;

fn speak(text: &str) -> Vec<i16> {
    let out = Command::new("espeak-ng")
        .args(["-v", "en-us", "--stdout", "--", text])
        .output()
        .expect("espeak-ng (the README's test command installs it)");
    let clip = warmline_speech::tts::clip_from_espeak(out.stdout).unwrap();
    let pcm = Resampler::convert(clip.rate, 16000, &clip.pcm);
    // espeak-ng pads its speech with silence: trim it, so the pauses are the test's.
    let loud = |x: &i16| x.unsigned_abs() > 300;
    let first = pcm.iter().position(loud).unwrap_or(0);
    let last = pcm.iter().rposition(loud).map_or(pcm.len(), |i| i + 1);
    pcm[first..last].to_vec()
}

fn silence(ms: usize) -> Vec<i16> {
    vec![0; ms * 16]
}

fn asks_for_person(text: &str) -> bool {
    text.contains("person")
}

fn listener() -> Listener {
    Listener::new(EndpointSettings::default(), 2, asks_for_person)
}

/// Feed audio frame by frame; `free`: a worker could take a guess.
fn feed(l: &mut Listener, pcm: &[i16], free: bool) -> Vec<Heard> {
    let mut out = Vec::new();
    for f in pcm.chunks(320) {
        l.frame(f, free, &mut out);
    }
    out
}

fn turn_of(u: &Utterance, text: &str) -> Box<TranscriptTurn> {
    Box::new(TranscriptTurn {
        text: text.into(),
        start_ms: u.start_ms,
        end_ms: u.end_ms,
        confidence: 0.9,
        words: Vec::new(),
        recognizer: "whisper".into(),
        latency_ms: 100,
        endpoint_ms: 0,
        prosody: None,
    })
}

/// The utterances asked to be recognised: guesses (`true`) or closed turns.
fn asked(h: &[Heard], guess: bool) -> Vec<&Utterance> {
    h.iter()
        .filter_map(|e| match e {
            Heard::Guess { utterance, .. } if guess => Some(utterance),
            Heard::Recognise { utterance, .. } if !guess => Some(utterance),
            _ => None,
        })
        .collect()
}

fn guesses(h: &[Heard]) -> Vec<&Utterance> {
    asked(h, true)
}

fn recognised(h: &[Heard]) -> Vec<&Utterance> {
    asked(h, false)
}

/// What was heard, in short (the audio left out of failure messages).
fn kinds(h: &[Heard]) -> Vec<String> {
    h.iter()
        .map(|e| match e {
            Heard::SpeechStarted { at_ms } => format!("start@{at_ms}"),
            Heard::Recognise { utterance: u, .. } => {
                format!("recognise {}-{}", u.start_ms, u.end_ms)
            }
            Heard::Guess { utterance: u, .. } => format!("guess {}-{}", u.start_ms, u.end_ms),
            Heard::StopGuess => "stop".into(),
            Heard::Turn(t) => format!("turn {:?}", t.text),
        })
        .collect()
}

/// Speech, then silence long enough for a guess but not for the turn to close.
fn speech_then_pause(l: &mut Listener, text: &str) -> Vec<Heard> {
    let mut heard = feed(l, &silence(300), true);
    heard.extend(feed(l, &speak(text), true));
    heard.extend(feed(l, &silence(SPECULATE_AFTER_MS as usize + 60), true));
    heard
}

#[test]
fn a_pause_inside_a_turn_asks_for_a_guess_and_speech_resuming_stops_it() {
    let mut l = listener();
    let mut heard = speech_then_pause(&mut l, "I need some help with my order");
    assert!(
        matches!(heard[0], Heard::SpeechStarted { .. }),
        "{:?}",
        kinds(&heard)
    );
    assert!(
        matches!(heard.last(), Some(Heard::Guess { .. })),
        "{:?}",
        kinds(&heard)
    );
    assert!(recognised(&heard).is_empty(), "{:?}", kinds(&heard));
    let resumed = heard.len();
    heard.extend(feed(&mut l, &speak("and with my bill"), true));
    assert_eq!(
        heard[resumed..].first(),
        Some(&Heard::StopGuess),
        "{:?}",
        kinds(&heard)
    );
    // The turn closes after its silence; the guess taken in that silence is its audio, so
    // nothing more is asked for.
    let closing = heard.len();
    heard.extend(feed(&mut l, &silence(1000), true));
    let g: Vec<Utterance> = guesses(&heard[closing..]).into_iter().cloned().collect();
    assert_eq!(g.len(), 1, "{:?}", kinds(&heard));
    assert!(
        recognised(&heard[closing..]).is_empty(),
        "{:?}",
        kinds(&heard)
    );
    // Its text arrives after the close: delivered at once, with the turn's prosody.
    let mut out = Vec::new();
    l.guessed(
        turn_of(&g[0], "I need some help with my order and with my bill"),
        &mut out,
    );
    match &out[..] {
        [Heard::Turn(t)] => assert!(t.prosody.is_some(), "{t:?}"),
        other => panic!("{:?}", kinds(other)),
    }
    assert_eq!(l.utterances(), 1);
}

fn last_guess(h: &[Heard]) -> Utterance {
    guesses(h).last().map(|u| (*u).clone()).expect("a guess")
}

/// The caller says `said` and pauses; the guess taken in the pause is heard as `said`.
fn guess_comes_back(l: &mut Listener, said: &str) -> Vec<Heard> {
    let heard = speech_then_pause(l, said);
    let g = last_guess(&heard);
    let mut out = Vec::new();
    l.guessed(turn_of(&g, said), &mut out);
    out
}

#[test]
fn a_guess_that_asks_for_a_person_ends_the_turn_at_once() {
    let mut l = listener();
    let out = guess_comes_back(&mut l, "I want to speak to a person");
    match &out[..] {
        [Heard::Turn(t)] => assert_eq!(t.text, "I want to speak to a person"),
        other => panic!("{:?}", kinds(other)),
    }
    // The endpointer no longer closes that turn: nothing is recognised twice.
    let rest = feed(&mut l, &silence(1000), true);
    assert!(recognised(&rest).is_empty(), "{:?}", kinds(&rest));
    assert!(guesses(&rest).is_empty(), "{:?}", kinds(&rest));
}

#[test]
fn a_guess_that_does_not_end_the_turn_waits_for_the_close() {
    let mut l = listener();
    let out = guess_comes_back(&mut l, "my order number is four five six");
    assert!(out.is_empty(), "{:?}", kinds(&out));
    // At the close the waiting result goes out, with prosody.
    let rest = feed(&mut l, &silence(1000), true);
    assert!(
        matches!(&rest[..], [Heard::Turn(t)] if t.prosody.is_some()),
        "{:?}",
        kinds(&rest)
    );
}

#[test]
fn a_stale_guess_result_is_ignored() {
    let mut l = listener();
    let heard = speech_then_pause(&mut l, "I need some help with my order");
    let g = last_guess(&heard);
    feed(&mut l, &speak("and with my bill"), true);
    let mut out = Vec::new();
    l.guessed(turn_of(&g, "I need some help with my order"), &mut out);
    assert!(out.is_empty(), "{:?}", kinds(&out));
}

#[test]
fn with_every_worker_busy_there_is_no_guess_and_the_closed_turn_is_recognised() {
    let mut l = listener();
    let mut heard = feed(&mut l, &silence(300), false);
    heard.extend(feed(
        &mut l,
        &speak("I need some help with my order"),
        false,
    ));
    heard.extend(feed(&mut l, &silence(1000), false));
    assert!(guesses(&heard).is_empty(), "{:?}", kinds(&heard));
    assert_eq!(recognised(&heard).len(), 1, "{:?}", kinds(&heard));
    match heard.last() {
        Some(Heard::Recognise {
            prosody,
            endpoint_ms,
            ..
        }) => {
            assert!(prosody.is_some());
            // The endpointer's closing silence (600 ms by default), give or take a frame.
            assert!((560..=700).contains(endpoint_ms), "{endpoint_ms}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.utterances(), 1);
}

#[test]
fn a_refused_guess_is_asked_for_again_at_the_next_free_frame() {
    let mut l = listener();
    let heard = speech_then_pause(&mut l, "I need some help with my order");
    assert!(
        matches!(heard.last(), Some(Heard::Guess { .. })),
        "{:?}",
        kinds(&heard)
    );
    l.guess_refused();
    let again = feed(&mut l, &silence(20), true);
    assert_eq!(guesses(&again).len(), 1, "{:?}", kinds(&again));
}
