//! The virtual-clock harness shared by the controller's flow tests.

// Test support code: a failed setup step should panic with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use warmline_call::assistant::{Assistant, AssistantConfig};
use warmline_call::{CallAction, CallConfig, CallEvent, Controller, RoutePlan};
use warmline_signaling::{CodecName, LocalMedia, SrtpKey, SrtpMode};

/// A controller on a virtual clock: events in, actions out, time moved by hand.
pub struct Harness {
    pub now: Instant,
    pub ctl: Controller,
}

pub fn config(answer_after_ms: u64, seed: u64) -> CallConfig {
    CallConfig {
        session_id: 7,
        rng_seed: seed,
        answer_after: Duration::from_millis(answer_after_ms),
        ring_timeout: Duration::from_secs(20),
        caller_id: "sip:+15551230000@127.0.0.1".into(),
        ..CallConfig::new(LocalMedia {
            addr: "127.0.0.1".parse().unwrap(),
            srtp: SrtpMode::Optional,
            srtp_key: SrtpKey([1; 30]),
            port: 20000,
            codecs: vec![
                CodecName::Pcmu,
                CodecName::Pcma,
                CodecName::G722,
                CodecName::Opus,
            ],
        })
    }
}

/// A sans-IO machine on a virtual clock, as the harnesses drive it.
pub trait Clocked {
    type Action;
    fn now(&mut self) -> &mut Instant;
    fn next_timeout(&self) -> Option<Instant>;
    /// Fire what is due at `now`; the actions that follow.
    fn fire(&mut self) -> Vec<Self::Action>;
}

impl Clocked for Harness {
    type Action = CallAction;
    fn now(&mut self) -> &mut Instant {
        &mut self.now
    }
    fn next_timeout(&self) -> Option<Instant> {
        self.ctl.poll_timeout()
    }
    fn fire(&mut self) -> Vec<CallAction> {
        self.ctl.handle_timeout(self.now);
        self.drain()
    }
}

/// Advance the clock by `by`, firing timers exactly when they are due, like a driver would.
pub fn advance<C: Clocked>(c: &mut C, by: Duration) -> Vec<C::Action> {
    let until = *c.now() + by;
    let mut out = Vec::new();
    while let Some(t) = c.next_timeout().filter(|t| *t <= until) {
        let now = c.now();
        *now = t.max(*now);
        out.extend(c.fire());
    }
    *c.now() = until;
    out
}

/// The `default` route to these agents, 15 s a ring.
pub fn route(targets: &[&str]) -> RoutePlan {
    RoutePlan {
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ring_timeout: Duration::from_secs(15),
        ..RoutePlan::unstaffed("default")
    }
}

/// A caller the assistant answers (Ada Lovelace, default rules) with `route` to transfer to.
pub fn transfer_config(route: RoutePlan) -> CallConfig {
    let mut cfg = config(0, 1);
    cfg.rules = Some(Vec::new().into());
    cfg.assistant = Some(Assistant::new(AssistantConfig::default()).unwrap());
    cfg.caller_name = Some("Ada Lovelace".into());
    cfg.routes = Arc::new(vec![route]);
    cfg
}

impl Harness {
    pub fn inbound(answer_after_ms: u64) -> Self {
        Self {
            now: Instant::now(),
            ctl: Controller::inbound(config(answer_after_ms, 99)),
        }
    }

    pub fn with(cfg: CallConfig) -> Self {
        Self {
            now: Instant::now(),
            ctl: Controller::inbound(cfg),
        }
    }

    pub fn outbound(seed: u64) -> Self {
        let now = Instant::now();
        Self {
            now,
            ctl: Controller::outbound(now, config(0, seed)),
        }
    }

    pub fn send(&mut self, ev: CallEvent) -> Vec<CallAction> {
        self.ctl.handle(self.now, ev);
        self.drain()
    }

    /// `send` without the media-only actions, for tests about signaling.
    pub fn signal(&mut self, ev: CallEvent) -> Vec<CallAction> {
        let mut acts = self.send(ev);
        acts.retain(|a| !matches!(a, CallAction::HoldAudio { .. }));
        acts
    }

    pub fn drain(&mut self) -> Vec<CallAction> {
        std::iter::from_fn(|| self.ctl.poll_action()).collect()
    }

    /// Advance the clock, firing timers exactly when they are due, like a driver would.
    pub fn advance(&mut self, by: Duration) -> Vec<CallAction> {
        advance(self, by)
    }

    pub fn answered_call() -> Self {
        let mut h = Self::inbound(0);
        let acts = h.send(CallEvent::Invite {
            sdp: Some(offer("sendrecv", 1)),
        });
        assert!(matches!(acts[0], CallAction::Answer { .. }));
        assert!(h.send(CallEvent::Ack).is_empty());
        assert_eq!(h.ctl.snapshot().state, "confirmed");
        h
    }
}

pub fn offer(direction: &str, version: u32) -> String {
    format!(
        "v=0\r\no=sipp 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )
}

pub fn answer_sdp(direction: &str) -> String {
    format!(
        "v=0\r\no=peer 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na={direction}\r\n"
    )
}

pub fn turn_saying(text: &str) -> CallEvent {
    CallEvent::Transcript {
        turn: Box::new(warmline_speech::TranscriptTurn {
            text: text.into(),
            start_ms: 0,
            end_ms: 1000,
            confidence: 0.9,
            words: Vec::new(),
            recognizer: "whisper".into(),
            latency_ms: 80,
            endpoint_ms: 0,
            prosody: None,
        }),
    }
}

/// The texts of the `Say` actions, in order.
pub fn says(acts: &[CallAction]) -> Vec<String> {
    acts.iter()
        .filter_map(|a| match a {
            CallAction::Say { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}
