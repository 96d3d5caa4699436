//! The official `mlflow` client (PyPI, pinned in `scripts/test.sh`) against a real `fulcrum
//! serve`: a scikit-learn model saved in MLflow's format, registered with the `fulcrum` CLI and
//! governed to production, is read, searched and loaded (`models:/fraud@production`) through
//! MLflow's own API calls — and the governed refusals come back as `MlflowException`s with
//! MLflow's error codes. (Issue 19, first slice: version creation from an MLflow source, stage
//! transitions and the import are not here yet.)

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::serving::as_;
use common::{ok, run_as, serve};
use serde_json::{Value, json};

use fulcrum_testkit::mlflow::{MlflowServer, python};

/// Run a Python script (with arguments) in the MLflow venv; its last stdout line is JSON.
fn run_py(python: &PathBuf, script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut c = Command::new(python);
    c.arg("-c").arg(script).args(args).env("MLFLOW_DISABLE_TELEMETRY", "true").env("PYTHONWARNINGS", "ignore");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("null");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

const SAVE: &str = r#"
import json, sys, numpy as np, mlflow.sklearn
from sklearn.linear_model import LogisticRegression
X = np.array([[0.0, 0.1], [0.2, 0.0], [1.0, 0.9], [0.9, 1.2]]); y = np.array([0, 0, 1, 1])
flip = sys.argv[-1] == "flip"
m = LogisticRegression().fit(X, 1 - y if flip else y)
mlflow.sklearn.save_model(m, sys.argv[-2])
print(json.dumps({"predictions": m.predict(np.array([[0.1, 0.1], [1.0, 1.0]])).tolist()}))
"#;

const CLIENT: &str = r#"
import json, os
import numpy as np, mlflow, mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
url = os.environ["FULCRUM"]
mlflow.set_tracking_uri(url); mlflow.set_registry_uri(url)
c = MlflowClient(tracking_uri=url, registry_uri=url)
def as_(who): os.environ["MLFLOW_TRACKING_TOKEN"] = "t-" + who
def code(f):
    try:
        f(); return None
    except MlflowException as e:
        return [e.error_code, str(e)]
out = {}
as_("viewer")
rm = c.get_registered_model("fraud")
out["model"] = {"name": rm.name, "aliases": rm.aliases, "created": rm.creation_timestamp}
out["search"] = [m.name for m in c.search_registered_models(filter_string="name LIKE 'fra%'")]
out["search_none"] = [m.name for m in c.search_registered_models(filter_string="name = 'nope'")]
mv = c.get_model_version_by_alias("fraud", "production")
out["by_alias"] = {"version": mv.version, "stage": mv.current_stage, "aliases": list(mv.aliases)}
out["v2"] = c.get_model_version("fraud", "2").current_stage
out["versions"] = sorted(v.version for v in c.search_model_versions("name='fraud'"))
out["missing_model"] = code(lambda: c.get_registered_model("nope"))
out["missing_version"] = code(lambda: c.get_model_version("fraud", "9"))
out["bad_filter"] = code(lambda: c.search_registered_models(filter_string="run_id = 'x'"))
as_("admin")
out["exists"] = code(lambda: c.create_registered_model("fraud", tags={"fulcrum.domain": "fraud"}))
out["created"] = c.create_registered_model("churn", tags={"fulcrum.domain": "fraud", "team": "risk"}).name
out["delete_version"] = code(lambda: c.delete_model_version("fraud", "1"))
out["delete_model"] = code(lambda: c.delete_registered_model("fraud"))
as_("rm")
out["alias_unapproved"] = code(lambda: c.set_registered_model_alias("fraud", "production", "2"))
out["alias_dev"] = code(lambda: c.set_registered_model_alias("fraud", "dev-try", "2"))
out["dev_alias"] = c.get_model_version_by_alias("fraud", "dev-try").version
out["to_staging"] = c.transition_model_version_stage("fraud", "2", "Staging").current_stage
out["to_production"] = code(lambda: c.transition_model_version_stage("fraud", "2", "Production"))
out["to_archived"] = code(lambda: c.transition_model_version_stage("fraud", "2", "Archived"))
out["latest"] = {v.current_stage: v.version for v in c.get_latest_versions("fraud")}
out["latest_prod"] = [v.version for v in c.get_latest_versions("fraud", stages=["Production"])]
out["delete_dev_alias"] = code(lambda: c.delete_registered_model_alias("fraud", "dev-try"))
out["dev_alias_gone"] = code(lambda: c.get_model_version_by_alias("fraud", "dev-try"))
# Tags and descriptions: annotations, never governance inputs.
as_("ci")
c.set_registered_model_tag("fraud", "team", "risk")
c.update_registered_model("fraud", description="scores card payments")
c.set_model_version_tag("fraud", "1", "validated", "yes")
c.set_model_version_tag("fraud", "2", "validated", "pending")
out["v2_described"] = c.update_model_version("fraud", "2", description="challenger").description
rm = c.get_registered_model("fraud")
out["model_tags"] = rm.tags
out["model_description"] = rm.description
out["v1_tags"] = {k: v for k, v in c.get_model_version("fraud", "1").tags.items() if not k.startswith("fulcrum.")}
out["v1_facts"] = sorted(k for k in c.get_model_version("fraud", "1").tags if k.startswith("fulcrum."))
out["by_tag"] = [v.version for v in c.search_model_versions("tags.validated = 'yes'")]
out["by_tag_model"] = [m.name for m in c.search_registered_models(filter_string="tags.team = 'risk'")]
out["label_tag"] = code(lambda: c.set_registered_model_tag("churn", "team", "ops"))
out["fact_tag"] = code(lambda: c.set_model_version_tag("fraud", "1", "fulcrum.stage", "Approved"))
out["rename"] = code(lambda: c.rename_registered_model("fraud", "fraud2"))
c.delete_model_version_tag("fraud", "2", "validated")
out["v2_tags"] = {k: v for k, v in c.get_model_version("fraud", "2").tags.items() if not k.startswith("fulcrum.")}
out["delete_missing_tag"] = code(lambda: c.delete_registered_model_tag("fraud", "nope"))
out["tag_missing_version"] = code(lambda: c.set_model_version_tag("fraud", "9", "k", "v"))
# Search: order, pages, the version grammar.
out["asc"] = [v.version for v in c.search_model_versions("name='fraud'", order_by=["version_number ASC"])]
out["desc"] = [v.version for v in c.search_model_versions("name='fraud'", order_by=["version_number DESC"])]
page1 = c.search_model_versions("name='fraud'", max_results=1, order_by=["version_number ASC"])
page2 = c.search_model_versions("name='fraud'", max_results=1, order_by=["version_number ASC"], page_token=page1.token)
out["pages"] = [[v.version for v in page1], [v.version for v in page2], page2.token]
out["models_desc"] = [m.name for m in c.search_registered_models(order_by=["name DESC"])]
out["all_versions"] = sorted(f"{v.name}/{v.version}" for v in c.search_model_versions("version_number >= 1"))
out["by_number"] = [v.version for v in c.search_model_versions("name = 'fraud' AND version_number > 1")]
out["bad_version_filter"] = code(lambda: c.search_model_versions("stage = 'x'"))
out["bad_order"] = code(lambda: c.search_registered_models(order_by=["stage ASC"]))
copied = c.copy_model_version("models:/fraud/1", "churn")
out["copied"] = [copied.version, copied.status, copied.tags.get("validated"), copied.tags.get("fulcrum.artifact_digest")]
out["source_digest"] = c.get_model_version("fraud", "1").tags["fulcrum.artifact_digest"]
import requests
r = requests.get(url + "/api/2.0/mlflow/webhooks/list", headers={"Authorization": "Bearer t-ci"})
out["webhooks"] = [r.status_code, r.json().get("error_code")]
r = requests.get(url + "/api/2.0/mlflow/registered-models/get", params={"name": "fraud"})
out["no_token"] = [r.status_code, r.json().get("error_code")]
r = requests.post(url + "/api/2.0/mlflow/registered-models/set-tag", data="{not json", headers={"Authorization": "Bearer t-ci", "Content-Type": "application/json"})
out["bad_body"] = [r.status_code, r.json().get("error_code")]
as_("viewer")
out["viewer_tag"] = code(lambda: c.set_registered_model_tag("fraud", "k", "v"))
as_("agent")
model = mlflow.pyfunc.load_model("models:/fraud@production")
out["predictions"] = model.predict(np.array([[0.1, 0.1], [1.0, 1.0]])).tolist()
out["load_candidate"] = code(lambda: mlflow.pyfunc.load_model("models:/fraud/2"))
out["load_by_number"] = mlflow.pyfunc.load_model("models:/fraud/1").predict(np.array([[0.1, 0.1], [1.0, 1.0]])).tolist()
out["load_latest"] = code(lambda: mlflow.pyfunc.load_model("models:/fraud/latest"))
# Another tenant's admin: none of it exists, however it is asked for.
as_("globex")
out["other_get"] = code(lambda: c.get_registered_model("fraud"))
out["other_alias"] = code(lambda: c.get_model_version_by_alias("fraud", "production"))
out["other_search"] = [m.name for m in c.search_registered_models()]
out["other_load"] = code(lambda: mlflow.pyfunc.load_model("models:/fraud@production"))
import requests
r = requests.get(url + "/api/2.0/mlflow-artifacts/artifacts/fulcrum/fraud/1/MLmodel", headers={"Authorization": "Bearer t-globex"})
out["other_file"] = [r.status_code, r.json().get("error_code")]
r = requests.get(url + "/api/2.0/mlflow-artifacts/artifacts", params={"path": "fulcrum/fraud/1"}, headers={"Authorization": "Bearer t-globex"})
out["other_list"] = [r.status_code, r.json().get("error_code")]
print(json.dumps(out))
"#;

#[test]
fn the_mlflow_client_reads_loads_and_is_refused_as_the_policy_says() {
    let Some(py) = python() else { return };
    let s = serve();
    let work = tempfile::tempdir().unwrap();
    let dirs = [work.path().join("m1"), work.path().join("m2")];
    let expected = run_py(&py, SAVE, &[dirs[0].to_str().unwrap(), "plain"], &[]);
    let flipped = run_py(&py, SAVE, &[dirs[1].to_str().unwrap(), "flip"], &[]);
    assert_ne!(expected, flipped, "two different models");
    assert!(dirs[0].join("MLmodel").exists(), "saved in MLflow's format");
    let card = work.path().join("card.json");
    std::fs::write(&card, json!({"owner": "fraud", "intended_use": "scoring"}).to_string()).unwrap();
    ok(&run_as(&s, "ci", &["model", "create", "fraud", "--domain", "fraud"]));
    for (label, dir) in ["1", "2"].iter().zip(&dirs) {
        ok(&run_as(
            &s,
            "ci",
            &[
                "version",
                "register",
                "fraud",
                label,
                "--dir",
                dir.to_str().unwrap(),
                "--model-card",
                card.to_str().unwrap(),
                "--revalidate-by",
                "2099-01-01T00:00:00Z",
            ],
        ));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let v = "/v1/models/fraud/versions/1";
        as_(&s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await.unwrap();
        as_(&s, "ana").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
        as_(&s, "bo").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
        as_(&s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-1"})).await.unwrap();
        as_(&s, "rm")
            .put("/v1/models/fraud/aliases/production", &json!({"version": "1", "chg_id": "CHG-2"}))
            .await
            .unwrap();
    });

    let out = run_py(&py, CLIENT, &[], &[("FULCRUM", s.url.as_str())]);
    assert_eq!(out["model"]["name"], "fraud");
    assert_eq!(out["model"]["aliases"], json!({"production": "1"}));
    assert!(out["model"]["created"].as_i64().unwrap() > 1_700_000_000_000, "epoch milliseconds: {out}");
    assert_eq!(out["search"], json!(["fraud"]));
    assert_eq!(out["search_none"], json!([]));
    assert_eq!(out["by_alias"], json!({"version": "1", "stage": "Production", "aliases": ["production"]}));
    assert_eq!(out["v2"], "None", "a Candidate reads as MLflow's stage None");
    assert_eq!(out["versions"], json!(["1", "2"]));
    assert_eq!(out["missing_model"][0], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(out["missing_version"][0], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(out["bad_filter"][0], "INVALID_PARAMETER_VALUE");
    assert_eq!(out["exists"][0], "RESOURCE_ALREADY_EXISTS");
    assert_eq!(out["created"], "churn");
    for refused in ["delete_version", "delete_model"] {
        assert_eq!(out[refused][0], "PERMISSION_DENIED", "{refused}: {out}");
        let why = out[refused][1].as_str().unwrap();
        assert!(
            why.contains("immutable and auditable") && why.contains("role_forbids:delete_version"),
            "the policy's reason: {why}"
        );
    }
    // The governed alias move: a Candidate may not go to production (the policy's reason)…
    assert_eq!(out["alias_unapproved"][0], "PERMISSION_DENIED", "{out}");
    assert!(out["alias_unapproved"][1].as_str().unwrap().contains("stage_not_allowed"), "{out}");
    // …but may to a dev alias.
    assert_eq!(out["alias_dev"], Value::Null, "{out}");
    assert_eq!(out["dev_alias"], "2");
    // Stage transitions are governed promotions: Staging is allowed, Production needs four-eyes
    // first, Archived is a revocation MLflow cannot ask for.
    assert_eq!(out["to_staging"], "Staging");
    assert_eq!(out["to_production"][0], "PERMISSION_DENIED", "{out}");
    assert!(out["to_production"][1].as_str().unwrap().contains("four_eyes"), "{out}");
    assert_eq!(out["to_archived"][0], "PERMISSION_DENIED");
    assert_eq!(out["latest"], json!({"Production": "1", "Staging": "2"}));
    assert_eq!(out["latest_prod"], json!(["1"]));
    // The serving identity loads production through MLflow and predicts like the saved model.
    assert_eq!(out["predictions"], expected["predictions"], "{out}");
    // A Candidate is not loadable by a prod serving identity: the download gate refuses.
    assert!(out["load_candidate"].is_array(), "refused: {out}");
    assert_eq!(out["load_by_number"], expected["predictions"], "models:/fraud/1: {out}");
    // `latest` is version 2 (the client asks for the newest version), a Candidate: refused.
    let latest = out["load_latest"][1].as_str().unwrap_or_else(|| panic!("refused: {out}"));
    assert!(latest.contains("fulcrum/fraud/2") && latest.contains("stage_not_allowed"), "{latest}");
    // Tenant isolation through every door MLflow uses.
    for call in ["other_get", "other_alias", "other_load"] {
        assert!(out[call].is_array(), "{call} refused: {out}");
    }
    assert_eq!(out["other_get"][0], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(out["other_alias"][0], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(out["other_search"], json!([]), "no other tenant's model is listed");
    assert_eq!(out["other_file"], json!([404, "RESOURCE_DOES_NOT_EXIST"]));
    assert_eq!(out["other_list"], json!([404, "RESOURCE_DOES_NOT_EXIST"]));
    assert_eq!(out["delete_dev_alias"], Value::Null, "{out}");
    assert_eq!(out["dev_alias_gone"][0], "RESOURCE_DOES_NOT_EXIST", "{out}");
    // Tags and descriptions read back; Fulcrum's own facts stay beside them.
    assert_eq!(out["v2_described"], "challenger");
    assert_eq!(out["model_tags"], json!({"team": "risk"}));
    assert_eq!(out["model_description"], "scores card payments");
    assert_eq!(out["v1_tags"], json!({"validated": "yes"}));
    assert_eq!(out["v1_facts"], json!(["fulcrum.artifact_digest", "fulcrum.hold", "fulcrum.stage"]));
    assert_eq!(out["by_tag"], json!(["1"]));
    assert_eq!(out["by_tag_model"], json!(["churn", "fraud"]), "a label and an annotation are both tags");
    assert_eq!(out["label_tag"][0], "PERMISSION_DENIED", "{out}");
    assert!(out["label_tag"][1].as_str().unwrap().contains("labels"), "{out}");
    assert_eq!(out["fact_tag"][0], "PERMISSION_DENIED", "{out}");
    assert_eq!(out["rename"][0], "PERMISSION_DENIED", "{out}");
    assert_eq!(out["v2_tags"], json!({}));
    assert_eq!(out["delete_missing_tag"][0], "RESOURCE_DOES_NOT_EXIST", "{out}");
    assert_eq!(out["tag_missing_version"][0], "RESOURCE_DOES_NOT_EXIST", "{out}");
    assert_eq!(out["viewer_tag"][0], "PERMISSION_DENIED", "a viewer annotates nothing: {out}");
    // copy_model_version: the same bytes as a new Candidate of another model, its tags carried.
    assert_eq!(out["copied"].as_array().unwrap()[0..3], [json!("1"), json!("READY"), json!("yes")], "{out}");
    assert_eq!(out["copied"][3], out["source_digest"], "the same artifact: {out}");
    assert_eq!(out["webhooks"], json!([404, "ENDPOINT_NOT_FOUND"]), "{out}");
    assert_eq!(out["no_token"], json!([401, "UNAUTHENTICATED"]), "refusals before a handler speak MLflow too: {out}");
    assert_eq!(out["bad_body"], json!([400, "INVALID_PARAMETER_VALUE"]), "{out}");
    assert_eq!(out["asc"], json!(["1", "2"]));
    assert_eq!(out["desc"], json!(["2", "1"]));
    assert_eq!(out["pages"], json!([["1"], ["2"], ""]), "the last page has no next token: {out}");
    assert_eq!(out["models_desc"], json!(["fraud", "churn"]));
    assert_eq!(out["all_versions"], json!(["fraud/1", "fraud/2"]));
    assert_eq!(out["by_number"], json!(["2"]));
    assert_eq!(out["bad_version_filter"][0], "INVALID_PARAMETER_VALUE", "{out}");
    assert_eq!(out["bad_order"][0], "INVALID_PARAMETER_VALUE", "{out}");
    // A site policy that lets admins retire never-served Candidates: a delete then retires the
    // copy nobody served (revoked, kept, read as Archived); a version an alias named, and the
    // model itself, are still kept.
    rt.block_on(async {
        let modules: std::collections::BTreeMap<&str, &str> = fulcrum_policy::DEFAULT_MODULES.into_iter().collect();
        let mut data: Value = serde_json::from_str(fulcrum_policy::DEFAULT_DATA).unwrap();
        data["fulcrum"]["roles"]["admin"].as_array_mut().unwrap().push(json!("delete_version"));
        as_(&s, "policy").put("/v1/policy", &json!({"modules": modules, "data": data})).await.unwrap();
    });
    let deletes = run_py(
        &py,
        r#"
import json, os
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
url = os.environ["FULCRUM"]; os.environ["MLFLOW_TRACKING_TOKEN"] = "t-admin"
c = MlflowClient(tracking_uri=url, registry_uri=url)
def code(f):
    try:
        f(); return None
    except MlflowException as e:
        return [e.error_code, str(e)]
out = {"no_change_id": code(lambda: c.delete_model_version("churn", "1"))}
# A retirement is a revocation: it carries a change id (MLflow's request has no field for one).
import requests
r = requests.delete(url + "/api/2.0/mlflow/model-versions/delete", json={"name": "churn", "version": "1"},
                    headers={"Authorization": "Bearer t-admin", "Fulcrum-Change-Id": "CHG-77"})
out["retire"] = [r.status_code, r.json()]
out["retired"] = c.get_model_version("churn", "1").current_stage
out["named"] = code(lambda: c.delete_model_version("fraud", "2"))
# The kill switch holds through a copy: a revoked version's bytes are not copied into a new one.
out["copy_revoked"] = code(lambda: c.copy_model_version("models:/churn/1", "fraud"))
out["model"] = code(lambda: c.delete_registered_model("churn"))
print(json.dumps(out))
"#,
        &[],
        &[("FULCRUM", s.url.as_str())],
    );
    assert_eq!(deletes["no_change_id"][0], "INVALID_PARAMETER_VALUE", "{deletes}");
    assert!(deletes["no_change_id"][1].as_str().unwrap().contains("chg_id"), "{deletes}");
    assert_eq!(deletes["retire"], json!([200, {}]), "{deletes}");
    assert_eq!(deletes["retired"], "Archived", "{deletes}");
    assert_eq!(deletes["named"][0], "PERMISSION_DENIED", "{deletes}");
    assert!(deletes["named"][1].as_str().unwrap().contains("named by an alias"), "{deletes}");
    // (The client wraps any copy failure in its own exception; Fulcrum's refusal is inside.)
    let copy = deletes["copy_revoked"][1].as_str().unwrap();
    assert!(copy.contains("PERMISSION_DENIED: churn 1 is revoked"), "{deletes}");
    assert_eq!(deletes["model"][0], "PERMISSION_DENIED", "{deletes}");
    assert!(deletes["model"][1].as_str().unwrap().contains("never deleted"), "{deletes}");
    rt.block_on(async {
        let churn = as_(&s, "viewer").get("/v1/models/churn/versions/1").await.unwrap();
        assert_eq!((churn["hold"].as_str(), churn["revoked"].as_bool()), (Some("revoked"), Some(true)), "{churn}");
        assert!(churn["hold_reason"].as_str().unwrap().contains("retired through MLflow"), "{churn}");
        let fraud = as_(&s, "viewer").get("/v1/models/fraud/versions").await.unwrap();
        assert_eq!(fraud["items"].as_array().unwrap().len(), 2, "the refused copy left no version: {fraud}");
        let prod = as_(&s, "viewer").get("/v1/models/fraud/aliases/production").await.unwrap();
        assert_eq!(prod["version"], "1", "the refused move changed nothing");
        // Each annotation is an event in the ledgered log, with who made it.
        let evs = as_(&s, "viewer").get("/v1/events?model=fraud&types=annotated&limit=1000").await.unwrap();
        let details: Vec<(String, String)> = evs["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (e["data"]["detail"].as_str().unwrap().to_owned(), e["data"]["actor"].as_str().unwrap().to_owned())
            })
            .collect();
        assert!(details.contains(&("tag team set".into(), "ci".into())), "{details:?}");
        assert!(details.contains(&("description updated".into(), "ci".into())), "{details:?}");
        assert!(details.contains(&("tag validated deleted".into(), "ci".into())), "{details:?}");
        assert_eq!(
            details.len(),
            6,
            "three tags set, two descriptions, one removal — refusals log nothing: {details:?}"
        );
    });
}

const LOG_AND_REGISTER: &str = r#"
import json, os, numpy as np, mlflow, mlflow.sklearn
from sklearn.linear_model import LogisticRegression
mlflow.set_tracking_uri(os.environ["TRACKING"]); mlflow.set_registry_uri(os.environ["FULCRUM"])
os.environ["MLFLOW_TRACKING_TOKEN"] = "t-ci"
X = np.array([[0.0, 0.1], [0.2, 0.0], [1.0, 0.9], [0.9, 1.2]]); y = np.array([0, 0, 1, 1])
out = []
for i in range(2):
    m = LogisticRegression(C=1.0 + i).fit(X, y if i == 0 else 1 - y)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(m, name="model")
    # What the release policy asks for before Approved, as registration tags (signed into the card).
    card = {"fulcrum.card.owner": "credit-risk", "fulcrum.card.intended_use": "retail credit scoring",
            "fulcrum.revalidate_by": "2099-01-01T00:00:00Z"}
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", "credit", tags=card)
    out.append({"version": mv.version, "source": mv.source, "status": mv.status, "stage": mv.current_stage,
                "run_id": mv.run_id, "expected_run": run.info.run_id,
                "predictions": m.predict(np.array([[0.1, 0.1], [1.0, 1.0]])).tolist()})
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
import threading
c = MlflowClient(tracking_uri=os.environ["TRACKING"], registry_uri=os.environ["FULCRUM"])
def code(f):
    try:
        f(); return None
    except MlflowException as e:
        return [e.error_code, str(e)]
source = out[-1]["source"]  # the logged model the last run registered (models:/m-…)
tagged = c.create_model_version("credit", source, run.info.run_id, tags={"trained_on": "2026-11"}, description="retrained")
extra = {"tagged": [tagged.version, tagged.status, tagged.tags.get("trained_on"), tagged.description]}
# Three registrations at once take three numbers.
got = []
def reg(): got.append(c.create_model_version("credit", source, run.info.run_id).version)
ts = [threading.Thread(target=reg) for _ in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
extra["concurrent"] = sorted(got, key=int)
extra["local"] = c.create_model_version("credit", os.environ["LOCAL"]).status
extra["s3"] = [c.create_model_version("credit", "s3://mlflow/1/abc/artifacts/model").status,
               c.get_model_version("credit", "8").source]
extra["s3_missing"] = code(lambda: c.create_model_version("credit", "s3://mlflow/nothing/here"))
extra["local_outside"] = code(lambda: c.create_model_version("credit", os.environ["OUTSIDE"]))
extra["bad_source"] = code(lambda: c.create_model_version("credit", "hdfs://x/y"))
extra["by_run"] = sorted((v.version for v in c.search_model_versions(f"run_id = '{run.info.run_id}'")), key=int)
print(json.dumps({"registered": out, "extra": extra}))
"#;

/// Against a registry whose release policy requires an SBOM (and which answers at once): the
/// client sees the registration pending, then failed with the gate's reason.
const REGISTER_REFUSED: &str = r#"
import json, os, numpy as np, mlflow, mlflow.sklearn
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression
mlflow.set_tracking_uri(os.environ["TRACKING"]); mlflow.set_registry_uri(os.environ["FULCRUM"])
os.environ["MLFLOW_TRACKING_TOKEN"] = "t-ci"
c = MlflowClient(tracking_uri=os.environ["TRACKING"], registry_uri=os.environ["FULCRUM"])
X = np.array([[0.0, 0.1], [0.2, 0.0], [1.0, 0.9], [0.9, 1.2]]); y = np.array([0, 0, 1, 1])
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="model")
out = {}
first = c.create_model_version("credit", info.model_uri, run.info.run_id, await_creation_for=0)
out["first"] = [first.version, first.status]
try:
    mlflow.register_model(f"runs:/{run.info.run_id}/model", "credit")
    out["register"] = None
except MlflowException as e:
    out["register"] = str(e)
mv = c.get_model_version("credit", "1")
out["failed"] = [mv.status, mv.status_message]
out["local_without_root"] = None
try:
    c.create_model_version("credit", "/tmp")
except MlflowException as e:
    out["local_without_root"] = [e.error_code, str(e)]
print(json.dumps(out))
"#;

/// `mlflow.register_model` against Fulcrum: the version's bytes are copied from the real
/// tracking server's logged model, hashed here, and match the files MLflow stored byte for byte;
/// the version is a Candidate, numbered as MLflow would, and its `source` reads back as given.
#[test]
fn register_model_imports_the_logged_models_bytes_from_the_tracking_server() {
    let Some(py) = python() else { return };
    let work = tempfile::tempdir().unwrap();
    let tracking = MlflowServer::start(&py, work.path());
    let local_root = work.path().join("local");
    let local = local_root.join("m1");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    std::fs::write(local.join("MLmodel"), "flavors: {}\n").unwrap();
    std::fs::write(local.join("sub/weights.bin"), vec![7u8; 4096]).unwrap();
    // MLflow artifacts kept in S3 (SeaweedFS), read with the registry's own S3 settings.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let weed = s3_artifacts(&rt);
    let endpoint = format!("http://127.0.0.1:{}", weed.s3);
    let keys = tempfile::tempdir().unwrap();
    let (ak, sk) = (keys.path().join("ak"), keys.path().join("sk"));
    std::fs::write(&ak, "fulcrum").unwrap();
    std::fs::write(&sk, "fulcrum-secret").unwrap();
    // Serving identities come from the company IdP: MLflow sends its access token as a bearer.
    let client = json!([{"client_id": "scorer", "client_secret": "scorer-secret-0123456789", "tenant_id": "acme",
                         "domain": "*", "role": "serving", "env": "prod", "access_token_ttl": 600}]);
    let idp = fulcrum_oidc::test_idp::TestIdp::start("ES256", "urn:fulcrum", client)
        .expect("the test IdP is installed by scripts/test.sh");
    let oidc = keys.path().join("oidc.json");
    std::fs::write(&oidc, json!({"issuers": [{"issuer": idp.issuer, "audience": "urn:fulcrum"}]}).to_string()).unwrap();
    let s = common::serve_with(
        &[
            "--oidc-config",
            oidc.to_str().unwrap(),
            "--mlflow-tracking-uri",
            &tracking.url,
            "--mlflow-local-source-root",
            local_root.to_str().unwrap(),
            "--mlflow-s3-endpoint",
            &endpoint,
            "--mlflow-s3-access-key-file",
            ak.to_str().unwrap(),
            "--mlflow-s3-secret-key-file",
            sk.to_str().unwrap(),
        ],
        tempfile::tempdir().unwrap(),
    );
    ok(&run_as(&s, "ci", &["model", "create", "credit", "--domain", "credit"]));
    let env = [
        ("TRACKING", tracking.url.as_str()),
        ("FULCRUM", s.url.as_str()),
        ("LOCAL", local.to_str().unwrap()),
        ("OUTSIDE", work.path().to_str().unwrap()),
    ];
    let all = run_py(&py, LOG_AND_REGISTER, &[], &env);
    let (out, extra) = (&all["registered"], &all["extra"]);
    assert_eq!(extra["tagged"], json!(["3", "READY", "2026-11", "retrained"]), "{all}");
    assert_eq!(extra["concurrent"], json!(["4", "5", "6"]), "three at once, three numbers: {all}");
    assert_eq!(extra["local"], "READY", "{all}");
    assert_eq!(extra["s3"], json!(["READY", "s3://mlflow/1/abc/artifacts/model"]), "{all}");
    assert!(extra["s3_missing"][1].as_str().unwrap().contains("no files"), "an empty prefix fails: {all}");
    assert_eq!(extra["local_outside"][0], "PERMISSION_DENIED", "outside the development root: {all}");
    assert_eq!(extra["bad_source"][0], "INVALID_PARAMETER_VALUE", "{all}");
    assert_eq!(extra["by_run"], json!(["2", "3", "4", "5", "6"]), "version search by run id: {all}");
    for (i, v) in out.as_array().unwrap().iter().enumerate() {
        assert_eq!(v["version"], (i + 1).to_string(), "{out}");
        assert!(v["source"].as_str().unwrap().starts_with("models:/m-"), "the source as the client gave it: {out}");
        assert_eq!(v["status"], "READY");
        assert_eq!(v["stage"], "None", "a Candidate");
        assert_eq!(v["run_id"], v["expected_run"]);
    }
    // Every file Fulcrum holds for version 1 is byte for byte what MLflow stored.
    let version = rt.block_on(async { as_(&s, "viewer").get("/v1/models/credit/versions/1").await.unwrap() });
    let card = &version["release"]["model_card"];
    assert_eq!(
        (card["owner"].as_str(), card["intended_use"].as_str()),
        (Some("credit-risk"), Some("retail credit scoring"))
    );
    assert_eq!(version["release"]["revalidate_by"], "2099-01-01T00:00:00Z");
    let files = version["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(names.contains(&"MLmodel") && names.iter().any(|n| n.starts_with("model.")), "{names:?}");
    let stored: Vec<PathBuf> = walk(&work.path().join("artifacts"));
    for f in files {
        let path = f["path"].as_str().unwrap();
        let on_disk = stored
            .iter()
            .filter(|p| p.ends_with(path))
            .map(|p| format!("sha256:{}", sha256_hex(&std::fs::read(p).unwrap())))
            .collect::<Vec<_>>();
        assert!(on_disk.contains(&f["digest"].as_str().unwrap().to_owned()), "{path}: {on_disk:?} vs {f}");
    }
    // From training to serving through MLflow's API: version 1, registered by MLflow above, is
    // governed to production (four-eyes, change ids), then a serving identity holding an OIDC
    // access token loads `models:/credit@production` with MLflow and predicts like the trained
    // model; a token the IdP did not issue is refused.
    rt.block_on(async {
        let v = "/v1/models/credit/versions/1";
        as_(&s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Staging"})).await.unwrap();
        as_(&s, "ana").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
        as_(&s, "bo").post(&format!("{v}/approvals"), &json!({})).await.unwrap();
        as_(&s, "rm").post(&format!("{v}/promotions"), &json!({"to": "Approved", "chg_id": "CHG-1"})).await.unwrap();
        as_(&s, "rm")
            .put("/v1/models/credit/aliases/production", &json!({"version": "1", "chg_id": "CHG-2"}))
            .await
            .unwrap();
    });
    let jwt = rt.block_on(idp.token("scorer", "scorer-secret-0123456789"));
    let serve_script = r#"
import json, os, numpy as np, mlflow.pyfunc
from mlflow.exceptions import MlflowException
mlflow.set_registry_uri(os.environ["FULCRUM"]); mlflow.set_tracking_uri(os.environ["FULCRUM"])
out = {"predictions": mlflow.pyfunc.load_model("models:/credit@production").predict(np.array([[0.1, 0.1], [1.0, 1.0]])).tolist()}
os.environ["MLFLOW_TRACKING_TOKEN"] = "forged." + os.environ["MLFLOW_TRACKING_TOKEN"]
try:
    mlflow.pyfunc.load_model("models:/credit@production"); out["forged"] = None
except MlflowException as e:
    out["forged"] = e.error_code
print(json.dumps(out))
"#;
    let served = run_py(
        &py,
        serve_script,
        &[],
        &[
            ("FULCRUM", s.url.as_str()),
            ("MLFLOW_TRACKING_TOKEN", jwt.as_str()),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20"),
        ],
    );
    assert_eq!(served["predictions"], out[0]["predictions"], "{served} vs {out}");
    assert_ne!(out[0]["predictions"], out[1]["predictions"], "two different models were trained");
    assert_eq!(served["forged"], "UNAUTHENTICATED", "{served}");

    // The local source, in development: its files as they are on disk.
    let v7 = rt.block_on(async { as_(&s, "viewer").get("/v1/models/credit/versions/7").await.unwrap() });
    let mut got: Vec<(String, String)> = v7["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_owned(), f["digest"].as_str().unwrap().to_owned()))
        .collect();
    got.sort();
    let want = vec![
        ("MLmodel".to_owned(), format!("sha256:{}", sha256_hex(b"flavors: {}\n"))),
        ("sub/weights.bin".to_owned(), format!("sha256:{}", sha256_hex(&[7u8; 4096]))),
    ];
    assert_eq!(got, want);
    let v8 = rt.block_on(async { as_(&s, "viewer").get("/v1/models/credit/versions/8").await.unwrap() });
    let got: Vec<(String, String)> = v8["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_owned(), f["digest"].as_str().unwrap().to_owned()))
        .collect();
    let want: Vec<(String, String)> =
        S3_FILES.iter().map(|(p, b)| ((*p).to_owned(), format!("sha256:{}", sha256_hex(b)))).collect();
    assert_eq!(got, want, "the S3 objects, byte for byte");

    // A registry whose release gate requires an SBOM, answering at once (the client polls).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("release-policy.json"), r#"{"require": ["sbom"]}"#).unwrap();
    let policy = dir.path().join("release-policy.json");
    let gated = common::serve_with(
        &[
            "--mlflow-tracking-uri",
            &tracking.url,
            "--release-policy",
            policy.to_str().unwrap(),
            "--mlflow-register-wait",
            "0",
        ],
        dir,
    );
    ok(&run_as(&gated, "ci", &["model", "create", "credit", "--domain", "credit"]));
    let out =
        run_py(&py, REGISTER_REFUSED, &[], &[("TRACKING", tracking.url.as_str()), ("FULCRUM", gated.url.as_str())]);
    assert_eq!(out["first"], json!(["1", "PENDING_REGISTRATION"]), "answered before the copy: {out}");
    let refused = out["register"].as_str().unwrap_or_else(|| panic!("the gate refuses: {out}"));
    assert!(refused.contains("FAILED_REGISTRATION") && refused.contains("sbom"), "{refused}");
    assert!(refused.contains("version: 2"), "the next number: {refused}");
    assert_eq!(out["failed"][0], "FAILED_REGISTRATION", "{out}");
    assert!(out["failed"][1].as_str().unwrap().contains("sbom"), "the gate's reason: {out}");
    assert_eq!(out["local_without_root"][0], "PERMISSION_DENIED", "{out}");
    assert!(out["local_without_root"][1].as_str().unwrap().contains("development"), "{out}");
    rt.block_on(async {
        let versions = as_(&gated, "viewer").get("/v1/models/credit/versions").await.unwrap();
        assert_eq!(versions["items"], json!([]), "a refused registration leaves no version: {versions}");
    });

    // Behind a proxy, the URIs the registry hands out start with its public URL.
    let proxied = common::serve_with(&["--public-url", "https://registry.bank.example/"], tempfile::tempdir().unwrap());
    ok(&run_as(&proxied, "ci", &["model", "create", "credit", "--domain", "credit"]));
    ok(&run_as(&proxied, "ci", &["version", "register", "credit", "1", "--dir", local.to_str().unwrap()]));
    let uri = rt.block_on(async {
        as_(&proxied, "viewer")
            .get("/api/2.0/mlflow/model-versions/get-download-uri?name=credit&version=1")
            .await
            .unwrap()
    });
    assert_eq!(
        uri["artifact_uri"],
        "https://registry.bank.example/api/2.0/mlflow-artifacts/artifacts/fulcrum/credit/1"
    );
}

/// The objects an MLflow run left in S3 (under `1/abc/artifacts/model/`).
const S3_FILES: [(&str, &[u8]); 2] =
    [("MLmodel", b"flavors:\n  python_function: {}\n"), ("data/model.pkl", &[3u8; 9000])];

/// SeaweedFS with a bucket `mlflow` holding [`S3_FILES`].
fn s3_artifacts(rt: &tokio::runtime::Runtime) -> fulcrum_testkit::Weed {
    use object_store::ObjectStoreExt as _;
    let weed = fulcrum_testkit::Weed::start().expect("SeaweedFS is installed by scripts/test.sh");
    let endpoint = format!("http://127.0.0.1:{}", weed.s3);
    rt.block_on(async {
        let worm = fulcrum_store::s3::S3Worm::new(fulcrum_store::s3::S3Config {
            endpoint: endpoint.clone(),
            bucket: "mlflow".into(),
            region: "us-east-1".into(),
            access_key: "fulcrum".into(),
            secret_key: "fulcrum-secret".into(),
        })
        .unwrap();
        fulcrum_testkit::eventually(|| worm.create_bucket(false)).await.unwrap();
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("mlflow")
            .with_region("us-east-1")
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_access_key_id("fulcrum")
            .with_secret_access_key("fulcrum-secret")
            .build()
            .unwrap();
        for (p, b) in S3_FILES {
            let key = object_store::path::Path::from(format!("1/abc/artifacts/model/{p}"));
            s3.put(&key, b.to_vec().into()).await.unwrap();
        }
    });
    weed
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    fulcrum_core::Digest::of(bytes).hex()
}

/// An MLflow registry as teams have one: three models, three versions each (scikit-learn models
/// logged in runs), tags, a stage set the old way, and aliases. Prints, per version, each file's
/// sha256 as MLflow itself serves it.
const POPULATE: &str = r#"
import hashlib, json, os, pathlib, tempfile, numpy as np, mlflow, mlflow.sklearn, mlflow.artifacts
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
url = os.environ["TRACKING"]
mlflow.set_tracking_uri(url); mlflow.set_registry_uri(url)
c = MlflowClient(tracking_uri=url, registry_uri=url)
X = np.array([[0.0, 0.1], [0.2, 0.0], [1.0, 0.9], [0.9, 1.2]]); y = np.array([0, 0, 1, 1])
files = {}
for name in ["fraud-a", "fraud-b", "fraud-c"]:
    c.create_registered_model(name, tags={"team": "risk"}, description=f"{name} scorer")
    for i in range(3):
        with mlflow.start_run() as run:
            mlflow.sklearn.log_model(LogisticRegression(C=1.0 + i).fit(X, y), name="model")
        mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
        c.set_model_version_tag(name, mv.version, "validated", "yes" if i < 2 else "no")
        d = mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}", dst_path=tempfile.mkdtemp())
        root = pathlib.Path(d)
        files[f"{name}/{mv.version}"] = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                                         for p in root.rglob("*") if p.is_file() and p.name != "registered_model_meta"}
        # (registered_model_meta is written by the client on download; MLflow stores no such file)
    c.set_registered_model_alias(name, "champion", "3")
    c.set_registered_model_alias(name, "challenger", "2")
c.set_registered_model_alias("fraud-a", "production", "1")
c.set_model_version_tag("fraud-a", "1", "fulcrum.card.owner", "fraud-team")
c.set_model_version_tag("fraud-a", "1", "fulcrum.revalidate_by", "2099-01-01T00:00:00Z")
c.transition_model_version_stage("fraud-b", "1", "Production")
print(json.dumps(files))
"#;

/// `fulcrum import mlflow` from a real MLflow server: a dry run changes nothing; a partial run
/// then the full run import every version with every byte checked against what MLflow serves,
/// keep MLflow's history in the model card, carry tags over, and recreate aliases through the
/// governed path (a production alias on a Candidate is refused with the policy's reason); a label
/// Fulcrum already holds from elsewhere is a conflict, never overwritten (and no alias is moved
/// onto it); running again changes nothing.
#[test]
fn import_mlflow_copies_a_registry_idempotently_through_the_governed_path() {
    let Some(py) = python() else { return };
    let work = tempfile::tempdir().unwrap();
    let tracking = MlflowServer::start(&py, work.path());
    let expected = run_py(&py, POPULATE, &[], &[("TRACKING", tracking.url.as_str())]);
    let s = serve();
    let report = s.dir.path().join("import-report.json");
    let import = |extra: &[&str]| {
        let mut args =
            vec!["import", "mlflow", "--tracking-uri", tracking.url.as_str(), "--domain", "fraud", "--chg-id", "CHG-9"];
        args.extend_from_slice(extra);
        run_as(&s, "admin", &args)
    };
    let read_report = || -> Value { serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap() };
    let rt = tokio::runtime::Runtime::new().unwrap();

    // A dry run plans everything and changes nothing.
    ok(&import(&["--dry-run", "--report", report.to_str().unwrap()]));
    let r = read_report();
    assert_eq!(r["totals"]["versions_planned"], 9, "{r}");
    assert_eq!(r["totals"]["aliases_planned"], 7, "{r}");
    assert_eq!(r["totals"]["versions_imported"], 0);
    let models = rt.block_on(async { as_(&s, "viewer").get("/v1/models").await.unwrap() });
    assert_eq!(models["items"], json!([]), "a dry run creates nothing: {models}");

    // Fulcrum already holds fraud-c 2, from elsewhere.
    ok(&run_as(&s, "admin", &["model", "create", "fraud-c", "--domain", "fraud"]));
    let other = work.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("weights.bin"), b"not the MLflow version").unwrap();
    ok(&run_as(&s, "ci", &["version", "register", "fraud-c", "2", "--dir", other.to_str().unwrap()]));

    // One model first (an interrupted migration), then everything.
    ok(&import(&["--model", "fraud-a"]));
    let full = import(&["--report", report.to_str().unwrap()]);
    assert!(!full.status.success(), "a conflict fails the run");
    let err = String::from_utf8_lossy(&full.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("could not be imported"), "{err}");
    let r = read_report();
    let t = &r["totals"];
    assert_eq!((t["versions_imported"].as_u64(), t["versions_unchanged"].as_u64()), (Some(5), Some(3)), "{r}");
    assert_eq!(t["conflicts_or_failures"], 1, "{r}");
    let outcome = |m: &str, what: &str, key: &str, id: &str| -> Value {
        r["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == m)
            .and_then(|x| x[what].as_array().unwrap().iter().find(|v| v[key] == id).cloned())
            .unwrap_or(Value::Null)
    };
    assert_eq!(outcome("fraud-c", "versions", "version", "2")["outcome"], "conflict", "{r}");
    assert_eq!(outcome("fraud-c", "aliases", "alias", "challenger")["outcome"], "skipped", "{r}");
    assert_eq!(outcome("fraud-b", "aliases", "alias", "champion")["outcome"], "set", "{r}");
    assert_eq!(outcome("fraud-a", "aliases", "alias", "champion")["outcome"], "unchanged", "set by the first run: {r}");
    let prod = outcome("fraud-a", "aliases", "alias", "production");
    assert_eq!(prod["outcome"], "refused", "a production alias on a Candidate: {r}");
    assert!(prod["detail"].as_str().unwrap().contains("stage_not_allowed"), "the policy's reason: {prod}");

    rt.block_on(async {
        // Every imported version holds exactly the bytes MLflow serves for it.
        for (key, files) in expected.as_object().unwrap() {
            let (m, v) = key.split_once('/').unwrap();
            let got = as_(&s, "viewer").get(&format!("/v1/models/{m}/versions/{v}")).await.unwrap();
            if key == "fraud-c/2" {
                assert_ne!(got["files"].as_array().unwrap().len(), files.as_object().unwrap().len());
                continue;
            }
            let mine: std::collections::BTreeMap<String, String> = got["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| (f["path"].as_str().unwrap().to_owned(), f["digest"].as_str().unwrap().to_owned()))
                .collect();
            let theirs: std::collections::BTreeMap<String, String> = files
                .as_object()
                .unwrap()
                .iter()
                .map(|(p, d)| (p.clone(), format!("sha256:{}", d.as_str().unwrap())))
                .collect();
            assert_eq!(mine, theirs, "{key}");
            assert_eq!(got["stage"], "Candidate", "{key}");
            let card = &got["release"]["model_card"]["mlflow"];
            assert_eq!(card["imported_from"]["name"], m);
            assert_eq!(card["tags"]["validated"], if v == "3" { "no" } else { "yes" });
        }
        // Card fields carried as `fulcrum.card.*` tags are signed into the release record.
        let a1 = as_(&s, "viewer").get("/v1/models/fraud-a/versions/1").await.unwrap();
        assert_eq!(a1["release"]["model_card"]["owner"], "fraud-team");
        assert_eq!(a1["release"]["revalidate_by"], "2099-01-01T00:00:00Z");
        // MLflow's stage is history in the card, not a promotion.
        let b1 = as_(&s, "viewer").get("/v1/models/fraud-b/versions/1").await.unwrap();
        assert_eq!(
            (b1["stage"].as_str(), b1["release"]["model_card"]["mlflow"]["stage"].as_str()),
            (Some("Candidate"), Some("Production"))
        );
        let champion = as_(&s, "viewer").get("/v1/models/fraud-b/aliases/champion").await.unwrap();
        assert_eq!(champion["version"], "3");
        let prod = as_(&s, "viewer").get("/v1/models/fraud-a/aliases/production").await;
        assert!(prod.is_err(), "the refused alias does not exist");
        let c2 = as_(&s, "viewer").get("/v1/models/fraud-c/aliases/challenger").await;
        assert!(c2.is_err(), "no alias moved onto the foreign version");
        let model = as_(&s, "viewer").get("/v1/models/fraud-a").await.unwrap();
        assert_eq!(model["labels"], json!({"team": "risk"}));
    });

    // Tags read back through Fulcrum's MLflow API.
    let tags = run_py(
        &py,
        r#"
import json, os
from mlflow import MlflowClient
os.environ["MLFLOW_TRACKING_TOKEN"] = "t-viewer"
c = MlflowClient(tracking_uri=os.environ["FULCRUM"], registry_uri=os.environ["FULCRUM"])
print(json.dumps(c.get_model_version("fraud-a", "3").tags.get("validated")))
"#,
        &[],
        &[("FULCRUM", s.url.as_str())],
    );
    assert_eq!(tags, "no");

    // Again: nothing new; the conflict is still reported, nothing overwritten.
    let again = import(&["--report", report.to_str().unwrap()]);
    assert!(!again.status.success());
    let r = read_report();
    assert_eq!(r["totals"]["versions_imported"], 0, "{r}");
    assert_eq!(r["totals"]["versions_unchanged"], 8, "{r}");
    assert_eq!(r["totals"]["aliases_unchanged"], 5, "{r}");
    let events = rt.block_on(async {
        as_(&s, "viewer").get("/v1/events?model=fraud-b&types=release_published&limit=1000").await.unwrap()
    });
    assert_eq!(events["events"].as_array().unwrap().len(), 3, "each version published once: {events}");
}
