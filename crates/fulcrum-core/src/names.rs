//! Validated names: models, version labels, aliases, and the free-text identifiers (tenant,
//! domain, change ids) that end up in events and logs.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("model name must match [a-z0-9][a-z0-9._-]{{0,127}}")]
    BadModelName,
    #[error("version label must match [A-Za-z0-9][A-Za-z0-9._+-]{{0,63}} and not be a mutable word like 'latest'")]
    BadVersion,
    #[error("alias must match [a-z0-9][a-z0-9_-]{{0,62}} and not be 'latest'")]
    BadAlias,
    #[error("{0} must be 1-128 characters of [A-Za-z0-9._:@/+-], start with a letter or digit, and hold no '..'")]
    BadIdentifier(&'static str),
    #[error("{0} must not contain control or bidirectional formatting characters")]
    BadText(&'static str),
}

/// Words that look like a pointer to "whatever is newest". They are never accepted as a version
/// label or an alias, so a reference can never silently float (seed §6: no `:latest`).
pub const MUTABLE_WORDS: &[&str] = &["latest", "head", "current", "newest", "stable"];

fn is_mutable_word(s: &str) -> bool {
    MUTABLE_WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

macro_rules! string_newtype {
    ($name:ident) => {
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
    };
}

string_newtype!(ModelName);
string_newtype!(VersionLabel);
string_newtype!(AliasName);

impl ModelName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
        if ok { Ok(Self(s.to_owned())) } else { Err(NameError::BadModelName) }
    }
}

impl VersionLabel {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 64
            && b[0].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-'))
            && !is_mutable_word(s)
            // `sha256` would make `name@sha256:…` ambiguous; a label never contains ':' anyway.
            && !s.starts_with("sha256");
        if ok { Ok(Self(s.to_owned())) } else { Err(NameError::BadVersion) }
    }
}

impl AliasName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_lowercase()
            && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
            && !is_mutable_word(s);
        if ok { Ok(Self(s.to_owned())) } else { Err(NameError::BadAlias) }
    }
}

/// Validate a free identifier (tenant, domain, change/incident id, subject, label). These reach
/// events, SIEMs, log lines and object keys (evidence is named after its change), so one rule
/// holds everywhere: a conservative printable set, starting with a letter or digit, and never a
/// parent step (`..`) — whatever one entry point accepts, every later one accepts too (object
/// keys are built from identifiers with [`key_safe`]).
pub fn check_identifier(what: &'static str, s: &str) -> Result<(), NameError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':' | b'@' | b'/' | b'+'))
        && !s.contains("..");
    if ok { Ok(()) } else { Err(NameError::BadIdentifier(what)) }
}

/// An identifier as one segment of an object key or file name: characters outside
/// `[A-Za-z0-9._-]` become `_` (an identifier starts with a letter or digit and holds no `..`,
/// so the result is never a path step).
pub fn key_safe(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

/// Validate free text (reasons, comments): no control characters (NUL, escapes, newlines are
/// allowed only as plain `\n`/`\t`) and no bidirectional formatting characters (U+202A–U+202E,
/// U+2066–U+2069, U+200E/U+200F, U+061C), which can make a log line or a UI read differently
/// from what is stored.
pub fn check_text(what: &'static str, s: &str) -> Result<(), NameError> {
    let ok = s.chars().all(|c| (!c.is_control() || c == '\n' || c == '\t') && !is_bidi_control(c));
    if ok { Ok(()) } else { Err(NameError::BadText(what)) }
}

/// Characters that reorder how text is displayed.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for good in ["a", "risk-default", "fraud.v2_x", "0abc"] {
            assert!(ModelName::parse(good).is_ok(), "{good}");
        }
        let long = "a".repeat(129);
        for bad in ["", "-a", "Risk", "a/b", "a b", "../x", long.as_str(), "a@b"] {
            assert!(ModelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_refuse_mutable_words() {
        assert!(VersionLabel::parse("v2.3.0").is_ok());
        assert!(VersionLabel::parse("1.0+build.7").is_ok());
        for bad in ["latest", "LATEST", "", "v1/2", "sha256abc", ":latest", "a b"] {
            assert!(VersionLabel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_one_rule() {
        for good in ["CHG-10234", "INC:7", "ci@bank", "spiffe://bank/ns/ci", "pii:restricted", "a.b_c+d"] {
            assert!(check_identifier("x", good).is_ok(), "{good}");
        }
        for bad in ["", "../../x", "a/../b", "/abs", ".hidden", "-x", "a b", "x\0y", "caf\u{e9}", &"a".repeat(129)] {
            assert!(check_identifier("x", bad).is_err(), "{bad:?}");
        }
        for id in ["CHG-1", "INC:7", "spiffe://bank/ns/ci", "a/b@c+d"] {
            let k = key_safe(id);
            assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')), "{k}");
            assert!(k.as_bytes()[0].is_ascii_alphanumeric());
        }
    }

    #[test]
    fn text_refuses_controls_and_bidi() {
        assert!(check_text("reason", "model drift\nsee INC-7").is_ok());
        for bad in ["a\0b", "\u{1b}[31mred", "invoice\u{202E}fdp.exe", "x\u{2066}y", "\u{200F}"] {
            assert!(check_text("reason", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn aliases() {
        assert!(AliasName::parse("production").is_ok());
        assert!(AliasName::parse("canary-eu").is_ok());
        for bad in ["latest", "Prod", "1prod", "", "a.b"] {
            assert!(AliasName::parse(bad).is_err(), "{bad}");
        }
    }
}
