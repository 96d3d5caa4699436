//! `fulcrum profile build|show` on CSV samples: numeric columns get quantile bins, text columns
//! categories, tensor mappings are kept, and a bad sample or mapping is one clear error line
//! with nothing written.

mod common;

use common::{fulcrum, one_error_line};
use fulcrum_core::drift::{Kind, Profile, Value, psi};

fn sample(dir: &std::path::Path) -> std::path::PathBuf {
    let mut csv = String::from("id,amount,country,age,label\n");
    for i in 0..1000 {
        let country = ["PT", "ES", "FR", "PT"][i % 4];
        csv.push_str(&format!("{i},{}.5,{country},{},{}\n", i * 3 % 997, 18 + i % 60, i % 2));
    }
    let path = dir.join("train.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn builds_a_profile_from_a_csv_sample() {
    let dir = tempfile::tempdir().unwrap();
    let csv = sample(dir.path());
    let out = dir.path().join("profile.json");
    let o = fulcrum(
        &[
            "profile",
            "build",
            csv.to_str().unwrap(),
            "--bins",
            "5",
            "--exclude",
            "id",
            "--exclude",
            "label",
            "--tensor",
            "age=features:1",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8(o.stdout).unwrap();
    assert!(line.contains("3 features (2 numeric, 1 categorical) from 1000 rows"), "{line}");
    let p = Profile::parse(&std::fs::read(&out).unwrap()).unwrap();
    let names: Vec<&str> = p.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["amount", "country", "age"]);
    let amount = p.feature("amount").unwrap();
    assert_eq!((amount.kind, amount.bins()), (Kind::Numeric, 5));
    assert!(amount.proportions.iter().all(|s| (s - 0.2).abs() < 0.01), "{:?}", amount.proportions);
    let country = p.feature("country").unwrap();
    assert_eq!(
        (country.kind, country.categories.clone()),
        (Kind::Categorical, vec!["PT".into(), "ES".into(), "FR".into()])
    );
    let age = p.feature("age").unwrap();
    assert_eq!((age.tensor(), age.column), ("features", Some(1)));
    // The training sample itself does not drift from its profile.
    let mut counts = vec![0; amount.bins()];
    for i in 0..1000 {
        counts[amount.bin(Value::Number(f64::from(i * 3 % 997) + 0.5)).unwrap()] += 1;
    }
    assert!(psi(&amount.proportions, &counts).unwrap() < 1e-9);

    let o = fulcrum(&["profile", "show", out.to_str().unwrap()], &[]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("age (numeric, ") && text.contains("from tensor features[:, 1]"), "{text}");

    // Without --out the profile goes to standard output.
    let o = fulcrum(&["profile", "build", csv.to_str().unwrap(), "--exclude", "id"], &[]);
    assert!(o.status.success());
    Profile::parse(&o.stdout).unwrap();
}

#[test]
fn a_bad_sample_or_mapping_is_one_error_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("profile.json");
    let run = |csv: &str, extra: &[&str]| {
        let path = dir.path().join("s.csv");
        std::fs::write(&path, csv).unwrap();
        let mut args = vec!["profile", "build", path.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        one_error_line(&fulcrum(&args, &[]))
    };
    assert!(run("a,b\n1,2\n3\n", &[]).contains("line 3"), "a ragged row names its line");
    assert!(run("a,a\n1,2\n", &[]).contains("appears twice"));
    assert!(run("a,\n1,2\n", &[]).contains("has no name"));
    assert!(run("a,b\n,\n", &[]).contains("no column with a value"));
    assert!(run("a,b\n1,2\n", &["--exclude", "c"]).contains("no such column"));
    assert!(run("a,b\n1,2\n", &["--tensor", "c=x"]).contains("no feature \"c\""));
    assert!(run("a,b\n1,2\n", &["--tensor", "a"]).contains("FEATURE=TENSOR"));
    assert!(run("a,b\n1,2\n", &["--bins", "0"]).contains("bins must be 1 to 100"));
    assert!(!out.exists(), "nothing written");
    let missing = one_error_line(&fulcrum(&["profile", "show", dir.path().join("none.json").to_str().unwrap()], &[]));
    assert!(missing.contains("cannot read"), "{missing}");
    std::fs::write(&out, r#"{"format":"fulcrum.profile.v1","rows":1,"features":[]}"#).unwrap();
    assert!(one_error_line(&fulcrum(&["profile", "show", out.to_str().unwrap()], &[])).contains("1 to 512 features"));
}

#[test]
fn a_version_is_registered_with_its_profile() {
    let s = common::serve();
    let dir = tempfile::tempdir().unwrap();
    let csv = sample(dir.path());
    let out = dir.path().join("profile.json");
    let o =
        fulcrum(&["profile", "build", csv.to_str().unwrap(), "--exclude", "id", "--out", out.to_str().unwrap()], &[]);
    assert!(o.status.success());
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("weights.bin"), b"weights").unwrap();
    common::ok(&common::run_as(&s, "ci", &["model", "create", "fraud", "--domain", "risk"]));
    let v = common::ok(&common::run_as(
        &s,
        "ci",
        &[
            "version",
            "register",
            "fraud",
            "v1",
            "--dir",
            model.to_str().unwrap(),
            "--profile",
            out.to_str().unwrap(),
            "--output",
            "json",
        ],
    ));
    let d = fulcrum_core::Digest::of(&std::fs::read(&out).unwrap());
    assert_eq!(v["release"]["reference_profile"]["digest"], d.to_string(), "{v}");
    // A file that is not a profile is refused before anything is uploaded.
    std::fs::write(dir.path().join("bad.json"), "{}").unwrap();
    let err = one_error_line(&common::run_as(
        &s,
        "ci",
        &[
            "version",
            "register",
            "fraud",
            "v2",
            "--dir",
            model.to_str().unwrap(),
            "--profile",
            dir.path().join("bad.json").to_str().unwrap(),
        ],
    ));
    assert!(err.contains("bad.json") && err.contains("not a profile"), "{err}");
}
