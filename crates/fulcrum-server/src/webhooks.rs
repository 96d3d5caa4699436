//! Webhooks (SPEC §8): every committed event, in outbox order, POSTed as a structured CloudEvent
//! to each configured receiver, signed with HMAC-SHA256 under the receiver's secret (a file,
//! re-read when it changes).
//!
//! `Fulcrum-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." ‖ body)>` — receivers
//! recompute it and refuse old timestamps (replay). A receiver that fails (non-2xx, timeout,
//! refused connection) is retried with exponential backoff; after `max_attempts` the event goes to
//! the dead-letter view (`GET /v1/webhooks/dead-letters`) and delivery goes on with the next one,
//! so one poisoned event does not stop the stream. The position moves only after a 2xx or a dead
//! letter; a crash re-delivers (receivers dedupe on `Fulcrum-Event-Id`).

use std::path::PathBuf;
use std::time::Duration;

use aws_lc_rs::hmac;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;

use crate::AppState;

/// One receiver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A short name (its position and dead letters are kept under it).
    pub name: String,
    pub url: String,
    /// File holding the HMAC secret; re-read when it changes.
    pub secret_file: PathBuf,
    /// Only events of these tenants (and registry-wide ones); `None` = all.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Deliveries tried before an event is dead-lettered.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry, milliseconds (doubling, at most 60 s).
    #[serde(default = "default_first_retry")]
    pub first_retry_ms: u64,
}

fn default_attempts() -> u32 {
    8
}
fn default_first_retry() -> u64 {
    500
}

/// The `--webhooks` file: `{"webhooks": [WebhookConfig, …]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    pub webhooks: Vec<WebhookConfig>,
}

impl WebhooksFile {
    /// # Errors
    /// Unreadable or invalid files, bad names or URLs, a secret file that cannot be read.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let name = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
        let f: WebhooksFile = serde_json::from_slice(&bytes).map_err(|e| format!("{name}: {e}"))?;
        for w in &f.webhooks {
            fulcrum_core::names::check_identifier("webhook name", &w.name).map_err(|e| format!("{name}: {e}"))?;
            let url = reqwest::Url::parse(&w.url).map_err(|e| format!("{name}: webhook {}: {e}", w.name))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(format!("{name}: webhook {}: the URL must be http(s)", w.name));
            }
            if w.max_attempts == 0 {
                return Err(format!("{name}: webhook {}: max_attempts must be at least 1", w.name));
            }
            fulcrum_kms::read_secret(&w.secret_file).map_err(|e| format!("{name}: webhook {}: {e}", w.name))?;
        }
        Ok(f)
    }
}

/// The signature header's value for `body` sent at `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

pub fn sink(cfg: &WebhookConfig) -> String {
    format!("webhook:{}", cfg.name)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// Deliver one dead-lettered event again, once, signed with the receiver's current secret (and
/// `Fulcrum-Redelivery: true`): `Err(why)` when the receiver did not take it.
///
/// # Errors
/// The receiver's failure, or its secret file unreadable.
pub async fn redeliver(cfg: &WebhookConfig, id: &str, body: &str) -> Result<(), String> {
    let secret = fulcrum_kms::Secret::from_file(&cfg.secret_file)
        .map_err(|_| "the webhook secret file cannot be read".to_owned())?;
    let t = time::OffsetDateTime::now_utc().unix_timestamp();
    let sent = http_client()
        .post(&cfg.url)
        .header("content-type", "application/cloudevents+json")
        .header("fulcrum-event-id", id)
        .header("fulcrum-signature", signature(secret.get().as_bytes(), t, body.as_bytes()))
        .header("fulcrum-redelivery", "true")
        .body(body.to_owned())
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(if e.is_timeout() { "timeout".into() } else { "connection failed".into() }),
    }
}

/// Deliver to one receiver until shutdown.
///
/// # Errors
/// The secret file unreadable at start.
pub fn spawn(state: AppState, cfg: WebhookConfig) -> Result<tokio::task::JoinHandle<()>, fulcrum_kms::KmsError> {
    let secret = fulcrum_kms::Secret::from_file(&cfg.secret_file)?;
    Ok(tokio::spawn(async move {
        let mut shutdown = state.shutdown_rx.clone();
        loop {
            tokio::select! {
                r = run(&state, &cfg, &secret) => match r {
                    Ok(()) => return,
                    Err(e) => tracing::error!(webhook = %cfg.name, error = %e, "webhook delivery stopped; retrying"),
                },
                _ = shutdown.changed() => return,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

async fn run(
    state: &AppState,
    cfg: &WebhookConfig,
    secret: &fulcrum_kms::Secret,
) -> Result<(), fulcrum_store::StoreError> {
    let http = http_client();
    let sink = sink(cfg);
    let mut pos = state.store.sink_position(&sink).await?;
    let mut commits = state.events_tx.subscribe();
    let mut shutdown = state.shutdown_rx.clone();
    while let Some(batch) = crate::fanout::next_for_sink(state, pos, 64, &mut commits, &mut shutdown).await? {
        for ev in batch {
            let v: serde_json::Value = serde_json::from_str(&ev.body).unwrap_or_default();
            let tenant = v["data"]["tenant"].as_str().unwrap_or_default().to_owned();
            let wanted = cfg.tenants.as_ref().is_none_or(|ts| tenant == "*" || ts.contains(&tenant));
            if wanted {
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                if let Err((attempts, error)) = deliver(&http, cfg, secret, &id, &ev.body, &mut shutdown).await {
                    if *shutdown.borrow() {
                        return Ok(());
                    }
                    tracing::warn!(webhook = %cfg.name, event = %id, attempts, "webhook gave up on an event; dead-lettered");
                    let at = state.clock.now().format(&Rfc3339).expect("formats");
                    let d = fulcrum_store::DeadLetter {
                        id: 0,
                        resolved_at: None,
                        resolved_by: None,
                        sink: sink.clone(),
                        tenant,
                        seq: ev.seq,
                        event_id: id,
                        attempts,
                        last_error: error,
                        at,
                    };
                    state.store.add_dead_letter(&d).await?;
                    state.metrics.webhook_dead.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            pos = ev.seq;
            state.store.set_sink_position(&sink, pos).await?;
        }
    }
    Ok(())
}

/// POST one event until a 2xx, at most `max_attempts` times: Err((attempts, last error)).
async fn deliver(
    http: &reqwest::Client,
    cfg: &WebhookConfig,
    secret: &fulcrum_kms::Secret,
    id: &str,
    body: &str,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), (u32, String)> {
    let mut wait = Duration::from_millis(cfg.first_retry_ms);
    let mut last = String::new();
    for attempt in 1..=cfg.max_attempts {
        let t = time::OffsetDateTime::now_utc().unix_timestamp();
        let sig = signature(secret.get().as_bytes(), t, body.as_bytes());
        let sent = http
            .post(&cfg.url)
            .header("content-type", "application/cloudevents+json")
            .header("fulcrum-event-id", id)
            .header("fulcrum-signature", sig)
            .header("fulcrum-delivery-attempt", attempt.to_string())
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = if e.is_timeout() { "timeout".into() } else { "connection failed".into() },
        }
        if attempt == cfg.max_attempts {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return Err((attempt, "shutting down".into())),
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
    Err((cfg.max_attempts, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let s = signature(b"k", 1_700_000_000, b"{}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, signature(b"k", 1_700_000_001, b"{}"));
        assert_ne!(s, signature(b"k", 1_700_000_000, b"{ }"));
        assert_ne!(s, signature(b"k2", 1_700_000_000, b"{}"));
    }
}
