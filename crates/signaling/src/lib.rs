//! Sans-IO SIP pieces that rsipstack leaves to the application.
//!
//! rsipstack owns transport, transactions and dialogs. What it does not decide — and what a
//! gateway must decide the same way every time, testably, without sockets — lives here:
//!
//! - [`sdp`]: SDP offer/answer for one audio stream (RFC 3264, hold per RFC 6337);
//! - [`sdes`]: SRTP keys in SDP (RFC 4568 `a=crypto`) and the `[media] srtp` policy;
//! - [`admission`]: whether a new INVITE may become a call (`allow_from`, `max_calls`, drain);
//! - [`triage`]: a cheap structural check of every inbound datagram, so a malformed request
//!   gets a `400`/`505`/`513` instead of vanishing inside the parser, and the stateless
//!   refusal of new INVITEs at a full gateway.
//!
//! - [`pike`]: per-source request rate limits with a ban (Kamailio's pike, sans-IO).
//! - [`extensions`]: the option tags we support, and the `Require` tags we must refuse (420).
//! - [`session_timer`]: RFC 4028 session timers: the headers, our answer (or 422), and
//!   when a running session is refreshed or given up.
//! - [`registration`]: registering to a trunk: when each REGISTER goes out, what its answer
//!   means, back-off on failure, the un-REGISTER on drain.
//!
//! [`mutate`] is the byte mutator the workspace's parser fuzz tests share.

pub mod admission;
pub mod extensions;
#[doc(hidden)]
pub mod mutate;
pub mod pike;
pub mod registration;
pub mod sdes;
pub mod sdp;
pub mod session_timer;
pub mod triage;

pub use admission::{Admission, Verdict};
pub use pike::{Pike, PikeSettings, PikeVerdict};
pub use sdes::{SrtpKey, SrtpMode, SrtpParams, SrtpSuite};
pub use sdp::{
    Codec, CodecName, Direction, LocalMedia, Negotiated, NegotiationError, SdpSession,
    TelephoneEvent,
};
pub use triage::{
    Triage, answer_options, answer_stray_request, answer_unknown_bye, refuse_new_invite, triage,
    triage_truncated,
};
