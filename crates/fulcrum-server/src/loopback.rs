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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stop gracefully (the port no longer answers once this returns).
    ///
    /// # Errors
    /// The server's own failure while it ran.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
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
    let (state, _) = Registry::open(config, clock).await.map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::serve(state, listener, async {
        let _ = rx.await;
    }));
    Ok(Running { url, stop: Some(tx), task: Some(task) })
}
