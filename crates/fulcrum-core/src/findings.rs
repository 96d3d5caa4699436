//! Vulnerability findings attached to a version, imported from scanner reports (Grype JSON,
//! osv-scanner JSON, or Fulcrum's own list), and waivers.
//!
//! Parsers of untrusted bytes: bounded (at most [`MAX_FINDINGS`]), total over any input (errors,
//! never panics), and every finding id and severity is validated.

use serde::{Deserialize, Serialize};

pub const MAX_FINDINGS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Severity {
        match s.to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" => Severity::Low,
            "negligible" | "none" => Severity::Negligible,
            _ => Severity::Unknown,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Negligible => "negligible",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// CVE/GHSA/OSV id.
    pub id: String,
    pub severity: Severity,
    /// `open` or `fixed`.
    pub status: String,
    #[serde(default)]
    pub package: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindingsError {
    #[error("report is not JSON: {0}")]
    Json(String),
    #[error("report is not in the {0} format")]
    Shape(&'static str),
    #[error("more than {MAX_FINDINGS} findings")]
    TooMany,
    #[error("finding id {0:?} is not a vulnerability id")]
    BadId(String),
}

/// A vulnerability id: 1–64 of `[A-Za-z0-9._:-]`.
pub fn check_id(id: &str) -> Result<(), FindingsError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok { Ok(()) } else { Err(FindingsError::BadId(id.chars().take(64).collect())) }
}

fn finish(mut out: Vec<Finding>) -> Result<Vec<Finding>, FindingsError> {
    if out.len() > MAX_FINDINGS {
        return Err(FindingsError::TooMany);
    }
    for f in &out {
        check_id(&f.id)?;
    }
    out.sort_by(|a, b| a.id.cmp(&b.id).then(b.severity.cmp(&a.severity)));
    // One finding per id, at its highest severity.
    out.dedup_by(|b, a| a.id == b.id);
    Ok(out)
}

/// Parse a report: `grype` (`{"matches":[{"vulnerability":{"id","severity"},"artifact":{"name"}}]}`),
/// `osv` (osv-scanner: `{"results":[{"packages":[{"package":{"name"},"vulnerabilities":[{"id",
/// "database_specific":{"severity"}}]}]}]}`) or `fulcrum` (`{"findings":[{"id","severity","status"}]}`).
///
/// # Errors
/// Not JSON, not the named format, too many findings, or a bad id.
pub fn parse(format: &str, bytes: &[u8]) -> Result<Vec<Finding>, FindingsError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| FindingsError::Json(e.to_string()))?;
    let open = |id: &str, sev: &str, pkg: &str| Finding {
        id: id.to_owned(),
        severity: Severity::parse(sev),
        status: "open".into(),
        package: pkg.to_owned(),
    };
    let out = match format {
        "grype" => {
            let matches = v["matches"].as_array().ok_or(FindingsError::Shape("grype"))?;
            if matches.len() > MAX_FINDINGS {
                return Err(FindingsError::TooMany);
            }
            matches
                .iter()
                .map(|m| {
                    let id = m["vulnerability"]["id"].as_str().ok_or(FindingsError::Shape("grype"))?;
                    Ok(open(
                        id,
                        m["vulnerability"]["severity"].as_str().unwrap_or(""),
                        m["artifact"]["name"].as_str().unwrap_or(""),
                    ))
                })
                .collect::<Result<Vec<_>, FindingsError>>()?
        }
        "osv" => {
            let mut out = Vec::new();
            for r in v["results"].as_array().ok_or(FindingsError::Shape("osv"))? {
                for p in r["packages"].as_array().into_iter().flatten() {
                    for vul in p["vulnerabilities"].as_array().into_iter().flatten() {
                        let id = vul["id"].as_str().ok_or(FindingsError::Shape("osv"))?;
                        out.push(open(
                            id,
                            vul["database_specific"]["severity"].as_str().unwrap_or(""),
                            p["package"]["name"].as_str().unwrap_or(""),
                        ));
                        if out.len() > MAX_FINDINGS {
                            return Err(FindingsError::TooMany);
                        }
                    }
                }
            }
            out
        }
        "fulcrum" => {
            #[derive(Deserialize)]
            struct List {
                findings: Vec<Finding>,
            }
            let list: List = serde_json::from_value(v).map_err(|_| FindingsError::Shape("fulcrum"))?;
            if list.findings.iter().any(|f| f.status != "open" && f.status != "fixed") {
                return Err(FindingsError::Shape("fulcrum"));
            }
            list.findings
        }
        _ => return Err(FindingsError::Shape("known (grype, osv, fulcrum)")),
    };
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grype_osv_and_native() {
        let grype = br#"{"matches":[{"vulnerability":{"id":"CVE-2026-1","severity":"High"},"artifact":{"name":"torch"}},
                                     {"vulnerability":{"id":"CVE-2026-1","severity":"Critical"},"artifact":{"name":"torch"}},
                                     {"vulnerability":{"id":"GHSA-x","severity":"Low"},"artifact":{"name":"numpy"}}]}"#;
        let f = parse("grype", grype).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].id.as_str(), f[0].severity), ("CVE-2026-1", Severity::Critical), "highest severity wins");
        let osv = br#"{"results":[{"packages":[{"package":{"name":"pillow"},"vulnerabilities":[{"id":"GHSA-abcd","database_specific":{"severity":"MODERATE"}}]}]}]}"#;
        assert_eq!(parse("osv", osv).unwrap()[0].severity, Severity::Medium);
        let native = br#"{"findings":[{"id":"CVE-1","severity":"critical","status":"fixed"}]}"#;
        assert_eq!(parse("fulcrum", native).unwrap()[0].status, "fixed");
        assert_eq!(parse("grype", b"{}"), Err(FindingsError::Shape("grype")));
        assert!(matches!(
            parse("grype", br#"{"matches":[{"vulnerability":{"id":"../x y","severity":"High"}}]}"#),
            Err(FindingsError::BadId(_))
        ));
        assert!(parse("fulcrum", br#"{"findings":[{"id":"CVE-1","severity":"critical","status":"maybe"}]}"#).is_err());
        assert!(parse("nessus", b"{}").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            for f in ["grype", "osv", "fulcrum"] {
                let _ = parse(f, &bytes);
            }
        }
    }
}
