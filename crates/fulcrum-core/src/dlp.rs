//! Data-loss prevention attributes of a version (SPEC §6 "DLP"): the labels it carries and the
//! purposes its model card allows it to be used for. Whether a label is sensitive, and what a
//! sensitive label demands, is policy (`data.fulcrum.dlp`); this module only reads the facts.

use std::collections::BTreeMap;

use serde_json::Value;

/// The most labels a model card may carry.
pub const MAX_CARD_LABELS: usize = 64;

/// A model card's `labels` (a list of strings such as `pii:restricted`), if well-formed.
///
/// # Errors
/// `labels` that is not a list of at most [`MAX_CARD_LABELS`] valid identifiers.
pub fn card_labels(card: &Value) -> Result<Vec<String>, String> {
    match card.get("labels") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) if a.len() <= MAX_CARD_LABELS => a
            .iter()
            .map(|l| {
                let s = l.as_str().ok_or("model card labels must be strings")?;
                crate::names::check_identifier("label", s).map_err(|e| e.to_string())?;
                Ok(s.to_owned())
            })
            .collect(),
        Some(_) => Err(format!("model card labels must be a list of at most {MAX_CARD_LABELS} strings")),
    }
}

/// The purposes a model card allows: its `guardrails.purposes` (what the serving gateway also
/// enforces for callers) and every `purpose:<p>` label.
pub fn card_purposes(card: &Value, labels: &[String]) -> Vec<String> {
    let mut out: Vec<String> = card
        .pointer("/guardrails/purposes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    out.extend(labels.iter().filter_map(|l| l.strip_prefix("purpose:")).map(str::to_owned));
    out.sort();
    out.dedup();
    out
}

/// A version's labels: its model's (`key:value`) and its card's, sorted, without duplicates.
pub fn version_labels(model_labels: &BTreeMap<String, String>, card_labels: &[String]) -> Vec<String> {
    let mut out: Vec<String> = model_labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    out.extend(card_labels.iter().cloned());
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_purposes_as_data() {
        let card =
            json!({"labels": ["pii:restricted", "purpose:credit_granting"], "guardrails": {"purposes": ["fraud"]}});
        let labels = card_labels(&card).unwrap();
        assert_eq!(card_purposes(&card, &labels), ["credit_granting", "fraud"]);
        let model =
            BTreeMap::from([("team".to_owned(), "risk".to_owned()), ("pii".to_owned(), "restricted".to_owned())]);
        assert_eq!(version_labels(&model, &labels), ["pii:restricted", "purpose:credit_granting", "team:risk"]);
        assert_eq!(card_labels(&json!({})).unwrap(), Vec::<String>::new());
        assert!(card_labels(&json!({"labels": "pii:restricted"})).is_err());
        assert!(card_labels(&json!({"labels": [1]})).is_err());
        assert!(card_labels(&json!({"labels": ["has space"]})).is_err());
    }
}
