//! The session a leg's dialog carries: SDP offer/answer (RFC 3264), hold and resume in both
//! directions (RFC 6337), our re-INVITEs and their glare back-off (RFC 3261 §14.1), with
//! the one timer that needs (the glare retry). It knows nothing of prompts, the policy or
//! transfers; the controller tells it whether the dialog is confirmed, and what it asks
//! for goes on the controller's action queue.

use super::{CallAction, EndReason, Role, mirror_offer, warning};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use warmline_signaling::{Direction, LocalMedia, Negotiated, NegotiationError, SdpSession};

#[derive(Debug)]
pub(super) struct Dialog {
    role: Role,
    sdp: SdpSession,
    /// What we want to do with media: `SendRecv`, or `SendOnly` while we hold the peer.
    want: Direction,
    /// `want` as of the last completed offer/answer.
    settled_want: Direction,
    /// A `want` the peer refused; not retried until `want` changes.
    refused_want: Option<Direction>,
    negotiated: Option<Negotiated>,
    /// The peer has put us on hold (its last offer did not let it receive).
    remote_hold: bool,
    /// Direction of our re-INVITE in flight.
    reinvite_in_flight: Option<Direction>,
    glare_retry_at: Option<Instant>,
    rng: u64,
}

impl Dialog {
    pub(super) fn new(role: Role, local: LocalMedia, session_id: u64, rng_seed: u64) -> Self {
        Self {
            role,
            sdp: SdpSession::new(local, session_id),
            want: Direction::SendRecv,
            settled_want: Direction::SendRecv,
            refused_want: None,
            negotiated: None,
            remote_hold: false,
            reinvite_in_flight: None,
            glare_retry_at: None,
            // xorshift must not start at zero
            rng: rng_seed | 1,
        }
    }

    pub(super) fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub(super) fn local_hold(&self) -> bool {
        self.want == Direction::SendOnly
    }

    pub(super) fn remote_hold(&self) -> bool {
        self.remote_hold
    }

    pub(super) fn reinvite_pending(&self) -> bool {
        self.reinvite_in_flight.is_some()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.glare_retry_at
    }

    pub(super) fn clear_timers(&mut self) {
        self.glare_retry_at = None;
    }

    /// The glare back-off is over: offer again if still needed.
    pub(super) fn handle_timeout(
        &mut self,
        now: Instant,
        confirmed: bool,
        out: &mut VecDeque<CallAction>,
    ) {
        if self.glare_retry_at.is_some_and(|t| t <= now) {
            self.glare_retry_at = None;
            self.maybe_reinvite(confirmed, out);
        }
    }

    /// Our first offer (an outbound INVITE).
    pub(super) fn initial_offer(&mut self) -> String {
        self.sdp.initial_offer(self.want)
    }

    /// The answer to an initial INVITE's offer, or, for a delayed offer (RFC 3261 §13.2.1),
    /// our offer for the 200 (the answer rides the ACK).
    pub(super) fn prepare_answer(
        &mut self,
        offer: Option<&str>,
    ) -> Result<(String, Negotiated), NegotiationError> {
        match offer {
            Some(offer) => self.sdp.answer(offer, self.want),
            // Offering one codec makes any valid answer choose it, and symmetric RTP learns
            // the peer's address from its first packet.
            None => {
                let first = self.sdp.local().codecs.first().copied();
                let mut single = self.sdp.local().clone();
                single.codecs = first.into_iter().collect();
                let mut one = SdpSession::new(single, 0);
                let offer = one.initial_offer(self.want);
                let mut n = one.accept_answer(&mirror_offer(&offer), self.want)?;
                n.remote = None;
                Ok((self.sdp.reoffer(&n, self.want), n))
            }
        }
    }

    /// Our 2xx to the initial INVITE carries this agreement.
    pub(super) fn answered(&mut self, negotiated: Negotiated) {
        self.remote_hold = !negotiated.direction.sends() && self.want.sends();
        self.negotiated = Some(negotiated);
        self.settled_want = self.want;
    }

    /// The 2xx to our INVITE: its answer, agreed.
    pub(super) fn accept_answer(
        &mut self,
        sdp: Option<&str>,
    ) -> Result<Negotiated, NegotiationError> {
        let n = sdp
            .ok_or(NegotiationError::NoAudio)
            .and_then(|a| self.sdp.accept_answer(a, self.want))?;
        self.negotiated = Some(n.clone());
        self.settled_want = self.want;
        Ok(n)
    }

    /// The peer's re-INVITE or UPDATE on a confirmed dialog.
    pub(super) fn on_reoffer(&mut self, sdp: Option<String>, out: &mut VecDeque<CallAction>) {
        // Glare: our own re-INVITE is in flight (RFC 3261 §14.2).
        if self.reinvite_in_flight.is_some() {
            out.push_back(CallAction::AnswerReOffer {
                status: 491,
                sdp: None,
                warning: None,
            });
            return;
        }
        let Some(current) = self.negotiated.clone() else {
            return;
        };
        match sdp {
            Some(offer) => match self.sdp.answer(&offer, self.want) {
                Ok((answer, n)) => {
                    // The peer holds us when its offer would not let it receive.
                    self.remote_hold = !n.direction.sends() && self.want.sends();
                    self.settled_want = self.want;
                    out.push_back(CallAction::AnswerReOffer {
                        status: 200,
                        sdp: Some(answer),
                        warning: None,
                    });
                    if self.negotiated.as_ref() != Some(&n) {
                        self.negotiated = Some(n.clone());
                        out.push_back(CallAction::MediaChanged(n));
                    }
                }
                Err(e) => {
                    // A refused re-offer leaves the session as it was (RFC 3264 §8).
                    out.push_back(CallAction::AnswerReOffer {
                        status: 488,
                        sdp: None,
                        warning: Some(warning(&e)),
                    });
                }
            },
            // An offerless re-INVITE (session refresh, or a peer asking us to offer).
            None => {
                let offer = self.sdp.reoffer(&current, self.want);
                out.push_back(CallAction::AnswerReOffer {
                    status: 200,
                    sdp: Some(offer),
                    warning: None,
                });
            }
        }
    }

    /// Hold (`SendOnly`) or resume (`SendRecv`) the peer; `live`: the call has not ended.
    pub(super) fn set_want(
        &mut self,
        want: Direction,
        live: bool,
        confirmed: bool,
        out: &mut VecDeque<CallAction>,
    ) {
        if want != self.want && live {
            out.push_back(CallAction::HoldAudio {
                on: want == Direction::SendOnly,
            });
        }
        self.want = want;
        if self.refused_want != Some(want) {
            self.refused_want = None;
        }
        self.maybe_reinvite(confirmed, out);
    }

    /// Send a re-INVITE if what we want differs from what was last settled and nothing
    /// (our own re-INVITE, a glare back-off) is in the way.
    pub(super) fn maybe_reinvite(&mut self, confirmed: bool, out: &mut VecDeque<CallAction>) {
        if !confirmed
            || self.reinvite_in_flight.is_some()
            || self.glare_retry_at.is_some()
            || self.want == self.settled_want
            || self.refused_want == Some(self.want)
        {
            return;
        }
        self.send_reinvite(self.want, out);
    }

    /// A re-INVITE offering the agreed session with `want`; false without one agreed yet.
    fn send_reinvite(&mut self, want: Direction, out: &mut VecDeque<CallAction>) -> bool {
        let Some(current) = self.negotiated.as_ref() else {
            return false;
        };
        let sdp = self.sdp.reoffer(current, want);
        self.reinvite_in_flight = Some(want);
        out.push_back(CallAction::SendReInvite { sdp });
        true
    }

    /// Refresh the session (RFC 4028): a re-INVITE offering what is agreed now. A
    /// re-INVITE already out refreshes it as well, so none is added. `false` when none can
    /// go now (not confirmed, no media yet, or waiting out a glare, whose retry only
    /// re-sends a hold or resume): the timer asks again later.
    pub(super) fn refresh(&mut self, confirmed: bool, out: &mut VecDeque<CallAction>) -> bool {
        if !confirmed || self.glare_retry_at.is_some() {
            return false;
        }
        if self.reinvite_in_flight.is_some() {
            return true;
        }
        self.send_reinvite(self.settled_want, out)
    }

    /// The final response to our re-INVITE. `Some(reason)`: the call must end (a BYE is
    /// already queued).
    pub(super) fn on_reinvite_response(
        &mut self,
        now: Instant,
        status: u16,
        sdp: Option<String>,
        confirmed: bool,
        out: &mut VecDeque<CallAction>,
    ) -> Option<EndReason> {
        let offered = self.reinvite_in_flight.take()?;
        match status {
            200..=299 => {
                match sdp.as_deref().map(|a| self.sdp.accept_answer(a, offered)) {
                    Some(Ok(n)) => {
                        self.settled_want = offered;
                        if self.negotiated.as_ref() != Some(&n) {
                            self.negotiated = Some(n.clone());
                            out.push_back(CallAction::MediaChanged(n));
                        }
                    }
                    // A 2xx without a usable answer: the session cannot continue as agreed.
                    _ => {
                        out.push_back(CallAction::SendBye);
                        return Some(EndReason::MediaFailed);
                    }
                }
                self.maybe_reinvite(confirmed, out);
            }
            491 => {
                // RFC 3261 §14.1: the Call-ID's owner waits 2.1–4 s, the other side 0–2 s,
                // in units of 10 ms, so the two retries do not collide again.
                let ticks = self.next_random() % 201;
                let ms = match self.role {
                    Role::Outbound => 2100 + ticks * 95 / 10,
                    Role::Inbound => ticks * 10,
                };
                self.glare_retry_at = Some(now + Duration::from_millis(ms));
            }
            // RFC 5057: these end the dialog, not just the transaction.
            408 | 481 => {
                out.push_back(CallAction::SendBye);
                return Some(EndReason::DialogFailed);
            }
            _ => {
                self.refused_want = Some(offered);
                self.maybe_reinvite(confirmed, out);
            }
        }
        None
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}
