//! `fulcrum profile`: reference profiles of a version's inputs (SPEC §12). `build` reads a
//! CSV sample of the training inputs (a header row naming the features) and writes the profile
//! a version is registered with (`version register --profile`); `show` checks one and lists its
//! features. Building is the pure `fulcrum_core::drift::Profile::build`; this module reads the
//! file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use fulcrum_core::drift::{Kind, Profile};

use crate::{Output, outln};

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// Build a reference profile from a CSV sample whose header row names the features.
    Build(BuildArgs),
    /// Check a profile file and list its features.
    Show { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The sample: CSV, a header row naming the features, one row per input.
    csv: PathBuf,
    /// Quantile bins per numeric feature (fewer where values repeat).
    #[arg(long, default_value_t = 10)]
    bins: usize,
    /// Where to write the profile (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A feature carried by another input tensor than its name: FEATURE=TENSOR, or
    /// FEATURE=TENSOR:COLUMN for a [batch, features] tensor. Repeatable.
    #[arg(long = "tensor", value_name = "FEATURE=TENSOR[:COLUMN]")]
    tensors: Vec<String>,
    /// A column that is not a model input (an id, the label): left out. Repeatable.
    #[arg(long = "exclude", value_name = "COLUMN")]
    exclude: Vec<String>,
    /// Field delimiter.
    #[arg(long, default_value_t = ',')]
    delimiter: char,
}

/// Read the sample's columns.
fn read_columns(a: &BuildArgs) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let delimiter =
        u8::try_from(a.delimiter).ok().filter(u8::is_ascii).context("the delimiter must be one ASCII character")?;
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_path(&a.csv)
        .with_context(|| format!("cannot read {}", a.csv.display()))?;
    let headers: Vec<String> = r
        .headers()
        .with_context(|| format!("{}: no header row", a.csv.display()))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for h in &headers {
        if h.is_empty() {
            bail!("{}: a column has no name in the header row", a.csv.display());
        }
        if !seen.insert(h) {
            bail!("{}: the column {h:?} appears twice in the header row", a.csv.display());
        }
    }
    for x in &a.exclude {
        if !seen.contains(x) {
            bail!("--exclude {x}: no such column in {}", a.csv.display());
        }
    }
    let keep: Vec<usize> = (0..headers.len()).filter(|i| !a.exclude.contains(&headers[*i])).collect();
    let mut columns: Vec<(String, Vec<String>)> = keep.iter().map(|i| (headers[*i].clone(), Vec::new())).collect();
    for (row, record) in r.records().enumerate() {
        // Line numbers count the header row.
        let record = record.with_context(|| format!("{}: line {}", a.csv.display(), row + 2))?;
        for (col, i) in keep.iter().enumerate() {
            columns[col].1.push(record.get(*i).unwrap_or_default().to_owned());
        }
    }
    Ok(columns)
}

/// Apply `--tensor FEATURE=TENSOR[:COLUMN]` mappings.
fn map_tensors(p: &mut Profile, tensors: &[String]) -> anyhow::Result<()> {
    for t in tensors {
        let Some((feature, target)) = t.split_once('=') else {
            bail!("--tensor {t}: expected FEATURE=TENSOR or FEATURE=TENSOR:COLUMN");
        };
        let (tensor, column) = match target.rsplit_once(':') {
            Some((name, col)) => {
                (name, Some(col.parse::<usize>().with_context(|| format!("--tensor {t}: the column is a number"))?))
            }
            None => (target, None),
        };
        let Some(f) = p.features.iter_mut().find(|f| f.name == feature) else {
            bail!("--tensor {t}: the sample has no feature {feature:?}");
        };
        f.tensor = Some(tensor.to_owned());
        f.column = column;
    }
    p.check().context("the tensor mapping")?;
    Ok(())
}

pub fn run(cmd: ProfileCmd, output: Output) -> anyhow::Result<()> {
    match cmd {
        ProfileCmd::Build(a) => {
            let columns = read_columns(&a)?;
            let mut p = Profile::build(&columns, a.bins).context("building the profile")?;
            map_tensors(&mut p, &a.tensors)?;
            let mut bytes = serde_json::to_vec_pretty(&p).expect("profiles serialise");
            bytes.push(b'\n');
            match &a.out {
                Some(path) => {
                    std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
                    let numeric = p.features.iter().filter(|f| f.kind == Kind::Numeric).count();
                    match output {
                        Output::Json => outln!("{}", serde_json::to_string(&p).expect("serialises")),
                        Output::Text => outln!(
                            "profile of {} features ({numeric} numeric, {} categorical) from {} rows written to {}",
                            p.features.len(),
                            p.features.len() - numeric,
                            p.rows,
                            path.display()
                        ),
                    }
                }
                None => crate::out!("{}", String::from_utf8(bytes).expect("JSON is UTF-8")),
            }
            Ok(())
        }
        ProfileCmd::Show { file } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let p = Profile::parse(&bytes).with_context(|| file.display().to_string())?;
            match output {
                Output::Json => outln!("{}", serde_json::to_string(&p).expect("serialises")),
                Output::Text => {
                    outln!("{} rows, {} features", p.rows, p.features.len());
                    for f in &p.features {
                        let what = match f.kind {
                            Kind::Numeric => format!("numeric, {} bins", f.bins()),
                            Kind::Categorical => format!("categorical, {} categories + other", f.categories.len()),
                        };
                        let column = f.column.map(|c| format!("[:, {c}]")).unwrap_or_default();
                        outln!("  {} ({what}) from tensor {}{column}", f.name, f.tensor());
                    }
                }
            }
            Ok(())
        }
    }
}
