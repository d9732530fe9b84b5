//! Registering to a trunk (RFC 3261 §10, back-off per RFC 5626 §4.5): when to send the next
//! REGISTER, what an answer means, and whether a binding is in place now.
//!
//! Many trunk providers deliver a DID only to a user agent that has registered a Contact for
//! it with digest credentials. The binding lasts for the interval the registrar grants, so
//! it must be refreshed before it lapses; a registrar that refuses or does not answer must be
//! retried without hammering it (a fleet of gateways restarting together would otherwise
//! knock over the provider's registrar), and a draining gateway removes its binding so the
//! provider stops sending it calls.
//!
//! Sans-IO: [`Schedule`] is told the time and the outcome of each REGISTER; the driver owns
//! the transaction (rsipstack answers the 401/407 challenge) and the timer. The jitter is a
//! seeded generator, so a test on the virtual clock sees the same waits every run.

use std::time::{Duration, Instant};

/// How long before a binding lapses the refresh goes out, for long intervals. Half the
/// interval for short ones, whichever is later: a 3600 s binding is refreshed at 3540 s, a
/// 60 s one at 30 s.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What one registration asks for and how it backs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The interval asked for in `Expires`.
    pub expires: u32,
    /// RFC 5626 §4.5 base-time: the first wait after a failure is between half and all of
    /// twice this.
    pub retry_base: Duration,
    /// RFC 5626 §4.5 max-time: the longest wait between attempts.
    pub retry_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expires: 3600,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(1800),
        }
    }
}

/// A REGISTER the driver should send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Add or refresh our Contact, asking for this interval (`Expires`).
    Register { expires: u32 },
    /// Remove our Contact (`Expires: 0`).
    Unregister,
}

/// How a REGISTER ended, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `2xx`: the interval the registrar granted our Contact (its `expires` parameter or the
    /// `Expires` header).
    Registered { granted: u32 },
    /// `423 Interval Too Brief`, with its `Min-Expires` if it sent one.
    IntervalTooBrief { min_expires: Option<u32> },
    /// Any other final response (a 401 we could not answer, 403, 404, 5xx…), with the
    /// `Retry-After` seconds if the registrar sent one.
    Rejected {
        status: u16,
        reason: String,
        retry_after: Option<u32>,
    },
    /// No final response: a transaction timeout, a connection that could not be made.
    NoResponse { reason: String },
}

/// Where a registration stands, for `/readyz`, the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Nothing sent yet.
    Idle,
    /// A REGISTER is out.
    Registering,
    /// Bound; the refresh goes out at `refresh_at`.
    Registered {
        granted: u32,
        refresh_at: Instant,
        expires_at: Instant,
    },
    /// The last attempt failed; the next goes out at `retry_at`. A binding from an earlier
    /// success may still hold (see [`Schedule::bound`]).
    Failed {
        status: Option<u16>,
        reason: String,
        failures: u32,
        retry_at: Instant,
    },
    /// Draining: the un-REGISTER is out.
    Unregistering,
    /// Draining is done (or there was nothing to remove). Nothing more is sent.
    Unregistered,
}

impl State {
    /// One word for the state, as `/readyz` and the log name it.
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Registering => "registering",
            State::Registered { .. } => "registered",
            State::Failed { .. } => "failed",
            State::Unregistering => "unregistering",
            State::Unregistered => "unregistered",
        }
    }
}

/// One registration's timers and state.
#[derive(Debug, Clone)]
pub struct Schedule {
    settings: Settings,
    state: State,
    /// The interval the next REGISTER asks for: `settings.expires`, raised by a 423.
    asking: u32,
    /// When the binding we last had lapses at the registrar, counted from when the REGISTER
    /// that got it was sent (the registrar started its clock no earlier).
    bound_until: Option<Instant>,
    /// When the REGISTER now out was sent.
    sent_at: Option<Instant>,
    /// What is out: a register or the un-register.
    in_flight: Option<Action>,
    failures: u32,
    draining: bool,
    rng: u64,
}

impl Schedule {
    /// A registration that sends its first REGISTER at once. `seed` drives the back-off
    /// jitter (the driver seeds it per process and registration so that gateways restarted
    /// together spread their retries).
    pub fn new(settings: Settings, seed: u64) -> Self {
        Schedule {
            settings,
            state: State::Idle,
            asking: settings.expires,
            bound_until: None,
            sent_at: None,
            in_flight: None,
            failures: 0,
            draining: false,
            // splitmix64 must not start at a fixed point; any odd constant will do.
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Our Contact is bound at the registrar now: the last success has not lapsed and it has
    /// not been removed.
    pub fn bound(&self, now: Instant) -> bool {
        self.bound_until.is_some_and(|until| now < until)
    }

    /// Consecutive failed attempts (0 once one succeeds).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The REGISTER to send now, if one is due and none is out. The driver sends it and
    /// reports with [`Schedule::on_outcome`].
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        if self.in_flight.is_some() {
            return None;
        }
        let action = if self.draining {
            match self.state {
                State::Unregistering | State::Unregistered => return None,
                _ if self.bound(now) => Action::Unregister,
                _ => {
                    // Nothing of ours is bound: nothing to remove.
                    self.state = State::Unregistered;
                    return None;
                }
            }
        } else {
            match self.state {
                State::Idle => {}
                State::Registered { refresh_at, .. } if now >= refresh_at => {}
                State::Failed { retry_at, .. } if now >= retry_at => {}
                _ => return None,
            }
            Action::Register {
                expires: self.asking,
            }
        };
        self.state = match action {
            Action::Register { .. } => State::Registering,
            Action::Unregister => State::Unregistering,
        };
        self.sent_at = Some(now);
        self.in_flight = Some(action);
        Some(action)
    }

    /// When [`Schedule::poll_action`] next has something to send; `None` while a REGISTER is
    /// out (its outcome wakes the driver) or when nothing more will be sent.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        match &self.state {
            State::Registered { refresh_at, .. } if !self.draining => Some(*refresh_at),
            State::Failed { retry_at, .. } if !self.draining => Some(*retry_at),
            State::Unregistering | State::Unregistered => None,
            // Idle, or draining with something still to decide: at once.
            _ => Some(now),
        }
    }

    /// The outcome of the REGISTER that [`Schedule::poll_action`] handed out.
    pub fn on_outcome(&mut self, now: Instant, outcome: Outcome) {
        let Some(action) = self.in_flight.take() else {
            return;
        };
        let sent_at = self.sent_at.unwrap_or(now);
        if action == Action::Unregister {
            // Whatever the answer, we are going away: a binding the registrar kept lapses on
            // its own, and retrying an un-REGISTER would hold the drain up.
            self.bound_until = None;
            self.state = State::Unregistered;
            return;
        }
        match outcome {
            Outcome::Registered { granted } if granted > 0 => {
                self.failures = 0;
                let granted_d = Duration::from_secs(u64::from(granted));
                let expires_at = sent_at + granted_d;
                let refresh_in = (granted_d / 2).max(granted_d.saturating_sub(REFRESH_MARGIN));
                self.bound_until = Some(expires_at);
                self.state = State::Registered {
                    granted,
                    refresh_at: sent_at + refresh_in,
                    expires_at,
                };
            }
            Outcome::Registered { .. } => {
                // A 2xx that lists our Contact with expires=0 (or not at all) bound nothing.
                self.fail(
                    now,
                    Some(200),
                    "registrar kept no binding for our Contact",
                    None,
                );
            }
            Outcome::IntervalTooBrief { min_expires } => match min_expires {
                // §10.2.8: ask again at once with at least Min-Expires. A registrar that
                // answers 423 to its own minimum is a loop: back off instead.
                Some(min) if min > self.asking => {
                    self.asking = min;
                    self.state = State::Failed {
                        status: Some(423),
                        reason: format!("interval too brief: retrying with Expires: {min}"),
                        failures: self.failures,
                        retry_at: now,
                    };
                }
                _ => self.fail(
                    now,
                    Some(423),
                    &format!(
                        "423 Interval Too Brief with Min-Expires {} for Expires: {}",
                        min_expires.map_or_else(|| "absent".to_string(), |m| m.to_string()),
                        self.asking
                    ),
                    None,
                ),
            },
            Outcome::Rejected {
                status,
                reason,
                retry_after,
            } => self.fail(now, Some(status), &reason, retry_after),
            Outcome::NoResponse { reason } => self.fail(now, None, &reason, None),
        }
    }

    /// Stop registering: the next [`Schedule::poll_action`] removes our binding if one may be
    /// in place, and nothing is sent after that.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Draining is over: the un-REGISTER was answered, or there was nothing to remove.
    pub fn drained(&self) -> bool {
        self.draining && self.state == State::Unregistered
    }

    fn fail(&mut self, now: Instant, status: Option<u16>, reason: &str, retry_after: Option<u32>) {
        self.failures = self.failures.saturating_add(1);
        let wait = self
            .backoff(self.failures)
            .max(Duration::from_secs(u64::from(retry_after.unwrap_or(0))));
        self.state = State::Failed {
            status,
            reason: reason.to_string(),
            failures: self.failures,
            retry_at: now + wait,
        };
    }

    /// RFC 5626 §4.5: min(max-time, base-time · 2^failures), then a uniform pick between
    /// half of that and all of it.
    fn backoff(&mut self, failures: u32) -> Duration {
        let doubled = self
            .settings
            .retry_base
            .saturating_mul(1u32 << failures.min(20));
        let ceiling = doubled.min(self.settings.retry_max);
        let fraction = 0.5 + 0.5 * self.next_unit();
        ceiling.mul_f64(fraction)
    }

    /// splitmix64, as a uniform float in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
