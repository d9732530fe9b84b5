//! Delivers context packets from the store's outbox to `[crm] webhook_url`: signed
//! (HMAC-SHA256 of the body), retried with back-off until the CRM answers 2xx. The outbox
//! is in SQLite, so a CRM that is down, or a gateway restart, loses nothing: this task
//! picks up whatever is due when it starts.

use crate::config::CrmConfig;
use crate::store::{StoreHandle, now_ms};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use warmline_call::Audit;

/// The longest the sender sleeps without looking at the outbox (a row written by another
/// process, a clock step).
const POLL: Duration = Duration::from_secs(1);

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + bytes.len() * 2);
    hex.push_str("sha256=");
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

pub fn spawn(
    cfg: CrmConfig,
    store: Arc<StoreHandle>,
    metrics: Arc<crate::metrics::Metrics>,
    user_agent: String,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .user_agent(user_agent)
        .build()?;
    tokio::spawn(async move {
        loop {
            let due = store.read(|s| s.due(now_ms(), 32)).await;
            let rows = match due {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "outbox unreadable");
                    Vec::new()
                }
            };
            for row in rows {
                let mut post = client
                    .post(&row.url)
                    .header("Content-Type", "application/json")
                    .header("X-Warmline-Delivery", row.id.to_string())
                    .header("X-Warmline-Call-Id", row.call_id.clone());
                if let Some(secret) = &cfg.secret {
                    post = post.header(
                        "X-Warmline-Signature",
                        signature(secret, row.body.as_bytes()),
                    );
                }
                let result = post.body(row.body.clone()).send().await;
                let outcome = match result {
                    Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
                    Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(status) => {
                        store.delivered(row.id).await;
                        let waited = (now_ms() - row.next_at_ms).max(0);
                        metrics.crm_delivery.observe(waited as f64 / 1000.0);
                        store.record(
                            &row.call_id,
                            &Audit::PacketAcknowledged {
                                status,
                                delivery: row.id,
                                attempt: row.attempts + 1,
                            },
                        );
                        tracing::info!(call_id = %row.call_id, delivery = row.id, attempts = row.attempts + 1, "context packet delivered");
                    }
                    Err(error) => {
                        metrics.crm_failed_attempts_total.inc();
                        let wait = warmline_store::backoff(row.attempts);
                        store
                            .failed(row.id, now_ms() + wait.as_millis() as i64, error.clone())
                            .await;
                        if row.attempts == 0 {
                            store.record(
                                &row.call_id,
                                &Audit::PacketDeliveryFailed {
                                    error: error.clone(),
                                },
                            );
                        }
                        tracing::warn!(call_id = %row.call_id, delivery = row.id, %error, retry_in_ms = wait.as_millis() as u64, "context packet not delivered");
                    }
                }
            }
            let next = store.read(|s| s.next_due()).await.ok().flatten();
            let sleep = next
                .map(|at| {
                    Duration::from_millis((at - now_ms()).clamp(0, POLL.as_millis() as i64) as u64)
                })
                .unwrap_or(POLL);
            tokio::select! {
                () = store.outbox_ready.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
