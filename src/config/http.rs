//! `[http]`: the API's address, the URL others reach it by, and its token.

use super::{ConfigError, Ctx};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `None` (written `""`): no HTTP API.
    #[serde(deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
    /// How agents' phones and the CRM reach this API (Call-Info and packet links);
    /// `http://<listen>` when unset.
    pub public_url: String,
    /// Required as `Authorization: Bearer …` (or `?token=` for the agent page) on every
    /// route but `/healthz` and `/readyz`; mandatory when `listen` is not loopback.
    pub token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            public_url: String::new(),
            token: None,
        }
    }
}

impl HttpConfig {
    pub(super) fn validate(&mut self, cx: &Ctx) -> Result<(), ConfigError> {
        self.token = self.token.take().filter(|t| !t.is_empty());
        if self.listen.is_some_and(|a| !a.ip().is_loopback()) && self.token.is_none() {
            return Err(cx.err(
                "http.listen",
                "the API is reachable from other machines: set [http] token too".into(),
            ));
        }
        if self.public_url.is_empty() {
            let addr = self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
            self.public_url = format!("http://{addr}");
        } else {
            cx.http_url("http.public_url", &self.public_url)?;
            self.public_url = self.public_url.trim_end_matches('/').to_string();
        }
        Ok(())
    }
}

fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "" => Ok(None),
        s => s.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("`{s}` is not an address like 127.0.0.1:8080"))
        }),
    }
}
