//! The audit trail's vocabulary: every event a call's trail can hold, typed, with its stable
//! code and the sentence stored beside it.
//!
//! The cores emit these as [`crate::CallAction::Audit`] (the caller's controller for what it
//! decides, the [`crate::Call`] for what it sees pass between legs); the CRM outbox emits
//! its delivery results. One driver function stores them and moves the metrics that follow
//! from them, so no event is named twice and none is written from two layers.
//!
//! The codes are what `GET /api/calls/{id}/audit` and the CRM have always shown (`bridged`,
//! `agent_failed`…): they are an interface, kept as they were.

use crate::controller::{EndReason, HuntStrategy};
use serde::{Deserialize, Serialize};
use warmline_policy::TriggerKind;

/// When a closed route's team will call back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reopening {
    /// 1 = Monday … 7 = Sunday.
    pub weekday: u8,
    /// "HH:MM", the route's local time.
    pub at: String,
    /// The call's written summary, for whoever calls back.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Audit {
    /// An inbound call was taken (not refused on its INVITE).
    CallStart {
        from: String,
        to: String,
    },
    /// The greeting with the automated-assistant disclosure ended.
    Disclosure {
        interrupted: bool,
    },
    /// A caller turn; its words only when the operator keeps transcripts.
    Turn {
        text: Option<String>,
        start_ms: u64,
        end_ms: u64,
        confidence: f32,
        arousal: Option<f32>,
    },
    /// An escalation rule fired. `decision` (`transfer`, `callback`) is `None` when it
    /// fired during a transfer and was only recorded.
    Trigger {
        rule: String,
        kind: TriggerKind,
        route: String,
        confidence: f32,
        at_ms: u64,
        /// From the end of the caller's speech, for the kinds speech decides.
        after_speech_ms: Option<u64>,
        evidence: Vec<String>,
        decision: Option<String>,
    },
    TransferDecided {
        rule: String,
        kind: TriggerKind,
        reason: String,
        route: String,
    },
    /// A rule fired before the answer; the transfer waits for the call to be up.
    TransferDeferred {
        rule: String,
    },
    /// A callback was promised: the route is closed (`reopens`), or no agent took the call.
    CallbackRequested {
        route: String,
        to: String,
        reopens: Option<Reopening>,
    },
    /// The hunt begins: the route's agents as configured. A sequential hunt tries them in
    /// this order; a round-robin one starts at its turn in the rotation (each
    /// `agent_attempt` names who was tried).
    TransferStarted {
        route: String,
        strategy: HuntStrategy,
        targets: Vec<String>,
    },
    /// The context packet went to the CRM outbox (`url`), or is only stored (no CRM).
    PacketPosted {
        url: String,
    },
    PacketStored,
    PacketAcknowledged {
        status: u16,
        delivery: i64,
        attempt: i64,
    },
    /// The first failed delivery of a packet; retries are not written.
    PacketDeliveryFailed {
        error: String,
    },
    AgentAttempt {
        attempt: u32,
        target: String,
    },
    AgentFailed {
        attempt: u32,
        target: String,
        why: String,
    },
    AgentAnswered {
        attempt: u32,
        target: String,
    },
    /// The language model's briefing, or why it was not used.
    BriefingWritten {
        text: String,
    },
    BriefingNotUsed,
    AgentDeclined {
        attempt: u32,
        target: String,
        why: String,
    },
    AgentHungUp {
        attempt: u32,
    },
    Bridged {
        attempt: u32,
        target: String,
        after_ms: u64,
    },
    TransferFailed {
        route: String,
    },
    /// The caller ended a bridged call.
    CallerHungUp,
    /// The caller hung up during the transfer, before the bridge.
    Abandoned {
        attempt: u32,
        phase: String,
    },
    End {
        reason: EndReason,
    },
    /// After a restart, a leg the dead process left open was ended: a confirmed one with
    /// its BYE, a ringing one with a CANCEL (`method`). The status of the answer (`None`:
    /// no answer).
    Recovered {
        leg: String,
        method: String,
        status: Option<u16>,
    },
}

impl Audit {
    /// The event's stable code in the trail.
    pub fn code(&self) -> &'static str {
        match self {
            Audit::CallStart { .. } => "call_start",
            Audit::Disclosure { .. } => "disclosure",
            Audit::Turn { .. } => "turn",
            Audit::Trigger { .. } => "trigger",
            Audit::TransferDecided { .. } => "transfer_decided",
            Audit::TransferDeferred { .. } => "transfer_deferred",
            Audit::CallbackRequested { .. } => "callback_requested",
            Audit::TransferStarted { .. } => "transfer_started",
            Audit::PacketPosted { .. } => "packet_posted",
            Audit::PacketStored => "packet_stored",
            Audit::PacketAcknowledged { .. } => "packet_acknowledged",
            Audit::PacketDeliveryFailed { .. } => "packet_delivery_failed",
            Audit::AgentAttempt { .. } => "agent_attempt",
            Audit::AgentFailed { .. } => "agent_failed",
            Audit::AgentAnswered { .. } => "agent_answered",
            Audit::BriefingWritten { .. } => "briefing_written",
            Audit::BriefingNotUsed => "briefing_not_used",
            Audit::AgentDeclined { .. } => "agent_declined",
            Audit::AgentHungUp { .. } => "agent_hung_up",
            Audit::Bridged { .. } => "bridged",
            Audit::TransferFailed { .. } => "transfer_failed",
            Audit::CallerHungUp => "caller_hung_up",
            Audit::Abandoned { .. } => "abandoned",
            Audit::End { .. } => "end",
            Audit::Recovered { .. } => "recovered",
        }
    }

    /// The sentence stored with the code.
    pub fn detail(&self) -> String {
        match self {
            Audit::CallStart { from, to } => format!("from {from} to {to}"),
            Audit::Disclosure { interrupted: true } => {
                "greeting with the automated-assistant disclosure cut short by the caller".into()
            }
            Audit::Disclosure { interrupted: false } => {
                "greeting with the automated-assistant disclosure played in full".into()
            }
            Audit::Turn {
                text,
                start_ms,
                end_ms,
                confidence,
                arousal,
            } => format!(
                "{}{start_ms}-{end_ms} ms, confidence {confidence:.2}, arousal {}",
                text.as_ref()
                    .map(|t| format!("\"{t}\", "))
                    .unwrap_or_default(),
                arousal.map_or("-".to_string(), |a| format!("{a:.2}"))
            ),
            Audit::Trigger {
                rule,
                kind,
                confidence,
                at_ms,
                after_speech_ms,
                evidence,
                decision,
                ..
            } => match decision {
                Some(_) => format!(
                    "rule {rule} ({kind}), confidence {confidence:.2}, at {at_ms} ms{}: {}",
                    after_speech_ms
                        .map(|ms| format!(", {ms} ms after the end of speech"))
                        .unwrap_or_default(),
                    evidence.join("; ")
                ),
                None => format!(
                    "rule {rule} ({kind}) during the transfer: {}",
                    evidence.join("; ")
                ),
            },
            Audit::TransferDecided {
                rule,
                kind,
                reason,
                route,
            } => format!("rule {rule} ({kind}): {reason}; route {route}"),
            Audit::TransferDeferred { rule } => {
                format!("rule {rule} fired before the answer: transfer once the call is up")
            }
            Audit::CallbackRequested {
                route,
                to,
                reopens: Some(r),
            } => format!(
                "route {route} closed: callback to {to} promised for weekday {} from {}; {}",
                r.weekday, r.at, r.summary
            ),
            Audit::CallbackRequested {
                route,
                to,
                reopens: None,
            } => format!("route {route}: no agent available; callback to {to} promised"),
            Audit::TransferStarted {
                route,
                strategy,
                targets,
            } => format!(
                "route {route} ({}), {} target(s): {}",
                strategy.as_str(),
                targets.len(),
                targets.join(", ")
            ),
            Audit::PacketPosted { url } => format!("queued for {url}"),
            Audit::PacketStored => {
                "no CRM configured; served at /api/calls/<call id>/context".into()
            }
            Audit::PacketAcknowledged {
                status,
                delivery,
                attempt,
            } => format!("CRM answered {status} (delivery {delivery}, attempt {attempt})"),
            Audit::PacketDeliveryFailed { error } => {
                format!("{error}; retrying with back-off until the CRM answers")
            }
            Audit::AgentAttempt { attempt, target } => {
                format!("attempt {attempt}: calling {target}")
            }
            Audit::AgentFailed {
                attempt,
                target,
                why,
            } => format!("attempt {attempt}: {target}: {why}"),
            Audit::AgentAnswered { attempt, target } => {
                format!("attempt {attempt}: {target} answered; briefing them")
            }
            Audit::BriefingWritten { text } => text.clone(),
            Audit::BriefingNotUsed => {
                "the model's briefing came after an agent was already briefed".into()
            }
            Audit::AgentDeclined {
                attempt,
                target,
                why,
            } => format!("attempt {attempt}: {target}: {why}"),
            Audit::AgentHungUp { attempt } => {
                format!("attempt {attempt}: the agent ended the call")
            }
            Audit::Bridged {
                attempt,
                target,
                after_ms,
            } => format!(
                "attempt {attempt}: caller joined with {target}, {after_ms} ms after the trigger"
            ),
            Audit::TransferFailed { route } => format!("route {route}: no agent took the call"),
            Audit::CallerHungUp => "the caller ended the bridged call".into(),
            Audit::Abandoned { attempt, phase } => {
                format!("the caller hung up during the transfer (attempt {attempt}, {phase})")
            }
            Audit::End { reason } => reason.code().to_string(),
            Audit::Recovered {
                leg,
                method,
                status,
            } => match status {
                Some(status) => format!("{leg}: {method} after the restart, answered {status}"),
                None => format!("{leg}: {method} after the restart, not answered"),
            },
        }
    }
}
