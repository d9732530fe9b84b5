//! `[[routes]]`: agent groups, read straight into the core's [`RoutePlan`].

use super::ConfigError;
use serde::Deserialize;
use std::time::Duration;
use warmline_call::{HuntStrategy, RoutePlan};

/// One `[[routes]]` entry as written: a time-zone name and seconds, where the plan holds a
/// zone and a duration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    name: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    hours: Option<warmline_policy::hours::Hours>,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default = "sequential")]
    strategy: HuntStrategy,
    #[serde(default = "ring_timeout_s")]
    ring_timeout_s: u64,
    #[serde(default)]
    confirm: bool,
}

fn sequential() -> HuntStrategy {
    HuntStrategy::Sequential
}

fn ring_timeout_s() -> u64 {
    20
}

/// The route a fresh install has: one agent softphone on this machine (the README's
/// baresip), so the first call can be transferred without writing config.
pub(super) fn embedded() -> Vec<Entry> {
    vec![Entry {
        name: "default".into(),
        timezone: None,
        hours: None,
        targets: vec!["sip:agent@127.0.0.1:5062".into()],
        strategy: sequential(),
        ring_timeout_s: ring_timeout_s(),
        confirm: false,
    }]
}

/// `err(index, key, message)` locates a problem in the `index`-th entry.
pub(super) fn plans(
    entries: Vec<Entry>,
    err: &dyn Fn(usize, &str, String) -> ConfigError,
) -> Result<Vec<RoutePlan>, ConfigError> {
    let mut out: Vec<RoutePlan> = Vec::new();
    for (i, r) in entries.into_iter().enumerate() {
        if r.name.trim().is_empty() {
            return Err(err(i, "name", "a route needs a name".into()));
        }
        if out.iter().any(|o| o.name == r.name) {
            return Err(err(i, "name", format!("two routes are named `{}`", r.name)));
        }
        if let Some(h) = &r.hours {
            h.validate().map_err(|e| err(i, "hours", e.to_string()))?;
        }
        if let Some(t) = r
            .targets
            .iter()
            .find(|t| !t.starts_with("sip:") || t.len() < 5)
        {
            return Err(err(i, "targets", format!("`{t}` is not a sip: URI")));
        }
        if !(1..=300).contains(&r.ring_timeout_s) {
            return Err(err(i, "ring_timeout_s", "must be 1 to 300".into()));
        }
        let tz = match &r.timezone {
            Some(name) => jiff::tz::TimeZone::get(name)
                .map_err(|e| err(i, "timezone", format!("`{name}`: {e}")))?,
            // The machine's zone is read here, by the driver: the core is always told.
            None => jiff::tz::TimeZone::system(),
        };
        out.push(RoutePlan {
            name: r.name,
            hours: r.hours,
            tz,
            targets: r.targets,
            strategy: r.strategy,
            ring_timeout: Duration::from_secs(r.ring_timeout_s),
            confirm: r.confirm,
        });
    }
    Ok(out)
}
