//! The operator's HTTP API (axum): liveness and readiness, Prometheus metrics, live calls and
//! their commands (hold, resume, hang up, DTMF), placing an outbound call, each call's
//! context packet and audit trail, and the agent's screen-pop page with live updates (SSE).
//! JSON in and out; every call command goes to the call's own task. With `[http] token` set,
//! every route but the health checks wants it.

use crate::sip::{Gateway, Originate, OriginateError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warmline_call::CallEvent;

/// How long a client has to send a request's headers: 500 clients sending one header byte
/// at a time once held the API for as long as they liked.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more wait in the listen backlog rather than take a file
/// descriptor each.
const MAX_CONNECTIONS: usize = 256;

/// Serve `app` on `listener` until `stop`, each connection with a deadline on its headers
/// and under [`MAX_CONNECTIONS`]. Accept errors (out of file descriptors) back off instead
/// of spinning.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, stop: CancellationToken) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            let served = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
    }
}

pub fn router(gw: Arc<Gateway>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/calls", get(list))
        .route("/api/calls/{id}", get(call_view))
        .route("/api/calls/{id}/events", get(call_events))
        .route("/agent/calls/{id}", get(agent_page))
        .route("/v1/stats", get(stats))
        .route("/v1/calls", get(list).post(originate))
        .route("/v1/calls/{id}", get(show).delete(hangup))
        .route("/v1/calls/{id}/hold", post(hold))
        .route("/v1/calls/{id}/resume", post(resume))
        .route("/v1/calls/{id}/dtmf", post(dtmf))
        .route("/api/calls/{id}/context", get(context))
        .route("/api/calls/{id}/audit", get(audit))
        .route_layer(axum::middleware::from_fn_with_state(gw.clone(), authorize));
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .merge(guarded)
        .with_state(gw)
}

/// Digits one DTMF command may send: a PIN or an extension, not a flood of the call's
/// media (each digit is about 160 ms of telephone-events).
const MAX_DTMF_DIGITS: usize = 32;

/// `Authorization: Bearer <token>` (the scheme in any case, RFC 9110 §11.1), when
/// `[http] token` is set. `?token=` is taken only where a browser cannot set a header:
/// GETs of the agent's page and the live view it reads (EventSource sends no headers). A
/// token in a URL lands in logs and histories, so nothing that changes a call takes one.
async fn authorize(
    State(gw): State<Arc<Gateway>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = gw.cfg.http.token.as_deref() else {
        return next.run(req).await;
    };
    let header_ok = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, t)| constant_time_eq(t.trim().as_bytes(), token.as_bytes()));
    let path = req.uri().path();
    let page_read = req.method() == axum::http::Method::GET
        && (path.starts_with("/agent/calls/") || path.starts_with("/api/calls/"));
    let query_ok = page_read
        && req.uri().query().is_some_and(|q| {
            q.split('&')
                .filter_map(|kv| kv.strip_prefix("token="))
                .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
        });
    if header_ok || query_ok {
        next.run(req).await
    } else {
        error(StatusCode::UNAUTHORIZED, "a bearer token is required")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Liveness: the process serves.
async fn health() -> Response {
    "ok\n".into_response()
}

/// Readiness: new calls are welcome (not while draining).
/// 503 while draining, and while the recognizer listens to all the callers it can hear in
/// time and new ones would be refused (a load balancer then sends calls elsewhere). The
/// body says the speech headroom: `speech: L of C callers heard`, and where each trunk
/// registration stands.
async fn ready(State(gw): State<Arc<Gateway>>) -> Response {
    let registrations = registration_lines(&gw);
    if gw.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("draining\n{registrations}"),
        )
            .into_response();
    }
    let Some(speech) = &gw.planes.speech else {
        return format!("ready\n{registrations}").into_response();
    };
    let (listening, capacity) = (speech.listening(), speech.capacity());
    let line = format!("speech: {listening} of {capacity} callers heard\n{registrations}");
    if listening >= capacity && gw.cfg.speech.over_capacity == crate::config::OverCapacity::Refuse {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("speech capacity reached\n{line}"),
        )
            .into_response()
    } else {
        format!("ready\n{line}").into_response()
    }
}

/// One line per `[[registrations]]` entry: `registration sip:aor: registered (granted
/// 3600 s)`. A trunk we are not registered with does not make the gateway unready (other
/// trunks and PBXs may still send calls); the line says it, for the operator and the probe.
fn registration_lines(gw: &Gateway) -> String {
    gw.registrations()
        .iter()
        .map(|r| {
            let bound = if r.bound || r.state == "registered" {
                ""
            } else {
                ", not bound"
            };
            if r.detail.is_empty() {
                format!("registration {}: {}{bound}\n", r.aor, r.state)
            } else {
                format!(
                    "registration {}: {}{bound} ({})\n",
                    r.aor, r.state, r.detail
                )
            }
        })
        .collect()
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    gw.planes.metrics.calls_active.set(gw.active_calls() as i64);
    if let Some(speech) = &gw.planes.speech {
        gw.planes
            .metrics
            .speech_listening
            .set(speech.listening() as i64);
    }
    gw.planes.metrics.observe_tcp(gw.tcp_stats());
    gw.planes.metrics.observe_ports(gw.ports().stats());
    gw.planes.metrics.observe_heap();
    gw.planes.metrics.observe_log(crate::logging::dropped());
    if let Ok(depth) = gw.planes.store.read(|s| s.pending()).await {
        gw.planes.metrics.crm_outbox_depth.set(depth);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gw.planes.metrics.render(),
    )
        .into_response()
}

/// One call as the agent page and the API show it: the live state (while the call runs),
/// the context packet and the audit trail (from the store, also after the call).
async fn view_of(gw: &Arc<Gateway>, id: &str) -> Option<serde_json::Value> {
    let live = gw.call(id).map(|h| crate::sip::snapshot_of(&h));
    let key = id.to_string();
    let (context, audit) = gw
        .planes
        .store
        .read(move |s| Ok((s.context(&key)?, s.audit(&key)?)))
        .await
        .unwrap_or_default();
    if live.is_none() && context.is_none() && audit.is_empty() {
        return None;
    }
    let context: Option<serde_json::Value> = context.and_then(|c| serde_json::from_str(&c).ok());
    Some(json!({
        "id": id,
        "live": live,
        "context": context,
        "audit": audit,
    }))
}

async fn call_view(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    match view_of(&gw, &id).await {
        Some(v) => Json(v).into_response(),
        None => not_found(&id),
    }
}

/// Server-sent events: the call's view whenever it changes (checked twice a second), until
/// the call is over.
async fn call_events(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let stream = futures_util::stream::unfold(
        (gw, id, None::<String>, false),
        |(gw, id, last, done)| async move {
            if done {
                return None;
            }
            loop {
                let view = view_of(&gw, &id).await;
                let over = view.as_ref().is_none_or(|v| v["live"].is_null());
                let text = view.map(|v| v.to_string()).unwrap_or_else(|| "null".into());
                if last.as_deref() != Some(text.as_str()) || over {
                    let event = Event::default().event("call").data(text.clone());
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (gw, id, Some(text), over),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

const AGENT_PAGE: &str = include_str!("agent.html");

/// The page comes with the call's current view inlined, so it shows the call at once (and
/// without scripts waiting on the network); the event stream keeps it current.
async fn agent_page(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    let view = view_of(&gw, &id).await.unwrap_or(serde_json::Value::Null);
    // Inside a <script> element, "</" would end it early.
    let inline = view.to_string().replace("</", "<\\/");
    let page = AGENT_PAGE.replace("/*INITIAL*/null", &inline);
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// The call's context packet, from the store (so it outlives the call and a restart).
async fn context(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match gw.planes.store.read(move |s| s.context(&key)).await {
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
        .planes
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
    let outbox_pending = gw.planes.store.read(|s| s.pending()).await.ok();
    let mut v = gw.planes.metrics.stats(gw.planes.speech.is_some());
    if let Some(o) = v.as_object_mut() {
        o.insert("active_calls".into(), json!(gw.active_calls()));
        o.insert("draining".into(), json!(gw.is_draining()));
        o.insert("outbox_pending".into(), json!(outbox_pending));
        o.insert("registrations".into(), json!(gw.registrations()));
    }
    Json(v)
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
        || body.digits.len() > MAX_DTMF_DIGITS
        || !body
            .digits
            .chars()
            .all(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(c))
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("digits: 1 to {MAX_DTMF_DIGITS} of 0-9, *, #, A-D")})),
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
