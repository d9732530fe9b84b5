//! Text to speech. The `espeak-ng` command line (`--stdout` gives a WAV), not the library:
//! linking libespeak-ng would make the binary GPL-3. Output is cached per voice and text,
//! bounded in bytes, so prompts that never change cost one synthesis per process.

use rustix::process::{Pid, setpriority_process};
use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use warmline_media::Clip;

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("{binary} could not run: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("{binary} failed: {stderr}")]
    Failed { binary: String, stderr: String },
    #[error("synthesised audio unusable: {0}")]
    Audio(#[from] warmline_media::wav::WavError),
    /// The thread rendering it was lost (a panic, or the runtime shutting down).
    #[error("rendering stopped: {0}")]
    Stopped(String),
}

/// espeak-ng's `--stdout` WAV as a clip. espeak-ng streams its WAV with unknown lengths in
/// the header; hound wants real ones, so they are patched from what arrived.
pub fn clip_from_espeak(mut wav: Vec<u8>) -> Result<Clip, TtsError> {
    if wav.len() >= 44 && &wav[0..4] == b"RIFF" {
        let riff = (wav.len() - 8) as u32;
        wav[4..8].copy_from_slice(&riff.to_le_bytes());
        let data = (wav.len() - 44) as u32;
        wav[40..44].copy_from_slice(&data.to_le_bytes());
    }
    Ok(warmline_media::wav::read_clip(Cursor::new(wav))?)
}

pub trait Tts: Send + Sync {
    /// Speech for `text` in `voice`, mono at the engine's rate (the player resamples it to
    /// each leg's rate).
    fn synth(&self, text: &str, voice: &str) -> Result<Clip, TtsError>;

    /// The clip for `text`, if it is already rendered: asked before `synth`, so that a
    /// prompt said on every call costs no thread.
    fn rendered(&self, _text: &str, _voice: &str) -> Option<Clip> {
        None
    }
}

/// Rendered clips by voice and text, least recently used out first, bounded in bytes: a
/// prompt said on every call stays, while one-off speech (each caller's briefing, a brain's
/// replies) passes through without piling up.
#[derive(Debug)]
pub struct ClipCache {
    budget: usize,
    bytes: usize,
    /// Use counter: the clock for "least recently used".
    uses: u64,
    clips: HashMap<(String, String), (Clip, u64)>,
}

impl ClipCache {
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget: budget_bytes,
            bytes: 0,
            uses: 0,
            clips: HashMap::new(),
        }
    }

    fn size(clip: &Clip) -> usize {
        clip.bytes()
    }

    pub fn get(&mut self, voice: &str, text: &str) -> Option<Clip> {
        self.uses += 1;
        let uses = self.uses;
        // The key is owned; building it costs less than the synthesis a hit saves.
        let entry = self.clips.get_mut(&(voice.to_string(), text.to_string()))?;
        entry.1 = uses;
        Some(entry.0.clone())
    }

    pub fn insert(&mut self, voice: &str, text: &str, clip: Clip) {
        let size = Self::size(&clip);
        if size > self.budget {
            return;
        }
        self.uses += 1;
        let key = (voice.to_string(), text.to_string());
        if let Some((old, _)) = self.clips.insert(key, (clip, self.uses)) {
            self.bytes -= Self::size(&old);
        }
        self.bytes += size;
        // Eviction scans the entries: a few hundred at most, on a TTS thread, next to a
        // synthesis that takes tens of milliseconds.
        while self.bytes > self.budget {
            let Some(oldest) = self
                .clips
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((gone, _)) = self.clips.remove(&oldest) {
                self.bytes -= Self::size(&gone);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.clips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Audio kept for reuse: about six minutes of espeak-ng's 22.05 kHz speech.
const CACHE_BUDGET: usize = 16 << 20;

/// TTS runs beside the SIP and media threads on the same cores; it is the one thing that
/// can wait, so espeak-ng runs at this niceness.
const RENDER_NICENESS: i32 = 10;

#[derive(Debug)]
pub struct EspeakTts {
    binary: PathBuf,
    /// Words per minute.
    speed: u32,
    cache: Mutex<ClipCache>,
    /// Leg rates each render is converted to on the render thread, so that the media path
    /// plays it without a resampler.
    rates: Vec<u32>,
}

impl EspeakTts {
    pub fn new() -> Self {
        Self {
            binary: PathBuf::from("espeak-ng"),
            speed: 165,
            cache: Mutex::new(ClipCache::new(CACHE_BUDGET)),
            rates: Vec::new(),
        }
    }

    /// Convert every render to these leg rates as it is made ([`Clip::prepare`]).
    pub fn prepared_at(mut self, rates: &[u32]) -> Self {
        self.rates = rates.to_vec();
        self
    }

    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Bytes of audio held in the cache.
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().map(|c| c.bytes()).unwrap_or(0)
    }
}

impl Default for EspeakTts {
    fn default() -> Self {
        Self::new()
    }
}

impl Tts for EspeakTts {
    fn rendered(&self, text: &str, voice: &str) -> Option<Clip> {
        self.cache.lock().ok().and_then(|mut c| c.get(voice, text))
    }

    fn synth(&self, text: &str, voice: &str) -> Result<Clip, TtsError> {
        if let Some(c) = self.rendered(text, voice) {
            return Ok(c);
        }
        let binary = self.binary.display().to_string();
        let spawn_error = |source| TtsError::Spawn {
            binary: binary.clone(),
            source,
        };
        let child = Command::new(&self.binary)
            .args(["-v", voice, "-s", &self.speed.to_string(), "--stdout", "--"])
            .arg(text)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        // Set from outside, just after the spawn (a pre_exec hook would need unsafe code):
        // the child has run for microseconds of its tens of milliseconds. A refusal (a
        // sandbox without the syscall) only leaves it at normal priority.
        let _ = setpriority_process(Some(Pid::from_child(&child)), RENDER_NICENESS);
        let out = child.wait_with_output().map_err(spawn_error)?;
        if !out.status.success() {
            return Err(TtsError::Failed {
                binary,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let clip = clip_from_espeak(out.stdout)?;
        for &rate in &self.rates {
            clip.prepare(rate);
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(voice, text, clip.clone());
        }
        Ok(clip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(samples: usize) -> Clip {
        Clip::new(22050, vec![1; samples])
    }

    #[test]
    fn the_cache_stays_in_its_budget_and_keeps_what_is_used() {
        // Room for three 1000-sample clips.
        let mut c = ClipCache::new(6000);
        c.insert("en", "greeting", clip(1000));
        c.insert("en", "briefing 1", clip(1000));
        c.insert("en", "briefing 2", clip(1000));
        assert_eq!((c.len(), c.bytes()), (3, 6000));
        // The greeting is said again, so the oldest briefing goes first.
        assert!(c.get("en", "greeting").is_some());
        c.insert("en", "briefing 3", clip(1000));
        assert_eq!((c.len(), c.bytes()), (3, 6000));
        assert!(c.get("en", "briefing 1").is_none());
        assert!(c.get("en", "greeting").is_some());
        // A clip bigger than the whole budget is not kept, and evicts nothing.
        c.insert("en", "a speech", clip(5000));
        assert_eq!(c.len(), 3);
        // Replacing a text's clip counts its size once.
        c.insert("en", "greeting", clip(500));
        assert_eq!(c.bytes(), 5000);
        // Voice is part of the key.
        assert!(c.get("fr", "greeting").is_none());
    }
}
