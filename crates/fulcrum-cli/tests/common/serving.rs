//! A serving replica as `fulcrum-agent` runs one — a guard placing verified versions in its own
//! real MLServer's repository and a gateway in front of it, both reporting to the registry — for
//! the tests that need traffic and serving steps.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulcrum_agent::fetch::Agent;
use fulcrum_agent::gateway::{Gateway, Protocol, Route};
use fulcrum_agent::guard::{Guard, Layout};
use fulcrum_agent::oip::Oip;
use fulcrum_agent::report::Reporter;
use fulcrum_agent::state::StateDir;
use fulcrum_client::Client;
use fulcrum_testkit::mlserver;

use super::Server;

/// A client of `s` as the test identity `who` (token `t-<who>`).
pub fn as_(s: &Server, who: &str) -> Client {
    Client::new(&s.url, Some(format!("t-{who}"))).unwrap()
}

pub async fn agent(s: &Server, state: &Path, name: &str) -> Agent {
    let client = as_(s, "agent");
    let bundle = client.trust_bundle().await.unwrap();
    Agent::new(client, bundle, StateDir::open(state).unwrap(), time::Duration::seconds(30), name.into())
}

/// One serving replica: a guard placing versions in its own MLServer's repository, a gateway in
/// front of it, both reporting to the registry.
pub struct Replica {
    pub guard: Arc<Guard>,
    pub gateway: String,
    pub repo: std::path::PathBuf,
    _server: mlserver::Server,
}

pub async fn replica(s: &Server, bin: &Path, dir: &Path, name: &str) -> Replica {
    let repo = dir.join(name).join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let server = mlserver::start(bin, &repo, &dir.join(format!("{name}-mlserver.log"))).await;
    let mut g = Guard::new(
        agent(s, &dir.join(name).join("state"), name).await,
        "fraud@production",
        "prod",
        Layout::Repository(repo.clone()),
    );
    g.oip = Some(Oip::new(&server.url).unwrap());
    g.reload_jitter = Duration::from_millis(100);
    let reporter = Arc::new(Reporter::start(as_(s, "agent")));
    g.reporter = Some(reporter.clone());
    let guard = Arc::new(g);
    let run = guard.clone();
    tokio::spawn(async move { run.run(std::future::pending::<()>()).await });
    let gw = Arc::new(
        Gateway::new(
            vec![Route { alias: "production".into(), weight: 1, guard: guard.clone() }],
            &server.url,
            Protocol::Oip,
        )
        .unwrap(),
    );
    tokio::spawn(gw.clone().report(reporter, Duration::from_millis(500)));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(fulcrum_agent::gateway::serve(gw, l));
    Replica { guard, gateway, repo, _server: server }
}

/// Call the gateway until it answers with `version`.
pub async fn served_by(http: &reqwest::Client, gateway: &str, version: &str) {
    let start = Instant::now();
    loop {
        let (status, v) = mlserver::infer(http, gateway).await;
        if status == 200 && v["model_version"] == version {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{gateway} never served {version}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
