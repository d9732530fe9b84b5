//! `[assistant]`: the built-in dialogue (its lines, fields and FAQ), the optional external
//! brain (a webhook or an OpenAI-compatible endpoint), and the briefing writer.

use super::{ConfigError, Ctx};
use serde::Deserialize;
use std::time::Duration;

/// `[assistant]`: the built-in dialogue and the optional external brain.
#[derive(Debug, Clone)]
pub struct AssistantSettings {
    /// `false`: callers hear the greeting and the policy listens, but nobody answers.
    pub enabled: bool,
    pub dialogue: warmline_call::assistant::AssistantConfig,
    pub brain: Option<BrainSettings>,
    /// An OpenAI-compatible endpoint that writes the agent's briefing; the template one is
    /// used when it is unset, slow or failing.
    pub briefing: Option<BriefingSettings>,
}

#[derive(Debug, Clone)]
pub struct BriefingSettings {
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// Where each caller turn is sent first.
#[derive(Debug, Clone)]
pub struct BrainSettings {
    pub url: String,
    pub timeout: Duration,
    pub kind: BrainKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrainKind {
    /// warmline's own JSON contract (`BrainRequest` → `BrainReply`).
    Webhook,
    /// An OpenAI-compatible `/v1/chat/completions` endpoint.
    OpenAi {
        model: String,
        api_key: Option<String>,
    },
}

/// `[assistant]`. The dialogue keys are spelled out (not flattened) so unknown keys are
/// refused with their line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAssistant {
    enabled: bool,
    webhook_url: Option<String>,
    webhook_timeout_ms: u64,
    openai_url: Option<String>,
    openai_model: String,
    /// The name of an environment variable holding the API key (keys stay out of files).
    openai_api_key_env: Option<String>,
    /// An OpenAI-compatible chat endpoint that writes the agent's briefing.
    briefing_url: Option<String>,
    briefing_model: Option<String>,
    ask_reason: Option<String>,
    reprompt: Option<String>,
    anything_else: Option<String>,
    closing: Option<String>,
    out_of_hours: Option<String>,
    fields: Option<Vec<warmline_call::assistant::FieldSpec>>,
    faq: Vec<warmline_call::assistant::Faq>,
}

impl Default for RawAssistant {
    fn default() -> Self {
        Self {
            enabled: true,
            webhook_url: None,
            webhook_timeout_ms: 1500,
            openai_url: None,
            openai_model: "gpt-4o-mini".into(),
            openai_api_key_env: None,
            briefing_url: None,
            briefing_model: None,
            ask_reason: None,
            reprompt: None,
            anything_else: None,
            closing: None,
            out_of_hours: None,
            fields: None,
            faq: Vec::new(),
        }
    }
}

pub(super) fn settings(raw: RawAssistant, cx: &Ctx) -> Result<AssistantSettings, ConfigError> {
    let err = |key: &str, message: String| cx.err(key, message);
    let mut d = warmline_call::assistant::AssistantConfig::default();
    for (slot, value) in [
        (&mut d.ask_reason, raw.ask_reason),
        (&mut d.reprompt, raw.reprompt),
        (&mut d.anything_else, raw.anything_else),
        (&mut d.closing, raw.closing),
        (&mut d.out_of_hours, raw.out_of_hours),
    ] {
        if let Some(v) = value {
            *slot = v;
        }
    }
    if let Some(f) = raw.fields {
        d.fields = f;
    }
    d.faq = raw.faq;
    // Compile the patterns now: a bad one is a config error, not a failed call.
    warmline_call::assistant::Assistant::new(d.clone())
        .map_err(|e| err("assistant.fields", e.to_string()))?;
    let http = |key: &str, url: &str| cx.http_url(key, url);
    let timeout = Duration::from_millis(raw.webhook_timeout_ms);
    if !(100..=30_000).contains(&raw.webhook_timeout_ms) {
        return Err(err(
            "assistant.webhook_timeout_ms",
            "must be 100 to 30000 (a caller is waiting)".into(),
        ));
    }
    let api_key = match &raw.openai_api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            err(
                "assistant.openai_api_key_env",
                format!("environment variable `{var}` is not set"),
            )
        })?),
        None => None,
    };
    let briefing = match raw.briefing_url {
        Some(url) => {
            http("assistant.briefing_url", &url)?;
            Some(BriefingSettings {
                url,
                model: raw
                    .briefing_model
                    .unwrap_or_else(|| raw.openai_model.clone()),
                api_key: api_key.clone(),
                timeout,
            })
        }
        None => None,
    };
    let brain = match (raw.webhook_url, raw.openai_url) {
        (Some(_), Some(_)) => {
            return Err(err(
                "assistant.openai_url",
                "set webhook_url or openai_url, not both".into(),
            ));
        }
        (Some(url), None) => {
            http("assistant.webhook_url", &url)?;
            Some(BrainSettings {
                url,
                timeout,
                kind: BrainKind::Webhook,
            })
        }
        (None, Some(url)) => {
            http("assistant.openai_url", &url)?;
            Some(BrainSettings {
                url,
                timeout,
                kind: BrainKind::OpenAi {
                    model: raw.openai_model,
                    api_key,
                },
            })
        }
        (None, None) => None,
    };
    Ok(AssistantSettings {
        enabled: raw.enabled,
        dialogue: d,
        brain,
        briefing,
    })
}
