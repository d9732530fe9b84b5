//! The assistant end to end: the real binary, SIPp callers speaking espeak-ng audio, and an
//! external brain served over real HTTP by this test (it is the operator's service, so the
//! test plays it): the turn is POSTed with the contract's fields, the reply is spoken, a
//! brain that times out is counted and the built-in flow answers instead; out of hours the
//! caller is promised a callback and the disclosure and the callback are audited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::time::{Duration, Instant};

fn stats(gw: &Gw) -> serde_json::Value {
    serde_json::from_str(&http_req(gw.http, "GET", "/v1/stats", "").1).unwrap()
}

/// Poll the live call until `done` holds or `within` passes; the last view either way.
fn watch(
    gw: &Gw,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let live = calls(gw);
        if live[0].is_object() && done(&live[0]) || start.elapsed() > within {
            return live[0].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The call's audit trail, as stored (event names, oldest first), once it holds its `end`
/// (stored as the call's tasks wind down, after the caller has gone); as it stands after
/// 15 s otherwise.
fn stored_events(gw: &Gw, id: &str) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let (_, body) = http_req(gw.http, "GET", &format!("/api/calls/{id}/audit"), "");
        let events: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
            .unwrap_or_default()["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["event"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if events.iter().any(|e| e == "end") || start.elapsed() > Duration::from_secs(15) {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn said(call: &serde_json::Value) -> Vec<String> {
    call["said"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

const SHORT_GREETING: &str =
    "[speech]\ngreeting_text = \"Hello, this is an automated assistant.\"\n";

#[test]
fn each_turn_goes_to_the_brain_and_its_reply_is_spoken() {
    require_sipp();
    let brain = HttpSink::start(
        r#"{"say": "Thanks. Which invoice is it about?", "fields": {"topic": "invoice"}, "intent": "billing question", "confidence": 0.8}"#,
        Duration::ZERO,
    );
    let gw = Gw::start(
        "",
        &format!(
            "{SHORT_GREETING}[assistant]\nwebhook_url = \"http://127.0.0.1:{}/turn\"\n",
            brain.port
        ),
    );
    let sipp = caller(&gw, "yes_pcmu.pcap", "0", 6000, media_port());
    let call = watch(&gw, Duration::from_secs(5), |c| !said(c).is_empty());
    wait_ok(sipp, "caller answering the assistant");

    let bodies = brain.bodies();
    assert_eq!(bodies.len(), 1, "one turn, one request: {bodies:?}");
    let req = &bodies[0];
    assert_eq!(req["version"], 1);
    assert_eq!(req["seq"], 1);
    assert_eq!(req["call_id"], call["id"], "{req}");
    assert_eq!(req["caller"], "", "SIPp's From user is not a number: {req}");
    assert_eq!(req["caller_name"], "sipp", "{req}");
    assert!(
        req["transcript"].is_string() && req["confidence"].is_number(),
        "{req}"
    );
    // A one-word answer is too short for a prosody summary; the key is there regardless.
    assert!(req.get("prosody").is_some(), "{req}");
    assert_eq!(req["history"][0]["role"], "caller", "{req}");

    assert_eq!(
        said(&call),
        ["Thanks. Which invoice is it about?"],
        "{call}"
    );
    assert_eq!(call["fields"]["topic"], "invoice");
    assert_eq!(call["intent"]["source"], "brain");
    let a = &stats(&gw)["assistant"];
    assert_eq!(a["brain_ok"], 1, "{a}");
    assert_eq!(a["says"], 1, "{a}");
    assert_eq!(a["tts_errors"], 0, "{a}");
}

#[test]
fn a_brain_that_times_out_is_counted_and_the_built_in_flow_answers() {
    require_sipp();
    let brain = HttpSink::start(r#"{"say": "too late"}"#, Duration::from_secs(3));
    let gw = Gw::start(
        "",
        &format!(
            "{SHORT_GREETING}[assistant]\nwebhook_url = \"http://127.0.0.1:{}/turn\"\nwebhook_timeout_ms = 300\n",
            brain.port
        ),
    );
    let sipp = caller(&gw, "yes_pcmu.pcap", "0", 6000, media_port());
    let call = watch(&gw, Duration::from_secs(5), |c| !said(c).is_empty());
    wait_ok(sipp, "caller answering the assistant");
    let lines = said(&call);
    // The built-in flow took the turn: "yes" as the reason asks for the number; an
    // unintelligible turn is re-prompted.
    assert!(
        lines == ["What is your account or order number?"]
            || lines == ["Sorry, I didn't catch that. Please tell me briefly why you are calling."],
        "{call}"
    );
    let a = &stats(&gw)["assistant"];
    assert_eq!(a["brain_timeouts"], 1, "{a}");
    assert_eq!(a["brain_ok"], 0, "{a}");
    assert!(
        gw.log()
            .contains("brain failed: the built-in assistant takes this turn")
    );
}

#[test]
fn out_of_hours_the_caller_is_promised_a_callback_and_it_is_audited() {
    require_sipp();
    // Open only on the day after tomorrow (UTC), so the route is closed now.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .weekday()
        .to_monday_one_offset() as u8;
    let open_day = (today + 1) % 7 + 1;
    let gw = Gw::start(
        "",
        &format!(
            "{SHORT_GREETING}[[routes]]\nname = \"default\"\ntimezone = \"UTC\"\nhours = {{ days = [{open_day}], open = \"09:00\", close = \"17:00\" }}\n"
        ),
    );
    let sipp = caller(&gw, "ask_pcmu.pcap", "0", 9000, media_port());
    // The promise is said while the call is live; the audit is read from the store after.
    let call = watch(&gw, Duration::from_secs(8), |c| !said(c).is_empty());
    wait_ok(sipp, "caller out of hours");
    assert_eq!(call["triggers"][0]["kind"], "explicit_request", "{call}");
    assert_eq!(call["decision"]["decision"], "callback", "{call}");
    assert_eq!(call["decision"]["weekday"], open_day);
    let promise = format!(
        "someone will call you back on {} from 09:00.",
        warmline_policy::hours::weekday_name(open_day)
    );
    assert!(said(&call)[0].ends_with(&promise), "{call}");
    let events = stored_events(&gw, call["id"].as_str().unwrap());
    assert!(events.contains(&"callback_requested".into()), "{events:?}");
    assert!(events.contains(&"disclosure".into()), "{events:?}");
    assert!(
        call["briefing"]["spoken"]
            .as_str()
            .unwrap_or("")
            .contains("asked to speak to a person")
    );
    assert_eq!(stats(&gw)["assistant"]["callbacks"], 1);
}

#[test]
fn an_openai_compatible_endpoint_can_be_the_brain() {
    require_sipp();
    let brain = HttpSink::start(
        r#"{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "```json\n{\"say\": \"Happy to help. What is the order number?\", \"intent\": \"order status\", \"confidence\": 0.7}\n```"}}]}"#,
        Duration::ZERO,
    );
    let gw = Gw::start(
        "",
        &format!(
            "{SHORT_GREETING}[assistant]\nopenai_url = \"http://127.0.0.1:{}/v1/chat/completions\"\nopenai_model = \"local-model\"\n",
            brain.port
        ),
    );
    let sipp = caller(&gw, "yes_pcmu.pcap", "0", 6000, media_port());
    let call = watch(&gw, Duration::from_secs(5), |c| !said(c).is_empty());
    wait_ok(sipp, "caller answering the assistant");
    let bodies = brain.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let req = &bodies[0];
    assert_eq!(req["model"], "local-model");
    let messages = req["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages.last().unwrap()["role"], "user", "{req}");
    assert_eq!(
        said(&call),
        ["Happy to help. What is the order number?"],
        "{call}"
    );
    assert_eq!(call["intent"]["text"], "order status");
}
