//! warmline's media plane, sans-IO: RTP legs (webrtc-rs `rtp`/`rtcp`), codecs (G.711 by
//! hand, Opus via libopus), RFC 4733 DTMF, an adaptive jitter buffer, playout with barge-in
//! and hold audio, and the two-leg bridge that relays or transcodes.
//!
//! Nothing here touches a socket or reads a clock: the driver in the binary feeds
//! datagrams and the time into a [`Session`] and sends what it hands back.

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod leg;
pub mod player;
pub mod resample;
pub mod session;
pub mod wav;

pub use jitter::JitterSettings;
pub use leg::{LegMedia, LegOptions, LegStats};
pub use player::Clip;
pub use session::{LegId, LegSetup, MediaEvent, Output, Session, Transmit};
