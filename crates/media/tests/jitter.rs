//! The jitter buffer on a virtual clock: reordering, loss concealment, late packets,
//! timeline jumps, adaptive delay, talk-spurt gaps.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};
use warmline_media::JitterSettings;
use warmline_media::jitter::{JitterBuffer, Pop};

/// The virtual clock's origin; every test moves time by adding to it.
fn epoch() -> Instant {
    Instant::now()
}

const T0: u32 = 4_294_960_000; // wraps during the test

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn frame(n: u32) -> Vec<u8> {
    vec![n as u8; 160]
}

#[test]
fn reorders_and_conceals_single_loss() {
    let t = epoch();
    let mut jb = JitterBuffer::new(8000, JitterSettings::default());
    // Arrival order 0, 2, 1, 4 (3 lost), 5.
    for (i, n) in [0u32, 2, 1, 4, 5].iter().enumerate() {
        jb.insert(t + ms(i as u64 * 20), T0.wrapping_add(n * 160), &frame(*n));
    }
    let mut out = Vec::new();
    for k in 0..8 {
        out.push(jb.pop(t + ms(40 + k * 20)));
    }
    assert_eq!(out[0], Pop::Frame(frame(0)));
    assert_eq!(out[1], Pop::Frame(frame(1)));
    assert_eq!(out[2], Pop::Frame(frame(2)));
    assert_eq!(out[3], Pop::Conceal);
    assert_eq!(out[4], Pop::Frame(frame(4)));
    assert_eq!(out[5], Pop::Frame(frame(5)));
    assert_eq!(out[6], Pop::Nothing);
    assert_eq!(jb.stats().concealed, 1);
}

#[test]
fn late_packet_is_dropped_and_counted() {
    let t = epoch();
    let mut jb = JitterBuffer::new(8000, JitterSettings::default());
    jb.insert(t, 1000, &frame(0));
    jb.insert(t + ms(20), 1160, &frame(1));
    assert_eq!(jb.pop(t + ms(20)), Pop::Frame(frame(0)));
    assert_eq!(jb.pop(t + ms(40)), Pop::Frame(frame(1)));
    jb.insert(t + ms(45), 1000, &frame(0));
    assert_eq!(jb.stats().late, 1);
}

#[test]
fn timestamp_jump_resyncs() {
    let t = epoch();
    let mut jb = JitterBuffer::new(8000, JitterSettings::default());
    jb.insert(t, 0, &frame(0));
    assert_eq!(jb.pop(t + ms(20)), Pop::Frame(frame(0)));
    jb.insert(t + ms(20), 3_000_000, &frame(9));
    assert_eq!(jb.stats().resyncs, 1);
    assert_eq!(jb.pop(t + ms(30)), Pop::Nothing);
    assert_eq!(jb.pop(t + ms(40)), Pop::Frame(frame(9)));
}

#[test]
fn delay_adapts_to_jitter_within_bounds() {
    let t = epoch();
    let mut jb = JitterBuffer::new(8000, JitterSettings::default());
    // Packets arrive in bursts of five every 100 ms: heavy jitter.
    for n in 0..200u32 {
        let arrival = t + ms(u64::from(n / 5) * 100);
        jb.insert(arrival, n * 160, &frame(n));
    }
    let d = jb.stats().delay_ms;
    assert!((60..=200).contains(&d), "delay {d} ms");
    let smooth = {
        let mut jb = JitterBuffer::new(8000, JitterSettings::default());
        for n in 0..200u32 {
            jb.insert(t + ms(u64::from(n) * 20), n * 160, &frame(n));
        }
        jb.stats().delay_ms
    };
    assert_eq!(smooth, 20);
}

#[test]
fn talk_spurt_gap_jumps_instead_of_concealing() {
    let t = epoch();
    let mut jb = JitterBuffer::new(8000, JitterSettings::default());
    jb.insert(t, 0, &frame(0));
    assert_eq!(jb.pop(t + ms(20)), Pop::Frame(frame(0)));
    // One second of silence suppression, then speech again.
    jb.insert(t + ms(1000), 8000, &frame(50));
    assert_eq!(jb.pop(t + ms(1020)), Pop::Frame(frame(50)));
    assert_eq!(jb.stats().concealed, 0);
}
