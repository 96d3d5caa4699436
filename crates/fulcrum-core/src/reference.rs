//! Model references: `name@alias`, `name@version` or `name@sha256:<hex>`.
//!
//! A reference always names a model and pins *something*: an alias (a governed pointer with
//! history), an immutable version label, or a content digest. Paths, URLs, bare names and
//! mutable-looking words (`latest`, `:latest`) are refused, so a job can never load from a loose
//! directory or float to "whatever is newest" (seed §2.3, §6).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::names::{AliasName, ModelName, NameError, VersionLabel};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    pub model: ModelName,
    pub selector: Selector,
}

/// What follows the `@`. A word is an alias or a version label; the registry guarantees that no
/// model has an alias and a version with the same word, so the lookup is unambiguous.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    Word(String),
    Digest(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference must look like name@alias, name@version or name@sha256:<hex>")]
    Shape,
    #[error("paths and URLs are not references; resolve a pinned name@… instead")]
    Path,
    #[error("'{0}' is mutable; pin an alias, a version or a digest")]
    Mutable(String),
    #[error("bad model name in reference: {0}")]
    Name(NameError),
    #[error("bad digest in reference")]
    Digest,
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('/') || s.contains('\\') || s.contains("://") || s.starts_with('.') || s.starts_with('~') {
            return Err(ReferenceError::Path);
        }
        if s.contains(":latest") || s.ends_with(":") {
            return Err(ReferenceError::Mutable(s.to_owned()));
        }
        let (name, sel) = s.split_once('@').ok_or(ReferenceError::Shape)?;
        let model = ModelName::parse(name).map_err(ReferenceError::Name)?;
        if sel.contains(':') {
            let d: Digest = sel.parse().map_err(|_| ReferenceError::Digest)?;
            return Ok(Reference { model, selector: Selector::Digest(d) });
        }
        if crate::names::MUTABLE_WORDS.iter().any(|w| sel.eq_ignore_ascii_case(w)) {
            return Err(ReferenceError::Mutable(sel.to_owned()));
        }
        if AliasName::parse(sel).is_err() && VersionLabel::parse(sel).is_err() {
            return Err(ReferenceError::Shape);
        }
        Ok(Reference { model, selector: Selector::Word(sel.to_owned()) })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            Selector::Word(w) => write!(f, "{}@{}", self.model, w),
            Selector::Digest(d) => write!(f, "{}@{}", self.model, d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<&str, ReferenceError>) {
        let got = input.parse::<Reference>().map(|r| r.to_string());
        assert_eq!(got, expect.map(str::to_owned), "{input}");
    }

    #[test]
    fn references_as_data() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        check("risk-default@production", Ok("risk-default@production"));
        check("risk-default@v2.3.0", Ok("risk-default@v2.3.0"));
        check(&format!("risk-default@{d}"), Ok(&format!("risk-default@{d}")));
        check("risk-default", Err(ReferenceError::Shape));
        check("risk-default@", Err(ReferenceError::Shape));
        check("risk-default@latest", Err(ReferenceError::Mutable("latest".into())));
        check("risk-default:latest", Err(ReferenceError::Mutable("risk-default:latest".into())));
        check("/models/risk", Err(ReferenceError::Path));
        check("./risk@v1", Err(ReferenceError::Path));
        check("s3://bucket/risk@v1", Err(ReferenceError::Path));
        check("Risk@v1", Err(ReferenceError::Name(NameError::BadModelName)));
        check("risk@sha256:abc", Err(ReferenceError::Digest));
        check("risk@md5:abc", Err(ReferenceError::Digest));
        check("risk@a b", Err(ReferenceError::Shape));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = s.parse::<Reference>();
        }
    }
}
