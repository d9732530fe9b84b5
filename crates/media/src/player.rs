//! Playout to one leg: a queue of PCM clips (prompt WAVs, TTS), paced one 20 ms frame per
//! tick, interruptible (barge-in), plus an optional looping clip (hold audio) that plays
//! whenever the queue is empty.

use crate::resample::Resampler;
use std::collections::VecDeque;
use std::sync::Arc;

/// Mono 16-bit PCM at `rate`, shared between calls (prompts are loaded once).
#[derive(Debug, Clone)]
pub struct Clip {
    pub rate: u32,
    pub pcm: Arc<[i16]>,
}

impl Clip {
    pub fn new(rate: u32, pcm: Vec<i16>) -> Self {
        Self {
            rate,
            pcm: pcm.into(),
        }
    }

    pub fn duration_ms(&self) -> u64 {
        self.pcm.len() as u64 * 1000 / u64::from(self.rate.max(1))
    }
}

/// A clip finished or was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub id: u64,
    pub interrupted: bool,
}

#[derive(Debug)]
struct Playing {
    id: u64,
    clip: Clip,
    pos: usize,
    resampler: Option<Resampler>,
}

#[derive(Debug, Default)]
pub struct Player {
    queue: VecDeque<(u64, Clip)>,
    current: Option<Playing>,
    looping: Option<Playing>,
    /// Resampled samples not yet sent.
    pending: Vec<i16>,
    finished: Vec<Finished>,
}

impl Player {
    pub fn enqueue(&mut self, id: u64, clip: Clip) {
        self.queue.push_back((id, clip));
    }

    /// Loop `clip` whenever nothing is queued; `None` stops the loop.
    pub fn set_loop(&mut self, clip: Option<Clip>) {
        self.looping = clip.map(|clip| Playing {
            id: 0,
            clip,
            pos: 0,
            resampler: None,
        });
        if self.current.is_none() {
            self.pending.clear();
        }
    }

    pub fn is_looping(&self) -> bool {
        self.looping.is_some()
    }

    /// Something will sound on the next frame.
    pub fn is_active(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty() || self.looping.is_some()
    }

    /// Barge-in: cut the clip playing and drop the queue. The loop stays.
    pub fn stop(&mut self) {
        if let Some(p) = self.current.take() {
            self.finished.push(Finished {
                id: p.id,
                interrupted: true,
            });
        }
        for (id, _) in self.queue.drain(..) {
            self.finished.push(Finished {
                id,
                interrupted: true,
            });
        }
        self.pending.clear();
    }

    pub fn take_finished(&mut self) -> impl Iterator<Item = Finished> + '_ {
        self.finished.drain(..)
    }

    /// The next `n` samples at `rate`, or `None` when nothing plays. The last frame of
    /// a clip is padded with silence.
    pub fn next_frame(&mut self, rate: u32, n: usize) -> Option<Vec<i16>> {
        if !self.is_active() && self.pending.is_empty() {
            return None;
        }
        while self.pending.len() < n {
            if self.current.is_none() {
                if let Some((id, clip)) = self.queue.pop_front() {
                    self.current = Some(Playing {
                        id,
                        clip,
                        pos: 0,
                        resampler: None,
                    });
                }
            }
            let from_queue = self.current.is_some();
            let Some(p) = self.current.as_mut().or(self.looping.as_mut()) else {
                break;
            };
            if p.pos >= p.clip.pcm.len() {
                if from_queue {
                    let id = p.id;
                    self.current = None;
                    self.finished.push(Finished {
                        id,
                        interrupted: false,
                    });
                    // A clip ends on a frame boundary so the next starts cleanly.
                    if !self.pending.is_empty() {
                        break;
                    }
                    continue;
                }
                p.pos = 0;
                if p.clip.pcm.is_empty() {
                    break;
                }
            }
            // Feed at most a frame's worth of source per step.
            let step = (p.clip.rate as usize / 50).max(1);
            let end = (p.pos + step).min(p.clip.pcm.len());
            let chunk = &p.clip.pcm[p.pos..end];
            p.pos = end;
            if p.clip.rate == rate {
                self.pending.extend_from_slice(chunk);
            } else {
                let r = p
                    .resampler
                    .get_or_insert_with(|| Resampler::new(p.clip.rate, rate));
                r.process(chunk, &mut self.pending);
            }
        }
        if self.pending.is_empty() {
            return None;
        }
        let take = n.min(self.pending.len());
        let mut frame: Vec<i16> = self.pending.drain(..take).collect();
        frame.resize(n, 0);
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plays_queue_in_order_then_reports_completion() {
        let mut p = Player::default();
        p.enqueue(1, Clip::new(8000, vec![1; 400]));
        p.enqueue(2, Clip::new(8000, vec![2; 160]));
        let f1 = p.next_frame(8000, 160).unwrap();
        assert!(f1.iter().all(|&s| s == 1));
        p.next_frame(8000, 160).unwrap();
        let f3 = p.next_frame(8000, 160).unwrap();
        // 80 samples of clip 1, padded: clip 2 starts on the next frame.
        assert!(f3[..80].iter().all(|&s| s == 1));
        assert!(f3[80..].iter().all(|&s| s == 0));
        let done: Vec<_> = p.take_finished().collect();
        assert_eq!(
            done,
            vec![Finished {
                id: 1,
                interrupted: false
            }]
        );
        assert!(p.next_frame(8000, 160).unwrap().iter().all(|&s| s == 2));
        assert!(p.next_frame(8000, 160).is_none());
        assert_eq!(p.take_finished().count(), 1);
    }

    #[test]
    fn stop_interrupts_and_loop_resumes() {
        let mut p = Player::default();
        p.set_loop(Some(Clip::new(8000, vec![7; 100])));
        p.enqueue(5, Clip::new(8000, vec![1; 8000]));
        assert!(p.next_frame(8000, 160).unwrap().iter().all(|&s| s == 1));
        p.stop();
        assert_eq!(
            p.take_finished().collect::<Vec<_>>(),
            vec![Finished {
                id: 5,
                interrupted: true
            }]
        );
        for _ in 0..10 {
            assert!(p.next_frame(8000, 160).unwrap().iter().all(|&s| s == 7));
        }
        p.set_loop(None);
        assert!(p.next_frame(8000, 160).is_none());
    }

    #[test]
    fn resamples_clip_to_leg_rate() {
        let mut p = Player::default();
        p.enqueue(1, Clip::new(16000, vec![1000; 16000]));
        let mut n = 0;
        while let Some(f) = p.next_frame(8000, 160) {
            assert_eq!(f.len(), 160);
            n += 1;
        }
        assert!((49..=51).contains(&n), "{n} frames");
    }
}
