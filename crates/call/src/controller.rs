//! [`Controller`]: states, events, actions and timers of one call.

mod conversation;
mod dialog;
mod packet;
mod transfer;

pub use transfer::{ACCEPT_WINDOW, TransferOutcome, TransferPhase};

use crate::assistant::{Assistant, AssistantConfig};
use crate::audit::{Audit, Reopening};
use crate::brain::{BrainReply, BrainRequest};
use crate::context::ContextPacket;
use conversation::{Conversation, Next};
use dialog::Dialog;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use transfer::{Ask, Transfer};
use warmline_policy::briefing::{Briefing, CallFacts, brief};
use warmline_policy::hours::Hours;
use warmline_policy::{Decision, Observation, Policy, RuleSet, Trigger, TriggerKind, decide};
use warmline_signaling::session_timer::{self, Agreed, Asked, Due, SessionTimer};
use warmline_signaling::{Direction, LocalMedia, Negotiated, NegotiationError};
use warmline_speech::TranscriptTurn;

/// How often time-based rules (`elapsed`) are checked.
const POLICY_TICK: Duration = Duration::from_secs(1);

/// Caller turns a controller keeps (the context packet needs the last 5–10).
pub const MAX_TURNS: usize = 50;

/// In which order a route's agents are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HuntStrategy {
    /// Always from the first target.
    Sequential,
    /// Each transfer starts one target further than the last, across every call: the
    /// position is the driver's, asked for with [`CallAction::AskRotation`] and given back
    /// as [`CallEvent::Rotation`].
    RoundRobin,
}

impl HuntStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            HuntStrategy::Sequential => "sequential",
            HuntStrategy::RoundRobin => "round_robin",
        }
    }
}

/// An agent group: its agents, how they are hunted, and its business hours.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub name: String,
    /// `None`: always open.
    pub hours: Option<Hours>,
    pub tz: jiff::tz::TimeZone,
    /// `sip:` URIs of the agents.
    pub targets: Vec<String>,
    pub strategy: HuntStrategy,
    pub ring_timeout: Duration,
    /// The agent presses 1 to take the call or 2 to pass it on, after the briefing.
    pub confirm: bool,
}

impl RoutePlan {
    /// A route nobody configured: no agents, always open (a transfer to it fails over to
    /// the apology and a callback).
    pub fn unstaffed(name: &str) -> Self {
        Self {
            name: name.into(),
            hours: None,
            tz: jiff::tz::TimeZone::UTC,
            targets: Vec::new(),
            strategy: HuntStrategy::Sequential,
            ring_timeout: Duration::from_secs(20),
            confirm: false,
        }
    }
}

/// The assistant's reading of what the caller wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub text: String,
    pub confidence: f32,
    /// `assistant` (the built-in flow heard the reason) or `brain`.
    pub source: String,
}

/// Which side created the dialog. It decides the glare back-off range (RFC 3261 §14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A caller reached us; the peer owns the Call-ID.
    Inbound,
    /// We placed the call; we own the Call-ID.
    Outbound,
}

/// Per-call settings the driver fills from config and randomness.
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub local_media: LocalMedia,
    /// Random `o=` session id.
    pub session_id: u64,
    /// Seed for the glare back-off; tests pin it.
    pub rng_seed: u64,
    /// Ring (180) this long before answering an inbound call; zero answers at once.
    pub answer_after: Duration,
    /// Give up on an outbound call that has not been answered after this long.
    pub ring_timeout: Duration,
    /// Inbound: ring until told [`CallEvent::AnswerNow`] (B2BUA: answer when the far
    /// end does) instead of answering after `answer_after`.
    pub answer_on_command: bool,
    /// Inbound: play the greeting prompt once answered.
    pub greeting: bool,
    /// Let the caller's speech cut the greeting. Off by default: the greeting carries the
    /// automated-assistant disclosure, which every caller should hear whole.
    pub greeting_barge_in: bool,
    /// Escalation rules to run over this call (empty = the defaults); `None` runs no policy
    /// (outbound legs, the no-AI bridge).
    pub rules: Option<RuleSet>,
    /// The caller's number or SIP user (From), and P-Asserted-Identity when present.
    pub caller_id: String,
    pub asserted_id: Option<String>,
    /// The From display name, when the caller sent one.
    pub caller_name: Option<String>,
    /// The built-in dialogue; `None` = no assistant turns (outbound legs, the bridge).
    pub assistant: Option<Assistant>,
    /// An external brain answers turns first (`CallAction::AskBrain`); the built-in
    /// dialogue is the fallback.
    pub brain: bool,
    /// A language model rewrites the agent's briefing (`CallAction::WriteBriefing`); the
    /// template briefing stands until its text arrives, and if it never does.
    pub llm_briefing: bool,
    /// Agent groups (a route not listed has no agents and is always open).
    pub routes: Arc<Vec<RoutePlan>>,
    /// The wall clock at one instant, so the controller can tell the local time from
    /// `now` without reading a clock. `None`: every route counts as open.
    pub wall_clock: Option<(Instant, jiff::Timestamp)>,
    /// The call's name (the caller's Call-ID) in the packets and brain requests it sends.
    pub call_id: String,
    /// The gateway's public HTTP base, for the links a context packet carries.
    pub public_url: String,
    /// Inbound: nobody can listen to this caller (the recognizer is at capacity), so once
    /// answered the call goes straight to the agents, its reason saying why.
    pub unheard: bool,
    /// The session timer the initial INVITE agreed (RFC 4028), started by our 2xx; the
    /// driver has already answered a too-small interval with 422.
    pub session_timer: Option<Agreed>,
    /// Our least session interval: a refresh asking for less is answered 422.
    pub min_se: u32,
}

impl CallConfig {
    /// A plain call on `local_media`: answered at once, no greeting, no policy, no
    /// assistant. Drivers and tests set what they need on top.
    pub fn new(local_media: LocalMedia) -> Self {
        Self {
            local_media,
            session_id: 1,
            rng_seed: 1,
            answer_after: Duration::ZERO,
            ring_timeout: Duration::from_secs(30),
            answer_on_command: false,
            greeting: false,
            greeting_barge_in: false,
            rules: None,
            caller_id: String::new(),
            asserted_id: None,
            caller_name: None,
            assistant: None,
            brain: false,
            llm_briefing: false,
            routes: Arc::new(Vec::new()),
            wall_clock: None,
            call_id: String::new(),
            public_url: String::new(),
            unheard: false,
            session_timer: None,
            min_se: session_timer::RFC_MIN_SE,
        }
    }
}

/// Prompts the controller asks the media plane to play, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// The greeting with the automated-assistant disclosure.
    Greeting,
}

/// What the driver tells the controller. Serde-tagged so the same vocabulary feeds logs,
/// the audit trail and the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CallEvent {
    /// An admitted initial INVITE; `sdp` is `None` for a delayed offer.
    Invite {
        sdp: Option<String>,
    },
    /// The ACK for our 2xx arrived (or the dialog came back to confirmed).
    Ack,
    /// The peer sent a re-INVITE or UPDATE; must be answered with `AnswerReOffer`.
    /// `timer`: what its session-timer headers say (a refresh, RFC 4028).
    ReOffer {
        #[serde(default, skip_serializing_if = "Asked::is_empty")]
        timer: Asked,
        sdp: Option<String>,
    },
    /// The peer refreshed the session without an offer (an UPDATE with no body): answered
    /// with `AnswerReOffer` and no SDP (RFC 3311, RFC 4028).
    Refresh {
        #[serde(default, skip_serializing_if = "Asked::is_empty")]
        timer: Asked,
    },
    /// Final response to our re-INVITE, and what its session-timer headers say.
    ReInviteResponse {
        #[serde(default, skip_serializing_if = "Asked::is_empty")]
        timer: Asked,
        status: u16,
        sdp: Option<String>,
    },
    PeerBye,
    /// The caller cancelled before we answered (the stack has already sent 487).
    PeerCancel,
    /// The dialog layer gave up (no ACK, transaction timeout, 481).
    DialogFailed {
        reason: String,
    },
    /// Outbound: a provisional response (180, 183).
    Progress {
        status: u16,
    },
    /// Outbound: 2xx to our INVITE, and what its session-timer headers say.
    Answered {
        #[serde(default, skip_serializing_if = "Asked::is_empty")]
        timer: Asked,
        sdp: Option<String>,
    },
    /// Outbound: a final non-2xx to our INVITE.
    Failed {
        status: u16,
    },
    /// Outbound: no response at all, or the target could not be resolved or reached.
    Unreachable {
        reason: String,
    },
    /// Local command: put the peer on hold (we keep sending, e.g. hold audio).
    Hold,
    /// Local command: take the peer off hold.
    Resume,
    /// Local command: end the call, whatever state it is in.
    Hangup,
    /// Local command: send these RFC 4733 digits to the peer.
    SendDtmf {
        digits: String,
    },
    /// The answer to [`CallAction::AskRotation`]: this transfer's turn in the route's
    /// rotation (a counter the driver keeps for every call; taken modulo the agents).
    Rotation {
        position: usize,
    },
    /// Local command (B2BUA): the far end answered, answer the caller now.
    AnswerNow,
    /// Local command (B2BUA): the far end failed, refuse the caller with this status.
    Refuse {
        status: u16,
    },
    /// The media plane heard nothing for the configured timeout while it should have.
    MediaTimeout {
        silent_ms: u64,
    },
    /// On hold, the peer has sent no RTP or RTCP for a while (`[media] hold_probe_s`).
    MediaQuiet {
        silent_ms: u64,
    },
    /// The answer to [`CallAction::Probe`]: the status of the OPTIONS' final response,
    /// `None` when none came (Timer F) or it could not be sent.
    ProbeAnswered {
        status: Option<u16>,
    },
    /// A prompt finished playing (or was cut short by barge-in).
    PlayoutDone {
        id: u64,
        interrupted: bool,
    },
    /// An RFC 4733 digit from the peer.
    Dtmf {
        digit: char,
    },
    /// The caller started talking (VAD): barge-in point.
    SpeechStarted,
    /// The speech pipeline finished a caller turn.
    Transcript {
        turn: Box<TranscriptTurn>,
    },
    /// The external brain answered turn `seq`; `None` when it timed out or failed (the
    /// built-in dialogue takes that turn).
    BrainReply {
        seq: u64,
        reply: Option<Box<BrainReply>>,
    },
    // The three below are what the [`crate::Call`] tells the caller's controller about an
    // agent's leg; a driver never sends them.
    /// How the call to an agent (`DialAgent` attempt) ended up.
    AgentOutcome {
        attempt: u32,
        outcome: OriginateOutcome,
    },
    /// The agent's call is over (after its outcome).
    AgentEnded {
        attempt: u32,
    },
    /// A digit the agent pressed.
    AgentDtmf {
        attempt: u32,
        digit: char,
    },
    /// The language model's briefing for the agent.
    BriefingWritten {
        text: String,
    },
}

/// What the controller asks the driver to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CallAction {
    /// Send 180 Ringing to the initial INVITE.
    Ring,
    /// Send 200 OK to the initial INVITE with this SDP.
    Answer {
        sdp: String,
    },
    /// Send a final failure to the initial INVITE. `warning` is a full `Warning` value.
    Reject {
        status: u16,
        reason: String,
        warning: Option<String>,
    },
    /// Answer the peer's re-INVITE/UPDATE.
    AnswerReOffer {
        status: u16,
        sdp: Option<String>,
        warning: Option<String>,
    },
    /// Send a re-INVITE with this offer.
    SendReInvite {
        sdp: String,
    },
    /// Outbound: send the initial INVITE with this offer.
    SendInvite {
        sdp: String,
    },
    /// Place a call on this (new) leg; see [`crate::Call::open_leg`].
    Dial(Box<crate::call::Dial>),
    /// Join this leg's media with another leg's.
    Bridge {
        with: crate::call::Leg,
    },
    /// Outbound: CANCEL the pending INVITE.
    CancelInvite,
    SendBye,
    /// Ask the peer whether the dialog still stands: an in-dialog OPTIONS, answered by
    /// [`CallEvent::ProbeAnswered`].
    Probe,
    /// The media plane must now use this: codec, where to send, which way.
    MediaChanged(Negotiated),
    /// Play a prompt to the peer; `id` comes back in [`CallEvent::PlayoutDone`].
    Play {
        prompt: Prompt,
        id: u64,
    },
    /// An escalation rule fired (each rule at most once per call). `decision` says
    /// whether to transfer now or, out of hours, take a callback request.
    Escalate {
        trigger: Box<Trigger>,
        briefing: Box<Briefing>,
        decision: Decision,
        /// From the end of the caller's last speech: the endpointer's closing silence, the
        /// recogniser's latency, and what happened since its text arrived.
        after_speech_ms: Option<u64>,
    },
    /// Speak `text` to the caller (TTS); `id` comes back in [`CallEvent::PlayoutDone`]. The
    /// caller may interrupt it.
    Say {
        text: String,
        id: u64,
    },
    /// POST this turn to the external brain; answer with [`CallEvent::BrainReply`].
    AskBrain {
        request: Box<BrainRequest>,
    },
    /// Something the audit trail must hold (e.g. the disclosure was played).
    Audit(Audit),
    /// Store and deliver the context packet.
    PostContext {
        packet: Box<ContextPacket>,
    },
    /// Ask a language model for a better spoken briefing from the packet; answer with
    /// [`CallEvent::BriefingWritten`].
    WriteBriefing {
        packet: Box<ContextPacket>,
    },
    // The four below are the caller controller's requests about its agents' legs: the
    // [`crate::Call`] that owns both routes them (as `Dial`, `Hangup`, `Say` and `Bridge`
    // on the right leg), so a driver of a `Call` never sees them.
    /// Call an agent; its fate comes back as `Agent*` events with this `attempt`.
    DialAgent {
        attempt: u32,
        target: String,
        ring_timeout: Duration,
        /// Why, in words, and the short summary, for the agent's screen-pop headers.
        reason: String,
        summary: String,
    },
    /// End (CANCEL or BYE) the agent's call of this attempt.
    HangupAgent {
        attempt: u32,
    },
    /// Render this text now, ahead of a `WhisperToAgent` that will carry the same text (the
    /// driver plays the rendered clip then, or renders again if the text changed).
    PrepareSpeech {
        text: String,
    },
    /// Speak the briefing to the agent's leg only; `id` comes back in `PlayoutDone`.
    WhisperToAgent {
        attempt: u32,
        text: String,
        id: u64,
    },
    /// A round-robin transfer needs its turn in the route's rotation, shared by every
    /// call: answer with [`CallEvent::Rotation`] (the hunt waits for it).
    AskRotation {
        route: String,
    },
    /// Join the caller's and the agent's media.
    BridgeAgent {
        attempt: u32,
    },
    /// A warm transfer is over: how, for which trigger kind and route, and (bridged or
    /// failed) how long after the trigger.
    TransferEnded {
        kind: TriggerKind,
        route: String,
        outcome: TransferOutcome,
        after_ms: Option<u64>,
    },
    /// Send RFC 4733 digits on the media.
    SendDtmf {
        digits: String,
    },
    /// Cut the prompt playing (and those queued): the caller barged in.
    StopPlayout,
    /// Start (or stop) hold audio to the peer while we hold it.
    HoldAudio {
        on: bool,
    },
    /// Outbound: how the attempt ended (exactly once per outbound call).
    Outcome(OriginateOutcome),
    /// The call is over; release everything. Always the last action.
    Ended {
        reason: EndReason,
    },
}

/// Typed result of an outbound call attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OriginateOutcome {
    Answered,
    Busy {
        status: u16,
    },
    NoAnswer,
    Rejected {
        status: u16,
        reason: String,
    },
    Unreachable {
        reason: String,
    },
    /// We hung up ourselves before an answer.
    Cancelled,
}

impl OriginateOutcome {
    /// Classify a final non-2xx response.
    fn from_status(status: u16) -> Self {
        match status {
            486 | 600 => OriginateOutcome::Busy { status },
            408 | 480 => OriginateOutcome::NoAnswer,
            _ => OriginateOutcome::Rejected {
                status,
                reason: reason_phrase(status).to_string(),
            },
        }
    }
}

/// Why a call ended, as a stable dotted code for logs, metrics and call records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    PeerBye,
    LocalBye,
    PeerCancel,
    Rejected,
    MediaFailed,
    DialogFailed,
    NotAnswered,
    RtpTimeout,
    /// On hold and silent, the peer did not answer an in-dialog OPTIONS, or said the
    /// dialog is gone (481, 408).
    PeerGone,
    /// Found live in the audit trail when the gateway started: the process that had it
    /// stopped without ending it (a crash, a kill).
    GatewayRestart,
    /// The session timer ran out (RFC 4028): the peer's refresh never came, or ours was
    /// never answered.
    SessionExpired,
}

impl EndReason {
    pub fn code(self) -> &'static str {
        match self {
            EndReason::PeerBye => "call.peer_bye",
            EndReason::LocalBye => "call.local_bye",
            EndReason::PeerCancel => "call.peer_cancel",
            EndReason::Rejected => "call.rejected",
            EndReason::MediaFailed => "call.media_failed",
            EndReason::DialogFailed => "call.dialog_failed",
            EndReason::NotAnswered => "call.not_answered",
            EndReason::RtpTimeout => "call.rtp_timeout",
            EndReason::PeerGone => "call.peer_gone",
            EndReason::GatewayRestart => "call.gateway_restart",
            EndReason::SessionExpired => "call.session_expired",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// Inbound, ringing until `answer_at`.
    Offered,
    /// Inbound, 200 sent, waiting for ACK.
    WaitAck,
    /// Outbound, INVITE sent.
    Calling,
    /// Outbound, CANCEL sent; waiting for the INVITE's final response.
    Cancelling,
    Confirmed,
    Ended,
}

/// A read-only view for the HTTP API and logs.
#[derive(Debug, Clone, Serialize)]
pub struct CallSnapshot {
    pub role: Role,
    pub state: &'static str,
    pub local_hold: bool,
    pub remote_hold: bool,
    pub reinvite_pending: bool,
    /// What offer/answer settled on (`media` in the API is the leg's RTP counters).
    #[serde(rename = "negotiated")]
    pub media: Option<Negotiated>,
    /// Fields the assistant collected.
    pub fields: BTreeMap<String, String>,
    pub intent: Option<Intent>,
    pub stated_reason: Option<String>,
    /// Where a warm transfer stands, when one is under way.
    pub transfer: Option<TransferPhase>,
    /// RFC 4733 digits the peer sent, in order.
    pub digits: String,
    /// The caller's last turns (text, timing, confidence, prosody).
    pub transcript: Vec<TranscriptTurn>,
    /// Escalation triggers that fired, with their evidence.
    pub triggers: Vec<Trigger>,
    /// What the last acted-on trigger led to, and the agent's briefing.
    pub decision: Option<Decision>,
    pub briefing: Option<Briefing>,
    /// The assistant's last prompts to the caller.
    pub said: Vec<String>,
    /// The context packet, once a transfer started.
    pub context: Option<ContextPacket>,
}

/// Caller turns and assistant prompts the live view shows.
pub const LIVE_KEPT: usize = 20;

/// One call's state machine. See the crate docs for the driving loop.
#[derive(Debug)]
pub struct Controller {
    role: Role,
    state: State,
    /// Offer/answer, hold and resume, re-INVITEs and glare.
    dialog: Dialog,
    answer_at: Option<Instant>,
    pending_answer: Option<(String, Negotiated)>,
    ring_deadline: Option<Instant>,
    outcome_sent: bool,
    answer_after: Duration,
    answer_on_command: bool,
    greeting: bool,
    greeting_barge_in: bool,
    next_play_id: u64,
    /// Digits the peer pressed, in order (the policy reads them in a later issue).
    digits: String,
    /// Prompts the caller may interrupt, asked for and not yet reported done.
    playing: Vec<u64>,
    /// The caller's turns, oldest first (the last [`MAX_TURNS`]).
    turns: VecDeque<TranscriptTurn>,
    policy: Option<Policy>,
    caller_id: String,
    asserted_id: Option<String>,
    caller_name: Option<String>,
    /// The assistant's side of the call and what it learned.
    conversation: Conversation,
    llm_briefing: bool,
    /// A transfer decided before the call was up (a `caller` rule fires at the answer):
    /// carried out once the greeting with its disclosure has played, or at once without one.
    deferred_transfer: Option<Box<(Trigger, Briefing)>>,
    greeting_id: Option<u64>,
    /// An in-dialog OPTIONS is out (see `CallEvent::MediaQuiet`).
    probing: bool,
    routes: Arc<Vec<RoutePlan>>,
    /// The dialogue's lines, also for the transfer's prompts when there is no assistant.
    texts: Arc<AssistantConfig>,
    /// Boxed, like `context` and `deferred_transfer`: most calls never transfer, and every
    /// call's task holds its controller inline for the call's whole life.
    transfer: Option<Box<Transfer>>,
    next_attempt: u32,
    wall_clock: Option<(Instant, jiff::Timestamp)>,
    answered_at: Option<Instant>,
    policy_tick: Option<Instant>,
    /// What the INVITE agreed about session timers, until our 2xx starts the timer.
    session_agreed: Option<Agreed>,
    /// The running session timer (RFC 4028), from our 2xx on.
    session: Option<SessionTimer>,
    min_se: u32,
    triggers: Vec<Trigger>,
    /// When the last caller turn's text arrived, and how long after the end of its speech.
    last_turn: Option<(Instant, u64)>,
    /// The last escalation acted on: its decision and briefing.
    escalation: Option<(Decision, Briefing)>,
    /// The context packet of the transfer, once posted.
    context: Option<Box<ContextPacket>>,
    call_id: String,
    public_url: String,
    unheard: bool,
    actions: VecDeque<CallAction>,
}

/// The default lines, for calls without an assistant: one copy for the process, not one per
/// call (a bridged call's controller speaks them only if it transfers).
fn default_texts() -> Arc<AssistantConfig> {
    static TEXTS: std::sync::LazyLock<Arc<AssistantConfig>> =
        std::sync::LazyLock::new(|| Arc::new(AssistantConfig::default()));
    TEXTS.clone()
}

impl Controller {
    /// A controller for an inbound call; feed it [`CallEvent::Invite`] next.
    pub fn inbound(cfg: CallConfig) -> Self {
        Self::new(Role::Inbound, State::Offered, cfg)
    }

    /// A controller for an outbound call; its first action is [`CallAction::SendInvite`].
    pub fn outbound(now: Instant, cfg: CallConfig) -> Self {
        let (mut c, offer) = Self::dial(now, cfg);
        c.actions.push_front(CallAction::SendInvite { sdp: offer });
        c
    }

    /// A controller for an outbound call, and the offer its INVITE carries.
    pub fn dial(now: Instant, cfg: CallConfig) -> (Self, String) {
        let ring_timeout = cfg.ring_timeout;
        let mut c = Self::new(Role::Outbound, State::Calling, cfg);
        let offer = c.dialog.initial_offer();
        c.ring_deadline = Some(now + ring_timeout);
        (c, offer)
    }

    fn new(role: Role, state: State, cfg: CallConfig) -> Self {
        let texts = cfg
            .assistant
            .as_ref()
            .map_or_else(default_texts, Assistant::shared_config);
        Self {
            role,
            state,
            dialog: Dialog::new(role, cfg.local_media, cfg.session_id, cfg.rng_seed),
            answer_at: None,
            pending_answer: None,
            ring_deadline: None,
            outcome_sent: false,
            answer_after: cfg.answer_after,
            answer_on_command: cfg.answer_on_command,
            // An unheard caller talks to a person, not to the assistant: no disclosure
            // that invites them to talk to it.
            greeting: cfg.greeting && !cfg.unheard,
            greeting_barge_in: cfg.greeting_barge_in,
            next_play_id: 1,
            digits: String::new(),
            playing: Vec::new(),
            turns: VecDeque::new(),
            policy: cfg.rules.map(Policy::new),
            conversation: Conversation::new(
                cfg.assistant,
                cfg.brain,
                conversation::Caller {
                    call_id: cfg.call_id.clone(),
                    number: warmline_policy::normalise_number(
                        cfg.asserted_id.as_deref().unwrap_or(&cfg.caller_id),
                    ),
                    name: cfg.caller_name.clone(),
                },
            ),
            caller_id: cfg.caller_id,
            asserted_id: cfg.asserted_id,
            caller_name: cfg.caller_name,
            llm_briefing: cfg.llm_briefing,
            deferred_transfer: None,
            greeting_id: None,
            probing: false,
            routes: cfg.routes,
            texts,
            transfer: None,
            next_attempt: 0,
            wall_clock: cfg.wall_clock,
            answered_at: None,
            policy_tick: None,
            session_agreed: cfg.session_timer,
            session: None,
            min_se: cfg.min_se,
            triggers: Vec::new(),
            last_turn: None,
            escalation: None,
            context: None,
            call_id: cfg.call_id,
            public_url: cfg.public_url,
            unheard: cfg.unheard,
            actions: VecDeque::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The media an inbound call will have once answered (known from the offer).
    /// The media agreed with the peer, or about to be (an answer not sent yet).
    pub fn media(&self) -> Option<&Negotiated> {
        self.dialog.negotiated().or(self.pending_media())
    }

    pub fn pending_media(&self) -> Option<&Negotiated> {
        self.pending_answer.as_ref().map(|(_, n)| n)
    }

    pub fn digits(&self) -> &str {
        &self.digits
    }

    pub fn turns(&self) -> impl Iterator<Item = &TranscriptTurn> {
        self.turns.iter()
    }

    /// Every trigger that fired, in order.
    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }

    pub fn fields(&self) -> &BTreeMap<String, String> {
        self.conversation.fields()
    }

    /// The caller's number (digits, `+` kept; empty when the From user is not a number) and
    /// display name, as an agent's phone should show them.
    pub fn caller_identity(&self) -> (String, Option<&str>) {
        (self.caller_number(), self.caller_name.as_deref())
    }

    fn since_answer_ms(&self, now: Instant) -> u64 {
        self.answered_at
            .map_or(0, |t0| now.saturating_duration_since(t0).as_millis() as u64)
    }

    fn observe(&mut self, now: Instant, obs: &Observation<'_>) {
        let at_ms = self.since_answer_ms(now);
        let (Some(policy), Some(_)) = (self.policy.as_mut(), self.answered_at) else {
            return;
        };
        if let Some(trigger) = policy.observe(at_ms, obs) {
            self.escalate(now, trigger);
        }
    }

    fn audit(&mut self, event: Audit) {
        self.actions.push_back(CallAction::Audit(event));
    }

    /// Digits of the caller's number (P-Asserted-Identity over From), `+` kept.
    fn caller_number(&self) -> String {
        warmline_policy::normalise_number(self.asserted_id.as_deref().unwrap_or(&self.caller_id))
    }

    /// A trigger fired: brief, decide (transfer now, or a callback out of hours), and
    /// stop the assistant if a person takes over.
    fn escalate(&mut self, now: Instant, trigger: Trigger) {
        self.triggers.push(trigger.clone());
        // One transfer at a time: a rule firing meanwhile is recorded, not acted on.
        if self.transfer.is_some() {
            self.audit(Audit::Trigger {
                rule: trigger.rule.clone(),
                kind: trigger.kind,
                route: trigger.route.clone(),
                confidence: trigger.confidence,
                at_ms: trigger.at_ms,
                after_speech_ms: None,
                evidence: trigger.evidence.clone(),
                decision: None,
            });
            return;
        }
        let (template, next_step) = self
            .policy
            .as_ref()
            .and_then(|p| p.rules().iter().find(|r| r.name == trigger.rule))
            .map(|r| (r.briefing.clone(), r.next_step.clone()))
            .unwrap_or_default();
        let turns: Vec<&str> = self.turns.iter().map(|t| t.text.as_str()).collect();
        let number = self.caller_number();
        let facts = CallFacts {
            caller_name: self.caller_name.as_deref(),
            caller_number: (!number.is_empty()).then_some(number.as_str()),
            turns: &turns,
            fields: self.conversation.fields(),
            intent: self
                .conversation
                .intent()
                .map(|i| (i.text.as_str(), i.confidence)),
            stated_reason: self.conversation.stated_reason(),
        };
        let briefing = brief(&facts, &trigger, &template, &next_step);
        let decision = self.decide(now, &trigger.route);
        let after_speech_ms = self
            .last_turn
            .map(|(at, latency)| latency + now.saturating_duration_since(at).as_millis() as u64);
        self.actions.push_back(CallAction::Escalate {
            trigger: Box::new(trigger.clone()),
            briefing: Box::new(briefing.clone()),
            decision: decision.clone(),
            after_speech_ms,
        });
        self.escalation = Some((decision.clone(), briefing.clone()));
        let audits = [
            Audit::Trigger {
                rule: trigger.rule.clone(),
                kind: trigger.kind,
                route: trigger.route.clone(),
                confidence: trigger.confidence,
                at_ms: trigger.at_ms,
                // Only what speech decides is timed from speech.
                after_speech_ms: after_speech_ms.filter(|_| trigger.kind.from_speech()),
                evidence: trigger.evidence.clone(),
                decision: Some(decision.label().to_string()),
            },
            match &decision {
                Decision::Transfer => Audit::TransferDecided {
                    rule: trigger.rule.clone(),
                    kind: trigger.kind,
                    reason: briefing.reason.clone(),
                    route: trigger.route.clone(),
                },
                Decision::Callback { weekday, at } => Audit::CallbackRequested {
                    route: trigger.route.clone(),
                    to: self.caller_id.clone(),
                    reopens: Some(Reopening {
                        weekday: *weekday,
                        at: at.clone(),
                        summary: briefing.summary.clone(),
                    }),
                },
            },
        ];
        match decision {
            Decision::Transfer => {
                self.conversation.hand_over();
                // The prompt playing stops first: the decision is heard at once.
                self.stop_prompts();
                audits.into_iter().for_each(|a| self.audit(a));
                if matches!(self.state, State::Confirmed | State::WaitAck) {
                    self.start_transfer(now, &trigger, briefing);
                } else {
                    // Not answered yet: carried out once the call is up.
                    self.audit(Audit::TransferDeferred {
                        rule: trigger.rule.clone(),
                    });
                    self.deferred_transfer = Some(Box::new((trigger, briefing)));
                }
            }
            Decision::Callback { weekday, at } => {
                audits.into_iter().for_each(|a| self.audit(a));
                let today = self.local_time(now, &trigger.route).map(|(d, _)| d);
                let day = day_phrase(today, weekday);
                if let Some(text) = self.conversation.out_of_hours() {
                    let text = text.replace("{day}", &day).replace("{time}", &at);
                    self.say(now, text);
                }
            }
        }
    }

    /// The local (weekday 1 = Monday, minute of the day) in `route`'s time zone, if the
    /// controller was given the wall clock.
    fn local_time(&self, now: Instant, route: &str) -> Option<(u8, u16)> {
        let (at, wall) = self.wall_clock?;
        let tz = self
            .routes
            .iter()
            .find(|r| r.name == route)
            // A route nobody configured is always open: its zone only names the day, and the
            // core reads nothing of the machine it runs on.
            .map_or(jiff::tz::TimeZone::UTC, |r| r.tz.clone());
        let elapsed = jiff::SignedDuration::try_from(now.saturating_duration_since(at)).ok()?;
        let z = wall.checked_add(elapsed).ok()?.to_zoned(tz);
        let weekday = z.weekday().to_monday_one_offset() as u8;
        let minute = z.hour() as u16 * 60 + z.minute() as u16;
        Some((weekday, minute))
    }

    fn decide(&self, now: Instant, route: &str) -> Decision {
        let Some(hours) = self
            .routes
            .iter()
            .find(|r| r.name == route)
            .and_then(|r| r.hours.as_ref())
        else {
            return Decision::Transfer;
        };
        match self.local_time(now, route) {
            Some((weekday, minute)) => decide(Some(hours), weekday, minute),
            None => Decision::Transfer,
        }
    }

    /// A trigger decided on a transfer: start it with the call's packet.
    fn start_transfer(&mut self, now: Instant, trigger: &Trigger, briefing: Briefing) {
        let route = self
            .routes
            .iter()
            .find(|r| r.name == trigger.route)
            .cloned()
            .unwrap_or_else(|| RoutePlan::unstaffed(&trigger.route));
        let packet = self.context_packet(trigger, &briefing);
        self.context = Some(Box::new(packet.clone()));
        let start = transfer::Start {
            texts: transfer::Texts::from(&*self.texts),
            caller_id: self.caller_id.clone(),
            llm_briefing: self.llm_briefing,
            last_attempt: self.next_attempt,
        };
        let mut asks = Vec::new();
        self.transfer =
            Transfer::start(now, route, trigger, briefing, packet, start, &mut asks).map(Box::new);
        self.carry_out(now, asks);
    }

    /// Run one step of the transfer, if one is under way, then carry out what it asks.
    fn transfer_step<R>(
        &mut self,
        now: Instant,
        step: impl FnOnce(&mut Transfer, &mut Vec<Ask>) -> R,
    ) -> Option<R> {
        let t = self.transfer.as_mut()?;
        let mut asks = Vec::new();
        let r = step(t, &mut asks);
        self.carry_out(now, asks);
        Some(r)
    }

    fn carry_out(&mut self, now: Instant, asks: Vec<Ask>) {
        for ask in asks {
            match ask {
                Ask::Hold => self.set_want(Direction::SendOnly),
                Ask::Resume => self.set_want(Direction::SendRecv),
                Ask::Say(text) => {
                    self.say_unbargeable(now, text);
                }
                Ask::Whisper { attempt, text } => {
                    let id = self.next_play_id;
                    self.next_play_id += 1;
                    if let Some(t) = self.transfer.as_mut() {
                        t.briefing_id(attempt, id);
                    }
                    self.actions
                        .push_back(CallAction::WhisperToAgent { attempt, text, id });
                }
                Ask::Act(action) => self.actions.push_back(action),
                Ask::HangUp => self.hangup(),
                Ask::Over => {
                    if let Some(t) = self.transfer.take() {
                        self.next_attempt = t.last_attempt();
                    }
                    self.conversation.take_back();
                }
            }
        }
    }

    /// Cut the prompts the caller may interrupt. Stopping playout clears the whole queue,
    /// so nothing is cut while the disclosure is still playing (unless it is bargeable):
    /// prompts queued behind it play after it.
    fn stop_prompts(&mut self) {
        let disclosure_playing = self.greeting_id.is_some() && !self.greeting_barge_in;
        if !self.playing.is_empty() && !disclosure_playing {
            self.playing.clear();
            self.actions.push_back(CallAction::StopPlayout);
        }
    }

    /// Speak to the caller; the caller may cut it short.
    fn say(&mut self, now: Instant, text: String) {
        let id = self.say_unbargeable(now, text);
        self.playing.push(id);
    }

    /// Speak to the caller, who cannot cut it short (the transfer's prompts).
    fn say_unbargeable(&mut self, now: Instant, text: String) -> u64 {
        let id = self.next_play_id;
        self.next_play_id += 1;
        let at_ms = self.since_answer_ms(now);
        self.conversation.spoke(&text, at_ms);
        self.actions.push_back(CallAction::Say { text, id });
        id
    }

    /// The assistant's first question, once the greeting is over.
    fn start_assistant(&mut self, now: Instant) {
        let mut next = Vec::new();
        self.conversation.start(&mut next);
        self.converse(now, next);
    }

    /// Carry out what the conversation asks, in order. Once a step hands the call to a
    /// person (a failure that escalated, the brain asking for one), the assistant's
    /// remaining words are not said.
    fn converse(&mut self, now: Instant, next: Vec<Next>) {
        for n in next {
            match n {
                Next::Say(text) if !self.conversation.is_quiet() => self.say(now, text),
                Next::Say(_) => {}
                Next::Failed if !self.conversation.is_quiet() => {
                    self.observe(now, &Observation::AssistantFailed)
                }
                Next::Failed => {}
                Next::Resolved => self.observe(now, &Observation::Resolved),
                Next::AskBrain(request) => {
                    self.actions.push_back(CallAction::AskBrain { request });
                }
                Next::Transfer {
                    route,
                    reason,
                    confidence,
                } => {
                    let route = route.unwrap_or_else(|| self.first_route());
                    let trigger = Trigger {
                        rule: "assistant".into(),
                        kind: TriggerKind::Assistant,
                        evidence: vec![reason],
                        confidence,
                        at_ms: self.since_answer_ms(now),
                        disposition: "transfer.assistant".into(),
                        route,
                    };
                    self.escalate(now, trigger);
                }
            }
        }
    }

    pub fn snapshot(&self) -> CallSnapshot {
        CallSnapshot {
            role: self.role,
            state: match self.state {
                State::Offered => "ringing",
                State::WaitAck => "answered",
                State::Calling => "calling",
                State::Cancelling => "cancelling",
                State::Confirmed => "confirmed",
                State::Ended => "ended",
            },
            local_hold: self.dialog.local_hold(),
            remote_hold: self.dialog.remote_hold(),
            reinvite_pending: self.dialog.reinvite_pending(),
            media: self.dialog.negotiated().cloned(),
            fields: self.conversation.fields().clone(),
            intent: self.conversation.intent().cloned(),
            stated_reason: self.conversation.stated_reason().map(str::to_string),
            transfer: self.transfer.as_ref().and_then(|t| t.phase()),
            digits: self.digits.clone(),
            transcript: self
                .turns
                .iter()
                .skip(self.turns.len().saturating_sub(LIVE_KEPT))
                .cloned()
                .collect(),
            triggers: self.triggers.clone(),
            decision: self.escalation.as_ref().map(|(d, _)| d.clone()),
            briefing: self.escalation.as_ref().map(|(_, b)| b.clone()),
            said: self.conversation.said().cloned().collect(),
            context: self.context.as_deref().cloned(),
        }
    }

    /// The next thing the driver must do, in order.
    pub fn poll_action(&mut self) -> Option<CallAction> {
        self.actions.pop_front()
    }

    /// When [`Controller::handle_timeout`] next needs calling.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Ended {
            return None;
        }
        [
            self.answer_at,
            self.ring_deadline,
            self.dialog.poll_timeout(),
            self.policy_tick,
            self.session.as_ref().map(SessionTimer::poll_timeout),
        ]
        .into_iter()
        .chain(self.transfer.iter().flat_map(|t| t.timers()))
        .flatten()
        .min()
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.answer_at.is_some_and(|t| t <= now) {
            self.answer_at = None;
            self.send_answer(now);
        }
        if self.policy_tick.is_some_and(|t| t <= now) {
            self.policy_tick = Some(now + POLICY_TICK);
            self.observe(now, &Observation::Tick);
        }
        if self.ring_deadline.is_some_and(|t| t <= now) {
            self.ring_deadline = None;
            if self.state == State::Calling {
                self.actions.push_back(CallAction::CancelInvite);
                self.state = State::Cancelling;
                self.outcome(OriginateOutcome::NoAnswer);
            }
        }
        let confirmed = self.state == State::Confirmed;
        self.dialog
            .handle_timeout(now, confirmed, &mut self.actions);
        self.session_timeout(now);
        self.transfer_step(now, |t, out| t.handle_timeout(now, out));
    }

    /// The session timer: refresh when it is ours to, end the call when the session died.
    fn session_timeout(&mut self, now: Instant) {
        let Some(due) = self.session.as_ref().and_then(|t| t.due(now)) else {
            return;
        };
        match due {
            Due::Expired => {
                if matches!(self.state, State::WaitAck | State::Confirmed) {
                    self.actions.push_back(CallAction::SendBye);
                }
                self.end(EndReason::SessionExpired);
            }
            Due::Refresh => {
                let confirmed = self.state == State::Confirmed;
                let sent = self.dialog.refresh(confirmed, &mut self.actions);
                if let Some(t) = self.session.as_mut() {
                    if sent {
                        t.refresh_sent();
                    } else {
                        // Not confirmed yet (no ACK): ask again later, before expiry.
                        t.refresh_failed(now);
                    }
                }
            }
        }
    }

    /// The session-timer headers of our 2xx to the INVITE or to a refresh: what the session
    /// now runs with (RFC 4028 §9). Empty without a timer.
    pub fn session_response_headers(&self) -> Vec<(&'static str, String)> {
        self.session
            .as_ref()
            .map(|t| t.agreed().response_headers())
            .unwrap_or_default()
    }

    /// The session-timer headers of a re-INVITE we send (a refresh, or a hold that also
    /// refreshes). Empty without a timer.
    pub fn session_request_headers(&self) -> Vec<(&'static str, String)> {
        self.session
            .as_ref()
            .map(|t| t.agreed().request_headers(self.min_se))
            .unwrap_or_default()
    }

    /// Our least session interval, for the `Min-SE` of a 422.
    pub fn min_se(&self) -> u32 {
        self.min_se
    }

    /// Feed one event.
    pub fn handle(&mut self, now: Instant, event: CallEvent) {
        if self.state == State::Ended {
            return;
        }
        match event {
            CallEvent::Invite { sdp } => self.on_invite(now, sdp),
            CallEvent::Ack => {
                if self.state == State::WaitAck {
                    self.state = State::Confirmed;
                    self.maybe_reinvite();
                }
            }
            CallEvent::ReOffer { timer, sdp } => self.on_reoffer(now, &timer, sdp),
            CallEvent::Refresh { timer } => self.on_refresh(now, &timer),
            CallEvent::ReInviteResponse { timer, status, sdp } => {
                self.on_reinvite_response(now, &timer, status, sdp)
            }
            CallEvent::PeerBye => self.end(EndReason::PeerBye),
            CallEvent::PeerCancel => self.end(EndReason::PeerCancel),
            CallEvent::DialogFailed { .. } => {
                if matches!(self.state, State::Calling | State::Cancelling) {
                    self.outcome(OriginateOutcome::Unreachable {
                        reason: "dialog failed".into(),
                    });
                }
                self.end(EndReason::DialogFailed);
            }
            CallEvent::Progress { .. } => {}
            CallEvent::Answered { timer, sdp } => self.on_answered(now, &timer, sdp),
            CallEvent::Failed { status } => {
                if matches!(self.state, State::Calling | State::Cancelling) {
                    self.outcome(OriginateOutcome::from_status(status));
                    self.end(EndReason::NotAnswered);
                }
            }
            CallEvent::Unreachable { reason } => {
                if matches!(self.state, State::Calling | State::Cancelling) {
                    self.outcome(OriginateOutcome::Unreachable { reason });
                    self.end(EndReason::NotAnswered);
                }
            }
            CallEvent::Hold => self.set_want(Direction::SendOnly),
            CallEvent::Resume => self.set_want(Direction::SendRecv),
            CallEvent::Hangup => self.hangup(),
            CallEvent::AnswerNow => {
                if self.state == State::Offered {
                    self.send_answer(now);
                }
            }
            CallEvent::Refuse { status } => {
                if self.state == State::Offered {
                    self.pending_answer = None;
                    self.actions.push_back(CallAction::Reject {
                        status,
                        reason: reason_phrase(status).to_string(),
                        warning: None,
                    });
                    self.end(EndReason::Rejected);
                }
            }
            CallEvent::MediaTimeout { .. } => {
                if matches!(self.state, State::Confirmed | State::WaitAck) {
                    self.actions.push_back(CallAction::SendBye);
                    self.end(EndReason::RtpTimeout);
                }
            }
            CallEvent::MediaQuiet { .. } => {
                // One question at a time: a probe still waiting (up to 64 x T1) is the
                // answer to this silence too.
                if self.state == State::Confirmed && !self.probing {
                    self.probing = true;
                    self.actions.push_back(CallAction::Probe);
                }
            }
            CallEvent::ProbeAnswered { status } => {
                self.probing = false;
                // RFC 5057 §5.1: 481 and 408 end the dialog; so does silence to a request
                // inside it. Any other answer, 405 and 501 included, is a peer still there.
                let gone = matches!(status, None | Some(408) | Some(481));
                if gone && self.state == State::Confirmed {
                    self.actions.push_back(CallAction::SendBye);
                    self.end(EndReason::PeerGone);
                }
            }
            CallEvent::PlayoutDone { id, interrupted } => {
                self.playing.retain(|p| *p != id);
                if self.transfer_step(now, |t, out| t.on_whisper_done(now, id, out)) == Some(true) {
                    return;
                }
                if self.greeting_id == Some(id) {
                    self.greeting_id = None;
                    self.audit(Audit::Disclosure { interrupted });
                    if let Some((trigger, briefing)) = self.deferred_transfer.take().map(|d| *d) {
                        self.start_transfer(now, &trigger, briefing);
                    } else if !interrupted {
                        // A caller who talked over the greeting is answered, not asked.
                        self.start_assistant(now);
                    }
                }
            }
            CallEvent::SpeechStarted => {
                self.stop_prompts();
            }
            CallEvent::Transcript { turn } => {
                self.last_turn = Some((now, turn.latency_ms + turn.endpoint_ms));
                if self.turns.len() == MAX_TURNS {
                    self.turns.pop_front();
                }
                let at_ms = self.since_answer_ms(now);
                self.conversation.heard(&turn.text, at_ms);
                self.turns.push_back((*turn).clone());
                let evidence = turn
                    .prosody
                    .as_ref()
                    .map(|p| p.evidence.clone())
                    .unwrap_or_default();
                self.observe(
                    now,
                    &Observation::Turn {
                        text: &turn.text,
                        confidence: turn.confidence,
                        arousal: turn.prosody.as_ref().map(|p| p.arousal),
                        prosody_evidence: &evidence,
                    },
                );
                let mut next = Vec::new();
                self.conversation.turn(&turn, &mut next);
                self.converse(now, next);
            }
            CallEvent::BrainReply { seq, reply } => {
                let mut next = Vec::new();
                self.conversation.brain_reply(seq, reply, &mut next);
                self.converse(now, next);
            }
            CallEvent::AgentOutcome { attempt, outcome } => {
                self.transfer_step(now, |t, out| t.on_agent_outcome(now, attempt, outcome, out));
            }
            CallEvent::AgentEnded { attempt } => {
                self.transfer_step(now, |t, out| t.on_agent_ended(now, attempt, out));
            }
            CallEvent::AgentDtmf { attempt, digit } => {
                self.transfer_step(now, |t, out| t.on_agent_dtmf(now, attempt, digit, out));
            }
            CallEvent::Rotation { position } => {
                self.transfer_step(now, |t, out| t.on_rotation(now, position, out));
            }
            CallEvent::BriefingWritten { text } => {
                self.transfer_step(now, |t, out| t.on_briefing_written(text, out));
            }
            CallEvent::Dtmf { digit } => {
                self.digits.push(digit);
                self.observe(now, &Observation::Dtmf { digit });
            }
            CallEvent::SendDtmf { digits } => {
                if matches!(self.state, State::Confirmed | State::WaitAck) {
                    self.actions.push_back(CallAction::SendDtmf { digits });
                }
            }
        }
    }

    fn on_invite(&mut self, now: Instant, sdp: Option<String>) {
        if self.state != State::Offered || self.pending_answer.is_some() {
            return;
        }
        let prepared = match self.dialog.prepare_answer(sdp.as_deref()) {
            Ok(pair) => pair,
            Err(e) => {
                self.actions.push_back(CallAction::Reject {
                    status: 488,
                    reason: "Not Acceptable Here".into(),
                    warning: Some(warning(&e)),
                });
                self.end(EndReason::Rejected);
                return;
            }
        };
        self.pending_answer = Some(prepared);
        if self.answer_on_command {
            self.actions.push_back(CallAction::Ring);
        } else if self.answer_after.is_zero() {
            self.send_answer(now);
        } else {
            self.actions.push_back(CallAction::Ring);
            self.answer_at = Some(now + self.answer_after);
        }
    }

    /// Where a transfer no rule chose goes: the route of the highest-priority rule.
    fn first_route(&self) -> String {
        self.policy
            .as_ref()
            .and_then(|p| p.rules().first())
            .map_or_else(|| "default".to_string(), |r| r.route.clone())
    }

    fn send_answer(&mut self, now: Instant) {
        let Some((sdp, negotiated)) = self.pending_answer.take() else {
            return;
        };
        self.answered_at = Some(now);
        if self.unheard {
            // Before the state moves on: the transfer is deferred to the moment the call
            // is up, as a priority caller's is.
            let route = self.first_route();
            let trigger = Trigger {
                rule: "capacity".into(),
                kind: TriggerKind::Capacity,
                evidence: vec!["speech recognizer at capacity".into()],
                confidence: 1.0,
                at_ms: 0,
                disposition: "transfer.capacity".into(),
                route,
            };
            self.escalate(now, trigger);
        } else if self.policy.is_some() {
            self.policy_tick = Some(now + POLICY_TICK);
            let (from, asserted) = (self.caller_id.clone(), self.asserted_id.clone());
            self.observe(
                now,
                &Observation::Caller {
                    from: &from,
                    asserted: asserted.as_deref(),
                },
            );
        }
        self.dialog.answered(negotiated.clone());
        // RFC 4028: the session interval runs from the 2xx.
        self.session = self
            .session_agreed
            .take()
            .map(|a| SessionTimer::new(now, a));
        self.actions.push_back(CallAction::Answer { sdp });
        self.actions.push_back(CallAction::MediaChanged(negotiated));
        self.state = State::WaitAck;
        if self.greeting {
            let id = self.next_play_id;
            self.next_play_id += 1;
            if self.greeting_barge_in {
                self.playing.push(id);
            }
            self.greeting_id = Some(id);
            self.actions.push_back(CallAction::Play {
                prompt: Prompt::Greeting,
                id,
            });
        } else if let Some((trigger, briefing)) = self.deferred_transfer.take().map(|d| *d) {
            self.start_transfer(now, &trigger, briefing);
        } else {
            self.start_assistant(now);
        }
    }

    /// The session-timer side of the peer's re-INVITE or UPDATE: `None` when it was answered
    /// here (500 outside a confirmed dialog; 422 under our minimum, before its offer is read,
    /// RFC 4028 §9, and the session goes on), else what it agreed (`Some(None)`: no timer).
    fn refresh_asked(&mut self, timer: &Asked) -> Option<Option<Agreed>> {
        let status = if !matches!(self.state, State::Confirmed | State::WaitAck) {
            500
        } else {
            match session_timer::answer(timer, self.min_se) {
                session_timer::Answer::TooSmall { .. } => 422,
                session_timer::Answer::None => return Some(None),
                session_timer::Answer::Run(a) => return Some(Some(a)),
            }
        };
        self.actions.push_back(CallAction::AnswerReOffer {
            status,
            sdp: None,
            warning: None,
        });
        None
    }

    /// A refresh without an offer (UPDATE with no body): answered 200 without SDP.
    fn on_refresh(&mut self, now: Instant, timer: &Asked) {
        let Some(agreed) = self.refresh_asked(timer) else {
            return;
        };
        // A 2xx'd refresh renews the session; without Session-Expires it has none (§9).
        self.session = agreed.map(|a| SessionTimer::new(now, a));
        self.actions.push_back(CallAction::AnswerReOffer {
            status: 200,
            sdp: None,
            warning: None,
        });
    }

    fn on_reoffer(&mut self, now: Instant, timer: &Asked, sdp: Option<String>) {
        let Some(agreed) = self.refresh_asked(timer) else {
            return;
        };
        let before = self.actions.len();
        self.dialog.on_reoffer(sdp, &mut self.actions);
        let accepted = self.actions.iter().skip(before).any(|a| {
            matches!(a, CallAction::AnswerReOffer { status, .. } if (200..300).contains(status))
        });
        if accepted {
            // A 2xx'd re-INVITE or UPDATE is a refresh, whoever sent it (§9).
            self.session = agreed.map(|a| SessionTimer::new(now, a));
        }
    }

    fn set_want(&mut self, want: Direction) {
        let (live, confirmed) = (self.state != State::Ended, self.state == State::Confirmed);
        self.dialog
            .set_want(want, live, confirmed, &mut self.actions);
    }

    fn maybe_reinvite(&mut self) {
        let confirmed = self.state == State::Confirmed;
        self.dialog.maybe_reinvite(confirmed, &mut self.actions);
    }

    fn on_reinvite_response(
        &mut self,
        now: Instant,
        timer: &Asked,
        status: u16,
        sdp: Option<String>,
    ) {
        match (self.session.take(), status) {
            // Our re-INVITE's 2xx renews the session with what it says (RFC 4028 §7.2).
            (Some(t), 200..=299) => {
                self.session = t.refreshed(now, session_timer::agreed_by_response(timer));
            }
            (Some(mut t), _) => {
                t.refresh_failed(now);
                self.session = Some(t);
            }
            (None, _) => {}
        }
        let confirmed = self.state == State::Confirmed;
        if let Some(reason) =
            self.dialog
                .on_reinvite_response(now, status, sdp, confirmed, &mut self.actions)
        {
            self.end(reason);
        }
    }

    fn on_answered(&mut self, now: Instant, timer: &Asked, sdp: Option<String>) {
        match self.state {
            State::Calling => {}
            // A 2xx that crossed our CANCEL: the call exists, so end it properly.
            State::Cancelling => {
                self.actions.push_back(CallAction::SendBye);
                self.end(EndReason::NotAnswered);
                return;
            }
            _ => return,
        }
        self.ring_deadline = None;
        match self.dialog.accept_answer(sdp.as_deref()) {
            Ok(n) => {
                self.state = State::Confirmed;
                // The 2xx says whether a session timer runs and who refreshes (§7.2).
                self.session =
                    session_timer::agreed_by_response(timer).map(|a| SessionTimer::new(now, a));
                self.actions.push_back(CallAction::MediaChanged(n));
                self.outcome(OriginateOutcome::Answered);
                self.maybe_reinvite();
            }
            Err(e) => {
                self.actions.push_back(CallAction::SendBye);
                self.outcome(OriginateOutcome::Rejected {
                    status: 488,
                    reason: e.to_string(),
                });
                self.end(EndReason::MediaFailed);
            }
        }
    }

    fn hangup(&mut self) {
        match self.state {
            State::Offered => {
                self.actions.push_back(CallAction::Reject {
                    status: 480,
                    reason: "Temporarily Unavailable".into(),
                    warning: None,
                });
                self.end(EndReason::Rejected);
            }
            State::Calling => {
                self.actions.push_back(CallAction::CancelInvite);
                self.state = State::Cancelling;
                self.ring_deadline = None;
                self.outcome(OriginateOutcome::Cancelled);
            }
            State::Cancelling | State::Ended => {}
            State::WaitAck | State::Confirmed => {
                self.actions.push_back(CallAction::SendBye);
                self.end(EndReason::LocalBye);
            }
        }
    }

    fn outcome(&mut self, outcome: OriginateOutcome) {
        if self.role == Role::Outbound && !self.outcome_sent {
            self.outcome_sent = true;
            self.actions.push_back(CallAction::Outcome(outcome));
        }
    }

    fn end(&mut self, reason: EndReason) {
        if let Some(t) = self.transfer.take() {
            self.next_attempt = t.last_attempt();
            let by_caller = matches!(reason, EndReason::PeerBye | EndReason::PeerCancel);
            self.actions.extend(t.on_call_end(by_caller));
        }
        self.state = State::Ended;
        self.answer_at = None;
        self.ring_deadline = None;
        self.dialog.clear_timers();
        self.policy_tick = None;
        self.session = None;
        self.actions.push_back(CallAction::Ended { reason });
    }
}

fn warning(e: &NegotiationError) -> String {
    let text: String = e.to_string().chars().filter(|c| *c != '"').collect();
    format!("{} warmline \"{text}\"", e.warn_code())
}

/// The answer a peer must give to a single-codec offer, used to pre-compute the media a
/// delayed-offer call will have: the same m-line seen from the other side.
fn mirror_offer(offer: &str) -> String {
    offer.replace("a=sendonly", "a=recvonly")
}

fn reason_phrase(status: u16) -> &'static str {
    let class = match status {
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Global Failure",
    };
    match status {
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        484 => "Address Incomplete",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => class,
    }
}

/// "today", "tomorrow" or the weekday's name, for the callback promise.
fn day_phrase(today: Option<u8>, weekday: u8) -> String {
    match today {
        Some(t) if t == weekday => "today".into(),
        Some(t) if t % 7 + 1 == weekday => "tomorrow".into(),
        _ => warmline_policy::hours::weekday_name(weekday).into(),
    }
}
