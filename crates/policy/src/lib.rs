//! The escalation policy, sans-IO: declarative rules evaluated over what happens in a call
//! (caller turns with their confidence and prosody, DTMF, assistant failures, elapsed time,
//! the caller's identity). A rule that fires yields a [`Trigger`] with the evidence behind
//! it; each rule fires at most once per call (hysteresis), and when several fire on the same
//! observation the highest priority wins.

pub mod briefing;
pub mod hours;
pub mod intent;
pub mod text;

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Words that make an aroused caller a frustrated one.
pub const NEGATIVE_PHRASES: &[&str] = &[
    "isn't helping",
    "not helping",
    "useless",
    "ridiculous",
    "waste of time",
    "stupid",
    "annoying",
    "frustrated",
    "fed up",
];

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn negative_phrases() -> Vec<String> {
    owned(NEGATIVE_PHRASES)
}
fn six() -> usize {
    6
}
fn two() -> usize {
    2
}
fn arousal_threshold() -> f32 {
    0.6
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// No `deny_unknown_fields` here or on `Rule`: serde cannot combine it with `flatten`. The
// config loader checks rule keys itself.
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// The caller asks for a person, however they say it ([`intent::person_request`]);
    /// `phrases` adds literal phrases of the deployment's own (matched in context: not
    /// negated). Always honoured at once.
    ExplicitRequest {
        #[serde(default)]
        phrases: Vec<String>,
    },
    /// Phrases in context: not negated, and no `exclude` phrase within `window` words.
    Keyword {
        phrases: Vec<String>,
        #[serde(default)]
        exclude: Vec<String>,
        #[serde(default = "six")]
        window: usize,
    },
    /// Arousal at or above `threshold` (against the caller's baseline) for `sustain` turns
    /// in a row; a single turn suffices when it also carries a negative phrase.
    Prosody {
        #[serde(default = "arousal_threshold")]
        threshold: f32,
        #[serde(default = "two")]
        sustain: usize,
        #[serde(default = "negative_phrases")]
        negative_phrases: Vec<String>,
    },
    /// Recognition confidence below `below` for `turns` turns in a row.
    LowConfidence { below: f32, turns: usize },
    /// The assistant failed to resolve `failures` times.
    RepeatedFailure { failures: usize },
    /// No resolution after `after_s` seconds.
    Elapsed { after_s: u64 },
    /// The caller pressed `digit`.
    Dtmf { digit: char },
    /// The caller's number (From or P-Asserted-Identity user part) matches; a trailing `*`
    /// matches a prefix.
    Caller { numbers: Vec<String> },
    /// A topic a machine must not handle. With `amount_over`, only when the turn names an
    /// amount above it (a billing dispute over 500).
    Topic {
        topic: String,
        phrases: Vec<String>,
        #[serde(default)]
        exclude: Vec<String>,
        #[serde(default)]
        amount_over: Option<f64>,
    },
}

/// Every rule kind's name.
pub const KINDS: &[&str] = &[
    "explicit_request",
    "keyword",
    "prosody",
    "low_confidence",
    "repeated_failure",
    "elapsed",
    "dtmf",
    "caller",
    "topic",
];

/// Keys every rule takes, whatever its kind.
pub const RULE_KEYS: &[&str] = &[
    "name",
    "kind",
    "priority",
    "disposition",
    "route",
    "briefing",
    "next_step",
];

/// The parameters a kind takes, for refusing misspelt keys (`None`: no such kind).
pub fn kind_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "explicit_request" => &["phrases"],
        "keyword" => &["phrases", "exclude", "window"],
        "prosody" => &["threshold", "sustain", "negative_phrases"],
        "low_confidence" => &["below", "turns"],
        "repeated_failure" => &["failures"],
        "elapsed" => &["after_s"],
        "dtmf" => &["digit"],
        "caller" => &["numbers"],
        "topic" => &["topic", "phrases", "exclude", "amount_over"],
        _ => return None,
    })
}

/// What kind of thing made a trigger fire: a rule's kind, or the external brain asking
/// for a person (`assistant`). The names are stable: they are in the audit trail, the
/// context packet, logs and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    ExplicitRequest,
    Keyword,
    Prosody,
    LowConfidence,
    RepeatedFailure,
    Elapsed,
    Dtmf,
    Caller,
    Topic,
    /// The external brain asked for a transfer.
    Assistant,
    /// The recognizer was at capacity when the call came: it went straight to the agents
    /// (`[speech] over_capacity = "agents"`), unheard.
    Capacity,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::ExplicitRequest => "explicit_request",
            TriggerKind::Keyword => "keyword",
            TriggerKind::Prosody => "prosody",
            TriggerKind::LowConfidence => "low_confidence",
            TriggerKind::RepeatedFailure => "repeated_failure",
            TriggerKind::Elapsed => "elapsed",
            TriggerKind::Dtmf => "dtmf",
            TriggerKind::Caller => "caller",
            TriggerKind::Topic => "topic",
            TriggerKind::Assistant => "assistant",
            TriggerKind::Capacity => "capacity",
        }
    }

    /// Kinds decided by what the caller said: their latency counts from the end of speech.
    pub fn from_speech(self) -> bool {
        matches!(
            self,
            TriggerKind::ExplicitRequest
                | TriggerKind::Keyword
                | TriggerKind::Topic
                | TriggerKind::Prosody
        )
    }
}

impl std::fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TriggerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ALL_TRIGGER_KINDS
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a trigger kind"))
    }
}

const ALL_TRIGGER_KINDS: [TriggerKind; 11] = [
    TriggerKind::ExplicitRequest,
    TriggerKind::Keyword,
    TriggerKind::Prosody,
    TriggerKind::LowConfidence,
    TriggerKind::RepeatedFailure,
    TriggerKind::Elapsed,
    TriggerKind::Dtmf,
    TriggerKind::Caller,
    TriggerKind::Topic,
    TriggerKind::Assistant,
    TriggerKind::Capacity,
];

impl PartialEq<&str> for TriggerKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl RuleKind {
    pub fn kind(&self) -> TriggerKind {
        match self {
            RuleKind::ExplicitRequest { .. } => TriggerKind::ExplicitRequest,
            RuleKind::Keyword { .. } => TriggerKind::Keyword,
            RuleKind::Prosody { .. } => TriggerKind::Prosody,
            RuleKind::LowConfidence { .. } => TriggerKind::LowConfidence,
            RuleKind::RepeatedFailure { .. } => TriggerKind::RepeatedFailure,
            RuleKind::Elapsed { .. } => TriggerKind::Elapsed,
            RuleKind::Dtmf { .. } => TriggerKind::Dtmf,
            RuleKind::Caller { .. } => TriggerKind::Caller,
            RuleKind::Topic { .. } => TriggerKind::Topic,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }
}

fn default_route() -> String {
    "default".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    #[serde(flatten)]
    pub kind: RuleKind,
    #[serde(default)]
    pub priority: i32,
    /// Stable dotted code for records and metrics, e.g. `transfer.requested`.
    pub disposition: String,
    #[serde(default = "default_route")]
    pub route: String,
    /// Spoken to the agent; `{placeholders}` filled by the briefing.
    #[serde(default)]
    pub briefing: String,
    #[serde(default)]
    pub next_step: String,
}

/// The rules that apply when the config has none: a newcomer's first call can be
/// transferred without writing policy.
pub fn default_rules() -> Vec<Rule> {
    let rule = |name: &str, kind: RuleKind, priority: i32, disposition: &str, next: &str| Rule {
        name: name.into(),
        kind,
        priority,
        disposition: disposition.into(),
        route: default_route(),
        briefing: String::new(),
        next_step: next.into(),
    };
    vec![
        rule(
            "asked_for_person",
            RuleKind::ExplicitRequest {
                phrases: Vec::new(),
            },
            100,
            "transfer.requested",
            "Greet the caller by name and pick up where the assistant left off.",
        ),
        rule(
            "pressed_zero",
            RuleKind::Dtmf { digit: '0' },
            90,
            "transfer.dtmf",
            "The caller pressed 0 for a person: take over directly.",
        ),
        rule(
            "frustrated",
            RuleKind::Prosody {
                threshold: arousal_threshold(),
                sustain: two(),
                negative_phrases: negative_phrases(),
            },
            50,
            "transfer.frustration",
            "Acknowledge the wait and the frustration before anything else.",
        ),
        rule(
            "assistant_failing",
            RuleKind::RepeatedFailure { failures: 3 },
            40,
            "transfer.repeated_failure",
            "The assistant could not help: ask the caller to restate the request.",
        ),
    ]
}

/// One thing that happened, as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation<'a> {
    /// At the start: who is calling (user parts of From and P-Asserted-Identity).
    Caller {
        from: &'a str,
        asserted: Option<&'a str>,
    },
    /// A caller turn.
    Turn {
        text: &'a str,
        confidence: f32,
        arousal: Option<f32>,
        /// Prosody features that raised the arousal (`pitch:+4.1 semitones`, …).
        prosody_evidence: &'a [String],
    },
    Dtmf {
        digit: char,
    },
    /// The assistant could not answer or resolve a turn.
    AssistantFailed,
    /// The caller's need was met: elapsed-time rules stand down.
    Resolved,
    /// Time passes (for `elapsed`).
    Tick,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub rule: String,
    pub kind: TriggerKind,
    /// What made it fire: the words, the scores, the digit, the number.
    pub evidence: Vec<String>,
    /// How sure the policy is, 0..1 (an explicit request or a digit is 1).
    pub confidence: f32,
    /// Milliseconds since the call started.
    pub at_ms: u64,
    pub disposition: String,
    pub route: String,
}

/// A call's escalation rules in the order they are tried: highest priority first, config
/// order breaking ties; an empty list is [`default_rules`]. Built once (from the config) and
/// shared by every call, since ordering and the defaults' phrases are the same each time.
#[derive(Debug, Clone)]
pub struct RuleSet(std::sync::Arc<[Rule]>);

impl From<Vec<Rule>> for RuleSet {
    fn from(rules: Vec<Rule>) -> Self {
        let mut rules = if rules.is_empty() {
            default_rules()
        } else {
            rules
        };
        rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        Self(rules.into())
    }
}

impl std::ops::Deref for RuleSet {
    type Target = [Rule];
    fn deref(&self) -> &[Rule] {
        &self.0
    }
}

/// One call's policy state.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: RuleSet,
    fired: HashSet<String>,
    aroused_run: usize,
    /// The arousal of the last turns, newest last (the run's, for `Prosody`).
    recent_arousal: Vec<f32>,
    low_conf_run: usize,
    failures: usize,
    resolved: bool,
}

/// One turn of an aroused run may fall this far under the threshold when the run's mean
/// stays at or over it: a furious caller's next sentence is often a shade calmer ("I have
/// called three times already!" 0.85, "Why does this keep happening to me?" 0.59), while
/// calm and lively callers stay far below (under 0.35 on the accuracy suite).
pub const SUSTAIN_SLACK: f32 = 0.1;

impl Policy {
    /// `rules` empty → [`default_rules`].
    pub fn new(rules: impl Into<RuleSet>) -> Self {
        Self {
            rules: rules.into(),
            fired: HashSet::new(),
            aroused_run: 0,
            recent_arousal: Vec::new(),
            low_conf_run: 0,
            failures: 0,
            resolved: false,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Feed one observation at `at_ms`; the highest-priority rule it newly fires, if any.
    pub fn observe(&mut self, at_ms: u64, obs: &Observation<'_>) -> Option<Trigger> {
        // Counters first, so every rule sees the same state.
        match obs {
            Observation::Turn {
                confidence,
                arousal,
                ..
            } => {
                self.low_conf_run += 1;
                self.aroused_run += 1;
                if self.recent_arousal.len() == 8 {
                    self.recent_arousal.remove(0);
                }
                self.recent_arousal.push(arousal.unwrap_or(0.0));
                let _ = confidence;
            }
            Observation::AssistantFailed => self.failures += 1,
            Observation::Resolved => self.resolved = true,
            _ => {}
        }
        let mut best: Option<Trigger> = None;
        let mut keep_low_conf = false;
        let mut keep_aroused = false;
        for rule in self.rules.iter() {
            let (hit, keep) = self.check(rule, at_ms, obs);
            match &rule.kind {
                RuleKind::LowConfidence { .. } => keep_low_conf |= keep,
                RuleKind::Prosody { .. } => keep_aroused |= keep,
                _ => {}
            }
            if best.is_none() && !self.fired.contains(&rule.name) {
                if let Some((evidence, confidence)) = hit {
                    best = Some(Trigger {
                        rule: rule.name.clone(),
                        kind: rule.kind.kind(),
                        evidence,
                        confidence,
                        at_ms,
                        disposition: rule.disposition.clone(),
                        route: rule.route.clone(),
                    });
                }
            }
        }
        if matches!(obs, Observation::Turn { .. }) {
            if !keep_low_conf {
                self.low_conf_run = 0;
            }
            if !keep_aroused {
                self.aroused_run = 0;
            }
        }
        if let Some(t) = &best {
            self.fired.insert(t.rule.clone());
        }
        best
    }

    /// Whether `rule` fires on `obs`: `(evidence, confidence)`; and whether this turn keeps
    /// the rule's run going (for the consecutive-turn kinds).
    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        rule: &Rule,
        _at_ms: u64,
        obs: &Observation<'_>,
    ) -> (Option<(Vec<String>, f32)>, bool) {
        use Observation as O;
        match (&rule.kind, obs) {
            (RuleKind::ExplicitRequest { phrases }, O::Turn { text, .. }) => {
                let ws = text::words(text);
                let hit = intent::person_request(text)
                    .map(|r| (r.phrase, r.confidence))
                    .or_else(|| text::match_in_context(&ws, phrases, &[], 0).map(|(p, _)| (p, 1.0)))
                    .map(|(p, c)| {
                        (
                            vec![format!("said \"{p}\""), format!("turn: \"{text}\"")],
                            c,
                        )
                    });
                (hit, false)
            }
            (
                RuleKind::Keyword {
                    phrases,
                    exclude,
                    window,
                },
                O::Turn {
                    text, confidence, ..
                },
            ) => {
                let ws = text::words(text);
                let hit = text::match_in_context(&ws, phrases, exclude, *window).map(|(p, _)| {
                    (
                        vec![format!("said \"{p}\""), format!("turn: \"{text}\"")],
                        *confidence,
                    )
                });
                (hit, false)
            }
            (
                RuleKind::Prosody {
                    threshold,
                    sustain,
                    negative_phrases,
                },
                O::Turn {
                    text,
                    arousal: Some(a),
                    prosody_evidence,
                    ..
                },
            ) => {
                if *a < threshold - SUSTAIN_SLACK {
                    return (None, false);
                }
                let ws = text::words(text);
                let negative = text::match_in_context(&ws, negative_phrases, &[], 0)
                    .filter(|_| a >= threshold);
                let n = (*sustain).max(1);
                let last = &self.recent_arousal[self.recent_arousal.len().saturating_sub(n)..];
                let mean = last.iter().sum::<f32>() / last.len().max(1) as f32;
                let sustained = self.aroused_run >= n && mean >= *threshold;
                let hit = (sustained || negative.is_some()).then(|| {
                    let mut ev = vec![if a >= threshold {
                        format!("arousal {a:.2} ≥ {threshold:.2}")
                    } else {
                        format!("arousal {a:.2}, mean {mean:.2} ≥ {threshold:.2} over {n} turns")
                    }];
                    if sustained {
                        ev.push(format!("{} turns in a row", self.aroused_run));
                    }
                    if let Some((p, _)) = negative {
                        ev.push(format!("said \"{p}\""));
                    }
                    ev.extend(prosody_evidence.iter().cloned());
                    (ev, *a)
                });
                (hit, true)
            }
            (RuleKind::LowConfidence { below, turns }, O::Turn { confidence, .. }) => {
                if confidence >= below {
                    return (None, false);
                }
                let hit = (self.low_conf_run >= *turns).then(|| {
                    (
                        vec![format!(
                            "recognition confidence {confidence:.2} < {below:.2} for {} turns",
                            self.low_conf_run
                        )],
                        1.0 - confidence,
                    )
                });
                (hit, true)
            }
            (RuleKind::RepeatedFailure { failures }, O::AssistantFailed) => {
                let hit = (self.failures >= *failures).then(|| {
                    (
                        vec![format!("assistant failed {} times", self.failures)],
                        1.0,
                    )
                });
                (hit, false)
            }
            (RuleKind::Elapsed { after_s }, _) => {
                let hit = (!self.resolved && _at_ms >= after_s * 1000)
                    .then(|| (vec![format!("unresolved after {} s", _at_ms / 1000)], 1.0));
                (hit, false)
            }
            (RuleKind::Dtmf { digit }, O::Dtmf { digit: d }) => {
                let hit = (digit == d).then(|| (vec![format!("pressed {d}")], 1.0));
                (hit, false)
            }
            (RuleKind::Caller { numbers }, O::Caller { from, asserted }) => {
                let ids = [Some(*from), *asserted];
                let hit = ids.into_iter().flatten().find_map(|id| {
                    let digits = normalise_number(id);
                    numbers
                        .iter()
                        .find(|n| number_matches(n, &digits))
                        .map(|n| (vec![format!("caller {id} matches {n}")], 1.0))
                });
                (hit, false)
            }
            (
                RuleKind::Topic {
                    topic,
                    phrases,
                    exclude,
                    amount_over,
                },
                O::Turn {
                    text, confidence, ..
                },
            ) => {
                let Some((p, amount)) = topic_said(text, phrases, exclude, *amount_over) else {
                    return (None, false);
                };
                let mut ev = vec![format!("topic {topic}: said \"{p}\"")];
                if let (Some(a), Some(limit)) = (amount, amount_over) {
                    ev.push(format!("amount {a} > {limit}"));
                }
                ev.push(format!("turn: \"{text}\""));
                (Some((ev, *confidence)), false)
            }
            _ => (None, false),
        }
    }
}

/// Digits of a number or SIP user part, keeping a leading `+`.
pub fn normalise_number(s: &str) -> String {
    let user = s
        .trim()
        .trim_start_matches("sip:")
        .trim_start_matches("tel:")
        .split(['@', ';'])
        .next()
        .unwrap_or("");
    let plus = if user.starts_with('+') { "+" } else { "" };
    format!(
        "{plus}{}",
        user.chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
    )
}

fn number_matches(pattern: &str, digits: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => digits.starts_with(&normalise_number(prefix)),
        None => normalise_number(pattern) == digits,
    }
}

/// Money amounts in a turn, in digits ("$1,200", "600 dollars", "450.50") or words
/// ("eight hundred dollars", "twelve hundred", "two thousand five hundred").
pub fn amounts(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for w in text.split_whitespace() {
        let t: String = w
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let t = t.trim_end_matches('.');
        if let Ok(v) = t.parse::<f64>() {
            if !t.is_empty() {
                out.push(v);
            }
        }
    }
    out.extend(number_words(&text::words(text)));
    out
}

/// The topics that name an amount over a threshold, seen from the recogniser: a turn that
/// names money above a topic's threshold without any of its phrases is one a misheard
/// word decides ("I was overcharged by two thousand dollars" heard as "I want to return to
/// $2,000"), worth searching for the phrases; any other turn is not, so no topic is read
/// into a routine call.
#[derive(Debug, Clone, Default)]
pub struct UnheardTopics {
    /// Each topic's phrases, exclusions and amount.
    topics: Vec<(Vec<String>, Vec<String>, f64)>,
}

impl UnheardTopics {
    /// Each topic's phrases and the amount it must name more than.
    pub fn new(topics: Vec<(Vec<String>, f64)>) -> Self {
        Self::with_exclusions(topics.into_iter().map(|(p, l)| (p, Vec::new(), l)))
    }

    fn with_exclusions(topics: impl IntoIterator<Item = (Vec<String>, Vec<String>, f64)>) -> Self {
        Self {
            topics: topics
                .into_iter()
                .filter(|(p, _, _)| !p.is_empty())
                .collect(),
        }
    }

    /// The `topic` rules with an `amount_over`.
    pub fn from_rules(rules: &[Rule]) -> Self {
        Self::with_exclusions(rules.iter().filter_map(|r| match &r.kind {
            RuleKind::Topic {
                phrases,
                exclude,
                amount_over: Some(limit),
                ..
            } => Some((phrases.clone(), exclude.clone(), *limit)),
            _ => None,
        }))
    }

    /// Every topic's phrases, each once.
    pub fn phrases(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in self.topics.iter().flat_map(|(ps, _, _)| ps) {
            if !out.iter().any(|x| x.eq_ignore_ascii_case(p)) {
                out.push(p.clone());
            }
        }
        out
    }

    /// The reading fires one of the topics, as its rule reads a turn ([`topic_said`]).
    pub fn decided(&self, reading: &str) -> bool {
        self.topics
            .iter()
            .any(|(ps, ex, limit)| topic_said(reading, ps, ex, Some(*limit)).is_some())
    }

    /// The turn names money above a topic's threshold and none of that topic's phrases.
    pub fn wanted(&self, heard: &str) -> bool {
        let money = money_amounts(heard);
        if money.is_empty() {
            return false;
        }
        let ws = text::words(heard);
        self.topics.iter().any(|(ps, _, limit)| {
            money.iter().any(|a| a > limit) && ps.iter().all(|p| text::find(&ws, p).is_empty())
        })
    }
}

/// How a `topic` rule reads a turn: one of its phrases said in context (not negated, no
/// exclusion near), and with `amount_over`, an amount above it. The phrase and the amount.
fn topic_said(
    turn: &str,
    phrases: &[String],
    exclude: &[String],
    amount_over: Option<f64>,
) -> Option<(String, Option<f64>)> {
    let (p, _) = text::match_in_context(&text::words(turn), phrases, exclude, 6)?;
    match amount_over {
        None => Some((p, None)),
        Some(limit) => amounts(turn)
            .into_iter()
            .find(|a| *a > limit)
            .map(|a| (p, Some(a))),
    }
}

/// Amounts a turn names as money: [`amounts`], when the turn says so with a currency sign
/// or word ("$2,000", "six hundred dollars", "two grand"). "My account number is four five
/// six seven" names none.
pub fn money_amounts(text: &str) -> Vec<f64> {
    const CURRENCY: &[&str] = &[
        "dollar", "dollars", "bucks", "pound", "pounds", "euro", "euros", "grand", "quid",
    ];
    let sign = text.contains(['$', '£', '€']);
    if sign
        || text::words(text)
            .iter()
            .any(|w| CURRENCY.contains(&w.as_str()))
    {
        amounts(text)
    } else {
        Vec::new()
    }
}

/// A word that says an amount or part of one: digits, a currency sign, a number word
/// ("$1,500", "800", "eight", "hundred").
pub fn amount_word(word: &str) -> bool {
    let w = word.to_lowercase();
    let core = w.trim_matches(|c: char| !c.is_alphanumeric());
    w.chars()
        .any(|c| c.is_ascii_digit() || matches!(c, '$' | '£' | '€'))
        || small_number(core).is_some()
        || matches!(core, "hundred" | "thousand" | "grand" | "million")
}

fn small_number(w: &str) -> Option<u64> {
    const UNITS: &[&str] = &[
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: &[&str] = &[
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if w == "a" {
        return None;
    }
    UNITS
        .iter()
        .position(|u| *u == w)
        .map(|i| i as u64)
        .or_else(|| {
            TENS.iter()
                .position(|t| *t == w)
                .map(|i| 20 + 10 * i as u64)
        })
}

/// Numbers said in words: each maximal run of number words is one number.
fn number_words(ws: &[String]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut total, mut current, mut any) = (0u64, 0u64, false);
    let flush = |out: &mut Vec<f64>, total: &mut u64, current: &mut u64, any: &mut bool| {
        if *any {
            out.push((*total + *current) as f64);
        }
        (*total, *current, *any) = (0, 0, false);
    };
    for (i, w) in ws.iter().enumerate() {
        let w = w.as_str();
        // "6 hundred dollars": whisper writes some numbers half in digits.
        let digits_before_scale = || {
            ws.get(i + 1)
                .is_some_and(|n| matches!(n.as_str(), "hundred" | "thousand" | "grand" | "million"))
                .then(|| w.parse::<u64>().ok())
                .flatten()
        };
        if let Some(v) = small_number(w).or_else(digits_before_scale) {
            current += v;
            any = true;
        } else if w == "hundred" && (any || ws.get(i.wrapping_sub(1)).is_some_and(|p| p == "a")) {
            current = current.max(1) * 100;
            any = true;
        } else if (w == "thousand" || w == "grand") && (any || i > 0 && ws[i - 1] == "a") {
            total += current.max(1) * 1000;
            current = 0;
            any = true;
        } else if w == "million" && any {
            total += current.max(1) * 1_000_000;
            current = 0;
        } else if w == "and" && any {
            continue;
        } else {
            flush(&mut out, &mut total, &mut current, &mut any);
        }
    }
    flush(&mut out, &mut total, &mut current, &mut any);
    out
}

/// What to do with a trigger given its route's business hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Transfer,
    /// Out of hours: tell the caller when the team will call back and record a callback
    /// request instead of dialing. `weekday` 1 = Monday.
    Callback {
        weekday: u8,
        at: String,
    },
}

impl Decision {
    /// The decision's metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Transfer => "transfer",
            Decision::Callback { .. } => "callback",
        }
    }
}

/// Transfer now, or (out of hours) a callback when the route next opens. No hours = always
/// open.
pub fn decide(hours: Option<&hours::Hours>, weekday: u8, minute: u16) -> Decision {
    match hours {
        Some(h) if !h.is_open(weekday, minute) => match h.next_open(weekday, minute) {
            Some((weekday, at)) => Decision::Callback { weekday, at },
            None => Decision::Transfer,
        },
        _ => Decision::Transfer,
    }
}
