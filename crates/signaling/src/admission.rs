//! Admission of new calls: who may call (`allow_from`), how many at once (`max_calls`), and
//! the drain that graceful shutdown starts. Checked before any dialog or RTP port exists, so a
//! flood of refused INVITEs costs one response each.

use ipnet::IpNet;
use std::net::IpAddr;

/// The admission rules, built once from config.
#[derive(Debug, Clone)]
pub struct Admission {
    allow_from: Vec<IpNet>,
    max_calls: usize,
    retry_after_s: u32,
}

/// What to do with a new INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Refuse with `status`; `retry_after` becomes a `Retry-After` header (RFC 3261 §20.33).
    Reject {
        status: u16,
        reason: &'static str,
        retry_after: Option<u32>,
    },
}

impl Admission {
    /// `allow_from` empty means any source may call.
    pub fn new(allow_from: Vec<IpNet>, max_calls: usize, retry_after_s: u32) -> Self {
        Self {
            allow_from,
            max_calls,
            retry_after_s,
        }
    }

    /// Decide for an INVITE from `src` while `active` calls are up.
    ///
    /// Source filtering comes first: a stranger learns nothing about our load.
    pub fn check(&self, src: IpAddr, active: usize, draining: bool) -> Verdict {
        let src = src.to_canonical();
        if !self.allow_from.is_empty() && !self.allow_from.iter().any(|net| net.contains(&src)) {
            return Verdict::Reject {
                status: 403,
                reason: "Forbidden",
                retry_after: None,
            };
        }
        if draining {
            return Verdict::Reject {
                status: 503,
                reason: "Service Unavailable (shutting down)",
                retry_after: Some(self.retry_after_s),
            };
        }
        if active >= self.max_calls {
            return Verdict::Reject {
                status: 503,
                reason: "Service Unavailable (max calls)",
                retry_after: Some(self.retry_after_s),
            };
        }
        Verdict::Admit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn empty_allow_list_admits_anyone_until_full() {
        let a = Admission::new(vec![], 2, 5);
        assert_eq!(
            a.check("198.51.100.7".parse().unwrap(), 1, false),
            Verdict::Admit
        );
        assert_eq!(
            a.check("198.51.100.7".parse().unwrap(), 2, false),
            Verdict::Reject {
                status: 503,
                reason: "Service Unavailable (max calls)",
                retry_after: Some(5)
            }
        );
    }

    #[test]
    fn source_outside_allow_list_is_forbidden_even_when_idle() {
        let a = Admission::new(nets(&["127.0.0.0/8", "::1/128"]), 10, 5);
        assert_eq!(
            a.check("127.0.0.2".parse().unwrap(), 0, false),
            Verdict::Admit
        );
        assert_eq!(a.check("::1".parse().unwrap(), 0, false), Verdict::Admit);
        assert!(matches!(
            a.check("10.1.2.3".parse().unwrap(), 0, false),
            Verdict::Reject { status: 403, .. }
        ));
    }

    #[test]
    fn v4_mapped_v6_source_matches_v4_rule() {
        let a = Admission::new(nets(&["127.0.0.0/8"]), 10, 5);
        assert_eq!(
            a.check("::ffff:127.0.0.1".parse().unwrap(), 0, false),
            Verdict::Admit
        );
    }

    #[test]
    fn draining_refuses_with_retry_after() {
        let a = Admission::new(vec![], 10, 7);
        assert!(matches!(
            a.check("127.0.0.1".parse().unwrap(), 0, true),
            Verdict::Reject {
                status: 503,
                retry_after: Some(7),
                ..
            }
        ));
    }
}
