//! One call, every leg: the caller's [`Controller`] and the controllers of the calls placed
//! for it (the agents a warm transfer hunts, or the far end of a B2BUA), keyed by [`Leg`].
//!
//! The `Call` routes between them, so no driver has to know what an agent attempt is: an
//! agent's outcome, its end, the digits it presses and the end of the briefing played to it
//! go to the caller's controller; the caller's hunt becomes [`CallAction::Dial`] on a new
//! leg, its hang-ups become [`CallEvent::Hangup`] on that leg, its briefing a
//! [`CallAction::Say`] on the agent's leg, and its bridge a [`CallAction::Bridge`]. A B2BUA's
//! far outcome answers or refuses the caller; either side's end ends the other.
//!
//! Like the controllers it owns it is sans-IO: the driver feeds `(leg, event)` with the
//! time, drains `(leg, action)` in order, and sleeps until [`Call::poll_timeout`]. The
//! driver keeps what is I/O per leg (the dialog, its RTP sockets, its media leg) under the
//! same key.

use crate::audit::Audit;
use crate::controller::{
    CallAction, CallConfig, CallEvent, Controller, EndReason, OriginateOutcome,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use warmline_signaling::CodecName;

/// A leg of a call. The driver keys its own per-leg state by it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    /// The leg the call began with: the inbound caller, or the callee of an outbound call
    /// placed through the API.
    Caller,
    /// A B2BUA's far end (the `bridge` route).
    Far,
    /// The agent of a warm transfer's attempt `n` (attempts are numbered per call).
    Agent(u32),
}

/// Place an outbound call on a leg: the driver reserves its media, builds its
/// [`CallConfig`] and hands it to [`Call::open_leg`], which returns the offer to send.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dial {
    pub target: String,
    pub ring_timeout: Option<Duration>,
    /// The caller's codec, first in the offer so the bridge can relay untouched.
    pub prefer: Option<CodecName>,
    /// Who the call is for and why, for the agent's screen-pop headers.
    pub screen: Option<ScreenPop>,
}

/// What the call as a whole is set up with, beyond its caller leg's config.
#[derive(Debug, Clone, Default)]
pub struct CallSetup {
    /// B2BUA the caller to this URI (the `bridge` route); the caller's config must then
    /// answer on command.
    pub bridge_to: Option<String>,
    /// The INVITE's From and To, for the trail.
    pub from: String,
    pub to: String,
    /// Keep the caller's words in the trail.
    pub keep_transcripts: bool,
    /// Where context packets are posted; `None`: they are only stored.
    pub crm_url: Option<String>,
}

/// Who an agent's call is for and why: what its screen-pop headers carry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScreenPop {
    /// The caller's number (asserted identity first), or empty when withheld.
    pub caller_number: String,
    pub caller_name: Option<String>,
    /// Why, in words, and the short summary.
    pub reason: String,
    pub summary: String,
}

/// The status a B2BUA gives its caller when the far end did not answer.
pub fn refusal_for(outcome: &OriginateOutcome) -> u16 {
    match outcome {
        OriginateOutcome::Answered => 200,
        OriginateOutcome::Busy { status } => *status,
        OriginateOutcome::NoAnswer => 480,
        OriginateOutcome::Rejected { status, .. } if (400..700).contains(status) => *status,
        OriginateOutcome::Rejected { .. } | OriginateOutcome::Unreachable { .. } => 502,
        OriginateOutcome::Cancelled => 487,
    }
}

/// A leg the call asked for: dialled (not yet open), or running.
#[derive(Debug)]
enum LegState {
    Dialling,
    Open(Box<Controller>),
}

#[derive(Debug)]
pub struct Call {
    caller: Controller,
    others: BTreeMap<Leg, LegState>,
    setup: CallSetup,
    /// Bridge the caller to the far leg once the caller's media is set up.
    bridge_far: bool,
    actions: VecDeque<(Leg, CallAction)>,
}

impl Call {
    /// An inbound call; feed it [`CallEvent::Invite`] on [`Leg::Caller`] next.
    pub fn inbound(cfg: CallConfig, setup: CallSetup) -> Self {
        Self::with_caller(Controller::inbound(cfg), setup)
    }

    /// An outbound call placed through the API, on [`Leg::Caller`]; the offer to send.
    pub fn outbound(now: Instant, cfg: CallConfig) -> (Self, String) {
        let (ctl, offer) = Controller::dial(now, cfg);
        (Self::with_caller(ctl, CallSetup::default()), offer)
    }

    fn with_caller(caller: Controller, setup: CallSetup) -> Self {
        Self {
            caller,
            others: BTreeMap::new(),
            setup,
            bridge_far: false,
            actions: VecDeque::new(),
        }
    }

    /// A leg's controller, while it runs.
    pub fn leg(&self, leg: Leg) -> Option<&Controller> {
        match leg {
            Leg::Caller => Some(&self.caller),
            other => match self.others.get(&other) {
                Some(LegState::Open(c)) => Some(c),
                _ => None,
            },
        }
    }

    /// Every leg is over: the driver can release the call.
    pub fn is_ended(&self) -> bool {
        self.caller.is_ended()
            && self.others.values().all(|l| match l {
                LegState::Dialling => true,
                LegState::Open(c) => c.is_ended(),
            })
    }

    /// The driver placed the call asked for by [`CallAction::Dial`]: this is its
    /// controller's config (its media reserved). Returns the offer for the INVITE.
    pub fn open_leg(&mut self, now: Instant, leg: Leg, cfg: CallConfig) -> Option<String> {
        if !matches!(self.others.get(&leg), Some(LegState::Dialling)) {
            return None;
        }
        let (ctl, offer) = Controller::dial(now, cfg);
        self.others.insert(leg, LegState::Open(Box::new(ctl)));
        // The caller may have ended while the driver was dialling.
        if self.caller.is_ended() {
            self.tell(now, leg, CallEvent::Hangup);
        }
        self.pump(now);
        Some(offer)
    }

    /// The call asked for by [`CallAction::Dial`] could not be placed (no media port, a bad
    /// URI): it counts as unreachable.
    pub fn dial_failed(&mut self, now: Instant, leg: Leg, reason: String) {
        if !matches!(self.others.get(&leg), Some(LegState::Dialling)) {
            return;
        }
        self.others.remove(&leg);
        self.leg_outcome(now, leg, OriginateOutcome::Unreachable { reason });
        self.leg_ended(now, leg);
        self.pump(now);
    }

    pub fn poll_action(&mut self) -> Option<(Leg, CallAction)> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.others
            .values()
            .filter_map(|l| match l {
                LegState::Open(c) => c.poll_timeout(),
                LegState::Dialling => None,
            })
            .chain(self.caller.poll_timeout())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.caller.handle_timeout(now);
        for l in self.others.values_mut() {
            if let LegState::Open(c) = l {
                c.handle_timeout(now);
            }
        }
        self.pump(now);
    }

    /// Feed one event of one leg.
    pub fn handle(&mut self, now: Instant, leg: Leg, event: CallEvent) {
        match (leg, event) {
            (Leg::Caller, CallEvent::Invite { sdp }) => {
                self.caller.handle(now, CallEvent::Invite { sdp });
                if !self.caller.is_ended() {
                    let (from, to) = (self.setup.from.clone(), self.setup.to.clone());
                    self.actions.push_back((
                        Leg::Caller,
                        CallAction::Audit(Audit::CallStart { from, to }),
                    ));
                }
                if let Some(target) = self
                    .setup
                    .bridge_to
                    .take()
                    .filter(|_| !self.caller.is_ended())
                {
                    self.bridge_far = true;
                    self.dial(
                        Leg::Far,
                        Dial {
                            target,
                            ring_timeout: None,
                            prefer: self.prefer(),
                            screen: None,
                        },
                    );
                }
            }
            (Leg::Caller, CallEvent::Transcript { turn }) => {
                let text = self.setup.keep_transcripts.then(|| turn.text.clone());
                let audit = Audit::Turn {
                    text,
                    start_ms: turn.start_ms,
                    end_ms: turn.end_ms,
                    confidence: turn.confidence,
                    arousal: turn.prosody.as_ref().map(|p| p.arousal),
                };
                self.actions
                    .push_back((Leg::Caller, CallAction::Audit(audit)));
                self.caller.handle(now, CallEvent::Transcript { turn });
            }
            (Leg::Caller, event) => self.caller.handle(now, event),
            // The briefing played to an agent was asked for by the caller's controller.
            (Leg::Agent(_), CallEvent::PlayoutDone { id, interrupted }) => self
                .caller
                .handle(now, CallEvent::PlayoutDone { id, interrupted }),
            (Leg::Agent(attempt), CallEvent::Dtmf { digit }) => {
                self.tell(now, leg, CallEvent::Dtmf { digit });
                self.caller
                    .handle(now, CallEvent::AgentDtmf { attempt, digit });
            }
            (leg, event) => self.tell(now, leg, event),
        }
        self.pump(now);
    }

    fn tell(&mut self, now: Instant, leg: Leg, event: CallEvent) {
        match leg {
            Leg::Caller => self.caller.handle(now, event),
            other => {
                if let Some(LegState::Open(c)) = self.others.get_mut(&other) {
                    c.handle(now, event);
                }
            }
        }
    }

    /// The caller's codec, offered first on the legs we place so the bridge can relay
    /// untouched.
    fn prefer(&self) -> Option<CodecName> {
        self.caller.media().map(|n| n.codec.name)
    }

    fn dial(&mut self, leg: Leg, dial: Dial) {
        self.others.insert(leg, LegState::Dialling);
        self.actions
            .push_back((leg, CallAction::Dial(Box::new(dial))));
    }

    /// How a placed leg's call ended up, told to the caller.
    fn leg_outcome(&mut self, now: Instant, leg: Leg, outcome: OriginateOutcome) {
        match leg {
            Leg::Agent(attempt) => self
                .caller
                .handle(now, CallEvent::AgentOutcome { attempt, outcome }),
            Leg::Far => {
                let event = match outcome {
                    OriginateOutcome::Answered => CallEvent::AnswerNow,
                    other => CallEvent::Refuse {
                        status: refusal_for(&other),
                    },
                };
                self.caller.handle(now, event);
            }
            Leg::Caller => {}
        }
    }

    fn leg_ended(&mut self, now: Instant, leg: Leg) {
        match leg {
            Leg::Agent(attempt) => self.caller.handle(now, CallEvent::AgentEnded { attempt }),
            // Either side of a B2BUA ending ends the other.
            Leg::Far => self.caller.handle(now, CallEvent::Hangup),
            Leg::Caller => {}
        }
    }

    /// Route every controller's actions until none is left: what one leg does may make
    /// another act.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(action) = self.caller.poll_action() {
                moved = true;
                self.route_caller_action(now, action);
            }
            let legs: Vec<Leg> = self.others.keys().copied().collect();
            for leg in legs {
                while let Some(LegState::Open(c)) = self.others.get_mut(&leg) {
                    let Some(action) = c.poll_action() else {
                        break;
                    };
                    moved = true;
                    self.route_leg_action(now, leg, action);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn route_caller_action(&mut self, now: Instant, action: CallAction) {
        match action {
            CallAction::DialAgent {
                attempt,
                target,
                ring_timeout,
                reason,
                summary,
            } => {
                let (number, name) = self.caller.caller_identity();
                let screen = ScreenPop {
                    caller_number: number,
                    caller_name: name.map(str::to_string),
                    reason,
                    summary,
                };
                self.dial(
                    Leg::Agent(attempt),
                    Dial {
                        target,
                        ring_timeout: Some(ring_timeout),
                        prefer: self.prefer(),
                        screen: Some(screen),
                    },
                );
            }
            CallAction::HangupAgent { attempt } => {
                self.tell(now, Leg::Agent(attempt), CallEvent::Hangup)
            }
            CallAction::WhisperToAgent { attempt, text, id } => {
                let leg = Leg::Agent(attempt);
                if self.leg(leg).is_some_and(|c| !c.is_ended()) {
                    self.actions.push_back((leg, CallAction::Say { text, id }));
                } else {
                    self.caller.handle(
                        now,
                        CallEvent::PlayoutDone {
                            id,
                            interrupted: true,
                        },
                    );
                }
            }
            CallAction::BridgeAgent { attempt } => {
                let with = Leg::Agent(attempt);
                if self.leg(with).is_some() {
                    self.actions
                        .push_back((Leg::Caller, CallAction::Bridge { with }));
                }
            }
            CallAction::MediaChanged(n) => {
                self.actions
                    .push_back((Leg::Caller, CallAction::MediaChanged(n)));
                if std::mem::take(&mut self.bridge_far) {
                    self.actions
                        .push_back((Leg::Caller, CallAction::Bridge { with: Leg::Far }));
                }
            }
            CallAction::PostContext { packet } => {
                self.actions
                    .push_back((Leg::Caller, CallAction::PostContext { packet }));
                let audit = match &self.setup.crm_url {
                    Some(url) => Audit::PacketPosted { url: url.clone() },
                    None => Audit::PacketStored,
                };
                self.actions
                    .push_back((Leg::Caller, CallAction::Audit(audit)));
            }
            CallAction::Ended { reason } => {
                self.ended(Leg::Caller, reason);
                let legs: Vec<Leg> = self.others.keys().copied().collect();
                for leg in legs {
                    self.tell(now, leg, CallEvent::Hangup);
                }
            }
            other => self.actions.push_back((Leg::Caller, other)),
        }
    }

    /// A leg is over: its trail's last event, then its end.
    fn ended(&mut self, leg: Leg, reason: EndReason) {
        self.actions
            .push_back((leg, CallAction::Audit(Audit::End { reason })));
        self.actions.push_back((leg, CallAction::Ended { reason }));
    }

    fn route_leg_action(&mut self, now: Instant, leg: Leg, action: CallAction) {
        match &action {
            CallAction::Outcome(outcome) => {
                let outcome = outcome.clone();
                self.actions.push_back((leg, action));
                self.leg_outcome(now, leg, outcome);
            }
            CallAction::Ended { reason } => {
                self.ended(leg, *reason);
                self.leg_ended(now, leg);
            }
            _ => self.actions.push_back((leg, action)),
        }
    }
}
