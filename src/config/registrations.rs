//! `[[registrations]]`: the trunks warmline registers a Contact with (RFC 3261 §10), so that
//! a provider that delivers a DID only to a registered user agent sends its calls here.

use super::{ConfigError, Ctx, secs};
use rsipstack::sip::{Scheme, Uri};
use serde::Deserialize;
use std::time::Duration;

/// One `[[registrations]]` entry, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistration {
    registrar: String,
    aor: String,
    #[serde(default)]
    auth_username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default = "default_expires")]
    expires_s: u32,
    #[serde(default = "default_retry_base", deserialize_with = "secs")]
    retry_base_s: Duration,
    #[serde(default = "default_retry_max", deserialize_with = "secs")]
    retry_max_s: Duration,
}

fn default_expires() -> u32 {
    3600
}

fn default_retry_base() -> Duration {
    Duration::from_secs(30)
}

fn default_retry_max() -> Duration {
    Duration::from_secs(1800)
}

/// A registration the driver runs.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The Request-URI of each REGISTER, and where it is sent (its `transport` parameter
    /// or `sips:` scheme choose TCP or TLS).
    pub registrar: Uri,
    /// The address of record whose calls should reach us: To and From of each REGISTER.
    pub aor: Uri,
    /// The digest user name, when the provider's differs from the AOR's user.
    pub auth_username: Option<String>,
    /// Without one, a registrar that challenges is a failure (401), logged as such.
    pub password: Option<String>,
    pub expires: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl RegistrationConfig {
    /// The AOR's user part (to whom calls for the DID are addressed).
    pub fn user(&self) -> String {
        self.aor
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default()
    }
}

pub(super) fn parse(
    raw: Vec<RawRegistration>,
    cx: &Ctx,
) -> Result<Vec<RegistrationConfig>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let err = |key: &str, m: String| cx.entry_err("registrations", i, key, m);
            let uri = |key: &str, s: &str| {
                let u = Uri::try_from(s.trim())
                    .map_err(|e| err(key, format!("`{s}` is not a SIP URI: {e}")))?;
                match u.scheme {
                    Some(Scheme::Sip) | Some(Scheme::Sips) => Ok(u),
                    _ => Err(err(key, format!("`{s}` is not a sip: or sips: URI"))),
                }
            };
            let registrar = uri("registrar", &r.registrar)?;
            let aor = uri("aor", &r.aor)?;
            if aor.auth.as_ref().is_none_or(|a| a.user.is_empty()) {
                return Err(err(
                    "aor",
                    format!("`{}` has no user part (sip:user@domain)", r.aor),
                ));
            }
            if r.expires_s == 0 {
                return Err(err(
                    "expires_s",
                    "must be at least 1 (0 would remove the binding)".into(),
                ));
            }
            if r.retry_base_s.is_zero() {
                return Err(err("retry_base_s", "must be at least 1".into()));
            }
            if r.retry_max_s < r.retry_base_s {
                return Err(err(
                    "retry_max_s",
                    format!(
                        "{} s is under retry_base_s ({} s)",
                        r.retry_max_s.as_secs(),
                        r.retry_base_s.as_secs()
                    ),
                ));
            }
            if r.auth_username.is_some() && r.password.is_none() {
                return Err(err(
                    "password",
                    "auth_username is set but password is not".into(),
                ));
            }
            Ok(RegistrationConfig {
                registrar,
                aor,
                auth_username: r.auth_username.filter(|u| !u.is_empty()),
                password: r.password,
                expires: r.expires_s,
                retry_base: r.retry_base_s,
                retry_max: r.retry_max_s,
            })
        })
        .collect()
}
