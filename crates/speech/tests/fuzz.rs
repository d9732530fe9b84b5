//! Mutation fuzzing of the files warmline reads before whisper.cpp or the player sees
//! them: a ggml model (whisper.cpp aborts the process on some malformed ones, so
//! `ggml::validate` must refuse them first, and must itself never panic) and a WAV prompt.
//! Seeded and bounded; it runs in CI.

#![allow(clippy::unwrap_used)]

use warmline_signaling::mutate::{Mutator, executions, report};
use warmline_speech::ggml::{TinySpec, validate, validate_from, write_tiny_model};

#[test]
fn model_validation_survives_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.bin");
    write_tiny_model(&good, TinySpec::default()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    assert!(validate(&good).is_ok());
    let mut m = Mutator::new(0x5eed_0004);
    let (mut refused, mut accepted) = (0, 0);
    let n = executions(20_000);
    for _ in 0..n {
        // A 4 KiB window mutated (mostly where the parser reads first: hyperparameters,
        // vocabulary, the first tensor headers; sometimes anywhere), the rest of the file
        // as it was, sometimes cut short: read in place, without copying the model.
        let at = if m.below(4) == 0 {
            m.below(bytes.len())
        } else {
            0
        };
        let end = (at + 4096).min(bytes.len());
        let window = m.mutate(&bytes[at..end]);
        let mut after = &bytes[end..];
        if m.below(8) == 0 {
            after = &after[..m.below(after.len() + 1)];
        }
        let file = Spliced {
            parts: [&bytes[..at], &window, after],
            pos: 0,
        };
        let len = file.len();
        match validate_from(file, len, "mutated") {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(refused > n / 4, "{refused} refused, {accepted} accepted");
    report("ggml model header", n);
}

#[test]
fn wav_prompts_survive_mutated_files() {
    let mut wav = Vec::new();
    {
        let spec = pcm8k_mono();
        let mut w = WavBytes::new(&mut wav, spec);
        for i in 0..800i32 {
            w.sample((i * 37 % 2000 - 1000) as i16);
        }
    }
    assert!(warmline_media::wav::read_clip(std::io::Cursor::new(&wav)).is_ok());
    let mut m = Mutator::new(0x5eed_0005);
    let mut refused = 0;
    let n = executions(5000);
    for _ in 0..n {
        let b = m.mutate(&wav);
        if warmline_media::wav::read_clip(std::io::Cursor::new(&b)).is_err() {
            refused += 1;
        }
    }
    assert!(refused > n / 10, "{refused}");
    report("wav prompt", n);
}

/// 8 kHz mono 16-bit PCM.
fn pcm8k_mono() -> (u32, u16) {
    (8000, 1)
}

/// A minimal RIFF/WAVE writer (the crate's own reader is what is under test).
struct WavBytes<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> WavBytes<'a> {
    fn new(out: &'a mut Vec<u8>, (rate, channels): (u32, u16)) -> Self {
        out.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        out.extend_from_slice(&(2 * channels).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data\0\0\0\0");
        Self { out }
    }

    fn sample(&mut self, s: i16) {
        self.out.extend_from_slice(&s.to_le_bytes());
    }
}

impl Drop for WavBytes<'_> {
    fn drop(&mut self) {
        let len = self.out.len() as u32;
        self.out[4..8].copy_from_slice(&(len - 8).to_le_bytes());
        self.out[40..44].copy_from_slice(&(len - 44).to_le_bytes());
    }
}

/// Three byte slices read as one seekable file.
struct Spliced<'a> {
    parts: [&'a [u8]; 3],
    pos: u64,
}

impl Spliced<'_> {
    fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.len() as u64).sum()
    }
}

impl std::io::Read for Spliced<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut skip = self.pos;
        for part in self.parts {
            if skip < part.len() as u64 {
                let from = &part[skip as usize..];
                let n = from.len().min(buf.len());
                buf[..n].copy_from_slice(&from[..n]);
                self.pos += n as u64;
                return Ok(n);
            }
            skip -= part.len() as u64;
        }
        Ok(0)
    }
}

impl std::io::Seek for Spliced<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len().checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}
