//! Mutual TLS: client certificates made in the test (a client CA, a rogue CA, a CRL) against the
//! registry over HTTPS. Each client a workload or a person could bring, with what the registry
//! must conclude: refused at the handshake, refused with a reason, or this principal.

mod common;

use std::path::Path;

use common::Harness;
use fulcrum_server::TlsFiles;
use fulcrum_server::auth::{CertIdentity, ClientIdentities};
use fulcrum_server::tls::ClientAuthFiles;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use reqwest::StatusCode;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = p.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(p, key) }
}

/// A client certificate (PEM cert + key): SAN URI, serial, extended key usage, validity.
struct Leaf<'a> {
    uri: &'a str,
    serial: u64,
    eku: ExtendedKeyUsagePurpose,
    expired: bool,
}

fn leaf(by: &Ca, l: &Leaf<'_>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![SanType::URI(l.uri.try_into().unwrap())];
    p.serial_number = Some(SerialNumber::from(l.serial));
    p.extended_key_usages = vec![l.eku.clone()];
    let now = OffsetDateTime::now_utc();
    (p.not_before, p.not_after) = if l.expired {
        (now - Duration::days(30), now - Duration::days(1))
    } else {
        (now - Duration::hours(1), now + Duration::days(1))
    };
    (p.signed_by(&key, &by.issuer).unwrap().pem(), key.serialize_pem())
}

fn crl(by: &Ca, number: u64, revoked: &[u64]) -> String {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(1),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: now - Duration::minutes(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&by.issuer)
    .unwrap()
    .pem()
    .unwrap()
}

fn identity(
    pattern: &str,
    role: fulcrum_core::identity::Role,
    tenant: &str,
    env: Option<fulcrum_core::lifecycle::Env>,
) -> CertIdentity {
    CertIdentity { pattern: pattern.into(), role, tenant: tenant.into(), domain: "*".into(), env, purpose: None }
}

struct Pki {
    server_ca: Ca,
    client_ca: Ca,
    rogue: Ca,
}

/// Files of the server: its certificate (for `localhost`), key, the client CA and its CRL.
fn server_files(dir: &Path, pki: &Pki, required: bool) -> TlsFiles {
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &pki.server_ca.issuer).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("client-ca.pem"), &pki.client_ca.pem).unwrap();
    std::fs::write(dir.join("crl.pem"), crl(&pki.client_ca, 1, &[66])).unwrap();
    let mut files = TlsFiles::new(&dir.join("cert.pem"), &dir.join("key.pem"));
    files.client_auth =
        Some(ClientAuthFiles { ca: dir.join("client-ca.pem"), crls: vec![dir.join("crl.pem")], required });
    files
}

fn identities() -> ClientIdentities {
    use fulcrum_core::identity::Role;
    use fulcrum_core::lifecycle::Env;
    ClientIdentities {
        identities: vec![
            identity("uri:spiffe://acme/serving/prod/*", Role::Serving, "acme", Some(Env::Prod)),
            identity("uri:spiffe://acme/device/*", Role::Viewer, "acme", None),
            identity("uri:spiffe://globex/device/*", Role::Viewer, "globex", None),
        ],
        certificate_and_token_for: vec![Role::Admin, Role::KeyAdmin],
    }
}

/// GET /v1/me with a fresh connection: Err(()) when the handshake (or the first read) fails.
async fn me(
    h: &Harness,
    pki: &Pki,
    cert: Option<&(String, String)>,
    token: Option<&str>,
) -> Result<(StatusCode, Value), String> {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.server_ca.pem.as_bytes()).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], h.port()).into())
        .timeout(std::time::Duration::from_secs(30))
        .pool_max_idle_per_host(0);
    if let Some((c, k)) = cert {
        b = b.identity(reqwest::Identity::from_pem(format!("{c}\n{k}").as_bytes()).unwrap());
    }
    let mut rb = b.build().unwrap().get(format!("{}/v1/me", h.url));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = rb.send().await.map_err(|e| format!("{e:?}"))?;
    Ok((resp.status(), resp.json().await.map_err(|e| e.to_string())?))
}

/// A client's certificate and key (PEM).
type Pem = (String, String);

/// (what, client certificate, bearer token, expected outcome)
type Row<'a> = (&'a str, Option<&'a Pem>, Option<&'a str>, Want);

enum Want {
    Handshake,
    Refused(&'static str),
    Me { subject: &'static str, role: &'static str, by: &'static str },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_accepted_refused_or_mapped_as_they_should_be() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pki = Pki { server_ca: ca("server CA"), client_ca: ca("client CA"), rogue: ca("rogue CA") };
    let dir = tempfile::tempdir().unwrap();
    let files = server_files(dir.path(), &pki, false);
    let h = Harness::start_tls(tempfile::tempdir().unwrap(), files, |c| c.client_identities = identities()).await;

    let ok = |uri, serial| Leaf { uri, serial, eku: ExtendedKeyUsagePurpose::ClientAuth, expired: false };
    let agent = leaf(&pki.client_ca, &ok("spiffe://acme/serving/prod/agent-1", 10));
    let laptop = leaf(&pki.client_ca, &ok("spiffe://acme/device/laptop-7", 11));
    let globex = leaf(&pki.client_ca, &ok("spiffe://globex/device/pc-1", 12));
    let unmapped = leaf(&pki.client_ca, &ok("spiffe://acme/batch/job-3", 13));
    let expired = leaf(&pki.client_ca, &Leaf { expired: true, ..ok("spiffe://acme/serving/prod/agent-2", 14) });
    let rogue = leaf(&pki.rogue, &ok("spiffe://acme/serving/prod/agent-1", 10));
    let server_only = leaf(
        &pki.client_ca,
        &Leaf { eku: ExtendedKeyUsagePurpose::ServerAuth, ..ok("spiffe://acme/serving/prod/agent-3", 15) },
    );
    let revoked = leaf(&pki.client_ca, &ok("spiffe://acme/serving/prod/agent-4", 66));
    let (admin, viewer) = (common::token("admin"), common::token("viewer"));

    let rows: Vec<Row<'_>> = vec![
        (
            "a serving agent's certificate alone",
            Some(&agent),
            None,
            Want::Me { subject: "spiffe://acme/serving/prod/agent-1", role: "serving", by: "certificate" },
        ),
        ("an expired certificate", Some(&expired), None, Want::Handshake),
        ("a certificate of another CA", Some(&rogue), None, Want::Handshake),
        ("a certificate without the clientAuth usage", Some(&server_only), None, Want::Handshake),
        ("a certificate revoked by the CRL", Some(&revoked), None, Want::Handshake),
        ("a valid certificate no identity matches", Some(&unmapped), None, Want::Refused("certificate_unmapped")),
        (
            "no certificate, a viewer's token",
            None,
            Some(&viewer),
            Want::Me { subject: "viewer", role: "viewer", by: "token" },
        ),
        ("no certificate, an admin's token", None, Some(&admin), Want::Refused("certificate_required")),
        (
            "an admin's token from the tenant's device",
            Some(&laptop),
            Some(&admin),
            Want::Me { subject: "admin", role: "admin", by: "certificate+token" },
        ),
        (
            "an admin's token from another tenant's device",
            Some(&globex),
            Some(&admin),
            Want::Refused("certificate_mismatch"),
        ),
        ("nothing at all", None, None, Want::Refused("unauthenticated")),
    ];
    for (what, cert, token, want) in rows {
        let got = me(&h, &pki, cert, token).await;
        match want {
            Want::Handshake => assert!(got.is_err(), "{what}: {got:?}"),
            Want::Refused(code) => {
                let (status, body) = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some(code)), "{what}: {body}");
            }
            Want::Me { subject, role, by } => {
                let (status, body) = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(status, StatusCode::OK, "{what}: {body}");
                assert_eq!((body["subject"].as_str(), body["role"].as_str()), (Some(subject), Some(role)), "{what}");
                assert_eq!(body["authenticated_by"], by, "{what}");
            }
        }
    }

    // The certificate's principal is what authorization sees: a serving agent may not create models.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.server_ca.pem.as_bytes()).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], h.port()).into())
        .identity(reqwest::Identity::from_pem(format!("{}\n{}", agent.0, agent.1).as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = client
        .post(format!("{}/v1/models", h.url))
        .json(&serde_json::json!({"name": "m", "domain": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // A new CRL revoking the agent is picked up without a restart: its next handshake fails.
    std::fs::write(dir.path().join("crl.pem"), crl(&pki.client_ca, 2, &[66, 10])).unwrap();
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if me(&h, &pki, Some(&agent), None).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the revoked agent still connects after the CRL changed");
    assert!(me(&h, &pki, Some(&laptop), Some(&admin)).await.is_ok(), "other certificates keep working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_requiring_client_certificates_refuses_connections_without_one() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pki = Pki { server_ca: ca("server CA"), client_ca: ca("client CA"), rogue: ca("rogue CA") };
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_tls(tempfile::tempdir().unwrap(), server_files(dir.path(), &pki, true), |c| {
        c.client_identities = identities();
    })
    .await;
    let agent = leaf(
        &pki.client_ca,
        &Leaf {
            uri: "spiffe://acme/serving/prod/agent-1",
            serial: 10,
            eku: ExtendedKeyUsagePurpose::ClientAuth,
            expired: false,
        },
    );
    assert!(me(&h, &pki, None, Some(&common::token("viewer"))).await.is_err(), "a token alone does not connect");
    let (status, body) = me(&h, &pki, Some(&agent), None).await.unwrap();
    assert_eq!((status, body["role"].as_str()), (StatusCode::OK, Some("serving")));

    // The CLI's client with a pinned CA and a client certificate reaches it.
    let cert_dir = tempfile::tempdir().unwrap();
    let p = |n: &str| cert_dir.path().join(n);
    std::fs::write(p("ca.pem"), &pki.server_ca.pem).unwrap();
    std::fs::write(p("agent.pem"), &agent.0).unwrap();
    std::fs::write(p("agent.key"), &agent.1).unwrap();
    let tls =
        fulcrum_client::ClientTls { ca: Some(p("ca.pem")), cert: Some(p("agent.pem")), key: Some(p("agent.key")) };
    let url = format!("https://127.0.0.1:{}", h.port()).replace("127.0.0.1", "localhost");
    let c = fulcrum_client::Client::with_tls(&url, None, &tls).unwrap();
    let me = c.get("/v1/me").await.unwrap();
    assert_eq!(me["subject"], "spiffe://acme/serving/prod/agent-1");
    // Pinned: the system's roots are not trusted, nor another CA.
    std::fs::write(p("ca.pem"), &pki.rogue.pem).unwrap();
    let c = fulcrum_client::Client::with_tls(&url, None, &tls).unwrap();
    assert!(c.get("/v1/me").await.is_err(), "a registry certificate from another CA is refused");
}
