//! The context packet a transfer posts, built from what the caller's controller knows of
//! the call: who, the turns, the fields, the intent, the prosody, the policy's flags.

use super::Controller;
use crate::context::{
    CONTEXT_SCHEMA, ContextPacket, PacketCaller, PacketIntent, PacketLinks, PacketTrigger,
    PacketTurn, ProsodySummary,
};
use warmline_policy::Trigger;
use warmline_policy::briefing::Briefing;

/// Turns carried in the context packet.
const PACKET_TURNS: usize = 10;

impl Controller {
    pub(super) fn context_packet(&self, trigger: &Trigger, briefing: &Briefing) -> ContextPacket {
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
                kind: trigger.kind,
                evidence: trigger.evidence.clone(),
                confidence: trigger.confidence,
                at_ms: trigger.at_ms,
                reason: briefing.reason.clone(),
            },
            disposition: trigger.disposition.clone(),
            route: trigger.route.clone(),
            intent: self.conversation.intent().map(|i| PacketIntent {
                text: i.text.clone(),
                confidence: i.confidence,
                source: i.source.clone(),
            }),
            summary: briefing.summary.clone(),
            briefing: briefing.spoken.clone(),
            fields: self.conversation.fields().clone(),
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
