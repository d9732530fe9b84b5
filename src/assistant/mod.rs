//! The assistant's drivers. The controller decides what to say and when to ask the external
//! brain; these modules do it, one concern each: [`voice`] (text to speech off the async
//! threads, played in order on a leg's media, barge-in), [`brain`] (the external brain's
//! and the briefing writer's HTTP round trips, through one chat-completions client). This
//! module holds what they share. Nothing here decides.

mod brain;
mod voice;

pub use voice::{Rendering, Voice};

use crate::config::{BrainSettings, Config};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use warmline_call::RoutePlan;
use warmline_call::assistant::Assistant;
use warmline_speech::Tts;

/// What every assistant-answered call shares.
pub struct AssistantPlane {
    /// The configured built-in dialogue (patterns compiled once); `None` when
    /// `[assistant] enabled = false`.
    pub dialogue: Option<Assistant>,
    pub routes: Arc<Vec<RoutePlan>>,
    /// Each round-robin route's rotation, shared by every call: the core asks for a turn
    /// (`AskRotation`) when a transfer starts hunting.
    rotation: HashMap<String, AtomicUsize>,
    /// The prompts', the brain's and the briefing writer's counters live here.
    pub metrics: Arc<Metrics>,
    tts: Arc<dyn Tts>,
    /// Renders that may run at once (one per core): the rest wait their turn.
    render_slots: Arc<tokio::sync::Semaphore>,
    voice: String,
    brain: Option<(BrainSettings, reqwest::Client)>,
    briefing: Option<(crate::config::BriefingSettings, reqwest::Client)>,
}

impl std::fmt::Debug for AssistantPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssistantPlane")
            .field("enabled", &self.dialogue.is_some())
            .field("brain", &self.brain.as_ref().map(|(b, _)| &b.url))
            .finish_non_exhaustive()
    }
}

impl AssistantPlane {
    pub fn new(cfg: &Config, tts: Arc<dyn Tts>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let a = &cfg.assistant;
        let dialogue = if a.enabled {
            Some(Assistant::new(a.dialogue.clone())?)
        } else {
            None
        };
        let brain = match &a.brain {
            Some(b) => {
                let client = reqwest::Client::builder()
                    .timeout(b.timeout)
                    .user_agent(cfg.sip.user_agent.clone())
                    .build()?;
                Some((b.clone(), client))
            }
            None => None,
        };
        let briefing = match &a.briefing {
            Some(b) => Some((
                b.clone(),
                reqwest::Client::builder()
                    .timeout(b.timeout)
                    .user_agent(cfg.sip.user_agent.clone())
                    .build()?,
            )),
            None => None,
        };
        let routes = cfg
            .routes
            .iter()
            .map(|r| RoutePlan {
                name: r.name.clone(),
                hours: r.hours.clone(),
                tz: r.tz.clone(),
                targets: r.targets.clone(),
                strategy: r.strategy,
                ring_timeout: r.ring_timeout,
                confirm: r.confirm,
            })
            .collect();
        Ok(Self {
            dialogue,
            rotation: cfg
                .routes
                .iter()
                .map(|r| (r.name.clone(), AtomicUsize::new(0)))
                .collect(),
            routes: Arc::new(routes),
            metrics,
            tts,
            render_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            )),
            voice: cfg.speech.tts_voice.clone(),
            brain,
            briefing,
        })
    }

    /// The next turn in `route`'s rotation.
    pub fn rotation(&self, route: &str) -> usize {
        self.rotation
            .get(route)
            .map_or(0, |n| n.fetch_add(1, Ordering::Relaxed))
    }

    pub fn has_brain(&self) -> bool {
        self.brain.is_some()
    }

    pub fn writes_briefings(&self) -> bool {
        self.briefing.is_some()
    }
}
