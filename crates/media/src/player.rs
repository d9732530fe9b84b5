//! Playout to one leg: a queue of PCM clips (prompt WAVs, TTS), paced one 20 ms frame per
//! tick, interruptible (barge-in), plus an optional looping clip (hold audio) that plays
//! whenever the queue is empty.

use crate::resample::Resampler;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Mono 16-bit PCM at `rate`, shared between calls (prompts are loaded once).
///
/// Clones share the clip's conversions to other rates ([`Clip::prepare`]): audio every
/// caller hears (the greeting, hold audio, a cached prompt) is resampled once per leg rate
/// for the whole process, not once per call on the media path.
#[derive(Debug, Clone)]
pub struct Clip {
    pub rate: u32,
    pub pcm: Arc<[i16]>,
    converted: Arc<Mutex<Conversions>>,
}

/// A clip's samples at other rates, by rate (a gateway plays at two or three).
type Conversions = Vec<(u32, Arc<[i16]>)>;

impl Clip {
    pub fn new(rate: u32, pcm: Vec<i16>) -> Self {
        Self {
            rate,
            pcm: pcm.into(),
            converted: Arc::default(),
        }
    }

    /// The clip at `rate`, converted now unless it already was. Blocking work (a few ms for
    /// a long prompt): call it where that is harmless (start-up, a TTS render thread), so
    /// that the media path finds it ready.
    pub fn prepare(&self, rate: u32) -> Arc<[i16]> {
        if let Some(pcm) = self.prepared(rate) {
            return pcm;
        }
        let pcm: Arc<[i16]> = Resampler::convert(self.rate, rate, &self.pcm).into();
        let mut converted = self.converted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, done)) = converted.iter().find(|(r, _)| *r == rate) {
            return done.clone();
        }
        converted.push((rate, pcm.clone()));
        pcm
    }

    /// The clip at `rate` if it is there already: itself, or a conversion made by
    /// [`Clip::prepare`].
    pub fn prepared(&self, rate: u32) -> Option<Arc<[i16]>> {
        if rate == self.rate {
            return Some(self.pcm.clone());
        }
        let converted = self.converted.lock().unwrap_or_else(|e| e.into_inner());
        converted
            .iter()
            .find(|(r, _)| *r == rate)
            .map(|(_, pcm)| pcm.clone())
    }

    /// Bytes held: the clip and its conversions.
    pub fn bytes(&self) -> usize {
        let converted = self.converted.lock().unwrap_or_else(|e| e.into_inner());
        (self.pcm.len() + converted.iter().map(|(_, p)| p.len()).sum::<usize>())
            * std::mem::size_of::<i16>()
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
    /// Where the next sample comes from, chosen when the clip (re)starts.
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// Not started: the rate is known only at the first frame.
    Start,
    /// A conversion made ahead ([`Clip::prepare`]), or the clip itself, at `rate`: copied.
    Ready {
        rate: u32,
        pcm: Arc<[i16]>,
        pos: usize,
    },
    /// Converted as it plays (a one-off clip at a rate nobody prepared); `pos` counts the
    /// clip's own samples.
    Streaming { resampler: Resampler, pos: usize },
}

impl Playing {
    fn new(id: u64, clip: Clip) -> Self {
        Self {
            id,
            clip,
            source: Source::Start,
        }
    }

    /// Append up to a frame's worth of audio at `rate` to `out`; false at the clip's end.
    fn feed(&mut self, rate: u32, out: &mut Vec<i16>) -> bool {
        if let Source::Ready { rate: r, pos, .. } = self.source
            && r != rate
        {
            // The leg changed codec mid-clip: carry on from the same moment, converting.
            let at = (pos as u64 * u64::from(self.clip.rate) / u64::from(r.max(1))) as usize;
            self.source = Source::Streaming {
                resampler: Resampler::new(self.clip.rate, rate),
                pos: at,
            };
        }
        if let Source::Start = self.source {
            self.source = match self.clip.prepared(rate) {
                Some(pcm) => Source::Ready { rate, pcm, pos: 0 },
                None => Source::Streaming {
                    resampler: Resampler::new(self.clip.rate, rate),
                    pos: 0,
                },
            };
        }
        match &mut self.source {
            Source::Start => false,
            Source::Ready { pcm, pos, .. } => {
                let end = (*pos + (rate as usize / 50).max(1)).min(pcm.len());
                out.extend_from_slice(&pcm[*pos..end]);
                let more = end > *pos;
                *pos = end;
                more
            }
            Source::Streaming { resampler, pos } => {
                let step = (self.clip.rate as usize / 50).max(1);
                let end = (*pos + step).min(self.clip.pcm.len());
                resampler.process(&self.clip.pcm[*pos..end], out);
                let more = end > *pos;
                *pos = end;
                more
            }
        }
    }
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
        self.looping = clip.map(|clip| Playing::new(0, clip));
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
            if self.current.is_none()
                && let Some((id, clip)) = self.queue.pop_front()
            {
                self.current = Some(Playing::new(id, clip));
            }
            let from_queue = self.current.is_some();
            let Some(p) = self.current.as_mut().or(self.looping.as_mut()) else {
                break;
            };
            if p.feed(rate, &mut self.pending) {
                continue;
            }
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
            // The loop starts over; an empty one would spin.
            if p.clip.pcm.is_empty() {
                break;
            }
            p.source = Source::Start;
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

    #[test]
    fn a_prepared_clip_is_converted_once_and_played_as_prepared() {
        let tone: Vec<i16> = (0..16000)
            .map(|i| ((i as f64 * 0.2).sin() * 8000.0) as i16)
            .collect();
        let clip = Clip::new(16000, tone);
        let shared = clip.clone();
        let at8k = clip.prepare(8000);
        // Every clone sees the one conversion; asking again converts nothing.
        assert!(Arc::ptr_eq(&at8k, &shared.prepared(8000).unwrap()));
        assert!(Arc::ptr_eq(&at8k, &shared.prepare(8000)));
        assert!(shared.prepared(48000).is_none());
        assert_eq!(clip.bytes(), (16000 + 8000) * 2);

        let mut p = Player::default();
        p.enqueue(1, shared);
        let mut played = Vec::new();
        while let Some(f) = p.next_frame(8000, 160) {
            played.extend(f);
        }
        assert_eq!(played, at8k.to_vec());
    }

    #[test]
    fn a_codec_change_mid_clip_carries_on_from_the_same_moment() {
        let clip = Clip::new(8000, vec![500; 8000]);
        let mut p = Player::default();
        p.enqueue(1, clip);
        for _ in 0..25 {
            assert!(p.next_frame(8000, 160).is_some());
        }
        // Half the clip played at 8 kHz; the rest comes at 48 kHz, converted as it plays.
        let mut frames = 0;
        while let Some(f) = p.next_frame(48000, 960) {
            assert_eq!(f.len(), 960);
            frames += 1;
        }
        assert!((24..=26).contains(&frames), "{frames} frames");
    }
}
