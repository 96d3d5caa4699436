//! The serving agent (SPEC §4, §5): what every model server, batch job and gateway runs so that
//! only an approved, signed, unchanged and unrevoked model is served.
//!
//! - [`guard`]: the runtime guard — event stream (push) with polling fallback; quiesce, purge
//!   and roll back on a revocation of the served version.
//! - [`check`]: the startup check, pure — signature, reference, freshness, the registry's
//!   verdict, anti-rollback marks. Every attack in the agent's suite is a row of data against it.
//! - [`signature`]: a keyless (Sigstore) artifact signature the release record names, verified
//!   again offline against the Sigstore root the pinned trust bundle carries.
//! - [`ledger`]: optional proof that the answer's event and the release gate's decision are in
//!   the registry's signed audit ledger, pure.
//!
//! # Invariants
//! - Nothing from a resolve answer is used before its signature over the exact bytes verifies
//!   against the *pinned* bundle (never one fetched alongside it).
//! - Deny on doubt, always with a machine-readable reason ([`check::Deny::code`]).
//! - The agent never links the registry's storage, SQL or policy authoring.

pub mod caller;
pub mod chain;
pub mod check;
pub mod fetch;
pub mod gateway;
pub mod guard;
pub mod ledger;
pub mod oip;
pub mod policy;
pub mod release;
pub mod report;
pub mod signature;
pub mod state;
