//! WAV prompts in, call recordings out, via `hound`. Any PCM or float WAV is accepted and
//! turned into a mono 16-bit [`Clip`]; the player resamples it to each leg's rate.

use crate::player::Clip;
use std::io::{Read, Seek, Write};

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("not a usable WAV file: {0}")]
    Format(#[from] hound::Error),
    #[error("WAV file has no audio")]
    Empty,
    #[error("unsupported WAV sample format: {0} bits")]
    Bits(u16),
}

pub fn read_clip<R: Read>(reader: R) -> Result<Clip, WavError> {
    let mut r = hound::WavReader::new(reader)?;
    let spec = r.spec();
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<i32> = match spec.sample_format {
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .map(|s| s.map(|v| (v.clamp(-1.0, 1.0) * 32767.0) as i32))
            .collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let shift = match spec.bits_per_sample {
                8 => -8,
                16 => 0,
                24 => 8,
                32 => 16,
                b => return Err(WavError::Bits(b)),
            };
            r.samples::<i32>()
                .map(|s| s.map(|v| if shift < 0 { v << -shift } else { v >> shift }))
                .collect::<Result<_, _>>()?
        }
    };
    if samples.is_empty() {
        return Err(WavError::Empty);
    }
    let mono = samples
        .chunks(channels)
        .map(|c| (c.iter().sum::<i32>() / c.len() as i32).clamp(-32768, 32767) as i16)
        .collect();
    Ok(Clip::new(spec.sample_rate, mono))
}

/// A mono 16-bit WAV being written frame by frame.
pub struct Recorder<W: Write + Seek> {
    writer: hound::WavWriter<W>,
}

impl<W: Write + Seek> std::fmt::Debug for Recorder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl<W: Write + Seek> Recorder<W> {
    pub fn new(out: W, rate: u32) -> Result<Self, WavError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        Ok(Self {
            writer: hound::WavWriter::new(out, spec)?,
        })
    }

    pub fn write(&mut self, pcm: &[i16]) -> Result<(), WavError> {
        let mut w = self.writer.get_i16_writer(pcm.len() as u32);
        for &s in pcm {
            w.write_sample(s);
        }
        w.flush()?;
        Ok(())
    }

    pub fn finish(self) -> Result<(), WavError> {
        self.writer.finalize()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn recorder_output_reads_back_as_a_clip() {
        let mut buf = Cursor::new(Vec::new());
        let mut rec = Recorder::new(&mut buf, 8000).unwrap();
        rec.write(&[1, 2, 3, -4]).unwrap();
        rec.write(&[5; 156]).unwrap();
        rec.finish().unwrap();
        buf.set_position(0);
        let clip = read_clip(buf).unwrap();
        assert_eq!(clip.rate, 8000);
        assert_eq!(clip.pcm.len(), 160);
        assert_eq!(&clip.pcm[..4], &[1, 2, 3, -4]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(read_clip(Cursor::new(b"RIFF....not a wav".to_vec())).is_err());
        assert!(read_clip(Cursor::new(Vec::new())).is_err());
    }
}
