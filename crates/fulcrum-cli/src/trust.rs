//! CI-side trust commands: `fulcrum sign model`, `fulcrum verify model`, `fulcrum attest
//! provenance`, `fulcrum keys generate` — so a pipeline needs no other tool. Bundles are the
//! OpenSSF model-signing format; provenance is SLSA v1 in a DSSE envelope.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use fulcrum_sign::{Alg, LocalKey, PublicKey, Signer, TrustBundle};
use fulcrum_verify::model_signing::{self, SignOptions, Trust, VerifyOptions};
use fulcrum_verify::modeldir::{HashAlg, Method};
use serde_json::json;

use crate::Output;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodArg {
    Files,
    Shards,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HashArg {
    Sha256,
    Blake2b,
    Blake3,
}

#[derive(Debug, Subcommand)]
pub enum SignCmd {
    /// Sign a model directory (OpenSSF model-signing bundle; verifiable with `model_signing verify key`).
    Model {
        dir: PathBuf,
        /// PKCS#8 private key (PEM or DER): ECDSA P-256/P-384 for model-signing interop, or Ed25519.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        signature: PathBuf,
        #[arg(long, value_enum, default_value_t = MethodArg::Files)]
        method: MethodArg,
        /// Shard size in bytes (shards method).
        #[arg(long, default_value_t = 1_000_000_000)]
        shard_size: u64,
        #[arg(long = "hash", value_enum, default_value_t = HashArg::Sha256)]
        hash: HashArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum VerifyCmd {
    /// Verify a model directory against a model-signing bundle; exits 0 only if every check passes.
    Model {
        dir: PathBuf,
        #[arg(long)]
        signature: PathBuf,
        /// The signer's public key (PEM).
        #[arg(long, conflicts_with_all = ["certificate_chain", "trust_bundle"])]
        public_key: Option<PathBuf>,
        /// Trusted root certificate(s) (PEM) for certificate bundles.
        #[arg(long)]
        certificate_chain: Vec<PathBuf>,
        /// A Fulcrum trust bundle (JSON); any of its keys may have signed.
        #[arg(long)]
        trust_bundle: Option<PathBuf>,
        /// Extra paths the signer may have excluded (besides git metadata and the signature).
        #[arg(long)]
        allow_ignore: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AttestCmd {
    /// SLSA Provenance v1 for a model directory (subject = its Fulcrum artifact digest).
    Provenance(ProvenanceArgs),
}

#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    /// The model directory (its artifact digest is computed) …
    #[arg(long, required_unless_present = "artifact_digest")]
    dir: Option<PathBuf>,
    /// … or the artifact digest itself (sha256:<hex>).
    #[arg(long)]
    artifact_digest: Option<String>,
    #[arg(long)]
    builder_id: String,
    #[arg(long)]
    build_type: String,
    /// key=value external parameters (repeatable).
    #[arg(long = "param")]
    params: Vec<String>,
    #[arg(long)]
    invocation_id: Option<String>,
    #[arg(long)]
    key: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Generate a local PKCS#8 signing key (mode 0600) and print its public key.
    Generate {
        #[arg(long, default_value = "ecdsa-p256-sha256")]
        alg: String,
        #[arg(long)]
        out: PathBuf,
    },
}

fn load_key(path: &std::path::Path) -> anyhow::Result<LocalKey> {
    LocalKey::from_file(path).with_context(|| format!("loading signing key {}", path.display()))
}

pub fn sign(c: SignCmd, output: Output) -> anyhow::Result<()> {
    let SignCmd::Model { dir, key, signature, method, shard_size, hash } = c;
    let signer = load_key(&key)?;
    let opts = SignOptions {
        method: match method {
            MethodArg::Files => Method::Files,
            MethodArg::Shards => Method::Shards(shard_size.max(1)),
        },
        alg: match hash {
            HashArg::Sha256 => HashAlg::Sha256,
            HashArg::Blake2b => HashAlg::Blake2b,
            HashArg::Blake3 => HashAlg::Blake3,
        },
        signature_path: Some(signature.clone()),
    };
    let bundle = model_signing::sign(&dir, &signer, &opts).map_err(|f| anyhow::anyhow!("{f} ({})", f.code()))?;
    std::fs::write(&signature, &bundle).with_context(|| format!("writing {}", signature.display()))?;
    match output {
        Output::Json => println!(
            "{}",
            json!({"signature": signature, "signer": signer.public_key().fingerprint(), "alg": signer.alg()})
        ),
        Output::Text => println!(
            "signed {} -> {} ({} key {})",
            dir.display(),
            signature.display(),
            signer.alg(),
            &signer.public_key().fingerprint()[..16]
        ),
    }
    Ok(())
}

pub fn verify(c: VerifyCmd, output: Output) -> anyhow::Result<()> {
    let VerifyCmd::Model { dir, signature, public_key, certificate_chain, trust_bundle, allow_ignore } = c;
    let bundle = std::fs::read(&signature).with_context(|| format!("reading {}", signature.display()))?;
    let opts = VerifyOptions { signature_path: Some(signature.clone()), allowed_ignores: allow_ignore };
    let result = if let Some(p) = public_key {
        let key = PublicKey::from_pem(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        model_signing::verify(&dir, &bundle, Trust::Key(&key), &opts)
    } else if let Some(p) = trust_bundle {
        let tb: TrustBundle = serde_json::from_slice(&std::fs::read(&p)?)
            .with_context(|| format!("{} is not a trust bundle", p.display()))?;
        let keys: Vec<PublicKey> = tb.keys.iter().filter_map(|k| k.key().ok()).collect();
        let mut last = None;
        let mut ok = None;
        for k in &keys {
            match model_signing::verify(&dir, &bundle, Trust::Key(k), &opts) {
                Ok(v) => {
                    ok = Some(v);
                    break;
                }
                Err(f) => last = Some(f),
            }
        }
        match ok {
            Some(v) => Ok(v),
            None => Err(last.unwrap_or(fulcrum_verify::Failure::VerificationMaterial)),
        }
    } else if !certificate_chain.is_empty() {
        let mut roots = Vec::new();
        for p in &certificate_chain {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            roots.extend(model_signing::pem_certificates(&text).map_err(|f| anyhow::anyhow!("{}: {f}", p.display()))?);
        }
        model_signing::verify(&dir, &bundle, Trust::Roots(&roots), &opts)
    } else {
        bail!("give --public-key, --trust-bundle or --certificate-chain");
    };
    let v = result.map_err(|f| anyhow::anyhow!("verification failed: {f} ({})", f.code()))?;
    match output {
        Output::Json => println!(
            "{}",
            json!({"verified": true, "resources": v.resources.len(), "method": v.method_name(), "hash": v.alg.name(), "signer": v.signer.fingerprint(), "subject_sha256": hex::encode(v.subject_sha256)})
        ),
        Output::Text => println!(
            "verified: {} resources ({} / {}), signer {}",
            v.resources.len(),
            v.method_name(),
            v.alg.name(),
            &v.signer.fingerprint()[..16]
        ),
    }
    Ok(())
}

pub fn attest(c: AttestCmd, output: Output) -> anyhow::Result<()> {
    let AttestCmd::Provenance(a) = c;
    let signer = load_key(&a.key)?;
    let (name, digest) = match (&a.dir, &a.artifact_digest) {
        (Some(dir), _) => {
            let m = crate::upload::local_manifest(dir)?;
            (dir.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned()), m.digest())
        }
        (None, Some(d)) => (
            "model".to_owned(),
            d.parse::<fulcrum_core::Digest>().map_err(|e| anyhow::anyhow!("--artifact-digest: {e}"))?,
        ),
        (None, None) => bail!("give --dir or --artifact-digest"),
    };
    let mut params = serde_json::Map::new();
    for p in &a.params {
        let (k, v) = p.split_once('=').with_context(|| format!("--param {p:?} is not key=value"))?;
        params.insert(k.into(), v.into());
    }
    let env = fulcrum_verify::slsa::attest(
        &name,
        &digest.hex(),
        &a.builder_id,
        &a.build_type,
        params.into(),
        a.invocation_id.as_deref(),
        &signer,
    )?;
    std::fs::write(&a.out, &env).with_context(|| format!("writing {}", a.out.display()))?;
    match output {
        Output::Json => println!("{}", json!({"provenance": a.out, "subject": digest.to_string()})),
        Output::Text => println!("provenance for {digest} -> {}", a.out.display()),
    }
    Ok(())
}

pub fn keys(c: KeysCmd, output: Output) -> anyhow::Result<()> {
    let KeysCmd::Generate { alg, out } = c;
    let alg: Alg = alg
        .parse()
        .map_err(|()| anyhow::anyhow!("--alg must be one of ed25519, ecdsa-p256-sha256, ecdsa-p384-sha384"))?;
    let key = LocalKey::generate(&out, alg)?;
    let pem = key.public_key().to_pem();
    match output {
        Output::Json => println!(
            "{}",
            json!({"private_key": out, "alg": alg, "public_key_pem": pem, "fingerprint": key.public_key().fingerprint()})
        ),
        Output::Text => print!("{pem}"),
    }
    Ok(())
}
