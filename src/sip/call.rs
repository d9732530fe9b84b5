//! One task per call: feeds the call's [`Controller`] with dialog states, local commands,
//! results of SIP operations and timer expiries, and carries its actions out on the dialog.
//!
//! The task never awaits the network while it could miss an event: re-INVITE, BYE and
//! CANCEL run in their own tasks and report back through `ops`, so a peer's re-INVITE that
//! crosses ours (glare) is still answered.

use super::{CallHandle, CallInfo, Gateway, Originate, OriginateError, lock};
use crate::rtp_ports::RtpReservation;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, Uri};
use rsipstack::transaction::transaction::Transaction;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use warmline_call::{CallAction, CallConfig, CallEvent, Controller, OriginateOutcome};
use warmline_signaling::LocalMedia;

fn sdp_header() -> Vec<Header> {
    vec![Header::ContentType("application/sdp".into())]
}

fn body_text(body: &[u8]) -> Option<String> {
    (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

fn call_config(gw: &Gateway, rtp: &RtpReservation) -> CallConfig {
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
        let mut ctl = Controller::inbound(call_config(&gw, &rtp));
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
        let task = CallTask::new(
            gw,
            call_id,
            ctl,
            Some(dialog),
            state_rx,
            from,
            to,
            rtp,
            None,
        );
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

/// Start an outbound call and return its id and a receiver for its outcome.
pub(super) fn start_outbound(
    gw: Arc<Gateway>,
    callee: Uri,
    req: Originate,
    rtp: RtpReservation,
) -> Result<(String, oneshot::Receiver<OriginateOutcome>), OriginateError> {
    let mut cfg = call_config(&gw, &rtp);
    if let Some(t) = req.ring_timeout {
        cfg.ring_timeout = t;
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
    let caller = Uri::try_from(
        format!(
            "sip:{}@{}",
            gw.cfg.outbound.from_user,
            super::host_port(gw.advertised(), gw.cfg.sip.listen[0].addr.port())
        )
        .as_str(),
    )
    .map_err(|e| OriginateError::Stack(e.to_string()))?;
    let opt = InviteOption {
        caller,
        callee: callee.clone(),
        contact: gw.contact().clone(),
        content_type: Some("application/sdp".into()),
        offer: Some(sdp.into_bytes()),
        credential,
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
    let task = CallTask::new(
        gw,
        id.clone(),
        ctl,
        Some(dialog),
        state_rx,
        "warmline".into(),
        callee.to_string(),
        rtp,
        Some(outcome_tx),
    );
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
    Ok((id, outcome_rx))
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
    /// Held for the call's lifetime; the media plane will drive these sockets.
    _rtp: RtpReservation,
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
    ) -> Self {
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        let (ops_tx, ops) = mpsc::unbounded_channel();
        let info = Arc::new(Mutex::new(CallInfo {
            id: id.clone(),
            role: ctl.role(),
            from,
            to,
            rtp_port: rtp.port(),
            snapshot: ctl.snapshot(),
        }));
        gw.register(
            id.clone(),
            CallHandle {
                commands: cmd_tx,
                info: info.clone(),
            },
        );
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
            _rtp: rtp,
        }
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
                () = sleep => self.ctl.handle_timeout(Instant::now()),
            }
        }
        if let Some(d) = &self.dialog {
            self.gw.dialog_layer().remove_dialog(&d.id());
        }
        self.gw.unregister(&self.id);
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
                    tracing::info!(
                        codec = %n.codec.name,
                        remote = ?n.remote,
                        direction = n.direction.as_attr(),
                        "media"
                    );
                }
                CallAction::Outcome(outcome) => {
                    tracing::info!(?outcome, "outbound outcome");
                    if let Some(tx) = self.outcome.take() {
                        let _ = tx.send(outcome);
                    }
                }
                CallAction::Ended { reason } => {
                    tracing::info!(reason = reason.code(), "call ended");
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
