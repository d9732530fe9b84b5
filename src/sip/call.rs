//! One task per call: feeds the call's [`Controller`] with dialog states, local commands,
//! results of SIP operations and timer expiries, and carries its actions out on the dialog.
//!
//! The task never awaits the network while it could miss an event: re-INVITE, BYE and
//! CANCEL run in their own tasks and report back through `ops`, so a peer's re-INVITE that
//! crosses ours (glare) is still answered.

use super::{CallHandle, CallInfo, Gateway, Originate, OriginateError, lock};
use crate::assistant::{Rendering, Voice};
use crate::config::RouteMode;
use crate::media::{CALLER_LEG, FAR_LEG, MediaHandle, NewLeg, report_into};
use crate::rtp_ports::RtpReservation;
use crate::speech::PipelineEvent;

/// Caller turns (and assistant prompts) kept for the HTTP API.
const TRANSCRIPT_KEPT: usize = 20;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, Uri};
use rsipstack::transaction::transaction::Transaction;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use warmline_call::context::PacketLinks;
use warmline_call::{
    CallAction, CallConfig, CallEvent, Controller, OriginateOutcome, Prompt, TransferOutcome,
};
use warmline_media::{LegId, LegMedia, MediaEvent};
use warmline_policy::Decision;
use warmline_signaling::{CodecName, LocalMedia};

fn sdp_header() -> Vec<Header> {
    vec![Header::ContentType("application/sdp".into())]
}

fn body_text(body: &[u8]) -> Option<String> {
    (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

fn call_config(gw: &Gateway, rtp: &RtpReservation) -> CallConfig {
    let bridge = matches!(gw.cfg.route.mode, RouteMode::Bridge { .. });
    CallConfig {
        local_media: LocalMedia {
            addr: gw.advertised(),
            port: rtp.port(),
            codecs: gw.cfg.media.codecs.clone(),
        },
        session_id: u64::from(rand::random::<u32>()),
        rng_seed: rand::random(),
        answer_after: gw.cfg.sip.answer_after,
        ring_timeout: gw.cfg.outbound.ring_timeout,
        answer_on_command: bridge,
        greeting: !bridge && gw.planes.media.prompts.greeting.is_some(),
        greeting_barge_in: gw.cfg.media.greeting_barge_in,
        // The policy listens to callers the assistant answers.
        rules: (!bridge).then(|| gw.cfg.rules.clone()),
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
    }
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

/// The call an outbound leg reports to, and how.
#[derive(Debug, Clone)]
pub(super) struct Partner {
    tx: mpsc::UnboundedSender<CallEvent>,
    /// `Some(attempt)`: an agent's call in a warm transfer (outcome, digits, prompt ends and
    /// its end go back as `Agent*` events); `None`: the far leg of a B2BUA.
    agent_attempt: Option<u32>,
}

/// How a leg's media is wired: which session, which leg in it, and whether it feeds the
/// speech tap.
pub(super) struct LegPlan {
    media: MediaHandle,
    leg: LegId,
    tap: bool,
}

/// The status a B2BUA gives its caller when the far end did not answer.
fn refusal_for(outcome: &OriginateOutcome) -> u16 {
    match outcome {
        OriginateOutcome::Answered => 200,
        OriginateOutcome::Busy { status } => *status,
        OriginateOutcome::NoAnswer => 480,
        OriginateOutcome::Rejected { status, .. } if (400..700).contains(status) => *status,
        OriginateOutcome::Rejected { .. } | OriginateOutcome::Unreachable { .. } => 502,
        OriginateOutcome::Cancelled => 487,
    }
}

/// Take an admitted INVITE: decide with the controller, answer or refuse, then run the call.
pub(super) async fn run_inbound(gw: Arc<Gateway>, mut tx: Transaction) {
    let call_id = tx
        .original
        .call_id_header()
        .map(|h| h.value().to_string())
        .unwrap_or_default();
    let span = tracing::info_span!("call", call_id = %call_id);
    async move {
        let rtp = match gw.ports().reserve() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "INVITE refused: no RTP port");
                let _ = tx
                    .reply_with(
                        StatusCode::ServiceUnavailable,
                        vec![Header::Other(
                            "Retry-After".into(),
                            gw.cfg.sip.retry_after_s.to_string(),
                        )],
                        None,
                    )
                    .await;
                return;
            }
        };
        let mut cfg = call_config(&gw, &rtp);
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
        let mut ctl = Controller::inbound(cfg);
        ctl.handle(
            Instant::now(),
            CallEvent::Invite {
                sdp: body_text(&tx.original.body),
            },
        );

        // A refusal decided on the INVITE alone needs no dialog.
        if let Some(CallAction::Reject {
            status,
            reason,
            warning,
        }) = peek_reject(&mut ctl)
        {
            tracing::info!(status, %reason, ?warning, "INVITE rejected");
            let headers = warning
                .map(|w| vec![Header::Other("Warning".into(), w)])
                .unwrap_or_default();
            let _ = tx.reply_with(StatusCode::from(status), headers, None).await;
            return;
        }

        let (state_tx, state_rx) = gw.dialog_layer().new_dialog_state_channel();
        let dialog = match gw.dialog_layer().get_or_create_server_invite(
            &tx,
            state_tx,
            None,
            Some(gw.contact().clone()),
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not create dialog");
                let _ = tx.reply(StatusCode::ServerInternalError).await;
                return;
            }
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
        tracing::info!(%from, "inbound call");
        gw.planes
            .store
            .audit(&call_id, "call_start", &format!("from {from} to {to}"));
        let media = MediaHandle::spawn(gw.planes.media.clone());
        let bridge_target = match &gw.cfg.route.mode {
            RouteMode::Bridge { target } => Some(target.clone()),
            RouteMode::Assistant => None,
        };
        // Prefer the caller's codec on the far leg, so the bridge can relay untouched.
        let caller_codec = ctl.pending_media().map(|n| n.codec.name);
        let mut task = CallTask::new(
            gw.clone(),
            call_id,
            ctl,
            Some(dialog),
            state_rx,
            from,
            to,
            rtp,
            None,
            LegPlan {
                media: media.clone(),
                leg: CALLER_LEG,
                tap: bridge_target.is_none(),
            },
        );
        task.codec = caller_codec;
        if let Some(target) = bridge_target {
            task.bridge_on_answer = Some(FAR_LEG);
            let far = Uri::try_from(target.as_str())
                .map_err(|e| OriginateError::BadUri(e.to_string()))
                .and_then(|uri| {
                    let rtp = gw.ports().reserve()?;
                    start_outbound(
                        gw.clone(),
                        uri,
                        Originate {
                            to: target.clone(),
                            ..Originate::default()
                        },
                        rtp,
                        Some(LegPlan {
                            media,
                            leg: FAR_LEG,
                            tap: false,
                        }),
                        Some(Partner {
                            tx: task.ops_tx.clone(),
                            agent_attempt: None,
                        }),
                        caller_codec,
                    )
                });
            match far {
                Ok((id, _, far_commands)) => {
                    tracing::info!(far_call = %id, %target, "bridging to target");
                    lock(&task.info).partner = Some(id);
                    task.partner = Some(Partner {
                        tx: far_commands,
                        agent_attempt: None,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, %target, "bridge target not reachable");
                    task.ctl
                        .handle(Instant::now(), CallEvent::Refuse { status: 502 });
                }
            }
        }
        task.run().await;
    }
    .instrument(span)
    .await;
}

/// If the controller's first action is a refusal, take it (and the `Ended` after it).
fn peek_reject(ctl: &mut Controller) -> Option<CallAction> {
    if !ctl.is_ended() {
        return None;
    }
    let first = ctl.poll_action();
    while ctl.poll_action().is_some() {}
    first
}

/// Start an outbound call and return its id, a receiver for its outcome, and its command
/// sender. With `plan`, its media joins an existing session (a B2BUA far leg); `partner`
/// hears its outcome and its end.
pub(super) fn start_outbound(
    gw: Arc<Gateway>,
    callee: Uri,
    req: Originate,
    rtp: RtpReservation,
    plan: Option<LegPlan>,
    partner: Option<Partner>,
    prefer: Option<CodecName>,
) -> Result<
    (
        String,
        oneshot::Receiver<OriginateOutcome>,
        mpsc::UnboundedSender<CallEvent>,
    ),
    OriginateError,
> {
    let mut cfg = call_config(&gw, &rtp);
    cfg.answer_on_command = false;
    cfg.greeting = false;
    cfg.rules = None;
    cfg.assistant = None;
    cfg.brain = false;
    cfg.llm_briefing = false;
    if let Some(t) = req.ring_timeout {
        cfg.ring_timeout = t;
    }
    if let Some(c) = prefer {
        cfg.local_media.codecs.retain(|x| *x != c);
        cfg.local_media.codecs.insert(0, c);
    }
    let mut ctl = Controller::outbound(Instant::now(), cfg);
    let Some(CallAction::SendInvite { sdp }) = ctl.poll_action() else {
        return Err(OriginateError::Stack("controller did not offer".into()));
    };
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
    let headers: Vec<Header> = req
        .headers
        .iter()
        .map(|(k, v)| Header::Other(k.clone(), v.clone()))
        .collect();
    let opt = InviteOption {
        caller,
        caller_display_name: req.from_display.clone(),
        callee: callee.clone(),
        contact: gw.contact().clone(),
        content_type: Some("application/sdp".into()),
        offer: Some(sdp.into_bytes()),
        credential,
        headers: (!headers.is_empty()).then_some(headers),
        ..Default::default()
    };
    let (state_tx, state_rx) = gw.dialog_layer().new_dialog_state_channel();
    let (dialog, invite) = gw
        .dialog_layer()
        .do_invite_async(opt, state_tx)
        .map_err(|e| OriginateError::Stack(e.to_string()))?;
    let id = dialog.id().call_id.clone();
    let (outcome_tx, outcome_rx) = oneshot::channel();
    let span = tracing::info_span!("call", call_id = %id);
    let plan = match plan {
        Some(p) => p,
        None => {
            let _g = span.enter();
            LegPlan {
                media: MediaHandle::spawn(gw.planes.media.clone()),
                leg: CALLER_LEG,
                tap: false,
            }
        }
    };
    let mut task = CallTask::new(
        gw,
        id.clone(),
        ctl,
        Some(dialog),
        state_rx,
        "warmline".into(),
        callee.to_string(),
        rtp,
        Some(outcome_tx),
        plan,
    );
    task.partner = partner;
    let commands = task.cmd_tx.clone();
    // The final response to our INVITE arrives through the join handle, not the dialog states.
    let ops = task.ops_tx.clone();
    tokio::spawn(async move {
        let event = match invite.await {
            Ok(Ok((_, Some(resp)))) => {
                let status = resp.status_code.code();
                if (200..300).contains(&status) {
                    CallEvent::Answered {
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
        let _ = ops.send(event);
    });
    tracing::info!(parent: &span, to = %callee, "outbound call");
    tokio::spawn(async move { task.run().await }.instrument(span));
    Ok((id, outcome_rx, commands))
}

/// Legs of agents' calls join the caller's media session as `AGENT_LEG_BASE + attempt`, so
/// an old attempt's leg never collides with the next one's.
const AGENT_LEG_BASE: LegId = 10;

/// The longest `X-Warmline-Summary` sent (screen-pops show a line or two).
const SUMMARY_HEADER_MAX: usize = 200;

/// An agent's call placed for this caller.
struct AgentCall {
    call_id: String,
    leg: LegId,
    commands: mpsc::UnboundedSender<CallEvent>,
    /// Speaks the briefing on the agent's leg only.
    voice: Option<Voice>,
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

struct CallTask {
    gw: Arc<Gateway>,
    id: String,
    ctl: Controller,
    dialog: Option<InviteDialog>,
    states: DialogStateReceiver,
    commands: mpsc::UnboundedReceiver<CallEvent>,
    ops_tx: mpsc::UnboundedSender<CallEvent>,
    ops: mpsc::UnboundedReceiver<CallEvent>,
    info: Arc<Mutex<CallInfo>>,
    /// The peer's re-INVITE/UPDATE waiting for our answer.
    reoffer: Option<TransactionHandle>,
    outcome: Option<oneshot::Sender<OriginateOutcome>>,
    cmd_tx: mpsc::UnboundedSender<CallEvent>,
    media: MediaHandle,
    leg: LegId,
    media_events: mpsc::UnboundedReceiver<MediaEvent>,
    speech_events: mpsc::UnboundedReceiver<PipelineEvent>,
    /// When the last turn's text arrived, and its recognition latency.
    last_turn: Option<(Instant, u64)>,
    /// The call we report to: the other call of a B2BUA pair, or the caller we are the
    /// agent for. Told our outcome and our end.
    partner: Option<Partner>,
    /// Agents' calls this (caller's) call placed, by attempt.
    agents: HashMap<u32, AgentCall>,
    /// The caller's codec, preferred on agents' calls so the bridge can relay untouched.
    codec: Option<CodecName>,
    /// Bridge our leg to this one once we are answered.
    bridge_on_answer: Option<LegId>,
    media_configured: bool,
    /// The assistant's speaker, started at its first prompt.
    voice: Option<Voice>,
    /// The agent's briefing, rendered while their phone rings.
    briefing: Option<Rendering>,
}

impl CallTask {
    #[allow(clippy::too_many_arguments)]
    fn new(
        gw: Arc<Gateway>,
        id: String,
        ctl: Controller,
        dialog: Option<InviteDialog>,
        states: DialogStateReceiver,
        from: String,
        to: String,
        rtp: RtpReservation,
        outcome: Option<oneshot::Sender<OriginateOutcome>>,
        plan: LegPlan,
    ) -> Self {
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        let (ops_tx, ops) = mpsc::unbounded_channel();
        let (events_tx, media_events) = mpsc::unbounded_channel();
        let (speech_tx, speech_events) = mpsc::unbounded_channel();
        // The caller's words go to the speech pipeline when this leg is listened to.
        let tap = match (&gw.planes.speech, plan.tap) {
            (Some(speech), true) => Some(speech.spawn_pipeline(speech_tx)),
            _ => None,
        };
        let info = Arc::new(Mutex::new(CallInfo {
            id: id.clone(),
            role: ctl.role(),
            from,
            to,
            rtp_port: rtp.port(),
            snapshot: ctl.snapshot(),
            digits: String::new(),
            partner: None,
            media: None,
            transcript: Vec::new(),
            triggers: Vec::new(),
            decision: None,
            briefing: None,
            said: Vec::new(),
            context: None,
        }));
        gw.register(
            id.clone(),
            CallHandle {
                commands: cmd_tx.clone(),
                info: info.clone(),
            },
        );
        plan.media.add_leg(NewLeg {
            id: plan.leg,
            sockets: rtp,
            tap,
            events: events_tx,
            report: report_into(info.clone(), |i: &mut CallInfo, r| {
                i.media = Some(r.clone())
            }),
            record_as: gw.planes.media.recording().then(|| id.clone()),
        });
        Self {
            gw,
            id,
            ctl,
            dialog,
            states,
            commands,
            ops_tx,
            ops,
            info,
            reoffer: None,
            outcome,
            cmd_tx,
            media: plan.media,
            leg: plan.leg,
            media_events,
            speech_events,
            last_turn: None,
            partner: None,
            bridge_on_answer: None,
            media_configured: false,
            voice: None,
            agents: HashMap::new(),
            codec: None,
            briefing: None,
        }
    }

    /// Place the agent's call for transfer `attempt`; its media joins this call's session.
    fn dial_agent(
        &mut self,
        attempt: u32,
        target: String,
        ring_timeout: Duration,
        reason: String,
        summary: String,
    ) {
        let (number, name) = self.ctl.caller_identity();
        let name = name.map(str::to_string);
        let base = &self.gw.cfg.http.public_url;
        let host = super::host_port(self.gw.advertised(), self.gw.cfg.sip.listen[0].addr.port());
        let who = if number.is_empty() {
            "caller"
        } else {
            number.as_str()
        };
        let pai = match &name {
            Some(n) => format!(
                "\"{}\" <sip:{who}@{host}>",
                header_value(n, 64).replace('"', "")
            ),
            None => format!("<sip:{who}@{host}>"),
        };
        let req = Originate {
            to: target.clone(),
            ring_timeout: Some(ring_timeout),
            from_display: name
                .clone()
                .or_else(|| (!number.is_empty()).then(|| number.clone())),
            from_user: (!number.is_empty()).then(|| number.clone()),
            headers: vec![
                ("P-Asserted-Identity".into(), pai),
                (
                    "Call-Info".into(),
                    format!("<{base}/api/calls/{}/context>;purpose=info", self.id),
                ),
                ("X-Warmline-Call-Id".into(), self.id.clone()),
                ("X-Warmline-Reason".into(), header_value(&reason, 120)),
                (
                    "X-Warmline-Summary".into(),
                    header_value(&summary, SUMMARY_HEADER_MAX),
                ),
            ],
            ..Originate::default()
        };
        let leg = AGENT_LEG_BASE + attempt;
        let placed = Uri::try_from(target.as_str())
            .map_err(|e| OriginateError::BadUri(e.to_string()))
            .and_then(|uri| {
                let rtp = self.gw.ports().reserve()?;
                start_outbound(
                    self.gw.clone(),
                    uri,
                    req,
                    rtp,
                    Some(LegPlan {
                        media: self.media.clone(),
                        leg,
                        tap: false,
                    }),
                    Some(Partner {
                        tx: self.ops_tx.clone(),
                        agent_attempt: Some(attempt),
                    }),
                    self.codec,
                )
            });
        match placed {
            Ok((call_id, _, commands)) => {
                tracing::info!(attempt, agent_call = %call_id, %target, "calling an agent");
                self.agents.insert(
                    attempt,
                    AgentCall {
                        call_id,
                        leg,
                        commands,
                        voice: None,
                    },
                );
            }
            Err(e) => {
                tracing::warn!(attempt, %target, error = %e, "agent call not placed");
                self.ctl.handle(
                    Instant::now(),
                    CallEvent::AgentOutcome {
                        attempt,
                        outcome: OriginateOutcome::Unreachable {
                            reason: e.to_string(),
                        },
                    },
                );
            }
        }
    }

    fn audit(&self, event: &str, detail: String) {
        tracing::info!(event, %detail, "audit");
        self.gw.planes.store.audit(&self.id, event, &detail);
    }

    async fn run(mut self) {
        loop {
            self.execute().await;
            lock(&self.info).snapshot = self.ctl.snapshot();
            if self.ctl.is_ended() {
                break;
            }
            let deadline = self.ctl.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                state = self.states.recv() => match state {
                    Some(state) => self.on_dialog_state(state),
                    None => self.ctl.handle(Instant::now(), CallEvent::DialogFailed { reason: "dialog gone".into() }),
                },
                Some(cmd) = self.commands.recv() => self.ctl.handle(Instant::now(), cmd),
                Some(op) = self.ops.recv() => self.ctl.handle(Instant::now(), op),
                Some(ev) = self.media_events.recv() => self.on_media_event(ev),
                Some(ev) = self.speech_events.recv() => self.on_speech(ev),
                () = sleep => self.ctl.handle_timeout(Instant::now()),
            }
        }
        self.media.remove_leg(self.leg);
        if let Some(p) = self.partner.take() {
            let _ = p.tx.send(match p.agent_attempt {
                Some(attempt) => CallEvent::AgentEnded { attempt },
                None => CallEvent::Hangup,
            });
        }
        for (_, agent) in self.agents.drain() {
            let _ = agent.commands.send(CallEvent::Hangup);
        }
        if let Some(d) = &self.dialog {
            self.gw.dialog_layer().remove_dialog(&d.id());
        }
        self.gw.unregister(&self.id);
    }

    fn on_speech(&mut self, ev: PipelineEvent) {
        let now = Instant::now();
        match ev {
            PipelineEvent::SpeechStarted => self.ctl.handle(now, CallEvent::SpeechStarted),
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
                let words = if self.gw.cfg.store.keep_transcripts {
                    format!("\"{}\", ", turn.text)
                } else {
                    String::new()
                };
                self.gw.planes.store.audit(
                    &self.id,
                    "turn",
                    &format!(
                        "{words}{}-{} ms, confidence {:.2}, arousal {}",
                        turn.start_ms,
                        turn.end_ms,
                        turn.confidence,
                        p.map_or("-".to_string(), |p| format!("{:.2}", p.arousal))
                    ),
                );
                {
                    let mut info = lock(&self.info);
                    if info.transcript.len() >= TRANSCRIPT_KEPT {
                        info.transcript.remove(0);
                    }
                    info.transcript.push((*turn).clone());
                }
                self.ctl.handle(now, CallEvent::Transcript { turn });
            }
        }
    }

    fn on_media_event(&mut self, ev: MediaEvent) {
        let now = Instant::now();
        match ev {
            MediaEvent::PlayoutDone {
                id, interrupted, ..
            } => {
                tracing::debug!(id, interrupted, "playout done");
                // An agent's leg plays what the caller's call asked for (the briefing).
                if let Some(p) = self.partner.as_ref().filter(|p| p.agent_attempt.is_some()) {
                    let _ = p.tx.send(CallEvent::PlayoutDone { id, interrupted });
                    return;
                }
                self.ctl
                    .handle(now, CallEvent::PlayoutDone { id, interrupted });
            }
            MediaEvent::Dtmf { digit, .. } => {
                tracing::info!(%digit, "DTMF");
                lock(&self.info).digits.push(digit);
                if let Some(p) = &self.partner {
                    if let Some(attempt) = p.agent_attempt {
                        let _ = p.tx.send(CallEvent::AgentDtmf { attempt, digit });
                    }
                }
                self.ctl.handle(now, CallEvent::Dtmf { digit });
            }
            MediaEvent::RtpTimeout { silent_ms, .. } => {
                tracing::warn!(
                    silent_ms,
                    reason = "media.rtp_timeout",
                    "no RTP from the peer; ending the call"
                );
                self.ctl.handle(now, CallEvent::MediaTimeout { silent_ms });
            }
        }
    }

    fn on_dialog_state(&mut self, state: DialogState) {
        let now = Instant::now();
        match state {
            DialogState::Confirmed(..) => self.ctl.handle(now, CallEvent::Ack),
            DialogState::Early(_, resp) => self.ctl.handle(
                now,
                CallEvent::Progress {
                    status: resp.status_code.code(),
                },
            ),
            DialogState::Updated(_, req, handle) => {
                if matches!(req.method, Method::Invite | Method::Update) {
                    self.reoffer = Some(handle);
                    self.ctl.handle(
                        now,
                        CallEvent::ReOffer {
                            sdp: body_text(&req.body),
                        },
                    );
                } else {
                    respond_later(handle, StatusCode::OK);
                }
            }
            DialogState::Info(_, _, h)
            | DialogState::Options(_, _, h)
            | DialogState::Notify(_, _, h)
            | DialogState::Message(_, _, h) => respond_later(h, StatusCode::OK),
            // Call transfer by REFER is not offered; the warm transfer is ours to run.
            DialogState::Refer(_, _, h) | DialogState::Publish(_, _, h) => {
                respond_later(h, StatusCode::Decline)
            }
            DialogState::Terminated(_, reason) => {
                let event = match reason {
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
                        if self.ctl.role() == warmline_call::Role::Outbound =>
                    {
                        return;
                    }
                    other => CallEvent::DialogFailed {
                        reason: format!("{other:?}"),
                    },
                };
                self.ctl.handle(now, event);
            }
            DialogState::Calling(_) | DialogState::Trying(_) | DialogState::WaitAck(..) => {}
        }
    }

    async fn execute(&mut self) {
        while let Some(action) = self.ctl.poll_action() {
            tracing::debug!(?action, "call action");
            let Some(dialog) = self.dialog.clone() else {
                continue;
            };
            match action {
                CallAction::Ring => {
                    if let Err(e) = dialog.ringing(None, None) {
                        tracing::debug!(error = %e, "180 not sent");
                    }
                }
                CallAction::Answer { sdp } => {
                    if let Err(e) = dialog.accept(Some(sdp_header()), Some(sdp.into_bytes())) {
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
                    let Some(handle) = self.reoffer.take() else {
                        continue;
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
                    tracing::info!(status, "answered re-offer");
                    let _ = handle
                        .respond(
                            StatusCode::from(status),
                            Some(headers),
                            sdp.map(String::into_bytes),
                        )
                        .await;
                }
                CallAction::SendReInvite { sdp } => {
                    let ops = self.ops_tx.clone();
                    tracing::info!("sending re-INVITE");
                    tokio::spawn(
                        async move {
                            let event = match dialog
                                .reinvite(Some(sdp_header()), Some(sdp.into_bytes()))
                                .await
                            {
                                Ok(Some(resp)) => CallEvent::ReInviteResponse {
                                    status: resp.status_code.code(),
                                    sdp: body_text(&resp.body),
                                },
                                // Not confirmed any more: the call is ending anyway.
                                Ok(None) => CallEvent::ReInviteResponse {
                                    status: 481,
                                    sdp: None,
                                },
                                Err(e) => {
                                    tracing::warn!(error = %e, "re-INVITE failed");
                                    CallEvent::ReInviteResponse {
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
                CallAction::SendInvite { .. } => {
                    // Outbound INVITEs are sent when the call is created (see start_outbound).
                }
                CallAction::CancelInvite => {
                    tokio::spawn(
                        async move {
                            if let Err(e) = dialog.cancel().await {
                                tracing::debug!(error = %e, "CANCEL not sent");
                            }
                        }
                        .in_current_span(),
                    );
                }
                CallAction::SendBye => {
                    tokio::spawn(
                        async move {
                            if let Err(e) = dialog.bye().await {
                                tracing::debug!(error = %e, "BYE failed");
                            }
                        }
                        .in_current_span(),
                    );
                }
                CallAction::MediaChanged(n) => {
                    self.media.configure(self.leg, LegMedia::from(&n));
                    if !self.media_configured {
                        self.media_configured = true;
                        if let Some(other) = self.bridge_on_answer {
                            self.media.bridge(self.leg, other);
                        }
                    }
                }
                CallAction::Play { prompt, id } => {
                    let clip = match prompt {
                        Prompt::Greeting => self.gw.planes.media.prompts.greeting.clone(),
                    };
                    match clip {
                        Some(clip) => self.media.play(self.leg, id, clip),
                        None => self.ctl.handle(
                            Instant::now(),
                            CallEvent::PlayoutDone {
                                id,
                                interrupted: false,
                            },
                        ),
                    }
                }
                CallAction::SendDtmf { digits } => self.media.send_dtmf(self.leg, &digits),
                CallAction::Say { text, id } => {
                    tracing::info!(id, %text, "assistant says");
                    {
                        let mut info = lock(&self.info);
                        if info.said.len() >= TRANSCRIPT_KEPT {
                            info.said.remove(0);
                        }
                        info.said.push(text.clone());
                    }
                    let voice = self.voice.get_or_insert_with(|| {
                        self.gw.planes.assistant.voice(
                            self.media.clone(),
                            self.leg,
                            self.ops_tx.clone(),
                        )
                    });
                    voice.say(id, text);
                }
                CallAction::AskBrain { mut request } => {
                    request.call_id = self.id.clone();
                    self.gw.planes.assistant.ask(*request, self.ops_tx.clone());
                }
                CallAction::Audit { event, detail } => self.audit(&event, detail),
                CallAction::TransferEnded {
                    kind,
                    route,
                    outcome,
                    after_ms,
                } => {
                    let c = &self.gw.planes.assistant.counters;
                    match outcome {
                        TransferOutcome::Bridged => c.bridged.fetch_add(1, Ordering::Relaxed),
                        TransferOutcome::Abandoned => c.abandoned.fetch_add(1, Ordering::Relaxed),
                        TransferOutcome::Failed => {
                            c.transfers_failed.fetch_add(1, Ordering::Relaxed)
                        }
                        TransferOutcome::Ended => 0,
                    };
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
                } => {
                    // Time from the end of the caller's speech to the decision: the
                    // endpointer's closing silence, the recognizer's latency, and what
                    // happened since its result arrived.
                    let since_speech_end_ms = self
                        .last_turn
                        .map(|(at, latency)| latency + at.elapsed().as_millis() as u64);
                    tracing::info!(
                        rule = %trigger.rule,
                        kind = %trigger.kind,
                        evidence = ?trigger.evidence,
                        confidence = format_args!("{:.2}", trigger.confidence),
                        route = %trigger.route,
                        disposition = %trigger.disposition,
                        at_ms = trigger.at_ms,
                        since_speech_end_ms,
                        "escalation trigger"
                    );
                    self.audit(
                        "trigger",
                        format!(
                            "rule {} ({}), confidence {:.2}, at {} ms{}: {}",
                            trigger.rule,
                            trigger.kind,
                            trigger.confidence,
                            trigger.at_ms,
                            since_speech_end_ms
                                .filter(|_| matches!(
                                    trigger.kind.as_str(),
                                    "explicit_request" | "keyword" | "topic" | "prosody"
                                ))
                                .map(|ms| format!(", {ms} ms after the end of speech"))
                                .unwrap_or_default(),
                            trigger.evidence.join("; ")
                        ),
                    );
                    let c = &self.gw.planes.assistant.counters;
                    c.escalations.fetch_add(1, Ordering::Relaxed);
                    self.gw
                        .planes
                        .metrics
                        .escalations_total
                        .with_label_values(&[
                            trigger.kind.as_str(),
                            trigger.route.as_str(),
                            match decision {
                                Decision::Transfer => "transfer",
                                Decision::Callback { .. } => "callback",
                            },
                        ])
                        .inc();
                    match &decision {
                        Decision::Transfer => {
                            c.transfers_decided.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(briefing = %briefing.spoken, "transfer decided");
                            self.audit(
                                "transfer_decided",
                                format!(
                                    "rule {} ({}): {}; route {}",
                                    trigger.rule, trigger.kind, briefing.reason, trigger.route
                                ),
                            );
                        }
                        Decision::Callback { weekday, at } => {
                            c.callbacks.fetch_add(1, Ordering::Relaxed);
                            let from = lock(&self.info).from.clone();
                            self.audit(
                                "callback_requested",
                                format!(
                                    "route {} closed: callback to {from} promised for weekday {weekday} from {at}; {}",
                                    trigger.route, briefing.summary
                                ),
                            );
                        }
                    }
                    let mut info = lock(&self.info);
                    info.triggers.push(*trigger);
                    info.decision = Some(decision);
                    info.briefing = Some(*briefing);
                }
                CallAction::StopPlayout => {
                    tracing::info!("barge-in: prompt stopped");
                    if let Some(v) = &self.voice {
                        v.interrupt();
                    }
                    self.media.stop_playout(self.leg);
                }
                CallAction::HoldAudio { on } => {
                    let music = on.then(|| self.gw.planes.media.prompts.hold.clone());
                    self.media.hold(self.leg, music);
                }
                CallAction::Outcome(outcome) => {
                    tracing::info!(?outcome, "outbound outcome");
                    if self
                        .partner
                        .as_ref()
                        .is_some_and(|p| p.agent_attempt.is_some())
                    {
                        let (name, code) = match &outcome {
                            OriginateOutcome::Answered => ("answered", "200".to_string()),
                            OriginateOutcome::Busy { status } => ("busy", status.to_string()),
                            OriginateOutcome::NoAnswer => ("no_answer", "-".to_string()),
                            OriginateOutcome::Rejected { status, .. } => {
                                ("rejected", status.to_string())
                            }
                            OriginateOutcome::Unreachable { .. } => {
                                ("unreachable", "-".to_string())
                            }
                            OriginateOutcome::Cancelled => ("cancelled", "-".to_string()),
                        };
                        self.gw
                            .planes
                            .metrics
                            .agent_attempts_total
                            .with_label_values(&[name, code.as_str()])
                            .inc();
                    }
                    if let Some(p) = &self.partner {
                        let _ = p.tx.send(match (p.agent_attempt, &outcome) {
                            (Some(attempt), o) => CallEvent::AgentOutcome {
                                attempt,
                                outcome: o.clone(),
                            },
                            (None, OriginateOutcome::Answered) => CallEvent::AnswerNow,
                            (None, other) => CallEvent::Refuse {
                                status: refusal_for(other),
                            },
                        });
                    }
                    if let Some(tx) = self.outcome.take() {
                        let _ = tx.send(outcome);
                    }
                }
                CallAction::Ended { reason } => {
                    tracing::info!(reason = reason.code(), "call ended");
                    let role = match self.ctl.role() {
                        warmline_call::Role::Inbound => "inbound",
                        warmline_call::Role::Outbound => "outbound",
                    };
                    self.gw
                        .planes
                        .metrics
                        .calls_total
                        .with_label_values(&[role, reason.code()])
                        .inc();
                    self.audit("end", reason.code().to_string());
                }
                CallAction::WriteBriefing { mut packet } => {
                    packet.call_id = self.id.clone();
                    self.gw
                        .planes
                        .assistant
                        .write_briefing(&packet, self.ops_tx.clone());
                }
                CallAction::PostContext { mut packet } => {
                    let base = &self.gw.cfg.http.public_url;
                    packet.call_id = self.id.clone();
                    packet.links = PacketLinks {
                        context: format!("{base}/api/calls/{}/context", self.id),
                        audit: format!("{base}/api/calls/{}/audit", self.id),
                        agent_page: format!("{base}/agent/calls/{}", self.id),
                    };
                    match serde_json::to_string(&packet) {
                        Ok(body) => {
                            self.gw.planes.store.put_context(&self.id, body.clone());
                            match &self.gw.cfg.crm.webhook_url {
                                Some(url) => {
                                    self.gw.planes.store.enqueue(&self.id, url, body);
                                    self.audit("packet_posted", format!("queued for {url}"));
                                }
                                None => self.audit(
                                    "packet_stored",
                                    "no CRM configured; served at /api/calls/{id}/context".into(),
                                ),
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "context packet not serialised"),
                    }
                    lock(&self.info).context = Some(*packet);
                }
                CallAction::DialAgent {
                    attempt,
                    target,
                    ring_timeout,
                    reason,
                    summary,
                } => self.dial_agent(attempt, target, ring_timeout, reason, summary),
                CallAction::HangupAgent { attempt } => {
                    if let Some(a) = self.agents.get(&attempt) {
                        let _ = a.commands.send(CallEvent::Hangup);
                    }
                }
                CallAction::PrepareSpeech { text } => {
                    self.briefing = Some(self.gw.planes.assistant.prepare(text));
                }
                CallAction::WhisperToAgent { attempt, text, id } => {
                    tracing::info!(attempt, %text, "briefing the agent");
                    let media = self.media.clone();
                    let ops = self.ops_tx.clone();
                    let rendered = self.briefing.take().filter(|r| r.text == text);
                    match self.agents.get_mut(&attempt) {
                        Some(a) => {
                            let voice = a.voice.get_or_insert_with(|| {
                                self.gw.planes.assistant.voice(media, a.leg, ops)
                            });
                            match rendered {
                                Some(r) => voice.say_rendered(id, r),
                                None => voice.say(id, text),
                            }
                        }
                        None => self.ctl.handle(
                            Instant::now(),
                            CallEvent::PlayoutDone {
                                id,
                                interrupted: true,
                            },
                        ),
                    }
                }
                CallAction::BridgeAgent { attempt } => {
                    if let Some(a) = self.agents.get(&attempt) {
                        tracing::info!(attempt, "bridging the caller and the agent");
                        self.media.bridge(self.leg, a.leg);
                        // A person has the call: the assistant stops listening, unless the
                        // operator keeps transcripts.
                        if !self.gw.cfg.store.keep_transcripts {
                            self.media.stop_tap(self.leg);
                        }
                        lock(&self.info).partner = Some(a.call_id.clone());
                    }
                }
            }
        }
    }
}

fn respond_later(handle: TransactionHandle, status: StatusCode) {
    tokio::spawn(async move {
        let _ = handle.reply(status).await;
    });
}
