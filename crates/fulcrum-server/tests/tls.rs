//! HTTPS: the registry serves over rustls (aws-lc-rs) with a PEM certificate and key, and shuts
//! down gracefully.

mod common;

use std::net::SocketAddr;

#[tokio::test]
async fn serves_https_with_a_pem_certificate() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();

    let (state, _) =
        fulcrum_server::Registry::open_default(fulcrum_server::Config::new(dir.path().join("data"))).await.unwrap();
    // Bind a free port, then serve on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let port = addr.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let server = tokio::spawn(async move {
        fulcrum_server::serve_tls(state, listener, &fulcrum_server::TlsFiles::new(&c, &k), async {
            let _ = rx.await;
        })
        .await
    });
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(r) = client.get(format!("https://localhost:{port}/healthz")).send().await {
            assert_eq!(r.status(), 200);
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "HTTPS answered");
    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true), "plain HTTP must not be answered with success");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A CA and a `localhost` certificate it signed, as PEM (CA, cert, key).
fn issue(name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A renewed certificate and key written over the files are served without a restart; a
/// half-written pair does not take the server down (the pair in use keeps serving).
#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca1, cert1, key1) = issue("first CA");
    let (ca2, cert2, key2) = issue("second CA");
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&c, &cert1).unwrap();
    std::fs::write(&k, &key1).unwrap();
    let (state, _) =
        fulcrum_server::Registry::open_default(fulcrum_server::Config::new(dir.path().join("data"))).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let port = addr.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (c2, k2) = (c.clone(), k.clone());
    let server = tokio::spawn(async move {
        fulcrum_server::serve_tls(state, listener, &fulcrum_server::TlsFiles::new(&c2, &k2), async {
            let _ = rx.await;
        })
        .await
    });
    // A fresh client (no session reuse) trusting only `ca`.
    let answers = |ca: String| async move {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .resolve("localhost", addr)
            .build()
            .unwrap();
        client.get(format!("https://localhost:{port}/healthz")).send().await.is_ok_and(|r| r.status() == 200)
    };
    let until = |what: &'static str, ca: String, want: bool| async move {
        for _ in 0..100 {
            if answers(ca.clone()).await == want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{what}");
    };
    until("served with the first certificate", ca1.clone(), true).await;
    // Half-written: a certificate without its key. The first pair keeps serving.
    std::fs::write(&c, &cert2).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(answers(ca1.clone()).await, "a mismatched pair must not replace the one in use");
    // Now the key too: the renewed pair is served, the old one no longer.
    std::fs::write(&k, &key2).unwrap();
    until("served with the renewed certificate", ca2.clone(), true).await;
    assert!(!answers(ca1).await, "the old certificate is no longer served");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
