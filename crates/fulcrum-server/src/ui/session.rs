//! Console sessions: the pasted token sealed with its expiry into the cookie (AES-256-GCM), and
//! the CSRF token each form carries (HMAC-SHA256 of the cookie). Both keys come from one 32-byte
//! secret, so replicas sharing `--ui-session-key-file` accept each other's sessions.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// How long a console session lasts.
pub const SESSION: time::Duration = time::Duration::minutes(15);

/// The cookie's name.
pub const COOKIE: &str = "fulcrum_ui";

pub struct SessionKey {
    seal: LessSafeKey,
    csrf: hmac::Key,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(…)")
    }
}

impl SessionKey {
    fn from_secret(secret: &[u8]) -> Self {
        // Two keys from one secret, by domain-separated hashing.
        let derive = |label: &[u8]| {
            let mut c = digest::Context::new(&digest::SHA256);
            c.update(label);
            c.update(secret);
            c.finish()
        };
        let seal = derive(b"fulcrum-ui-seal\0");
        let csrf = derive(b"fulcrum-ui-csrf\0");
        Self {
            seal: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, seal.as_ref()).expect("32-byte key")),
            csrf: hmac::Key::new(hmac::HMAC_SHA256, csrf.as_ref()),
        }
    }

    /// A key for this process only.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).expect("the system's randomness");
        Self::from_secret(&secret)
    }

    /// The shared key from a file holding at least 32 bytes (raw, or hex/base64 text).
    ///
    /// # Errors
    /// Unreadable or too short.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes.len() < 32 {
            return Err(format!("{}: at least 32 bytes of secret are needed", path.display()));
        }
        Ok(Self::from_secret(&bytes))
    }

    /// Seal `token` to expire at `until` (unix seconds): the cookie's value.
    pub fn seal(&self, token: &str, until: i64) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system's randomness");
        let mut data = format!("{until}\n{token}").into_bytes();
        self.seal
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(COOKIE.as_bytes()), &mut data)
            .expect("sealing in memory");
        let mut out = nonce.to_vec();
        out.extend(data);
        B64.encode(out)
    }

    /// The token inside a cookie value, if it opens and has not expired at `now` (unix seconds).
    pub fn open(&self, cookie: &str, now: i64) -> Option<String> {
        let raw = B64.decode(cookie).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let mut sealed = sealed.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.seal.open_in_place(nonce, Aad::from(COOKIE.as_bytes()), &mut sealed).ok()?;
        let text = std::str::from_utf8(plain).ok()?;
        let (until, token) = text.split_once('\n')?;
        (until.parse::<i64>().ok()? > now).then(|| token.to_owned())
    }

    /// The CSRF token of a session (its forms carry it; a POST without it is refused).
    pub fn csrf(&self, cookie: &str) -> String {
        hex::encode(&hmac::sign(&self.csrf, cookie.as_bytes()).as_ref()[..16])
    }

    /// Whether `given` is the session's CSRF token (constant time).
    pub fn csrf_ok(&self, cookie: &str, given: &str) -> bool {
        let Ok(given) = hex::decode(given) else { return false };
        let want = hmac::sign(&self.csrf, cookie.as_bytes());
        given.len() == 16 && aws_lc_rs::constant_time::verify_slices_are_equal(&want.as_ref()[..16], &given).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_until_it_expires_and_not_under_another_key_or_edited() {
        let k = SessionKey::random();
        let c = k.seal("tok-ana", 1_000);
        assert_eq!(k.open(&c, 999).as_deref(), Some("tok-ana"));
        assert_eq!(k.open(&c, 1_000), None, "expired");
        assert_eq!(SessionKey::random().open(&c, 0), None, "another key");
        let mut raw = B64.decode(&c).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(k.open(&B64.encode(raw), 0), None, "edited");
        assert_eq!(k.open("garbage", 0), None);
        assert!(!c.contains("tok-ana"), "the token is not readable in the cookie");
    }

    #[test]
    fn csrf_tokens_are_per_session() {
        let k = SessionKey::random();
        let (a, b) = (k.seal("t", 10), k.seal("t", 10));
        assert!(k.csrf_ok(&a, &k.csrf(&a)));
        assert!(!k.csrf_ok(&b, &k.csrf(&a)), "another session's token");
        assert!(!k.csrf_ok(&a, ""));
        assert!(!k.csrf_ok(&a, "zz"));
    }
}
