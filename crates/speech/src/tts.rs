//! Text to speech. The `espeak-ng` command line (`--stdout` gives a WAV), not the library:
//! linking libespeak-ng would make the binary GPL-3. Output is cached per voice and text,
//! so prompts that never change cost one synthesis per process.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::process::Command;
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
}

#[derive(Debug)]
pub struct EspeakTts {
    binary: PathBuf,
    /// Words per minute.
    speed: u32,
    cache: Mutex<HashMap<(String, String), Clip>>,
    capacity: usize,
}

impl EspeakTts {
    pub fn new() -> Self {
        Self {
            binary: PathBuf::from("espeak-ng"),
            speed: 165,
            cache: Mutex::new(HashMap::new()),
            capacity: 512,
        }
    }

    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl Default for EspeakTts {
    fn default() -> Self {
        Self::new()
    }
}

impl Tts for EspeakTts {
    fn synth(&self, text: &str, voice: &str) -> Result<Clip, TtsError> {
        let key = (voice.to_string(), text.to_string());
        if let Some(c) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(c);
        }
        let binary = self.binary.display().to_string();
        let out = Command::new(&self.binary)
            .args(["-v", voice, "-s", &self.speed.to_string(), "--stdout", "--"])
            .arg(text)
            .output()
            .map_err(|source| TtsError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(TtsError::Failed {
                binary,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let clip = clip_from_espeak(out.stdout)?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= self.capacity {
                c.clear();
            }
            c.insert(key, clip.clone());
        }
        Ok(clip)
    }
}
