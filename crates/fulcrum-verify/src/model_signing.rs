//! OpenSSF model-signing bundles (the `model-signing` tool's format, v1.0 predicate): a Sigstore
//! bundle v0.3 whose DSSE envelope holds an in-toto statement listing every file's digest.
//!
//! Deviations from the Python reference verifier (1.1.1), each deliberate:
//! - the PAE uses the envelope's `payloadType` (as DSSE specifies), and the type is checked after;
//! - a resource listed twice is refused (Python accepts it);
//! - the hashing method comes from the signed `serialization` (Python's CLI always assumes
//!   files/SHA-256, and its auto-detection fails for BLAKE2b and shards);
//! - signed `ignore_paths` are accepted only within a policy (git metadata, the signature file,
//!   and what the caller allows), since a signer could otherwise exclude any file;
//! - there is no "ignore unsigned files" mode: the files on disk must be exactly the signed set.

use std::path::{Path, PathBuf};

use fulcrum_sign::{PublicKey, Signer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::intoto::{ResourceDescriptor, STATEMENT_V1, Statement};
use crate::keyless::{self, KeylessSigner, TrustedRoot};
use crate::modeldir::{self, HashAlg, Method, Resource};
use crate::{Failure, b64_decode};

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const BUNDLE_MEDIA_TYPE_ALT: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Paths the model-signing tool ignores by default.
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: Envelope,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<KeyHint>,
    #[serde(default, rename = "x509CertificateChain", skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<CertChain>,
    /// A keyless bundle's Fulcio leaf (v0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<RawBytes>,
    #[serde(default)]
    pub tlog_entries: Vec<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyHint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertChain {
    pub certificates: Vec<RawBytes>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBytes {
    pub raw_bytes: String,
}

#[derive(Debug, Deserialize)]
struct Predicate {
    serialization: Serialization,
    resources: Vec<PredicateResource>,
}

#[derive(Debug, Deserialize)]
struct Serialization {
    method: String,
    hash_type: String,
    #[serde(default)]
    ignore_paths: Vec<String>,
    #[serde(default)]
    shard_size: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct PredicateResource {
    name: String,
    algorithm: String,
    digest: String,
}

/// DER certificates from PEM text (every `CERTIFICATE` block).
///
/// # Errors
/// A block that is not base64.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, Failure> {
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|b| {
            let body: String = b.split("-----END CERTIFICATE-----").next().unwrap_or("").split_whitespace().collect();
            b64_decode(&body)
        })
        .collect()
}

/// Who may have signed.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// A public key given out of band (the bundle's hint must match it when present).
    Key(&'a PublicKey),
    /// Root certificates (DER); the bundle's chain must lead to one of them.
    Roots(&'a [Vec<u8>]),
    /// Sigstore keyless: a Fulcio certificate and a transparency-log entry, verified offline
    /// against this trusted root, signed by one of these identities.
    Sigstore { root: &'a TrustedRoot, signers: &'a [KeylessSigner] },
}

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Where the signature file is; if inside the model it is not a model file.
    pub signature_path: Option<PathBuf>,
    /// Further paths the signer may exclude (beyond git metadata and the signature file).
    pub allowed_ignores: Vec<String>,
}

fn signature_rel(root: &Path, sig: Option<&Path>) -> Option<String> {
    let sig = sig?;
    let abs_root = std::fs::canonicalize(root).ok()?;
    let abs_sig = std::fs::canonicalize(sig).ok().or_else(|| Some(std::env::current_dir().ok()?.join(sig)))?;
    let rel = abs_sig.strip_prefix(&abs_root).ok()?;
    Some(rel.to_str()?.replace(std::path::MAIN_SEPARATOR, "/"))
}

fn signer_key(bundle: &Bundle, trust: Trust<'_>) -> Result<PublicKey, Failure> {
    let vm = &bundle.verification_material;
    match trust {
        Trust::Key(key) => {
            if vm.x509_certificate_chain.is_some() {
                return Err(Failure::VerificationMaterial);
            }
            if let Some(hint) = vm.public_key.as_ref().and_then(|p| p.hint.as_deref()).filter(|h| !h.is_empty())
                && !hint.eq_ignore_ascii_case(&key.model_signing_hint())
            {
                return Err(Failure::KeyMismatch);
            }
            Ok(key.clone())
        }
        Trust::Roots(roots) => {
            let chain = vm.x509_certificate_chain.as_ref().ok_or(Failure::VerificationMaterial)?;
            let ders: Vec<Vec<u8>> =
                chain.certificates.iter().map(|c| b64_decode(&c.raw_bytes)).collect::<Result<_, _>>()?;
            verify_chain(&ders, roots)
        }
        Trust::Sigstore { .. } => {
            let leaf = vm
                .certificate
                .as_ref()
                .or_else(|| vm.x509_certificate_chain.as_ref().and_then(|c| c.certificates.first()))
                .ok_or(Failure::VerificationMaterial)?;
            let der = b64_decode(&leaf.raw_bytes)?;
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|_| Failure::Certificate("unparseable signing certificate".into()))?;
            PublicKey::from_spki_der(cert.public_key().raw)
                .map_err(|_| Failure::Certificate("unsupported signing key".into()))
        }
    }
}

/// The subject digest a (not yet verified) statement names, to hand to the Sigstore verifier,
/// which checks the signature and that this digest is a subject of the signed statement.
fn claimed_subject(bundle: &Bundle) -> Result<[u8; 32], Failure> {
    let payload = b64_decode(&bundle.dsse_envelope.payload)?;
    let st: Statement = serde_json::from_slice(&payload).map_err(|e| Failure::Malformed(format!("statement: {e}")))?;
    let [subject] = st.subject.as_slice() else { return Err(Failure::SubjectCount(st.subject.len())) };
    let hex_digest = subject.digest.get("sha256").ok_or(Failure::RootDigest)?;
    hex::decode(hex_digest).ok().and_then(|d| <[u8; 32]>::try_from(d).ok()).ok_or(Failure::RootDigest)
}

/// Validate `chain[0]` (the leaf) up to a trusted root, at the leaf's notBefore (the bundle
/// carries no signing time; this is what the model-signing tool does), and return its key.
fn verify_chain(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> Result<PublicKey, Failure> {
    fn cert_err(m: &str) -> Failure {
        Failure::Certificate(m.to_owned())
    }
    fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Failure> {
        X509Certificate::from_der(der).map(|(_, c)| c).map_err(|_| cert_err("unparseable certificate"))
    }
    let leaf_der = chain.first().ok_or_else(|| cert_err("empty chain"))?;
    let leaf = parse(leaf_der)?;
    let at = leaf.validity().not_before;
    let code_signing = leaf.extended_key_usage().ok().flatten().is_some_and(|e| e.value.code_signing);
    let digital_sig = leaf.key_usage().ok().flatten().is_some_and(|k| k.value.digital_signature());
    if !code_signing && !digital_sig {
        return Err(cert_err("leaf is not for code signing"));
    }
    let candidates: Vec<&Vec<u8>> = chain.iter().skip(1).chain(roots.iter()).collect();
    let mut current_der = leaf_der.clone();
    for _ in 0..8 {
        if roots.contains(&current_der) {
            let key = PublicKey::from_spki_der(leaf.public_key().raw).map_err(|_| cert_err("unsupported leaf key"))?;
            return Ok(key);
        }
        let current = parse(&current_der)?;
        if !current.validity().is_valid_at(at) {
            return Err(cert_err("certificate not valid at signing time"));
        }
        let issuer = candidates.iter().find_map(|der| {
            let c = parse(der).ok()?;
            (c.subject() == current.issuer() && current.verify_signature(Some(c.public_key())).is_ok())
                .then(|| (*der).clone())
        });
        match issuer {
            Some(der) => {
                let c = parse(&der)?;
                if !c.is_ca() && !roots.contains(&der) {
                    return Err(cert_err("issuer is not a CA"));
                }
                current_der = der;
            }
            None => return Err(cert_err("no trusted issuer")),
        }
    }
    Err(cert_err("chain too long"))
}

/// A bundle whose signature, statement and manifest consistency have been checked, but whose
/// files have not been compared with anything yet.
#[derive(Debug, Clone)]
pub struct SignedModel {
    pub method: Method,
    pub alg: HashAlg,
    pub resources: Vec<Resource>,
    pub ignore_paths: Vec<String>,
    pub subject_sha256: [u8; 32],
    pub signer: PublicKey,
    /// For a keyless signature: who signed (issuer, identity), the trusted root and the proven
    /// signing times.
    pub keyless: Option<keyless::Verified>,
}

/// Check a bundle: media type, signer (hint or certificate chain), exactly one DSSE signature
/// over the exact payload, payload type, statement and predicate types, one subject, no
/// duplicate resources, and the subject digest over the listed resources.
///
/// # Errors
/// The first failed check.
pub fn open(bundle_bytes: &[u8], trust: Trust<'_>) -> Result<SignedModel, Failure> {
    let bundle: Bundle = serde_json::from_slice(bundle_bytes).map_err(|e| Failure::Malformed(e.to_string()))?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE && bundle.media_type != BUNDLE_MEDIA_TYPE_ALT {
        return Err(Failure::MediaType(bundle.media_type));
    }
    let key = signer_key(&bundle, trust)?;
    if bundle.dsse_envelope.signatures.len() != 1 {
        return Err(Failure::SignatureCount(bundle.dsse_envelope.signatures.len()));
    }
    let keyless = match trust {
        Trust::Sigstore { root, signers } => {
            let subject = claimed_subject(&bundle)?;
            Some(keyless::verify(
                root,
                bundle_bytes,
                keyless::Subject::Sha256(subject),
                keyless::Signers::Keyless(signers),
            )?)
        }
        Trust::Key(_) | Trust::Roots(_) => None,
    };
    let payload = bundle.dsse_envelope.verify(&key, INTOTO_PAYLOAD_TYPE)?;
    let st = Statement::parse(&payload, PREDICATE_TYPE)?;
    if st.subject.len() != 1 {
        return Err(Failure::SubjectCount(st.subject.len()));
    }
    let predicate: Predicate =
        serde_json::from_value(st.predicate.clone()).map_err(|e| Failure::Malformed(format!("predicate: {e}")))?;
    let alg = HashAlg::from_name(&predicate.serialization.hash_type)?;
    let method = match predicate.serialization.method.as_str() {
        "files" => Method::Files,
        "shards" => {
            let s = predicate
                .serialization
                .shard_size
                .ok_or_else(|| Failure::Serialization("shards without shard_size".into()))?;
            if !(s >= 1.0 && s.fract() == 0.0 && s <= 1e15) {
                return Err(Failure::Serialization(format!("bad shard_size {s}")));
            }
            Method::Shards(s as u64)
        }
        other => return Err(Failure::Serialization(format!("unknown method {other:?}"))),
    };
    let expected_alg = method.algorithm(alg);
    let mut resources: Vec<Resource> = Vec::with_capacity(predicate.resources.len());
    let mut names = std::collections::HashSet::new();
    for r in &predicate.resources {
        if !names.insert(r.name.as_str()) {
            return Err(Failure::DuplicateResource(r.name.clone()));
        }
        if r.algorithm != expected_alg {
            return Err(Failure::HashAlgorithm(r.algorithm.clone()));
        }
        let digest =
            hex::decode(&r.digest).map_err(|_| Failure::Malformed(format!("digest of {:?} is not hex", r.name)))?;
        resources.push(Resource { name: r.name.clone(), algorithm: r.algorithm.clone(), digest });
    }
    let root_digest = modeldir::root_digest(&resources);
    let subject = st.subject[0].digest.get("sha256").ok_or(Failure::RootDigest)?;
    if !subject.eq_ignore_ascii_case(&hex::encode(root_digest)) {
        return Err(Failure::RootDigest);
    }
    Ok(SignedModel {
        method,
        alg,
        resources,
        ignore_paths: predicate.serialization.ignore_paths,
        subject_sha256: root_digest,
        signer: key,
        keyless,
    })
}

impl SignedModel {
    /// Whether checking it needs the files' bytes: only a files/SHA-256 signature can be checked
    /// against known digests (`modeldir::Entry::known_sha256`).
    pub fn needs_bytes(&self) -> bool {
        !(self.method == Method::Files && self.alg == HashAlg::Sha256)
    }

    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::Files => "files",
            Method::Shards(_) => "shards",
        }
    }

    fn file_of(&self, name: &str) -> String {
        match self.method {
            Method::Files => name.to_owned(),
            Method::Shards(_) => name.rsplitn(3, ':').nth(2).unwrap_or(name).to_owned(),
        }
    }

    /// Require the signed `ignore_paths` to be within `allowed`.
    ///
    /// # Errors
    /// `IgnorePaths` naming the paths outside the policy.
    pub fn check_ignore_policy(&self, allowed: &[String]) -> Result<(), Failure> {
        let refused: Vec<String> = self.ignore_paths.iter().filter(|p| !allowed.contains(p)).cloned().collect();
        if refused.is_empty() { Ok(()) } else { Err(Failure::IgnorePaths(refused)) }
    }

    /// The files (`entries`, e.g. a walked directory or stored blobs named by manifest path)
    /// must be exactly the signed set, with the signed digests under the signed method.
    ///
    /// # Errors
    /// `ExtraFiles`, `MissingFiles` (compared before any byte is read), `HashMismatch`.
    pub fn check(&self, entries: &[modeldir::Entry]) -> Result<(), Failure> {
        let signed_files: std::collections::BTreeSet<String> =
            self.resources.iter().map(|r| self.file_of(&r.name)).collect();
        let disk_files: std::collections::BTreeSet<String> =
            entries.iter().filter(|e| self.method == Method::Files || e.size > 0).map(|e| e.rel.clone()).collect();
        let extra: Vec<String> = disk_files.difference(&signed_files).cloned().collect();
        if !extra.is_empty() {
            return Err(Failure::ExtraFiles(extra));
        }
        let missing: Vec<String> = signed_files.difference(&disk_files).cloned().collect();
        if !missing.is_empty() {
            return Err(Failure::MissingFiles(missing));
        }
        let actual = modeldir::hash(entries, self.method, self.alg)?;
        let mut by_name: std::collections::HashMap<&str, &Resource> =
            self.resources.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut mismatched = Vec::new();
        for a in &actual {
            match by_name.remove(a.name.as_str()) {
                Some(s) if s.digest == a.digest => {}
                _ => mismatched.push(self.file_of(&a.name)),
            }
        }
        mismatched.extend(by_name.keys().map(|n| self.file_of(n)));
        mismatched.sort();
        mismatched.dedup();
        if mismatched.is_empty() { Ok(()) } else { Err(Failure::HashMismatch(mismatched)) }
    }
}

/// Verify a model directory (or single file) against a model-signing bundle.
///
/// # Errors
/// The first failed check, as a typed [`Failure`].
pub fn verify(
    root: &Path,
    bundle_bytes: &[u8],
    trust: Trust<'_>,
    opts: &VerifyOptions,
) -> Result<SignedModel, Failure> {
    let signed = open(bundle_bytes, trust)?;
    let sig_rel = signature_rel(root, opts.signature_path.as_deref());
    let mut allowed: Vec<String> = GIT_PATHS.iter().map(|s| (*s).to_owned()).collect();
    allowed.extend(sig_rel.iter().cloned());
    allowed.extend(opts.allowed_ignores.iter().cloned());
    signed.check_ignore_policy(&allowed)?;
    let mut ignore = signed.ignore_paths.clone();
    ignore.extend(GIT_PATHS.iter().map(|s| (*s).to_owned()));
    ignore.extend(sig_rel);
    let entries = modeldir::walk(root, &ignore)?;
    signed.check(&entries)?;
    Ok(signed)
}

#[derive(Debug, Clone)]
pub struct SignOptions {
    pub method: Method,
    pub alg: HashAlg,
    /// Where the signature will be written; if inside the model it is excluded.
    pub signature_path: Option<PathBuf>,
}

impl Default for SignOptions {
    /// files/SHA-256: what every `model_signing verify` CLI accepts.
    fn default() -> Self {
        Self { method: Method::Files, alg: HashAlg::Sha256, signature_path: None }
    }
}

/// Sign a model directory; returns the bundle bytes (the exact field set `model_signing` reads).
///
/// # Errors
/// Walking/hashing failures, or the signer failing.
pub fn sign(root: &Path, signer: &dyn Signer, opts: &SignOptions) -> Result<Vec<u8>, Failure> {
    let sig_rel = signature_rel(root, opts.signature_path.as_deref());
    let mut ignore: Vec<String> = GIT_PATHS.iter().map(|s| (*s).to_owned()).collect();
    ignore.extend(sig_rel);
    let entries = modeldir::walk(root, &ignore)?;
    let resources = modeldir::hash(&entries, opts.method, opts.alg)?;
    let name = std::fs::canonicalize(root)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let mut serialization = json!({"method": match opts.method { Method::Files => "files", Method::Shards(_) => "shards" },
        "hash_type": opts.alg.name(), "allow_symlinks": false, "ignore_paths": ignore});
    if let Method::Shards(s) = opts.method {
        serialization["shard_size"] = json!(s);
    }
    let statement = Statement {
        ty: STATEMENT_V1.into(),
        subject: vec![ResourceDescriptor {
            name: Some(name),
            uri: None,
            digest: [("sha256".to_owned(), hex::encode(modeldir::root_digest(&resources)))].into(),
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: json!({
            "serialization": serialization,
            "resources": resources.iter().map(|r| json!({"name": r.name, "algorithm": r.algorithm, "digest": hex::encode(&r.digest)})).collect::<Vec<_>>(),
        }),
    };
    let payload = serde_json::to_vec_pretty(&statement).expect("statements serialise");
    let envelope = Envelope::sign(INTOTO_PAYLOAD_TYPE, &payload, signer, "").map_err(|e| Failure::Io(e.to_string()))?;
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial {
            public_key: Some(KeyHint { hint: Some(signer.public_key().model_signing_hint()) }),
            x509_certificate_chain: None,
            certificate: None,
            tlog_entries: vec![],
        },
        dsse_envelope: envelope,
    };
    Ok(serde_json::to_vec(&bundle).expect("bundles serialise"))
}
