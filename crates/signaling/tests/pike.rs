//! Per-source rate limits on a virtual clock: a start instant, then only offsets from it.

use std::net::IpAddr;
use std::time::{Duration, Instant};
use warmline_signaling::pike::MAX_SOURCES;
use warmline_signaling::{Pike, PikeSettings, PikeVerdict};

fn pike() -> Pike {
    Pike::new(PikeSettings {
        requests_per_s: 10.0,
        burst: 20.0,
        ban: Duration::from_secs(5),
    })
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

#[test]
fn a_source_over_its_rate_is_banned_for_a_while_and_others_are_served() {
    let mut p = pike();
    let t0 = Instant::now();
    // The burst passes at once...
    for _ in 0..20 {
        assert_eq!(p.check(t0, ip(1)), PikeVerdict::Pass);
    }
    // ...the next request starts the ban, reported once.
    assert_eq!(p.check(t0, ip(1)), PikeVerdict::Drop { banned_now: true });
    assert_eq!(p.check(t0, ip(1)), PikeVerdict::Drop { banned_now: false });
    // Another source is not affected.
    assert_eq!(p.check(t0, ip(2)), PikeVerdict::Pass);
    // Still banned just before the end, even after going quiet.
    let t = t0 + Duration::from_millis(4999);
    assert_eq!(p.check(t, ip(1)), PikeVerdict::Drop { banned_now: false });
    // Then served again, with a full burst.
    let t = t0 + Duration::from_secs(5);
    for _ in 0..20 {
        assert_eq!(p.check(t, ip(1)), PikeVerdict::Pass);
    }
}

#[test]
fn a_source_at_its_sustained_rate_is_never_banned() {
    let mut p = pike();
    let t0 = Instant::now();
    for i in 0..1000u64 {
        // 10 per second, evenly.
        let t = t0 + Duration::from_millis(i * 100);
        assert_eq!(p.check(t, ip(3)), PikeVerdict::Pass, "request {i}");
    }
}

#[test]
fn off_means_off_and_the_table_stays_bounded() {
    let mut off = Pike::new(PikeSettings {
        requests_per_s: 0.0,
        burst: 0.0,
        ban: Duration::ZERO,
    });
    assert_eq!(off.check(Instant::now(), ip(1)), PikeVerdict::Pass);
    assert_eq!(off.sources(), 0);
    let mut p = pike();
    let t0 = Instant::now();
    for i in 0..(MAX_SOURCES as u32 + 10_000) {
        let a = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        // One request each, a second apart in effect: all idle by the next sweep.
        p.check(t0 + Duration::from_secs(u64::from(i) * 3), a);
    }
    assert!(p.sources() <= MAX_SOURCES, "{}", p.sources());
}
