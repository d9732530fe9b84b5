//! After a crash: the dialogs the dead process left open on the peers' phones. Each
//! confirmed leg's BYE, and the INVITE of each leg still ringing, is kept in the store
//! (`StoreHandle::open_leg`) until the leg ends; at start, every BYE still kept is sent and
//! every INVITE cancelled, the answer goes on the call's audit trail (`recovered`), and the
//! leg is forgotten. The caller waiting on hold for an agent, an agent bridged to a caller
//! who is no longer there, or an agent's phone ringing for nobody, is hung up instead of
//! left with nobody.

use super::Gateway;
use rsipstack::sip::headers::typed::CSeq;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, SipMessage, StatusCodeKind};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use std::sync::Arc;
use tracing::Instrument;
use warmline_call::Audit;
use warmline_store::OpenLeg;

/// Requests the dead process may have sent inside a dialog after its BYE was kept
/// (re-INVITEs for hold and resume, OPTIONS probes): the kept BYE's CSeq is raised by
/// this much, so that it is never below one the peer has seen (RFC 3261 §12.2.2 answers
/// an older CSeq with 500).
const CSEQ_MARGIN: u32 = 10_000;

/// End every kept leg, in parallel; returns once each is answered or timed out.
pub async fn recover(gw: Arc<Gateway>) {
    let legs = match gw.planes.store.read(|s| s.open_legs(100_000)).await {
        Ok(legs) => legs,
        Err(e) => {
            tracing::error!(error = %e, "store: legs left open by the last run not looked for");
            return;
        }
    };
    if legs.is_empty() {
        return;
    }
    tracing::warn!(
        legs = legs.len(),
        "hanging up the dialogs the last run left open"
    );
    let tasks: Vec<_> = legs
        .into_iter()
        .map(|leg| {
            let gw = gw.clone();
            let span = tracing::info_span!("call", call_id = %leg.call_id, leg = %leg.leg);
            tokio::spawn(async move { hang_up(&gw, leg).await }.instrument(span))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn hang_up(gw: &Gateway, leg: OpenLeg) {
    let (method, status) = match Request::try_from(leg.bye.as_str()) {
        Ok(invite) if invite.method == Method::Invite => ("CANCEL", cancel(gw, invite).await),
        Ok(bye) => match renewed(gw, bye) {
            Ok(bye) => ("BYE", send(gw, bye).await),
            Err(e) => {
                tracing::warn!(error = %e, "a kept BYE could not be rebuilt; the leg is forgotten");
                ("BYE", None)
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "a kept request could not be read; the leg is forgotten");
            ("BYE", None)
        }
    };
    tracing::info!(method, ?status, "leg ended after the restart");
    gw.planes.store.record(
        &leg.call_id,
        &Audit::Recovered {
            leg: leg.leg.clone(),
            method: method.into(),
            status,
        },
    );
    gw.planes.store.close_leg(&leg.call_id, &leg.leg);
}

/// Cancel a ringing leg's INVITE, as sent (RFC 3261 §9.1: the CANCEL matches it by its
/// Via branch). The INVITE's transaction is adopted first, so that the 487 the CANCEL
/// draws is ACKed; a 2xx (the phone was answered as the dead process went) is ACKed and
/// then hung up. Returns the CANCEL's status.
async fn cancel(gw: &Gateway, invite: Request) -> Option<u16> {
    let endpoint = gw.dialog_layer().endpoint.clone();
    let key = TransactionKey::from_request(&invite, TransactionRole::Client).ok()?;
    let mut tx = Transaction::new_client(key, invite.clone(), endpoint.clone(), None);
    if let Err(e) = tx.adopt().await {
        tracing::info!(error = %e, "INVITE to cancel not adopted");
        return None;
    }
    let status = send(gw, cancel_of(&invite)).await;
    // The INVITE's final answer follows the CANCEL's at once; Timer B's span is the most
    // a peer that still knows the INVITE may take.
    let answer = tokio::time::timeout(endpoint.option.t1x64, final_response(&mut tx))
        .await
        .ok()
        .flatten();
    if let Some(resp) = answer
        && resp.status_code.kind() == StatusCodeKind::Successful
    {
        tracing::warn!("the cancelled phone had answered; hanging it up");
        let bye = endpoint
            .make_ack(&invite, &resp)
            .map_err(|e| e.to_string())
            .and_then(|mut ack| {
                ack.method = Method::Bye;
                renewed(gw, ack)
            });
        match bye {
            Ok(bye) => {
                let _ = send(gw, bye).await;
            }
            Err(e) => tracing::warn!(error = %e, "no BYE for the answered phone"),
        }
    }
    status
}

/// RFC 3261 §9.1: the INVITE's Request-URI, Call-ID, From, To, Route and top Via, its
/// CSeq number with method CANCEL, no body.
fn cancel_of(invite: &Request) -> Request {
    let mut cancel = invite.clone();
    cancel.method = Method::Cancel;
    let seq = invite.cseq_header().and_then(|c| c.seq()).unwrap_or(1);
    cancel.headers.retain(|h| {
        matches!(
            h,
            Header::Via(_)
                | Header::From(_)
                | Header::To(_)
                | Header::CallId(_)
                | Header::Route(_)
                | Header::MaxForwards(_)
        )
    });
    // Only the top Via: the one this process put there.
    let mut seen_via = false;
    cancel.headers.retain(|h| {
        if matches!(h, Header::Via(_)) {
            let first = !seen_via;
            seen_via = true;
            first
        } else {
            true
        }
    });
    cancel.headers.push(Header::CSeq(
        CSeq {
            seq,
            method: Method::Cancel,
        }
        .into(),
    ));
    cancel.body = vec![];
    cancel
}

async fn final_response(tx: &mut Transaction) -> Option<rsipstack::sip::Response> {
    while let Some(msg) = tx.receive().await {
        if let SipMessage::Response(resp) = msg
            && resp.status_code.kind() != StatusCodeKind::Provisional
        {
            return Some(resp);
        }
    }
    None
}

/// `req` with this process's Via and a CSeq above any the dead one used.
fn renewed(gw: &Gateway, mut req: Request) -> Result<Request, String> {
    let seq = req
        .cseq_header()
        .and_then(|c| c.seq())
        .map_err(|e| e.to_string())?;
    let method = req.method;
    let via = gw
        .dialog_layer()
        .endpoint
        .get_via(None, Some(rsipstack::transaction::make_via_branch()))
        .map_err(|e| e.to_string())?;
    req.headers
        .retain(|h| !matches!(h, Header::Via(_) | Header::CSeq(_)));
    req.headers.push_front(Header::Via(via.into()));
    req.headers.push(Header::CSeq(
        CSeq {
            seq: seq.saturating_add(CSEQ_MARGIN),
            method,
        }
        .into(),
    ));
    Ok(req)
}

/// The final answer's status, or `None` when none came (Timer F) or it could not be sent.
async fn send(gw: &Gateway, req: Request) -> Option<u16> {
    let key = TransactionKey::from_request(&req, TransactionRole::Client).ok()?;
    let method = req.method;
    let mut tx = Transaction::new_client(key, req, gw.dialog_layer().endpoint.clone(), None);
    if let Err(e) = tx.send().await {
        tracing::info!(error = %e, %method, "request after the restart not sent");
        return None;
    }
    final_response(&mut tx).await.map(|r| r.status_code.code())
}
