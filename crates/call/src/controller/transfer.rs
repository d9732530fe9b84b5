//! The warm transfer, a part of the caller's controller that owns its own state: the hold
//! bridge and transition prompt, the agent hunt with typed outcomes, the private briefing
//! (and optional accept/decline by DTMF), the bridge, and every fallback: next agent,
//! back to the assistant with an apology and a callback, the caller hanging up meanwhile.
//!
//! It touches nothing of the controller's: what it needs of the rest of the call (hold or
//! resume the caller, a prompt, an action for the driver, the assistant back) it asks for
//! as [`Ask`]s, which the controller carries out in order.
//!
//! The agents' calls are other legs of the [`crate::Call`]; their fate comes back as
//! `Agent*` events tagged with the attempt number, so a late event from an abandoned
//! attempt is recognised and ignored.

use super::{CallAction, HuntStrategy, RoutePlan};
use crate::OriginateOutcome;
use crate::assistant::AssistantConfig;
use crate::audit::Audit;
use crate::context::ContextPacket;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use warmline_policy::briefing::Briefing;
use warmline_policy::{Trigger, TriggerKind};

/// How long an agent who must accept (DTMF 1) has after the briefing.
pub const ACCEPT_WINDOW: Duration = Duration::from_secs(10);

/// How a warm transfer ended, for the KPIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferOutcome {
    /// Caller and agent were joined.
    Bridged,
    /// No agent took the call (or the route has none).
    Failed,
    /// The caller hung up before an agent was joined.
    Abandoned,
    /// The call ended another way first (RTP timeout, an operator's hang-up).
    Ended,
}

impl TransferOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferOutcome::Bridged => "bridged",
            TransferOutcome::Failed => "failed",
            TransferOutcome::Abandoned => "abandoned",
            TransferOutcome::Ended => "ended",
        }
    }
}

/// Where a warm transfer stands, for the API and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferPhase {
    /// An agent's phone is ringing.
    Ringing,
    /// The agent answered and hears the briefing.
    Briefing,
    /// The briefing is over; waiting for the agent's 1 (take) or 2 (pass).
    AwaitingAccept,
    /// Caller and agent are joined.
    Bridged,
}

#[derive(Debug, Clone)]
struct Attempt {
    id: u32,
    target: String,
    phase: TransferPhase,
    whisper_id: Option<u64>,
}

/// What the transfer asks of the rest of the caller's controller, carried out in order.
#[derive(Debug)]
pub(super) enum Ask {
    /// Put the caller on hold (re-INVITE `a=sendonly`, hold audio).
    Hold,
    /// Take the caller off hold.
    Resume,
    /// A prompt to the caller that they cannot cut short.
    Say(String),
    /// The briefing on the agent's leg: the controller gives it a play id and tells the
    /// transfer with [`Transfer::briefing_id`].
    Whisper { attempt: u32, text: String },
    /// An action for the driver, as it is.
    Act(CallAction),
    /// The agent ended the bridged call: end the caller's too.
    HangUp,
    /// The transfer is over without a bridge: the assistant has the caller again.
    Over,
}

/// The lines the transfer speaks, from the assistant's config.
#[derive(Debug, Clone)]
pub(super) struct Texts {
    transition: String,
    hold_refresh: String,
    hold_refresh_s: u64,
    agent_confirm: String,
    apology: String,
}

impl From<&AssistantConfig> for Texts {
    fn from(c: &AssistantConfig) -> Self {
        Self {
            transition: c.transition.clone(),
            hold_refresh: c.hold_refresh.clone(),
            hold_refresh_s: c.hold_refresh_s,
            agent_confirm: c.agent_confirm.clone(),
            apology: c.apology.clone(),
        }
    }
}

/// Who the transfer is for, and how it may number its attempts.
#[derive(Debug, Clone)]
pub(super) struct Start {
    pub texts: Texts,
    /// The caller's identity, for the callback promise.
    pub caller_id: String,
    /// Ask a language model for a better briefing.
    pub llm_briefing: bool,
    /// The last attempt number this call used (agents' legs are keyed by it).
    pub last_attempt: u32,
}

#[derive(Debug, Clone)]
pub(super) struct Transfer {
    texts: Texts,
    caller_id: String,
    last_attempt: u32,
    route: RoutePlan,
    /// The trigger's kind, for the outcome.
    kind: TriggerKind,
    /// Targets in hunt order, and the next one to try.
    order: Vec<String>,
    next: usize,
    /// A round-robin hunt waits for its turn in the rotation before the first dial.
    waiting_rotation: bool,
    attempt: Option<Attempt>,
    briefing: Briefing,
    started: Instant,
    refresh_at: Option<Instant>,
    accept_deadline: Option<Instant>,
}

impl Transfer {
    pub(super) fn timers(&self) -> [Option<Instant>; 2] {
        [self.refresh_at, self.accept_deadline]
    }

    pub(super) fn phase(&self) -> Option<TransferPhase> {
        self.attempt.as_ref().map(|a| a.phase)
    }

    /// The last attempt number used, so the next transfer of the call numbers on from it.
    pub(super) fn last_attempt(&self) -> u32 {
        self.last_attempt
    }

    /// A trigger decided on a transfer: hold the caller, tell them, post the packet, and
    /// start the hunt. `None` when the route has nobody to call (the caller is told, and a
    /// callback promised, at once).
    pub(super) fn start(
        now: Instant,
        route: RoutePlan,
        trigger: &Trigger,
        briefing: Briefing,
        packet: ContextPacket,
        s: Start,
        out: &mut Vec<Ask>,
    ) -> Option<Self> {
        let order = route.targets.clone();
        // The hunt order of a round-robin route depends on the other calls: it is known
        // when the driver answers with the rotation.
        let rotating = route.strategy == HuntStrategy::RoundRobin && !order.is_empty();
        out.push(Ask::Act(CallAction::Audit(Audit::TransferStarted {
            route: route.name.clone(),
            strategy: route.strategy,
            targets: order.clone(),
        })));
        // The CRM gets the packet either way: with no agent to take the call it is what
        // the callback is made from.
        if s.llm_briefing && !route.targets.is_empty() {
            out.push(Ask::Act(CallAction::WriteBriefing {
                packet: Box::new(packet.clone()),
            }));
        }
        out.push(Ask::Act(CallAction::PostContext {
            packet: Box::new(packet),
        }));
        let refresh = Duration::from_secs(s.texts.hold_refresh_s.max(5));
        let mut t = Self {
            texts: s.texts,
            caller_id: s.caller_id,
            last_attempt: s.last_attempt,
            route,
            kind: trigger.kind,
            order,
            next: 0,
            waiting_rotation: false,
            attempt: None,
            briefing,
            started: now,
            refresh_at: Some(now + refresh),
            accept_deadline: None,
        };
        if t.order.is_empty() {
            // Nobody to call: no hold, straight to the apology and the callback.
            t.apologise(out);
            t.ended(TransferOutcome::Failed, Some(0), out);
            return None;
        }
        // The hold bridge: the caller hears hold audio at once (the transition prompt cuts
        // in as soon as it is rendered), so there is no dead air.
        out.push(Ask::Hold);
        out.push(Ask::Say(
            t.texts
                .transition
                .replace("{lead}", lead_in(trigger.kind))
                .replace(
                    "{seconds}",
                    &anchor_seconds(t.route.ring_timeout).to_string(),
                ),
        ));
        if rotating {
            t.waiting_rotation = true;
            out.push(Ask::Act(CallAction::AskRotation {
                route: t.route.name.clone(),
            }));
        } else {
            t.hunt(now, out);
        }
        Some(t)
    }

    /// This transfer's turn in a round-robin route's rotation: the hunt starts that many
    /// agents along.
    pub(super) fn on_rotation(&mut self, now: Instant, position: usize, out: &mut Vec<Ask>) {
        if !std::mem::take(&mut self.waiting_rotation) || self.order.is_empty() {
            return;
        }
        let start = position % self.order.len();
        self.order.rotate_left(start);
        self.hunt(now, out);
    }

    fn hunt(&mut self, now: Instant, out: &mut Vec<Ask>) {
        self.dial_next(now, out);
        // After the dial, so the agent's INVITE is on its way before the render starts.
        self.prepare_whisper(out);
    }

    /// What the agent hears on answering: the briefing, and the accept prompt where the
    /// route asks for one.
    fn whisper_text(&self) -> String {
        let mut text = self.briefing.spoken.clone();
        if self.route.confirm {
            text.push(' ');
            text.push_str(&self.texts.agent_confirm);
        }
        text
    }

    /// Render the briefing while the agent's phone rings, so they hear it the moment they
    /// answer rather than after the TTS has run.
    fn prepare_whisper(&self, out: &mut Vec<Ask>) {
        out.push(Ask::Act(CallAction::PrepareSpeech {
            text: self.whisper_text(),
        }));
    }

    fn dial_next(&mut self, now: Instant, out: &mut Vec<Ask>) {
        self.accept_deadline = None;
        let Some(target) = self.order.get(self.next).cloned() else {
            self.failed(now, out);
            return;
        };
        self.next += 1;
        self.last_attempt += 1;
        let id = self.last_attempt;
        self.attempt = Some(Attempt {
            id,
            target: target.clone(),
            phase: TransferPhase::Ringing,
            whisper_id: None,
        });
        out.push(Ask::Act(CallAction::Audit(Audit::AgentAttempt {
            attempt: id,
            target: target.clone(),
        })));
        out.push(Ask::Act(CallAction::DialAgent {
            attempt: id,
            target,
            ring_timeout: self.route.ring_timeout,
            reason: self.briefing.reason.clone(),
            summary: self.briefing.summary.clone(),
        }));
    }

    /// The attempt the transfer is on, if `attempt` is it.
    fn current(&mut self, attempt: u32) -> Option<&mut Attempt> {
        self.attempt.as_mut().filter(|a| a.id == attempt)
    }

    pub(super) fn on_agent_outcome(
        &mut self,
        now: Instant,
        attempt: u32,
        outcome: OriginateOutcome,
        out: &mut Vec<Ask>,
    ) {
        let Some(a) = self.current(attempt) else {
            return;
        };
        let target = a.target.clone();
        if outcome != OriginateOutcome::Answered {
            out.push(Ask::Act(CallAction::Audit(Audit::AgentFailed {
                attempt,
                target,
                why: outcome_text(&outcome),
            })));
            self.dial_next(now, out);
            return;
        }
        a.phase = TransferPhase::Briefing;
        out.push(Ask::Act(CallAction::Audit(Audit::AgentAnswered {
            attempt,
            target,
        })));
        out.push(Ask::Whisper {
            attempt,
            text: self.whisper_text(),
        });
    }

    /// The play id the controller gave the briefing of `attempt`.
    pub(super) fn briefing_id(&mut self, attempt: u32, id: u64) {
        if let Some(a) = self.current(attempt) {
            a.whisper_id = Some(id);
        }
    }

    /// A prompt finished: if it was the briefing on the agent's leg, bridge (or wait for
    /// the agent to accept). `true` when it was.
    pub(super) fn on_whisper_done(&mut self, now: Instant, id: u64, out: &mut Vec<Ask>) -> bool {
        let confirm = self.route.confirm;
        let Some(a) = self.attempt.as_mut() else {
            return false;
        };
        if a.whisper_id != Some(id) || a.phase != TransferPhase::Briefing {
            return false;
        }
        if confirm {
            a.phase = TransferPhase::AwaitingAccept;
            self.accept_deadline = Some(now + ACCEPT_WINDOW);
        } else {
            self.bridge(now, out);
        }
        true
    }

    /// A model-written briefing replaces the template one, unless an agent already hears it.
    pub(super) fn on_briefing_written(&mut self, text: String, out: &mut Vec<Ask>) {
        let started = self
            .attempt
            .as_ref()
            .is_some_and(|a| a.phase != TransferPhase::Ringing);
        let text = text.trim().to_string();
        if started || text.is_empty() {
            out.push(Ask::Act(CallAction::Audit(Audit::BriefingNotUsed)));
            return;
        }
        self.briefing.spoken = text.clone();
        out.push(Ask::Act(CallAction::Audit(Audit::BriefingWritten { text })));
        self.prepare_whisper(out);
    }

    pub(super) fn on_agent_dtmf(
        &mut self,
        now: Instant,
        attempt: u32,
        digit: char,
        out: &mut Vec<Ask>,
    ) {
        let awaiting = self
            .current(attempt)
            .is_some_and(|a| a.phase == TransferPhase::AwaitingAccept);
        if !awaiting {
            return;
        }
        match digit {
            '1' => self.bridge(now, out),
            '2' => self.agent_passed(now, "declined with 2", out),
            _ => {}
        }
    }

    fn agent_passed(&mut self, now: Instant, why: &str, out: &mut Vec<Ask>) {
        let Some(a) = self.attempt.clone() else {
            return;
        };
        out.push(Ask::Act(CallAction::Audit(Audit::AgentDeclined {
            attempt: a.id,
            target: a.target,
            why: why.to_string(),
        })));
        out.push(Ask::Act(CallAction::HangupAgent { attempt: a.id }));
        self.dial_next(now, out);
    }

    pub(super) fn on_agent_ended(&mut self, now: Instant, attempt: u32, out: &mut Vec<Ask>) {
        let Some(a) = self.current(attempt) else {
            return;
        };
        match a.phase {
            TransferPhase::Bridged => {
                out.push(Ask::Act(CallAction::Audit(Audit::AgentHungUp { attempt })));
                out.push(Ask::HangUp);
            }
            TransferPhase::Briefing | TransferPhase::AwaitingAccept => {
                let target = a.target.clone();
                out.push(Ask::Act(CallAction::Audit(Audit::AgentFailed {
                    attempt,
                    target,
                    why: "hung up before the bridge".into(),
                })));
                self.dial_next(now, out);
            }
            // A ringing attempt's end arrives with its outcome.
            TransferPhase::Ringing => {}
        }
    }

    fn bridge(&mut self, now: Instant, out: &mut Vec<Ask>) {
        let Some(a) = self.attempt.as_mut() else {
            return;
        };
        a.phase = TransferPhase::Bridged;
        let (attempt, target) = (a.id, a.target.clone());
        self.refresh_at = None;
        self.accept_deadline = None;
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        // Off hold first: the hold loop stops and the caller's re-INVITE goes out, then the
        // legs are joined.
        out.push(Ask::Resume);
        out.push(Ask::Act(CallAction::BridgeAgent { attempt }));
        out.push(Ask::Act(CallAction::Audit(Audit::Bridged {
            attempt,
            target,
            after_ms: ms,
        })));
        self.ended(TransferOutcome::Bridged, Some(ms), out);
    }

    fn ended(&self, outcome: TransferOutcome, after_ms: Option<u64>, out: &mut Vec<Ask>) {
        out.push(Ask::Act(CallAction::TransferEnded {
            kind: self.kind,
            route: self.route.name.clone(),
            outcome,
            after_ms,
        }));
    }

    /// Nobody took the call: off hold, an apology, a callback promise, and the assistant
    /// again.
    fn failed(&mut self, now: Instant, out: &mut Vec<Ask>) {
        self.attempt = None;
        out.push(Ask::Resume);
        self.apologise(out);
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.ended(TransferOutcome::Failed, Some(ms), out);
    }

    fn apologise(&self, out: &mut Vec<Ask>) {
        let route = self.route.name.clone();
        out.push(Ask::Act(CallAction::Audit(Audit::TransferFailed {
            route: route.clone(),
        })));
        out.push(Ask::Say(self.texts.apology.clone()));
        out.push(Ask::Act(CallAction::Audit(Audit::CallbackRequested {
            route,
            to: self.caller_id.clone(),
            reopens: None,
        })));
        out.push(Ask::Over);
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Ask>) {
        if self.refresh_at.is_some_and(|at| at <= now) {
            self.refresh_at = Some(now + Duration::from_secs(self.texts.hold_refresh_s.max(5)));
            out.push(Ask::Say(self.texts.hold_refresh.clone()));
        }
        if self.accept_deadline.is_some_and(|at| at <= now) {
            self.agent_passed(now, "did not accept in time", out);
        }
    }

    /// The call ends while a transfer is under way or bridged: the agent's leg goes too.
    pub(super) fn on_call_end(self, by_caller: bool) -> Vec<CallAction> {
        let mut out = Vec::new();
        let Some(a) = &self.attempt else {
            return out;
        };
        if a.phase == TransferPhase::Bridged {
            if by_caller {
                out.push(CallAction::Audit(Audit::CallerHungUp));
            }
        } else {
            if by_caller {
                out.push(CallAction::Audit(Audit::Abandoned {
                    attempt: a.id,
                    phase: format!("{:?}", a.phase),
                }));
            }
            out.push(CallAction::TransferEnded {
                kind: self.kind,
                route: self.route.name.clone(),
                outcome: if by_caller {
                    TransferOutcome::Abandoned
                } else {
                    TransferOutcome::Ended
                },
                after_ms: None,
            });
        }
        out.push(CallAction::HangupAgent { attempt: a.id });
        out
    }
}

/// What the caller hears first, by why they are being transferred.
fn lead_in(kind: TriggerKind) -> &'static str {
    match kind {
        TriggerKind::ExplicitRequest | TriggerKind::Dtmf => "Of course. ",
        TriggerKind::Prosody => "I can hear this matters, so ",
        TriggerKind::RepeatedFailure | TriggerKind::LowConfidence => {
            "So you don't have to repeat yourself, "
        }
        TriggerKind::Topic => "This needs a specialist, so ",
        TriggerKind::Elapsed => "To speed things up, ",
        TriggerKind::Caller => "As a priority caller, ",
        TriggerKind::Capacity => "To get you help quickly, ",
        TriggerKind::Keyword | TriggerKind::Assistant => "",
    }
}

/// The time anchor: a round figure near one ring timeout, which is when the caller
/// either has someone or hears from us again.
fn anchor_seconds(ring_timeout: Duration) -> u64 {
    let s = ring_timeout.as_secs().clamp(15, 60);
    s.div_ceil(5) * 5
}

fn outcome_text(o: &OriginateOutcome) -> String {
    match o {
        OriginateOutcome::Answered => "answered".into(),
        OriginateOutcome::Busy { status } => format!("busy ({status})"),
        OriginateOutcome::NoAnswer => "no answer".into(),
        OriginateOutcome::Rejected { status, reason } => format!("rejected ({status} {reason})"),
        OriginateOutcome::Unreachable { reason } => format!("unreachable ({reason})"),
        OriginateOutcome::Cancelled => "cancelled".into(),
    }
}
