//! The Open Inference Protocol (KServe V2) model repository extension, as a client: tells a model
//! server (MLServer, Triton, KServe) to `load` or `unload` a model whose versions the agent placed
//! side by side under `<repo>/<name>/<version>/`.
//!
//! Servers differ in their answers (see `docs/serving.md`): any non-2xx is a failure, the body may
//! be `{"error": …}`, plain text, or empty.

use std::time::Duration;

/// A model server's base URL (`http://127.0.0.1:8080`).
#[derive(Debug, Clone)]
pub struct Oip {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("model server {action} {model}: {detail}")]
pub struct OipError {
    pub action: &'static str,
    pub model: String,
    pub detail: String,
}

impl Oip {
    /// # Errors
    /// An unusable base URL.
    pub fn new(base: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("{base}: the model server URL must be http:// or https://"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { base, http })
    }

    async fn call(&self, action: &'static str, model: &str) -> Result<(), OipError> {
        let fail = |detail: String| OipError { action, model: model.to_owned(), detail };
        let url = format!("{}/v2/repository/models/{model}/{action}", self.base);
        let r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = r.status();
        if status.is_success() {
            return Ok(());
        }
        let body = r.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(200).collect());
        Err(fail(format!("{status}: {detail}")))
    }

    /// Load (or reload) every version of `model` found in the repository; versions no longer on
    /// disk are dropped by the server.
    ///
    /// # Errors
    /// The server's refusal or an unreachable server.
    pub async fn load(&self, model: &str) -> Result<(), OipError> {
        self.call("load", model).await
    }

    /// Unload every version of `model`.
    ///
    /// # Errors
    /// The server's refusal or an unreachable server.
    pub async fn unload(&self, model: &str) -> Result<(), OipError> {
        self.call("unload", model).await
    }
}
