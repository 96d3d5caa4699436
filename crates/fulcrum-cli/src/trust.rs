//! CI-side trust commands: `fulcrum sign model`, `fulcrum verify model`, `fulcrum attest
//! provenance`, `fulcrum keys generate` — so a pipeline needs no other tool. Bundles are the
//! OpenSSF model-signing format; provenance is SLSA v1 in a DSSE envelope.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use fulcrum_sign::{Alg, LocalKey, PublicKey, Signer, TrustBundle};
use fulcrum_verify::keyless;
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
        /// The signing key: ECDSA P-256/P-384 for model-signing interop, or Ed25519.
        #[command(flatten)]
        signer: SignerArgs,
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
        /// Sigstore keyless: the signer's identity and the trusted root (see `verify-bundle`).
        #[command(flatten)]
        keyless: KeylessArgs,
        /// Extra paths the signer may have excluded (besides git metadata and the signature).
        #[arg(long)]
        allow_ignore: Vec<String>,
        /// Keep a MACed verified record here; an unchanged model then re-verifies from metadata
        /// without reading its files (with --public-key).
        #[arg(long, requires = "public_key")]
        record: Option<PathBuf>,
        /// The record's MAC key (created, mode 0600, if missing). Default: <record>.key
        #[arg(long, requires = "record")]
        record_key: Option<PathBuf>,
    },
}

/// Who may have signed a Sigstore bundle: a Fulcio identity (issuer and identity, exact or a
/// pattern over the whole identity), or a managed key.
#[derive(Debug, Args)]
pub struct KeylessArgs {
    /// The expected certificate identity (SAN: email or URI), exact.
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with = "certificate_identity_regexp")]
    pub certificate_identity: Option<String>,
    /// … or a regular expression the whole identity must match.
    #[arg(long, requires = "certificate_oidc_issuer")]
    pub certificate_identity_regexp: Option<String>,
    /// The expected OIDC issuer of the signing certificate.
    #[arg(long)]
    pub certificate_oidc_issuer: Option<String>,
    /// The trusted root (`trusted_root.json`) to verify against; default: Sigstore's production
    /// root as shipped with this build. Nothing is fetched.
    #[arg(long)]
    pub trusted_root: Option<PathBuf>,
    /// Use Sigstore's staging root as shipped with this build.
    #[arg(long, conflicts_with = "trusted_root")]
    pub staging: bool,
}

impl KeylessArgs {
    fn root(&self) -> anyhow::Result<keyless::TrustedRoot> {
        Ok(match &self.trusted_root {
            Some(p) => {
                keyless::TrustedRoot::from_json(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                    .map_err(|f| anyhow::anyhow!("{}: {f} ({})", p.display(), f.code()))?
            }
            None if self.staging => keyless::TrustedRoot::from_json(keyless::STAGING_TRUSTED_ROOT.as_bytes())
                .map_err(|f| anyhow::anyhow!("staging root: {f}"))?,
            None => keyless::TrustedRoot::production(),
        })
    }

    fn signers(&self) -> anyhow::Result<Vec<keyless::KeylessSigner>> {
        let Some(issuer) = &self.certificate_oidc_issuer else { return Ok(vec![]) };
        Ok(match (&self.certificate_identity, &self.certificate_identity_regexp) {
            (Some(i), _) => vec![keyless::KeylessSigner::exact(issuer, i)],
            (None, Some(p)) => vec![keyless::KeylessSigner::pattern(issuer, p).map_err(|e| anyhow::anyhow!(e))?],
            (None, None) => {
                bail!("--certificate-oidc-issuer needs --certificate-identity or --certificate-identity-regexp")
            }
        })
    }

    fn given(&self) -> bool {
        self.certificate_oidc_issuer.is_some() || self.trusted_root.is_some() || self.staging
    }
}

#[derive(Debug, Args)]
pub struct VerifyBundleArgs {
    /// The Sigstore bundle (`.sigstore.json`).
    #[arg(long)]
    bundle: PathBuf,
    /// A managed key (PEM) instead of a certificate identity.
    #[arg(long, conflicts_with_all = ["certificate_identity", "certificate_identity_regexp", "certificate_oidc_issuer"])]
    key: Option<PathBuf>,
    #[command(flatten)]
    keyless: KeylessArgs,
    /// The signed file, or its digest as `sha256:<hex>` (for DSSE: a subject of the statement).
    file_or_digest: String,
}

/// A `sha256:<hex>` that is not a path on disk (the conformance protocol's rule).
fn as_digest(arg: &str) -> Option<[u8; 32]> {
    let hex_part = arg.strip_prefix("sha256:")?;
    if std::path::Path::new(arg).exists() {
        return None;
    }
    hex::decode(hex_part).ok()?.try_into().ok()
}

pub fn verify_bundle(a: VerifyBundleArgs, output: Output) -> anyhow::Result<()> {
    let bundle = std::fs::read(&a.bundle).with_context(|| format!("reading {}", a.bundle.display()))?;
    let root = a.keyless.root()?;
    let key = a
        .key
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let signers = a.keyless.signers()?;
    let who = match &key {
        Some(pem) => keyless::Signers::Key(pem),
        None => keyless::Signers::Keyless(&signers),
    };
    let bytes;
    let subject = match as_digest(&a.file_or_digest) {
        Some(d) => keyless::Subject::Sha256(d),
        None => {
            bytes = std::fs::read(&a.file_or_digest).with_context(|| format!("reading {}", a.file_or_digest))?;
            keyless::Subject::Bytes(&bytes)
        }
    };
    let v = keyless::verify(&root, &bundle, subject, who)
        .map_err(|f| anyhow::anyhow!("verification failed: {f} ({})", f.code()))?;
    match output {
        Output::Json => crate::outln!("{}", json!({"verified": true, "result": v})),
        Output::Text => crate::outln!(
            "verified: signed by {} (issuer {}), trusted root {}",
            v.identity.as_deref().unwrap_or("the managed key"),
            v.issuer.as_deref().unwrap_or("-"),
            v.trusted_root
        ),
    }
    Ok(())
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
    #[command(flatten)]
    signer: SignerArgs,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Generate a local PKCS#8 signing key for CI (mode 0600) and print its public key.
    Generate {
        #[arg(long, default_value = "ecdsa-p256-sha256")]
        alg: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Key-admin: create a new registry signing key in its KMS (with the key-admin's
    /// credential) and publish it to the registry, which rotates onto it.
    Rotate(KmsArgs),
    /// Key-admin: create a key in a KMS and print its registration, without publishing it.
    Create(KmsArgs),
    /// Key-admin: retire a key (or mark it compromised).
    Retire {
        kid: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        compromised: bool,
    },
    /// Published keys with their windows and status.
    List,
    /// Key-admin: put a Sigstore `trusted_root.json` in force for keyless signatures (the next
    /// trust bundle carries it; agents never fetch one themselves).
    ImportSigstoreRoot {
        /// The trusted root file (e.g. fetched through TUF on a connected machine) …
        #[arg(required_unless_present = "production", conflicts_with = "production")]
        file: Option<PathBuf>,
        /// … or Sigstore's production root as shipped with this build.
        #[arg(long)]
        production: bool,
        /// Why and from where (recorded with the import).
        #[arg(long)]
        note: String,
    },
    /// The Sigstore trusted roots imported, newest (in force) first.
    SigstoreRoots,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Local,
    Pkcs11,
    Vault,
}

#[derive(Debug, Args)]
pub struct KmsArgs {
    #[arg(long, value_enum)]
    backend: BackendArg,
    #[arg(long, default_value = "ecdsa-p256-sha256")]
    alg: String,
    /// local: the registry's data dir (the key file goes under <data-dir>/keys/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// pkcs11: module path, token label, a file holding the key-admin's PIN, and the new key's label.
    #[arg(long)]
    pkcs11_module: Option<PathBuf>,
    #[arg(long)]
    pkcs11_token_label: Option<String>,
    #[arg(long)]
    pkcs11_pin_file: Option<PathBuf>,
    #[arg(long)]
    label: Option<String>,
    /// vault: address, a file holding the key-admin's token, the transit mount, the key name.
    #[arg(long)]
    vault_addr: Option<String>,
    #[arg(long)]
    vault_token_file: Option<PathBuf>,
    #[arg(long, default_value = "transit")]
    vault_mount: String,
    #[arg(long)]
    vault_ca_file: Option<PathBuf>,
    #[arg(long)]
    name: Option<String>,
}

fn need<T: Clone>(v: &Option<T>, flag: &str) -> anyhow::Result<T> {
    v.clone().with_context(|| format!("{flag} is required for this backend"))
}

/// Create the key in its KMS; returns the registration body for `POST /v1/keys`.
fn create_key(a: &KmsArgs) -> anyhow::Result<serde_json::Value> {
    let alg: Alg = a
        .alg
        .parse()
        .map_err(|()| anyhow::anyhow!("--alg must be one of ed25519, ecdsa-p256-sha256, ecdsa-p384-sha384"))?;
    Ok(match a.backend {
        BackendArg::Local => {
            let dir = need(&a.data_dir, "--data-dir")?.join("keys");
            std::fs::create_dir_all(&dir)?;
            let tmp = dir.join(format!(".new-{}", std::process::id()));
            let key = LocalKey::generate(&tmp, alg)?;
            let name = format!("{}.pk8", &key.public_key().fingerprint()[..16]);
            std::fs::rename(&tmp, dir.join(&name))?;
            json!({"public_key": key.public_key().to_pem(), "backend": "local", "backend_ref": format!("keys/{name}")})
        }
        BackendArg::Pkcs11 => {
            let cfg = fulcrum_kms::pkcs11::Pkcs11Config::from_files(
                &need(&a.pkcs11_module, "--pkcs11-module")?,
                &need(&a.pkcs11_token_label, "--pkcs11-token-label")?,
                &need(&a.pkcs11_pin_file, "--pkcs11-pin-file")?,
            )?;
            let label = need(&a.label, "--label")?;
            let public = fulcrum_kms::pkcs11::admin::generate(&cfg, &label, alg)?;
            json!({"public_key": public.to_pem(), "backend": "pkcs11", "backend_ref": label})
        }
        BackendArg::Vault => {
            let cfg = fulcrum_kms::vault::VaultConfig::from_files(
                &need(&a.vault_addr, "--vault-addr")?,
                &need(&a.vault_token_file, "--vault-token-file")?,
                &a.vault_mount,
                a.vault_ca_file.as_deref(),
            )?;
            let name = need(&a.name, "--name")?;
            // Rotate an existing transit key (new version), or create it.
            let (version, public) = match fulcrum_kms::vault::admin::read(&cfg, &name) {
                Ok(_) => fulcrum_kms::vault::admin::rotate(&cfg, &name)?,
                Err(_) => fulcrum_kms::vault::admin::create(&cfg, &name, alg)?,
            };
            json!({"public_key": public.to_pem(), "backend": "vault", "backend_ref": format!("{name}:v{version}"),
                   "kid": fulcrum_kms::vault::kid(&a.vault_mount, &name, version)})
        }
    })
}

pub async fn keys(c: KeysCmd, ctx: &crate::commands::Ctx) -> anyhow::Result<()> {
    let output = ctx.output;
    match c {
        KeysCmd::Generate { alg, out } => {
            let alg: Alg = alg
                .parse()
                .map_err(|()| anyhow::anyhow!("--alg must be one of ed25519, ecdsa-p256-sha256, ecdsa-p384-sha384"))?;
            let key = LocalKey::generate(&out, alg)?;
            let pem = key.public_key().to_pem();
            match output {
                Output::Json => crate::outln!(
                    "{}",
                    json!({"private_key": out, "alg": alg, "public_key_pem": pem, "fingerprint": key.public_key().fingerprint()})
                ),
                Output::Text => crate::out!("{pem}"),
            }
        }
        KeysCmd::Create(a) => {
            let reg = tokio::task::spawn_blocking(move || create_key(&a)).await??;
            crate::outln!("{}", serde_json::to_string_pretty(&reg)?);
        }
        KeysCmd::Rotate(a) => {
            let client = ctx.client()?;
            let reg = tokio::task::spawn_blocking(move || create_key(&a)).await??;
            let ack = client.post("/v1/keys", &reg).await?;
            match output {
                Output::Json => crate::outln!("{ack}"),
                Output::Text => crate::outln!(
                    "rotated to {} (trust bundle v{})",
                    ack["kid"].as_str().unwrap_or("?"),
                    ack["trust_bundle_version"]
                ),
            }
        }
        KeysCmd::Retire { kid, reason, compromised } => {
            let client = ctx.client()?;
            let ack = client
                .post(&format!("/v1/keys/{kid}/retire"), &json!({"reason": reason, "compromised": compromised}))
                .await?;
            match output {
                Output::Json => crate::outln!("{ack}"),
                Output::Text => crate::outln!(
                    "{kid} {} (trust bundle v{})",
                    if compromised { "marked compromised" } else { "retired" },
                    ack["trust_bundle_version"]
                ),
            }
        }
        KeysCmd::List => {
            let client = ctx.client()?;
            let keys = client.get("/v1/keys").await?;
            match output {
                Output::Json => crate::outln!("{}", serde_json::to_string_pretty(&keys)?),
                Output::Text => {
                    for k in keys.as_array().into_iter().flatten() {
                        crate::outln!(
                            "{}  {}  {}  {} -> {}  {} {}",
                            k["kid"].as_str().unwrap_or(""),
                            k["alg"].as_str().unwrap_or(""),
                            k["status"].as_str().unwrap_or(""),
                            k["valid_from"].as_str().unwrap_or(""),
                            k["valid_until"].as_str().unwrap_or("open"),
                            k["backend"].as_str().unwrap_or(""),
                            k["backend_ref"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
        KeysCmd::ImportSigstoreRoot { file, production, note } => {
            let text = match (&file, production) {
                (Some(p), _) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                (None, _) => keyless::PRODUCTION_TRUSTED_ROOT.to_owned(),
            };
            // Checked here too, so a wrong file fails before anything is sent.
            let root = keyless::TrustedRoot::from_json(text.as_bytes())
                .map_err(|f| anyhow::anyhow!("not a usable trusted root: {f} ({})", f.code()))?;
            let ack =
                ctx.client()?.post("/v1/trust-roots/sigstore", &json!({"trusted_root": text, "note": note})).await?;
            match output {
                Output::Json => crate::outln!("{ack}"),
                Output::Text => crate::outln!(
                    "Sigstore trusted root v{} {} in force (trust bundle v{})",
                    ack["version"],
                    root.digest(),
                    ack["trust_bundle_version"]
                ),
            }
        }
        KeysCmd::SigstoreRoots => {
            let roots = ctx.client()?.get("/v1/trust-roots/sigstore").await?;
            match output {
                Output::Json => crate::outln!("{}", serde_json::to_string_pretty(&roots)?),
                Output::Text => {
                    for r in roots.as_array().into_iter().flatten() {
                        crate::outln!(
                            "v{}  {}  {}  {} by {}  {}",
                            r["version"],
                            r["digest"].as_str().unwrap_or(""),
                            if r["in_force"].as_bool() == Some(true) { "in force" } else { "superseded" },
                            r["imported_at"].as_str().unwrap_or(""),
                            r["imported_by"].as_str().unwrap_or(""),
                            r["note"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Which key signs, on any backend: a key file, a PKCS#11 token key, or a Vault Transit key.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// PKCS#8 private key file (PEM or DER).
    #[arg(long, required_unless_present_any = ["pkcs11_key_label", "vault_key"])]
    key: Option<PathBuf>,
    /// PKCS#11: the key's label on the token (with --pkcs11-module, --pkcs11-token-label, --pkcs11-pin-file).
    #[arg(long, requires_all = ["pkcs11_module", "pkcs11_token_label", "pkcs11_pin_file"])]
    pkcs11_key_label: Option<String>,
    #[arg(long)]
    pkcs11_module: Option<PathBuf>,
    #[arg(long)]
    pkcs11_token_label: Option<String>,
    #[arg(long)]
    pkcs11_pin_file: Option<PathBuf>,
    /// Vault Transit: `name` or `name:vN` (with --vault-addr and --vault-token-file; the token needs
    /// sign and read on the key).
    #[arg(long, requires_all = ["vault_addr", "vault_token_file"])]
    vault_key: Option<String>,
    #[arg(long)]
    vault_addr: Option<String>,
    #[arg(long)]
    vault_token_file: Option<PathBuf>,
    #[arg(long, default_value = "transit")]
    vault_mount: String,
    #[arg(long)]
    vault_ca_file: Option<PathBuf>,
}

impl SignerArgs {
    fn open(&self) -> anyhow::Result<Box<dyn Signer>> {
        if let Some(path) = &self.key {
            return Ok(Box::new(
                LocalKey::from_file(path).with_context(|| format!("loading signing key {}", path.display()))?,
            ));
        }
        if let Some(label) = &self.pkcs11_key_label {
            let cfg = fulcrum_kms::pkcs11::Pkcs11Config::from_files(
                &need(&self.pkcs11_module, "--pkcs11-module")?,
                &need(&self.pkcs11_token_label, "--pkcs11-token-label")?,
                &need(&self.pkcs11_pin_file, "--pkcs11-pin-file")?,
            )?;
            return Ok(Box::new(fulcrum_kms::pkcs11::Pkcs11Signer::open(&cfg, label)?));
        }
        let key = need(&self.vault_key, "--vault-key")?;
        let cfg = fulcrum_kms::vault::VaultConfig::from_files(
            &need(&self.vault_addr, "--vault-addr")?,
            &need(&self.vault_token_file, "--vault-token-file")?,
            &self.vault_mount,
            self.vault_ca_file.as_deref(),
        )?;
        let (name, version) = match fulcrum_kms::vault::parse_ref(&key) {
            Ok((n, v)) => (n, Some(v)),
            Err(_) => (key.clone(), None),
        };
        let (latest, public) = fulcrum_kms::vault::admin::read(&cfg, &name)?;
        let version = version.unwrap_or(latest);
        if version != latest {
            anyhow::bail!(
                "--vault-key {key}: only the latest version (v{latest}) can be read back to check the signature"
            );
        }
        Ok(Box::new(fulcrum_kms::vault::VaultSigner::new(cfg, &name, version, public)))
    }
}

pub fn sign(c: SignCmd, output: Output) -> anyhow::Result<()> {
    let SignCmd::Model { dir, signer, signature, method, shard_size, hash } = c;
    let signer = signer.open()?;
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
    let bundle =
        model_signing::sign(&dir, signer.as_ref(), &opts).map_err(|f| anyhow::anyhow!("{f} ({})", f.code()))?;
    std::fs::write(&signature, &bundle).with_context(|| format!("writing {}", signature.display()))?;
    match output {
        Output::Json => crate::outln!(
            "{}",
            json!({"signature": signature, "signer": signer.public_key().fingerprint(), "alg": signer.alg()})
        ),
        Output::Text => crate::outln!(
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
    let VerifyCmd::Model {
        dir,
        signature,
        public_key,
        certificate_chain,
        trust_bundle,
        keyless,
        allow_ignore,
        record,
        record_key,
    } = c;
    let bundle = std::fs::read(&signature).with_context(|| format!("reading {}", signature.display()))?;
    let opts = VerifyOptions { signature_path: Some(signature.clone()), allowed_ignores: allow_ignore };
    let mut from_record = false;
    let result = if let Some(p) = public_key {
        let key = PublicKey::from_pem(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        match &record {
            Some(r) => {
                let k = record_key.clone().unwrap_or_else(|| r.with_extension("key"));
                fulcrum_verify::cache::verify(&dir, &bundle, Trust::Key(&key), &opts, r, &k).map(|(v, o)| {
                    from_record = o == fulcrum_verify::cache::Outcome::Hit;
                    v
                })
            }
            None => model_signing::verify(&dir, &bundle, Trust::Key(&key), &opts),
        }
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
    } else if keyless.given() {
        let root = keyless.root()?;
        let signers = keyless.signers()?;
        model_signing::verify(&dir, &bundle, Trust::Sigstore { root: &root, signers: &signers }, &opts)
    } else {
        bail!("give --public-key, --trust-bundle, --certificate-chain or --certificate-oidc-issuer with an identity");
    };
    let v = result.map_err(|f| anyhow::anyhow!("verification failed: {f} ({})", f.code()))?;
    match output {
        Output::Json => crate::outln!(
            "{}",
            json!({"verified": true, "from_record": from_record, "resources": v.resources.len(), "method": v.method_name(), "hash": v.alg.name(), "signer": v.signer.fingerprint(), "keyless": v.keyless, "subject_sha256": hex::encode(v.subject_sha256)})
        ),
        Output::Text => crate::outln!(
            "verified: {} resources ({} / {}), signer {}",
            v.resources.len(),
            v.method_name(),
            v.alg.name(),
            match &v.keyless {
                Some(k) =>
                    format!("{} (issuer {})", k.identity.as_deref().unwrap_or("?"), k.issuer.as_deref().unwrap_or("?")),
                None => v.signer.fingerprint()[..16].to_owned(),
            }
        ),
    }
    Ok(())
}

pub fn attest(c: AttestCmd, output: Output) -> anyhow::Result<()> {
    let AttestCmd::Provenance(a) = c;
    let signer = a.signer.open()?;
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
        signer.as_ref(),
    )?;
    std::fs::write(&a.out, &env).with_context(|| format!("writing {}", a.out.display()))?;
    match output {
        Output::Json => crate::outln!("{}", json!({"provenance": a.out, "subject": digest.to_string()})),
        Output::Text => crate::outln!("provenance for {digest} -> {}", a.out.display()),
    }
    Ok(())
}
