//! The assistant's side of a call on the virtual clock: the disclosure, the built-in flow
//! (ask, collect, confirm, re-prompt), barge-in on its prompts, escalation with a briefing,
//! business hours, and the external brain with its fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{Harness, config, offer, says, turn_saying};
use warmline_call::assistant::{Assistant, AssistantConfig};
use warmline_call::brain::{BrainReply, BrainTransfer};
use warmline_call::{CallAction, CallConfig, CallEvent, RoutePlan};
use warmline_policy::Decision;
use warmline_policy::hours::Hours;

/// The `default` route with one agent.
fn staffed() -> RoutePlan {
    RoutePlan {
        targets: vec!["sip:agent@127.0.0.1:5062".into()],
        ..RoutePlan::unstaffed("default")
    }
}

fn assistant_config() -> CallConfig {
    let mut cfg = config(0, 1);
    cfg.routes = Arc::new(vec![staffed()]);
    cfg.greeting = true;
    cfg.rules = Some(Vec::new().into()); // the defaults
    cfg.assistant = Some(Assistant::new(AssistantConfig::default()).unwrap());
    cfg.caller_name = Some("Ada Lovelace".into());
    cfg
}

fn answered(cfg: CallConfig) -> Harness {
    let mut h = Harness::with(cfg);
    let acts = h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    assert!(
        acts.iter()
            .any(|a| matches!(a, CallAction::Play { id: 1, .. })),
        "{acts:?}"
    );
    h.send(CallEvent::Ack);
    h
}

fn say_id(acts: &[CallAction]) -> u64 {
    acts.iter()
        .find_map(|a| match a {
            CallAction::Say { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a Say")
}

/// Greeting over, reason given, number collected and confirmed.
fn through_the_flow(h: &mut Harness) {
    let acts = h.send(CallEvent::PlayoutDone {
        id: 1,
        interrupted: false,
    });
    assert!(matches!(&acts[0], CallAction::Audit(e)
        if e.code() == "disclosure" && e.detail().contains("played in full")));
    assert_eq!(says(&acts), ["Please tell me briefly why you are calling."]);
    h.now += Duration::from_secs(4);
    let acts = h.send(turn_saying("I was charged twice for my order"));
    assert_eq!(says(&acts), ["What is your account or order number?"]);
    let asked = say_id(&acts);
    // The caller answers over the question: barge-in stops it.
    assert_eq!(h.send(CallEvent::SpeechStarted), [CallAction::StopPlayout]);
    h.send(CallEvent::PlayoutDone {
        id: asked,
        interrupted: true,
    });
    let acts = h.send(turn_saying("it is four five six seven"));
    assert_eq!(says(&acts), ["I heard 4 5 6 7. Is that right?"]);
    let acts = h.send(turn_saying("yes"));
    assert_eq!(
        says(&acts),
        ["Thank you, I have what I need. Is there anything else I can help with?"]
    );
    let snap = h.ctl.snapshot();
    assert_eq!(
        snap.fields.get("account_number").map(String::as_str),
        Some("4567")
    );
    // The built-in flow keeps the caller's words; it does not claim an intent.
    assert_eq!(
        snap.stated_reason.as_deref(),
        Some("I was charged twice for my order")
    );
    assert!(snap.intent.is_none());
}

#[test]
fn the_assistant_asks_after_the_disclosure_and_collects_a_confirmed_number() {
    let mut h = answered(assistant_config());
    // Talking over the disclosure does not cut it.
    assert!(h.send(CallEvent::SpeechStarted).is_empty());
    through_the_flow(&mut h);
}

#[test]
fn asking_for_a_person_escalates_with_a_briefing_and_silences_the_assistant() {
    let mut h = answered(assistant_config());
    through_the_flow(&mut h);
    h.now += Duration::from_secs(5);
    let acts = h.send(turn_saying("I want to speak to a human"));
    let (trigger, briefing, decision) = match &acts[..] {
        [
            CallAction::Escalate {
                trigger,
                briefing,
                decision,
                ..
            },
            ..,
        ] => (trigger, briefing, decision),
        other => panic!("{other:?}"),
    };
    assert_eq!(trigger.kind, "explicit_request");
    assert_eq!(*decision, Decision::Transfer);
    // The assistant says nothing more; the transfer's own prompt follows.
    assert_eq!(
        says(&acts),
        [
            "Of course. I'm connecting you with a specialist who has your details. This should take about 20 seconds."
        ]
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, CallAction::DialAgent { .. }))
    );
    // Who, what, what was collected, why, next step.
    for part in [
        "Ada Lovelace",
        "charged twice for my order",
        "4567",
        "asked to speak to a person",
        "Greet the caller by name",
    ] {
        assert!(
            briefing.spoken.contains(part),
            "{part}: {}",
            briefing.spoken
        );
    }
    assert!(briefing.summary.contains("rule asked_for_person"));
    // The person takes it from here: no more assistant turns.
    assert!(says(&h.send(turn_saying("hello?"))).is_empty());
    assert_eq!(
        briefing.spoken.matches(". ").count() + 1,
        3,
        "{}",
        briefing.spoken
    );
}

#[test]
fn three_unintelligible_turns_transfer_on_repeated_failure() {
    let mut h = answered(assistant_config());
    h.send(CallEvent::PlayoutDone {
        id: 1,
        interrupted: false,
    });
    for _ in 0..2 {
        let acts = h.send(turn_saying(""));
        assert_eq!(
            says(&acts),
            ["Sorry, I didn't catch that. Please tell me briefly why you are calling."]
        );
    }
    let acts = h.send(turn_saying(""));
    match &acts[..] {
        // The re-prompt still playing stops; no new one follows the transfer decision.
        [
            CallAction::Escalate { trigger, .. },
            CallAction::StopPlayout,
            ..,
        ] => {
            assert_eq!(trigger.kind, "repeated_failure");
            assert_eq!(trigger.disposition, "transfer.repeated_failure");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !says(&acts).iter().any(|s| s.contains("didn't catch")),
        "{acts:?}"
    );
}

#[test]
fn out_of_hours_the_caller_is_promised_a_callback_instead_of_a_transfer() {
    let mut cfg = assistant_config();
    cfg.routes = Arc::new(vec![RoutePlan {
        hours: Some(Hours {
            days: vec![1, 2, 3, 4, 5],
            open: "09:00".into(),
            close: "17:00".into(),
        }),
        ..staffed()
    }]);
    // Saturday 21 November 2026, 10:00 UTC.
    let h0 = std::time::Instant::now();
    cfg.wall_clock = Some((h0, "2026-11-21T10:00:00Z".parse().unwrap()));
    let mut h = answered(cfg);
    h.now = h0 + Duration::from_secs(20);
    let acts = h.send(CallEvent::Dtmf { digit: '0' });
    match &acts[0] {
        CallAction::Escalate { decision, .. } => assert_eq!(
            *decision,
            Decision::Callback {
                weekday: 1,
                at: "09:00".into()
            }
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        says(&acts),
        [
            "Our team is closed right now. I have taken a callback request: someone will call you back on Monday from 09:00."
        ]
    );
}

#[test]
fn the_brain_answers_first_and_the_built_in_flow_takes_a_failed_turn() {
    let mut cfg = assistant_config();
    cfg.brain = true;
    let mut h = answered(cfg);
    let acts = h.send(CallEvent::PlayoutDone {
        id: 1,
        interrupted: false,
    });
    // The greeting asked already; the brain speaks when spoken to.
    assert!(says(&acts).is_empty());
    let acts = h.send(turn_saying("my name is Ada and my bill is wrong"));
    let req = match &acts[..] {
        [CallAction::AskBrain { request }] => request.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(req.seq, 1);
    assert_eq!(req.caller, "+15551230000");
    assert_eq!(req.history.last().unwrap().role, "caller");
    let reply = BrainReply {
        say: Some("Sorry to hear that. Which invoice is it?".into()),
        fields: [("name".to_string(), "Ada".to_string())].into(),
        intent: Some("billing dispute".into()),
        confidence: Some(0.85),
        ..BrainReply::default()
    };
    let acts = h.send(CallEvent::BrainReply {
        seq: 1,
        reply: Some(Box::new(reply)),
    });
    assert_eq!(says(&acts), ["Sorry to hear that. Which invoice is it?"]);
    assert_eq!(h.ctl.snapshot().intent.unwrap().source, "brain");

    // The brain times out: the built-in flow answers that turn.
    h.send(turn_saying("the one from March"));
    let acts = h.send(CallEvent::BrainReply {
        seq: 2,
        reply: None,
    });
    assert_eq!(says(&acts), ["What is your account or order number?"]);

    // The brain hands over.
    h.send(turn_saying("this is taking too long"));
    let reply = BrainReply {
        transfer: Some(BrainTransfer {
            reason: "refund above the assistant's limit".into(),
            route: Some("billing".into()),
        }),
        ..BrainReply::default()
    };
    let acts = h.send(CallEvent::BrainReply {
        seq: 3,
        reply: Some(Box::new(reply)),
    });
    match &acts[0] {
        CallAction::Escalate {
            trigger, briefing, ..
        } => {
            assert_eq!(trigger.kind, "assistant");
            assert_eq!(trigger.route, "billing");
            assert!(briefing.spoken.contains("billing dispute"));
            assert!(
                briefing
                    .reason
                    .contains("refund above the assistant's limit")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_prompt_queued_behind_the_disclosure_does_not_let_speech_cut_the_disclosure() {
    let mut h = answered(assistant_config());
    // The caller answers over the greeting; the assistant's reply queues behind it.
    let acts = h.send(turn_saying("my order"));
    assert_eq!(says(&acts), ["What is your account or order number?"]);
    assert!(h.send(CallEvent::SpeechStarted).is_empty());
    h.send(CallEvent::PlayoutDone {
        id: 1,
        interrupted: false,
    });
    // Once the disclosure is over, speech cuts the prompt as usual.
    assert_eq!(h.send(CallEvent::SpeechStarted), [CallAction::StopPlayout]);
}
