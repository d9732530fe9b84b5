//! The warm transfer through [`Call`], every leg a real controller, on the virtual clock: a
//! two-leg harness in the spirit of quinn-proto's `Pair`. The test plays the driver and the
//! peers: it opens the legs the call dials, answers its re-INVITEs, and says what each
//! agent's phone does (rings, answers, is busy, presses a digit, hangs up). What is asserted
//! is what the driver would be asked to do, leg by leg.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::{answer_sdp, config, offer, turn_saying};
use warmline_call::{
    Audit, Call, CallAction, CallConfig, CallEvent, CallSetup, Dial, EndReason, Leg,
    OriginateOutcome, RoutePlan, TransferOutcome, TransferPhase, refusal_for,
};
use warmline_policy::Decision;
use warmline_policy::hours::Hours;
use warmline_signaling::{CodecName, LocalMedia, SrtpKey, SrtpMode};

struct Pair {
    now: Instant,
    call: Call,
    /// Every action the driver was asked for, in order.
    log: Vec<(Leg, CallAction)>,
    /// Legs dialled and opened, with the call they were asked to place.
    dialled: Vec<(Leg, Dial)>,
    next_port: u16,
}

fn leg_config(port: u16) -> CallConfig {
    CallConfig {
        ring_timeout: Duration::from_secs(15),
        ..CallConfig::new(LocalMedia {
            addr: "127.0.0.1".parse().unwrap(),
            srtp: SrtpMode::Optional,
            srtp_key: SrtpKey([1; 30]),
            port,
            codecs: vec![CodecName::Pcmu, CodecName::Pcma],
        })
    }
}

fn route(targets: &[&str], confirm: bool) -> RoutePlan {
    RoutePlan {
        confirm,
        ..support::route(targets)
    }
}

fn caller_config(route: RoutePlan) -> CallConfig {
    support::transfer_config(route)
}

impl support::Clocked for Pair {
    type Action = (Leg, CallAction);
    fn now(&mut self) -> &mut Instant {
        &mut self.now
    }
    fn next_timeout(&self) -> Option<Instant> {
        self.call.poll_timeout()
    }
    fn fire(&mut self) -> Vec<(Leg, CallAction)> {
        self.call.handle_timeout(self.now);
        self.drain()
    }
}

impl Pair {
    /// A caller asked for a person and the one agent's phone rings.
    fn ringing() -> (Self, Leg) {
        let mut p = Self::answered(route(&["sip:a1@127.0.0.1"], false));
        let agent = p.ask_for_person();
        p.send(agent, CallEvent::Progress { status: 180 });
        (p, agent)
    }

    fn new(now: Instant, call: Call) -> Self {
        Self {
            now,
            call,
            log: Vec::new(),
            dialled: Vec::new(),
            next_port: 30000,
        }
    }

    /// An inbound caller, answered and past the greeting.
    fn answered(route: RoutePlan) -> Self {
        Self::answered_with(caller_config(route))
    }

    fn answered_with(cfg: CallConfig) -> Self {
        let mut p = Self::new(Instant::now(), Call::inbound(cfg, CallSetup::default()));
        p.send(
            Leg::Caller,
            CallEvent::Invite {
                sdp: Some(offer("sendrecv", 1)),
            },
        );
        p.send(Leg::Caller, CallEvent::Ack);
        p.send(
            Leg::Caller,
            CallEvent::PlayoutDone {
                id: 1,
                interrupted: false,
            },
        );
        p
    }

    /// Feed one event and play the driver: open every leg the call dials.
    fn send(&mut self, leg: Leg, ev: CallEvent) -> Vec<(Leg, CallAction)> {
        self.call.handle(self.now, leg, ev);
        self.drain()
    }

    fn drain(&mut self) -> Vec<(Leg, CallAction)> {
        let mut out = Vec::new();
        while let Some((leg, action)) = self.call.poll_action() {
            if let CallAction::Dial(d) = &action {
                self.next_port += 2;
                let offer = self
                    .call
                    .open_leg(self.now, leg, leg_config(self.next_port))
                    .expect("a dialled leg opens");
                assert!(offer.contains("m=audio"), "{offer}");
                self.dialled.push((leg, (**d).clone()));
            }
            out.push((leg, action));
        }
        self.log.extend(out.iter().cloned());
        out
    }

    fn advance(&mut self, by: Duration) -> Vec<(Leg, CallAction)> {
        support::advance(self, by)
    }

    /// The caller asks for a person; returns the agent leg dialled.
    fn ask_for_person(&mut self) -> Leg {
        let acts = self.send(Leg::Caller, turn_saying("I want to speak to a human"));
        let leg = dialled_leg(&acts).expect("an agent is dialled");
        // The caller's phone accepts the hold.
        if acts
            .iter()
            .any(|(l, a)| *l == Leg::Caller && matches!(a, CallAction::SendReInvite { .. }))
        {
            self.send(
                Leg::Caller,
                CallEvent::ReInviteResponse {
                    timer: Default::default(),
                    status: 200,
                    sdp: Some(answer_sdp("recvonly")),
                },
            );
        }
        leg
    }

    /// The agent's phone answers: 200 OK with an answer.
    fn agent_answers(&mut self, leg: Leg) -> Vec<(Leg, CallAction)> {
        self.send(leg, CallEvent::Progress { status: 180 });
        self.send(
            leg,
            CallEvent::Answered {
                timer: Default::default(),
                sdp: Some(answer_sdp("sendrecv")),
            },
        )
    }

    /// The briefing asked for in `acts` finishes playing on the agent's leg.
    fn briefing_played(
        &mut self,
        acts: &[(Leg, CallAction)],
        agent: Leg,
    ) -> Vec<(Leg, CallAction)> {
        let (id, _) = briefing_on(acts, agent).expect("a briefing for the agent");
        self.send(
            agent,
            CallEvent::PlayoutDone {
                id,
                interrupted: false,
            },
        )
    }

    fn phase(&self) -> Option<TransferPhase> {
        self.call.leg(Leg::Caller).unwrap().snapshot().transfer
    }

    fn audits(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                CallAction::Audit(event) => Some(event.code().to_string()),
                _ => None,
            })
            .collect()
    }
}

fn dialled_leg(acts: &[(Leg, CallAction)]) -> Option<Leg> {
    acts.iter().find_map(|(l, a)| match a {
        CallAction::Dial(_) => Some(*l),
        _ => None,
    })
}

/// The briefing spoken on a leg: its id and text.
fn briefing_on(acts: &[(Leg, CallAction)], leg: Leg) -> Option<(u64, String)> {
    acts.iter().find_map(|(l, a)| match a {
        CallAction::Say { text, id } if *l == leg => Some((*id, text.clone())),
        _ => None,
    })
}

fn has(acts: &[(Leg, CallAction)], leg: Leg, f: impl Fn(&CallAction) -> bool) -> bool {
    acts.iter().any(|(l, a)| *l == leg && f(a))
}

fn ended(acts: &[(Leg, CallAction)], leg: Leg) -> bool {
    has(acts, leg, |a| matches!(a, CallAction::Ended { .. }))
}

fn transfer_outcome(p: &Pair) -> Option<TransferOutcome> {
    p.log.iter().find_map(|(_, a)| match a {
        CallAction::TransferEnded { outcome, .. } => Some(*outcome),
        _ => None,
    })
}

#[test]
fn an_answered_agent_is_briefed_on_their_leg_only_then_bridged() {
    let mut p = Pair::answered(route(&["sip:a1@127.0.0.1"], false));
    let agent = p.ask_for_person();
    assert_eq!(agent, Leg::Agent(1));
    let (_, dial) = &p.dialled[0];
    assert_eq!(dial.target, "sip:a1@127.0.0.1");
    assert_eq!(dial.prefer, Some(CodecName::Pcmu));
    let screen = dial.screen.as_ref().expect("who the call is for");
    assert_eq!(screen.caller_number, "+15551230000");
    assert_eq!(screen.caller_name.as_deref(), Some("Ada Lovelace"));
    assert!(screen.reason.contains("person"), "{}", screen.reason);
    assert_eq!(p.phase(), Some(TransferPhase::Ringing));

    let acts = p.agent_answers(agent);
    let (id, text) = briefing_on(&acts, agent).expect("the agent is briefed");
    assert!(text.contains("Ada Lovelace"), "{text}");
    assert!(briefing_on(&acts, Leg::Caller).is_none(), "{acts:?}");
    assert_eq!(p.phase(), Some(TransferPhase::Briefing));

    // The end of the briefing is played on the agent's leg and heard by the caller's
    // controller: the two are bridged, the caller taken off hold.
    let acts = p.send(
        agent,
        CallEvent::PlayoutDone {
            id,
            interrupted: false,
        },
    );
    assert!(has(&acts, Leg::Caller, |a| *a
        == CallAction::Bridge { with: agent }));
    assert!(has(&acts, Leg::Caller, |a| matches!(
        a,
        CallAction::SendReInvite { sdp } if sdp.contains("a=sendrecv")
    )));
    assert_eq!(p.phase(), Some(TransferPhase::Bridged));
    assert_eq!(transfer_outcome(&p), Some(TransferOutcome::Bridged));

    // The caller hangs up: the agent's call is ended with a BYE, and the call is over.
    let acts = p.send(Leg::Caller, CallEvent::PeerBye);
    // Each leg's trail ends with its end; the caller's began with its start and holds
    // every turn.
    for leg in [Leg::Caller, agent] {
        assert!(has(&acts, leg, |a| matches!(
            a,
            CallAction::Audit(Audit::End { .. })
        )));
    }
    let trail = p.audits();
    assert_eq!(trail.first().map(String::as_str), Some("call_start"));
    assert!(trail.contains(&"turn".to_string()), "{trail:?}");
    let (at_trigger, at_decided) = (
        trail.iter().position(|e| e == "trigger").unwrap(),
        trail.iter().position(|e| e == "transfer_decided").unwrap(),
    );
    assert!(at_trigger < at_decided, "{trail:?}");
    assert!(ended(&acts, Leg::Caller));
    assert!(has(&acts, agent, |a| *a == CallAction::SendBye));
    assert!(ended(&acts, agent));
    assert!(p.call.is_ended());
}

#[test]
fn a_busy_agent_is_passed_over_and_the_next_one_is_dialled() {
    let mut p = Pair::answered(route(&["sip:a1@127.0.0.1", "sip:a2@127.0.0.1"], false));
    let first = p.ask_for_person();
    p.send(first, CallEvent::Progress { status: 180 });
    let acts = p.send(first, CallEvent::Failed { status: 486 });
    assert!(has(&acts, first, |a| *a
        == CallAction::Outcome(OriginateOutcome::Busy { status: 486 })));
    assert!(ended(&acts, first));
    let second = dialled_leg(&acts).expect("the next agent is dialled");
    assert_eq!(second, Leg::Agent(2));
    assert_eq!(p.dialled[1].1.target, "sip:a2@127.0.0.1");
    let acts = p.agent_answers(second);
    assert!(briefing_on(&acts, second).is_some());
    assert!(p.audits().contains(&"agent_failed".to_string()));
}

#[test]
fn an_agent_who_never_answers_is_cancelled_at_the_ring_timeout() {
    let (mut p, agent) = Pair::ringing();
    let acts = p.advance(Duration::from_secs(16));
    assert!(has(&acts, agent, |a| *a == CallAction::CancelInvite));
    // Only agent left: the caller hears the apology and gets the assistant back.
    assert_eq!(transfer_outcome(&p), Some(TransferOutcome::Failed));
    assert!(p.audits().contains(&"callback_requested".to_string()));
    assert_eq!(p.phase(), None);
    // The CANCEL is answered with 487: the agent's leg ends, the caller's goes on.
    let acts = p.send(agent, CallEvent::Failed { status: 487 });
    assert!(ended(&acts, agent));
    assert!(!p.call.is_ended());
    assert!(!p.call.leg(Leg::Caller).unwrap().is_ended());
}

#[test]
fn an_agent_who_must_accept_declines_with_2_and_the_next_one_takes_with_1() {
    let mut p = Pair::answered(route(&["sip:a1@127.0.0.1", "sip:a2@127.0.0.1"], true));
    let first = p.ask_for_person();
    let acts = p.agent_answers(first);
    p.briefing_played(&acts, first);
    assert_eq!(p.phase(), Some(TransferPhase::AwaitingAccept));
    // The agent's digit, heard on their leg.
    let acts = p.send(first, CallEvent::Dtmf { digit: '2' });
    assert!(has(&acts, first, |a| *a == CallAction::SendBye));
    assert!(ended(&acts, first));
    let second = dialled_leg(&acts).expect("passed on");
    let acts = p.agent_answers(second);
    p.briefing_played(&acts, second);
    let acts = p.send(second, CallEvent::Dtmf { digit: '1' });
    assert!(has(&acts, Leg::Caller, |a| *a
        == CallAction::Bridge { with: second }));
    assert!(p.audits().contains(&"agent_declined".to_string()));
}

#[test]
fn a_caller_who_hangs_up_while_the_agent_rings_cancels_the_agent() {
    let (mut p, agent) = Pair::ringing();
    let acts = p.send(Leg::Caller, CallEvent::PeerBye);
    assert!(ended(&acts, Leg::Caller));
    assert!(has(&acts, agent, |a| *a == CallAction::CancelInvite));
    assert_eq!(transfer_outcome(&p), Some(TransferOutcome::Abandoned));
    // Not over until the agent's INVITE is finished with.
    assert!(!p.call.is_ended());
    let acts = p.send(agent, CallEvent::Failed { status: 487 });
    assert!(has(&acts, agent, |a| *a
        == CallAction::Outcome(OriginateOutcome::Cancelled)
        || matches!(a, CallAction::Ended { .. })));
    assert!(p.call.is_ended());
}

#[test]
fn a_caller_who_hangs_up_during_the_briefing_ends_the_agents_call() {
    let mut p = Pair::answered(route(&["sip:a1@127.0.0.1"], false));
    let agent = p.ask_for_person();
    let acts = p.agent_answers(agent);
    let (id, _) = briefing_on(&acts, agent).unwrap();
    let acts = p.send(Leg::Caller, CallEvent::PeerBye);
    assert!(has(&acts, agent, |a| *a == CallAction::SendBye));
    assert_eq!(transfer_outcome(&p), Some(TransferOutcome::Abandoned));
    assert!(p.call.is_ended());
    // The briefing's end arriving late changes nothing.
    assert!(
        p.send(
            agent,
            CallEvent::PlayoutDone {
                id,
                interrupted: true
            }
        )
        .is_empty()
    );
}

#[test]
fn an_agent_who_hangs_up_after_the_bridge_ends_the_callers_call() {
    let mut p = Pair::answered(route(&["sip:a1@127.0.0.1"], false));
    let agent = p.ask_for_person();
    let acts = p.agent_answers(agent);
    p.briefing_played(&acts, agent);
    let acts = p.send(agent, CallEvent::PeerBye);
    assert!(ended(&acts, agent));
    assert!(has(&acts, Leg::Caller, |a| *a == CallAction::SendBye));
    assert!(has(&acts, Leg::Caller, |a| *a
        == CallAction::Ended {
            reason: EndReason::LocalBye
        }));
    assert!(p.audits().contains(&"agent_hung_up".to_string()));
    assert!(p.call.is_ended());
}

#[test]
fn an_agent_who_hangs_up_during_the_briefing_is_passed_over() {
    let mut p = Pair::answered(route(&["sip:a1@127.0.0.1", "sip:a2@127.0.0.1"], false));
    let first = p.ask_for_person();
    p.agent_answers(first);
    let acts = p.send(first, CallEvent::PeerBye);
    assert!(ended(&acts, first));
    assert_eq!(dialled_leg(&acts), Some(Leg::Agent(2)));
    assert!(!p.call.is_ended());
}

#[test]
fn glare_on_the_hold_reinvite_is_retried_and_the_hunt_goes_on() {
    let mut p = Pair::answered(route(&["sip:a1@127.0.0.1"], false));
    let acts = p.send(Leg::Caller, turn_saying("I want to speak to a human"));
    let agent = dialled_leg(&acts).unwrap();
    assert!(has(&acts, Leg::Caller, |a| matches!(
        a,
        CallAction::SendReInvite { sdp } if sdp.contains("a=sendonly")
    )));
    // The caller's phone re-INVITEs at the same moment: 491 to ours.
    let acts = p.send(
        Leg::Caller,
        CallEvent::ReInviteResponse {
            timer: Default::default(),
            status: 491,
            sdp: None,
        },
    );
    assert!(!has(&acts, Leg::Caller, |a| matches!(
        a,
        CallAction::SendReInvite { .. }
    )));
    // RFC 3261 §14.1: we own the Call-ID, so we retry after 2.1–4 s.
    let acts = p.advance(Duration::from_secs(5));
    assert!(has(&acts, Leg::Caller, |a| matches!(
        a,
        CallAction::SendReInvite { sdp } if sdp.contains("a=sendonly")
    )));
    // Meanwhile the agent was still being called, and answers.
    let acts = p.agent_answers(agent);
    assert!(briefing_on(&acts, agent).is_some());
}

#[test]
fn a_closed_route_promises_a_callback_and_dials_nobody() {
    let mut cfg = caller_config(RoutePlan {
        hours: Some(Hours {
            days: vec![1, 2, 3, 4, 5],
            open: "09:00".into(),
            close: "17:00".into(),
        }),
        ..route(&["sip:a1@127.0.0.1"], false)
    });
    // Saturday 21 November 2026, 10:00 UTC.
    let t0 = Instant::now();
    cfg.wall_clock = Some((t0, "2026-11-21T10:00:00Z".parse().unwrap()));
    let mut p = Pair::answered_with(cfg);
    let acts = p.send(Leg::Caller, turn_saying("I want to speak to a human"));
    assert_eq!(dialled_leg(&acts), None, "{acts:?}");
    assert!(has(&acts, Leg::Caller, |a| matches!(
        a,
        CallAction::Escalate {
            decision: Decision::Callback { weekday: 1, .. },
            ..
        }
    )));
    assert!(acts.iter().all(|(l, _)| *l == Leg::Caller));
}

#[test]
fn an_agent_call_that_cannot_be_placed_counts_as_unreachable_and_the_hunt_goes_on() {
    let mut p = Pair::answered(route(&["sip:bad", "sip:a2@127.0.0.1"], false));
    // Play a driver that cannot place the first call (no RTP port left).
    let acts = {
        p.call.handle(
            p.now,
            Leg::Caller,
            turn_saying("I want to speak to a human"),
        );
        let mut out = Vec::new();
        while let Some((leg, action)) = p.call.poll_action() {
            if matches!(action, CallAction::Dial(_)) && leg == Leg::Agent(1) {
                p.call.dial_failed(p.now, leg, "no free RTP port".into());
                continue;
            }
            out.push((leg, action));
        }
        out
    };
    assert!(has(&acts, Leg::Agent(2), |a| matches!(
        a,
        CallAction::Dial(_)
    )));
    assert!(acts.iter().any(|(_, a)| matches!(
        a,
        CallAction::Audit(e) if e.code() == "agent_failed" && e.detail().contains("no free RTP port")
    )));
}

/// A caller B2BUA'd to a far end, the far leg opened as a driver would.
fn bridged_pair(target: &str) -> Pair {
    let mut cfg = config(0, 1);
    cfg.answer_on_command = true;
    let mut p = Pair::new(
        Instant::now(),
        Call::inbound(
            cfg,
            CallSetup {
                bridge_to: Some(target.into()),
                ..CallSetup::default()
            },
        ),
    );
    let acts = p.send(
        Leg::Caller,
        CallEvent::Invite {
            sdp: Some(offer("sendrecv", 1)),
        },
    );
    // The trail starts, then the far end is dialled before the caller hears anything.
    assert!(matches!(
        &acts[0],
        (Leg::Caller, CallAction::Audit(Audit::CallStart { .. }))
    ));
    assert!(matches!(&acts[1], (Leg::Far, CallAction::Dial(d)) if d.target == target));
    assert_eq!(p.dialled[0].1.prefer, Some(CodecName::Pcmu));
    p
}

#[test]
fn a_b2bua_answers_the_caller_when_the_far_end_answers_and_bridges_them() {
    let mut p = bridged_pair("sip:far@127.0.0.1");
    let acts = p.send(
        Leg::Far,
        CallEvent::Answered {
            timer: Default::default(),
            sdp: Some(answer_sdp("sendrecv")),
        },
    );
    assert!(has(&acts, Leg::Caller, |a| matches!(
        a,
        CallAction::Answer { .. }
    )));
    assert!(has(&acts, Leg::Caller, |a| *a
        == CallAction::Bridge { with: Leg::Far }));
    p.send(Leg::Caller, CallEvent::Ack);
    // Either side's BYE ends the other.
    let acts = p.send(Leg::Far, CallEvent::PeerBye);
    assert!(has(&acts, Leg::Caller, |a| *a == CallAction::SendBye));
    assert!(p.call.is_ended());
}

#[test]
fn a_b2bua_refuses_the_caller_with_what_the_far_end_said() {
    for (status, refused) in [(486, 486), (408, 480), (503, 503)] {
        let mut p = bridged_pair("sip:far@127.0.0.1");
        let acts = p.send(Leg::Far, CallEvent::Failed { status });
        assert!(
            has(&acts, Leg::Caller, |a| matches!(
                a,
                CallAction::Reject { status, .. } if *status == refused
            )),
            "{status}: {acts:?}"
        );
        assert!(p.call.is_ended());
    }
    assert_eq!(
        refusal_for(&OriginateOutcome::Unreachable { reason: "x".into() }),
        502
    );
}

#[test]
fn a_b2bua_whose_far_end_cannot_be_placed_refuses_the_caller_with_502() {
    let mut cfg = config(0, 1);
    cfg.answer_on_command = true;
    let mut call = Call::inbound(
        cfg,
        CallSetup {
            bridge_to: Some("sip:far@127.0.0.1".into()),
            ..CallSetup::default()
        },
    );
    let now = Instant::now();
    call.handle(
        now,
        Leg::Caller,
        CallEvent::Invite {
            sdp: Some(offer("sendrecv", 1)),
        },
    );
    let dial =
        std::iter::from_fn(|| call.poll_action()).find(|(_, a)| matches!(a, CallAction::Dial(_)));
    assert!(matches!(dial, Some((Leg::Far, _))));
    call.dial_failed(now, Leg::Far, "bad URI".into());
    let acts: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
    assert!(
        acts.iter()
            .any(|(l, a)| *l == Leg::Caller && matches!(a, CallAction::Reject { status: 502, .. }))
    );
    assert!(call.is_ended());
}

#[test]
fn the_packet_and_the_live_view_come_whole_from_the_core() {
    let mut cfg = caller_config(route(&["sip:a1@127.0.0.1"], false));
    cfg.call_id = "c1@pbx".into();
    cfg.public_url = "http://gw.example:8080".into();
    let mut p = Pair::answered_with(cfg);
    p.send(Leg::Caller, CallEvent::Dtmf { digit: '5' });
    p.ask_for_person();
    let packet = p
        .log
        .iter()
        .find_map(|(_, a)| match a {
            CallAction::PostContext { packet } => Some(packet.clone()),
            _ => None,
        })
        .expect("a packet");
    assert_eq!(packet.call_id, "c1@pbx");
    assert_eq!(
        packet.links.context,
        "http://gw.example:8080/api/calls/c1@pbx/context"
    );
    assert_eq!(
        packet.links.agent_page,
        "http://gw.example:8080/agent/calls/c1@pbx"
    );
    let view = p.call.leg(Leg::Caller).unwrap().snapshot();
    assert_eq!(view.digits, "5");
    assert_eq!(view.transcript.len(), 1);
    assert_eq!(view.triggers[0].kind, "explicit_request");
    assert_eq!(view.decision, Some(Decision::Transfer));
    assert!(view.briefing.unwrap().spoken.contains("Ada Lovelace"));
    assert!(
        view.said.iter().any(|s| s.contains("connecting you")),
        "{:?}",
        view.said
    );
    assert_eq!(view.context.map(|c| c.call_id), Some("c1@pbx".into()));
}

#[test]
fn a_second_transfer_in_the_same_call_numbers_its_agent_legs_on() {
    let mut p = Pair::answered(route(&["sip:a1@127.0.0.1"], false));
    let first = p.ask_for_person();
    assert_eq!(first, Leg::Agent(1));
    p.send(first, CallEvent::Failed { status: 486 });
    assert_eq!(transfer_outcome(&p), Some(TransferOutcome::Failed));
    // The caller presses 0 (the default `pressed_zero` rule; each rule fires once): a new
    // agent leg, never the old one's key.
    let acts = p.send(Leg::Caller, CallEvent::Dtmf { digit: '0' });
    assert_eq!(dialled_leg(&acts), Some(Leg::Agent(2)), "{acts:?}");
}
