//! The startup check (SPEC §4), pure: given the pinned trust bundle, the agent's persisted
//! high-water marks, a signed resolve answer and the time, decide *permit* or *deny* with a
//! machine-readable reason. No I/O: every attack in the agent's suite is a row of data here.
//!
//! Order matters and is fixed: the signature over the exact bytes first (nothing unverified is
//! parsed for meaning), then what the document says about itself (the reference and environment
//! asked for), then freshness (expiry, clock skew against the signed time) and replay (a document
//! older than one already seen, permit or deny, is refused), then the registry's own verdict, and
//! finally anti-downgrade (a lower version for an alias without the signed change that moved it
//! is refused). The high-water marks move on every authentic, current answer, a deny included.

use std::collections::BTreeMap;

use fulcrum_core::resolve::{Decision, ResolveDocument};
use fulcrum_sign::{TrustBundle, VerifyError};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Why the agent refuses to start (or keeps serving what it has).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deny {
    #[error("the pinned trust bundle expired at {0}")]
    BundleExpired(String),
    #[error("the resolve answer is signed by key {0}, which the pinned bundle does not trust")]
    UnknownKey(String),
    #[error("the resolve answer is signed by key {0}, which was retired or not yet valid then")]
    KeyNotValid(String),
    #[error("the resolve answer is signed by key {0}, which is compromised")]
    KeyCompromised(String),
    #[error("the resolve answer's signature does not verify")]
    BadSignature,
    #[error("the signed body is not a resolve document: {0}")]
    Malformed(String),
    #[error("the answer is for {got}, not {asked}")]
    WrongDocument { asked: String, got: String },
    #[error("the registry denies it: {0}")]
    Registry(String),
    #[error("the resolve answer expired at {0}")]
    Expired(String),
    #[error("the local clock is {0} s off the registry's signed time")]
    ClockSkew(i64),
    #[error("the resolve answer (issued {got}) is older than one already seen (issued {seen})")]
    Replayed { seen: String, got: String },
    #[error("{alias} went from seq {seen} to {got} without a newer signed alias change naming its change or incident")]
    Downgrade { alias: String, seen: u64, got: u64 },
    #[error("the policy snapshot {0}")]
    PolicyUnverified(String),
    #[error("the release record {0}")]
    ReleaseUnverified(String),
    #[error("the trust-bundle chain is broken: {0}")]
    BundleChain(String),
    #[error("the policy in force does not allow it here: {0}")]
    PolicyDenies(String),
    #[error("the audit ledger does not prove it: {0}")]
    LedgerUnproven(String),
    #[error("the permit is no longer current: {0}")]
    NotCurrent(String),
    #[error("the artifact signature does not verify here: {0}")]
    SignatureUnverified(String),
}

impl Deny {
    /// The machine-readable reason reported in `startup_deny`.
    pub fn code(&self) -> &'static str {
        match self {
            Deny::BundleExpired(_) => "bundle_expired",
            Deny::UnknownKey(_) => "unknown_kid",
            Deny::KeyNotValid(_) => "key_not_valid",
            Deny::KeyCompromised(_) => "key_compromised",
            Deny::BadSignature => "bad_signature",
            Deny::Malformed(_) => "malformed_document",
            Deny::WrongDocument { .. } => "mixed_metadata",
            Deny::Registry(_) => "registry_deny",
            Deny::Expired(_) => "resolve_expired",
            Deny::ClockSkew(_) => "clock_skew",
            Deny::Replayed { .. } => "rollback_replay",
            Deny::Downgrade { .. } => "downgrade_without_change",
            Deny::PolicyUnverified(_) => "policy_unverified",
            Deny::ReleaseUnverified(_) => "release_unverified",
            Deny::BundleChain(_) => "bundle_chain_broken",
            Deny::PolicyDenies(_) => "policy_deny",
            Deny::LedgerUnproven(_) => "ledger_unproven",
            Deny::NotCurrent(_) => "permit_not_current",
            Deny::SignatureUnverified(_) => "signature_unverified",
        }
    }
}

/// What the agent remembers between runs, per reference and environment (persisted by
/// [`crate::state`]): the newest document seen and where its alias stood.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// Highest trust-bundle version seen.
    pub bundle_version: u64,
    /// `reference|env` → mark.
    pub refs: BTreeMap<String, RefMark>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefMark {
    pub issued_at: String,
    pub seq: u64,
    pub alias_position: Option<u64>,
    pub artifact_digest: String,
}

/// One signed resolve answer as received.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub body: &'a [u8],
    pub kid: &'a str,
    pub signature: &'a str,
}

/// What was asked, and the agent's tolerances.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub reference: &'a str,
    pub env: &'a str,
    pub now: OffsetDateTime,
    /// Largest accepted distance between the local clock and the document's signed time.
    pub max_skew: Duration,
}

fn key(reference: &str, env: &str) -> String {
    format!("{reference}|{env}")
}

fn parse_time(s: &str) -> Result<OffsetDateTime, Deny> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| Deny::Malformed(format!("bad time {s:?}")))
}

/// The outcome of checking one answer: the verdict, and the marks to persist.
///
/// The marks move on every answer that verifies (signature, document, freshness) and is not
/// older than one already seen — a signed *deny* included: once the agent has seen the registry
/// refuse a version, a permit issued before that refusal is a replay (SPEC §4: never accept an
/// answer older than one already seen). A deny raises only the time mark; what was last
/// *loaded* (seq, alias position, digest), which anti-downgrade compares against, stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub verdict: Result<ResolveDocument, Deny>,
    /// `Some` when the answer verified and is the newest seen; `None` when nothing may move.
    pub marks: Option<Marks>,
}

impl Checked {
    fn refused(deny: Deny) -> Self {
        Self { verdict: Err(deny), marks: None }
    }

    /// The verdict with the marks of a permit (for callers that keep nothing on a deny).
    ///
    /// # Errors
    /// The deny.
    pub fn permit(self) -> Result<(ResolveDocument, Marks), Deny> {
        let doc = self.verdict?;
        Ok((doc, self.marks.expect("a permit always carries its marks")))
    }
}

/// Check a resolve answer: the verdict and the marks to persist (see [`Checked`]).
pub fn check(bundle: &TrustBundle, marks: &Marks, signed: Signed<'_>, ask: &Ask<'_>) -> Checked {
    let doc = match verify(bundle, marks, signed, ask) {
        Ok(v) => v,
        Err(deny) => return Checked::refused(deny),
    };
    let k = key(ask.reference, ask.env);
    let mut next = marks.clone();
    next.bundle_version = next.bundle_version.max(bundle.version);
    // The registry's own verdict (revoked, quarantined, stage not allowed in this env). A
    // signed deny still raises the time mark.
    if doc.decision != Decision::Permit || doc.revoked || doc.quarantined {
        let reason = doc.deny_reason.clone().unwrap_or_else(|| {
            if doc.revoked {
                "revoked".into()
            } else if doc.quarantined {
                "quarantined".into()
            } else {
                "denied".into()
            }
        });
        let mark = next.refs.entry(k).or_insert_with(|| RefMark {
            issued_at: doc.issued_at.clone(),
            seq: 0,
            alias_position: None,
            artifact_digest: String::new(),
        });
        mark.issued_at = doc.issued_at.clone();
        return Checked { verdict: Err(Deny::Registry(reason)), marks: Some(next) };
    }
    // Anti-downgrade: a lower version for an alias is fine only when the alias itself moved (a
    // newer signed position) and the signed answer names the record that authorised the move:
    // the change id of an operator's downgrade, or the incident of an automatic rollback.
    if let Some(seen) = marks.refs.get(&k)
        && doc.seq < seen.seq
    {
        let moved = matches!((doc.alias_position, seen.alias_position), (Some(now), Some(then)) if now > then);
        let authorised = doc.alias_chg_id.as_deref().is_some_and(|c| !c.is_empty())
            || doc.alias_inc_id.as_deref().is_some_and(|i| !i.is_empty());
        if !(moved && authorised) {
            return Checked::refused(Deny::Downgrade { alias: ask.reference.to_owned(), seen: seen.seq, got: doc.seq });
        }
    }
    next.refs.insert(
        k,
        RefMark {
            issued_at: doc.issued_at.clone(),
            seq: doc.seq,
            alias_position: doc.alias_position,
            artifact_digest: doc.artifact_digest.clone(),
        },
    );
    Checked { verdict: Ok(doc), marks: Some(next) }
}

/// Everything that makes an answer *authentic and current*, whatever it says: the bundle is
/// unexpired, the signature verifies over the exact bytes with a key valid at the signed time,
/// the document is the one asked for, it is fresh, and it is not older than one already seen.
fn verify(bundle: &TrustBundle, marks: &Marks, signed: Signed<'_>, ask: &Ask<'_>) -> Result<ResolveDocument, Deny> {
    if let Some(exp) = &bundle.expires_at
        && parse_time(exp)? <= ask.now
    {
        return Err(Deny::BundleExpired(exp.clone()));
    }
    // The signature, over the exact bytes, first. The signing time that matters for the key's
    // window is the document's own (signed) issue time, read only after the bytes verify.
    bundle.verify(signed.kid, signed.body, signed.signature).map_err(|e| match e {
        VerifyError::UnknownKid(k) => Deny::UnknownKey(k),
        _ => Deny::BadSignature,
    })?;
    let doc: ResolveDocument = serde_json::from_slice(signed.body).map_err(|e| Deny::Malformed(e.to_string()))?;
    if doc.kid != signed.kid {
        return Err(Deny::Malformed("the document names another key than the one that signed it".into()));
    }
    let issued = parse_time(&doc.issued_at)?;
    bundle.verify_at(signed.kid, signed.body, signed.signature, issued).map_err(|e| match e {
        VerifyError::KeyCompromised(k) => Deny::KeyCompromised(k),
        VerifyError::KeyNotValidAt(k) => Deny::KeyNotValid(k),
        VerifyError::UnknownKid(k) => Deny::UnknownKey(k),
        _ => Deny::BadSignature,
    })?;
    if doc.reference != ask.reference || doc.env != ask.env {
        return Err(Deny::WrongDocument {
            asked: format!("{} in {}", ask.reference, ask.env),
            got: format!("{} in {}", doc.reference, doc.env),
        });
    }
    // Freshness against the signed time. A document signed "in the future" means the local
    // clock is behind the registry's; a clock ahead of it shows as expiry (documents may be
    // served from the registry's cache, so their age alone says nothing about skew).
    let ahead = (issued - ask.now).whole_seconds();
    if ahead > ask.max_skew.whole_seconds() {
        return Err(Deny::ClockSkew(-ahead));
    }
    let expires = parse_time(&doc.expires_at)?;
    if expires <= ask.now {
        return Err(Deny::Expired(doc.expires_at.clone()));
    }
    // Anti-replay: never an answer older than one already seen for this reference and env,
    // permit or deny.
    if let Some(seen) = marks.refs.get(&key(ask.reference, ask.env))
        && parse_time(&seen.issued_at)? > issued
    {
        return Err(Deny::Replayed { seen: seen.issued_at.clone(), got: doc.issued_at.clone() });
    }
    Ok(doc)
}

/// Accept a newer trust bundle only: a lower version than one already pinned is a rollback.
///
/// # Errors
/// `Deny::Replayed` for an older bundle, `Deny::BundleExpired` for an expired one.
pub fn accept_bundle(marks: &Marks, bundle: &TrustBundle, now: OffsetDateTime) -> Result<(), Deny> {
    if bundle.version < marks.bundle_version {
        return Err(Deny::Replayed {
            seen: format!("bundle v{}", marks.bundle_version),
            got: format!("bundle v{}", bundle.version),
        });
    }
    if let Some(exp) = &bundle.expires_at
        && parse_time(exp)? <= now
    {
        return Err(Deny::BundleExpired(exp.clone()));
    }
    Ok(())
}
