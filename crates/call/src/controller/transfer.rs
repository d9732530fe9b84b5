//! The warm transfer, as part of the caller's [`Controller`]: hold bridge and transition
//! prompt, the context packet, the agent hunt with typed outcomes, the private briefing
//! (and optional accept/decline by DTMF), the bridge, and every fallback: next agent,
//! back to the assistant with an apology and a callback, the caller hanging up meanwhile.
//!
//! The agents' calls are separate dialogs the driver places on `DialAgent`; their fate
//! comes back as `Agent*` events tagged with the attempt number, so a late event from an
//! abandoned attempt is recognised and ignored.

use super::{CallAction, Controller, RoutePlan};
use crate::OriginateOutcome;
use crate::audit::Audit;
use crate::context::{
    CONTEXT_SCHEMA, ContextPacket, PacketCaller, PacketIntent, PacketLinks, PacketTrigger,
    PacketTurn, ProsodySummary,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use warmline_policy::Trigger;
use warmline_policy::briefing::Briefing;
use warmline_signaling::Direction;

/// How long an agent who must accept (DTMF 1) has after the briefing.
pub const ACCEPT_WINDOW: Duration = Duration::from_secs(10);

/// Turns carried in the context packet.
const PACKET_TURNS: usize = 10;

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

#[derive(Debug, Clone)]
pub(super) struct Transfer {
    route: RoutePlan,
    /// The trigger's kind, for the outcome.
    kind: String,
    /// Targets in hunt order, and the next one to try.
    order: Vec<String>,
    next: usize,
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
}

/// What the caller hears first, by why they are being transferred.
fn lead_in(kind: &str) -> &'static str {
    match kind {
        "explicit_request" | "dtmf" => "Of course. ",
        "prosody" => "I can hear this matters, so ",
        "repeated_failure" | "low_confidence" => "So you don't have to repeat yourself, ",
        "topic" => "This needs a specialist, so ",
        "elapsed" => "To speed things up, ",
        "caller" => "As a priority caller, ",
        _ => "",
    }
}

/// The time anchor: a round figure near one ring timeout, which is when the caller
/// either has someone or hears from us again.
fn anchor_seconds(ring_timeout: Duration) -> u64 {
    let s = ring_timeout.as_secs().clamp(15, 60);
    s.div_ceil(5) * 5
}

impl Controller {
    /// A trigger decided on a transfer: hold the caller, tell them, post the packet, and
    /// start the hunt.
    pub(super) fn start_transfer(&mut self, now: Instant, trigger: &Trigger, briefing: Briefing) {
        let route = self
            .routes
            .iter()
            .find(|r| r.name == trigger.route)
            .cloned()
            .unwrap_or_else(|| RoutePlan::unstaffed(&trigger.route));
        let mut order = route.targets.clone();
        if route.strategy == super::HuntStrategy::RoundRobin && !order.is_empty() {
            let start = route.next_target.fetch_add(1, Ordering::Relaxed) % order.len();
            order.rotate_left(start);
        }
        self.audit(Audit::TransferStarted {
            route: route.name.clone(),
            targets: order.clone(),
        });
        // The CRM gets the packet either way: with no agent to take the call it is what
        // the callback is made from.
        let packet = self.context_packet(trigger, &briefing);
        if self.llm_briefing && !route.targets.is_empty() {
            self.actions.push_back(CallAction::WriteBriefing {
                packet: Box::new(packet.clone()),
            });
        }
        self.context = Some(packet.clone());
        self.actions.push_back(CallAction::PostContext {
            packet: Box::new(packet),
        });
        if order.is_empty() {
            // Nobody to call: no hold, straight to the apology and the callback.
            self.apologise(now, &route.name);
            self.transfer_ended(&trigger.kind, &route.name, TransferOutcome::Failed, Some(0));
            return;
        }
        // The hold bridge: the caller hears hold audio at once (the transition prompt cuts
        // in as soon as it is rendered), so there is no dead air.
        self.set_want(Direction::SendOnly);
        let text = self
            .texts
            .transition
            .replace("{lead}", lead_in(&trigger.kind))
            .replace("{seconds}", &anchor_seconds(route.ring_timeout).to_string());
        self.say_unbargeable(now, text);
        let refresh = Duration::from_secs(self.texts.hold_refresh_s.max(5));
        self.transfer = Some(Transfer {
            route,
            kind: trigger.kind.clone(),
            order,
            next: 0,
            attempt: None,
            briefing,
            started: now,
            refresh_at: Some(now + refresh),
            accept_deadline: None,
        });
        self.dial_next(now);
        // After the dial, so the agent's INVITE is on its way before the render starts.
        self.prepare_whisper();
    }

    /// What the agent hears on answering: the briefing, and the accept prompt where the
    /// route asks for one.
    fn whisper_text(&self) -> Option<String> {
        let t = self.transfer.as_ref()?;
        let mut text = t.briefing.spoken.clone();
        if t.route.confirm {
            text.push(' ');
            text.push_str(&self.texts.agent_confirm);
        }
        Some(text)
    }

    /// Render the briefing while the agent's phone rings, so they hear it the moment they
    /// answer rather than after the TTS has run.
    fn prepare_whisper(&mut self) {
        if let Some(text) = self.whisper_text() {
            self.actions.push_back(CallAction::PrepareSpeech { text });
        }
    }

    fn dial_next(&mut self, now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        t.accept_deadline = None;
        let Some(target) = t.order.get(t.next).cloned() else {
            self.transfer_failed(now);
            return;
        };
        t.next += 1;
        self.next_attempt += 1;
        let id = self.next_attempt;
        t.attempt = Some(Attempt {
            id,
            target: target.clone(),
            phase: TransferPhase::Ringing,
            whisper_id: None,
        });
        let ring_timeout = t.route.ring_timeout;
        let reason = t.briefing.reason.clone();
        let summary = t.briefing.summary.clone();
        self.audit(Audit::AgentAttempt {
            attempt: id,
            target: target.clone(),
        });
        self.actions.push_back(CallAction::DialAgent {
            attempt: id,
            target,
            ring_timeout,
            reason,
            summary,
        });
    }

    fn current_attempt(&self, attempt: u32) -> bool {
        self.transfer
            .as_ref()
            .and_then(|t| t.attempt.as_ref())
            .is_some_and(|a| a.id == attempt)
    }

    pub(super) fn on_agent_outcome(
        &mut self,
        now: Instant,
        attempt: u32,
        outcome: OriginateOutcome,
    ) {
        if !self.current_attempt(attempt) {
            return;
        }
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let Some(a) = t.attempt.as_mut() else {
            return;
        };
        if outcome != OriginateOutcome::Answered {
            let target = a.target.clone();
            self.audit(Audit::AgentFailed {
                attempt,
                target,
                why: outcome_text(&outcome),
            });
            self.dial_next(now);
            return;
        }
        let id = self.next_play_id;
        self.next_play_id += 1;
        a.phase = TransferPhase::Briefing;
        a.whisper_id = Some(id);
        let target = a.target.clone();
        let text = self.whisper_text().unwrap_or_default();
        self.audit(Audit::AgentAnswered { attempt, target });
        self.actions
            .push_back(CallAction::WhisperToAgent { attempt, text, id });
    }

    /// The briefing finished on the agent's leg.
    pub(super) fn on_whisper_done(&mut self, now: Instant, id: u64) -> bool {
        let Some(t) = self.transfer.as_mut() else {
            return false;
        };
        let Some(a) = t.attempt.as_mut() else {
            return false;
        };
        if a.whisper_id != Some(id) || a.phase != TransferPhase::Briefing {
            return false;
        }
        if t.route.confirm {
            a.phase = TransferPhase::AwaitingAccept;
            t.accept_deadline = Some(now + ACCEPT_WINDOW);
        } else {
            self.bridge_agent(now);
        }
        true
    }

    /// A model-written briefing replaces the template one, unless an agent already hears it.
    pub(super) fn on_briefing_written(&mut self, text: String) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let started = t
            .attempt
            .as_ref()
            .is_some_and(|a| a.phase != TransferPhase::Ringing);
        let text = text.trim().to_string();
        if started || text.is_empty() {
            self.audit(Audit::BriefingNotUsed);
            return;
        }
        t.briefing.spoken = text.clone();
        self.audit(Audit::BriefingWritten { text });
        self.prepare_whisper();
    }

    pub(super) fn on_agent_dtmf(&mut self, now: Instant, attempt: u32, digit: char) {
        if !self.current_attempt(attempt) {
            return;
        }
        let awaiting = self
            .transfer
            .as_ref()
            .and_then(|t| t.phase())
            .is_some_and(|p| p == TransferPhase::AwaitingAccept);
        if !awaiting {
            return;
        }
        match digit {
            '1' => self.bridge_agent(now),
            '2' => self.agent_passed(now, "declined with 2"),
            _ => {}
        }
    }

    fn agent_passed(&mut self, now: Instant, why: &str) {
        let Some(a) = self.transfer.as_ref().and_then(|t| t.attempt.clone()) else {
            return;
        };
        self.audit(Audit::AgentDeclined {
            attempt: a.id,
            target: a.target.clone(),
            why: why.to_string(),
        });
        self.actions
            .push_back(CallAction::HangupAgent { attempt: a.id });
        self.dial_next(now);
    }

    pub(super) fn on_agent_ended(&mut self, now: Instant, attempt: u32) {
        if !self.current_attempt(attempt) {
            return;
        }
        match self.transfer.as_ref().and_then(|t| t.phase()) {
            Some(TransferPhase::Bridged) => {
                self.audit(Audit::AgentHungUp { attempt });
                self.hangup();
            }
            Some(TransferPhase::Briefing | TransferPhase::AwaitingAccept) => {
                let target = self
                    .transfer
                    .as_ref()
                    .and_then(|t| t.attempt.as_ref())
                    .map(|a| a.target.clone())
                    .unwrap_or_default();
                self.audit(Audit::AgentFailed {
                    attempt,
                    target,
                    why: "hung up before the bridge".into(),
                });
                self.dial_next(now);
            }
            // A ringing attempt's end arrives with its outcome.
            _ => {}
        }
    }

    fn bridge_agent(&mut self, now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let Some(a) = t.attempt.as_mut() else {
            return;
        };
        a.phase = TransferPhase::Bridged;
        t.refresh_at = None;
        t.accept_deadline = None;
        let attempt = a.id;
        let target = a.target.clone();
        let ms = now.saturating_duration_since(t.started).as_millis() as u64;
        let (kind, route) = (t.kind.clone(), t.route.name.clone());
        // Off hold first: the hold loop stops and the caller's re-INVITE goes out, then the
        // legs are joined.
        self.set_want(Direction::SendRecv);
        self.actions.push_back(CallAction::BridgeAgent { attempt });
        self.audit(Audit::Bridged {
            attempt,
            target,
            after_ms: ms,
        });
        self.transfer_ended(&kind, &route, TransferOutcome::Bridged, Some(ms));
    }

    fn transfer_ended(
        &mut self,
        kind: &str,
        route: &str,
        outcome: TransferOutcome,
        after_ms: Option<u64>,
    ) {
        self.actions.push_back(CallAction::TransferEnded {
            kind: kind.into(),
            route: route.into(),
            outcome,
            after_ms,
        });
    }

    /// Nobody took the call: off hold, an apology, a callback promise, and the assistant
    /// again.
    fn transfer_failed(&mut self, now: Instant) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        self.set_want(Direction::SendRecv);
        self.apologise(now, &t.route.name);
        let ms = now.saturating_duration_since(t.started).as_millis() as u64;
        self.transfer_ended(&t.kind, &t.route.name, TransferOutcome::Failed, Some(ms));
    }

    fn apologise(&mut self, now: Instant, route: &str) {
        self.audit(Audit::TransferFailed {
            route: route.to_string(),
        });
        let apology = self.texts.apology.clone();
        self.say_unbargeable(now, apology);
        self.audit(Audit::CallbackRequested {
            route: route.to_string(),
            to: self.caller_id.clone(),
            reopens: None,
        });
        self.escalated = false;
    }

    pub(super) fn transfer_timers(&mut self, now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.refresh_at.is_some_and(|at| at <= now) {
            t.refresh_at = Some(now + Duration::from_secs(self.texts.hold_refresh_s.max(5)));
            let text = self.texts.hold_refresh.clone();
            self.say_unbargeable(now, text);
        }
        let expired = self
            .transfer
            .as_ref()
            .and_then(|t| t.accept_deadline)
            .is_some_and(|at| at <= now);
        if expired {
            self.agent_passed(now, "did not accept in time");
        }
    }

    /// The call ends while a transfer is under way or bridged: the agent's leg goes too.
    pub(super) fn transfer_on_end(&mut self, by_caller: bool) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        let Some(a) = t.attempt else {
            return;
        };
        if a.phase == TransferPhase::Bridged {
            if by_caller {
                self.audit(Audit::CallerHungUp);
            }
        } else {
            if by_caller {
                self.audit(Audit::Abandoned {
                    attempt: a.id,
                    phase: format!("{:?}", a.phase),
                });
            }
            let outcome = if by_caller {
                TransferOutcome::Abandoned
            } else {
                TransferOutcome::Ended
            };
            self.transfer_ended(&t.kind, &t.route.name, outcome, None);
        }
        self.actions
            .push_back(CallAction::HangupAgent { attempt: a.id });
    }

    fn context_packet(&self, trigger: &Trigger, briefing: &Briefing) -> ContextPacket {
        let number = self.caller_number();
        let started_at = self
            .wall_clock
            .zip(self.answered_at)
            .and_then(|((at, wall), answered)| {
                let back =
                    jiff::SignedDuration::try_from(at.saturating_duration_since(answered)).ok()?;
                wall.checked_sub(back).ok()
            })
            .map(|t| t.to_string())
            .unwrap_or_default();
        let skip = self.turns.len().saturating_sub(PACKET_TURNS);
        let turns: Vec<PacketTurn> = self
            .turns
            .iter()
            .skip(skip)
            .map(|t| PacketTurn {
                text: t.text.clone(),
                start_ms: t.start_ms,
                end_ms: t.end_ms,
                confidence: t.confidence,
                arousal: t.prosody.as_ref().map(|p| p.arousal),
            })
            .collect();
        let scored: Vec<_> = self
            .turns
            .iter()
            .filter_map(|t| t.prosody.as_ref())
            .collect();
        let max = scored.iter().max_by(|a, b| a.arousal.total_cmp(&b.arousal));
        let prosody = ProsodySummary {
            scored_turns: scored.len(),
            mean_arousal: (!scored.is_empty())
                .then(|| scored.iter().map(|p| p.arousal).sum::<f32>() / scored.len() as f32),
            max_arousal: max.map(|p| p.arousal),
            evidence: max.map(|p| p.evidence.clone()).unwrap_or_default(),
        };
        ContextPacket {
            version: CONTEXT_SCHEMA,
            call_id: self.call_id.clone(),
            caller: PacketCaller {
                number,
                name: self.caller_name.clone(),
                uri: self.caller_id.clone(),
            },
            started_at,
            trigger: PacketTrigger {
                rule: trigger.rule.clone(),
                kind: trigger.kind.clone(),
                evidence: trigger.evidence.clone(),
                confidence: trigger.confidence,
                at_ms: trigger.at_ms,
                reason: briefing.reason.clone(),
            },
            disposition: trigger.disposition.clone(),
            route: trigger.route.clone(),
            intent: self.intent.as_ref().map(|i| PacketIntent {
                text: i.text.clone(),
                confidence: i.confidence,
                source: i.source.clone(),
            }),
            summary: briefing.summary.clone(),
            briefing: briefing.spoken.clone(),
            fields: self.fields.clone(),
            turns,
            prosody,
            policy_flags: self
                .triggers
                .iter()
                .map(|t| format!("{}:{}", t.kind, t.rule))
                .collect(),
            next_step: briefing.next_step.clone(),
            links: PacketLinks::for_call(&self.public_url, &self.call_id),
        }
    }
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
