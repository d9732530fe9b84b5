//! Audio codecs of a leg: G.711 by hand ([`crate::g711`]), Opus through `audiopus` (libopus).
//! Every decoder yields 20 ms of 16-bit mono PCM at the codec's PCM rate.

use crate::g711;
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
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Pcmu => "Decoder::Pcmu",
            Decoder::Pcma => "Decoder::Pcma",
            Decoder::Opus(_) => "Decoder::Opus",
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
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Pcmu => "Encoder::Pcmu",
            Encoder::Pcma => "Encoder::Pcma",
            Encoder::Opus(_) => "Encoder::Opus",
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

    #[test]
    fn corrupt_opus_is_concealed_not_fatal() {
        let mut dec = Decoder::new(CodecName::Opus).unwrap();
        let mut out = Vec::new();
        dec.decode(&[0xff, 0xff, 0xff], &mut out);
        assert_eq!(out.len(), 960);
    }
}
