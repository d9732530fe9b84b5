//! Registering to trunks: one task per `[[registrations]]` entry sends the REGISTERs that
//! `warmline_signaling::registration::Schedule` asks for, through rsipstack's
//! `Registration` (which answers the registrar's 401/407 digest challenge), and reports
//! each outcome to the log, the metrics and `/readyz`.
//!
//! On drain the tasks remove their bindings (`Expires: 0`) so the provider stops sending
//! calls to a gateway that would refuse them; [`Registrations::unregister_all`] waits for
//! that, bounded, before the process exits.

use super::Gateway;
use crate::config::{RegistrationConfig, SipTransport};
use crate::metrics::Metrics;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::registration::Registration;
use rsipstack::sip::{Param, Response, Scheme, Transport, Uri};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use warmline_signaling::registration::{Action, Outcome, Schedule, Settings, State};

/// Where one registration stands, as `/readyz` and `/v1/stats` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistrationStatus {
    pub aor: String,
    pub registrar: String,
    /// idle, registering, registered, failed, unregistering, unregistered.
    pub state: &'static str,
    /// Our Contact is bound at the registrar now (a failed refresh keeps an earlier binding
    /// until it lapses).
    pub bound: bool,
    /// What the last answer said: the interval granted, or why it failed.
    pub detail: String,
}

/// The running registrations.
#[derive(Debug)]
pub struct Registrations {
    entries: Vec<Arc<Mutex<RegistrationStatus>>>,
    drain: watch::Sender<bool>,
    done: Vec<watch::Receiver<bool>>,
}

impl Registrations {
    /// One task per configured registration, each sending its first REGISTER at once.
    pub(super) fn start(gw: &Arc<Gateway>, cancel: &CancellationToken) -> Self {
        let (drain, drain_rx) = watch::channel(false);
        let mut entries = Vec::new();
        let mut done = Vec::new();
        for (i, cfg) in gw.cfg.registrations.iter().enumerate() {
            let status = Arc::new(Mutex::new(RegistrationStatus {
                aor: cfg.aor.to_string(),
                registrar: cfg.registrar.to_string(),
                state: State::Idle.name(),
                bound: false,
                detail: String::new(),
            }));
            if !gw.cfg.sip.allow_from.is_empty() && !registrar_allowed(gw, &cfg.registrar) {
                tracing::warn!(
                    registrar = %cfg.registrar,
                    "[sip] allow_from does not name this registrar's address: calls it delivers from there will be refused"
                );
            }
            let (finished, finished_rx) = watch::channel(false);
            let driver = Driver {
                registration: registration_for(gw, cfg),
                schedule: Schedule::new(
                    Settings {
                        expires: cfg.expires,
                        retry_base: cfg.retry_base,
                        retry_max: cfg.retry_max,
                    },
                    rand::random::<u64>() ^ i as u64,
                ),
                server: cfg.registrar.clone(),
                aor: cfg.aor.to_string(),
                status: status.clone(),
                metrics: gw.planes.metrics.clone(),
            };
            let span = tracing::info_span!("registration", aor = %cfg.aor);
            tokio::spawn(
                driver
                    .run(drain_rx.clone(), cancel.clone(), finished)
                    .instrument(span),
            );
            entries.push(status);
            done.push(finished_rx);
        }
        Registrations {
            entries,
            drain,
            done,
        }
    }

    pub fn statuses(&self) -> Vec<RegistrationStatus> {
        self.entries
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Remove every binding (`Expires: 0`) and wait, up to `limit`, for the registrars'
    /// answers. A registrar that does not answer costs the drain `limit`, no more: its
    /// binding lapses on its own.
    pub async fn unregister_all(&self, limit: Duration) {
        if self.entries.is_empty() {
            return;
        }
        let _ = self.drain.send(true);
        let all = async {
            for rx in &self.done {
                let mut rx = rx.clone();
                // An Err means the task is gone: nothing more to wait for.
                let _ = rx.wait_for(|finished| *finished).await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                waited_ms = limit.as_millis() as u64,
                "a registrar did not answer our un-REGISTER in time; its binding will lapse"
            );
        }
    }
}

/// rsipstack's REGISTER sender for one entry: digest credentials, our Contact for the
/// registrar's transport, and To/From naming the AOR (rsipstack would put the
/// registrar's host there, which is the AOR only when the two share a domain).
fn registration_for(gw: &Gateway, cfg: &RegistrationConfig) -> Registration {
    let user = cfg.user();
    let credential = cfg.password.as_ref().map(|password| Credential {
        username: user.clone(),
        password: password.clone(),
        realm: None,
        auth_username: cfg.auth_username.clone(),
    });
    let mut registration = Registration::new(gw.dialog_layer().endpoint.clone(), credential);
    let mut contact = contact_for_registrar(gw, &cfg.registrar);
    contact.auth = Some(rsipstack::sip::Auth {
        user,
        password: None,
    });
    registration.contact = Some(rsipstack::sip::typed::Contact {
        display_name: None,
        uri: contact,
        params: vec![],
    });
    let to = rsipstack::sip::typed::To {
        display_name: None,
        uri: cfg.aor.clone(),
        params: vec![],
    };
    let from = rsipstack::sip::typed::From {
        display_name: None,
        uri: cfg.aor.clone(),
        params: vec![],
    }
    .with_tag(rsipstack::transaction::make_tag());
    registration.extra_headers = vec![to.into(), from.into()];
    registration
}

/// The Contact for the transport the registrar is reached over: calls for the AOR come
/// back to it.
fn contact_for_registrar(gw: &Gateway, registrar: &Uri) -> Uri {
    let transport = registrar.params.iter().find_map(|p| match p {
        Param::Transport(t) => Some(*t),
        _ => None,
    });
    let sips = registrar.scheme == Some(Scheme::Sips);
    let transport = if sips {
        Some(Transport::Tls)
    } else {
        transport
    };
    let mut contact = gw.contact_for(transport, sips);
    if transport == Some(Transport::Tcp)
        && gw
            .cfg
            .sip
            .listen
            .iter()
            .any(|l| l.transport == SipTransport::Tcp)
    {
        contact.params.push(Param::Transport(Transport::Tcp));
    }
    contact
}

fn registrar_allowed(gw: &Gateway, registrar: &Uri) -> bool {
    match &registrar.host_with_port.host {
        rsipstack::sip::Host::IpAddr(ip) => gw.cfg.sip.allow_from.iter().any(|n| n.contains(ip)),
        // A name: its addresses are the resolver's business; say nothing.
        rsipstack::sip::Host::Domain(_) => true,
    }
}

struct Driver {
    registration: Registration,
    schedule: Schedule,
    server: Uri,
    aor: String,
    status: Arc<Mutex<RegistrationStatus>>,
    metrics: Arc<Metrics>,
}

impl Driver {
    async fn run(
        mut self,
        mut drain: watch::Receiver<bool>,
        cancel: CancellationToken,
        finished: watch::Sender<bool>,
    ) {
        loop {
            if *drain.borrow_and_update() {
                self.schedule.drain();
            }
            let now = Instant::now().into_std();
            if let Some(action) = self.schedule.poll_action(now) {
                self.report(action, None);
                let expires = match action {
                    Action::Register { expires } => expires,
                    Action::Unregister => 0,
                };
                let outcome = tokio::select! {
                    result = self.registration.register(self.server.clone(), Some(expires)) => {
                        match result {
                            Ok(resp) => self.outcome_of(&resp),
                            Err(e) => Outcome::NoResponse { reason: e.to_string() },
                        }
                    }
                    () = cancel.cancelled() => break,
                };
                self.schedule
                    .on_outcome(Instant::now().into_std(), outcome.clone());
                self.report(action, Some(&outcome));
                continue;
            }
            if self.schedule.drained() {
                break;
            }
            let wake = self.schedule.poll_timeout(now);
            tokio::select! {
                () = async {
                    match wake {
                        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                        None => std::future::pending().await,
                    }
                } => {}
                changed = drain.changed() => {
                    // The gateway is gone: nothing will ask us to drain any more.
                    if changed.is_err() {
                        break;
                    }
                }
                () = cancel.cancelled() => break,
            }
        }
        self.metrics
            .sip_registered
            .with_label_values(&[&self.aor])
            .set(0);
        let _ = finished.send(true);
    }

    fn outcome_of(&self, resp: &Response) -> Outcome {
        let code = resp.status_code.code();
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name().eq_ignore_ascii_case(name))
                .and_then(|h| h.value().split(';').next()?.trim().parse::<u32>().ok())
        };
        match code {
            200..=299 => Outcome::Registered {
                granted: self.registration.granted_expires.unwrap_or(0),
            },
            423 => Outcome::IntervalTooBrief {
                min_expires: header("Min-Expires"),
            },
            _ => Outcome::Rejected {
                status: code,
                // StatusCode's Display is `403 Forbidden`, code included.
                reason: match code {
                    401 | 407 => format!(
                        "{}: the registrar refused our credentials",
                        resp.status_code
                    ),
                    _ => resp.status_code.to_string(),
                },
                retry_after: header("Retry-After"),
            },
        }
    }

    /// The log line, the metrics and the status for an action sent (`outcome` None) or
    /// answered.
    fn report(&self, action: Action, outcome: Option<&Outcome>) {
        let now = Instant::now().into_std();
        let bound = self.schedule.bound(now);
        let state = self.schedule.state();
        let detail = match (outcome, state) {
            (None, _) => String::new(),
            (Some(_), State::Registered { granted, .. }) => format!("granted {granted} s"),
            (Some(_), State::Failed { reason, .. }) => reason.clone(),
            (Some(_), _) => String::new(),
        };
        if let Ok(mut s) = self.status.lock() {
            s.state = state.name();
            s.bound = bound;
            if outcome.is_some() {
                s.detail = detail.clone();
            }
        }
        self.metrics
            .sip_registered
            .with_label_values(&[&self.aor])
            .set(i64::from(bound));
        let Some(outcome) = outcome else {
            tracing::debug!(?action, "REGISTER sent");
            return;
        };
        let label = match (action, outcome) {
            (Action::Unregister, _) => "unregistered",
            (_, Outcome::Registered { granted }) if *granted > 0 => "registered",
            (_, Outcome::Registered { .. }) => "no_binding",
            (_, Outcome::IntervalTooBrief { .. }) => "interval_too_brief",
            (_, Outcome::Rejected { .. }) => "rejected",
            (_, Outcome::NoResponse { .. }) => "no_response",
        };
        self.metrics
            .sip_registrations_total
            .with_label_values(&[&self.aor, label])
            .inc();
        match state {
            State::Registered {
                granted,
                refresh_at,
                ..
            } => tracing::info!(
                granted_s = granted,
                refresh_in_s = refresh_at.saturating_duration_since(now).as_secs(),
                "registered"
            ),
            // A 423 with a Min-Expires we can meet is the registrar's way of telling us
            // its floor, not a failure: the next REGISTER is already on its way.
            State::Failed {
                failures: 0,
                reason,
                ..
            } if matches!(outcome, Outcome::IntervalTooBrief { .. }) => {
                tracing::info!(%reason, "registrar asked for a longer interval")
            }
            State::Failed {
                status,
                reason,
                failures,
                retry_at,
            } => tracing::warn!(
                status = status.map(u32::from),
                failures,
                retry_in_s = retry_at.saturating_duration_since(now).as_secs(),
                %reason,
                "registration failed"
            ),
            State::Unregistered => tracing::info!(?outcome, "unregistered"),
            other => tracing::debug!(state = other.name(), "registration"),
        }
    }
}
