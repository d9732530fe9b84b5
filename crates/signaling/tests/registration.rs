//! The registration schedule on a virtual clock: refresh before expiry, 423, back-off with
//! jitter inside RFC 5626's bounds, a registrar that never answers, drain.

use std::time::{Duration, Instant};
use warmline_signaling::registration::{Action, Outcome, Schedule, Settings, State};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn settings() -> Settings {
    Settings {
        expires: 3600,
        retry_base: secs(30),
        retry_max: secs(1800),
    }
}

#[test]
fn registers_at_once_and_refreshes_a_minute_before_a_long_binding_lapses() {
    let t0 = Instant::now();
    let mut s = Schedule::new(settings(), 1);
    assert_eq!(s.poll_timeout(t0), Some(t0));
    assert_eq!(s.poll_action(t0), Some(Action::Register { expires: 3600 }));
    // One out at a time, and no timer while it is out.
    assert_eq!(s.poll_action(t0), None);
    assert_eq!(s.poll_timeout(t0), None);
    assert!(!s.bound(t0));

    // The registrar granted less than asked (common): its figure rules, counted from when
    // the REGISTER left.
    s.on_outcome(t0 + secs(1), Outcome::Registered { granted: 600 });
    assert!(s.bound(t0 + secs(1)));
    assert_eq!(s.state().name(), "registered");
    assert_eq!(s.poll_timeout(t0 + secs(1)), Some(t0 + secs(540)));
    assert_eq!(s.poll_action(t0 + secs(539)), None);
    assert_eq!(
        s.poll_action(t0 + secs(540)),
        Some(Action::Register { expires: 3600 })
    );
    // Still bound while the refresh is out.
    assert!(s.bound(t0 + secs(541)));
    s.on_outcome(t0 + secs(541), Outcome::Registered { granted: 600 });
    assert_eq!(s.poll_timeout(t0 + secs(541)), Some(t0 + secs(1080)));
}

#[test]
fn a_short_binding_is_refreshed_at_half_time() {
    let t0 = Instant::now();
    let mut s = Schedule::new(settings(), 1);
    s.poll_action(t0);
    s.on_outcome(t0, Outcome::Registered { granted: 60 });
    assert_eq!(s.poll_timeout(t0), Some(t0 + secs(30)));
}

#[test]
fn interval_too_brief_retries_at_once_with_min_expires_and_a_423_loop_backs_off() {
    let t0 = Instant::now();
    let mut s = Schedule::new(
        Settings {
            expires: 60,
            ..settings()
        },
        1,
    );
    s.poll_action(t0);
    s.on_outcome(
        t0,
        Outcome::IntervalTooBrief {
            min_expires: Some(300),
        },
    );
    assert_eq!(s.poll_timeout(t0), Some(t0));
    assert_eq!(s.poll_action(t0), Some(Action::Register { expires: 300 }));
    // The registrar answers 423 to its own minimum: not again at once.
    s.on_outcome(
        t0,
        Outcome::IntervalTooBrief {
            min_expires: Some(300),
        },
    );
    let retry = s.poll_timeout(t0).expect("a retry is scheduled");
    assert!(retry >= t0 + secs(30), "{:?}", retry - t0);
    assert_eq!(s.poll_action(t0 + secs(1)), None);
    match s.state() {
        State::Failed { status, reason, .. } => {
            assert_eq!(*status, Some(423));
            assert!(reason.contains("Min-Expires 300"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A 423 without Min-Expires is the same loop.
    let mut s = Schedule::new(settings(), 1);
    s.poll_action(t0);
    s.on_outcome(t0, Outcome::IntervalTooBrief { min_expires: None });
    assert!(s.poll_timeout(t0).expect("retry") >= t0 + secs(30));
}

#[test]
fn failures_back_off_doubling_within_rfc5626_bounds_up_to_the_ceiling() {
    let t0 = Instant::now();
    for seed in 0..50 {
        let mut s = Schedule::new(settings(), seed);
        let mut now = t0;
        for n in 1..=10u32 {
            assert_eq!(s.poll_action(now), Some(Action::Register { expires: 3600 }));
            s.on_outcome(
                now,
                Outcome::Rejected {
                    status: 403,
                    reason: "Forbidden".into(),
                    retry_after: None,
                },
            );
            assert_eq!(s.failures(), n);
            let wait = s.poll_timeout(now).expect("retry") - now;
            let ceiling = (secs(30) * 2u32.pow(n)).min(secs(1800));
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "seed {seed} failure {n}: waited {wait:?}, ceiling {ceiling:?}"
            );
            // Nothing goes out early: no busy loop against a registrar that refuses.
            assert_eq!(s.poll_action(now + wait - Duration::from_millis(1)), None);
            now += wait;
        }
    }
}

#[test]
fn jitter_spreads_gateways_restarted_together() {
    let t0 = Instant::now();
    let waits: std::collections::BTreeSet<Duration> = (0..20)
        .map(|seed| {
            let mut s = Schedule::new(settings(), seed);
            s.poll_action(t0);
            s.on_outcome(
                t0,
                Outcome::NoResponse {
                    reason: "timeout".into(),
                },
            );
            s.poll_timeout(t0).expect("retry") - t0
        })
        .collect();
    assert!(waits.len() >= 18, "{waits:?}");
    // The same seed, the same wait: a test on this clock is repeatable.
    let wait = |seed| {
        let mut s = Schedule::new(settings(), seed);
        s.poll_action(t0);
        s.on_outcome(
            t0,
            Outcome::NoResponse {
                reason: "timeout".into(),
            },
        );
        s.poll_timeout(t0)
    };
    assert_eq!(wait(7), wait(7));
}

#[test]
fn retry_after_is_honoured_and_a_success_resets_the_count() {
    let t0 = Instant::now();
    let mut s = Schedule::new(settings(), 3);
    s.poll_action(t0);
    s.on_outcome(
        t0,
        Outcome::Rejected {
            status: 503,
            reason: "Service Unavailable".into(),
            retry_after: Some(900),
        },
    );
    assert!(s.poll_timeout(t0).expect("retry") >= t0 + secs(900));
    let t1 = t0 + secs(900);
    s.poll_action(t1);
    s.on_outcome(t1, Outcome::Registered { granted: 3600 });
    assert_eq!(s.failures(), 0);
    // The next failure starts again from the base.
    let t2 = t1 + secs(3540);
    assert!(s.poll_action(t2).is_some());
    s.on_outcome(
        t2,
        Outcome::NoResponse {
            reason: "timeout".into(),
        },
    );
    assert!(s.poll_timeout(t2).expect("retry") <= t2 + secs(60));
}

#[test]
fn a_failed_refresh_keeps_the_binding_until_it_lapses() {
    let t0 = Instant::now();
    let mut s = Schedule::new(settings(), 3);
    s.poll_action(t0);
    s.on_outcome(t0, Outcome::Registered { granted: 120 });
    let t1 = t0 + secs(60);
    assert!(s.poll_action(t1).is_some());
    s.on_outcome(
        t1,
        Outcome::NoResponse {
            reason: "timeout".into(),
        },
    );
    assert_eq!(s.state().name(), "failed");
    assert!(s.bound(t0 + secs(119)));
    assert!(!s.bound(t0 + secs(120)));
}

#[test]
fn a_2xx_that_binds_nothing_is_a_failure() {
    let t0 = Instant::now();
    let mut s = Schedule::new(settings(), 3);
    s.poll_action(t0);
    s.on_outcome(t0, Outcome::Registered { granted: 0 });
    assert!(!s.bound(t0));
    assert_eq!(s.state().name(), "failed");
}

#[test]
fn drain_unregisters_a_binding_once_and_then_sends_nothing() {
    let t0 = Instant::now();
    let mut s = Schedule::new(settings(), 3);
    s.poll_action(t0);
    s.on_outcome(t0, Outcome::Registered { granted: 3600 });
    s.drain();
    assert_eq!(s.poll_timeout(t0), Some(t0));
    assert_eq!(s.poll_action(t0), Some(Action::Unregister));
    assert!(!s.drained());
    // Even a failed un-REGISTER ends it: the binding lapses on its own.
    s.on_outcome(
        t0,
        Outcome::NoResponse {
            reason: "timeout".into(),
        },
    );
    assert!(s.drained());
    assert!(!s.bound(t0));
    assert_eq!(s.poll_action(t0 + secs(10_000)), None);
    assert_eq!(s.poll_timeout(t0), None);
}

#[test]
fn drain_with_nothing_bound_sends_nothing() {
    let t0 = Instant::now();
    let mut s = Schedule::new(settings(), 3);
    s.poll_action(t0);
    s.on_outcome(
        t0,
        Outcome::Rejected {
            status: 403,
            reason: "Forbidden".into(),
            retry_after: None,
        },
    );
    s.drain();
    assert_eq!(s.poll_action(t0), None);
    assert!(s.drained());
}

#[test]
fn drain_while_a_register_is_out_unregisters_after_its_answer() {
    let t0 = Instant::now();
    let mut s = Schedule::new(settings(), 3);
    s.poll_action(t0);
    s.drain();
    assert_eq!(s.poll_action(t0), None);
    s.on_outcome(t0, Outcome::Registered { granted: 3600 });
    assert_eq!(s.poll_action(t0), Some(Action::Unregister));
}
