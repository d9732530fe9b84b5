//! The agent's briefing and the written summary, extractive and template-based: who is
//! calling, what they want, what was collected, why they are being transferred, and the
//! suggested next step, in two or three sentences an agent takes in while the call connects.

use crate::{Trigger, TriggerKind};
use std::collections::BTreeMap;

/// What the briefing is made from.
#[derive(Debug, Clone)]
pub struct CallFacts<'a> {
    pub caller_name: Option<&'a str>,
    pub caller_number: Option<&'a str>,
    /// The caller's turns, oldest first.
    pub turns: &'a [&'a str],
    /// Collected fields (`account_number` → `4567`), shown in key order.
    pub fields: &'a BTreeMap<String, String>,
    /// The assistant's reading of the request, with its confidence.
    pub intent: Option<(&'a str, f32)>,
    /// The caller's answer to "why are you calling", verbatim, when the assistant asked.
    pub stated_reason: Option<&'a str>,
}

/// What the caller wants, as the briefing can say it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wants {
    /// A topic: "a double charge on their card" (after "is calling about").
    About(String),
    /// Their own words, when they cannot be turned into a topic.
    Said(String),
}

impl Wants {
    fn text(&self) -> &str {
        match self {
            Wants::About(t) | Wants::Said(t) => t,
        }
    }
}

/// The briefing spoken to the agent and the summary written into the context packet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Briefing {
    pub spoken: String,
    pub summary: String,
    pub reason: String,
    pub next_step: String,
}

/// Why the transfer happens, in words an agent can act on.
pub fn trigger_reason(t: &Trigger) -> String {
    let said = t.evidence.iter().find_map(|e| {
        e.strip_prefix("said \"")
            .map(|s| s.trim_end_matches('"').trim().to_string())
    });
    match t.kind {
        TriggerKind::ExplicitRequest => "they asked to speak to a person".into(),
        TriggerKind::Prosody => "they sound frustrated".into(),
        TriggerKind::Keyword => match said {
            Some(p) => format!("they mentioned \"{p}\""),
            None => "they raised a topic for a person".into(),
        },
        TriggerKind::Topic => {
            let topic = t
                .evidence
                .first()
                .and_then(|e| e.strip_prefix("topic "))
                .and_then(|e| e.split(':').next())
                .unwrap_or("a sensitive topic");
            format!("it concerns {topic}, which a person must handle")
        }
        TriggerKind::LowConfidence => "the assistant could not understand them reliably".into(),
        TriggerKind::RepeatedFailure => "the assistant could not resolve their request".into(),
        TriggerKind::Elapsed => {
            "the call has gone on longer than the assistant should handle".into()
        }
        TriggerKind::Dtmf => "they pressed a key to reach a person".into(),
        TriggerKind::Caller => "they are a priority caller".into(),
        // The external assistant handed over; its reason is the first evidence line.
        TriggerKind::Assistant => match t.evidence.first() {
            Some(r) if !r.trim().is_empty() => format!("the assistant handed over: {}", r.trim()),
            _ => "the assistant handed over".into(),
        },
        TriggerKind::Capacity => {
            "every speech recognizer was busy, so the call came straight to a person".into()
        }
    }
}

/// What the caller wants: the intent when the assistant has one it trusts, else the reason
/// they gave or the first turn that says something (extractive). A turn with a lead-in
/// ("I'm calling about X") becomes the topic X in the third person; other words are quoted.
fn what_they_want(f: &CallFacts<'_>) -> Option<Wants> {
    if let Some((intent, conf)) = f.intent {
        if conf >= 0.5 && !intent.trim().is_empty() {
            return Some(Wants::About(intent.replace('_', " ")));
        }
    }
    let turn = f
        .stated_reason
        .filter(|r| !r.trim().is_empty())
        .or_else(|| {
            f.turns
                .iter()
                .copied()
                .find(|t| t.split_whitespace().count() >= 4)
        })?;
    let lowered = turn.trim().trim_end_matches(['.', '!', '?']).to_string();
    // "I'm calling about X" / "I need help with X": keep what follows the lead-in.
    let leads = [
        "i'm calling about ",
        "i am calling about ",
        "calling about ",
        "i need help with ",
        "it's about ",
        "it is about ",
        "i have a question about ",
    ];
    let lower = lowered.to_lowercase();
    let Some(core) = leads
        .iter()
        .find_map(|l| lower.find(l).map(|i| lowered[i + l.len()..].to_string()))
    else {
        let quoted: Vec<&str> = lowered.split_whitespace().take(20).collect();
        return Some(Wants::Said(quoted.join(" ")));
    };
    // Told to the agent in the third person: "my card" is "their card".
    let words: Vec<&str> = core
        .split_whitespace()
        .take(12)
        .map(|w| match w.to_lowercase().as_str() {
            "my" => "their",
            "me" => "them",
            "i" => "they",
            "i'm" => "they're",
            "mine" => "theirs",
            "myself" => "themselves",
            _ => w,
        })
        .collect();
    Some(Wants::About(words.join(" ")))
}

fn fields_phrase(fields: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<String> = fields
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{} {}", k.replace('_', " "), v.trim()))
        .collect();
    match parts.len() {
        0 => None,
        1 => Some(parts[0].clone()),
        n => Some(format!(
            "{} and {}",
            parts[..n - 1].join(", "),
            parts[n - 1]
        )),
    }
}

/// Fill `{name}`, `{number}`, `{reason}`, `{wants}`, `{fields}`, `{next_step}`, `{route}`.
pub fn fill(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Build the briefing. `template` and `next_step` come from the rule that fired (empty →
/// the built-in wording).
pub fn brief(f: &CallFacts<'_>, t: &Trigger, template: &str, next_step: &str) -> Briefing {
    let who = match (f.caller_name, f.caller_number) {
        (Some(n), _) if !n.trim().is_empty() => n.trim().to_string(),
        (_, Some(num)) if !num.trim().is_empty() => format!("The caller on {}", num.trim()),
        _ => "The caller".to_string(),
    };
    let wants = what_they_want(f);
    let fields = fields_phrase(f.fields);
    let reason = trigger_reason(t);
    let next = if !next_step.trim().is_empty() {
        next_step.trim().trim_end_matches('.').to_string()
    } else if t.kind == TriggerKind::Capacity {
        // Nobody has spoken with them: there is nothing to pick up.
        "greet them and ask how you can help".to_string()
    } else {
        "pick up where the assistant left off".to_string()
    };
    let mut vars = BTreeMap::new();
    vars.insert("name", who.clone());
    vars.insert("number", f.caller_number.unwrap_or("").to_string());
    vars.insert("reason", reason.clone());
    vars.insert(
        "wants",
        wants
            .as_ref()
            .map(|w| w.text().to_string())
            .unwrap_or_default(),
    );
    vars.insert("fields", fields.clone().unwrap_or_default());
    vars.insert("next_step", next.clone());
    vars.insert("route", t.route.clone());
    let spoken = if template.trim().is_empty() {
        let mut s = match (&wants, &fields) {
            (Some(Wants::About(w)), Some(fl)) => {
                format!("{who} is calling about {w}, and gave their {fl}. ")
            }
            (Some(Wants::About(w)), None) => format!("{who} is calling about {w}. "),
            (Some(Wants::Said(q)), Some(fl)) => format!("{who} gave their {fl}, and said: {q}. "),
            (Some(Wants::Said(q)), None) => format!("{who} said: {q}. "),
            (None, Some(fl)) => format!("{who} is on the line and gave their {fl}. "),
            (None, None) => format!("{who} is on the line. "),
        };
        s.push_str(&format!(
            "They are being transferred because {reason}. Suggested next step: {next}."
        ));
        s
    } else {
        fill(template, &vars)
    };
    let summary = {
        let mut s = match &wants {
            Some(Wants::About(w)) => format!("{who} called about {w}."),
            Some(Wants::Said(q)) => format!("{who} called and said: \"{q}\"."),
            None => format!("{who} called about an unstated request."),
        };
        if let Some(fl) = &fields {
            s.push_str(&format!(" Collected: {fl}."));
        }
        s.push_str(&format!(" Transferred because {reason} (rule {}).", t.rule));
        s
    };
    Briefing {
        spoken,
        summary,
        reason,
        next_step: next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(kind: &str, evidence: &[&str]) -> Trigger {
        Trigger {
            rule: "r".into(),
            kind: kind.parse().expect("a trigger kind"),
            evidence: evidence.iter().map(|s| s.to_string()).collect(),
            confidence: 1.0,
            at_ms: 42_000,
            disposition: "transfer.requested".into(),
            route: "billing".into(),
        }
    }

    #[test]
    fn sample_call_reads_naturally() {
        let mut fields = BTreeMap::new();
        fields.insert("account_number".to_string(), "4567".to_string());
        let turns = [
            "I'm calling about a double charge on my card.",
            "my account number is 4 5 6 7",
            "this isn't helping, let me speak to a human",
        ];
        let facts = CallFacts {
            caller_name: Some("Dana Smith"),
            caller_number: Some("+442079460123"),
            turns: &turns,
            fields: &fields,
            intent: None,
            stated_reason: None,
        };
        let b = brief(
            &facts,
            &trigger("explicit_request", &["said \"speak to a human\""]),
            "",
            "Refund the duplicate payment.",
        );
        assert_eq!(
            b.spoken,
            "Dana Smith is calling about a double charge on their card, and gave their account \
             number 4567. They are being transferred because they asked to speak to a person. \
             Suggested next step: Refund the duplicate payment."
        );
        assert_eq!(b.spoken.matches(". ").count() + 1, 3, "three sentences");
        assert!(b.summary.contains("Collected: account number 4567."));
        assert!(b.summary.contains("(rule r)"));
    }

    #[test]
    fn trusted_intent_beats_extraction_and_templates_fill() {
        let fields = BTreeMap::new();
        let turns = ["hello there my friend", "it's about the thing"];
        let facts = CallFacts {
            caller_name: None,
            caller_number: Some("5551234"),
            turns: &turns,
            fields: &fields,
            intent: Some(("cancel_contract", 0.8)),
            stated_reason: None,
        };
        let t = trigger(
            "topic",
            &[
                "topic billing dispute: said \"dispute\"",
                "amount 750 > 500",
            ],
        );
        let b = brief(&facts, &t, "", "");
        assert!(
            b.spoken
                .starts_with("The caller on 5551234 is calling about cancel contract.")
        );
        assert!(b.reason.contains("billing dispute"));
        let custom = brief(
            &facts,
            &t,
            "{name}: {wants}. Route {route}, because {reason}.",
            "",
        );
        assert_eq!(
            custom.spoken,
            "The caller on 5551234: cancel contract. Route billing, because it concerns billing dispute, which a person must handle."
        );
    }

    #[test]
    fn every_trigger_kind_has_words() {
        for kind in crate::KINDS {
            let r = trigger_reason(&trigger(kind, &["said \"cancel\""]));
            assert!(!r.is_empty() && !r.contains("policy asked"), "{kind}: {r}");
        }
    }
}
