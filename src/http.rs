//! The operator's HTTP API (axum): health, live calls, hold/resume/hang-up of a call, and
//! placing an outbound call. JSON in and out; every call command goes to the call's own task.

use crate::sip::{Gateway, Originate, OriginateError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use warmline_call::CallEvent;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/v1/stats", get(stats))
        .route("/v1/calls", get(list).post(originate))
        .route("/v1/calls/{id}", get(show).delete(hangup))
        .route("/v1/calls/{id}/hold", post(hold))
        .route("/v1/calls/{id}/resume", post(resume))
        .route("/v1/calls/{id}/dtmf", post(dtmf))
        .route("/api/calls/{id}/context", get(context))
        .route("/api/calls/{id}/audit", get(audit))
        .with_state(gw)
}

async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

/// The call's context packet, from the store (so it outlives the call and a restart).
async fn context(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match gw.store.read(move |s| s.context(&key)).await {
        Ok(Some(body)) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Ok(None) => not_found(&id),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The call's audit trail, oldest first, with its CRM deliveries.
async fn audit(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match gw
        .store
        .read(move |s| Ok((s.audit(&key)?, s.outbox_for(&key)?)))
        .await
    {
        Ok((events, _)) if events.is_empty() => not_found(&id),
        Ok((events, deliveries)) => Json(json!({
            "call_id": id,
            "events": events,
            "deliveries": deliveries.iter().map(|d| json!({
                "id": d.id, "url": d.url, "attempts": d.attempts,
                "delivered_at_ms": d.delivered_at_ms, "last_error": d.last_error,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn stats(State(gw): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let outbox_pending = gw.store.read(|s| s.pending()).await.ok();
    Json(json!({
        "active_calls": gw.active_calls(),
        "draining": gw.is_draining(),
        "malformed_answered": gw.guard_stats.answered.load(Ordering::Relaxed),
        "malformed_dropped": gw.guard_stats.dropped.load(Ordering::Relaxed),
        "media": &gw.media.counters,
        "speech": gw.speech.as_ref().map(|s| &s.counters),
        "assistant": &gw.assistant.counters,
        "crm": &*gw.crm,
        "store": &*gw.store.counters,
        "outbox_pending": outbox_pending,
    }))
}

async fn list(State(gw): State<Arc<Gateway>>) -> Response {
    Json(gw.list_calls()).into_response()
}

async fn show(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    match gw.call(&id) {
        Some(h) => Json(crate::sip::snapshot_of(&h)).into_response(),
        None => not_found(&id),
    }
}

async fn command(gw: &Gateway, id: &str, ev: CallEvent) -> Response {
    match gw.call(id) {
        Some(h) if h.commands.send(ev).is_ok() => {
            (StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response()
        }
        _ => not_found(id),
    }
}

async fn hold(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    command(&gw, &id, CallEvent::Hold).await
}

async fn resume(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    command(&gw, &id, CallEvent::Resume).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DtmfBody {
    digits: String,
}

/// Send RFC 4733 digits to the call's peer (IVR navigation on outbound calls, tests).
async fn dtmf(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Json(body): Json<DtmfBody>,
) -> Response {
    if body.digits.is_empty()
        || !body
            .digits
            .chars()
            .all(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(c))
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "digits must be 0-9, *, #, A-D"})),
        )
            .into_response();
    }
    command(
        &gw,
        &id,
        CallEvent::SendDtmf {
            digits: body.digits,
        },
    )
    .await
}

async fn hangup(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    command(&gw, &id, CallEvent::Hangup).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginateBody {
    to: String,
    ring_timeout_s: Option<u64>,
    auth_username: Option<String>,
    auth_password: Option<String>,
}

/// Place a call and answer once its outcome is known (answered, busy, no-answer, …).
async fn originate(State(gw): State<Arc<Gateway>>, Json(body): Json<OriginateBody>) -> Response {
    let ring = body
        .ring_timeout_s
        .map(Duration::from_secs)
        .unwrap_or(gw.cfg.outbound.ring_timeout);
    let req = Originate {
        to: body.to,
        ring_timeout: Some(ring),
        auth_username: body.auth_username,
        auth_password: body.auth_password,
        ..Originate::default()
    };
    let (id, outcome) = match gw.originate(req) {
        Ok(x) => x,
        Err(e @ OriginateError::BadUri(_)) => {
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    // Ring timeout, then the CANCEL's 487, bounded by transaction Timer B (32 s).
    match tokio::time::timeout(ring + Duration::from_secs(40), outcome).await {
        Ok(Ok(outcome)) => Json(json!({"id": id, "outcome": outcome})).into_response(),
        _ => error(StatusCode::GATEWAY_TIMEOUT, "no outcome"),
    }
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no call {id}"))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}
