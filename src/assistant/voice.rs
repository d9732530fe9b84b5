//! A call's voices: prompts rendered by TTS on the blocking pool and played in the order
//! asked on one leg; a barge-in drops what is still being rendered.

use super::AssistantPlane;
use crate::media::MediaHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tracing::Instrument as _;
use warmline_call::CallEvent;
use warmline_media::{Clip, LegId};
use warmline_speech::tts::TtsError;

impl AssistantPlane {
    /// Start rendering `text` on a blocking thread: for a [`Voice::say_rendered`] later (the
    /// agent's briefing, rendered while their phone rings), or a voice's next prompt.
    ///
    /// A prompt already rendered (the greeting, said on every call) is handed over at once;
    /// others wait for one of a few render slots, so that a burst of calls queues its
    /// renders instead of starting a blocking thread each (threads that each kept an
    /// allocator cache and left memory fragmented after them).
    pub fn prepare(&self, text: String) -> Rendering {
        let tts = self.tts.clone();
        let voice = self.voice.clone();
        let slots = self.render_slots.clone();
        let clip = match tts.rendered(&text, &voice) {
            Some(clip) => tokio::spawn(std::future::ready(Ok(clip))),
            None => {
                let text = text.clone();
                tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    tokio::task::spawn_blocking(move || tts.synth(&text, &voice))
                        .await
                        .unwrap_or_else(|e| Err(TtsError::Stopped(e.to_string())))
                })
            }
        };
        Rendering { text, clip }
    }

    /// Start a call's voice: prompts are rendered and played in the order asked.
    pub fn voice(
        self: &Arc<Self>,
        media: MediaHandle,
        leg: LegId,
        events: crate::sip::call::LegEvents,
    ) -> Voice {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Speech, u64)>();
        let generation = Arc::new(AtomicU64::new(0));
        let plane = self.clone();
        let current = generation.clone();
        tokio::spawn(
            async move {
                while let Some((id, speech, asked_in)) = rx.recv().await {
                    let rendered = match speech {
                        Speech::Text(text) => plane.prepare(text).clip.await,
                        Speech::Rendered(clip) => clip.await,
                    };
                    // The caller barged in while this was rendering: it is not wanted now.
                    if current.load(Ordering::Acquire) != asked_in {
                        let _ = events.send(CallEvent::PlayoutDone {
                            id,
                            interrupted: true,
                        });
                        continue;
                    }
                    match rendered {
                        Ok(Ok(clip)) => {
                            plane.metrics.tts_prompts.inc();
                            media.play(leg, id, clip);
                        }
                        other => {
                            plane.metrics.tts_errors.inc();
                            let error = match other {
                                Ok(Err(e)) => e.to_string(),
                                Err(e) => e.to_string(),
                                Ok(Ok(_)) => String::new(),
                            };
                            tracing::warn!(%error, id, "prompt not rendered");
                            let _ = events.send(CallEvent::PlayoutDone {
                                id,
                                interrupted: false,
                            });
                        }
                    }
                }
            }
            .in_current_span(),
        );
        Voice { tx, generation }
    }
}

/// A prompt being rendered ahead of being said ([`AssistantPlane::prepare`]).
#[derive(Debug)]
pub struct Rendering {
    pub text: String,
    clip: tokio::task::JoinHandle<Result<Clip, TtsError>>,
}

#[derive(Debug)]
enum Speech {
    Text(String),
    Rendered(tokio::task::JoinHandle<Result<Clip, TtsError>>),
}

/// One call's speaker: the controller's `Say`s, in order.
#[derive(Debug, Clone)]
pub struct Voice {
    tx: mpsc::UnboundedSender<(u64, Speech, u64)>,
    generation: Arc<AtomicU64>,
}

impl Voice {
    pub fn say(&self, id: u64, text: String) {
        let generation = self.generation.load(Ordering::Acquire);
        let _ = self.tx.send((id, Speech::Text(text), generation));
    }

    /// Say what [`AssistantPlane::prepare`] has been rendering, in turn with the rest.
    pub fn say_rendered(&self, id: u64, rendering: Rendering) {
        let generation = self.generation.load(Ordering::Acquire);
        let _ = self
            .tx
            .send((id, Speech::Rendered(rendering.clip), generation));
    }

    /// The caller barged in: prompts still being rendered are dropped.
    pub fn interrupt(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
