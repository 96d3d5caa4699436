//! Resolve throughput by how the caller authenticates, side by side in one run: the same
//! serving identity resolving `production` of random models over keep-alive connections, as
//!
//! - `token`: plain HTTP, a bearer token from the tokens file (the embedded default; the
//!   baseline — resolve always needs a caller),
//! - `oidc`: plain HTTP, a JWT access token issued by a real OpenID Provider (npm
//!   `oidc-provider`, the test IdP), verified against its JWKS,
//! - `tls+token`: HTTPS, the tokens-file bearer token (the baseline for TLS),
//! - `mtls`: HTTPS with a client certificate mapped to the workload identity, no token.
//!
//! Rounds are interleaved (token, oidc, tls+token, mtls, token, …) so the machine's drift hits
//! every variant alike; the figures are requests/s means and ratios. Everything runs in this
//! process on loopback: registry, IdP (Node), load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use fulcrum_core::identity::Role;
use fulcrum_core::lifecycle::Env;
use fulcrum_oidc::test_idp::TestIdp;
use fulcrum_server::auth::{CertIdentity, ClientIdentities};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;

use crate::lab::{Lab, release, who};

/// How a connection reaches the registry and who it says it is.
#[derive(Clone)]
pub(crate) struct Variant {
    pub(crate) name: &'static str,
    pub(crate) addr: String,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) bearer: Option<String>,
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn connect(v: &Variant) -> anyhow::Result<Box<dyn Io>> {
    let tcp = tokio::net::TcpStream::connect(&v.addr).await?;
    tcp.set_nodelay(true)?;
    Ok(match &v.tls {
        None => Box::new(tcp),
        Some(c) => {
            let name = ServerName::try_from("localhost")?;
            Box::new(tokio_rustls::TlsConnector::from(c.clone()).connect(name, tcp).await?)
        }
    })
}

/// Requests answered per second over `conns` connections for `secs` (connections are opened
/// first: handshakes are not counted), and the p99 latency in ms: resolves of `production` of
/// random models.
pub(crate) async fn load(v: &Variant, models: usize, conns: usize, secs: f64) -> anyhow::Result<(f64, f64)> {
    load_paths(v, conns, secs, move |n| format!("/v1/resolve?ref=model-{:03}@production&env=prod", n % models)).await
}

/// As [`load`], for the GET paths `path(n)` gives (`n` pseudo-random per request).
pub(crate) async fn load_paths(
    v: &Variant,
    conns: usize,
    secs: f64,
    path: impl Fn(usize) -> String + Clone + Send + 'static,
) -> anyhow::Result<(f64, f64)> {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(connect(v).await?)).await?;
        tokio::spawn(conn);
        senders.push(send);
    }
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::with_capacity(conns);
    for (i, mut send) in senders.into_iter().enumerate() {
        let (v, path) = (v.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut n = i;
            while Instant::now() < until {
                n = n.wrapping_mul(2_654_435_761).wrapping_add(12_345);
                let path = path(n);
                let mut req = Request::get(&path).header("host", "localhost");
                if let Some(b) = &v.bearer {
                    req = req.header("authorization", format!("Bearer {b}"));
                }
                let t = Instant::now();
                let resp = send.send_request(req.body(Empty::<Bytes>::new())?).await?;
                anyhow::ensure!(resp.status().is_success(), "{} {path}: {}", v.name, resp.status());
                resp.into_body().collect().await?;
                lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await??);
    }
    let took = start.elapsed().as_secs_f64();
    all.sort_unstable();
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let p99 = all.get(((all.len() as f64 * 0.99) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    Ok((all.len() as f64 / took, f64::from(p99) / 1000.0))
}

/// Warm each variant, then `rounds` rounds alternating the variants (so the machine's drift hits
/// each alike); prints a table headed `what` (mean requests/s, worst p99) and returns the means.
pub(crate) async fn interleaved(
    variants: &[Variant],
    what: &str,
    conns: usize,
    rounds: usize,
    secs: f64,
    path: impl Fn(usize) -> String + Clone + Send + 'static,
) -> anyhow::Result<Vec<f64>> {
    for v in variants {
        load_paths(v, 4, 1.0, path.clone()).await?;
    }
    let mut rps = vec![vec![]; variants.len()];
    let mut p99 = vec![vec![]; variants.len()];
    for round in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            let (r, p) = load_paths(v, conns, secs, path.clone()).await?;
            eprintln!("round {round} {:>10}: {r:>9.0} req/s, p99 {p:.2} ms", v.name);
            rps[i].push(r);
            p99[i].push(p);
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!("| {what} | requests/s (mean of {rounds}) | p99 (worst round) |");
    println!("|---|---|---|");
    for (i, v) in variants.iter().enumerate() {
        let worst = p99[i].iter().copied().fold(0.0, f64::max);
        println!("| {} | {:.0} | {worst:.2} ms |", v.name, mean(&rps[i]));
    }
    Ok(rps.iter().map(|r| mean(r)).collect())
}

/// A CA, the registry's `localhost` certificate, and an agent's client certificate.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client: (String, String),
}

fn pki() -> anyhow::Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key)?;
    let issuer = Issuer::new(p, ca_key);
    let key = KeyPair::generate()?;
    let server = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &issuer)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("cert.pem"), server.pem())?;
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem())?;
    std::fs::write(dir.path().join("ca.pem"), ca.pem())?;
    let ckey = KeyPair::generate()?;
    let mut cp = CertificateParams::new(Vec::<String>::new())?;
    cp.subject_alt_names = vec![SanType::URI("spiffe://bench/serving/prod/agent-1".try_into()?)];
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&ckey, &issuer)?;
    Ok(Pki { dir, ca_pem: ca.pem(), client: (client.pem(), ckey.serialize_pem()) })
}

fn client_config(pki: &Pki, with_cert: bool) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes())?)?;
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut c = if with_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client.0.as_bytes())?];
        b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(pki.client.1.as_bytes())?)?
    } else {
        b.with_no_client_auth()
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

pub async fn run(models: usize, conns: usize, rounds: usize, secs: f64) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = json!([{"client_id": "agent", "client_secret": "agent-secret", "tenant_id": "bench", "domain": "*",
                         "role": "serving", "env": "prod", "access_token_ttl": 3600}]);
    let idp = TestIdp::start("ES256", "urn:fulcrum", client)
        .ok_or_else(|| anyhow::anyhow!("the test IdP is not installed (scripts/test.sh installs it)"))?;
    let pki = pki()?;
    let mut files = fulcrum_server::TlsFiles::new(&pki.dir.path().join("cert.pem"), &pki.dir.path().join("key.pem"));
    files.client_auth =
        Some(fulcrum_server::tls::ClientAuthFiles { ca: pki.dir.path().join("ca.pem"), crls: vec![], required: false });
    let issuer = fulcrum_oidc::IssuerConfig::new(&idp.issuer, "urn:fulcrum");
    let lab = Lab::start_with(
        |c| {
            c.oidc = vec![issuer];
            c.client_identities = ClientIdentities {
                identities: vec![CertIdentity {
                    pattern: "uri:spiffe://bench/serving/prod/*".into(),
                    role: Role::Serving,
                    tenant: "bench".into(),
                    domain: "*".into(),
                    env: Some(Env::Prod),
                    purpose: None,
                }],
                certificate_and_token_for: vec![],
            };
        },
        Some(files),
    )
    .await?;
    let url = lab.url.clone();
    eprintln!("releasing {models} models…");
    for i in 0..models {
        let m = format!("model-{i:03}");
        who(&url, "ci")?.post("/v1/models", &json!({"name": m, "domain": "bench"})).await?;
        release(&url, &m, "v1").await?;
    }
    let jwt = idp.token("agent", "agent-secret").await;
    let plain = url.trim_start_matches("http://").to_owned();
    let tls = lab.tls_url.clone().expect("served over TLS").replace("https://localhost", "127.0.0.1");
    let variants = [
        Variant { name: "token", addr: plain.clone(), tls: None, bearer: Some("tok-agent".into()) },
        Variant { name: "oidc", addr: plain, tls: None, bearer: Some(jwt) },
        Variant {
            name: "tls+token",
            addr: tls.clone(),
            tls: Some(client_config(&pki, false)?),
            bearer: Some("tok-agent".into()),
        },
        Variant { name: "mtls", addr: tls, tls: Some(client_config(&pki, true)?), bearer: None },
    ];
    // Warm every path (catalog, memo, verified-token memory, TLS session state).
    let path = move |n: usize| format!("/v1/resolve?ref=model-{:03}@production&env=prod", n % models);
    let rps = interleaved(&variants, "authentication", conns, rounds, secs, path).await?;
    let ratio = |a: usize, b: usize| 100.0 * rps[a] / rps[b];
    println!();
    println!("oidc / token = {:.1} %", ratio(1, 0));
    println!("mtls / tls+token = {:.1} %", ratio(3, 2));
    println!("mtls / token (TLS included) = {:.1} %", ratio(3, 0));
    println!(
        "machine: {} cores; {conns} connections, {secs} s per round, {models} models",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    Ok(())
}
