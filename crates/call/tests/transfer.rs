//! The warm transfer's every branch on the virtual clock: hold bridge and prompt, context
//! packet, hunt (busy → next, all fail → apology and callback), private briefing, accept or
//! decline by DTMF, bridge, hold refresh, hang-ups on either side, round robin.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::{Harness, answer_sdp, offer, route, says, transfer_config, turn_saying};
use warmline_call::{
    CallAction, CallConfig, CallEvent, HuntStrategy, OriginateOutcome, RoutePlan, TransferOutcome,
    TransferPhase,
};

fn cfg(route: RoutePlan) -> CallConfig {
    transfer_config(route)
}

fn answered(cfg: CallConfig) -> Harness {
    let mut h = Harness::with(cfg);
    h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    h.send(CallEvent::Ack);
    h
}

fn dialed(acts: &[CallAction]) -> Option<(u32, String)> {
    acts.iter().find_map(|a| match a {
        CallAction::DialAgent {
            attempt, target, ..
        } => Some((*attempt, target.clone())),
        _ => None,
    })
}

fn audits(acts: &[CallAction]) -> Vec<String> {
    acts.iter()
        .filter_map(|a| match a {
            CallAction::Audit(event) => Some(event.code().to_string()),
            _ => None,
        })
        .collect()
}

fn reinvite_direction(acts: &[CallAction]) -> Option<&'static str> {
    acts.iter().find_map(|a| match a {
        CallAction::SendReInvite { sdp } if sdp.contains("a=sendonly") => Some("sendonly"),
        CallAction::SendReInvite { sdp } if sdp.contains("a=sendrecv") => Some("sendrecv"),
        _ => None,
    })
}

/// The caller asks for a person: the transfer starts. Returns the first attempt.
fn ask_for_person(h: &mut Harness) -> (u32, String, Vec<CallAction>) {
    let acts = h.send(turn_saying("I want to speak to a human"));
    let (attempt, target) = dialed(&acts).expect("an agent is dialed");
    (attempt, target, acts)
}

/// The peer accepts our hold or resume re-INVITE.
fn accept_reinvite(h: &mut Harness, direction: &str) -> Vec<CallAction> {
    h.send(CallEvent::ReInviteResponse {
        timer: Default::default(),
        status: 200,
        sdp: Some(answer_sdp(direction)),
    })
}

fn whisper(acts: &[CallAction]) -> (u32, String, u64) {
    acts.iter()
        .find_map(|a| match a {
            CallAction::WhisperToAgent { attempt, text, id } => Some((*attempt, text.clone(), *id)),
            _ => None,
        })
        .expect("a briefing for the agent")
}

/// The context packet the transfer posts.
fn posted_packet(acts: &[CallAction]) -> Box<warmline_call::context::ContextPacket> {
    acts.iter()
        .find_map(|a| match a {
            CallAction::PostContext { packet } => Some(packet.clone()),
            _ => None,
        })
        .expect("a context packet")
}

/// The text the driver is asked to render ahead of the agent's answer.
fn prepared(acts: &[CallAction]) -> Option<String> {
    acts.iter().find_map(|a| match a {
        CallAction::PrepareSpeech { text } => Some(text.clone()),
        _ => None,
    })
}

#[test]
fn trigger_holds_the_caller_posts_the_packet_briefs_the_agent_and_bridges() {
    let mut h = answered(cfg(route(&["sip:a1@127.0.0.1", "sip:a2@127.0.0.1"])));
    h.send(CallEvent::PlayoutDone {
        id: 1,
        interrupted: false,
    });
    h.send(turn_saying("my bill is wrong this month"));
    let (attempt, target, acts) = ask_for_person(&mut h);
    assert_eq!((attempt, target.as_str()), (1, "sip:a1@127.0.0.1"));
    // All in the same instant as the trigger: hold audio, re-INVITE a=sendonly, the
    // transition prompt with a time anchor, the packet, the agent's INVITE.
    assert!(acts.contains(&CallAction::HoldAudio { on: true }));
    assert_eq!(reinvite_direction(&acts), Some("sendonly"));
    assert!(says(&acts)[0].contains("about 15 seconds"), "{acts:?}");
    let packet = posted_packet(&acts);
    assert_eq!(packet.caller.number, "+15551230000");
    assert_eq!(packet.caller.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(packet.trigger.kind, "explicit_request");
    assert_eq!(packet.disposition, "transfer.requested");
    assert_eq!(packet.turns.len(), 2);
    assert!(packet.summary.contains("my bill is wrong this month"));
    assert_eq!(h.ctl.snapshot().transfer, Some(TransferPhase::Ringing));
    accept_reinvite(&mut h, "recvonly");

    let acts = h.send(CallEvent::AgentOutcome {
        attempt,
        outcome: OriginateOutcome::Answered,
    });
    let (_, text, id) = whisper(&acts);
    assert!(text.contains("Ada Lovelace"), "{text}");
    assert!(text.contains("asked to speak to a person"), "{text}");
    assert_eq!(h.ctl.snapshot().transfer, Some(TransferPhase::Briefing));

    let acts = h.send(CallEvent::PlayoutDone {
        id,
        interrupted: false,
    });
    assert!(acts.contains(&CallAction::HoldAudio { on: false }));
    assert_eq!(reinvite_direction(&acts), Some("sendrecv"));
    assert!(acts.contains(&CallAction::BridgeAgent { attempt }));
    assert_eq!(audits(&acts), ["bridged"]);
    assert!(acts.contains(&CallAction::TransferEnded {
        kind: warmline_policy::TriggerKind::ExplicitRequest,
        route: "default".into(),
        outcome: TransferOutcome::Bridged,
        after_ms: Some(0),
    }));
    assert_eq!(h.ctl.snapshot().transfer, Some(TransferPhase::Bridged));
    accept_reinvite(&mut h, "sendrecv");

    // The caller's BYE ends the agent's call too.
    let acts = h.send(CallEvent::PeerBye);
    assert!(acts.contains(&CallAction::HangupAgent { attempt }));
    assert_eq!(audits(&acts), ["caller_hung_up"]);
}

#[test]
fn a_busy_agent_is_skipped_and_the_next_one_answers() {
    let mut h = answered(cfg(route(&["sip:a1@127.0.0.1", "sip:a2@127.0.0.1"])));
    let (attempt, _, _) = ask_for_person(&mut h);
    let acts = h.send(CallEvent::AgentOutcome {
        attempt,
        outcome: OriginateOutcome::Busy { status: 486 },
    });
    assert_eq!(audits(&acts), ["agent_failed", "agent_attempt"]);
    assert!(
        acts.iter()
            .any(|a| matches!(a, CallAction::Audit(e) if e.detail().contains("busy (486)"))),
        "{acts:?}"
    );
    let (second, target) = dialed(&acts).unwrap();
    assert_eq!((second, target.as_str()), (2, "sip:a2@127.0.0.1"));
    // A late event from the first attempt changes nothing.
    assert!(h.send(CallEvent::AgentEnded { attempt }).is_empty());
    let acts = h.send(CallEvent::AgentOutcome {
        attempt: second,
        outcome: OriginateOutcome::Answered,
    });
    assert_eq!(whisper(&acts).0, second);
}

#[test]
fn when_nobody_answers_the_caller_gets_an_apology_a_callback_and_the_assistant_again() {
    let mut h = answered(cfg(route(&["sip:a1@127.0.0.1"])));
    h.send(CallEvent::PlayoutDone {
        id: 1,
        interrupted: false,
    });
    let (attempt, _, _) = ask_for_person(&mut h);
    accept_reinvite(&mut h, "recvonly");
    let acts = h.send(CallEvent::AgentOutcome {
        attempt,
        outcome: OriginateOutcome::NoAnswer,
    });
    assert_eq!(
        audits(&acts),
        ["agent_failed", "transfer_failed", "callback_requested"]
    );
    assert!(acts.contains(&CallAction::HoldAudio { on: false }));
    assert_eq!(reinvite_direction(&acts), Some("sendrecv"));
    assert!(says(&acts)[0].starts_with("I'm sorry, nobody from the team is free"));
    assert!(acts.iter().any(|a| matches!(
        a,
        CallAction::TransferEnded {
            outcome: TransferOutcome::Failed,
            ..
        }
    )));
    assert_eq!(h.ctl.snapshot().transfer, None);
    // Back to the assistant.
    let acts = h.send(turn_saying("my order number is 1234"));
    assert!(!says(&acts).is_empty(), "{acts:?}");
}

#[test]
fn a_caller_who_hangs_up_mid_transfer_abandons_and_the_agent_call_is_cancelled() {
    let mut h = answered(cfg(route(&["sip:a1@127.0.0.1"])));
    let (attempt, _, _) = ask_for_person(&mut h);
    let acts = h.send(CallEvent::PeerBye);
    assert!(acts.contains(&CallAction::HangupAgent { attempt }));
    assert_eq!(audits(&acts), ["abandoned"]);
    assert!(acts.iter().any(|a| matches!(
        a,
        CallAction::TransferEnded {
            outcome: TransferOutcome::Abandoned,
            after_ms: None,
            ..
        }
    )));
}

#[test]
fn an_agent_who_must_accept_can_take_pass_or_time_out() {
    let mut r = route(&["sip:a1@127.0.0.1", "sip:a2@127.0.0.1", "sip:a3@127.0.0.1"]);
    r.confirm = true;
    let mut h = answered(cfg(r));
    let (first, _, acts) = ask_for_person(&mut h);
    // Rendered while the phone rings: the very text the agent will hear, prompt included.
    let ahead = prepared(&acts).expect("the briefing is rendered ahead");
    let acts = h.send(CallEvent::AgentOutcome {
        attempt: first,
        outcome: OriginateOutcome::Answered,
    });
    let (_, text, id) = whisper(&acts);
    assert_eq!(ahead, text);
    assert!(text.ends_with("Press 1 to take the call, or 2 to pass it on."));
    assert!(
        h.send(CallEvent::PlayoutDone {
            id,
            interrupted: false
        })
        .is_empty()
    );
    assert_eq!(
        h.ctl.snapshot().transfer,
        Some(TransferPhase::AwaitingAccept)
    );
    // 2 passes it on.
    let acts = h.send(CallEvent::AgentDtmf {
        attempt: first,
        digit: '2',
    });
    assert!(acts.contains(&CallAction::HangupAgent { attempt: first }));
    let (second, _) = dialed(&acts).unwrap();
    // Silence past the window passes it on too.
    let acts = h.send(CallEvent::AgentOutcome {
        attempt: second,
        outcome: OriginateOutcome::Answered,
    });
    let (_, _, id) = whisper(&acts);
    h.send(CallEvent::PlayoutDone {
        id,
        interrupted: false,
    });
    let acts = h.advance(warmline_call::ACCEPT_WINDOW + Duration::from_millis(10));
    assert!(acts.contains(&CallAction::HangupAgent { attempt: second }));
    let (third, _) = dialed(&acts).unwrap();
    // 1 takes it.
    let acts = h.send(CallEvent::AgentOutcome {
        attempt: third,
        outcome: OriginateOutcome::Answered,
    });
    let (_, _, id) = whisper(&acts);
    h.send(CallEvent::PlayoutDone {
        id,
        interrupted: false,
    });
    let acts = h.send(CallEvent::AgentDtmf {
        attempt: third,
        digit: '1',
    });
    assert!(acts.contains(&CallAction::BridgeAgent { attempt: third }));
}

#[test]
fn a_long_wait_gets_a_thanks_for_holding_and_the_agent_hanging_up_ends_the_call() {
    let mut h = answered(cfg(route(&["sip:a1@127.0.0.1"])));
    let (attempt, _, _) = ask_for_person(&mut h);
    let acts = h.advance(Duration::from_secs(21));
    assert_eq!(
        says(&acts),
        ["Thanks for holding. You're still connected, and a specialist will be with you shortly."]
    );
    let acts = h.send(CallEvent::AgentOutcome {
        attempt,
        outcome: OriginateOutcome::Answered,
    });
    let (_, _, id) = whisper(&acts);
    h.send(CallEvent::PlayoutDone {
        id,
        interrupted: false,
    });
    // Bridged: no more refreshes.
    assert!(says(&h.advance(Duration::from_secs(60))).is_empty());
    let acts = h.send(CallEvent::AgentEnded { attempt });
    assert!(acts.contains(&CallAction::SendBye), "{acts:?}");
    assert_eq!(audits(&acts), ["agent_hung_up"]);
}

#[test]
fn round_robin_starts_each_transfer_one_agent_further() {
    // The rotation is the driver's, shared by every call: here, the loop's count.
    let mut firsts = Vec::new();
    for rotation in 0..3 {
        let mut r = route(&["sip:a1@127.0.0.1", "sip:a2@127.0.0.1"]);
        r.strategy = HuntStrategy::RoundRobin;
        let mut h = answered(cfg(r));
        let acts = h.send(turn_saying("I want to speak to a human"));
        // The caller is on hold and told at once; the hunt waits for its turn.
        assert_eq!(reinvite_direction(&acts), Some("sendonly"));
        assert!(dialed(&acts).is_none(), "{acts:?}");
        assert!(acts.contains(&CallAction::AskRotation {
            route: "default".into()
        }));
        let acts = h.send(CallEvent::Rotation { position: rotation });
        assert_eq!(audits(&acts), ["agent_attempt"]);
        firsts.push(dialed(&acts).expect("an agent is dialed").1);
        // A second answer (a confused driver) changes nothing.
        assert!(h.send(CallEvent::Rotation { position: 7 }).is_empty());
    }
    assert_eq!(
        firsts,
        ["sip:a1@127.0.0.1", "sip:a2@127.0.0.1", "sip:a1@127.0.0.1"]
    );
}

#[test]
fn a_route_without_agents_fails_over_to_the_apology_at_once() {
    let mut h = answered(cfg(route(&[])));
    let acts = h.send(turn_saying("I want to speak to a human"));
    assert!(dialed(&acts).is_none());
    assert!(audits(&acts).contains(&"callback_requested".to_string()));
}

#[test]
fn a_route_without_agents_does_not_put_the_caller_on_hold() {
    let mut h = answered(cfg(route(&[])));
    let acts = h.send(turn_saying("I want to speak to a human"));
    assert!(reinvite_direction(&acts).is_none(), "{acts:?}");
    assert!(!acts.contains(&CallAction::HoldAudio { on: true }));
}

#[test]
fn a_model_written_briefing_replaces_the_template_until_the_agent_hears_it() {
    let mut c = cfg(route(&["sip:a1@127.0.0.1", "sip:a2@127.0.0.1"]));
    c.llm_briefing = true;
    let mut h = answered(c);
    let (attempt, _, acts) = ask_for_person(&mut h);
    assert!(acts
        .iter()
        .any(|a| matches!(a, CallAction::WriteBriefing { packet } if packet.trigger.kind == "explicit_request")));
    let acts = h.send(CallEvent::BriefingWritten {
        text: "Ada wants a person about her bill.".into(),
    });
    assert_eq!(audits(&acts), ["briefing_written"]);
    // The new text is rendered at once, still ahead of the answer.
    assert_eq!(
        prepared(&acts).as_deref(),
        Some("Ada wants a person about her bill.")
    );
    let acts = h.send(CallEvent::AgentOutcome {
        attempt,
        outcome: OriginateOutcome::Answered,
    });
    assert_eq!(whisper(&acts).1, "Ada wants a person about her bill.");
    // Too late for the agent already listening: kept out.
    let acts = h.send(CallEvent::BriefingWritten {
        text: "Something else.".into(),
    });
    assert_eq!(audits(&acts), ["briefing_not_used"]);
    assert_eq!(prepared(&acts), None);
}

#[test]
fn a_vip_caller_is_transferred_after_the_disclosure() {
    let mut c = cfg(route(&["sip:a1@127.0.0.1"]));
    c.rules = Some(
        serde_json::from_value::<Vec<warmline_policy::Rule>>(serde_json::json!([
            {"name": "asked_for_person", "kind": "explicit_request", "priority": 100,
             "disposition": "transfer.requested"},
            {"name": "vip", "kind": "caller", "numbers": ["+1555123*"], "priority": 80,
             "disposition": "transfer.vip"}
        ]))
        .unwrap()
        .into(),
    );
    c.greeting = true;
    let mut h = Harness::with(c);
    let acts = h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    // It fires at the answer, but the caller first hears the greeting and its disclosure.
    assert!(
        audits(&acts).contains(&"transfer_deferred".to_string()),
        "{acts:?}"
    );
    assert_eq!(dialed(&acts), None);
    assert_eq!(reinvite_direction(&acts), None);
    h.send(CallEvent::Ack);
    let acts = h.send(CallEvent::PlayoutDone {
        id: 1,
        interrupted: false,
    });
    let ev = audits(&acts);
    assert!(ev.contains(&"disclosure".to_string()), "{ev:?}");
    assert!(ev.contains(&"transfer_started".to_string()), "{ev:?}");
    assert_eq!(reinvite_direction(&acts), Some("sendonly"));
    let (attempt, target) = dialed(&acts).expect("the VIP's agent is dialed");
    assert_eq!((attempt, target.as_str()), (1, "sip:a1@127.0.0.1"));
    let packet = posted_packet(&acts);
    assert_eq!(packet.disposition, "transfer.vip");
    // The assistant never asked its first question.
    assert!(
        !says(&acts).iter().any(|s| s.contains("How can I help")),
        "{acts:?}"
    );
}

#[test]
fn a_vip_caller_without_a_greeting_is_transferred_at_the_answer() {
    let mut c = cfg(route(&["sip:a1@127.0.0.1"]));
    c.rules = Some(
        serde_json::from_value::<Vec<warmline_policy::Rule>>(serde_json::json!([
            {"name": "vip", "kind": "caller", "numbers": ["+15551230000"], "priority": 80,
             "disposition": "transfer.vip"}
        ]))
        .unwrap()
        .into(),
    );
    let mut h = Harness::with(c);
    let acts = h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    let ev = audits(&acts);
    assert!(ev.contains(&"transfer_started".to_string()), "{ev:?}");
    assert!(dialed(&acts).is_some(), "{acts:?}");
}

/// A caller nobody can listen to (the recognizer at capacity) goes to the agents as soon
/// as the call is up: no greeting, no assistant, and a reason that says why.
#[test]
fn an_unheard_caller_is_handed_to_the_agents_as_soon_as_the_call_is_up() {
    let mut c = cfg(route(&["sip:agent@127.0.0.1:5070"]));
    c.unheard = true;
    c.greeting = true;
    c.assistant = None;
    let mut h = Harness::with(c);
    let mut acts = h.send(CallEvent::Invite {
        sdp: Some(offer("sendrecv", 1)),
    });
    acts.extend(h.send(CallEvent::Ack));
    acts.extend(accept_reinvite(&mut h, "recvonly"));
    assert!(
        !acts.iter().any(|a| matches!(a, CallAction::Play { .. })),
        "{acts:?}"
    );
    let trigger = acts
        .iter()
        .find_map(|a| match a {
            CallAction::Escalate { trigger, .. } => Some(trigger.clone()),
            _ => None,
        })
        .expect("an escalation");
    assert_eq!(trigger.kind, "capacity");
    assert_eq!(trigger.route, "default");
    let a = audits(&acts);
    assert!(a.contains(&"transfer_started".to_string()), "{a:?}");
    let (_, target) = dialed(&acts).expect("the agent is dialed");
    assert_eq!(target, "sip:agent@127.0.0.1:5070");
    let packet = posted_packet(&acts);
    assert!(
        packet.trigger.reason.contains("straight to a person"),
        "{}",
        packet.trigger.reason
    );
    let (attempt, _) = dialed(&acts).expect("the agent is dialed");
    let (_, briefing, _) = whisper(&h.send(CallEvent::AgentOutcome {
        attempt,
        outcome: OriginateOutcome::Answered,
    }));
    assert!(briefing.contains("ask how you can help"), "{briefing}");
}
