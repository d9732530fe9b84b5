//! After a crash: the dialogs the dead process left confirmed on the peers' phones. Each
//! confirmed leg's BYE is kept in the store (`StoreHandle::open_leg`) until the leg ends;
//! at start, every BYE still kept is sent, the answer goes on the call's audit trail
//! (`recovered`), and the leg is forgotten. The caller waiting on hold for an agent, or an
//! agent bridged to a caller who is no longer there, is hung up instead of left on a call
//! with nobody.

use super::Gateway;
use rsipstack::sip::headers::typed::CSeq;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Request, SipMessage, StatusCodeKind};
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

/// Send every kept BYE, in parallel; returns once each is answered or timed out.
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
    let status = match bye_of(gw, &leg.bye) {
        Ok(bye) => send(gw, bye).await,
        Err(e) => {
            tracing::warn!(error = %e, "a kept BYE could not be rebuilt; the leg is forgotten");
            None
        }
    };
    tracing::info!(?status, "BYE after the restart");
    gw.planes.store.record(
        &leg.call_id,
        &Audit::Recovered {
            leg: leg.leg.clone(),
            status,
        },
    );
    gw.planes.store.close_leg(&leg.call_id, &leg.leg);
}

/// The kept BYE, with this process's Via and a CSeq above any the dead one used.
fn bye_of(gw: &Gateway, text: &str) -> Result<Request, String> {
    let mut req = Request::try_from(text).map_err(|e| e.to_string())?;
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
    let mut tx = Transaction::new_client(key, req, gw.dialog_layer().endpoint.clone(), None);
    if let Err(e) = tx.send().await {
        tracing::info!(error = %e, "BYE after the restart not sent");
        return None;
    }
    while let Some(msg) = tx.receive().await {
        if let SipMessage::Response(resp) = msg
            && resp.status_code.kind() != StatusCodeKind::Provisional
        {
            return Some(resp.status_code.code());
        }
    }
    None
}
