//! One task per call: the SIP/RTP driver of a sans-IO [`Call`]. It owns what is I/O for
//! each of the call's legs (the caller's dialog, and the dialogs it places for agents or a
//! B2BUA's far end): rsipstack dialogs, RTP sockets, the legs of the call's media session,
//! the voices that speak on them. It feeds the `Call` with dialog states, local commands,
//! results of SIP operations, media and speech events and timer expiries, each tagged with
//! its [`Leg`], and carries the `Call`'s `(leg, action)`s out; which leg hears what is the
//! `Call`'s business, not this module's.
//!
//! The task never awaits the network while it could miss an event: re-INVITE, BYE and
//! CANCEL run in their own tasks and report back through the leg's inbox, so a peer's
//! re-INVITE that crosses ours (glare) is still answered.

use super::{CallHandle, CallInfo, Gateway, LegSlot, Originate, OriginateError, lock};
use crate::assistant::{Rendering, Voice};
use crate::config::{OverCapacity, RouteMode};
use crate::media::{CALLER_LEG, FAR_LEG, MediaHandle, NewLeg, report_into};
use crate::rtp_ports::RtpReservation;
use crate::speech::ListenSlot;
use crate::speech::PipelineEvent;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::platform::boxed;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::uri::ParamsExt;
use rsipstack::sip::{Header, Method, Param, Request, Scheme, StatusCode, Transport, Uri};
use rsipstack::transaction::key::TransactionRole;
use rsipstack::transaction::transaction::Transaction;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use warmline_call::{
    Audit, Call, CallAction, CallConfig, CallEvent, CallSetup, Dial, Leg, OriginateOutcome, Prompt,
    Role, ScreenPop, TransferOutcome,
};
use warmline_media::{LegId, LegMedia, MediaEvent};
use warmline_policy::Decision;
use warmline_signaling::{CodecName, LocalMedia, SrtpKey};
use warmline_signaling::{extensions, session_timer};

/// Legs of agents' calls join the caller's media session as `AGENT_LEG_BASE + attempt`, so
/// an old attempt's leg never collides with the next one's.
const AGENT_LEG_BASE: LegId = 10;

/// The longest `X-Warmline-Summary` sent (screen-pops show a line or two).
const SUMMARY_HEADER_MAX: usize = 200;

/// A leg's place in the call's media session.
fn media_leg(leg: Leg) -> LegId {
    match leg {
        Leg::Caller => CALLER_LEG,
        Leg::Far => FAR_LEG,
        Leg::Agent(n) => AGENT_LEG_BASE + n,
    }
}

fn leg_of(id: LegId) -> Leg {
    match id {
        CALLER_LEG => Leg::Caller,
        FAR_LEG => Leg::Far,
        n => Leg::Agent(n.saturating_sub(AGENT_LEG_BASE)),
    }
}

fn sdp_header() -> Vec<Header> {
    vec![Header::ContentType("application/sdp".into())]
}

fn body_text(body: &[u8]) -> Option<String> {
    (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

/// A message's headers as `(name, value)` pairs, for the sans-IO readers.
fn header_pairs(headers: &rsipstack::sip::Headers) -> impl Iterator<Item = (&str, &str)> {
    headers.iter().map(|h| (h.name(), h.value()))
}

/// `(name, value)` pairs as headers.
fn other_headers(pairs: Vec<(&'static str, String)>) -> impl Iterator<Item = Header> {
    pairs
        .into_iter()
        .map(|(name, value)| Header::Other(name.into(), value))
}

fn call_config(gw: &Gateway, rtp: &RtpReservation) -> CallConfig {
    let bridge = matches!(gw.cfg.route, RouteMode::Bridge { .. });
    CallConfig {
        local_media: LocalMedia {
            addr: gw.advertised(),
            port: rtp.port(),
            codecs: gw.cfg.media.codecs.clone(),
            srtp: gw.cfg.media.srtp,
            // A fresh master key and salt per call (RFC 4568 §6.1), from the OS-seeded CSPRNG.
            srtp_key: SrtpKey(rand::random()),
        },
        session_id: u64::from(rand::random::<u32>()),
        rng_seed: rand::random(),
        answer_after: gw.cfg.sip.answer_after,
        ring_timeout: gw.cfg.outbound.ring_timeout,
        answer_on_command: bridge,
        greeting: !bridge && gw.planes.media.prompts.greeting.is_some(),
        greeting_barge_in: gw.cfg.media.greeting_barge_in,
        // The policy listens to callers the assistant answers.
        rules: (!bridge).then(|| gw.rules.clone()),
        caller_id: String::new(),
        asserted_id: None,
        caller_name: None,
        assistant: if bridge {
            None
        } else {
            gw.planes.assistant.dialogue.clone()
        },
        brain: !bridge && gw.planes.assistant.has_brain() && gw.planes.assistant.dialogue.is_some(),
        llm_briefing: !bridge && gw.planes.assistant.writes_briefings(),
        routes: gw.planes.assistant.routes.clone(),
        wall_clock: Some((Instant::now(), jiff::Timestamp::now())),
        call_id: String::new(),
        public_url: gw.cfg.http.public_url.clone(),
        unheard: false,
        session_timer: None,
        min_se: gw.cfg.sip.min_se_s,
    }
}

/// The config of a call we place: no assistant, no policy, our codec order but `prefer`
/// first.
fn outbound_config(
    gw: &Gateway,
    rtp: &RtpReservation,
    ring_timeout: Option<std::time::Duration>,
    prefer: Option<CodecName>,
) -> CallConfig {
    let mut cfg = call_config(gw, rtp);
    cfg.answer_on_command = false;
    cfg.greeting = false;
    cfg.rules = None;
    cfg.assistant = None;
    cfg.brain = false;
    cfg.llm_briefing = false;
    if let Some(t) = ring_timeout {
        cfg.ring_timeout = t;
    }
    if let Some(c) = prefer {
        cfg.local_media.codecs.retain(|x| *x != c);
        cfg.local_media.codecs.insert(0, c);
    }
    cfg
}

/// The display name of a From/To value: `"Ada Lovelace" <sip:…>` or `Ada <sip:…>`.
fn display_name(value: &str) -> Option<String> {
    let v = value.trim();
    let name = match v.strip_prefix('"') {
        Some(rest) => rest.split('"').next().unwrap_or(""),
        None => v
            .split('<')
            .next()
            .filter(|_| v.contains('<'))
            .unwrap_or(""),
    };
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// A header value on one line, at most `max` characters.
fn header_value(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// A call task's inbox: a leg's local commands and the results of what the leg started (a
/// re-INVITE's answer, the INVITE's final response, the brain's reply, a prompt that could
/// not play). Its dialog's states come on the leg's own channel ([`next_state`]). Messages
/// travel boxed (rsipstack's patch 6 wrapper): a tokio channel's first block holds 32
/// messages inline, 1.6 KB for the life of every call that gets a handful.
type Inbox = boxed::UnboundedSender<(Leg, CallEvent)>;

/// Where a leg's events go (local commands, results of what the leg started): straight into
/// its call's inbox, tagged with the leg. A channel and a forwarding task per leg did the
/// same for about 1.8 KB of every leg's life.
#[derive(Clone, Debug)]
pub struct LegEvents {
    inbox: Inbox,
    leg: Leg,
}

/// The call's task has ended: nothing hears the event.
#[derive(Debug)]
pub struct CallEnded;

impl LegEvents {
    pub fn send(&self, event: CallEvent) -> Result<(), CallEnded> {
        self.inbox.send((self.leg, event)).map_err(|_| CallEnded)
    }
}

/// The next dialog state of any of the call's legs, `None` once a leg's channel has closed
/// (that leg's receiver is then dropped from `states`). The call's task reads the channels
/// itself: a forwarding task per leg cost a spawn, and a second hop and wake-up for every
/// state, on every call set-up (issue 14).
fn next_state(
    states: &mut Vec<(Leg, DialogStateReceiver)>,
) -> impl std::future::Future<Output = (Leg, Option<DialogState>)> + '_ {
    std::future::poll_fn(move |cx| {
        for i in 0..states.len() {
            if let std::task::Poll::Ready(s) = states[i].1.poll_recv(cx) {
                let leg = states[i].0;
                if s.is_none() {
                    states.swap_remove(i);
                }
                return std::task::Poll::Ready((leg, s));
            }
        }
        std::task::Poll::Pending
    })
}

/// A 503's headers: when to try again, and why (RFC 3261 §20.33, §20.43).
fn unavailable(gw: &Gateway, why: &str) -> Vec<Header> {
    vec![
        Header::Other("Retry-After".into(), gw.cfg.sip.retry_after_s.to_string()),
        Header::Other("Warning".into(), format!("399 warmline \"{why}\"")),
    ]
}

/// Take an admitted INVITE: decide with the controller, answer or refuse, then start the
/// call's own task. Setting up returns when the call is running, so that what only the
/// set-up needs (the transaction's task, this future: tens of kilobytes) is not kept for the
/// call's lifetime.
pub(super) async fn run_inbound(gw: Arc<Gateway>, mut tx: Transaction, slot: Option<LegSlot>) {
    let call_id = tx
        .original
        .call_id_header()
        .map(|h| h.value().to_string())
        .unwrap_or_default();
    let span = tracing::info_span!("call", call_id = %call_id);
    async move {
        // An extension the caller requires and we do not have (RFC 3261 §8.2.2.3).
        let unsupported = extensions::unsupported(header_pairs(&tx.original.headers));
        if !unsupported.is_empty() {
            tracing::info!(
                ?unsupported,
                "INVITE refused: it requires an extension we lack (420)"
            );
            let _ = Box::pin(tx.reply_with(
                StatusCode::BadExtension,
                vec![Header::Unsupported(unsupported.join(", ").into())],
                None,
            ))
            .await;
            return;
        }
        // Session timers next (RFC 4028 §9): an interval we will not run is refused
        // before anything is reserved, and the peer asks again with our Min-SE.
        let session_timer = match session_timer::parse(header_pairs(&tx.original.headers)) {
            Err(e) => {
                gw.planes.metrics.session_timer_refused.inc();
                tracing::info!(error = %e, "INVITE refused: malformed session-timer header");
                let _ = Box::pin(tx.reply_with(
                    StatusCode::BadRequest,
                    vec![Header::Other(
                        "Warning".into(),
                        format!("399 warmline \"{e}\""),
                    )],
                    None,
                ))
                .await;
                return;
            }
            Ok(asked) => match session_timer::answer(&asked, gw.cfg.sip.min_se_s) {
                session_timer::Answer::TooSmall { min_se } => {
                    gw.planes.metrics.session_timer_refused.inc();
                    tracing::info!(
                        asked = asked.expires,
                        min_se,
                        "INVITE refused: session interval too small (422)"
                    );
                    let _ = Box::pin(tx.reply_with(
                        StatusCode::from(422),
                        vec![Header::MinSE(min_se.to_string().into())],
                        None,
                    ))
                    .await;
                    return;
                }
                session_timer::Answer::None => None,
                session_timer::Answer::Run(a) => Some(a),
            },
        };
        // A place under the speech capacity for a caller the assistant will listen to.
        // None left: refused before anything is reserved, or answered unheard.
        let mut unheard = false;
        let listen = match (&gw.planes.speech, &gw.cfg.route) {
            (Some(speech), RouteMode::Assistant) => match speech.claim() {
                Some(slot) => Some(slot),
                None if gw.cfg.speech.over_capacity == OverCapacity::Agents => {
                    gw.planes.metrics.speech_over_agents.inc();
                    tracing::info!(
                        capacity = speech.capacity(),
                        "speech recognizer at capacity: the call goes straight to the agents"
                    );
                    unheard = true;
                    None
                }
                None => {
                    gw.planes.metrics.speech_over_refused.inc();
                    tracing::info!(
                        capacity = speech.capacity(),
                        "INVITE refused: speech recognizer at capacity"
                    );
                    let _ = Box::pin(tx.reply_with(
                        StatusCode::ServiceUnavailable,
                        unavailable(&gw, "speech capacity reached"),
                        None,
                    ))
                    .await;
                    return;
                }
            },
            _ => None,
        };
        let rtp = match gw.ports().reserve() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "INVITE refused: no RTP port");
                let _ = Box::pin(tx.reply_with(
                    StatusCode::ServiceUnavailable,
                    unavailable(&gw, "no RTP port"),
                    None,
                ))
                .await;
                return;
            }
        };
        let mut cfg = call_config(&gw, &rtp);
        cfg.call_id = call_id.clone();
        cfg.session_timer = session_timer;
        if unheard {
            // Nothing listens, so nothing should ask them to talk: no assistant or brain
            // (the controller drops the greeting and hands the call over once it is up).
            cfg.unheard = true;
            cfg.assistant = None;
            cfg.brain = false;
        }
        cfg.caller_id = tx
            .original
            .from_header()
            .ok()
            .and_then(|h| h.uri().ok())
            .map(|u| u.to_string())
            .unwrap_or_default();
        cfg.caller_name = tx
            .original
            .from_header()
            .ok()
            .and_then(|h| display_name(h.value()));
        cfg.asserted_id = tx.original.headers.iter().find_map(|h| match h {
            Header::Other(name, value) if name.eq_ignore_ascii_case("P-Asserted-Identity") => Some(
                value
                    .trim()
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ),
            _ => None,
        });
        let bridge_to = match &gw.cfg.route {
            RouteMode::Bridge { target } => Some(target.clone()),
            RouteMode::Assistant => None,
        };
        let from = tx
            .original
            .from_header()
            .map(|h| h.value().to_string())
            .unwrap_or_default();
        let to = tx
            .original
            .to_header()
            .map(|h| h.value().to_string())
            .unwrap_or_default();
        let mut call = Call::inbound(
            cfg,
            CallSetup {
                bridge_to,
                from: from.clone(),
                to: to.clone(),
                keep_transcripts: gw.cfg.store.keep_transcripts,
                crm_url: gw.cfg.crm.webhook_url.clone(),
            },
        );
        call.handle(
            Instant::now(),
            Leg::Caller,
            CallEvent::Invite {
                sdp: body_text(&tx.original.body),
            },
        );

        // A refusal decided on the INVITE alone needs no dialog.
        if call.is_ended() {
            let first = call.poll_action();
            // The refusal's end is counted like any call's (e.g. `call.rejected` for an offer
            // we cannot take: no common codec, unusable a=crypto).
            while let Some((_, action)) = call.poll_action() {
                if let CallAction::Ended { reason } = action {
                    gw.planes.metrics.call_ended("inbound", reason.code());
                }
            }
            if let Some((
                _,
                CallAction::Reject {
                    status,
                    reason,
                    warning,
                },
            )) = first
            {
                tracing::info!(status, %reason, ?warning, "INVITE rejected");
                let headers = warning
                    .map(|w| vec![Header::Other("Warning".into(), w)])
                    .unwrap_or_default();
                let _ = Box::pin(tx.reply_with(StatusCode::from(status), headers, None)).await;
            }
            return;
        }

        let (state_tx, state_rx) = gw.dialog_layer().new_dialog_state_channel();
        let dialog = match gw.dialog_layer().get_or_create_server_invite(
            &tx,
            state_tx,
            None,
            Some(gw.contact_for(
                tx.connection.as_ref().and_then(|c| c.get_addr().r#type),
                tx.original.uri.scheme == Some(Scheme::Sips),
            )),
        ) {
            Ok(d) => d,
            Err(e) => {
                // The request is what is wrong (over UDP the guard has already answered a
                // missing or bad Contact; over TCP it lands here): 400, saying why.
                tracing::warn!(error = %e, "could not create dialog");
                let why: String = e
                    .to_string()
                    .chars()
                    .filter(|c| !c.is_control() && *c != '"')
                    .take(80)
                    .collect();
                let warning = Header::Other("Warning".into(), format!("399 warmline \"{why}\""));
                let _ = Box::pin(tx.reply_with(StatusCode::BadRequest, vec![warning], None)).await;
                return;
            }
        };
        // The INVITE server transaction lives on in its own task: it retransmits our 2xx,
        // absorbs the ACK, and turns a CANCEL into 487.
        let mut dlg = dialog.clone();
        tokio::spawn(
            async move {
                if let Err(e) = dlg.handle(&mut tx).await {
                    tracing::debug!(error = %e, "INVITE transaction ended with an error");
                }
            }
            .in_current_span(),
        );
        let mut task = CallTask::new(gw, call);
        task.open(
            Leg::Caller,
            LegOpen {
                call_id,
                dialog: Some(dialog),
                states: state_rx,
                from,
                to,
                rtp,
                tap: listen,
                outcome: None,
                span: tracing::Span::current(),
                invite: None,
                slot,
            },
        );
        // The call runs in a task of its own, sized for the call alone: the transaction's
        // task (and this future, with everything setting the call up) ends here.
        tokio::spawn(task.run().in_current_span());
    }
    .instrument(span)
    .await;
}

/// A dialog placed by [`place`]: its Call-ID, its state channel and the INVITE's result.
struct Placed {
    call_id: String,
    dialog: InviteDialog,
    states: DialogStateReceiver,
    invite: tokio::task::JoinHandle<InviteResult>,
}

/// Send an INVITE carrying `offer` to `callee`.
fn place(
    gw: &Gateway,
    callee: &Uri,
    req: &Originate,
    offer: String,
) -> Result<Placed, OriginateError> {
    // A `sips:` URI is reached over TLS (RFC 3261 §26.2.2); the stack picks the transport
    // from the URI's `transport` parameter alone, so a `sips:` URI without one says it.
    let sips = callee.scheme == Some(Scheme::Sips);
    let mut callee = callee.clone();
    if sips && callee.transport().is_none() {
        callee.params.push(Param::Transport(Transport::Tls));
    }
    let transport = callee.transport().cloned().unwrap_or(Transport::Udp);
    let username = req
        .auth_username
        .clone()
        .or_else(|| gw.cfg.outbound.auth_username.clone());
    let password = req
        .auth_password
        .clone()
        .or_else(|| gw.cfg.outbound.auth_password.clone());
    let credential = username
        .zip(password)
        .map(|(username, password)| Credential {
            username,
            password,
            realm: None,
            auth_username: None,
        });
    let from_user = req
        .from_user
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| gw.cfg.outbound.from_user.clone());
    let caller = Uri::try_from(
        format!(
            "sip:{}@{}",
            from_user,
            super::host_port(gw.advertised(), gw.cfg.sip.listen[0].addr.port())
        )
        .as_str(),
    )
    .map_err(|e| OriginateError::Stack(e.to_string()))?;
    let mut headers: Vec<Header> = req
        .headers
        .iter()
        .map(|(k, v)| Header::Other(k.clone(), v.clone()))
        .collect();
    // Ask for a session timer (RFC 4028 §7.1), leaving the refresher to the callee: an
    // agent's phone that supports timers says in its 2xx who refreshes; one that does not
    // answers without Session-Expires and the call runs without one.
    if gw.cfg.sip.session_expires_s > 0 {
        headers.extend([
            Header::Supported("timer".into()),
            Header::SessionExpires(gw.cfg.sip.session_expires_s.to_string().into()),
            Header::MinSE(gw.cfg.sip.min_se_s.to_string().into()),
        ]);
    }
    let opt = InviteOption {
        caller,
        caller_display_name: req.from_display.clone(),
        callee,
        contact: gw.contact_for(Some(transport), sips),
        content_type: Some("application/sdp".into()),
        offer: Some(offer.into_bytes()),
        credential,
        headers: (!headers.is_empty()).then_some(headers),
        // RFC 3262: a callee that sends its 18x reliably gets them PRACKed.
        support_prack: true,
        ..Default::default()
    };
    let (state_tx, states) = gw.dialog_layer().new_dialog_state_channel();
    let (dialog, invite) = gw
        .dialog_layer()
        .do_invite_async(opt, state_tx)
        .map_err(|e| OriginateError::Stack(e.to_string()))?;
    Ok(Placed {
        call_id: dialog.id().call_id.clone(),
        dialog,
        states,
        invite,
    })
}

/// The final response to our INVITE arrives through the join handle, not the dialog
/// states: report it to the leg.
fn report_invite_result(invite: tokio::task::JoinHandle<InviteResult>, to: LegEvents) {
    tokio::spawn(async move {
        let event = match invite.await {
            Ok(Ok((_, Some(resp)))) => {
                let status = resp.status_code.code();
                if (200..300).contains(&status) {
                    CallEvent::Answered {
                        // Unreadable: taken as none, so the call goes on without a timer.
                        timer: session_timer::parse(header_pairs(&resp.headers))
                            .unwrap_or_default(),
                        sdp: body_text(&resp.body),
                    }
                } else {
                    CallEvent::Failed { status }
                }
            }
            Ok(Ok((_, None))) => CallEvent::Unreachable {
                reason: "no final response".into(),
            },
            Ok(Err(e)) => CallEvent::Unreachable {
                reason: e.to_string(),
            },
            Err(e) => CallEvent::Unreachable {
                reason: e.to_string(),
            },
        };
        let _ = to.send(event);
    });
}

type InviteResult = Result<
    (
        rsipstack::dialog::DialogId,
        Option<rsipstack::sip::Response>,
    ),
    rsipstack::Error,
>;

/// Place an outbound call through the API and return its id and a receiver for its
/// outcome.
pub(super) fn start_outbound(
    gw: Arc<Gateway>,
    callee: Uri,
    req: Originate,
    rtp: RtpReservation,
) -> Result<(String, oneshot::Receiver<OriginateOutcome>), OriginateError> {
    let cfg = outbound_config(&gw, &rtp, req.ring_timeout, None);
    let (call, offer) = Call::outbound(Instant::now(), cfg);
    let placed = place(&gw, &callee, &req, offer)?;
    let id = placed.call_id.clone();
    let (outcome_tx, outcome_rx) = oneshot::channel();
    let span = tracing::info_span!("call", call_id = %id);
    let mut task = {
        let _g = span.enter();
        CallTask::new(gw, call)
    };
    {
        let _g = span.enter();
        task.open(
            Leg::Caller,
            LegOpen {
                call_id: id.clone(),
                dialog: Some(placed.dialog),
                states: placed.states,
                from: "warmline".into(),
                to: callee.to_string(),
                rtp,
                tap: None,
                outcome: Some(outcome_tx),
                span: span.clone(),
                invite: Some(placed.invite),
                slot: None,
            },
        );
    }
    tracing::info!(parent: &span, to = %callee, "outbound call");
    tokio::spawn(async move { task.run().await }.instrument(span));
    Ok((id, outcome_rx))
}

/// What a leg needs to start.
struct LegOpen {
    call_id: String,
    dialog: Option<InviteDialog>,
    states: DialogStateReceiver,
    from: String,
    to: String,
    rtp: RtpReservation,
    /// Feed the leg's audio to the speech pipeline, which holds this place under the
    /// speech capacity.
    tap: Option<ListenSlot>,
    /// Where an API originate hears its outcome.
    outcome: Option<oneshot::Sender<OriginateOutcome>>,
    span: tracing::Span,
    /// Our INVITE's final response, for a leg we placed.
    invite: Option<tokio::task::JoinHandle<InviteResult>>,
    /// Its place under max_calls, taken at admission (inbound); taken here otherwise.
    slot: Option<LegSlot>,
}

/// What is I/O about one leg.
struct LegIo {
    call_id: String,
    dialog: Option<InviteDialog>,
    /// The peer's re-INVITE/UPDATE waiting for our answer.
    reoffer: Option<TransactionHandle>,
    events: LegEvents,
    info: Arc<Mutex<CallInfo>>,
    /// Speaks on this leg (the assistant to the caller, the briefing to an agent).
    voice: Option<Voice>,
    outcome: Option<oneshot::Sender<OriginateOutcome>>,
    span: tracing::Span,
    /// Held for the leg's life.
    _slot: LegSlot,
    /// Where what ends this leg is kept for a restart after a crash: the call's trail id,
    /// the leg's name, and whether it is the BYE of a confirmed leg (else the INVITE of a
    /// ringing one, to be cancelled).
    kept: Option<(String, String, bool)>,
}

struct CallTask {
    gw: Arc<Gateway>,
    call: Call,
    legs: HashMap<Leg, LegIo>,
    inbox_tx: Inbox,
    inbox: boxed::UnboundedReceiver<(Leg, CallEvent)>,
    /// Each open leg's dialog states, until its channel closes.
    states: Vec<(Leg, DialogStateReceiver)>,
    media: MediaHandle,
    media_tx: mpsc::UnboundedSender<MediaEvent>,
    media_events: mpsc::UnboundedReceiver<MediaEvent>,
    speech_tx: mpsc::UnboundedSender<PipelineEvent>,
    speech_events: mpsc::UnboundedReceiver<PipelineEvent>,
    /// When the last turn's text arrived, and its recognition latency.
    last_turn: Option<(Instant, u64)>,
    /// Speech rendered ahead of a `Say` with the same text (the agent's briefing, rendered
    /// while their phone rings).
    prepared: Option<Rendering>,
}

impl CallTask {
    fn new(gw: Arc<Gateway>, call: Call) -> Self {
        let (inbox_tx, inbox) = boxed::unbounded_channel();
        let (media_tx, media_events) = mpsc::unbounded_channel();
        let (speech_tx, speech_events) = mpsc::unbounded_channel();
        let media = MediaHandle::spawn(gw.planes.media.clone());
        Self {
            gw,
            call,
            legs: HashMap::new(),
            inbox_tx,
            inbox,
            states: Vec::new(),
            media,
            media_tx,
            media_events,
            speech_tx,
            speech_events,
            last_turn: None,
            prepared: None,
        }
    }

    /// Register a leg with the gateway, join it to the media session and listen to it.
    fn open(&mut self, leg: Leg, o: LegOpen) {
        let Some((role, snapshot)) = self.call.leg(leg).map(|c| (c.role(), c.snapshot())) else {
            return;
        };
        let events = LegEvents {
            inbox: self.inbox_tx.clone(),
            leg,
        };
        self.states.push((leg, o.states));
        if let Some(invite) = o.invite {
            report_invite_result(invite, events.clone());
        }
        let info = Arc::new(Mutex::new(CallInfo {
            id: o.call_id.clone(),
            from: o.from,
            to: o.to,
            rtp_port: o.rtp.port(),
            snapshot,
            partner: None,
            media: None,
        }));
        self.gw.register(
            o.call_id.clone(),
            CallHandle {
                commands: events.clone(),
                info: info.clone(),
            },
        );
        // The caller's words go to the speech pipeline when this leg is listened to.
        let tap = match (&self.gw.planes.speech, o.tap) {
            (Some(speech), Some(slot)) => {
                let _g = o.span.enter();
                Some(speech.spawn_pipeline(self.speech_tx.clone(), slot))
            }
            _ => None,
        };
        self.media.add_leg(NewLeg {
            id: media_leg(leg),
            sockets: o.rtp,
            tap,
            events: self.media_tx.clone(),
            report: report_into(info.clone(), |i: &mut CallInfo, r| {
                i.media = Some(r.clone())
            }),
            record_as: self.gw.planes.media.recording().then(|| o.call_id.clone()),
            // A caller's SDP address is only a claim until the ACK comes back: nothing is
            // sent there before (an unACKed INVITE must not aim our audio at anyone).
            await_peer: role == Role::Inbound,
        });
        self.legs.insert(
            leg,
            LegIo {
                call_id: o.call_id,
                dialog: o.dialog,
                reoffer: None,
                events,
                info,
                voice: None,
                outcome: o.outcome,
                span: o.span,
                _slot: o.slot.unwrap_or_else(|| self.gw.claim_placed()),
                kept: None,
            },
        );
    }

    /// Place the call the `Call` asked for on `leg`: its media joins this call's session.
    fn dial(&mut self, leg: Leg, dial: Dial) {
        let now = Instant::now();
        let req = self.originate_request(&dial);
        let reserved = Uri::try_from(dial.target.as_str())
            .map_err(|e| OriginateError::BadUri(e.to_string()))
            .and_then(|uri| Ok((uri, self.gw.ports().reserve()?)));
        let (uri, rtp) = match reserved {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(?leg, target = %dial.target, error = %e, "call not placed");
                self.call.dial_failed(now, leg, e.to_string());
                return;
            }
        };
        let cfg = outbound_config(&self.gw, &rtp, dial.ring_timeout, dial.prefer);
        let Some(offer) = self.call.open_leg(now, leg, cfg) else {
            return;
        };
        match place(&self.gw, &uri, &req, offer) {
            Ok(placed) => {
                let span = tracing::info_span!("call", call_id = %placed.call_id);
                tracing::info!(?leg, peer_call = %placed.call_id, target = %dial.target, "calling");
                tracing::info!(parent: &span, to = %uri, "outbound call");
                self.open(
                    leg,
                    LegOpen {
                        call_id: placed.call_id,
                        dialog: Some(placed.dialog),
                        states: placed.states,
                        from: "warmline".into(),
                        to: uri.to_string(),
                        rtp,
                        tap: None,
                        outcome: None,
                        span,
                        invite: Some(placed.invite),
                        slot: None,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(?leg, target = %dial.target, error = %e, "call not placed");
                self.call.handle(
                    now,
                    leg,
                    CallEvent::Unreachable {
                        reason: e.to_string(),
                    },
                );
            }
        }
    }

    /// The INVITE of a dialled leg: an agent's carries who the call is for and why.
    fn originate_request(&self, dial: &Dial) -> Originate {
        let Some(screen) = &dial.screen else {
            return Originate {
                to: dial.target.clone(),
                ring_timeout: dial.ring_timeout,
                ..Originate::default()
            };
        };
        let ScreenPop {
            caller_number: number,
            caller_name: name,
            reason,
            summary,
        } = screen;
        let base = &self.gw.cfg.http.public_url;
        let host = super::host_port(self.gw.advertised(), self.gw.cfg.sip.listen[0].addr.port());
        let who = if number.is_empty() {
            "caller"
        } else {
            number.as_str()
        };
        let pai = match name {
            Some(n) => format!(
                "\"{}\" <sip:{who}@{host}>",
                header_value(n, 64).replace('"', "")
            ),
            None => format!("<sip:{who}@{host}>"),
        };
        let id = self.caller_id();
        Originate {
            to: dial.target.clone(),
            ring_timeout: dial.ring_timeout,
            from_display: name
                .clone()
                .or_else(|| (!number.is_empty()).then(|| number.clone())),
            from_user: (!number.is_empty()).then(|| number.clone()),
            headers: vec![
                ("P-Asserted-Identity".into(), pai),
                (
                    "Call-Info".into(),
                    format!("<{base}/api/calls/{id}/context>;purpose=info"),
                ),
                ("X-Warmline-Call-Id".into(), id.to_string()),
                ("X-Warmline-Reason".into(), header_value(reason, 120)),
                (
                    "X-Warmline-Summary".into(),
                    header_value(summary, SUMMARY_HEADER_MAX),
                ),
            ],
            ..Originate::default()
        }
    }

    /// The caller leg's Call-ID: the call's name in the store and the API.
    fn caller_id(&self) -> &str {
        self.legs
            .get(&Leg::Caller)
            .map_or("", |io| io.call_id.as_str())
    }

    /// Write to the audit trail of the leg's own Call-ID (the caller's is the call's).
    fn record(&self, leg: Leg, event: &Audit) {
        if let Some(io) = self.legs.get(&leg) {
            let planes = &self.gw.planes;
            planes.store.record(&io.call_id, event);
        }
    }

    /// The call's task. Not an `async fn`: one of those keeps its by-value `self` twice in
    /// its future (rust-lang/rust#62958), and this future is a call's largest allocation
    /// for its whole life.
    fn run(self) -> impl Future<Output = ()> + Send {
        // Rebound outside the block: `async move { self.… }` alone reads as a manual
        // async fn to clippy, whose suggested rewrite is the layout this avoids.
        let mut task = self;
        async move { task.run_loop().await }
    }

    async fn run_loop(&mut self) {
        // One timer for the call's life, moved only when the call's deadline moves. A new
        // Sleep each turn of the loop was a timer-wheel insert and remove per input, and an
        // insert earlier than the time driver's next wake-up writes its eventfd to wake the
        // thread parked on it: 22 % of warmline's eventfd writes at 500 call set-ups a
        // second (issue 14; `perf record -e syscalls:sys_enter_write`).
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            self.execute().await;
            for (leg, io) in &self.legs {
                if let Some(c) = self.call.leg(*leg) {
                    lock(&io.info).snapshot = c.snapshot();
                }
            }
            if self.call.is_ended() {
                break;
            }
            let deadline = self.call.poll_timeout();
            if deadline != armed {
                if let Some(t) = deadline {
                    sleep.as_mut().reset(t.into());
                }
                armed = deadline;
            }
            tokio::select! {
                Some((leg, input)) = self.inbox.recv() => self.on_input(leg, input),
                (leg, state) = next_state(&mut self.states) => match state {
                    Some(state) => self.on_dialog_state(leg, state),
                    None => self.call.handle(
                        Instant::now(),
                        leg,
                        CallEvent::DialogFailed {
                            reason: "dialog gone".into(),
                        },
                    ),
                },
                Some(ev) = self.media_events.recv() => self.on_media_event(ev),
                Some(ev) = self.speech_events.recv() => self.on_speech(ev),
                // A timer that has fired is ready at every poll until it is moved: it is
                // disarmed here, and armed again with whatever deadline the call has next.
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.call.handle_timeout(Instant::now());
                }
            }
        }
        // Legs that never saw their end (a dialog that failed before its controller did).
        let legs: Vec<Leg> = self.legs.keys().copied().collect();
        for leg in legs {
            self.close(leg);
        }
    }

    /// Store the BYE that ends this confirmed leg, so that a restart after a crash can
    /// hang up the phone this process would otherwise leave connected to nobody.
    /// The session-timer headers a leg's next message carries: our re-INVITE
    /// (`request`), or our 2xx to its INVITE or refresh.
    fn session_headers(&self, leg: Leg, request: bool) -> Vec<(&'static str, String)> {
        self.call.leg(leg).map_or_else(Vec::new, |c| {
            if request {
                c.session_request_headers()
            } else {
                c.session_response_headers()
            }
        })
    }

    fn keep_bye(&mut self, leg: Leg) {
        let bye = self
            .legs
            .get(&leg)
            .and_then(|io| io.dialog.as_ref())
            .and_then(InviteDialog::bye_request);
        if let Some(bye) = bye {
            self.keep(leg, bye, true);
        }
    }

    /// Store the INVITE of a leg we placed once its phone rings: a restart after a crash
    /// cancels it (the INVITE as sent, Via branch and all, is what a CANCEL must match),
    /// where the phone would otherwise ring on for a caller the dead process dropped.
    fn keep_invite(&mut self, leg: Leg) {
        let invite = self
            .legs
            .get(&leg)
            .and_then(|io| io.dialog.as_ref())
            .filter(|d| d.role() == TransactionRole::Client)
            .map(InviteDialog::initial_request);
        if let Some(invite) = invite {
            self.keep(leg, invite, false);
        }
    }

    /// Keep `request` as what ends `leg`; a confirmed leg's BYE replaces its INVITE, and
    /// nothing replaces the BYE.
    fn keep(&mut self, leg: Leg, request: Request, confirmed: bool) {
        let trail = self.legs.get(&Leg::Caller).map(|io| io.call_id.clone());
        let Some(io) = self.legs.get_mut(&leg) else {
            return;
        };
        if io.kept.as_ref().is_some_and(|k| k.2 || !confirmed) {
            return;
        }
        let (trail, name) = match io.kept.take() {
            Some((trail, name, _)) => (trail, name),
            None => (trail.unwrap_or_else(|| io.call_id.clone()), leg_name(leg)),
        };
        self.gw
            .planes
            .store
            .open_leg(&trail, &name, request.to_string());
        io.kept = Some((trail, name, confirmed));
    }

    /// Release what a leg holds once its controller has ended.
    fn close(&mut self, leg: Leg) {
        let Some(io) = self.legs.remove(&leg) else {
            return;
        };
        if let Some((trail, name, _)) = &io.kept {
            self.gw.planes.store.close_leg(trail, name);
        }
        self.media.remove_leg(media_leg(leg));
        if let Some(d) = &io.dialog {
            self.gw.dialog_layer().remove_dialog(&d.id());
        }
        self.gw.unregister(&io.call_id);
    }

    fn on_input(&mut self, leg: Leg, event: CallEvent) {
        self.call.handle(Instant::now(), leg, event);
    }

    fn on_speech(&mut self, ev: PipelineEvent) {
        let now = Instant::now();
        match ev {
            PipelineEvent::SpeechStarted => {
                self.call.handle(now, Leg::Caller, CallEvent::SpeechStarted)
            }
            PipelineEvent::Turn(turn) => {
                self.last_turn = Some((Instant::now(), turn.latency_ms + turn.endpoint_ms));
                let p = turn.prosody.as_ref();
                tracing::info!(
                    text = %turn.text,
                    confidence = format_args!("{:.2}", turn.confidence),
                    recognizer = %turn.recognizer,
                    start_ms = turn.start_ms,
                    end_ms = turn.end_ms,
                    latency_ms = turn.latency_ms,
                    arousal = p.map(|p| p.arousal),
                    pitch_hz = p.map(|p| p.pitch_mean_hz),
                    loudness_db = p.map(|p| p.loudness_db),
                    rate_sps = p.map(|p| p.rate_sps),
                    evidence = ?p.map(|p| &p.evidence),
                    "caller turn"
                );
                self.call
                    .handle(now, Leg::Caller, CallEvent::Transcript { turn });
            }
        }
    }

    fn on_media_event(&mut self, ev: MediaEvent) {
        let now = Instant::now();
        match ev {
            MediaEvent::PlayoutDone {
                leg,
                id,
                interrupted,
            } => {
                tracing::debug!(leg, id, interrupted, "playout done");
                self.call
                    .handle(now, leg_of(leg), CallEvent::PlayoutDone { id, interrupted });
            }
            MediaEvent::Dtmf { leg, digit } => {
                let leg = leg_of(leg);
                if let Some(io) = self.legs.get(&leg) {
                    tracing::info!(parent: &io.span, %digit, "DTMF");
                }
                self.call.handle(now, leg, CallEvent::Dtmf { digit });
            }
            MediaEvent::RtpTimeout { leg, silent_ms } => {
                let leg = leg_of(leg);
                if let Some(io) = self.legs.get(&leg) {
                    tracing::warn!(
                        parent: &io.span,
                        silent_ms,
                        reason = "media.rtp_timeout",
                        "no RTP from the peer; ending the call"
                    );
                }
                self.call
                    .handle(now, leg, CallEvent::MediaTimeout { silent_ms });
            }
            MediaEvent::Quiet { leg, silent_ms } => {
                let leg = leg_of(leg);
                if let Some(io) = self.legs.get(&leg) {
                    tracing::info!(parent: &io.span, silent_ms, "on hold and silent; asking the peer");
                }
                self.call
                    .handle(now, leg, CallEvent::MediaQuiet { silent_ms });
            }
            MediaEvent::SrtpRejected {
                leg,
                auth_failed,
                replayed,
            } => {
                if let Some(io) = self.legs.get(&leg_of(leg)) {
                    tracing::warn!(
                        parent: &io.span,
                        auth_failed,
                        replayed,
                        "SRTP packets dropped: authentication failed (a wrong key, or forged) or replayed"
                    );
                }
            }
        }
    }

    fn on_dialog_state(&mut self, leg: Leg, state: DialogState) {
        let now = Instant::now();
        let outbound = self
            .call
            .leg(leg)
            .is_some_and(|c| c.role() == Role::Outbound);
        let event = match state {
            DialogState::Confirmed(..) => {
                self.media.confirm(media_leg(leg));
                self.keep_bye(leg);
                CallEvent::Ack
            }
            DialogState::Early(_, resp) => {
                self.keep_invite(leg);
                CallEvent::Progress {
                    status: resp.status_code.code(),
                }
            }
            DialogState::Updated(_, req, handle) => {
                if matches!(req.method, Method::Invite | Method::Update) {
                    let timer = match session_timer::parse(header_pairs(&req.headers)) {
                        Ok(t) => t,
                        Err(e) => {
                            self.gw.planes.metrics.session_timer_refused.inc();
                            tracing::info!(error = %e, "re-offer refused: malformed session-timer header");
                            respond_later(handle, StatusCode::BadRequest);
                            return;
                        }
                    };
                    if let Some(io) = self.legs.get_mut(&leg) {
                        io.reoffer = Some(handle);
                    }
                    let sdp = body_text(&req.body);
                    // An UPDATE without a body refreshes the session and offers nothing, so
                    // its 2xx must carry no SDP (RFC 3311 §5.2); an offerless re-INVITE asks
                    // us for an offer instead.
                    if req.method == Method::Update && sdp.is_none() {
                        CallEvent::Refresh { timer }
                    } else {
                        CallEvent::ReOffer { timer, sdp }
                    }
                } else {
                    respond_later(handle, StatusCode::OK);
                    return;
                }
            }
            DialogState::Info(_, _, h)
            | DialogState::Options(_, _, h)
            | DialogState::Notify(_, _, h)
            | DialogState::Message(_, _, h) => {
                respond_later(h, StatusCode::OK);
                return;
            }
            // Call transfer by REFER is not offered; the warm transfer is ours to run.
            DialogState::Refer(_, _, h) | DialogState::Publish(_, _, h) => {
                respond_later(h, StatusCode::Decline);
                return;
            }
            DialogState::Terminated(_, reason) => match reason {
                TerminatedReason::UacBye | TerminatedReason::UasBye => CallEvent::PeerBye,
                TerminatedReason::UacCancel => CallEvent::PeerCancel,
                // Outbound failures arrive with their status through the INVITE result.
                TerminatedReason::UacBusy
                | TerminatedReason::UasBusy
                | TerminatedReason::UasDecline
                | TerminatedReason::UacOther(_)
                | TerminatedReason::UasOther(_)
                | TerminatedReason::ProxyError(_)
                | TerminatedReason::ProxyAuthRequired
                    if outbound =>
                {
                    return;
                }
                other => CallEvent::DialogFailed {
                    reason: format!("{other:?}"),
                },
            },
            DialogState::Calling(_) | DialogState::Trying(_) | DialogState::WaitAck(..) => return,
        };
        self.call.handle(now, leg, event);
    }

    async fn execute(&mut self) {
        while let Some((leg, action)) = self.call.poll_action() {
            let span = self
                .legs
                .get(&leg)
                .map_or_else(tracing::Span::current, |io| io.span.clone());
            self.execute_one(leg, action).instrument(span).await;
        }
    }

    async fn execute_one(&mut self, leg: Leg, action: CallAction) {
        tracing::debug!(?leg, ?action, "call action");
        if let CallAction::Dial(dial) = action {
            self.dial(leg, *dial);
            return;
        }
        // Only a leg whose INVITE could not be placed acts without a dialog.
        let Some((dialog, events, call_id, info)) = self.legs.get(&leg).and_then(|io| {
            let dialog = io.dialog.clone()?;
            Some((
                dialog,
                io.events.clone(),
                io.call_id.clone(),
                io.info.clone(),
            ))
        }) else {
            return;
        };
        match action {
            CallAction::Ring => {
                // A caller that requires 100rel gets its 180 reliably (RFC 3262 §3: RSeq,
                // retransmitted until PRACKed; rsipstack patch 9).
                let sent = if extensions::requires(
                    header_pairs(&dialog.initial_request().headers),
                    "100rel",
                ) {
                    dialog.ringing_reliable(None, None)
                } else {
                    dialog.ringing(None, None)
                };
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "180 not sent");
                }
            }
            CallAction::Answer { sdp } => {
                let mut headers = sdp_header();
                headers.extend(other_headers(self.session_headers(leg, false)));
                if let Err(e) = dialog.accept(Some(headers), Some(sdp.into_bytes())) {
                    tracing::warn!(error = %e, "200 OK not sent");
                }
            }
            CallAction::Reject { status, reason, .. } => {
                if let Err(e) = dialog.reject(Some(StatusCode::from(status)), Some(reason)) {
                    tracing::debug!(error = %e, "rejection not sent");
                }
            }
            CallAction::AnswerReOffer {
                status,
                sdp,
                warning,
            } => {
                let Some(handle) = self.legs.get_mut(&leg).and_then(|io| io.reoffer.take()) else {
                    return;
                };
                let mut headers = if sdp.is_some() {
                    sdp_header()
                } else {
                    Vec::new()
                };
                if let Some(w) = warning {
                    headers.push(Header::Other("Warning".into(), w));
                }
                if status == 491 {
                    // RFC 3261 §14.2 leaves Retry-After optional; it helps peers that use it.
                    headers.push(Header::Other("Retry-After".into(), "1".into()));
                }
                if status == 422 {
                    let min_se = self.call.leg(leg).map_or(0, |c| c.min_se());
                    headers.push(Header::MinSE(min_se.to_string().into()));
                    self.gw.planes.metrics.session_timer_refused.inc();
                }
                if (200..300).contains(&status) {
                    headers.extend(other_headers(self.session_headers(leg, false)));
                }
                tracing::info!(status, "answered re-offer");
                // Boxed: awaited inline, the transaction's future would widen every call's
                // task by its size for the call's whole life, re-offer or not.
                let _ = Box::pin(handle.respond(
                    StatusCode::from(status),
                    Some(headers),
                    sdp.map(String::into_bytes),
                ))
                .await;
            }
            CallAction::SendReInvite { sdp } => {
                let ops = events;
                tracing::info!("sending re-INVITE");
                let mut headers = sdp_header();
                headers.extend(other_headers(self.session_headers(leg, true)));
                tokio::spawn(
                    async move {
                        let event =
                            match dialog.reinvite(Some(headers), Some(sdp.into_bytes())).await {
                                Ok(Some(resp)) => CallEvent::ReInviteResponse {
                                    // A 2xx whose Session-Expires cannot be read is taken as
                                    // saying none: the timer stops rather than the call.
                                    timer: session_timer::parse(header_pairs(&resp.headers))
                                        .unwrap_or_default(),
                                    status: resp.status_code.code(),
                                    sdp: body_text(&resp.body),
                                },
                                // Not confirmed any more: the call is ending anyway.
                                Ok(None) => CallEvent::ReInviteResponse {
                                    timer: Default::default(),
                                    status: 481,
                                    sdp: None,
                                },
                                Err(e) => {
                                    tracing::warn!(error = %e, "re-INVITE failed");
                                    CallEvent::ReInviteResponse {
                                        timer: Default::default(),
                                        status: 408,
                                        sdp: None,
                                    }
                                }
                            };
                        let _ = ops.send(event);
                    }
                    .in_current_span(),
                );
            }
            CallAction::SendInvite { .. } | CallAction::Dial(_) => {
                // Outbound INVITEs are sent when the leg is placed (see `dial`).
            }
            // In their own tasks: the call keeps answering while they wait on the network.
            CallAction::CancelInvite => {
                in_background("CANCEL", async move { dialog.cancel().await });
            }
            CallAction::SendBye => in_background("BYE", async move { dialog.bye().await }),
            CallAction::Probe => {
                let ops = events;
                tokio::spawn(
                    async move {
                        let status = match dialog.request(Method::Options, None, None).await {
                            Ok(Some(resp)) => Some(resp.status_code.code()),
                            Ok(None) => Some(481),
                            Err(e) => {
                                tracing::info!(error = %e, "in-dialog OPTIONS got no answer");
                                None
                            }
                        };
                        tracing::info!(?status, "in-dialog OPTIONS answered");
                        let _ = ops.send(CallEvent::ProbeAnswered { status });
                    }
                    .in_current_span(),
                );
            }
            CallAction::MediaChanged(n) => {
                self.media.configure(media_leg(leg), LegMedia::from(&n));
            }
            CallAction::Bridge { with } => {
                let partner = self.legs.get(&with).map(|io| io.call_id.clone());
                if let Some(partner) = partner {
                    // The message is what operators' tools look for (benches/transfer_report.py).
                    match with {
                        Leg::Agent(attempt) => {
                            tracing::info!(attempt, "bridging the caller and the agent")
                        }
                        other => {
                            tracing::info!(leg = ?other, "bridging the caller and the far end")
                        }
                    }
                    self.media.bridge(media_leg(leg), media_leg(with));
                    // A person has the call: the assistant stops listening, unless the
                    // operator keeps transcripts.
                    if !self.gw.cfg.store.keep_transcripts {
                        self.media.stop_tap(media_leg(leg));
                    }
                    lock(&info).partner = Some(partner);
                }
            }
            CallAction::Play { prompt, id } => {
                let clip = match prompt {
                    Prompt::Greeting => self.gw.planes.media.prompts.greeting.clone(),
                };
                match clip {
                    Some(clip) => self.media.play(media_leg(leg), id, clip),
                    None => self.call.handle(
                        Instant::now(),
                        leg,
                        CallEvent::PlayoutDone {
                            id,
                            interrupted: false,
                        },
                    ),
                }
            }
            CallAction::SendDtmf { digits } => self.media.send_dtmf(media_leg(leg), &digits),
            CallAction::Say { text, id } => {
                if leg == Leg::Caller {
                    tracing::info!(id, %text, "assistant says");
                } else {
                    tracing::info!(id, %text, "briefing the agent");
                }
                let prepared = self.prepared.take().filter(|r| r.text == text);
                let Some(io) = self.legs.get_mut(&leg) else {
                    return;
                };
                let (plane, media) = (&self.gw.planes.assistant, self.media.clone());
                let voice = io
                    .voice
                    .get_or_insert_with(|| plane.voice(media, media_leg(leg), events));
                match prepared {
                    Some(r) => voice.say_rendered(id, r),
                    None => voice.say(id, text),
                }
            }
            CallAction::AskRotation { route } => {
                let position = self.gw.planes.assistant.rotation(&route);
                self.call
                    .handle(Instant::now(), leg, CallEvent::Rotation { position });
            }
            CallAction::PrepareSpeech { text } => {
                self.prepared = Some(self.gw.planes.assistant.prepare(text));
            }
            CallAction::AskBrain { request } => {
                self.gw.planes.assistant.ask(*request, events);
            }
            CallAction::WriteBriefing { packet } => {
                self.gw.planes.assistant.write_briefing(&packet, events);
            }
            CallAction::Audit(event) => self.record(leg, &event),
            CallAction::TransferEnded {
                kind,
                route,
                outcome,
                after_ms,
            } => {
                let m = &self.gw.planes.metrics;
                m.transfers_total
                    .with_label_values(&[kind.as_str(), route.as_str(), outcome.as_str()])
                    .inc();
                if let (TransferOutcome::Bridged, Some(ms)) = (outcome, after_ms) {
                    m.time_to_human.observe(ms as f64 / 1000.0);
                }
            }
            CallAction::Escalate {
                trigger,
                briefing,
                decision,
                after_speech_ms,
            } => {
                tracing::info!(
                    rule = %trigger.rule,
                    kind = %trigger.kind,
                    evidence = ?trigger.evidence,
                    confidence = format_args!("{:.2}", trigger.confidence),
                    route = %trigger.route,
                    disposition = %trigger.disposition,
                    at_ms = trigger.at_ms,
                    since_speech_end_ms = after_speech_ms,
                    "escalation trigger"
                );
                if decision == Decision::Transfer {
                    tracing::info!(briefing = %briefing.spoken, "transfer decided");
                }
            }
            CallAction::StopPlayout => {
                tracing::info!("barge-in: prompt stopped");
                if let Some(v) = self.legs.get(&leg).and_then(|io| io.voice.as_ref()) {
                    v.interrupt();
                }
                self.media.stop_playout(media_leg(leg));
            }
            CallAction::HoldAudio { on } => {
                let music = on.then(|| self.gw.planes.media.prompts.hold.clone());
                self.media.hold(media_leg(leg), music);
            }
            CallAction::Outcome(outcome) => {
                tracing::info!(?outcome, "outbound outcome");
                if matches!(leg, Leg::Agent(_)) {
                    let (name, code) = match &outcome {
                        OriginateOutcome::Answered => ("answered", "200".to_string()),
                        OriginateOutcome::Busy { status } => ("busy", status.to_string()),
                        OriginateOutcome::NoAnswer => ("no_answer", "-".to_string()),
                        OriginateOutcome::Rejected { status, .. } => {
                            ("rejected", status.to_string())
                        }
                        OriginateOutcome::Unreachable { .. } => ("unreachable", "-".to_string()),
                        OriginateOutcome::Cancelled => ("cancelled", "-".to_string()),
                    };
                    self.gw
                        .planes
                        .metrics
                        .agent_attempts_total
                        .with_label_values(&[name, code.as_str()])
                        .inc();
                }
                if let Some(tx) = self.legs.get_mut(&leg).and_then(|io| io.outcome.take()) {
                    let _ = tx.send(outcome);
                }
            }
            CallAction::Ended { reason } => {
                let role = match self.call.leg(leg).map(|c| c.role()) {
                    Some(Role::Outbound) => "outbound",
                    _ => "inbound",
                };
                self.gw.planes.metrics.call_ended(role, reason.code());
                self.close(leg);
            }
            CallAction::PostContext { packet } => match serde_json::to_string(&packet) {
                Ok(body) => {
                    self.gw.planes.store.put_context(&call_id, body.clone());
                    if let Some(url) = &self.gw.cfg.crm.webhook_url {
                        self.gw.planes.store.enqueue(&call_id, url, body);
                    }
                }
                Err(e) => tracing::error!(error = %e, "context packet not serialised"),
            },
            // The `Call` routes these between legs; they never reach a driver.
            CallAction::DialAgent { .. }
            | CallAction::HangupAgent { .. }
            | CallAction::WhisperToAgent { .. }
            | CallAction::BridgeAgent { .. } => {
                tracing::error!("a controller's routing action escaped the call");
            }
        }
    }
}

/// Run a request on the dialog in its own task; a failure is only logged (the dialog's
/// states say what became of the call).
/// A leg's name in the store: `caller`, `far`, `agent-2`.
fn leg_name(leg: Leg) -> String {
    match leg {
        Leg::Caller => "caller".into(),
        Leg::Far => "far".into(),
        Leg::Agent(n) => format!("agent-{n}"),
    }
}

fn in_background<T>(
    what: &'static str,
    request: impl std::future::Future<Output = Result<T, rsipstack::Error>> + Send + 'static,
) {
    tokio::spawn(
        async move {
            if let Err(e) = request.await {
                tracing::debug!(error = %e, "{what} not sent");
            }
        }
        .in_current_span(),
    );
}

fn respond_later(handle: TransactionHandle, status: StatusCode) {
    tokio::spawn(async move {
        let _ = handle.reply(status).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<F: Future>(_: fn(CallTask) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every call holds its task's future for its whole life, so its size is memory per
    /// call (issue 14: 8.1 KB before `run` stopped being an `async fn` holding `self` twice
    /// and the controller boxed what most calls never use; 2.4 KB after).
    #[test]
    fn a_call_task_stays_small() {
        let task = std::mem::size_of::<CallTask>();
        let future = future_size(CallTask::run);
        assert!(task <= 2048, "CallTask is {task} bytes");
        assert!(
            future <= task + 1024,
            "the call's future is {future} bytes for a {task}-byte task"
        );
    }
}
