//! The call controller: one sans-IO state machine per call.
//!
//! It owns what a call *decides*: when to answer, the SDP offer/answer state, local and remote
//! hold, the re-INVITE glare dance (RFC 3261 §14.1), the ring timeout of an outbound call and
//! its typed outcome, and why the call ended. It never touches a socket or a clock: the driver
//! feeds [`CallEvent`]s with the current [`Instant`], drains [`CallAction`]s with
//! [`Controller::poll_action`], and sleeps until [`Controller::poll_timeout`].
//!
//! Later issues grow this same machine (bot turns, the warm transfer); the seams stay.

pub mod assistant;
mod controller;

pub use controller::MAX_TURNS;
pub use controller::{
    CallAction, CallConfig, CallEvent, CallSnapshot, Controller, EndReason, OriginateOutcome,
    Prompt, Role,
};
