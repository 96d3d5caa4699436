//! Input drift against a version's **reference profile** (SPEC §12).
//!
//! A profile describes, per feature, how the training inputs were distributed: for a numeric
//! feature the interior bin edges and the share of the sample in each bin, for a categorical one
//! the categories and their shares (plus one share for everything else). It is registered with a
//! version (covered by its signed release record), built from a sample by [`Profile::build`], and
//! compared with live inputs binned the same way ([`Feature::bin`]) by the Population Stability
//! Index ([`psi`]).
//!
//! Pure: no I/O. Profiles arrive from users, so [`Profile::parse`] checks everything a profile
//! claims (shapes, finite numbers, shares summing to one, sizes bounded) before one is used.
//!
//! # Binning
//! Numeric bins are upper-inclusive: with edges `e₀ < e₁ < … < eₖ₋₂`, bin 0 is `(-∞, e₀]`, bin
//! `i` is `(eᵢ₋₁, eᵢ]`, the last is `(eₖ₋₂, ∞)`. A value that is not a finite number (or, for a
//! categorical feature, not a string, number or boolean) is not binned: it is counted apart as
//! invalid and left out of the index.
//!
//! # The index
//! `PSI = Σᵢ (aᵢ − eᵢ) · ln(aᵢ / eᵢ)` over the bins, with `aᵢ` the observed share and `eᵢ` the
//! profile's. A bin empty on either side would make a term infinite, so both shares are
//! **ε-smoothed**: `max(share, ε)` with `ε` = [`EPSILON`] (10⁻⁴). The usual reading: below 0.1
//! stable, 0.1–0.25 a moderate shift, above 0.25 a significant one — Fulcrum's shipped policy
//! thresholds (`data.fulcrum.drift`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The `format` every profile carries.
pub const PROFILE_FORMAT: &str = "fulcrum.profile.v1";
/// Smoothing of empty bins (see the module documentation).
pub const EPSILON: f64 = 1e-4;
pub const MAX_FEATURES: usize = 512;
pub const MAX_BINS: usize = 100;
pub const MAX_CATEGORIES: usize = 100;
/// How far the shares may sum from 1 (they are written with limited precision).
const SUM_TOLERANCE: f64 = 1e-6;

/// A reference profile: how the inputs a version was trained on were distributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub format: String,
    /// Rows of the sample it was built from.
    pub rows: u64,
    pub features: Vec<Feature>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Numeric,
    Categorical,
}

/// One feature's reference distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    pub name: String,
    /// The Open Inference Protocol input tensor that carries it (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
    /// Its column when that tensor carries several features (`[batch, features]`); absent: the
    /// tensor is this feature alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub kind: Kind,
    /// Numeric: interior bin edges, strictly increasing (`proportions` has one more entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Categorical: the categories (`proportions` has one more entry: everything else).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Share of the sample in each bin; they sum to 1.
    pub proportions: Vec<f64>,
}

/// Why a profile is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("not a profile: {0}")]
    Json(String),
    #[error("format must be {PROFILE_FORMAT}, not {0:?}")]
    Format(String),
    #[error("a profile has 1 to {MAX_FEATURES} features")]
    Features,
    #[error("feature {0:?}: {1}")]
    Feature(String, String),
    #[error("feature names must be unique: {0:?} appears twice")]
    Duplicate(String),
    #[error("the sample has no column with a value")]
    Empty,
}

/// A value seen for a feature, as far as binning cares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    Text(&'a str),
    Bool(bool),
}

impl Feature {
    /// How many bins this feature's counts have.
    pub fn bins(&self) -> usize {
        self.proportions.len()
    }

    /// The tensor that carries this feature.
    pub fn tensor(&self) -> &str {
        self.tensor.as_deref().unwrap_or(&self.name)
    }

    /// The bin `v` falls in; `None` when it cannot be binned (see the module documentation).
    pub fn bin(&self, v: Value<'_>) -> Option<usize> {
        match (self.kind, v) {
            (Kind::Numeric, Value::Number(x)) if x.is_finite() => Some(self.edges.partition_point(|e| *e < x)),
            (Kind::Numeric, _) => None,
            (Kind::Categorical, Value::Text(s)) => Some(self.category(s)),
            (Kind::Categorical, Value::Number(x)) if x.is_finite() => Some(self.category(&number_text(x))),
            (Kind::Categorical, Value::Bool(b)) => Some(self.category(if b { "true" } else { "false" })),
            (Kind::Categorical, Value::Number(_)) => None,
        }
    }

    fn category(&self, s: &str) -> usize {
        self.categories.iter().position(|c| c == s).unwrap_or(self.categories.len())
    }

    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 256 || self.name.chars().any(char::is_control) {
            return Err("a name is 1-256 printable characters".into());
        }
        if let Some(t) = &self.tensor
            && (t.is_empty() || t.len() > 256 || t.chars().any(char::is_control))
        {
            return Err("a tensor name is 1-256 printable characters".into());
        }
        if self.column.is_some_and(|c| c >= 65_536) {
            return Err("column must be below 65536".into());
        }
        let bins = match self.kind {
            Kind::Numeric => {
                if !self.categories.is_empty() {
                    return Err("a numeric feature has edges, not categories".into());
                }
                if self.edges.len() >= MAX_BINS {
                    return Err(format!("at most {MAX_BINS} bins"));
                }
                if self.edges.iter().any(|e| !e.is_finite()) || self.edges.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("edges must be finite and strictly increasing".into());
                }
                self.edges.len() + 1
            }
            Kind::Categorical => {
                if !self.edges.is_empty() {
                    return Err("a categorical feature has categories, not edges".into());
                }
                if self.categories.len() > MAX_CATEGORIES {
                    return Err(format!("at most {MAX_CATEGORIES} categories"));
                }
                let distinct: BTreeSet<&str> = self.categories.iter().map(String::as_str).collect();
                if distinct.len() != self.categories.len() {
                    return Err("categories must be distinct".into());
                }
                if self.categories.iter().any(|c| c.len() > 256 || c.chars().any(char::is_control)) {
                    return Err("a category is at most 256 printable characters".into());
                }
                self.categories.len() + 1
            }
        };
        if self.proportions.len() != bins {
            return Err(format!("{bins} bins need {bins} proportions, not {}", self.proportions.len()));
        }
        if self.proportions.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err("proportions are finite and not negative".into());
        }
        let sum: f64 = self.proportions.iter().sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(format!("proportions sum to {sum}, not 1"));
        }
        Ok(())
    }
}

/// A finite number as a category (integers without a fraction: `3`, not `3.0`).
fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{x:.0}") } else { x.to_string() }
}

impl Profile {
    /// Parse and check a profile from untrusted bytes.
    ///
    /// # Errors
    /// Anything a profile may not be (see [`ProfileError`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, ProfileError> {
        let p: Profile = serde_json::from_slice(bytes).map_err(|e| ProfileError::Json(e.to_string()))?;
        p.check()?;
        Ok(p)
    }

    /// # Errors
    /// See [`Profile::parse`].
    pub fn check(&self) -> Result<(), ProfileError> {
        if self.format != PROFILE_FORMAT {
            return Err(ProfileError::Format(self.format.clone()));
        }
        if self.features.is_empty() || self.features.len() > MAX_FEATURES {
            return Err(ProfileError::Features);
        }
        let mut names = BTreeSet::new();
        for f in &self.features {
            f.check().map_err(|e| ProfileError::Feature(f.name.clone(), e))?;
            if !names.insert(f.name.as_str()) {
                return Err(ProfileError::Duplicate(f.name.clone()));
            }
        }
        Ok(())
    }

    /// The profile's bytes as stored and signed (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("profiles serialise")
    }

    /// Build a profile from a sample: `columns` are the sample's columns (name, cells); an empty
    /// cell is a missing value. A column whose every value parses as a finite number is numeric
    /// with up to `bins` quantile bins (fewer where values repeat); any other is categorical, its
    /// most frequent values (up to [`MAX_CATEGORIES`], ties by value) named and the rest pooled.
    /// Columns with no value at all are left out.
    ///
    /// # Errors
    /// No column has a value; `bins` outside 1..=[`MAX_BINS`]; too many columns.
    pub fn build(columns: &[(String, Vec<String>)], bins: usize) -> Result<Self, ProfileError> {
        if !(1..=MAX_BINS).contains(&bins) {
            return Err(ProfileError::Feature("*".into(), format!("bins must be 1 to {MAX_BINS}")));
        }
        if columns.len() > MAX_FEATURES {
            return Err(ProfileError::Features);
        }
        let rows = columns.iter().map(|(_, cells)| cells.len()).max().unwrap_or(0) as u64;
        let mut features = Vec::new();
        for (name, cells) in columns {
            let present: Vec<&str> = cells.iter().map(|c| c.trim()).filter(|c| !c.is_empty()).collect();
            if present.is_empty() {
                continue;
            }
            let numbers: Option<Vec<f64>> =
                present.iter().map(|c| c.parse::<f64>().ok().filter(|x| x.is_finite())).collect();
            let feature = match numbers {
                Some(mut xs) => numeric(name, &mut xs, bins),
                None => categorical(name, &present),
            };
            features.push(feature);
        }
        if features.is_empty() {
            return Err(ProfileError::Empty);
        }
        let p = Profile { format: PROFILE_FORMAT.into(), rows, features };
        p.check()?;
        Ok(p)
    }

    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }
}

/// Quantile bins over `xs` (sorted here), upper-inclusive; equal edges merged.
fn numeric(name: &str, xs: &mut [f64], bins: usize) -> Feature {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let mut edges: Vec<f64> = Vec::with_capacity(bins);
    for q in 1..bins {
        // The value at the q-th quantile: the last value of the q-th share of the sample.
        let i = (q * n).div_ceil(bins).saturating_sub(1);
        let e = xs[i];
        // Only interior edges: an edge at the maximum would leave the last bin empty.
        if e < xs[n - 1] && edges.last().is_none_or(|last| *last < e) {
            edges.push(e);
        }
    }
    let mut counts = vec![0u64; edges.len() + 1];
    for x in xs.iter() {
        counts[edges.partition_point(|e| e < x)] += 1;
    }
    Feature {
        name: name.to_owned(),
        tensor: None,
        column: None,
        kind: Kind::Numeric,
        edges,
        categories: vec![],
        proportions: shares(&counts),
    }
}

fn categorical(name: &str, values: &[&str]) -> Feature {
    let mut freq: BTreeMap<&str, u64> = BTreeMap::new();
    for v in values {
        *freq.entry(v).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = freq.into_iter().collect();
    // Most frequent first; ties by value (the map's order, kept by a stable sort).
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    let named: Vec<(&str, u64)> = ranked.iter().take(MAX_CATEGORIES).copied().collect();
    let other: u64 = ranked.iter().skip(MAX_CATEGORIES).map(|(_, c)| c).sum();
    let mut counts: Vec<u64> = named.iter().map(|(_, c)| *c).collect();
    counts.push(other);
    Feature {
        name: name.to_owned(),
        tensor: None,
        column: None,
        kind: Kind::Categorical,
        edges: vec![],
        categories: named.iter().map(|(v, _)| (*v).to_owned()).collect(),
        proportions: shares(&counts),
    }
}

/// Counts as shares of their total, adjusted so they sum to exactly 1 in floating point where
/// rounding left them a hair off (the largest absorbs the difference).
#[allow(clippy::cast_precision_loss)]
fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return counts.iter().map(|_| 1.0 / counts.len() as f64).collect();
    }
    let mut out: Vec<f64> = counts.iter().map(|c| *c as f64 / total as f64).collect();
    let drift = 1.0 - out.iter().sum::<f64>();
    if let Some(max) = out.iter_mut().max_by(|a, b| a.total_cmp(b)) {
        *max += drift;
    }
    out
}

/// The Population Stability Index of `observed` bin counts against `expected` shares, ε-smoothed
/// (see the module documentation); `None` when nothing was observed or the bins do not match.
#[allow(clippy::cast_precision_loss)]
pub fn psi(expected: &[f64], observed: &[u64]) -> Option<f64> {
    let total: u64 = observed.iter().sum();
    if total == 0 || expected.len() != observed.len() {
        return None;
    }
    Some(
        expected
            .iter()
            .zip(observed)
            .map(|(e, o)| {
                let a = (*o as f64 / total as f64).max(EPSILON);
                let e = e.max(EPSILON);
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// Observed inputs binned like a profile's features: per feature (in the profile's order), the
/// count in each bin, and how many values could not be binned (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    pub counts: Vec<Vec<u64>>,
    pub invalid: Vec<u64>,
}

impl Tally {
    /// An empty tally shaped for `p`.
    pub fn for_profile(p: &Profile) -> Self {
        Self { counts: p.features.iter().map(|f| vec![0; f.bins()]).collect(), invalid: vec![0; p.features.len()] }
    }

    /// Whether this tally has `p`'s shape (what a registry checks before adding one up).
    pub fn fits(&self, p: &Profile) -> bool {
        self.counts.len() == p.features.len()
            && self.invalid.len() == p.features.len()
            && self.counts.iter().zip(&p.features).all(|(c, f)| c.len() == f.bins())
    }

    /// Add `other` (same shape) into this one.
    pub fn add(&mut self, other: &Tally) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.saturating_add(*y);
            }
        }
        for (a, b) in self.invalid.iter_mut().zip(&other.invalid) {
            *a = a.saturating_add(*b);
        }
    }

    /// Values seen (binned or not).
    pub fn observed(&self) -> u64 {
        self.counts.iter().flatten().chain(&self.invalid).sum()
    }
}

/// A JSON leaf as a value to bin.
fn value_of(v: &serde_json::Value) -> Option<Value<'_>> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(Value::Number),
        serde_json::Value::String(s) => Some(Value::Text(s)),
        serde_json::Value::Bool(b) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// The leaves of a (possibly nested) JSON array, in row-major order, at most `max`.
fn leaves<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>, max: usize) {
    match v {
        serde_json::Value::Array(items) => {
            for i in items {
                if out.len() >= max {
                    return;
                }
                leaves(i, out, max);
            }
        }
        other => out.push(other),
    }
}

/// Values read from one request, at most (a bound on the work an oversized request causes).
pub const MAX_VALUES_PER_REQUEST: usize = 1 << 16;

impl Profile {
    /// Bin the inputs of one Open Inference Protocol inference request body (`{"inputs": [{"name",
    /// "shape", "datatype", "data"}]}`) into `t`: each feature is read from its tensor (every
    /// element, or column `column` of a `[batch, n]` tensor). Tensors the profile does not name
    /// are ignored; a feature whose tensor is absent counts nothing.
    pub fn observe_oip(&self, body: &serde_json::Value, t: &mut Tally) {
        let Some(inputs) = body["inputs"].as_array() else { return };
        let mut seen: Vec<&str> = Vec::new();
        for tensor in inputs {
            // The first tensor of a name is the one read (as a model server would).
            let Some(name) = tensor["name"].as_str().filter(|n| !seen.contains(n)) else { continue };
            seen.push(name);
            // Flattened once per tensor, whatever number of features it carries.
            let mut data: Option<Vec<&serde_json::Value>> = None;
            for (i, f) in self.features.iter().enumerate().filter(|(_, f)| f.tensor() == name) {
                let data = data.get_or_insert_with(|| {
                    let mut d = Vec::new();
                    leaves(&tensor["data"], &mut d, MAX_VALUES_PER_REQUEST);
                    d
                });
                let (start, step) = match f.column {
                    None => (0, 1),
                    Some(c) => {
                        // The row width is the last dimension of the declared shape.
                        let width = tensor["shape"]
                            .as_array()
                            .and_then(|s| s.last())
                            .and_then(serde_json::Value::as_u64)
                            .and_then(|w| usize::try_from(w).ok())
                            .filter(|w| *w > c);
                        match width {
                            Some(w) => (c, w),
                            None => {
                                t.invalid[i] += 1;
                                continue;
                            }
                        }
                    }
                };
                for v in data.iter().skip(start).step_by(step) {
                    match value_of(v).and_then(|v| f.bin(v)) {
                        Some(b) => t.counts[i][b] += 1,
                        None => t.invalid[i] += 1,
                    }
                }
            }
        }
    }
}

/// How a drift index reads against the policy's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Stable,
    Warn,
    Alert,
}

/// The level of `psi` given the `warn` and `alert` thresholds.
pub fn level(psi: f64, warn: f64, alert: f64) -> Level {
    if psi >= alert {
        Level::Alert
    } else if psi >= warn {
        Level::Warn
    } else {
        Level::Stable
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn col(name: &str, cells: &[&str]) -> (String, Vec<String>) {
        (name.to_owned(), cells.iter().map(|c| (*c).to_owned()).collect())
    }

    fn counts_of(f: &Feature, values: &[f64]) -> Vec<u64> {
        let mut c = vec![0; f.bins()];
        for v in values {
            c[f.bin(Value::Number(*v)).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn quantile_bins_of_a_uniform_sample() {
        let cells: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
        let p = Profile::build(&[("x".into(), cells)], 4).unwrap();
        let f = &p.features[0];
        assert_eq!((f.kind, f.edges.clone()), (Kind::Numeric, vec![25.0, 50.0, 75.0]));
        assert_eq!(f.proportions, vec![0.25; 4]);
        // Upper-inclusive bins.
        assert_eq!(f.bin(Value::Number(25.0)), Some(0));
        assert_eq!(f.bin(Value::Number(25.5)), Some(1));
        assert_eq!(f.bin(Value::Number(-1e9)), Some(0));
        assert_eq!(f.bin(Value::Number(1e9)), Some(3));
        assert_eq!(f.bin(Value::Number(f64::NAN)), None);
        assert_eq!(f.bin(Value::Text("7")), None);
        assert_eq!(p.rows, 100);
    }

    #[test]
    fn repeated_values_merge_bins_and_constants_have_one() {
        let p = Profile::build(&[col("x", &["1", "1", "1", "1", "2", "3"]), col("k", &["5", "5", "5"])], 4).unwrap();
        assert_eq!(p.features[0].edges, vec![1.0, 2.0]);
        assert_eq!(p.features[0].proportions.len(), 3);
        assert!(p.features[1].edges.is_empty());
        assert_eq!(p.features[1].proportions, vec![1.0]);
    }

    #[test]
    fn text_columns_are_categorical_with_the_rest_pooled() {
        let mut cells = vec!["PT"; 6];
        cells.extend(["ES"; 3]);
        cells.push("FR");
        cells.push("");
        let p = Profile::build(&[col("country", &cells)], 10).unwrap();
        let f = &p.features[0];
        assert_eq!((f.kind, f.categories.clone()), (Kind::Categorical, vec!["PT".into(), "ES".into(), "FR".into()]));
        let near = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(near(&f.proportions, &[0.6, 0.3, 0.1, 0.0]), "{:?}", f.proportions);
        assert_eq!(f.bin(Value::Text("ES")), Some(1));
        assert_eq!(f.bin(Value::Text("DE")), Some(3));
        // A mixed column (a number and words) is categorical; numbers bin by their text.
        let p = Profile::build(&[col("code", &["1", "2", "x"])], 10).unwrap();
        assert_eq!(p.features[0].kind, Kind::Categorical);
        assert_eq!(p.features[0].bin(Value::Number(2.0)), Some(p.features[0].category("2")));
    }

    #[test]
    fn empty_columns_are_left_out_and_an_empty_sample_refused() {
        let p = Profile::build(&[col("x", &["1", "2"]), col("blank", &["", " "])], 2).unwrap();
        assert_eq!(p.features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["x"]);
        assert_eq!(Profile::build(&[col("blank", &[""])], 2), Err(ProfileError::Empty));
        assert!(Profile::build(&[col("x", &["1"])], 0).is_err());
    }

    #[test]
    fn parse_refuses_what_a_profile_cannot_be() {
        let good = Profile::build(&[col("x", &["1", "2", "3", "4"])], 2).unwrap();
        assert_eq!(Profile::parse(&good.to_bytes()).unwrap(), good);
        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(&good).unwrap();
            edit(&mut v);
            Profile::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err()
        };
        assert!(matches!(bad(&|v| v["format"] = "x".into()), ProfileError::Format(_)));
        assert!(matches!(bad(&|v| v["features"] = serde_json::json!([])), ProfileError::Features));
        assert!(matches!(
            bad(&|v| v["features"][0]["proportions"] = serde_json::json!([0.9, 0.3])),
            ProfileError::Feature(..)
        ));
        assert!(matches!(
            bad(&|v| v["features"][0]["proportions"] = serde_json::json!([1.0])),
            ProfileError::Feature(..)
        ));
        assert!(matches!(
            bad(&|v| v["features"][0]["edges"] = serde_json::json!([3.0, 1.0])),
            ProfileError::Feature(..)
        ));
        assert!(matches!(
            bad(&|v| v["features"][0]["categories"] = serde_json::json!(["a"])),
            ProfileError::Feature(..)
        ));
        assert!(matches!(bad(&|v| v["features"][0]["extra"] = 1.into()), ProfileError::Json(_)));
        assert!(matches!(
            bad(&|v| {
                let f = v["features"][0].clone();
                v["features"].as_array_mut().unwrap().push(f);
            }),
            ProfileError::Duplicate(_)
        ));
        assert!(matches!(Profile::parse(b"{"), Err(ProfileError::Json(_))));
    }

    #[test]
    fn psi_of_known_shifts() {
        let e = [0.25; 4];
        assert_eq!(psi(&e, &[25, 25, 25, 25]), Some(0.0));
        assert_eq!(psi(&e, &[0, 0, 0, 0]), None);
        assert_eq!(psi(&e, &[1, 2]), None);
        // Half the mass moved from the first bin to the last: (0.125-0.25)ln(0.5) + (0.375-0.25)ln(1.5).
        let want = (0.125f64 - 0.25) * (0.5f64).ln() + (0.375f64 - 0.25) * (1.5f64).ln();
        assert!((psi(&e, &[125, 250, 250, 375]).unwrap() - want).abs() < 1e-12);
        // Everything in one bin: large, finite thanks to ε.
        let all = psi(&e, &[100, 0, 0, 0]).unwrap();
        assert!(all.is_finite() && all > 2.0, "{all}");
        assert_eq!(level(0.05, 0.1, 0.25), Level::Stable);
        assert_eq!(level(0.1, 0.1, 0.25), Level::Warn);
        assert_eq!(level(0.3, 0.1, 0.25), Level::Alert);
    }

    #[test]
    fn oip_inputs_are_binned_by_tensor_and_column() {
        let p = Profile::build(
            &[
                col("amount", &["1", "2", "3", "4"]),
                col("country", &["PT", "ES", "PT", "PT"]),
                col("age", &["20", "40"]),
            ],
            2,
        )
        .unwrap();
        let mut p = p;
        p.features[2].tensor = Some("person".into());
        p.features[2].column = Some(1);
        let mut t = Tally::for_profile(&p);
        let body = serde_json::json!({"inputs": [
            {"name": "amount", "shape": [3], "datatype": "FP64", "data": [1.0, 3.5, "x"]},
            {"name": "country", "shape": [2, 1], "datatype": "BYTES", "data": [["ES"], ["DE"]]},
            {"name": "person", "shape": [2, 2], "datatype": "FP64", "data": [[0, 19], [1, 41]]},
            {"name": "unrelated", "shape": [1], "datatype": "FP64", "data": [7]}
        ]});
        p.observe_oip(&body, &mut t);
        assert_eq!(t.counts[0], vec![1, 1]);
        assert_eq!(t.invalid[0], 1);
        assert_eq!(t.counts[1], vec![0, 1, 1], "PT, ES, other");
        assert_eq!(t.counts[2], vec![1, 1], "column 1 of [batch, 2]");
        assert!(t.fits(&p) && t.observed() == 7);
        let mut sum = Tally::for_profile(&p);
        sum.add(&t);
        sum.add(&t);
        assert_eq!(sum.counts[0], vec![2, 2]);
        // Not OIP, or a column past the row: nothing binned, nothing panics.
        p.observe_oip(&serde_json::json!({"inputs": 3}), &mut t);
        p.observe_oip(&serde_json::json!({"inputs": [{"name": "person", "shape": [2, 1], "data": [1, 2]}]}), &mut t);
        assert_eq!(t.invalid[2], 1);
    }

    proptest! {
        /// The index is never negative, and zero for counts exactly in the profile's shares.
        #[test]
        fn psi_is_a_divergence(counts in prop::collection::vec(0u64..1000, 1..20), scale in 1u64..50) {
            let e = shares(&counts);
            let observed: Vec<u64> = counts.iter().map(|c| c * scale).collect();
            if let Some(v) = psi(&e, &observed) {
                prop_assert!(v.abs() < 1e-9, "{v}");
            }
            let other: Vec<u64> = counts.iter().rev().copied().collect();
            if let Some(v) = psi(&e, &other) {
                prop_assert!(v >= -1e-12, "{v}");
            }
        }

        /// A profile built from a sample bins that same sample back into its own shares, so the
        /// sample does not drift from itself; every value lands in a bin; the profile parses.
        #[test]
        fn a_sample_does_not_drift_from_its_own_profile(
            xs in prop::collection::vec(-1e6f64..1e6, 1..400),
            bins in 1usize..20,
        ) {
            let cells: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
            let p = Profile::build(&[("x".into(), cells)], bins).unwrap();
            let f = &p.features[0];
            prop_assert!(f.bins() <= bins);
            let counts = counts_of(f, &xs.iter().map(|x| x.to_string().parse().unwrap()).collect::<Vec<f64>>());
            prop_assert_eq!(counts.iter().sum::<u64>(), xs.len() as u64);
            prop_assert!(psi(&f.proportions, &counts).unwrap() < 1e-9);
            prop_assert_eq!(Profile::parse(&p.to_bytes()).unwrap(), p.clone());
        }

        /// Parsing arbitrary JSON-ish bytes never panics.
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Profile::parse(&bytes);
        }
    }
}
