//! Trust-bundle chaining (TUF root rotation, applied to the registry's signing keys): an agent
//! pinned to bundle vK adopts a later bundle only through an unbroken chain of links, each
//! vouched for by a key the agent already trusts. Pure: no I/O.
//!
//! A link vN+1 is accepted from vN when
//! - its version is exactly N+1 and its signed body says so, issued no earlier than vN;
//! - its own signature verifies with the key it names, **in the new bundle** (it is well formed);
//! - its own signature or one of its endorsements verifies with a key of vN that is not
//!   compromised (in vN or in vN+1) and was valid at vN+1's signed issue time.
//!
//! At the end the newest bundle must be unexpired, and no key that vouched along the way may be
//! marked compromised by it (a key later found compromised cannot have carried the chain).

use fulcrum_sign::{KeyStatus, TrustBundle};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::check::Deny;

/// One bundle of the chain as the registry serves it (`/v1/trust-bundle/chain`).
#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub version: u64,
    /// The exact signed bytes.
    pub body: String,
    pub kid: String,
    pub signature: String,
    #[serde(default)]
    pub endorsements: Vec<Endorsement>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Endorsement {
    pub kid: String,
    pub sig: String,
}

fn broken(why: String) -> Deny {
    Deny::BundleChain(why)
}

fn compromised(b: &TrustBundle, kid: &str) -> bool {
    b.keys.iter().any(|k| k.kid == kid && k.status == KeyStatus::Compromised)
}

/// Follow `links` from `trusted`; the newest bundle reached, or `None` for no links.
///
/// # Errors
/// `Deny::BundleChain` naming the link that does not hold; `Deny::BundleExpired` for a newest
/// bundle already expired.
pub fn follow(trusted: &TrustBundle, links: &[Link], now: OffsetDateTime) -> Result<Option<TrustBundle>, Deny> {
    let mut current = trusted.clone();
    let mut vouchers: Vec<String> = vec![];
    for link in links {
        let v = link.version;
        if v != current.version + 1 {
            return Err(broken(format!("bundle v{v} does not follow v{}", current.version)));
        }
        let next: TrustBundle =
            serde_json::from_str(&link.body).map_err(|e| broken(format!("bundle v{v} does not parse: {e}")))?;
        if next.version != v {
            return Err(broken(format!("bundle v{v} says it is v{}", next.version)));
        }
        let issued = OffsetDateTime::parse(&next.issued_at, &Rfc3339)
            .map_err(|_| broken(format!("bundle v{v}: issued_at is not a date-time")))?;
        let before = OffsetDateTime::parse(&current.issued_at, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        if issued < before {
            return Err(broken(format!("bundle v{v} is issued before v{}", current.version)));
        }
        next.verify(&link.kid, link.body.as_bytes(), &link.signature)
            .map_err(|e| broken(format!("bundle v{v}: its own signature: {e}")))?;
        let candidates = std::iter::once((link.kid.as_str(), link.signature.as_str()))
            .chain(link.endorsements.iter().map(|e| (e.kid.as_str(), e.sig.as_str())));
        let voucher = candidates
            .filter(|(kid, _)| !compromised(&current, kid) && !compromised(&next, kid))
            .find(|(kid, sig)| current.verify_at(kid, link.body.as_bytes(), sig, issued).is_ok())
            .map(|(kid, _)| kid.to_owned())
            .ok_or_else(|| broken(format!("bundle v{v} is not signed by a key of v{}", current.version)))?;
        vouchers.push(voucher);
        current = next;
    }
    if links.is_empty() {
        return Ok(None);
    }
    if let Some(exp) = &current.expires_at
        && OffsetDateTime::parse(exp, &Rfc3339).map_or(true, |e| e <= now)
    {
        return Err(Deny::BundleExpired(exp.clone()));
    }
    if let Some(k) = vouchers.iter().find(|k| compromised(&current, k)) {
        return Err(broken(format!("key {k} vouched for a link but is now marked compromised")));
    }
    Ok(Some(current))
}
