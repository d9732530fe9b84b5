//! Audio codecs of a leg: G.711 by hand ([`crate::g711`]), Opus through `audiopus` (libopus),
//! G.722 through `audio-codec` (a pure-Rust port of spandsp's G.722, the implementation
//! Asterisk, FreeSWITCH and baresip use). Every decoder yields 20 ms of 16-bit mono PCM at
//! the codec's PCM rate, which for G.722 (16 kHz) is not its RTP clock (8 kHz).

use crate::g711;
use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder as _, Encoder as _};
use audiopus::coder::{Decoder as OpusDecoder, Encoder as OpusEncoder};
use audiopus::{Application, Channels, SampleRate};
use warmline_signaling::CodecName;

/// Frames are 20 ms everywhere on the media path.
pub const FRAME_MS: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("opus: {0}")]
    Opus(#[from] audiopus::Error),
}

/// PCM rate we decode a codec to. Opus runs at its RTP clock of 48 kHz so that a
/// same-codec relay and a transcode agree on timestamps.
pub fn pcm_rate(codec: CodecName) -> u32 {
    match codec {
        CodecName::Pcmu | CodecName::Pcma => 8000,
        CodecName::Opus => 48000,
        CodecName::G722 => 16000,
    }
}

/// Samples in one 20 ms frame at `rate`.
pub fn frame_samples(rate: u32) -> usize {
    (rate / (1000 / FRAME_MS)) as usize
}

pub enum Decoder {
    Pcmu,
    Pcma,
    Opus(Box<OpusDecoder>),
    G722(Box<G722Decoder>),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Pcmu => "Decoder::Pcmu",
            Decoder::Pcma => "Decoder::Pcma",
            Decoder::Opus(_) => "Decoder::Opus",
            Decoder::G722(_) => "Decoder::G722",
        })
    }
}

impl Decoder {
    pub fn new(codec: CodecName) -> Result<Self, CodecError> {
        Ok(match codec {
            CodecName::Pcmu => Decoder::Pcmu,
            CodecName::Pcma => Decoder::Pcma,
            CodecName::Opus => Decoder::Opus(Box::new(OpusDecoder::new(
                SampleRate::Hz48000,
                Channels::Mono,
            )?)),
            CodecName::G722 => Decoder::G722(Box::default()),
        })
    }

    /// Decode one payload, appending PCM to `out`. A corrupt Opus payload yields a
    /// concealed frame rather than an error: one bad packet must not silence a call.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        match self {
            Decoder::Pcmu => g711::ulaw_decode_frame(payload, out),
            Decoder::Pcma => g711::alaw_decode_frame(payload, out),
            Decoder::Opus(d) => {
                let start = out.len();
                // 120 ms is the longest Opus packet.
                out.resize(start + 5760, 0);
                match d.decode(Some(payload), &mut out[start..], false) {
                    Ok(n) => out.truncate(start + n),
                    Err(_) => {
                        out.truncate(start);
                        self.conceal(frame_samples(48000), out);
                    }
                }
            }
            Decoder::G722(d) => {
                let start = out.len();
                out.resize(start + d.max_decode_samples(payload.len()), 0);
                // Every byte decodes (no framing to corrupt): an error can only be a short
                // buffer, which max_decode_samples rules out.
                let n = d.decode_into(payload, &mut out[start..]).unwrap_or(0);
                out.truncate(start + n);
            }
        }
    }

    /// Fill one lost frame: Opus has real packet-loss concealment; for G.711 we repeat
    /// nothing and fade to silence, which is what G.711 Appendix I approximates cheaply.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        match self {
            Decoder::Opus(d) => {
                let start = out.len();
                out.resize(start + samples, 0);
                match d.decode(None::<&[u8]>, &mut out[start..], false) {
                    Ok(n) => out.truncate(start + n.min(samples)),
                    Err(_) => out.truncate(start),
                }
                out.resize(start + samples, 0);
            }
            _ => out.resize(out.len() + samples, 0),
        }
    }
}

pub enum Encoder {
    Pcmu,
    Pcma,
    Opus(Box<OpusEncoder>),
    G722(Box<G722Encoder>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Pcmu => "Encoder::Pcmu",
            Encoder::Pcma => "Encoder::Pcma",
            Encoder::Opus(_) => "Encoder::Opus",
            Encoder::G722(_) => "Encoder::G722",
        })
    }
}

impl Encoder {
    pub fn new(codec: CodecName) -> Result<Self, CodecError> {
        Ok(match codec {
            CodecName::Pcmu => Encoder::Pcmu,
            CodecName::Pcma => Encoder::Pcma,
            CodecName::Opus => {
                let e = OpusEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
                Encoder::Opus(Box::new(e))
            }
            CodecName::G722 => Encoder::G722(Box::default()),
        })
    }

    /// Encode one 20 ms frame at the codec's PCM rate, appending the payload to `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            Encoder::Pcmu => g711::ulaw_encode_frame(pcm, out),
            Encoder::Pcma => g711::alaw_encode_frame(pcm, out),
            Encoder::Opus(e) => {
                let start = out.len();
                out.resize(start + 1500, 0);
                let n = e.encode(pcm, &mut out[start..])?;
                out.truncate(start + n);
            }
            Encoder::G722(e) => {
                let start = out.len();
                out.resize(start + e.max_encode_bytes(pcm.len()), 0);
                let n = e.encode_into(pcm, &mut out[start..]).unwrap_or(0);
                out.truncate(start + n);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_round_trip_keeps_a_tone() {
        let mut enc = Encoder::new(CodecName::Opus).unwrap();
        let mut dec = Decoder::new(CodecName::Opus).unwrap();
        let mut energy_in = 0.0;
        let mut energy_out = 0.0;
        for f in 0..50 {
            let pcm: Vec<i16> = (0..960)
                .map(|i| {
                    let t = (f * 960 + i) as f64 / 48000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let mut payload = Vec::new();
            enc.encode(&pcm, &mut payload).unwrap();
            assert!(payload.len() < 400);
            let mut out = Vec::new();
            dec.decode(&payload, &mut out);
            assert_eq!(out.len(), 960);
            if f > 5 {
                energy_in += pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
                energy_out += out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
            }
        }
        let ratio = energy_out / energy_in;
        assert!((0.5..2.0).contains(&ratio), "energy ratio {ratio}");
    }

    fn tone(f: usize, n: usize, rate: f64, hz: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (f * n + i) as f64 / rate;
                (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    /// G.722 carries what G.711 cannot: a 6 kHz tone survives the round trip at 16 kHz,
    /// 320 samples in 160 bytes a frame, and comes out as the same tone (delayed by the
    /// codec's QMF pair).
    #[test]
    fn g722_round_trip_keeps_wideband_audio() {
        let mut enc = Encoder::new(CodecName::G722).unwrap();
        let mut dec = Decoder::new(CodecName::G722).unwrap();
        let (mut input, mut output) = (Vec::new(), Vec::new());
        for f in 0..50 {
            let pcm = tone(f, 320, 16000.0, 6000.0);
            let mut payload = Vec::new();
            enc.encode(&pcm, &mut payload).unwrap();
            assert_eq!(payload.len(), 160);
            let mut out = Vec::new();
            dec.decode(&payload, &mut out);
            assert_eq!(out.len(), 320);
            input.extend(pcm);
            output.extend(out);
        }
        let norm = |v: &[i16]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        let a = &input[3200..15000];
        // The QMF pair delays the signal by a few tens of samples: take the best alignment.
        let (corr, b) = (0..64)
            .map(|d| {
                let b = &output[3200 + d..15000 + d];
                let dot: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(&x, &y)| f64::from(x) * f64::from(y))
                    .sum();
                (dot / (norm(a) * norm(b)), b)
            })
            .fold((f64::MIN, a), |best, c| if c.0 > best.0 { c } else { best });
        assert!(corr > 0.95, "6 kHz tone correlation {corr}");
        let ratio = (norm(b) / norm(a)).powi(2);
        assert!((0.7..1.3).contains(&ratio), "energy ratio {ratio}");
    }

    #[test]
    fn corrupt_opus_is_concealed_not_fatal() {
        let mut dec = Decoder::new(CodecName::Opus).unwrap();
        let mut out = Vec::new();
        dec.decode(&[0xff, 0xff, 0xff], &mut out);
        assert_eq!(out.len(), 960);
    }
}
