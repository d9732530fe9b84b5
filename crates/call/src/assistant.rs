//! The built-in assistant's dialogue, sans-IO: ask why the caller is calling, answer FAQ
//! entries matched by phrase, collect fields by pattern (spoken digits understood), confirm
//! what it heard, re-prompt on no-match and count failures for the policy.
//!
//! It only decides what to say and what was learned; the controller plays the words (TTS)
//! and feeds the policy.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    /// What to ask, e.g. "What is your account number?"
    pub prompt: String,
    /// A regex over the caller's words (digits already turned into numerals); the first
    /// capture group, or the whole match, is the value.
    pub pattern: String,
    #[serde(default)]
    pub confirm: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faq {
    pub phrases: Vec<String>,
    pub answer: String,
}

/// The built-in dialogue, from `[assistant]` in the config; every key has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssistantConfig {
    pub ask_reason: String,
    pub fields: Vec<FieldSpec>,
    pub faq: Vec<Faq>,
    pub reprompt: String,
    pub anything_else: String,
    pub closing: String,
    /// Said instead of dialing when the route is closed; `{day}` and `{time}` are when it
    /// next opens.
    pub out_of_hours: String,
    /// Said as the caller goes on hold for a person: `{lead}` is a few words on why,
    /// `{seconds}` the time anchor (about one ring timeout).
    pub transition: String,
    /// Said every `hold_refresh_s` while the caller still waits.
    pub hold_refresh: String,
    pub hold_refresh_s: u64,
    /// Said when no agent took the call.
    pub apology: String,
    /// Added to the agent's briefing on routes where the agent must accept.
    pub agent_confirm: String,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        Self {
            ask_reason: "Please tell me briefly why you are calling.".into(),
            fields: vec![FieldSpec {
                name: "account_number".into(),
                prompt: "What is your account or order number?".into(),
                pattern: r"\b(\d(?:[\d ]{2,14}\d))\b".into(),
                confirm: true,
            }],
            faq: Vec::new(),
            reprompt: "Sorry, I didn't catch that.".into(),
            anything_else: "Is there anything else I can help with?".into(),
            closing: "Thank you, I have what I need.".into(),
            out_of_hours: "Our team is closed right now. I have taken a callback request: \
                           someone will call you back on {day} from {time}."
                .into(),
            transition: "{lead}I'm connecting you with a specialist who has your details. \
                         This should take about {seconds} seconds."
                .into(),
            hold_refresh: "Thanks for holding. You're still connected, and a specialist will \
                           be with you shortly."
                .into(),
            hold_refresh_s: 20,
            apology: "I'm sorry, nobody from the team is free right now. I have taken a \
                      callback request: someone will call you back as soon as possible. Is \
                      there anything else I can help with?"
                .into(),
            agent_confirm: "Press 1 to take the call, or 2 to pass it on.".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("field `{field}`: bad pattern: {source}")]
pub struct PatternError {
    pub field: String,
    pub source: regex::Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "out", rename_all = "snake_case")]
pub enum AssistantOutput {
    Say {
        text: String,
    },
    Field {
        name: String,
        value: String,
    },
    /// The caller's reason, as said (the briefing's "what they want").
    Reason {
        text: String,
    },
    /// A turn the assistant could not use; `count` so far.
    Failed {
        count: u32,
    },
    /// An FAQ answered or every field collected.
    Resolved,
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Reason,
    Field(usize),
    Confirm(usize, String),
    Done,
}

/// One call's dialogue state. Cloning a configured one is cheap (the config and compiled
/// patterns are shared, not copied), so the driver builds it once and clones it per call.
#[derive(Debug, Clone)]
pub struct Assistant {
    cfg: Arc<AssistantConfig>,
    patterns: Arc<[Regex]>,
    stage: Stage,
    fields: BTreeMap<String, String>,
    failures: u32,
}

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("oh", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
];

/// Lower case, punctuation dropped, spoken digits as numerals ("four five six" → "4 5 6").
pub fn normalise(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| {
            NUMBER_WORDS
                .iter()
                .find(|(word, _)| *word == w)
                .map_or(w, |(_, d)| *d)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn contains_phrase(text: &str, phrase: &str) -> bool {
    let t = format!(" {text} ");
    t.contains(&format!(" {} ", normalise(phrase)))
}

impl Assistant {
    pub fn new(cfg: AssistantConfig) -> Result<Self, PatternError> {
        let patterns = cfg
            .fields
            .iter()
            .map(|f| {
                Regex::new(&f.pattern).map_err(|source| PatternError {
                    field: f.name.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            cfg: Arc::new(cfg),
            patterns,
            stage: Stage::Reason,
            fields: BTreeMap::new(),
            failures: 0,
        })
    }

    pub fn fields(&self) -> &BTreeMap<String, String> {
        &self.fields
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The first thing the assistant says after the greeting.
    pub fn start(&mut self) -> Vec<AssistantOutput> {
        vec![AssistantOutput::Say {
            text: self.cfg.ask_reason.clone(),
        }]
    }

    fn ask(&self, i: usize) -> AssistantOutput {
        AssistantOutput::Say {
            text: self.cfg.fields[i].prompt.clone(),
        }
    }

    fn next_field(&mut self, from: usize, out: &mut Vec<AssistantOutput>) {
        match (from..self.cfg.fields.len())
            .find(|i| !self.fields.contains_key(&self.cfg.fields[*i].name))
        {
            Some(i) => {
                self.stage = Stage::Field(i);
                out.push(self.ask(i));
            }
            None => {
                self.stage = Stage::Done;
                out.push(AssistantOutput::Say {
                    text: format!("{} {}", self.cfg.closing, self.cfg.anything_else),
                });
                out.push(AssistantOutput::Resolved);
            }
        }
    }

    /// Field `i` is known: keep it, report it, move on.
    fn accept(&mut self, i: usize, value: String, out: &mut Vec<AssistantOutput>) {
        let name = self.cfg.fields[i].name.clone();
        self.fields.insert(name.clone(), value.clone());
        out.push(AssistantOutput::Field { name, value });
        self.next_field(i + 1, out);
    }

    /// The turn did not give field `i`: count the failure and ask again.
    fn reask(&mut self, i: usize, out: &mut Vec<AssistantOutput>) {
        self.failures += 1;
        out.push(AssistantOutput::Failed {
            count: self.failures,
        });
        out.push(AssistantOutput::Say {
            text: format!("{} {}", self.cfg.reprompt, self.cfg.fields[i].prompt),
        });
    }

    pub fn config(&self) -> &AssistantConfig {
        &self.cfg
    }

    /// The lines and fields, shared with every other call's assistant.
    pub fn shared_config(&self) -> Arc<AssistantConfig> {
        self.cfg.clone()
    }

    /// One caller turn. An empty `text` is speech the recognizer could not make out: a
    /// no-match, re-prompted and counted like a wrong answer.
    pub fn on_turn(&mut self, text: &str) -> Vec<AssistantOutput> {
        let norm = normalise(text);
        let mut out = Vec::new();
        if norm.is_empty() {
            match self.stage.clone() {
                Stage::Reason => {
                    self.failures += 1;
                    out.push(AssistantOutput::Failed {
                        count: self.failures,
                    });
                    out.push(AssistantOutput::Say {
                        text: format!("{} {}", self.cfg.reprompt, self.cfg.ask_reason),
                    });
                }
                Stage::Field(i) | Stage::Confirm(i, _) => {
                    self.stage = Stage::Field(i);
                    self.reask(i, &mut out);
                }
                // Nothing is asked: a noise is not a failure.
                Stage::Done => {}
            }
            return out;
        }
        // An FAQ question is answered wherever the dialogue is.
        if let Some(faq) = self
            .cfg
            .faq
            .iter()
            .find(|f| f.phrases.iter().any(|p| contains_phrase(&norm, p)))
        {
            out.push(AssistantOutput::Say {
                text: format!("{} {}", faq.answer, self.cfg.anything_else),
            });
            out.push(AssistantOutput::Resolved);
            return out;
        }
        match self.stage.clone() {
            Stage::Reason | Stage::Done => {
                out.push(AssistantOutput::Reason {
                    text: text.trim().to_string(),
                });
                self.next_field(0, &mut out);
            }
            Stage::Field(i) => {
                let caps = self.patterns[i].captures(&norm);
                match caps.and_then(|c| c.get(1).or_else(|| c.get(0))) {
                    Some(m) => {
                        let value = m.as_str().replace(' ', "");
                        if self.cfg.fields[i].confirm {
                            let spoken: Vec<String> =
                                value.chars().map(|c| c.to_string()).collect();
                            out.push(AssistantOutput::Say {
                                text: format!("I heard {}. Is that right?", spoken.join(" ")),
                            });
                            self.stage = Stage::Confirm(i, value);
                        } else {
                            self.accept(i, value, &mut out);
                        }
                    }
                    None => self.reask(i, &mut out),
                }
            }
            Stage::Confirm(i, value) => {
                let yes = ["yes", "yeah", "yep", "correct", "right", "that's right"]
                    .iter()
                    .any(|w| contains_phrase(&norm, w));
                let no = ["no", "nope", "wrong", "incorrect"]
                    .iter()
                    .any(|w| contains_phrase(&norm, w));
                if yes && !no {
                    self.accept(i, value, &mut out);
                } else {
                    self.stage = Stage::Field(i);
                    self.reask(i, &mut out);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(out: &[AssistantOutput]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                AssistantOutput::Say { text } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reason_then_number_confirmed() {
        let mut a = Assistant::new(AssistantConfig::default()).unwrap();
        assert_eq!(
            says(&a.start()),
            ["Please tell me briefly why you are calling."]
        );
        let out = a.on_turn("I was charged twice for my order");
        assert!(out.contains(&AssistantOutput::Reason {
            text: "I was charged twice for my order".into()
        }));
        assert_eq!(says(&out), ["What is your account or order number?"]);
        let out = a.on_turn("it's four five six seven");
        assert_eq!(says(&out), ["I heard 4 5 6 7. Is that right?"]);
        let out = a.on_turn("yes that's right");
        assert!(out.contains(&AssistantOutput::Field {
            name: "account_number".into(),
            value: "4567".into()
        }));
        assert!(out.contains(&AssistantOutput::Resolved));
        assert_eq!(
            a.fields().get("account_number").map(String::as_str),
            Some("4567")
        );
    }

    #[test]
    fn no_match_reprompts_and_counts_failures() {
        let mut a = Assistant::new(AssistantConfig::default()).unwrap();
        a.on_turn("billing question");
        let out = a.on_turn("I don't know it");
        assert_eq!(out[0], AssistantOutput::Failed { count: 1 });
        assert_eq!(
            says(&out),
            ["Sorry, I didn't catch that. What is your account or order number?"]
        );
        a.on_turn("12 34 56");
        let out = a.on_turn("no");
        assert_eq!(out[0], AssistantOutput::Failed { count: 2 });
        assert_eq!(a.failures(), 2);
    }

    #[test]
    fn unintelligible_turns_are_no_matches() {
        let mut a = Assistant::new(AssistantConfig::default()).unwrap();
        let out = a.on_turn("");
        assert_eq!(out[0], AssistantOutput::Failed { count: 1 });
        assert_eq!(
            says(&out),
            ["Sorry, I didn't catch that. Please tell me briefly why you are calling."]
        );
        a.on_turn("my order");
        a.on_turn("1 2 3 4");
        // A no-match while confirming asks for the field again.
        let out = a.on_turn("  ");
        assert_eq!(out[0], AssistantOutput::Failed { count: 2 });
        assert_eq!(
            says(&out),
            ["Sorry, I didn't catch that. What is your account or order number?"]
        );
    }

    #[test]
    fn config_keys_default_and_typos_are_refused() {
        let c: AssistantConfig = serde_json::from_str(r#"{"closing":"Bye."}"#).unwrap();
        assert_eq!(c.closing, "Bye.");
        assert_eq!(c.ask_reason, AssistantConfig::default().ask_reason);
        assert!(serde_json::from_str::<AssistantConfig>(r#"{"clossing":"x"}"#).is_err());
    }

    #[test]
    fn faq_is_answered_by_phrase() {
        let mut cfg = AssistantConfig::default();
        cfg.faq.push(Faq {
            phrases: vec!["opening hours".into(), "when are you open".into()],
            answer: "We are open nine to five, Monday to Friday.".into(),
        });
        let mut a = Assistant::new(cfg).unwrap();
        let out = a.on_turn("What are your opening hours?");
        assert_eq!(
            says(&out),
            ["We are open nine to five, Monday to Friday. Is there anything else I can help with?"]
        );
        assert!(out.contains(&AssistantOutput::Resolved));
    }

    #[test]
    fn bad_pattern_is_an_error_naming_the_field() {
        let mut cfg = AssistantConfig::default();
        cfg.fields[0].pattern = "(unclosed".into();
        let e = Assistant::new(cfg).unwrap_err();
        assert!(e.to_string().contains("account_number"));
    }
}
