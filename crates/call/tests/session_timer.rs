//! Session timers (RFC 4028) on the virtual clock: the controller refreshes when it is the
//! refresher, ends a call whose refreshes stop, renews on the peer's refreshes, and answers a
//! refresh below our minimum with 422.

// Test support code: a failed setup step should panic with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{Harness, answer_sdp, config, offer};
use warmline_call::{CallAction, CallEvent, EndReason};
use warmline_signaling::session_timer::{Agreed, Asked, Refresher};

/// An answered, ACKed call with this session timer agreed by its INVITE.
fn call_with(expires: u32, we_refresh: bool) -> Harness {
    let mut cfg = config(0, 3);
    cfg.session_timer = Some(Agreed {
        expires,
        we_refresh,
        peer_supports: true,
    });
    let mut h = Harness::with(cfg);
    let acts = h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    assert!(matches!(acts[0], CallAction::Answer { .. }), "{acts:?}");
    h.send(CallEvent::Ack);
    h
}

fn refresh_from_peer(expires: u32) -> Asked {
    Asked {
        expires: Some(expires),
        refresher: Some(Refresher::Uac),
        min_se: None,
        supports_timer: true,
    }
}

fn reinvites(acts: &[CallAction]) -> usize {
    acts.iter()
        .filter(|a| matches!(a, CallAction::SendReInvite { .. }))
        .count()
}

#[test]
fn our_2xx_says_what_was_agreed() {
    let h = call_with(1800, false);
    assert_eq!(
        h.ctl.session_response_headers(),
        [
            ("Session-Expires", "1800;refresher=uac".to_string()),
            ("Require", "timer".to_string())
        ]
    );
    // No timer agreed: nothing said, nothing armed.
    let plain = Harness::answered_call();
    assert!(plain.ctl.session_response_headers().is_empty());
    assert_eq!(plain.ctl.poll_timeout(), None);
}

fn ended_by_the_timer(acts: &[CallAction]) -> bool {
    acts.iter().any(|a| matches!(a, CallAction::SendBye))
        && acts.contains(&CallAction::Ended {
            reason: EndReason::SessionExpired,
        })
}

fn ok_with(timer: Asked) -> CallEvent {
    CallEvent::ReInviteResponse {
        timer,
        status: 200,
        sdp: Some(answer_sdp("sendrecv")),
    }
}

#[test]
fn as_refresher_we_reinvite_at_half_time_and_end_the_call_when_none_is_answered() {
    let mut h = call_with(90, true);
    // 45 s after the 2xx: a refresh naming us (its uac) as refresher.
    assert_eq!(reinvites(&h.advance(Duration::from_millis(44_999))), 0);
    assert_eq!(reinvites(&h.advance(Duration::from_millis(1))), 1);
    assert_eq!(
        h.ctl.session_request_headers(),
        [
            ("Session-Expires", "90;refresher=uac".to_string()),
            ("Min-SE", "90".to_string()),
            ("Supported", "timer".to_string())
        ]
    );
    // Answered at 47 s: the next refresh is 45 s after that 2xx, not after the last one.
    h.advance(Duration::from_secs(2));
    h.send(ok_with(refresh_from_peer(90)));
    assert_eq!(reinvites(&h.advance(Duration::from_millis(44_999))), 0);
    assert_eq!(reinvites(&h.advance(Duration::from_millis(1))), 1);
    h.send(ok_with(refresh_from_peer(90)));
    // Two refreshes lived through. The third (at 137 s) is never answered: the session
    // dies at 92 + 90 s, with a BYE.
    assert_eq!(reinvites(&h.advance(Duration::from_secs(45))), 1);
    assert!(!ended_by_the_timer(
        &h.advance(Duration::from_millis(44_999))
    ));
    assert_eq!(h.ctl.snapshot().state, "confirmed");
    assert!(ended_by_the_timer(&h.advance(Duration::from_millis(1))));
    assert!(h.ctl.is_ended());
}

#[test]
fn a_refused_refresh_is_retried_halfway_to_expiry_not_at_once() {
    let mut h = call_with(90, true);
    assert_eq!(reinvites(&h.advance(Duration::from_secs(45))), 1);
    h.send(CallEvent::ReInviteResponse {
        timer: Asked::default(),
        status: 500,
        sdp: None,
    });
    assert_eq!(reinvites(&h.advance(Duration::from_millis(22_499))), 0);
    assert_eq!(reinvites(&h.advance(Duration::from_millis(1))), 1);
    assert!(ended_by_the_timer(
        &h.advance(Duration::from_millis(22_500))
    ));
}

#[test]
fn the_peers_refreshes_keep_the_call_and_their_absence_ends_it() {
    let mut h = call_with(90, false);
    // The peer refreshes: we send none, and the session is renewed from our 2xx.
    assert_eq!(reinvites(&h.advance(Duration::from_secs(50))), 0);
    let acts = h.send(CallEvent::ReOffer {
        timer: refresh_from_peer(90),
        sdp: Some(offer("sendrecv", 2)),
    });
    assert!(
        matches!(acts[0], CallAction::AnswerReOffer { status: 200, .. }),
        "{acts:?}"
    );
    assert_eq!(
        h.ctl.session_response_headers()[0],
        ("Session-Expires", "90;refresher=uac".to_string())
    );
    // No refresh since: ended a third of the interval early (60 s after it), with a BYE.
    let acts = h.advance(Duration::from_millis(59_999));
    assert!(!ended_by_the_timer(&acts), "{acts:?}");
    assert!(ended_by_the_timer(&h.advance(Duration::from_millis(1))));
}

#[test]
fn a_refresh_below_our_minimum_is_422_and_changes_nothing() {
    let mut h = call_with(90, false);
    h.advance(Duration::from_secs(10));
    let acts = h.send(CallEvent::ReOffer {
        timer: refresh_from_peer(30),
        sdp: Some(offer("sendrecv", 2)),
    });
    assert_eq!(
        acts,
        [CallAction::AnswerReOffer {
            status: 422,
            sdp: None,
            warning: None
        }]
    );
    assert_eq!(h.ctl.min_se(), 90);
    // The session still dies 60 s after our 2xx, not after the refused refresh.
    assert!(!ended_by_the_timer(
        &h.advance(Duration::from_millis(49_999))
    ));
    assert!(ended_by_the_timer(&h.advance(Duration::from_millis(1))));
}

#[test]
fn a_reinvite_without_session_expires_turns_the_timer_off() {
    let mut h = call_with(90, false);
    let acts = h.send(CallEvent::ReOffer {
        timer: Asked::default(),
        sdp: Some(offer("sendrecv", 2)),
    });
    assert!(matches!(
        acts[0],
        CallAction::AnswerReOffer { status: 200, .. }
    ));
    assert!(h.ctl.session_response_headers().is_empty());
    assert_eq!(h.ctl.poll_timeout(), None);
    assert!(h.advance(Duration::from_secs(600)).is_empty());
}

#[test]
fn a_peer_refresh_can_start_a_timer_the_invite_did_not_ask_for() {
    let mut h = Harness::answered_call();
    let acts = h.send(CallEvent::ReOffer {
        timer: refresh_from_peer(120),
        sdp: Some(offer("sendrecv", 2)),
    });
    assert!(matches!(
        acts[0],
        CallAction::AnswerReOffer { status: 200, .. }
    ));
    // 120 s, refreshed by the peer: over 32 s before that (a third would be more).
    assert!(!ended_by_the_timer(
        &h.advance(Duration::from_millis(87_999))
    ));
    assert!(ended_by_the_timer(&h.advance(Duration::from_millis(1))));
}

#[test]
fn a_bodyless_update_refreshes_and_is_answered_without_sdp() {
    let mut h = call_with(90, false);
    h.advance(Duration::from_secs(50));
    let acts = h.send(CallEvent::Refresh {
        timer: refresh_from_peer(90),
    });
    assert_eq!(
        acts,
        [CallAction::AnswerReOffer {
            status: 200,
            sdp: None,
            warning: None
        }]
    );
    // Renewed from this 2xx: 60 s on, not 10.
    assert!(!ended_by_the_timer(
        &h.advance(Duration::from_millis(59_999))
    ));
    assert!(ended_by_the_timer(&h.advance(Duration::from_millis(1))));
}

#[test]
fn on_a_call_we_placed_the_2xx_says_who_refreshes() {
    let answered = |refresher| {
        let mut h = Harness::outbound(1);
        h.drain();
        h.send(CallEvent::Answered {
            timer: Asked {
                expires: Some(90),
                refresher: Some(refresher),
                min_se: None,
                supports_timer: true,
            },
            sdp: Some(answer_sdp("sendrecv")),
        });
        h
    };
    // refresher=uac names us, the INVITE's sender: we re-INVITE at half time.
    let mut h = answered(Refresher::Uac);
    assert_eq!(reinvites(&h.advance(Duration::from_millis(44_999))), 0);
    assert_eq!(reinvites(&h.advance(Duration::from_millis(1))), 1);
    // refresher=uas: the callee refreshes, and we end the call when it stops.
    let mut h = answered(Refresher::Uas);
    let acts = h.advance(Duration::from_millis(59_999));
    assert_eq!(reinvites(&acts), 0);
    assert!(!ended_by_the_timer(&acts));
    assert!(ended_by_the_timer(&h.advance(Duration::from_millis(1))));
    // A 2xx without Session-Expires: no timer.
    let mut h = Harness::outbound(1);
    h.drain();
    h.send(CallEvent::Answered {
        timer: Asked::default(),
        sdp: Some(answer_sdp("sendrecv")),
    });
    assert_eq!(h.ctl.poll_timeout(), None);
}
