//! Session timers (RFC 4028): what a request or response says about them, what we answer,
//! and, for a running session, when it must be refreshed and when it is dead.
//!
//! A dialog lives only in the memory of the two ends and the proxies between them; a BYE
//! lost to a crash or a network cut leaves a half-open call that a PBX bills and counts
//! against its trunk until someone notices. A session timer makes the session prove it is
//! alive: one end (the refresher) sends a re-INVITE or UPDATE every half interval, and
//! either end may end a session whose refresh did not come (BYE).
//!
//! Sans-IO: [`parse`] reads header values the driver hands over, [`answer`] decides, and
//! [`SessionTimer`] is told the time. The refresher is named per transaction by role
//! (`refresher=uac` is whoever sent that request), so [`Agreed`] keeps it as "we refresh"
//! or not, and the headers are written for the transaction at hand.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The least interval RFC 4028 lets a Min-SE name (§5), and our default minimum.
pub const RFC_MIN_SE: u32 = 90;

/// Who refreshes, as a `refresher` parameter names it: the request's sender or its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// What one request or response says about session timers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked {
    /// `Session-Expires` delta-seconds, if present.
    pub expires: Option<u32>,
    /// Its `refresher` parameter, if present.
    pub refresher: Option<Refresher>,
    /// `Min-SE`, if present.
    pub min_se: Option<u32>,
    /// The sender lists `timer` in `Supported` (or `Require`).
    pub supports_timer: bool,
}

impl Asked {
    /// Nothing about session timers was said.
    pub fn is_empty(&self) -> bool {
        *self == Asked::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionTimerError {
    #[error("malformed {header}: {value:?}")]
    Malformed { header: &'static str, value: String },
}

/// Read the session-timer headers out of a message's `(name, value)` pairs (long or compact
/// names, any case). A malformed `Session-Expires` or `Min-SE` is an error: the request is
/// answered `400`, as RFC 3261 §21.4.1 does for any header it cannot read.
pub fn parse<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Asked, SessionTimerError> {
    let mut asked = Asked::default();
    for (name, value) in headers {
        let name = name.trim();
        if name.eq_ignore_ascii_case("Session-Expires") || name.eq_ignore_ascii_case("x") {
            let (expires, refresher) = session_expires(value)?;
            asked.expires = Some(expires);
            asked.refresher = refresher;
        } else if name.eq_ignore_ascii_case("Min-SE") {
            // Min-SE = delta-seconds *(SEMI generic-param)
            let secs = value.split(';').next().unwrap_or("").trim();
            asked.min_se =
                Some(
                    delta_seconds(secs).ok_or_else(|| SessionTimerError::Malformed {
                        header: "Min-SE",
                        value: value.to_string(),
                    })?,
                );
        } else if (name.eq_ignore_ascii_case("Supported")
            || name.eq_ignore_ascii_case("k")
            || name.eq_ignore_ascii_case("Require"))
            && value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("timer"))
        {
            asked.supports_timer = true;
        }
    }
    Ok(asked)
}

/// `Session-Expires = delta-seconds *(SEMI se-params)`, `se-params = refresher-param /
/// generic-param`: unknown parameters are ignored, an unknown refresher is malformed.
fn session_expires(value: &str) -> Result<(u32, Option<Refresher>), SessionTimerError> {
    let bad = || SessionTimerError::Malformed {
        header: "Session-Expires",
        value: value.to_string(),
    };
    let mut parts = value.split(';');
    let expires = delta_seconds(parts.next().unwrap_or("").trim()).ok_or_else(bad)?;
    let mut refresher = None;
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("refresher") {
            refresher = Some(match v.trim() {
                v if v.eq_ignore_ascii_case("uac") => Refresher::Uac,
                v if v.eq_ignore_ascii_case("uas") => Refresher::Uas,
                _ => return Err(bad()),
            });
        }
    }
    Ok((expires, refresher))
}

/// RFC 3261 delta-seconds, at least one second (a zero interval would refresh without end).
fn delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Longer than a u32 is "a very long time" (RFC 3261 §25.1 caps delta-seconds at 2^32-1).
    let n = s.parse::<u64>().ok()?.min(u64::from(u32::MAX));
    (n > 0).then_some(n as u32)
}

/// A session timer both ends agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreed {
    /// The session interval, in seconds.
    pub expires: u32,
    /// We send the refreshes (else the peer does, and we watch for them).
    pub we_refresh: bool,
    /// The peer understands session timers: our 2xx says `Require: timer`.
    pub peer_supports: bool,
}

/// Our answer, as the UAS of an INVITE or a refresh, to what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It asked for none: no session timer.
    None,
    /// Below our minimum: `422 Session Interval Too Small` with this `Min-SE` (§9).
    TooSmall { min_se: u32 },
    /// Run this timer, and say so in the 2xx ([`Agreed::response_headers`]).
    Run(Agreed),
}

/// Decide, as the UAS of a request carrying `asked`, with our own minimum `min_se` (§9).
///
/// A request without `Session-Expires` runs no timer: we do not impose one on a peer that
/// did not ask (RFC 4028 lets a UAS add one; warmline leaves the choice with the PBX). The
/// refresher is the one the request named; when it named none, a peer that supports timers
/// refreshes (its refreshes are what tell us it is alive), and one that does not cannot, so
/// we do. The interval is the request's: a UAS may only lower it, and we have no reason to.
pub fn answer(asked: &Asked, min_se: u32) -> Answer {
    let Some(expires) = asked.expires else {
        return Answer::None;
    };
    if expires < min_se {
        return Answer::TooSmall {
            min_se: min_se.max(asked.min_se.unwrap_or(0)),
        };
    }
    let we_refresh = match asked.refresher {
        Some(Refresher::Uas) => true,
        Some(Refresher::Uac) => false,
        None => !asked.supports_timer,
    };
    // A peer that does not support timers cannot refresh, whatever a proxy wrote.
    let we_refresh = we_refresh || !asked.supports_timer;
    Answer::Run(Agreed {
        expires,
        we_refresh,
        peer_supports: asked.supports_timer,
    })
}

/// What the 2xx to our refresh (or to our INVITE) agreed, if anything (§7.2): without a
/// `Session-Expires` in it there is no session timer; `refresher=uac` names us, the sender.
pub fn agreed_by_response(asked: &Asked) -> Option<Agreed> {
    let expires = asked.expires?;
    Some(Agreed {
        expires,
        we_refresh: asked.refresher != Some(Refresher::Uas),
        peer_supports: true,
    })
}

impl Agreed {
    /// The headers of our 2xx to the request that agreed this (the initial INVITE or a
    /// refresh): its interval and refresher, and `Require: timer` when the peer has to act on
    /// them.
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        // In the 2xx, the refresher is named from the request's point of view: the request's
        // sender is the uac, and we are its uas.
        let who = if self.we_refresh {
            Refresher::Uas
        } else {
            Refresher::Uac
        };
        let mut h = vec![(
            "Session-Expires",
            format!("{};refresher={}", self.expires, who.as_str()),
        )];
        if self.peer_supports {
            h.push(("Require", "timer".to_string()));
        }
        h
    }

    /// The headers of a re-INVITE we send in this session (a refresh, or a hold that also
    /// refreshes): we are its uac. The peer keeps refreshing if it was the refresher.
    pub fn request_headers(&self, min_se: u32) -> Vec<(&'static str, String)> {
        let who = if self.we_refresh {
            Refresher::Uac
        } else {
            Refresher::Uas
        };
        vec![
            (
                "Session-Expires",
                format!("{};refresher={}", self.expires, who.as_str()),
            ),
            ("Min-SE", min_se.to_string()),
            ("Supported", "timer".to_string()),
        ]
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.expires))
    }
}

/// What a running session timer needs done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// We are the refresher and half the interval has passed: send a re-INVITE.
    Refresh,
    /// The session is dead: no refresh came (or ours got no 2xx) in time. Send BYE.
    Expired,
}

/// One dialog's running session timer.
#[derive(Debug, Clone)]
pub struct SessionTimer {
    agreed: Agreed,
    /// The last refresh: the 2xx that started or renewed the session.
    refreshed_at: Instant,
    /// Our refresh is out (sent, not yet answered).
    refreshing: bool,
    /// After a refused refresh: when to try again.
    retry_at: Option<Instant>,
}

impl SessionTimer {
    pub fn new(now: Instant, agreed: Agreed) -> Self {
        Self {
            agreed,
            refreshed_at: now,
            refreshing: false,
            retry_at: None,
        }
    }

    pub fn agreed(&self) -> &Agreed {
        &self.agreed
    }

    /// When the session is dead without a refresh. The refresher's peer ends it a little
    /// early (§10: the interval less a third of it or 32 s, whichever is less), so its BYE
    /// beats a refresh that is merely late in transit; the refresher gives its own refresh,
    /// sent at half time, the whole interval.
    pub fn expires_at(&self) -> Instant {
        let interval = self.agreed.interval();
        let margin = if self.agreed.we_refresh {
            Duration::ZERO
        } else {
            (interval / 3).min(Duration::from_secs(32))
        };
        self.refreshed_at + interval - margin
    }

    fn refresh_at(&self) -> Option<Instant> {
        (self.agreed.we_refresh && !self.refreshing).then(|| {
            self.retry_at
                .unwrap_or(self.refreshed_at + self.agreed.interval() / 2)
        })
    }

    /// When [`SessionTimer::due`] next has something to say.
    pub fn poll_timeout(&self) -> Instant {
        match self.refresh_at() {
            Some(r) => r.min(self.expires_at()),
            None => self.expires_at(),
        }
    }

    /// What is due at `now`, if anything. A refresh is asked for once; the caller says
    /// [`SessionTimer::refresh_sent`] when it sent it, or the timer asks again next poll.
    pub fn due(&self, now: Instant) -> Option<Due> {
        if now >= self.expires_at() {
            return Some(Due::Expired);
        }
        self.refresh_at()
            .filter(|&t| now >= t)
            .map(|_| Due::Refresh)
    }

    /// Our refresh request went out.
    pub fn refresh_sent(&mut self) {
        self.refreshing = true;
    }

    /// Our refresh got a final response that was not a 2xx, and the session goes on as it
    /// was (RFC 3261 §14.1): try again halfway to expiry, so a peer that keeps refusing
    /// is asked a few times, never in a loop, and the call ends at expiry.
    pub fn refresh_failed(&mut self, now: Instant) {
        self.refreshing = false;
        let left = self.expires_at().saturating_duration_since(now);
        self.retry_at = Some(now + (left / 2).max(Duration::from_secs(1)));
    }

    /// A 2xx renewed the session at `now` (a refresh either way, or any re-INVITE), with
    /// what it agreed: `None` turns the timer off (§7.2, §9: a session refreshed without
    /// `Session-Expires` has none).
    pub fn refreshed(self, now: Instant, agreed: Option<Agreed>) -> Option<Self> {
        agreed.map(|agreed| Self::new(now, agreed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(h: &[(&str, &str)]) -> Asked {
        parse(h.iter().copied()).unwrap()
    }

    #[test]
    fn reads_long_and_compact_names_and_the_refresher() {
        let a = asked(&[
            ("Session-Expires", "1800;refresher=uac"),
            ("Min-SE", "90"),
            ("Supported", "replaces, timer"),
        ]);
        assert_eq!(
            a,
            Asked {
                expires: Some(1800),
                refresher: Some(Refresher::Uac),
                min_se: Some(90),
                supports_timer: true
            }
        );
        let a = asked(&[("x", " 600 ; foo=bar ;REFRESHER=UAS"), ("k", "timer")]);
        assert_eq!(a.expires, Some(600));
        assert_eq!(a.refresher, Some(Refresher::Uas));
        assert!(a.supports_timer);
        assert_eq!(asked(&[("Supported", "100rel")]), Asked::default());
    }

    #[test]
    fn malformed_values_are_errors() {
        for (h, v) in [
            ("Session-Expires", ""),
            ("Session-Expires", "abc"),
            ("Session-Expires", "-5"),
            ("Session-Expires", "0"),
            ("Session-Expires", "1800;refresher=both"),
            ("Min-SE", "ninety"),
        ] {
            assert!(parse([(h, v)]).is_err(), "{h}: {v}");
        }
        // Far past a u32: "a very long time", not an error.
        assert_eq!(
            asked(&[("Session-Expires", "99999999999999")]).expires,
            Some(u32::MAX)
        );
    }

    #[test]
    fn below_our_minimum_is_422_with_the_larger_minimum() {
        let a = asked(&[("Session-Expires", "60"), ("Supported", "timer")]);
        assert_eq!(answer(&a, 90), Answer::TooSmall { min_se: 90 });
        let a = asked(&[("Session-Expires", "60"), ("Min-SE", "120")]);
        assert_eq!(answer(&a, 90), Answer::TooSmall { min_se: 120 });
        assert_eq!(answer(&Asked::default(), 90), Answer::None);
    }

    #[test]
    fn the_refresher_is_the_named_one_else_the_peer_if_it_can() {
        let run = |h: &[(&str, &str)]| match answer(&asked(h), 90) {
            Answer::Run(a) => a,
            other => panic!("{other:?}"),
        };
        let a = run(&[("Session-Expires", "1800;refresher=uac"), ("k", "timer")]);
        assert!(!a.we_refresh);
        assert_eq!(
            a.response_headers(),
            [
                ("Session-Expires", "1800;refresher=uac".to_string()),
                ("Require", "timer".to_string())
            ]
        );
        let a = run(&[("Session-Expires", "1800;refresher=uas"), ("k", "timer")]);
        assert!(a.we_refresh);
        assert_eq!(a.response_headers()[0].1, "1800;refresher=uas");
        // Named none: a peer that supports timers refreshes.
        assert!(!run(&[("Session-Expires", "300"), ("k", "timer")]).we_refresh);
        // A proxy asked for a timer the caller cannot run: we refresh, and require nothing.
        let a = run(&[("Session-Expires", "300;refresher=uac")]);
        assert!(a.we_refresh);
        assert_eq!(
            a.response_headers(),
            [("Session-Expires", "300;refresher=uas".to_string())]
        );
        // Our own re-INVITE names us as its uac.
        assert_eq!(a.request_headers(90)[0].1, "300;refresher=uac");
    }
}
