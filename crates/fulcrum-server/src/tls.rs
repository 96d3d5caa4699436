//! HTTPS and mutual TLS: the server's certificate and key, and optionally the CAs that issue
//! client certificates and their CRLs. Every file is re-read when it changes (a renewed
//! certificate, a rotated key, a new CRL) without a restart; a set that does not load leaves the
//! one in use serving.
//!
//! A client certificate, when asked for, is verified by rustls against the client CAs (chain,
//! validity period, the `clientAuth` extended key usage, revocation by the CRLs) before any
//! request is read; handlers see the verified chain as `Arc<axum_server::tls::TlsInfo>` and map
//! it to a workload identity in [`crate::auth`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::AppState;

/// The files TLS is built from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// Client certificates asked for, and checked against these CAs.
    pub client_auth: Option<ClientAuthFiles>,
}

#[derive(Debug, Clone)]
pub struct ClientAuthFiles {
    /// PEM bundle of the CAs that issue client certificates.
    pub ca: PathBuf,
    /// PEM CRLs of those CAs; a revoked certificate is refused at the handshake.
    pub crls: Vec<PathBuf>,
    /// Refuse connections without a client certificate. Otherwise a certificate is optional
    /// (callers may use tokens), but one that is presented must verify.
    pub required: bool,
}

impl TlsFiles {
    pub fn new(cert: &Path, key: &Path) -> Self {
        Self { cert: cert.to_owned(), key: key.to_owned(), client_auth: None }
    }

    fn paths(&self) -> Vec<&Path> {
        let mut v = vec![self.cert.as_path(), self.key.as_path()];
        if let Some(c) = &self.client_auth {
            v.push(&c.ca);
            v.extend(c.crls.iter().map(PathBuf::as_path));
        }
        v
    }

    /// What identifies the current content of every file.
    fn fingerprint(&self) -> Option<Vec<fulcrum_core::Digest>> {
        self.paths().into_iter().map(|p| std::fs::read(p).ok().map(|b| fulcrum_core::Digest::of(&b))).collect()
    }

    /// Build the rustls configuration from the files.
    ///
    /// # Errors
    /// A file that does not read or parse, a key that does not match, no client CA.
    pub fn server_config(&self) -> std::io::Result<rustls::ServerConfig> {
        let bad = |what: &Path, e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", what.display()))
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&self.cert).and_then(Iterator::collect).map_err(|e| bad(&self.cert, &e))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| bad(&self.key, &e))?;
        let builder = rustls::ServerConfig::builder();
        let builder = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in CertificateDer::pem_file_iter(&c.ca).map_err(|e| bad(&c.ca, &e))? {
                    roots.add(ca.map_err(|e| bad(&c.ca, &e))?).map_err(|e| bad(&c.ca, &e))?;
                }
                if roots.is_empty() {
                    return Err(bad(&c.ca, &"holds no CA certificate"));
                }
                let mut crls: Vec<CertificateRevocationListDer<'static>> = vec![];
                for path in &c.crls {
                    for crl in CertificateRevocationListDer::pem_file_iter(path).map_err(|e| bad(path, &e))? {
                        crls.push(crl.map_err(|e| bad(path, &e))?);
                    }
                }
                let mut v = WebPkiClientVerifier::builder(Arc::new(roots)).with_crls(crls);
                if !c.required {
                    v = v.allow_unauthenticated();
                }
                builder.with_client_cert_verifier(v.build().map_err(|e| bad(&c.ca, &e))?)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| bad(&self.key, &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// How often the TLS files are checked for a change.
const TLS_RELOAD_POLL: Duration = Duration::from_secs(1);

/// Rebuild the configuration whenever a file's content changes.
async fn reload(tls: axum_server::tls_rustls::RustlsConfig, files: TlsFiles) {
    let mut seen = files.fingerprint();
    loop {
        tokio::time::sleep(TLS_RELOAD_POLL).await;
        let now = files.fingerprint();
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        match files.server_config() {
            Ok(c) => {
                tls.reload_from_config(Arc::new(c));
                tracing::info!(cert = %files.cert.display(), "TLS files reloaded");
            }
            // Half-written or mismatched files: keep serving with the set in use; try again on
            // the next change.
            Err(e) => {
                tracing::warn!(kind = ?e.kind(), "TLS files did not load; keeping the ones in use");
            }
        }
    }
}

/// Serve HTTPS on `listener` (already bound, so the address is the caller's from the start)
/// until `shutdown` resolves. The files are re-read when they change, without a restart; a set
/// that does not load leaves the one in use serving (and is said in the log, without content).
///
/// # Errors
/// Bad files at start, or listener failures.
pub async fn serve_tls(
    state: AppState,
    listener: std::net::TcpListener,
    files: &TlsFiles,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(files.server_config()?));
    let watcher = tokio::spawn(reload(tls.clone(), files.clone()));
    let handle = axum_server::Handle::new();
    let bg = crate::spawn_background(&state);
    let (h, st) = (handle.clone(), state.clone());
    let state_for_flush = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        st.begin_shutdown();
        h.graceful_shutdown(Some(Duration::from_secs(30)));
    });
    let result = axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(
            crate::app(state),
        ))
        .await;
    watcher.abort();
    bg.abort();
    state_for_flush.access.flush().await;
    result
}
