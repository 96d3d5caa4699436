//! Bearer JWTs from OIDC issuers, for the registry and the serving agent's gateway.
//!
//! - [`verify`]: the pure check of one token against a key set and an issuer's rules at a given
//!   time (signature with the key's own algorithm from an asymmetric allow-list, `iss`, `aud`,
//!   `exp`, `nbf`, `iat`, maximum lifetime, bounded leeway, `typ`).
//! - [`issuers`]: trusted issuers — discovery, a JWKS cache per issuer refreshed on an unknown
//!   `kid` (single-flight, rate-limited), and the mapping of claims to a [`Principal`].
//! - [`login`]: the console's sign-in, authorization code with PKCE at one trusted issuer.
//!
//! # Invariants
//! - Nothing in a token is trusted before its signature verifies, except `iss` and `kid`, which
//!   only pick the issuer and key to verify with.
//! - Symmetric algorithms and `none` are never accepted, whatever a token or a JWKS says.
//! - No token is logged.
//!
//! [`Principal`]: fulcrum_core::identity::Principal

pub mod issuers;
pub mod login;
#[cfg(feature = "test-idp")]
pub mod test_idp;
pub mod verify;

pub use issuers::{ClaimNames, IssuerConfig, Issuers, OidcFile};
pub use login::{ConsoleLogin, LoginClient, LoginError};
pub use verify::{KeySet, Rules, TokenError, Verified};
