//! The session timer's clock (RFC 4028 §10) on a virtual clock: an origin taken once, time
//! moved by hand.

// Test code: a failed step should panic with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use warmline_signaling::session_timer::{Agreed, Due, SessionTimer};

#[test]
fn the_refresher_refreshes_at_half_time_and_gives_up_at_expiry() {
    let t0 = Instant::now();
    let agreed = Agreed {
        expires: 100,
        we_refresh: true,
        peer_supports: true,
    };
    let mut t = SessionTimer::new(t0, agreed);
    assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(50));
    assert_eq!(t.due(t0 + Duration::from_secs(49)), None);
    assert_eq!(t.due(t0 + Duration::from_secs(50)), Some(Due::Refresh));
    t.refresh_sent();
    // Sent: not asked again; the deadline is the whole interval.
    assert_eq!(t.due(t0 + Duration::from_secs(60)), None);
    assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(100));
    // Renewed at 51 s.
    let t = t
        .refreshed(t0 + Duration::from_secs(51), Some(agreed))
        .unwrap();
    assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(101));
    assert_eq!(t.due(t0 + Duration::from_secs(100)), None);
    // Refused at 101 s (a 500): asked again halfway to expiry (151 s), not at once.
    let mut t = t;
    t.refresh_sent();
    t.refresh_failed(t0 + Duration::from_secs(101));
    assert_eq!(t.due(t0 + Duration::from_secs(101)), None);
    assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(126));
    assert_eq!(t.due(t0 + Duration::from_secs(126)), Some(Due::Refresh));
    // Never answered: dead at the end of the interval.
    t.refresh_sent();
    assert_eq!(t.due(t0 + Duration::from_secs(151)), Some(Due::Expired));
}

#[test]
fn the_watcher_ends_the_session_a_margin_before_expiry() {
    let t0 = Instant::now();
    let watch = |expires| {
        SessionTimer::new(
            t0,
            Agreed {
                expires,
                we_refresh: false,
                peer_supports: true,
            },
        )
    };
    // 1800 s: 32 s early. 90 s: a third (30 s) early.
    assert_eq!(watch(1800).poll_timeout(), t0 + Duration::from_secs(1768));
    assert_eq!(watch(90).poll_timeout(), t0 + Duration::from_secs(60));
    let t = watch(90);
    assert_eq!(t.due(t0 + Duration::from_secs(59)), None);
    assert_eq!(t.due(t0 + Duration::from_secs(60)), Some(Due::Expired));
    // A refresh without Session-Expires turns the timer off.
    assert!(t.refreshed(t0, None).is_none());
}
