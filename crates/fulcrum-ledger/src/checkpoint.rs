//! Signed tree heads as C2SP tlog checkpoints (signed notes):
//!
//! ```text
//! fulcrum/registry-audit
//! 20852163
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//!
//! — fulcrum/registry-audit Az3grlgt…=
//! ```
//!
//! The note text (origin, size, base64 root, each on its line) is what is signed. A signature
//! line is `— <key name> <base64(key id ‖ signature)>`; the key id is 4 bytes: for Ed25519
//! `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`, for ECDSA `SHA-256(DER SPKI)[:4]`.
//! Verifiers ignore signatures of keys they do not know, refuse the note if a known key's
//! signature fails, and require at least one known key to have signed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fulcrum_sign::{Alg, PublicKey, Signer};
use sha2::{Digest as _, Sha256};

use crate::Hash;
use crate::state::StateHead;

/// Largest note accepted.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted.
pub const MAX_SIGNATURES: usize = 16;

/// A tree head: the log's origin, its size and its root, and (Fulcrum's one extension line,
/// `fulcrum-state <count> <base64 root> <unix seconds>`) the state map the first `size` entries
/// imply and when it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub state: Option<StateHead>,
}

const STATE_LINE: &str = "fulcrum-state ";

/// A signature line: the key name and `key id ‖ signature`.
pub type NoteSignature = (String, Vec<u8>);

/// Why a note is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the note is not well-formed: {0}")]
    Malformed(&'static str),
    #[error("a signature by a known key does not verify")]
    BadSignature,
    #[error("no known key signed the note")]
    Unsigned,
    #[error("the signing backend failed: {0}")]
    Sign(String),
}

/// Why a checkpoint is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("the checkpoint is signed by {0}, a key the trust bundle does not hold")]
    UnknownKey(String),
    #[error("the checkpoint is signed by {0}, which is compromised")]
    Compromised(String),
    #[error("the trust bundle's key {0} is unusable")]
    BadKey(String),
    #[error("the checkpoint's signature does not verify: {0}")]
    Note(NoteError),
}

/// The 4-byte key id of `key` under `name`.
pub fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let digest: [u8; 32] = match key.alg() {
        Alg::Ed25519 => {
            let spki = key.spki_der();
            let mut h = Sha256::new();
            h.update(name.as_bytes());
            h.update([0x0a, 0x01]);
            h.update(&spki[spki.len() - 32..]);
            h.finalize().into()
        }
        _ => Sha256::digest(key.spki_der()).into(),
    };
    [digest[0], digest[1], digest[2], digest[3]]
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.contains([' ', '+', '\n']) && !s.chars().any(char::is_control)
}

impl Checkpoint {
    /// The signed text: origin, size and root, then the state line if any, each ending in a
    /// newline.
    pub fn text(&self) -> String {
        let mut t = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        if let Some(s) = &self.state {
            t.push_str(&format!("{STATE_LINE}{} {} {}\n", s.count, B64.encode(s.root), s.signed_at));
        }
        t
    }

    /// The note signed by `signer` under `name`.
    ///
    /// # Errors
    /// An origin or name that cannot be in a note, or the signer failing.
    pub fn sign(&self, name: &str, signer: &dyn Signer) -> Result<String, NoteError> {
        if !valid_name(&self.origin) || !valid_name(name) {
            return Err(NoteError::Malformed("origin and key name are non-empty, without spaces or '+'"));
        }
        let text = self.text();
        let sig = signer.sign(text.as_bytes()).map_err(|e| NoteError::Sign(e.to_string()))?;
        let mut blob = key_id(name, signer.public_key()).to_vec();
        blob.extend_from_slice(&sig);
        Ok(format!("{text}\n\u{2014} {name} {}\n", B64.encode(blob)))
    }

    /// Parse a note and verify it against `key` under `name`.
    ///
    /// # Errors
    /// A malformed note, a failing signature by `key`, or no signature by it.
    pub fn verify(note: &str, name: &str, key: &PublicKey) -> Result<Self, NoteError> {
        let (cp, sigs) = Self::parse(note)?;
        let id = key_id(name, key);
        let text = cp.text();
        let mut verified = false;
        for (n, blob) in sigs {
            if n != name || blob.len() < 4 || blob[..4] != id {
                continue;
            }
            key.verify(text.as_bytes(), &blob[4..]).map_err(|_| NoteError::BadSignature)?;
            verified = true;
        }
        if verified { Ok(cp) } else { Err(NoteError::Unsigned) }
    }

    /// Verify a note signed by the key `kid` of a trust bundle: the key must be in the bundle
    /// and not compromised, and its signature on the note must hold (origin = key name).
    ///
    /// # Errors
    /// Why the checkpoint is not trusted.
    pub fn verify_trusted(
        note: &str,
        origin: &str,
        kid: &str,
        bundle: &fulcrum_sign::TrustBundle,
    ) -> Result<Self, Untrusted> {
        let key = bundle.keys.iter().find(|k| k.kid == kid).ok_or_else(|| Untrusted::UnknownKey(kid.to_owned()))?;
        if key.status == fulcrum_sign::KeyStatus::Compromised {
            return Err(Untrusted::Compromised(kid.to_owned()));
        }
        let public = key.key().map_err(|_| Untrusted::BadKey(kid.to_owned()))?;
        Self::verify(note, origin, &public).map_err(Untrusted::Note)
    }

    /// Parse a note without verifying it: the checkpoint and its (key name, key id ‖ signature)
    /// lines.
    ///
    /// # Errors
    /// Anything that is not a well-formed checkpoint note.
    pub fn parse(note: &str) -> Result<(Self, Vec<NoteSignature>), NoteError> {
        use NoteError::Malformed as M;
        if note.len() > MAX_NOTE_BYTES {
            return Err(M("too long"));
        }
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(M("control characters"));
        }
        let (text, sigs) = note.split_once("\n\n").ok_or(M("no blank line before the signatures"))?;
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| valid_name(o)).ok_or(M("origin"))?;
        let size = lines.next().ok_or(M("size"))?;
        if size.is_empty() || (size.len() > 1 && size.starts_with('0')) || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(M("size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| M("size is out of range"))?;
        let root = B64.decode(lines.next().ok_or(M("root"))?).map_err(|_| M("root is not base64"))?;
        let root: Hash = root.try_into().map_err(|_| M("root is not 32 bytes"))?;
        // Extension lines may follow: Fulcrum's state line, at most once; anything else is
        // refused rather than half-understood.
        let state = match lines.next() {
            None => None,
            Some(line) => Some(parse_state(line)?),
        };
        if lines.next().is_some() {
            return Err(M("extension lines"));
        }
        let sigs = sigs.strip_suffix('\n').ok_or(M("the signatures do not end with a newline"))?;
        let mut out = Vec::new();
        for line in sigs.split('\n') {
            if out.len() == MAX_SIGNATURES {
                return Err(M("too many signatures"));
            }
            let rest = line.strip_prefix("\u{2014} ").ok_or(M("a signature line does not start with an em dash"))?;
            let (name, b64) = rest.split_once(' ').ok_or(M("a signature line has no signature"))?;
            if !valid_name(name) {
                return Err(M("a signature's key name"));
            }
            let blob = B64.decode(b64).map_err(|_| M("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(M("a signature is too short"));
            }
            out.push((name.to_owned(), blob));
        }
        Ok((Self { origin: origin.to_owned(), size, root, state }, out))
    }
}

fn decimal(s: &str) -> Result<u64, NoteError> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NoteError::Malformed("a state number is not decimal"));
    }
    s.parse().map_err(|_| NoteError::Malformed("a state number is out of range"))
}

fn parse_state(line: &str) -> Result<StateHead, NoteError> {
    use NoteError::Malformed as M;
    let rest = line.strip_prefix(STATE_LINE).ok_or(M("extension lines"))?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [count, root, at] = parts.as_slice() else { return Err(M("the state line has three fields")) };
    let root = B64.decode(root).map_err(|_| M("state root is not base64"))?;
    let root: Hash = root.try_into().map_err(|_| M("state root is not 32 bytes"))?;
    Ok(StateHead { count: decimal(count)?, root, signed_at: decimal(at)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_sign::local::LocalKey;

    fn cp() -> Checkpoint {
        Checkpoint { origin: "fulcrum/test".into(), size: 20_852_163, root: [7; 32], state: None }
    }

    #[test]
    fn signed_notes_verify_for_each_algorithm_and_nothing_else() {
        for alg in [Alg::Ed25519, Alg::EcdsaP256Sha256] {
            let key = LocalKey::ephemeral(alg).unwrap();
            let other = LocalKey::ephemeral(alg).unwrap();
            let note = cp().sign("fulcrum/test", &key).unwrap();
            assert!(note.starts_with(
                "fulcrum/test\n20852163\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} fulcrum/test "
            ));
            assert_eq!(Checkpoint::verify(&note, "fulcrum/test", key.public_key()).unwrap(), cp());
            // Another key's name/id is ignored: not signed by the key asked for.
            assert_eq!(Checkpoint::verify(&note, "fulcrum/test", other.public_key()), Err(NoteError::Unsigned));
            // The text changed after signing.
            let forged = note.replacen("20852163", "20852164", 1);
            assert_eq!(Checkpoint::verify(&forged, "fulcrum/test", key.public_key()), Err(NoteError::BadSignature));
            // Another log's signatures alongside are ignored; the known one still counts.
            let cosigned = format!("{note}\u{2014} witness.example AAAAAAAAAA==\n");
            assert!(Checkpoint::verify(&cosigned, "fulcrum/test", key.public_key()).is_ok());
        }
    }

    /// A checkpoint is trusted only when signed by a key of the bundle that is not compromised.
    #[test]
    fn trusted_checkpoints_need_a_sound_key_of_the_bundle() {
        use fulcrum_sign::{KeyStatus, PublishedKey, Signer as _, TrustBundle};
        let key = LocalKey::ephemeral(Alg::Ed25519).unwrap();
        let published = |status| PublishedKey {
            kid: key.kid().into(),
            alg: Alg::Ed25519,
            public_key: fulcrum_sign::b64(key.public_key().spki_der()),
            valid_from: "2026-01-01T00:00:00Z".into(),
            valid_until: None,
            status,
            development: false,
        };
        let bundle = |keys| TrustBundle {
            version: 1,
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
            keys,
            sigstore: None,
        };
        let note = cp().sign("fulcrum/test", &key).unwrap();
        let kid = key.kid();
        let sound = bundle(vec![published(KeyStatus::Active)]);
        assert_eq!(Checkpoint::verify_trusted(&note, "fulcrum/test", kid, &sound), Ok(cp()));
        let retired = bundle(vec![published(KeyStatus::Retired)]);
        assert_eq!(
            Checkpoint::verify_trusted(&note, "fulcrum/test", kid, &retired),
            Ok(cp()),
            "old checkpoints stay valid"
        );
        let rows: Vec<(&str, &str, &str, TrustBundle, Untrusted)> = vec![
            ("an empty bundle", &note, kid, bundle(vec![]), Untrusted::UnknownKey(kid.into())),
            ("another kid", &note, "k-other", sound.clone(), Untrusted::UnknownKey("k-other".into())),
            (
                "a compromised key",
                &note,
                kid,
                bundle(vec![published(KeyStatus::Compromised)]),
                Untrusted::Compromised(kid.into()),
            ),
        ];
        for (what, note, kid, b, want) in rows {
            assert_eq!(Checkpoint::verify_trusted(note, "fulcrum/test", kid, &b), Err(want), "{what}");
        }
        let forged = note.replacen("20852163", "20852164", 1);
        assert_eq!(
            Checkpoint::verify_trusted(&forged, "fulcrum/test", kid, &sound),
            Err(Untrusted::Note(NoteError::BadSignature))
        );
        assert_eq!(
            Checkpoint::verify_trusted(&note, "elsewhere/log", kid, &sound),
            Err(Untrusted::Note(NoteError::Unsigned))
        );
    }

    /// The state line is signed with the rest: it round-trips, and changing it breaks the note.
    #[test]
    fn the_state_line_is_signed_and_strict() {
        let key = LocalKey::ephemeral(Alg::Ed25519).unwrap();
        let with = Checkpoint { state: Some(StateHead { count: 3, root: [9; 32], signed_at: 1_790_000_000 }), ..cp() };
        let note = with.sign("fulcrum/test", &key).unwrap();
        assert!(note.contains("\nfulcrum-state 3 CQkJ"), "{note}");
        assert_eq!(Checkpoint::verify(&note, "fulcrum/test", key.public_key()).unwrap(), with);
        let forged = note.replacen("fulcrum-state 3 ", "fulcrum-state 4 ", 1);
        assert_eq!(Checkpoint::verify(&forged, "fulcrum/test", key.public_key()), Err(NoteError::BadSignature));
        for (what, bad) in [
            ("two fields", note.replacen(" 1790000000\n", "\n", 1)),
            ("leading zero", note.replacen("fulcrum-state 3 ", "fulcrum-state 03 ", 1)),
            ("second extension", note.replacen("1790000000\n", "1790000000\nmore\n", 1)),
            ("unknown extension", note.replacen("fulcrum-state ", "other-state ", 1)),
        ] {
            assert!(matches!(Checkpoint::parse(&bad), Err(NoteError::Malformed(_))), "{what}");
        }
    }

    #[test]
    fn malformed_notes_are_refused_as_data() {
        let key = LocalKey::ephemeral(Alg::Ed25519).unwrap();
        let good = cp().sign("fulcrum/test", &key).unwrap();
        let cases: Vec<(&str, String)> = vec![
            ("no blank line", good.replacen("\n\n", "\n", 1)),
            ("leading zero", good.replacen("20852163", "020852163", 1)),
            ("negative size", good.replacen("20852163", "-1", 1)),
            ("short root", good.replacen("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=", "Bwc=", 1)),
            ("extension line", good.replacen("=\n\n", "=\next\n\n", 1)),
            ("no em dash", good.replacen('\u{2014}', "-", 1)),
            ("control character", good.replacen("fulcrum/test\n", "fulcrum/te\rst\n", 1)),
            ("space in origin", good.replacen("fulcrum/test\n", "fulcrum test\n", 1)),
            ("no final newline", good.trim_end().to_owned()),
            ("too many signatures", format!("{good}{}", "\u{2014} w AAAAAAAAAA==\n".repeat(16))),
        ];
        for (what, note) in cases {
            assert!(matches!(Checkpoint::parse(&note), Err(NoteError::Malformed(_))), "{what}: {note:?}");
        }
    }

    proptest::proptest! {
        /// Any bytes: parsing never panics, and whatever parses re-encodes to the same text.
        #[test]
        fn parsing_is_total_and_faithful(s in "\\PC{0,200}", size in proptest::num::u64::ANY) {
            if let Ok((c, _)) = Checkpoint::parse(&s) {
                proptest::prop_assert!(s.starts_with(&c.text()));
            }
            let c = Checkpoint { origin: "o".into(), size, root: [1; 32], state: None };
            let (back, sigs) = Checkpoint::parse(&format!("{}\n\u{2014} o AAAAAAAA\n", c.text())).unwrap();
            proptest::prop_assert_eq!(back, c);
            proptest::prop_assert_eq!(sigs.len(), 1);
        }
    }
}
