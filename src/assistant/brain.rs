//! The external brain (a webhook, or an OpenAI-compatible chat model) and the language
//! model that writes the agent's briefing: each an HTTP round trip with a timeout, whose
//! answer (or its absence) goes back to the call as an event.

use super::AssistantPlane;
use crate::config::BrainKind;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;
use warmline_call::CallEvent;
use warmline_call::brain::{BrainReply, BrainRequest};

#[derive(Debug, thiserror::Error)]
pub enum BrainError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Http(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("reply is not the contract: {0}")]
    Reply(String),
}

impl AssistantPlane {
    /// Ask the language model for the agent's briefing; its text comes back as
    /// `CallEvent::BriefingWritten`, a failure only as a log line and a count (the
    /// template briefing stands).
    pub fn write_briefing(
        self: &Arc<Self>,
        packet: &warmline_call::context::ContextPacket,
        reply_to: crate::sip::call::LegEvents,
    ) {
        let Some((settings, client)) = self.briefing.clone() else {
            return;
        };
        let facts = serde_json::to_string(packet).unwrap_or_default();
        let plane = self.clone();
        tokio::spawn(
            async move {
                let messages = vec![
                    json!({"role": "system", "content": BRIEFING_SYSTEM}),
                    json!({"role": "user", "content": facts}),
                ];
                let text = chat(
                    &client,
                    &settings.url,
                    &settings.model,
                    settings.api_key.as_deref(),
                    messages,
                )
                .await
                .and_then(|text| {
                    Some(text.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| BrainError::Reply("an empty briefing".into()))
                });
                match text {
                    Ok(text) => {
                        plane.metrics.briefings_written.inc();
                        let _ = reply_to.send(CallEvent::BriefingWritten { text });
                    }
                    Err(e) => {
                        plane.metrics.briefings_failed.inc();
                        tracing::warn!(error = %e, "briefing not written by the model: the template one is used");
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// POST one turn to the brain; the answer (or `None`) comes back as an event.
    pub fn ask(self: &Arc<Self>, request: BrainRequest, reply_to: crate::sip::call::LegEvents) {
        let Some((settings, client)) = self.brain.clone() else {
            let _ = reply_to.send(CallEvent::BrainReply {
                seq: request.seq,
                reply: None,
            });
            return;
        };
        let plane = self.clone();
        tokio::spawn(
            async move {
                let seq = request.seq;
                plane.metrics.brain_requests.inc();
                let t = Instant::now();
                let result = match &settings.kind {
                    BrainKind::Webhook => webhook(&client, &settings.url, &request).await,
                    BrainKind::OpenAi { model, api_key } => {
                        openai(&client, &settings.url, model, api_key.as_deref(), &request).await
                    }
                };
                let took = t.elapsed();
                let ms = took.as_millis() as u64;
                let m = &plane.metrics;
                let reply = match result {
                    Ok(r) => {
                        m.brain_ok.inc();
                        m.brain_round_trip.observe(took.as_secs_f64());
                        tracing::info!(seq, ms, say = ?r.say, transfer = ?r.transfer, "brain replied");
                        Some(Box::new(r))
                    }
                    Err(e) => {
                        match e {
                            BrainError::Timeout => m.brain_timeouts.inc(),
                            _ => m.brain_errors.inc(),
                        };
                        tracing::warn!(seq, ms, error = %e, "brain failed: the built-in assistant takes this turn");
                        None
                    }
                };
                let _ = reply_to.send(CallEvent::BrainReply { seq, reply });
            }
            .in_current_span(),
        );
    }
}

fn http_error(e: reqwest::Error) -> BrainError {
    if e.is_timeout() {
        BrainError::Timeout
    } else {
        BrainError::Http(e.to_string())
    }
}

async fn webhook(
    client: &reqwest::Client,
    url: &str,
    request: &BrainRequest,
) -> Result<BrainReply, BrainError> {
    let resp = client
        .post(url)
        .json(request)
        .send()
        .await
        .map_err(http_error)?;
    if !resp.status().is_success() {
        return Err(BrainError::Status(resp.status().as_u16()));
    }
    let body = resp.bytes().await.map_err(http_error)?;
    serde_json::from_slice(&body).map_err(|e| BrainError::Reply(e.to_string()))
}

const BRIEFING_SYSTEM: &str = "You brief a contact-centre agent who is about to take a call \
from an automated assistant. From the JSON context packet, say in two or three short spoken \
sentences: who is calling, what they want, what was collected, why they are being \
transferred, and the suggested next step. Plain text only, no lists, no markup.";

const OPENAI_SYSTEM: &str = "You are the telephone assistant of a customer service line. \
The caller hears your words through text to speech: answer in one or two short, plain \
sentences. Reply with one JSON object and nothing else: {\"say\": string, \"fields\": \
{string: string}, \"intent\": string, \"confidence\": number between 0 and 1, \"transfer\": \
null or {\"reason\": string}, \"resolved\": boolean}. Put what you learn (name, account or \
order number, postcode, preferred time) in fields. Ask for a transfer when the caller wants \
a person, is upset, or needs something you cannot do.";

async fn openai(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    api_key: Option<&str>,
    request: &BrainRequest,
) -> Result<BrainReply, BrainError> {
    let mut messages = vec![json!({"role": "system", "content": OPENAI_SYSTEM})];
    if !request.fields.is_empty() {
        messages.push(json!({"role": "system", "content": format!("Collected so far: {}", json!(request.fields))}));
    }
    // The history ends with this turn already.
    for line in &request.history {
        let role = if line.role == "assistant" {
            "assistant"
        } else {
            "user"
        };
        messages.push(json!({"role": role, "content": line.text}));
    }
    if request
        .history
        .last()
        .is_none_or(|l| l.text != request.transcript)
    {
        messages.push(json!({"role": "user", "content": request.transcript}));
    }
    let content = chat(client, url, model, api_key, messages).await?;
    Ok(parse_chat_reply(&content))
}

/// One OpenAI-compatible chat completion (`POST …/chat/completions`): the first choice's
/// text. The brain and the briefing writer both ask through it.
async fn chat(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    api_key: Option<&str>,
    messages: Vec<serde_json::Value>,
) -> Result<String, BrainError> {
    let mut post = client.post(url).json(&json!({
        "model": model,
        "messages": messages,
        "temperature": 0.2,
    }));
    if let Some(key) = api_key {
        post = post.bearer_auth(key);
    }
    let resp = post.send().await.map_err(http_error)?;
    if !resp.status().is_success() {
        return Err(BrainError::Status(resp.status().as_u16()));
    }
    let body: serde_json::Value = resp.json().await.map_err(http_error)?;
    body["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| BrainError::Reply("no choices[0].message.content".into()))
}

/// A chat model's answer: the JSON object asked for, possibly fenced; plain prose is taken
/// as words to say.
pub fn parse_chat_reply(content: &str) -> BrainReply {
    let trimmed = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    serde_json::from_str::<BrainReply>(trimmed).unwrap_or_else(|_| BrainReply {
        say: Some(content.trim().to_string()),
        ..BrainReply::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_replies_json_fenced_json_or_prose() {
        let r =
            parse_chat_reply("```json\n{\"say\":\"Hi.\",\"transfer\":{\"reason\":\"asked\"}}\n```");
        assert_eq!(r.say.as_deref(), Some("Hi."));
        assert!(r.transfer.is_some());
        let r = parse_chat_reply("Sure, one moment.");
        assert_eq!(r.say.as_deref(), Some("Sure, one moment."));
    }

    /// The brain's replies under mutation, both contracts: a webhook's JSON is a reply or
    /// an error; a chat model's text is a reply, or, when it is not the JSON asked for,
    /// words to say; never a panic.
    #[test]
    fn mutated_brain_replies_are_replies_or_errors() {
        use warmline_signaling::mutate::{Mutator, executions, report};
        let seed = br#"{"say": "Thanks, Ada. One moment.", "fields": {"account": "4567"}, "intent": "billing", "confidence": 0.9, "transfer": {"reason": "asked for a person", "route": "billing"}, "resolved": false}"#;
        let mut m = Mutator::new(0x5eed_0007);
        let n = executions(20_000);
        let mut parsed = 0;
        for _ in 0..n {
            let b = m.mutate(seed);
            if serde_json::from_slice::<BrainReply>(&b).is_ok() {
                parsed += 1;
            }
            let text = String::from_utf8_lossy(&b);
            let r = parse_chat_reply(&text);
            assert!(r.say.is_some() || serde_json::from_str::<BrainReply>(text.trim()).is_ok());
        }
        assert!(parsed > 0 && parsed < n, "{parsed} of {n}");
        report("brain reply", n);
    }
}
