//! Fulcrum's pure domain.
//!
//! Everything here is a plain function over values: names and references, digests and manifests,
//! the lifecycle state machine (stages, holds, approvals, aliases), the environment rule, the
//! signed resolve document and the event schema.
//!
//! # Invariants
//! - No I/O, no sockets, no SQL, no clocks: time is always an argument.
//! - Every refusal is a typed, named reason (`Refusal`), never a string.

pub mod dashboard;
pub mod digest;
pub mod dlp;
pub mod drift;
pub mod event;
pub mod explain;
pub mod findings;
pub mod identity;
pub mod incident;
pub mod lifecycle;
pub mod manifest;
pub mod mlflow_search;
pub mod names;
pub mod projection;
pub mod reference;
pub mod resolve;

pub use digest::{Digest, DigestError};
pub use event::{EventKind, EventPayload};
pub use identity::{Action, Principal, Role};
pub use lifecycle::{Env, Hold, Refusal, Stage};
pub use manifest::{FileEntry, Manifest, ManifestError};
pub use names::{AliasName, ModelName, NameError, VersionLabel};
pub use reference::{Reference, ReferenceError, Selector};
