//! Reports to the registry (`/v1/agent-reports`): each guard step with the agent's own time, and
//! the gateway's per-version figures. Sent in order by one background task so that serving never
//! waits on the registry; a report that cannot be delivered is counted and said on stderr, never
//! retried forever (the registry may be the thing that is down, and the local `/timeline` keeps
//! every step anyway).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fulcrum_client::Client;
use serde_json::Value;
use tokio::sync::mpsc;

/// Reports waiting to be sent; more than this and new ones are dropped (and counted).
const QUEUE: usize = 1024;

#[derive(Debug)]
pub struct Reporter {
    tx: mpsc::Sender<Value>,
    /// Reports not delivered (queue full or the registry refused/unreachable).
    pub lost: Arc<AtomicU64>,
    /// Reports the registry accepted.
    pub sent: Arc<AtomicU64>,
}

impl Reporter {
    /// Start the sending task (needs a Tokio runtime).
    pub fn start(client: Client) -> Self {
        let (tx, mut rx) = mpsc::channel::<Value>(QUEUE);
        let lost = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let (l, s) = (lost.clone(), sent.clone());
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                match client.post("/v1/agent-reports", &r).await {
                    Ok(_) => s.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if l.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("fulcrum-agent: a report was not delivered (said once): {e}");
                        }
                        0
                    }
                };
            }
        });
        Self { tx, lost, sent }
    }

    /// Queue a report; never waits.
    pub fn send(&self, report: Value) {
        if self.tx.try_send(report).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}
