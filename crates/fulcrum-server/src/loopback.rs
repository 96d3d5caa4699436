//! A whole registry in this process on a loopback port, with a tokens file for the people given:
//! what `fulcrum demo`, the agent's end-to-end tests and the serving benchmarks all start. The
//! real registry (same open, same routes), never a stand-in.

use std::path::Path;
use std::sync::Arc;

use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;

use crate::auth::{TokenEntry, TokensFile};
use crate::clock::Clock;
use crate::{Config, Registry};

/// One identity of the tokens file.
#[derive(Debug, Clone)]
pub struct Person {
    pub subject: String,
    pub token: String,
    pub role: Role,
    /// The only environment it may act in, if bound to one.
    pub env: Option<Env>,
}

/// A running registry; dropping it leaves the server running until the runtime ends.
#[derive(Debug)]
pub struct Running {
    pub url: String,
    /// `https://localhost:<port>` when started with TLS files (the same registry over HTTPS).
    pub tls_url: Option<String>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stop gracefully (the port no longer answers once this returns).
    ///
    /// # Errors
    /// The server's own failure while it ran.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        for t in std::mem::take(&mut self.tasks) {
            t.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}

/// Where the registry keeps its data and whom it knows.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    pub data_dir: &'a Path,
    /// Written here (a new file).
    pub tokens_file: &'a Path,
    pub tenant: &'a str,
    /// The domain every person may act in (`*`: all).
    pub domain: &'a str,
    pub people: &'a [Person],
}

/// Start a registry for `setup`, on a free loopback port.
///
/// # Errors
/// The registry failing to open, or the port failing to bind.
pub async fn start(setup: &Setup<'_>, clock: Arc<dyn Clock>) -> Result<Running, String> {
    start_with(setup, clock, |_| {}, None).await
}

/// As [`start`], with the configuration adjusted by `tune` (identity providers, client
/// certificate identities…) and, given TLS files, the same registry served over HTTPS too.
///
/// # Errors
/// The registry failing to open, the TLS files failing to load, or a port failing to bind.
pub async fn start_with(
    setup: &Setup<'_>,
    clock: Arc<dyn Clock>,
    tune: impl FnOnce(&mut Config),
    tls: Option<crate::TlsFiles>,
) -> Result<Running, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tokens = TokensFile {
        tokens: setup
            .people
            .iter()
            .map(|p| TokenEntry {
                token: Some(p.token.clone()),
                token_sha256: None,
                subject: p.subject.clone(),
                role: p.role,
                tenant: setup.tenant.into(),
                domain: setup.domain.into(),
                env: p.env,
                purpose: None,
            })
            .collect(),
    };
    tokens.write_new(setup.tokens_file).map_err(|e| e.to_string())?;
    let mut config = Config::new(setup.data_dir);
    config.tokens_file = Some(setup.tokens_file.to_owned());
    tune(&mut config);
    let (state, _) = Registry::open(config, clock).await.map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = vec![];
    let mut tls_url = None;
    if let Some(files) = tls {
        // Fail here, not in the task, when the files do not load.
        files.server_config().map_err(|e| e.to_string())?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let (st, stop) = (state.clone(), stopped(rx.clone()));
        tasks.push(tokio::spawn(async move { crate::serve_tls(st, listener, &files, stop).await }));
        tls_url = Some(format!("https://localhost:{port}"));
    }
    tasks.push(tokio::spawn(crate::serve(state, listener, stopped(rx))));
    Ok(Running { url, tls_url, stop: Some(tx), tasks })
}
