//! A small client for the Fulcrum registry API, used by the CLI (and by serving agents).
//!
//! It knows the wire formats (problem+json errors, signed resolve answers, server-sent events)
//! and never links the server or its storage.
//!
//! # Invariants
//! - A resolve answer is only handed out as [`VerifiedResolve`] after its signature over the exact
//!   body bytes checked out against a trust bundle.

use std::path::Path;
use std::time::Duration;

use fulcrum_core::Digest;
use fulcrum_core::resolve::ResolveDocument;
use fulcrum_sign::TrustBundle;
use futures_util::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub mod sse;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the registry at {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("{detail} ({code}, HTTP {status})")]
    Problem { status: u16, code: String, detail: String, errors: Vec<(String, String)> },
    #[error("unexpected answer from the registry: {0}")]
    Protocol(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("resolve answer failed verification: {0}")]
    Unverified(String),
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A resolve document whose signature has been checked.
#[derive(Debug, Clone)]
pub struct VerifiedResolve {
    pub document: ResolveDocument,
    pub body: Vec<u8>,
    pub kid: String,
    pub signature: String,
}

/// How the client speaks TLS to the registry.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM CA certificate(s) the registry's certificate must chain to — only these (pinned),
    /// not the system's roots.
    pub ca: Option<std::path::PathBuf>,
    /// PEM client certificate chain and key, for registries that ask for one (mutual TLS).
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

impl ClientTls {
    fn apply(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| ClientError::Protocol(format!("{}: {e}", p.display())));
        if let Some(ca) = &self.ca {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
                .map_err(|e| ClientError::Protocol(format!("{}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(ClientError::Protocol(format!("{}: holds no certificate", ca.display())));
            }
            b = b.tls_certs_only(certs);
        }
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => {
                let mut pem = read(c)?;
                pem.push(b'\n');
                pem.extend(read(k)?);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| ClientError::Protocol(format!("{} / {}: {e}", c.display(), k.display())))?;
                b = b.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(ClientError::Protocol(
                    "a client certificate needs its key, and a key its certificate".into(),
                ));
            }
        }
        Ok(b)
    }
}

impl Client {
    /// # Errors
    /// If the HTTP client cannot be built.
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        Self::with_tls(base, token, &ClientTls::default())
    }

    /// A client with a pinned CA and/or a client certificate.
    ///
    /// # Errors
    /// Unreadable or invalid certificate/key files.
    pub fn with_tls(base: &str, token: Option<String>, tls: &ClientTls) -> Result<Self> {
        let b = tls.apply(reqwest::Client::builder().connect_timeout(Duration::from_secs(10)))?;
        let http = b.build().map_err(|e| ClientError::Protocol(format!("building HTTP client: {e}")))?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await.map_err(|source| ClientError::Connect { url: self.base.clone(), source })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(problem(resp).await)
    }

    /// GET raw bytes (problem+json errors decoded).
    ///
    /// # Errors
    /// Transport failures and problem+json answers.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let resp = self.send(self.request(Method::GET, path)).await?;
        Ok(resp.bytes().await.map_err(|e| ClientError::Protocol(e.to_string()))?.to_vec())
    }

    /// Call a JSON endpoint.
    ///
    /// # Errors
    /// Transport failures and problem+json answers.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = self.send(rb).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return serde_json::from_value(Value::Null).map_err(|e| ClientError::Protocol(e.to_string()));
        }
        resp.json().await.map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// # Errors
    /// As [`Client::call`].
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None::<&Value>).await
    }

    /// A version's leaf in the state map of a signed checkpoint, with its proof
    /// (`GET /v1/ledger/proofs/state`), under a checkpoint signed at or after `not_before`
    /// (RFC 3339) when given. Nothing in the answer is verified here.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn state_proof(&self, model: &str, version: &str, not_before: Option<&str>) -> Result<Value> {
        let mut query = vec![("model", model), ("version", version)];
        query.extend(not_before.map(|t| ("not_before", t)));
        let resp = self.send(self.request(Method::GET, "/v1/ledger/proofs/state").query(&query)).await?;
        resp.json().await.map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// # Errors
    /// As [`Client::call`].
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// # Errors
    /// As [`Client::call`].
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// # Errors
    /// As [`Client::call`].
    pub async fn delete(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::DELETE, path, Some(body)).await
    }

    /// Is the blob already stored for the caller's tenant, and readable by it now?
    ///
    /// # Errors
    /// Transport failures and problems other than 403, 404 and 410.
    pub async fn has_blob(&self, d: &Digest) -> Result<bool> {
        match self.send(self.request(Method::HEAD, &format!("/v1/blobs/{d}"))).await {
            Ok(_) => Ok(true),
            // Absent, or present but not downloadable by this caller now (bytes of a revoked or
            // held version): either way it is uploaded again, which is idempotent and grants it.
            Err(ClientError::Problem { status: 403 | 404 | 410, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Upload a file under its digest (computed beforehand), streaming it; `progress` is
    /// called with the number of bytes sent so far.
    ///
    /// # Errors
    /// I/O, transport and problem answers.
    pub async fn upload_file(
        &self,
        path: &Path,
        digest: &Digest,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<()> {
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        let mut sent = 0u64;
        let stream = tokio_util_stream(file).map(move |chunk| {
            if let Ok(c) = &chunk {
                sent += c.len() as u64;
                progress(sent);
            }
            chunk
        });
        let rb = self
            .request(Method::PUT, &format!("/v1/blobs/{digest}"))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        self.send(rb).await?;
        Ok(())
    }

    /// Upload bytes held in memory; returns their digest.
    ///
    /// # Errors
    /// Transport and problem answers.
    pub async fn upload_bytes(&self, bytes: Vec<u8>) -> Result<Digest> {
        let rb = self
            .request(Method::POST, "/v1/blobs")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        let v: Value = self.send(rb).await?.json().await.map_err(|e| ClientError::Protocol(e.to_string()))?;
        v["digest"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol("upload answer has no digest".into()))
    }

    /// Fetch the registry's trust bundle and check that it is signed by one of its own keys.
    /// (Pinning the bundle is the agent's job; this is trust on first use.)
    ///
    /// # Errors
    /// Transport failures and bundles that do not verify.
    pub async fn trust_bundle(&self) -> Result<TrustBundle> {
        let resp = self.send(self.request(Method::GET, "/v1/trust-bundle")).await?;
        let (kid, sig) = signature_headers(&resp)?;
        let body = resp.bytes().await.map_err(|e| ClientError::Protocol(e.to_string()))?;
        let bundle: TrustBundle = serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        bundle.verify(&kid, &body, &sig).map_err(|e| ClientError::Unverified(e.to_string()))?;
        Ok(bundle)
    }

    /// The raw resolve answer: body bytes, `kid` and signature, for a caller that verifies them
    /// itself (the serving agent, against its pinned bundle and marks). Nothing here is trusted.
    ///
    /// # Errors
    /// Transport failures and problems.
    pub async fn resolve_unverified(&self, reference: &str, env: &str) -> Result<(Vec<u8>, String, String)> {
        let rb = self.request(Method::GET, "/v1/resolve").query(&[("ref", reference), ("env", env)]);
        let resp = self.send(rb).await?;
        let (kid, signature) = signature_headers(&resp)?;
        let body = resp.bytes().await.map_err(|e| ClientError::Protocol(e.to_string()))?.to_vec();
        Ok((body, kid, signature))
    }

    /// Resolve a reference and verify the answer's signature against `bundle`.
    ///
    /// # Errors
    /// Transport failures, problems, and answers that do not verify.
    pub async fn resolve(&self, reference: &str, env: &str, bundle: &TrustBundle) -> Result<VerifiedResolve> {
        let (body, kid, signature) = self.resolve_unverified(reference, env).await?;
        bundle.verify(&kid, &body, &signature).map_err(|e| ClientError::Unverified(e.to_string()))?;
        let document: ResolveDocument = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Unverified(format!("signed body is not a resolve document: {e}")))?;
        if document.kid != kid {
            return Err(ClientError::Unverified("document names another key than the one that signed it".into()));
        }
        Ok(VerifiedResolve { document, body, kid, signature })
    }

    /// Download a blob into `dest`, verified: at most `max` bytes are accepted (the size the
    /// signed manifest names), the result must hash to `d`, and a partial `dest` left by an
    /// interrupted run is resumed with a Range request. On any failure `dest` is removed when its
    /// content can no longer be trusted.
    ///
    /// # Errors
    /// Transport failures, problems, `Unverified` for oversized or wrong bytes.
    pub async fn download_blob(&self, d: &Digest, dest: &Path, max: u64) -> Result<u64> {
        self.download_blob_counted(d, dest, max, &|_| {}).await
    }

    /// As [`Client::download_blob`], telling `counted` the size of every chunk received.
    ///
    /// # Errors
    /// As [`Client::download_blob`].
    pub async fn download_blob_counted(
        &self,
        d: &Digest,
        dest: &Path,
        max: u64,
        counted: &(dyn Fn(u64) + Sync),
    ) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let have = tokio::fs::metadata(dest).await.map(|m| m.len()).unwrap_or(0);
        let have = if have > max { 0 } else { have };
        let mut rb = self.request(Method::GET, &format!("/v1/blobs/{d}"));
        if have > 0 {
            rb = rb.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let resp = self.send(rb).await?;
        let resumed = have > 0 && resp.status() == StatusCode::PARTIAL_CONTENT;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(dest)
            .await?;
        let mut written = if resumed { have } else { 0 };
        let mut body = resp.bytes_stream();
        let outcome = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ClientError::Protocol(e.to_string()))?;
                written += chunk.len() as u64;
                counted(chunk.len() as u64);
                if written > max {
                    return Err(ClientError::Unverified(format!(
                        "{d} is larger than the {max} bytes its manifest names"
                    )));
                }
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            file.sync_all().await?;
            Ok(())
        }
        .await;
        drop(file);
        let check = match outcome {
            Ok(()) => {
                let path = dest.to_owned();
                let (got, n) = tokio::task::spawn_blocking(move || hash_file(&path))
                    .await
                    .map_err(|e| ClientError::Protocol(e.to_string()))??;
                if got != *d || n != written {
                    Err(ClientError::Unverified(format!("downloaded bytes hash to {got}, not {d}")))
                } else {
                    Ok(n)
                }
            }
            Err(e) => Err(e),
        };
        if matches!(check, Err(ClientError::Unverified(_))) {
            let _ = tokio::fs::remove_file(dest).await;
        }
        check
    }

    /// Follow the event stream from position `after` (server-sent events).
    ///
    /// # Errors
    /// Transport failures and problems when opening the stream.
    pub async fn event_stream(&self, after: Option<i64>) -> Result<impl Stream<Item = Result<sse::SseEvent>> + use<>> {
        self.event_stream_filtered(after, None, None).await
    }

    /// As [`Client::event_stream`], only one model's events (and registry-wide ones) and only
    /// the given types.
    ///
    /// # Errors
    /// Transport failures and problems when opening the stream.
    pub async fn event_stream_filtered(
        &self,
        after: Option<i64>,
        model: Option<&str>,
        types: Option<&[&str]>,
    ) -> Result<impl Stream<Item = Result<sse::SseEvent>> + use<>> {
        let mut rb =
            self.request(Method::GET, "/v1/events/stream").header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(m) = model {
            rb = rb.query(&[("model", m)]);
        }
        if let Some(t) = types {
            rb = rb.query(&[("types", t.join(","))]);
        }
        if let Some(a) = after {
            rb = rb.header("Last-Event-ID", a.to_string());
        }
        let resp = self.send(rb).await?;
        Ok(sse::parse(resp.bytes_stream().map(|r| r.map_err(|e| ClientError::Protocol(e.to_string())))))
    }
}

fn signature_headers(resp: &reqwest::Response) -> Result<(String, String)> {
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unverified(format!("answer carries no {name} header")))
    };
    Ok((h("fulcrum-key-id")?, h("fulcrum-signature")?))
}

async fn problem(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let errors = v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| (e["check"].as_str().unwrap_or("").to_owned(), e["detail"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    ClientError::Problem {
        status,
        code: v["code"].as_str().unwrap_or("http_error").to_owned(),
        detail: v["detail"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned),
        errors,
    }
}

fn tokio_util_stream(file: tokio::fs::File) -> impl Stream<Item = std::io::Result<Vec<u8>>> {
    futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}

/// Hash a file (SHA-256) without loading it into memory.
///
/// # Errors
/// I/O failures.
pub fn hash_file(path: &Path) -> std::io::Result<(Digest, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = fulcrum_core::digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finish(), n_total));
        }
        n_total += n as u64;
        h.update(&buf[..n]);
    }
}
