//! SLSA Provenance v1 in a DSSE envelope, checked as the SLSA verification steps say: the
//! envelope is signed by a key trusted *for that builder*, the statement and predicate types are
//! exact, the artifact's digest is a subject, the builder is in the trusted map, and the build
//! type is the expected one.

use fulcrum_sign::{PublicKey, Signer};
use serde::Deserialize;
use serde_json::json;

use crate::Failure;
use crate::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::intoto::{ResourceDescriptor, STATEMENT_V1, Statement};

pub const PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// One trusted builder: its id, the build types it may claim, and the keys that sign for it.
#[derive(Debug, Clone)]
pub struct TrustedBuilder {
    pub id: String,
    pub build_types: Vec<String>,
    pub signers: Vec<PublicKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub builder_id: String,
    pub build_type: String,
    pub signer_fingerprint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Predicate {
    build_definition: BuildDefinition,
    run_details: RunDetails,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuildDefinition {
    build_type: String,
    #[allow(dead_code)]
    external_parameters: serde_json::Value,
}

#[derive(Deserialize)]
struct RunDetails {
    builder: Builder,
}

#[derive(Deserialize)]
struct Builder {
    id: String,
}

/// Verify a provenance envelope for the artifact whose SHA-256 is `artifact_sha256` (hex).
///
/// # Errors
/// `BadSignature` (no trusted builder key signed it), `StatementType`, `PredicateType`,
/// `Malformed`, `SubjectMismatch`, `UntrustedBuilder`, `BuildType`.
pub fn verify(
    envelope_bytes: &[u8],
    artifact_sha256: &str,
    builders: &[TrustedBuilder],
) -> Result<Provenance, Failure> {
    let env: Envelope =
        serde_json::from_slice(envelope_bytes).map_err(|e| Failure::Malformed(format!("provenance envelope: {e}")))?;
    let mut verified = None;
    'outer: for b in builders {
        for key in &b.signers {
            match env.verify(key, INTOTO_PAYLOAD_TYPE) {
                Ok(payload) => {
                    verified = Some((payload, key.clone()));
                    break 'outer;
                }
                Err(crate::dsse::DsseError::PayloadType(t)) => return Err(Failure::PayloadType(t)),
                Err(_) => {}
            }
        }
    }
    let (payload, key) = verified.ok_or(Failure::BadSignature)?;
    let st = Statement::parse(&payload, PROVENANCE_V1)?;
    if !st.has_sha256_subject(artifact_sha256) {
        return Err(Failure::SubjectMismatch);
    }
    let p: Predicate =
        serde_json::from_value(st.predicate).map_err(|e| Failure::Malformed(format!("provenance predicate: {e}")))?;
    let builder = builders
        .iter()
        .find(|b| b.id == p.run_details.builder.id && b.signers.contains(&key))
        .ok_or_else(|| Failure::UntrustedBuilder(p.run_details.builder.id.clone()))?;
    if !builder.build_types.contains(&p.build_definition.build_type) {
        return Err(Failure::BuildType(p.build_definition.build_type));
    }
    Ok(Provenance {
        builder_id: builder.id.clone(),
        build_type: p.build_definition.build_type,
        signer_fingerprint: key.fingerprint(),
    })
}

/// Build and sign a provenance envelope (what `fulcrum attest` emits for a pipeline).
///
/// # Errors
/// The signer failing.
pub fn attest(
    artifact_name: &str,
    artifact_sha256: &str,
    builder_id: &str,
    build_type: &str,
    external_parameters: serde_json::Value,
    invocation_id: Option<&str>,
    signer: &dyn Signer,
) -> Result<Vec<u8>, fulcrum_sign::SignError> {
    let mut run_details = json!({"builder": {"id": builder_id}});
    if let Some(id) = invocation_id {
        run_details["metadata"] = json!({"invocationId": id});
    }
    let st = Statement {
        ty: STATEMENT_V1.into(),
        subject: vec![ResourceDescriptor {
            name: Some(artifact_name.to_owned()),
            uri: None,
            digest: [("sha256".to_owned(), artifact_sha256.to_owned())].into(),
        }],
        predicate_type: PROVENANCE_V1.into(),
        predicate: json!({
            "buildDefinition": {"buildType": build_type, "externalParameters": external_parameters},
            "runDetails": run_details,
        }),
    };
    let payload = serde_json::to_vec(&st).expect("statements serialise");
    let env = Envelope::sign(INTOTO_PAYLOAD_TYPE, &payload, signer, signer.kid())?;
    Ok(serde_json::to_vec(&env).expect("envelopes serialise"))
}

/// What kind of SBOM a document is: CycloneDX or SPDX JSON.
///
/// # Errors
/// `SbomInvalid` for anything else.
pub fn sbom_format(bytes: &[u8]) -> Result<&'static str, Failure> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| Failure::SbomInvalid("not JSON".into()))?;
    if v["bomFormat"] == "CycloneDX" && v["specVersion"].is_string() {
        return Ok("cyclonedx");
    }
    if v["spdxVersion"].as_str().is_some_and(|s| s.starts_with("SPDX-")) && v["SPDXID"].is_string() {
        return Ok("spdx");
    }
    Err(Failure::SbomInvalid("neither CycloneDX (bomFormat, specVersion) nor SPDX (spdxVersion, SPDXID) JSON".into()))
}
