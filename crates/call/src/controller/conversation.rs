//! The conversation, a part of the caller's controller that owns its own state: the
//! assistant's turn-taking (the built-in dialogue or an external brain), the dialogue's
//! history, and what was learned from the caller (fields, intent, stated reason).
//!
//! It touches nothing of the controller's. What it wants done (speak, tell the policy the
//! assistant failed or the caller's need is met, ask the brain, hand over to a person) it
//! returns as [`Next`] steps, which the controller carries out in order; a step after the
//! one that handed the call over is not carried out (see [`Conversation::is_quiet`]).

use super::{Intent, LIVE_KEPT};
use crate::assistant::{Assistant, AssistantOutput};
use crate::brain::{BRAIN_SCHEMA, BrainReply, BrainRequest, DialogueLine};
use std::collections::{BTreeMap, VecDeque};
use warmline_speech::TranscriptTurn;

/// Dialogue lines (caller and assistant) sent to an external brain as history.
const BRAIN_HISTORY: usize = 10;

/// What the conversation asks of the controller, carried out in order.
#[derive(Debug)]
pub(super) enum Next {
    /// Speak to the caller, who may cut it short.
    Say(String),
    /// The assistant did not understand (a no-match): the policy counts it.
    Failed,
    /// The caller's need is met: elapsed-time rules stand down.
    Resolved,
    /// Send a caller turn to the external brain.
    AskBrain(Box<BrainRequest>),
    /// The brain asks for a person, on `route` (the policy's first route when `None`).
    Transfer {
        route: Option<String>,
        reason: String,
        confidence: f32,
    },
}

/// Who is calling, as the brain is told.
#[derive(Debug, Clone, Default)]
pub(super) struct Caller {
    pub call_id: String,
    /// Normalised number (P-Asserted-Identity first).
    pub number: String,
    pub name: Option<String>,
}

#[derive(Debug)]
pub(super) struct Conversation {
    assistant: Option<Assistant>,
    /// Turns go to the external brain, the built-in dialogue being its fallback.
    brain: bool,
    caller: Caller,
    /// The assistant has spoken or heard a turn (so the greeting's end does not re-ask).
    started: bool,
    /// A person is taking over: the assistant says nothing more.
    quiet: bool,
    brain_seq: u64,
    /// The newest turn the brain has answered: a later reply to an older turn is stale.
    brain_answered: u64,
    /// Turns sent to the brain and not answered yet: (seq, text), for the fallback.
    brain_pending: VecDeque<(u64, String)>,
    /// The last lines of the dialogue, for the brain.
    history: VecDeque<DialogueLine>,
    fields: BTreeMap<String, String>,
    intent: Option<Intent>,
    /// The caller's answer to "why are you calling", verbatim.
    stated_reason: Option<String>,
    /// What was said to the caller last, for the live view.
    said: VecDeque<String>,
}

impl Conversation {
    pub(super) fn new(assistant: Option<Assistant>, brain: bool, caller: Caller) -> Self {
        Self {
            assistant,
            brain,
            caller,
            started: false,
            quiet: false,
            brain_seq: 0,
            brain_answered: 0,
            brain_pending: VecDeque::new(),
            history: VecDeque::new(),
            fields: BTreeMap::new(),
            intent: None,
            stated_reason: None,
            said: VecDeque::new(),
        }
    }

    /// The assistant's first question, once the greeting is over. The brain speaks only
    /// when spoken to.
    pub(super) fn start(&mut self, next: &mut Vec<Next>) {
        if self.started || self.quiet || self.brain {
            return;
        }
        let Some(a) = self.assistant.as_mut() else {
            return;
        };
        self.started = true;
        let out = a.start();
        self.builtin(out, 0.0, next);
    }

    /// The caller said something (kept in the history before anything reacts to it).
    pub(super) fn heard(&mut self, text: &str, at_ms: u64) {
        self.remember("caller", text, at_ms);
    }

    /// Something was said to the caller.
    pub(super) fn spoke(&mut self, text: &str, at_ms: u64) {
        self.remember("assistant", text, at_ms);
        if self.said.len() == LIVE_KEPT {
            self.said.pop_front();
        }
        self.said.push_back(text.to_string());
    }

    /// A caller turn for the assistant: to the brain when there is one, else the
    /// built-in dialogue.
    pub(super) fn turn(&mut self, turn: &TranscriptTurn, next: &mut Vec<Next>) {
        if self.quiet || self.assistant.is_none() {
            return;
        }
        self.started = true;
        if !self.brain {
            self.builtin_turn(&turn.text, turn.confidence, next);
            return;
        }
        self.brain_seq += 1;
        let seq = self.brain_seq;
        self.brain_pending.push_back((seq, turn.text.clone()));
        next.push(Next::AskBrain(Box::new(BrainRequest {
            version: BRAIN_SCHEMA,
            call_id: self.caller.call_id.clone(),
            seq,
            caller: self.caller.number.clone(),
            caller_name: self.caller.name.clone(),
            transcript: turn.text.clone(),
            confidence: turn.confidence,
            prosody: turn.prosody.clone(),
            fields: self.fields.clone(),
            history: self.history.iter().cloned().collect(),
        })));
    }

    /// The brain answered turn `seq` (`None`: it failed, and the built-in dialogue answers).
    pub(super) fn brain_reply(
        &mut self,
        seq: u64,
        reply: Option<Box<BrainReply>>,
        next: &mut Vec<Next>,
    ) {
        let Some(pos) = self.brain_pending.iter().position(|(s, _)| *s == seq) else {
            return;
        };
        let (_, text) = self.brain_pending.remove(pos).unwrap_or_default();
        // A reply to an older turn than the newest one answered says nothing stale: the
        // caller has moved on, and has been answered.
        let stale = seq < self.brain_answered;
        self.brain_answered = self.brain_answered.max(seq);
        let Some(reply) = reply else {
            if !stale {
                self.builtin_turn(&text, 0.0, next);
            }
            return;
        };
        self.fields.extend(reply.fields);
        if let Some(intent) = reply.intent {
            self.intent = Some(Intent {
                text: intent,
                confidence: reply.confidence.unwrap_or(0.5).clamp(0.0, 1.0),
                source: "brain".into(),
            });
        }
        if let Some(t) = reply.transfer.filter(|_| !self.quiet) {
            next.push(Next::Transfer {
                route: t.route,
                reason: t.reason,
                confidence: reply.confidence.unwrap_or(1.0).clamp(0.0, 1.0),
            });
        }
        if let Some(say) = reply.say.filter(|s| !s.trim().is_empty() && !stale) {
            next.push(Next::Say(say));
        }
        if reply.resolved {
            next.push(Next::Resolved);
        }
    }

    /// A person takes over: the assistant falls silent and pending brain turns are dropped.
    pub(super) fn hand_over(&mut self) {
        self.quiet = true;
        self.brain_pending.clear();
    }

    /// The transfer is over without a person (failed, or a callback): the assistant may
    /// speak again.
    pub(super) fn take_back(&mut self) {
        self.quiet = false;
    }

    pub(super) fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// What the assistant says out of hours, `{day}` and `{time}` still to fill.
    pub(super) fn out_of_hours(&self) -> Option<&str> {
        self.assistant
            .as_ref()
            .map(|a| a.config().out_of_hours.as_str())
    }

    pub(super) fn fields(&self) -> &BTreeMap<String, String> {
        &self.fields
    }

    pub(super) fn intent(&self) -> Option<&Intent> {
        self.intent.as_ref()
    }

    pub(super) fn stated_reason(&self) -> Option<&str> {
        self.stated_reason.as_deref()
    }

    pub(super) fn said(&self) -> impl Iterator<Item = &String> {
        self.said.iter()
    }

    fn builtin_turn(&mut self, text: &str, confidence: f32, next: &mut Vec<Next>) {
        let Some(a) = self.assistant.as_mut() else {
            return;
        };
        let out = a.on_turn(text);
        self.builtin(out, confidence, next);
    }

    fn builtin(&mut self, out: Vec<AssistantOutput>, confidence: f32, next: &mut Vec<Next>) {
        for o in out {
            match o {
                AssistantOutput::Say { text } => next.push(Next::Say(text)),
                AssistantOutput::Field { name, value } => {
                    self.fields.insert(name, value);
                }
                AssistantOutput::Reason { text } => {
                    // The built-in flow does not classify: the caller's words are kept as
                    // their stated reason, not as an intent.
                    if self.stated_reason.is_none() && confidence > 0.0 {
                        self.stated_reason = Some(text);
                    }
                }
                AssistantOutput::Failed { .. } => next.push(Next::Failed),
                AssistantOutput::Resolved => next.push(Next::Resolved),
            }
        }
    }

    fn remember(&mut self, role: &str, text: &str, at_ms: u64) {
        if self.history.len() == BRAIN_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(DialogueLine {
            role: role.into(),
            text: text.into(),
            at_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::assistant::AssistantConfig;
    use crate::brain::BrainTransfer;

    fn with_brain() -> Conversation {
        let a = Assistant::new(AssistantConfig::default()).unwrap();
        Conversation::new(Some(a), true, Caller::default())
    }

    fn turn(text: &str) -> TranscriptTurn {
        TranscriptTurn {
            text: text.into(),
            start_ms: 0,
            end_ms: 0,
            confidence: 0.9,
            words: Vec::new(),
            recognizer: "whisper".into(),
            latency_ms: 0,
            endpoint_ms: 0,
            prosody: None,
        }
    }

    fn asked(c: &mut Conversation, text: &str) -> u64 {
        let mut next = Vec::new();
        c.heard(text, 0);
        c.turn(&turn(text), &mut next);
        match next.as_slice() {
            [Next::AskBrain(r)] => r.seq,
            other => panic!("{other:?}"),
        }
    }

    fn says(next: &[Next]) -> Vec<&str> {
        next.iter()
            .filter_map(|n| match n {
                Next::Say(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_reply_to_an_older_turn_learns_but_says_nothing_stale() {
        let mut c = with_brain();
        let first = asked(&mut c, "my account is 123");
        let second = asked(&mut c, "and my card is lost");
        let mut next = Vec::new();
        let reply = BrainReply {
            say: Some("Thanks for your account number.".into()),
            fields: [("account".to_string(), "123".to_string())].into(),
            ..BrainReply::default()
        };
        c.brain_reply(second, Some(Box::new(BrainReply::default())), &mut next);
        c.brain_reply(first, Some(Box::new(reply)), &mut next);
        assert!(says(&next).is_empty(), "{next:?}");
        assert_eq!(c.fields()["account"], "123");
    }

    #[test]
    fn a_failed_brain_turn_is_answered_by_the_built_in_dialogue() {
        let mut c = with_brain();
        let seq = asked(&mut c, "blah");
        let mut next = Vec::new();
        c.brain_reply(seq, None, &mut next);
        let mut built_in = Assistant::new(AssistantConfig::default()).unwrap();
        let expected: Vec<String> = built_in
            .on_turn("blah")
            .into_iter()
            .filter_map(|o| match o {
                AssistantOutput::Say { text } => Some(text),
                _ => None,
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(says(&next), expected);
        // Answered once: a late duplicate is not a second turn.
        let mut again = Vec::new();
        c.brain_reply(seq, None, &mut again);
        assert!(again.is_empty());
    }

    #[test]
    fn once_handed_over_pending_turns_are_dropped_and_transfers_not_asked_again() {
        let mut c = with_brain();
        let seq = asked(&mut c, "get me a person");
        c.hand_over();
        let mut next = Vec::new();
        let reply = BrainReply {
            transfer: Some(BrainTransfer {
                reason: "asked".into(),
                route: None,
            }),
            ..BrainReply::default()
        };
        c.brain_reply(seq, Some(Box::new(reply.clone())), &mut next);
        assert!(next.is_empty(), "{next:?}");
        c.turn(&turn("hello?"), &mut next);
        assert!(next.is_empty(), "the assistant is quiet: {next:?}");
        c.take_back();
        let seq = asked(&mut c, "still there?");
        c.brain_reply(seq, Some(Box::new(reply)), &mut next);
        assert!(
            matches!(next.as_slice(), [Next::Transfer { .. }]),
            "{next:?}"
        );
    }

    #[test]
    fn the_brain_hears_both_sides_of_the_last_ten_lines() {
        let mut c = with_brain();
        for i in 0..8 {
            c.spoke(&format!("prompt {i}"), i);
            asked(&mut c, &format!("answer {i}"));
        }
        let mut next = Vec::new();
        c.turn(&turn("last"), &mut next);
        let Some(Next::AskBrain(r)) = next.first() else {
            panic!("{next:?}")
        };
        assert_eq!(r.history.len(), BRAIN_HISTORY);
        assert_eq!(r.history[0].role, "assistant");
        assert_eq!(r.history[0].text, "prompt 3");
        assert_eq!(r.history[9].text, "answer 7");
    }
}
