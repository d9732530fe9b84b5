//! `[media]`: RTP ports, codecs, timeouts, jitter buffer, and the audio every caller hears.

use super::{ConfigError, Ctx, millis, secs_or_never};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;
use warmline_signaling::{CodecName, SrtpMode};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    #[serde(deserialize_with = "port_range")]
    pub rtp_port_range: (u16, u16),
    pub codecs: Vec<CodecName>,
    /// SRTP (RFC 4568 SDES keys): `off`, `optional` (encrypt when the peer offers or
    /// answers `a=crypto`) or `required`.
    pub srtp: SrtpMode,
    /// No RTP for this long (while the peer should send) ends the call; `None` = never.
    #[serde(rename = "rtp_timeout_s", deserialize_with = "secs_or_never")]
    pub rtp_timeout: Option<Duration>,
    /// The same on hold, where the peer's RTCP counts too (Asterisk's `rtpholdtimeout`).
    #[serde(rename = "hold_timeout_s", deserialize_with = "secs_or_never")]
    pub hold_timeout: Option<Duration>,
    /// On hold, after this long without RTP or RTCP (and again after each as long), the
    /// peer is asked with an in-dialog OPTIONS whether it is still there; no answer, 481 or
    /// 408 ends the call. `None` (0) = never.
    #[serde(rename = "hold_probe_s", deserialize_with = "secs_or_never")]
    pub hold_probe: Option<Duration>,
    #[serde(rename = "jitter_min_ms", deserialize_with = "millis")]
    pub jitter_min: Duration,
    #[serde(rename = "jitter_max_ms", deserialize_with = "millis")]
    pub jitter_max: Duration,
    /// Played to every caller the assistant answers.
    pub greeting: Option<PathBuf>,
    /// Looped while a party is on hold; a built-in comfort tone when unset.
    pub hold_music: Option<PathBuf>,
    /// The caller's speech cuts the greeting (it carries the AI disclosure: off).
    pub greeting_barge_in: bool,
    /// Write each leg's inbound audio to `record_dir/<call>-<leg>.wav`.
    pub record: bool,
    pub record_dir: PathBuf,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            rtp_port_range: (20000, 29999),
            codecs: vec![
                CodecName::Pcmu,
                CodecName::Pcma,
                CodecName::G722,
                CodecName::Opus,
            ],
            srtp: SrtpMode::Optional,
            rtp_timeout: Some(Duration::from_secs(30)),
            // Long: a caller waiting on hold for an agent sends no RTP, and many phones no
            // RTCP either; this ends what nobody will ever come back to.
            hold_timeout: Some(Duration::from_secs(300)),
            // A vanished peer is found within a minute and a half (the OPTIONS gets no
            // answer for 64 x T1), not five minutes.
            hold_probe: Some(Duration::from_secs(60)),
            jitter_min: Duration::from_millis(20),
            jitter_max: Duration::from_millis(200),
            greeting: None,
            hold_music: None,
            greeting_barge_in: false,
            record: false,
            record_dir: "recordings".into(),
        }
    }
}

impl MediaConfig {
    /// The PCM rates legs will play at, one per configured codec's rate, in preference
    /// order: audio every caller hears is converted to these once, at start-up.
    pub fn leg_rates(&self) -> Vec<u32> {
        let mut rates = Vec::new();
        for &c in &self.codecs {
            let r = warmline_media::codec::pcm_rate(c);
            if !rates.contains(&r) {
                rates.push(r);
            }
        }
        rates
    }

    /// Checks what serde cannot, and resolves the files against the config's directory.
    pub(super) fn validate(&mut self, cx: &Ctx) -> Result<(), ConfigError> {
        if self.codecs.is_empty() {
            return Err(cx.err("media.codecs", "at least one codec is needed".into()));
        }
        if self.jitter_min < Duration::from_millis(20)
            || self.jitter_max > Duration::from_millis(1000)
            || self.jitter_min > self.jitter_max
        {
            return Err(cx.err(
                "media.jitter_min_ms",
                "jitter_min_ms must be at least 20 and at most jitter_max_ms (itself at most 1000)"
                    .into(),
            ));
        }
        for (key, file) in [
            ("media.greeting", &mut self.greeting),
            ("media.hold_music", &mut self.hold_music),
        ] {
            let Some(f) = file else { continue };
            *f = cx.resolve(f);
            std::fs::File::open(&*f)
                .map_err(|e| cx.err(key, format!("cannot open {}: {e}", f.display())))
                .and_then(|file| {
                    warmline_media::wav::read_clip(std::io::BufReader::new(file))
                        .map(|_| ())
                        .map_err(|e| cx.err(key, format!("{}: {e}", f.display())))
                })?;
        }
        self.record_dir = cx.resolve(&self.record_dir);
        Ok(())
    }
}

/// `[low, high]`: two ports above the privileged ones, low first.
fn port_range<'de, D: Deserializer<'de>>(d: D) -> Result<(u16, u16), D::Error> {
    let [lo, hi] = <[u32; 2]>::deserialize(d)?;
    match (u16::try_from(lo), u16::try_from(hi)) {
        (Ok(l), Ok(h)) if l >= 1024 && l < h => Ok((l, h)),
        _ => Err(serde::de::Error::custom(format!(
            "[{lo}, {hi}] must be two ports, 1024..=65535, low < high"
        ))),
    }
}
