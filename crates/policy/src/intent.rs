//! Understanding a request for a person, however it is said, without firing on the
//! words alone. A small grammar of our own, written by hand because no maintained crate
//! parses English intents offline and a local language model would cost more than the
//! recogniser it listens to:
//!
//! - a **person** is a phrase whose head is someone, somebody, anyone, a person, a human,
//!   an agent, a representative, an operator, a supervisor, a manager, … (with "real",
//!   "live", "actual" in front, or "in person" after);
//! - it is **requested** when it is the object of a request frame in the same clause
//!   ("speak to", "talk with", "put me through to", "transfer me to", "connect me with",
//!   "get me", "can I have", "I want", "I need", "is there … I can talk to"), or when it
//!   is the whole turn ("Operator." "Agent, please."). "Put me through", "transfer me"
//!   and "not a machine" are requests on their own;
//! - it is **not** requested when the frame is negated ("no need for an agent", "I don't
//!   need to talk to anyone", "without a manager"), when the person is somebody else's
//!   ("my manager asked me"), a compound ("travel agent", "estate agent"), the subject of
//!   what is said ("the operator at the front desk gave me this number"), or told of in
//!   the past ("I spoke to an agent yesterday"), or when someone is wanted for a job
//!   rather than a conversation ("I need someone to fix my boiler").

use crate::text::{find, words};

/// Heads of a person phrase that name a role. Multi-word heads first.
const ROLES: &[&str] = &[
    "customer service representative",
    "customer service",
    "human being",
    "human",
    "humans",
    "agent",
    "agents",
    "representative",
    "representatives",
    "representive",
    "rep",
    "operator",
    "supervisor",
    "super visor",
    "manager",
    "advisor",
    "adviser",
    "associate",
    "staff member",
];

/// Heads that stand for "anybody at all": wanted for a conversation only ("I need someone
/// to talk to"), not for a job ("I need someone to fix it").
const GENERIC: &[&str] = &[
    "some one",
    "some body",
    "any one",
    "any body",
    "someone",
    "somebody",
    "anyone",
    "anybody",
    "person",
    "persons",
    "people",
];

/// Words that make a head someone else's or something else.
const OTHERS: &[&str] = &[
    "my",
    "his",
    "her",
    "their",
    "our",
    "travel",
    "estate",
    "insurance",
    "booking",
    "ticket",
    "ticketing",
    "shipping",
    "secret",
    "free",
    "double",
    "sports",
    "talent",
    "property",
    "letting",
    "press",
    "literary",
    "that",
    "this",
];

/// Request frames: the person follows within a few words.
const FRAMES: &[&str] = &[
    "speak to",
    "speak with",
    "speaking to",
    "speaking with",
    "talk to",
    "talk with",
    "talking to",
    "talking with",
    "chat with",
    "chat to",
    "put me through",
    "put me on to",
    "put me onto",
    "transfer me",
    "connect me",
    "pass me",
    "get me",
    "give me",
    "can i have",
    "could i have",
    "may i have",
    "can i get",
    "could i get",
    "i want",
    "i wanna",
    "i'd like",
    "i would like",
    "i need",
    "need",
    "want",
    "let me have",
    "is there",
    "are there",
    "isn't there",
    "ask for",
    "asking for",
    "request",
    "requesting",
    "escalate",
    "escalate this to",
];

/// Requests on their own, with no person named.
const BARE: &[&str] = &[
    "put me through",
    "transfer me",
    "transfer my call",
    "connect me",
    "escalate this",
    "escalate my call",
];

const MACHINES: &[&str] = &[
    "machine",
    "machines",
    "robot",
    "robots",
    "bot",
    "computer",
    "recording",
    "automated",
];

const NEGATIONS: &[&str] = &[
    "not", "don't", "dont", "do not", "doesn't", "does not", "didn't", "did not", "won't",
    "will not", "wouldn't", "never", "no need", "no", "without", "nobody", "no one", "neither",
];

/// Filler a whole-turn request may carry ("Agent, please.", "A real person now!").
const FILLER: &[&str] = &[
    "a", "an", "the", "please", "now", "right", "just", "uh", "um", "er", "hey", "hi", "hello",
    "yes", "yeah", "ok", "okay", "real", "live", "actual", "thanks", "thank", "you", "me", "to",
    "i", "want", "need", "your", "get", "give", "oh", "sir", "some",
];

/// What follows a generic head when it is wanted for a conversation.
const TALK_AFTER: &[&str] = &[
    "talk", "speak", "help", "chat", "real", "who", "that", "please", "now", "right", "on", "in",
    "i", "to",
];

/// A recognised request: the words that carry it, and how sure the grammar is.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRequest {
    pub phrase: String,
    pub confidence: f32,
}

/// What the recogniser is told to expect of every call (whisper's initial prompt, before
/// the configured rules' vocabulary).
pub const RECOGNIZER_PROMPT: &str = "A caller on the phone to customer service. They may ask for an agent, a representative, an operator, a supervisor or a real person.";

/// Short turns that are a request for a person, as a caller says them and as whisper
/// writes them (capitalised, without the closing punctuation): the recogniser checks a short turn's audio
/// against these when it heard none of them (a clipped "Supervisor, please." comes back as
/// "To the minor please."). Built from the grammar's own parts: who is asked for, the
/// frames that ask, and what a whole-turn request carries, never from test sentences.
/// Every one is a [`person_request`] (tested).
pub fn request_utterances() -> Vec<String> {
    // Who: the role heads with the article a caller puts before them.
    const WHO: &[&str] = &[
        "an agent",
        "a live agent",
        "a human",
        "a human being",
        "a real human",
        "a person",
        "a real person",
        "a live person",
        "someone",
        "somebody",
        "anyone",
        "a representative",
        "an operator",
        "a supervisor",
        "a manager",
        "your supervisor",
        "your manager",
        "customer service",
    ];
    // Asking frames, each completed by one of WHO. Not "I need …" or "I want …": "I need a
    // person" is what tiny.en finds likeliest for "I need a refund" over the phone, and
    // routine turns start that way; said plainly, they are heard without help.
    const ASK: &[&str] = &[
        "I want to speak to",
        "I want to talk to",
        "I need to speak to",
        "I need to talk to",
        "I'd like to speak to",
        "I'd like to speak with",
        "Can I speak to",
        "Can I talk to",
        "Could I speak to",
        "May I speak to",
        "Let me speak to",
        "Let me talk to",
        "Put me through to",
        "Transfer me to",
        "Connect me to",
        "Connect me with",
        "Get me",
        "Give me",
        "Speak to",
        "Talk to",
    ];
    // A role alone, said as a whole turn.
    const ALONE: &[&str] = &[
        "Agent",
        "An agent",
        "Human",
        "A human",
        "Person",
        "A person",
        "Real person",
        "A real person",
        "Representative",
        "Operator",
        "Supervisor",
        "Manager",
        "Someone",
        "Customer service",
    ];
    const BARE: &[&str] = &[
        "Transfer me",
        "Put me through",
        "Connect me",
        "Not a machine",
        "I don't want a machine",
    ];
    // Closing punctuation is left to the recogniser (it scores ".", "!" and "?" alike).
    const TAIL: &[&str] = &["", ", please", " please", ", now", " now"];
    let mut out = Vec::new();
    let mut push = |body: String| {
        for tail in TAIL {
            out.push(format!("{body}{tail}"));
        }
    };
    for ask in ASK {
        for who in WHO {
            push(format!("{ask} {who}"));
        }
    }
    for r in ALONE.iter().chain(BARE) {
        push((*r).to_string());
    }
    for who in ["someone", "anyone", "a person", "a human", "somebody"] {
        for q in ["Is there", "Isn't there"] {
            for talk in ["I can talk to", "I can speak to"] {
                push(format!("{q} {who} {talk}"));
            }
        }
    }
    out
}

/// Clauses: a turn cut at punctuation and at "but" (what is said after "but" stands on
/// its own: "no need for an agent, but…").
fn clauses(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for part in text.split(['.', ',', ';', '!', '?', ':', '—', '–']) {
        let ws = words(part);
        let mut cur = Vec::new();
        for w in ws {
            if w == "but" || w == "instead" {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            } else {
                cur.push(w);
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

fn any_at(ws: &[String], at: usize, list: &[&str]) -> Option<usize> {
    list.iter().find_map(|p| {
        let pw = words(p);
        (at + pw.len() <= ws.len() && ws[at..at + pw.len()] == pw[..]).then_some(pw.len())
    })
}

/// A negation in `ws[from..to]`.
fn negated_between(ws: &[String], from: usize, to: usize) -> bool {
    let window = &ws[from.min(to)..to];
    NEGATIONS.iter().any(|n| !find(window, n).is_empty())
}

/// Person phrases in a clause: (start of the head, head length), skipping ones that are
/// someone else's or a compound.
fn heads(ws: &[String]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < ws.len() {
        if let Some(n) = any_at(ws, i, ROLES).or_else(|| any_at(ws, i, GENERIC)) {
            let other = i > 0 && OTHERS.contains(&ws[i - 1].as_str());
            if !other {
                out.push((i, n));
            }
            i += n;
        } else {
            i += 1;
        }
    }
    out
}

fn is_generic(ws: &[String], head: (usize, usize)) -> bool {
    GENERIC.contains(&ws[head.0..head.0 + head.1].join(" ").as_str())
}

/// Whether a generic head ("someone") is wanted to talk to, not to do a job.
fn wanted_to_talk(ws: &[String], head: (usize, usize)) -> bool {
    let after = head.0 + head.1;
    match ws.get(after).map(String::as_str) {
        None => true,
        Some("to") => matches!(
            ws.get(after + 1).map(String::as_str),
            Some("talk" | "speak" | "help" | "chat" | "deal" | "handle" | "look")
        ),
        Some(w) => TALK_AFTER.contains(&w),
    }
}

fn machine_clause(ws: &[String]) -> Option<String> {
    // "not a machine", "no more robots", "I don't want to talk to a machine",
    // "stop the recording", "tired of this robot".
    for (i, w) in ws.iter().enumerate() {
        if !MACHINES.contains(&w.as_str()) {
            continue;
        }
        let from = i.saturating_sub(6);
        let before = &ws[from..i];
        let rejecting = negated_between(ws, from, i)
            || ["stop", "tired", "sick", "hate", "enough", "more"]
                .iter()
                .any(|x| before.iter().any(|b| b == x));
        if rejecting {
            return Some(ws[from..=i].join(" "));
        }
    }
    None
}

/// The request for a person in `text`, if there is one.
pub fn person_request(text: &str) -> Option<PersonRequest> {
    for ws in clauses(text) {
        if let Some(hit) = in_clause(&ws) {
            return Some(hit);
        }
    }
    None
}

fn in_clause(ws: &[String]) -> Option<PersonRequest> {
    let hit = |from: usize, to: usize, confidence: f32| {
        Some(PersonRequest {
            phrase: ws[from..to.min(ws.len())].join(" "),
            confidence,
        })
    };
    // A request frame, then a person within four words, with no negation before the frame
    // (in this clause) and none between frame and person.
    for (h, n) in heads(ws) {
        let generic = is_generic(ws, (h, n));
        for start in h.saturating_sub(6)..h {
            let Some(len) = any_at(ws, start, FRAMES) else {
                continue;
            };
            let end = start + len;
            if end > h || h - end > 4 {
                continue;
            }
            if negated_between(ws, start.saturating_sub(4), start) || negated_between(ws, end, h) {
                continue;
            }
            // "need"/"want"/"have"/"get me"/"is there" want the person to talk to.
            let talk_frame = ["speak", "talk", "chat", "speaking", "talking"]
                .iter()
                .any(|v| ws[start..end].iter().any(|w| w == v));
            if generic && !talk_frame && !wanted_to_talk(ws, (h, n)) {
                continue;
            }
            return hit(start, h + n, 1.0);
        }
    }
    // "Put me through", "transfer me": a request with no person named.
    for start in 0..ws.len() {
        if let Some(len) = any_at(ws, start, BARE) {
            if !negated_between(ws, start.saturating_sub(4), start) {
                return hit(start, start + len, 1.0);
            }
        }
    }
    // The whole clause is a person ("Operator." "A real person, please." "Human agent!").
    let hs = heads(ws);
    if let Some(&(first, _)) = hs.first() {
        let in_head = |i: usize| hs.iter().any(|&(h, n)| i >= h && i < h + n);
        let rest_is_filler = ws
            .iter()
            .enumerate()
            .filter(|(i, _)| !in_head(*i))
            .all(|(_, w)| FILLER.contains(&w.as_str()));
        let negated = negated_between(ws, 0, first);
        if rest_is_filler && !negated && ws.len() <= 6 {
            return hit(0, ws.len(), 0.9);
        }
    }
    machine_clause(ws).map(|phrase| PersonRequest {
        phrase,
        confidence: 0.9,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expected_utterance_is_a_request() {
        let all = request_utterances();
        assert!(all.len() > 1_000);
        let missed: Vec<&String> = all.iter().filter(|t| person_request(t).is_none()).collect();
        assert!(
            missed.is_empty(),
            "{} not requests, e.g. {:?}",
            missed.len(),
            &missed[..missed.len().min(30)]
        );
    }

    #[test]
    fn requests_however_said() {
        for t in [
            "I want to speak to a human agent right now.",
            "Can I speak to someone in person?",
            "I need to talk to somebody, not a machine.",
            "Put me through to someone.",
            "Is there a person I can talk to?",
            "Operator.",
            "Supervisor, please.",
            "Can I talk to a real person, please?",
            "Representative!",
            "Agent please.",
            "Just transfer me.",
            "Get me your manager.",
            "Connect me with a representative.",
            "I'd like to speak with a customer service representative.",
            "This is a waste of time, I don't want to talk to a machine.",
            "Can I have a human, please?",
            "I need a real person now.",
            "Is there anyone I can speak to?",
            "Can't I just talk to a person?",
            "Hello, is there any one I can speak to?",
            "Human agent!",
        ] {
            assert!(person_request(t).is_some(), "missed: {t}");
        }
    }

    #[test]
    fn mentions_that_are_not_requests() {
        for t in [
            "No need for an agent, I'm fine.",
            "My manager asked me to check the invoice date.",
            "I booked a holiday through a travel agent.",
            "The operator at the front desk gave me this number.",
            "I have moved house and need to change my address.",
            "I don't need to talk to anyone, thanks.",
            "I spoke to an agent yesterday about it.",
            "I need someone to fix my boiler.",
            "Please put it on the agenda.",
            "I want to cancel my appointment and reschedule it for Friday.",
            "I'd like to check the status of my order.",
            "My estate agent said the payment was late.",
            "Without a manager signing it off, the refund won't go through.",
            "I don't want a person, just tell me my balance.",
        ] {
            assert_eq!(person_request(t), None, "fired on: {t}");
        }
    }
}
