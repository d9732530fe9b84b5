//! The call flows of the SIP foundation, driven on a virtual clock without sockets:
//! answer, ring-then-answer, hold, resume, bye, cancel, glare, and the outbound outcomes.

// Test support code: a failed setup step should panic with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::{Harness, answer_sdp, config, offer, turn_saying};
use warmline_call::{CallAction, CallEvent, Controller, EndReason, OriginateOutcome, Prompt, Role};
use warmline_signaling::{CodecName, Direction};

fn sdp_of(a: &CallAction) -> &str {
    match a {
        CallAction::Answer { sdp }
        | CallAction::SendReInvite { sdp }
        | CallAction::SendInvite { sdp } => sdp,
        CallAction::AnswerReOffer { sdp: Some(sdp), .. } => sdp,
        other => panic!("no sdp in {other:?}"),
    }
}

#[test]
fn answer_then_peer_bye() {
    let mut h = Harness::inbound(0);
    let acts = h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert!(sdp_of(&acts[0]).contains("m=audio 20000 RTP/AVP 0 101\r\n"));
    match &acts[1] {
        CallAction::MediaChanged(n) => {
            assert_eq!(n.codec.name, CodecName::Pcmu);
            assert_eq!(n.remote, Some("127.0.0.1:6000".parse().unwrap()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.ctl.snapshot().state, "answered");
    h.send(CallEvent::Ack);
    let acts = h.send(CallEvent::PeerBye);
    assert_eq!(
        acts,
        [CallAction::Ended {
            reason: EndReason::PeerBye
        }]
    );
    assert!(h.ctl.is_ended());
    assert_eq!(h.ctl.poll_timeout(), None);
}

#[test]
fn no_common_codec_is_488_with_warning() {
    let mut h = Harness::inbound(0);
    let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let acts = h.send(CallEvent::Invite {
        sdp: Some(g729.into()),
    });
    match &acts[0] {
        CallAction::Reject {
            status: 488,
            warning: Some(w),
            ..
        } => {
            assert!(w.starts_with("305 warmline \""), "{w}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        acts[1],
        CallAction::Ended {
            reason: EndReason::Rejected
        }
    );
}

#[test]
fn ring_then_answer_on_the_virtual_clock() {
    let mut h = Harness::inbound(1500);
    assert_eq!(
        h.send(CallEvent::Invite {
            sdp: Some(offer("sendrecv", 1))
        }),
        [CallAction::Ring]
    );
    assert!(h.advance(Duration::from_millis(1499)).is_empty());
    let acts = h.advance(Duration::from_millis(1));
    assert!(matches!(acts[0], CallAction::Answer { .. }), "{acts:?}");
}

#[test]
fn cancel_while_ringing_ends_without_answer() {
    let mut h = Harness::inbound(5000);
    h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    h.advance(Duration::from_secs(1));
    let acts = h.send(CallEvent::PeerCancel);
    assert_eq!(
        acts,
        [CallAction::Ended {
            reason: EndReason::PeerCancel
        }]
    );
    // the answer timer must not fire afterwards
    assert!(h.advance(Duration::from_secs(10)).is_empty());
}

#[test]
fn delayed_offer_is_answered_with_a_single_codec_offer() {
    let mut h = Harness::inbound(0);
    let acts = h.send(CallEvent::Invite { sdp: None });
    let sdp = sdp_of(&acts[0]);
    assert!(sdp.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{sdp}");
    match &acts[1] {
        CallAction::MediaChanged(n) => assert_eq!(n.remote, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn peer_hold_and_resume_per_rfc_6337() {
    let mut h = Harness::answered_call();
    let acts = h.send(CallEvent::ReOffer {
        timer: Default::default(),
        sdp: Some(offer("sendonly", 2)),
    });
    assert!(sdp_of(&acts[0]).contains("a=recvonly\r\n"));
    assert!(
        matches!(acts[1], CallAction::MediaChanged(ref n) if n.direction == Direction::RecvOnly)
    );
    assert!(h.ctl.snapshot().remote_hold);

    let acts = h.send(CallEvent::ReOffer {
        timer: Default::default(),
        sdp: Some(offer("inactive", 3)),
    });
    assert!(sdp_of(&acts[0]).contains("a=inactive\r\n"));

    let acts = h.send(CallEvent::ReOffer {
        timer: Default::default(),
        sdp: Some(offer("sendrecv", 4)),
    });
    assert!(sdp_of(&acts[0]).contains("a=sendrecv\r\n"));
    assert!(!h.ctl.snapshot().remote_hold);
}

#[test]
fn offerless_reinvite_gets_our_current_offer() {
    let mut h = Harness::answered_call();
    let acts = h.send(CallEvent::ReOffer {
        timer: Default::default(),
        sdp: None,
    });
    let sdp = sdp_of(&acts[0]);
    assert!(
        sdp.contains("a=sendrecv\r\n") && sdp.contains("o=warmline 7 7 "),
        "{sdp}"
    );
}

#[test]
fn local_hold_and_resume_send_reinvites() {
    let mut h = Harness::answered_call();
    let acts = h.signal(CallEvent::Hold);
    assert!(sdp_of(&acts[0]).contains("a=sendonly\r\n"), "{acts:?}");
    assert!(h.ctl.snapshot().reinvite_pending);
    let acts = h.send(CallEvent::ReInviteResponse {
        timer: Default::default(),
        status: 200,
        sdp: Some(answer_sdp("recvonly")),
    });
    assert!(
        matches!(acts[0], CallAction::MediaChanged(ref n) if n.direction == Direction::SendOnly)
    );
    assert!(h.ctl.snapshot().local_hold);

    let acts = h.signal(CallEvent::Resume);
    assert!(sdp_of(&acts[0]).contains("a=sendrecv\r\n"));
    let acts = h.send(CallEvent::ReInviteResponse {
        timer: Default::default(),
        status: 200,
        sdp: Some(answer_sdp("sendrecv")),
    });
    assert!(
        matches!(acts[0], CallAction::MediaChanged(ref n) if n.direction == Direction::SendRecv)
    );
}

#[test]
fn hold_requested_before_ack_waits_for_confirmation() {
    let mut h = Harness::inbound(0);
    h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    assert!(h.signal(CallEvent::Hold).is_empty());
    let acts = h.send(CallEvent::Ack);
    assert!(matches!(acts[0], CallAction::SendReInvite { .. }));
}

#[test]
fn glare_peer_reinvite_while_ours_is_pending_gets_491() {
    let mut h = Harness::answered_call();
    h.signal(CallEvent::Hold);
    let acts = h.send(CallEvent::ReOffer {
        timer: Default::default(),
        sdp: Some(offer("sendonly", 2)),
    });
    assert_eq!(
        acts,
        [CallAction::AnswerReOffer {
            status: 491,
            sdp: None,
            warning: None
        }]
    );
}

#[test]
fn glare_our_reinvite_gets_491_and_retries_within_rfc_window() {
    // Inbound: we do not own the Call-ID, so the retry comes within 0..=2 s.
    for seed in [1_u64, 2, 3, 4, 5, 1234, 987_654] {
        let mut h = Harness {
            now: Instant::now(),
            ctl: Controller::inbound(config(0, seed)),
        };
        h.send(CallEvent::Invite {
            sdp: Some(offer("sendrecv", 1)),
        });
        h.send(CallEvent::Ack);
        h.signal(CallEvent::Hold);
        let start = h.now;
        assert!(
            h.send(CallEvent::ReInviteResponse {
                timer: Default::default(),
                status: 491,
                sdp: None
            })
            .is_empty()
        );
        let due = h.ctl.poll_timeout().expect("retry timer");
        assert!(due - start <= Duration::from_secs(2), "seed {seed}");
        let acts = h.advance(Duration::from_millis(2001));
        assert!(sdp_of(&acts[0]).contains("a=sendonly\r\n"));
    }
}

#[test]
fn glare_owner_waits_between_2_1_and_4_seconds() {
    let mut h = Harness::outbound(77);
    h.drain();
    h.send(CallEvent::Answered {
        timer: Default::default(),
        sdp: Some(answer_sdp("sendrecv")),
    });
    h.signal(CallEvent::Hold);
    let start = h.now;
    h.send(CallEvent::ReInviteResponse {
        timer: Default::default(),
        status: 491,
        sdp: None,
    });
    let wait = h.ctl.poll_timeout().unwrap() - start;
    assert!(
        wait >= Duration::from_millis(2100) && wait <= Duration::from_secs(4),
        "{wait:?}"
    );
}

#[test]
fn glare_retry_is_skipped_when_wish_reverted_meanwhile() {
    let mut h = Harness::answered_call();
    h.signal(CallEvent::Hold);
    h.send(CallEvent::ReInviteResponse {
        timer: Default::default(),
        status: 491,
        sdp: None,
    });
    h.signal(CallEvent::Resume);
    assert!(
        h.advance(Duration::from_secs(3)).is_empty(),
        "nothing left to change"
    );
}

#[test]
fn refused_hold_is_not_retried_forever() {
    let mut h = Harness::answered_call();
    h.signal(CallEvent::Hold);
    assert!(
        h.send(CallEvent::ReInviteResponse {
            timer: Default::default(),
            status: 488,
            sdp: None
        })
        .is_empty()
    );
    assert!(h.advance(Duration::from_secs(60)).is_empty());
    // resuming matches the settled state (nothing to send); a fresh hold wish is tried again
    assert!(h.signal(CallEvent::Resume).is_empty());
    let acts = h.signal(CallEvent::Hold);
    assert!(
        matches!(acts[0], CallAction::SendReInvite { .. }),
        "{acts:?}"
    );
}

#[test]
fn reinvite_481_ends_the_dialog() {
    let mut h = Harness::answered_call();
    h.signal(CallEvent::Hold);
    let acts = h.send(CallEvent::ReInviteResponse {
        timer: Default::default(),
        status: 481,
        sdp: None,
    });
    assert_eq!(
        acts,
        [
            CallAction::SendBye,
            CallAction::Ended {
                reason: EndReason::DialogFailed
            }
        ]
    );
}

#[test]
fn local_hangup_sends_bye() {
    let mut h = Harness::answered_call();
    let acts = h.send(CallEvent::Hangup);
    assert_eq!(
        acts,
        [
            CallAction::SendBye,
            CallAction::Ended {
                reason: EndReason::LocalBye
            }
        ]
    );
}

#[test]
fn outbound_answered() {
    let mut h = Harness::outbound(1);
    assert_eq!(h.ctl.role(), Role::Outbound);
    let acts = h.drain();
    assert!(sdp_of(&acts[0]).contains("m=audio 20000 RTP/AVP 0 8 9 111 101 102\r\n"));
    h.send(CallEvent::Progress { status: 180 });
    let acts = h.send(CallEvent::Answered {
        timer: Default::default(),
        sdp: Some(answer_sdp("sendrecv")),
    });
    assert!(matches!(acts[0], CallAction::MediaChanged(_)));
    assert_eq!(acts[1], CallAction::Outcome(OriginateOutcome::Answered));
    assert!(
        h.advance(Duration::from_secs(60)).is_empty(),
        "ring timer must be gone"
    );
}

#[test]
fn outbound_ring_timeout_cancels_with_no_answer() {
    let mut h = Harness::outbound(1);
    h.drain();
    h.send(CallEvent::Progress { status: 180 });
    assert!(h.advance(Duration::from_millis(19_999)).is_empty());
    let acts = h.advance(Duration::from_millis(1));
    assert_eq!(
        acts,
        [
            CallAction::CancelInvite,
            CallAction::Outcome(OriginateOutcome::NoAnswer)
        ]
    );
    let acts = h.send(CallEvent::Failed { status: 487 });
    assert_eq!(
        acts,
        [CallAction::Ended {
            reason: EndReason::NotAnswered
        }]
    );
}

#[test]
fn outbound_answer_racing_cancel_is_hung_up() {
    let mut h = Harness::outbound(1);
    h.drain();
    h.advance(Duration::from_secs(20));
    let acts = h.send(CallEvent::Answered {
        timer: Default::default(),
        sdp: Some(answer_sdp("sendrecv")),
    });
    assert_eq!(
        acts,
        [
            CallAction::SendBye,
            CallAction::Ended {
                reason: EndReason::NotAnswered
            }
        ]
    );
}

#[test]
fn outbound_typed_failures() {
    let cases = [
        (486, OriginateOutcome::Busy { status: 486 }),
        (600, OriginateOutcome::Busy { status: 600 }),
        (480, OriginateOutcome::NoAnswer),
        (
            603,
            OriginateOutcome::Rejected {
                status: 603,
                reason: "Decline".into(),
            },
        ),
        (
            404,
            OriginateOutcome::Rejected {
                status: 404,
                reason: "Not Found".into(),
            },
        ),
    ];
    for (status, expect) in cases {
        let mut h = Harness::outbound(1);
        h.drain();
        let acts = h.send(CallEvent::Failed { status });
        assert_eq!(acts[0], CallAction::Outcome(expect), "status {status}");
    }
    let mut h = Harness::outbound(1);
    h.drain();
    let acts = h.send(CallEvent::Unreachable {
        reason: "timer B".into(),
    });
    assert_eq!(
        acts[0],
        CallAction::Outcome(OriginateOutcome::Unreachable {
            reason: "timer B".into()
        })
    );
}

#[test]
fn outbound_answer_without_usable_sdp_is_hung_up() {
    let mut h = Harness::outbound(1);
    h.drain();
    let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 18\r\n";
    let acts = h.send(CallEvent::Answered {
        timer: Default::default(),
        sdp: Some(g729.into()),
    });
    assert_eq!(acts[0], CallAction::SendBye);
    assert!(matches!(
        acts[1],
        CallAction::Outcome(OriginateOutcome::Rejected { status: 488, .. })
    ));
}

#[test]
fn outbound_hangup_before_answer_cancels() {
    let mut h = Harness::outbound(1);
    h.drain();
    let acts = h.send(CallEvent::Hangup);
    assert_eq!(
        acts,
        [
            CallAction::CancelInvite,
            CallAction::Outcome(OriginateOutcome::Cancelled)
        ]
    );
}

#[test]
fn events_and_actions_serialize_for_the_audit_trail() {
    let ev = serde_json::to_string(&CallEvent::ReInviteResponse {
        timer: Default::default(),
        status: 491,
        sdp: None,
    })
    .unwrap();
    assert_eq!(
        ev,
        r#"{"event":"re_invite_response","status":491,"sdp":null}"#
    );
    let act = serde_json::to_string(&CallAction::Outcome(OriginateOutcome::Busy { status: 486 }))
        .unwrap();
    assert_eq!(act, r#"{"action":"outcome","outcome":"busy","status":486}"#);
}

#[test]
fn b2bua_leg_rings_until_told_then_answers() {
    let mut cfg = config(0, 1);
    cfg.answer_on_command = true;
    let mut h = Harness::with(cfg);
    let acts = h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    assert_eq!(acts, [CallAction::Ring]);
    assert_eq!(
        h.ctl.pending_media().map(|n| n.codec.name),
        Some(CodecName::Pcmu)
    );
    assert!(
        h.advance(Duration::from_secs(60)).is_empty(),
        "no timer answers it"
    );
    let acts = h.send(CallEvent::AnswerNow);
    assert!(matches!(acts[0], CallAction::Answer { .. }));
    assert!(matches!(acts[1], CallAction::MediaChanged(_)));
}

#[test]
fn b2bua_leg_refused_with_the_far_ends_status() {
    let mut cfg = config(0, 1);
    cfg.answer_on_command = true;
    let mut h = Harness::with(cfg);
    h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    let acts = h.send(CallEvent::Refuse { status: 486 });
    assert!(matches!(acts[0], CallAction::Reject { status: 486, .. }));
    assert_eq!(
        acts[1],
        CallAction::Ended {
            reason: EndReason::Rejected
        }
    );
}

#[test]
fn greeting_plays_once_answered() {
    let mut cfg = config(0, 1);
    cfg.greeting = true;
    let mut h = Harness::with(cfg);
    let acts = h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    assert_eq!(
        acts[2],
        CallAction::Play {
            prompt: Prompt::Greeting,
            id: 1
        }
    );
}

#[test]
fn a_silent_held_peer_is_asked_once_at_a_time_and_ended_when_its_dialog_is_gone() {
    let mut h = Harness::answered_call();
    assert_eq!(
        h.send(CallEvent::MediaQuiet { silent_ms: 60_000 }),
        [CallAction::Probe]
    );
    // Still waiting on that OPTIONS: the next silence asks nothing more.
    assert!(
        h.send(CallEvent::MediaQuiet { silent_ms: 120_000 })
            .is_empty()
    );
    // Any answer but 408 and 481 is a peer still there, 405 and 501 included.
    for status in [200, 405, 501] {
        assert!(
            h.send(CallEvent::ProbeAnswered {
                status: Some(status)
            })
            .is_empty()
        );
        assert_eq!(
            h.send(CallEvent::MediaQuiet { silent_ms: 0 }),
            [CallAction::Probe]
        );
    }
    assert_eq!(
        h.send(CallEvent::ProbeAnswered { status: Some(481) }),
        [
            CallAction::SendBye,
            CallAction::Ended {
                reason: EndReason::PeerGone
            }
        ]
    );
    assert_eq!(EndReason::PeerGone.code(), "call.peer_gone");
    // No answer at all (Timer F) ends it the same way.
    let mut h = Harness::answered_call();
    h.send(CallEvent::MediaQuiet { silent_ms: 60_000 });
    assert_eq!(
        h.send(CallEvent::ProbeAnswered { status: None }),
        [
            CallAction::SendBye,
            CallAction::Ended {
                reason: EndReason::PeerGone
            }
        ]
    );
}

#[test]
fn media_timeout_ends_the_call_with_bye() {
    let mut h = Harness::answered_call();
    let acts = h.send(CallEvent::MediaTimeout { silent_ms: 30_000 });
    assert_eq!(
        acts,
        [
            CallAction::SendBye,
            CallAction::Ended {
                reason: EndReason::RtpTimeout
            }
        ]
    );
    assert_eq!(EndReason::RtpTimeout.code(), "call.rtp_timeout");
}

#[test]
fn local_hold_starts_and_stops_hold_audio() {
    let mut h = Harness::answered_call();
    let acts = h.send(CallEvent::Hold);
    assert_eq!(acts[0], CallAction::HoldAudio { on: true });
    assert!(matches!(acts[1], CallAction::SendReInvite { .. }));
    h.send(CallEvent::ReInviteResponse {
        timer: Default::default(),
        status: 200,
        sdp: Some(answer_sdp("recvonly")),
    });
    let acts = h.send(CallEvent::Resume);
    assert_eq!(acts[0], CallAction::HoldAudio { on: false });
    // Holding twice does not restart the audio.
    assert!(
        !h.send(CallEvent::Resume)
            .contains(&CallAction::HoldAudio { on: false })
    );
}

#[test]
fn dtmf_digits_are_kept_in_order() {
    let mut h = Harness::answered_call();
    for d in ['1', '2', '#'] {
        assert!(h.send(CallEvent::Dtmf { digit: d }).is_empty());
    }
    assert_eq!(h.ctl.digits(), "12#");
}

#[test]
fn caller_speech_cuts_a_bargeable_greeting_but_not_the_disclosure() {
    for barge in [true, false] {
        let mut cfg = config(0, 1);
        cfg.greeting = true;
        cfg.greeting_barge_in = barge;
        let mut h = Harness::with(cfg);
        h.send(CallEvent::Invite {
            sdp: Some(offer("sendrecv", 1)),
        });
        h.send(CallEvent::Ack);
        let acts = h.send(CallEvent::SpeechStarted);
        assert_eq!(
            acts.contains(&CallAction::StopPlayout),
            barge,
            "barge-in {barge}"
        );
        // Once the prompt is done, speech stops nothing.
        h.send(CallEvent::PlayoutDone {
            id: 1,
            interrupted: barge,
        });
        assert!(h.send(CallEvent::SpeechStarted).is_empty());
    }
}

#[test]
fn transcript_turns_are_kept_for_the_policy() {
    let mut h = Harness::answered_call();
    for i in 0..60u64 {
        let turn = warmline_speech::TranscriptTurn {
            text: format!("turn {i}"),
            start_ms: i * 1000,
            end_ms: i * 1000 + 500,
            confidence: 0.9,
            words: Vec::new(),
            recognizer: "pocketsphinx".into(),
            latency_ms: 50,
            endpoint_ms: 0,
            prosody: None,
        };
        assert!(
            h.send(CallEvent::Transcript {
                turn: Box::new(turn)
            })
            .is_empty()
        );
    }
    let turns: Vec<_> = h.ctl.turns().map(|t| t.text.clone()).collect();
    assert_eq!(turns.len(), warmline_call::MAX_TURNS);
    assert_eq!(turns.last().map(String::as_str), Some("turn 59"));
}

#[test]
fn policy_runs_over_turns_digits_and_time() {
    let mut cfg = config(0, 1);
    cfg.rules = Some(Vec::new().into()); // the defaults
    let mut h = Harness::with(cfg);
    h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    h.send(CallEvent::Ack);
    assert!(h.send(turn_saying("where is my order")).is_empty());
    h.now += Duration::from_secs(3);
    let acts = h.send(turn_saying("I want to speak to a human"));
    match &acts[..] {
        [CallAction::Escalate { trigger, .. }, ..] => {
            assert_eq!(trigger.kind, "explicit_request");
            assert_eq!(trigger.at_ms, 3000);
            assert!(trigger.evidence[0].contains("speak to a human"));
        }
        other => panic!("{other:?}"),
    }
    // Each rule once; another rule still can.
    assert!(h.send(turn_saying("agent please")).is_empty());
    let acts = h.send(CallEvent::Dtmf { digit: '0' });
    assert!(
        matches!(&acts[..], [CallAction::Escalate { trigger, .. }, ..] if trigger.kind == "dtmf")
    );
    assert_eq!(h.ctl.triggers().len(), 2);
}

#[test]
fn elapsed_rule_fires_on_the_virtual_clock() {
    let mut cfg = config(0, 1);
    cfg.rules = Some(
        serde_json::from_value::<Vec<warmline_policy::Rule>>(serde_json::json!([
            {"name": "slow", "kind": "elapsed", "after_s": 30, "disposition": "transfer.elapsed"}
        ]))
        .unwrap()
        .into(),
    );
    let mut h = Harness::with(cfg);
    h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    h.send(CallEvent::Ack);
    assert!(h.advance(Duration::from_millis(29_500)).is_empty());
    let acts = h.advance(Duration::from_secs(1));
    assert!(
        matches!(&acts[..], [CallAction::Escalate { trigger, .. }, ..] if trigger.rule == "slow"),
        "{acts:?}"
    );
}

#[test]
fn no_policy_on_legs_without_rules() {
    let mut h = Harness::answered_call();
    assert!(h.send(turn_saying("get me a human")).is_empty());
}
