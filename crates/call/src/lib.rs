//! The call controller: one sans-IO state machine per call.
//!
//! It owns what a call *decides*: when to answer, the SDP offer/answer state, local and remote
//! hold, the re-INVITE glare dance (RFC 3261 §14.1), the ring timeout of an outbound call and
//! its typed outcome, and why the call ended. It never touches a socket or a clock: the driver
//! feeds [`CallEvent`]s with the current [`Instant`], drains [`CallAction`]s with
//! [`Controller::poll_action`], and sleeps until [`Controller::poll_timeout`].
//!
//! On calls the assistant answers it also runs the dialogue: the greeting's disclosure, the
//! built-in [`assistant`] flow or an external [`brain`], the escalation policy over every
//! turn, and what a trigger leads to (a briefing, and a transfer or, out of hours, a
//! callback promise).

pub mod assistant;
pub mod audit;
pub mod brain;
mod call;
pub mod context;
mod controller;

pub use audit::Audit;
pub use call::{Call, CallSetup, Dial, Leg, ScreenPop, refusal_for};
pub use controller::MAX_TURNS;
pub use controller::{
    ACCEPT_WINDOW, CallAction, CallConfig, CallEvent, CallSnapshot, Controller, EndReason,
    HuntStrategy, Intent, OriginateOutcome, Prompt, Role, RoutePlan, TransferOutcome,
    TransferPhase,
};
