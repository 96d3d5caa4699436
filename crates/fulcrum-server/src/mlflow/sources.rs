//! Where an MLflow version's files come from, and reading them: the tracking server's artifact
//! API (`models:/m-<id>`, `runs:/<run>/<path>`, `mlflow-artifacts:/<path>`), an S3 prefix
//! (`s3://bucket/prefix`, with the operator's S3 settings), or — in development only, when the
//! operator names a root directory — a local path under that root. Used by the registry's
//! `create_model_version` and by `fulcrum import mlflow`.

use std::path::{Path, PathBuf};

/// Most files one version may have (each file is bounded by the blob limit).
pub const MAX_FILES: usize = 10_000;

/// Where a version's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path under the tracking server's `mlflow-artifacts` root (resolved from a logged model
    /// or a run when needed).
    Tracking(TrackingSource),
    /// A version of this registry (`models:/<name>/<version>`, what `copy_model_version` sends):
    /// its files are already here.
    Registered { name: String, version: String },
    /// Every object under an S3 prefix.
    S3 { bucket: String, prefix: String },
    /// A local directory (development only).
    Local(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingSource {
    LoggedModel(String),
    Run { run: String, path: String },
    Artifacts(String),
}

/// One file a source holds: its path inside the version and, when the lister says, its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub size: Option<u64>,
}

/// A relative artifact path with no `..`, empty or absolute parts.
fn clean(rel: &str) -> Option<String> {
    let rel = rel.trim_matches('/');
    (!rel.is_empty() && !rel.split('/').any(|p| p.is_empty() || p == "." || p == "..")).then(|| rel.to_owned())
}

impl Source {
    /// Read a version's `source` as MLflow clients give it.
    ///
    /// # Errors
    /// A scheme not imported here, or a path that escapes.
    pub fn parse(source: &str) -> Result<Self, String> {
        if let Some((name, version)) = source.strip_prefix("models:/").and_then(|r| r.split_once('/')) {
            if fulcrum_core::names::ModelName::parse(name).is_err()
                || fulcrum_core::names::VersionLabel::parse(version).is_err()
            {
                return Err(format!("source {source:?}: models:/<name>/<version> names no version of this registry"));
            }
            return Ok(Self::Registered { name: name.to_owned(), version: version.to_owned() });
        }
        if let Some(id) = source.strip_prefix("models:/") {
            let id = id
                .strip_prefix("m-")
                .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric()))
                .ok_or_else(|| format!("source {source:?}: models:/ sources name a logged model (models:/m-<id>)"))?;
            return Ok(Self::Tracking(TrackingSource::LoggedModel(format!("m-{id}"))));
        }
        if let Some(rest) = source.strip_prefix("runs:/") {
            let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
            if run.is_empty() || !run.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("source {source:?} names no run"));
            }
            let path = if path.trim_matches('/').is_empty() {
                String::new()
            } else {
                clean(path).ok_or_else(|| format!("source {source:?}: bad artifact path"))?
            };
            return Ok(Self::Tracking(TrackingSource::Run { run: run.to_owned(), path }));
        }
        if let Some(rest) = source.strip_prefix("mlflow-artifacts:") {
            return clean(rest)
                .map(|p| Self::Tracking(TrackingSource::Artifacts(p)))
                .ok_or_else(|| format!("source {source:?} names no artifact path"));
        }
        if let Some(rest) = source.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            let prefix = clean(prefix)
                .filter(|_| bucket_ok)
                .ok_or_else(|| format!("source {source:?}: s3://<bucket>/<prefix>"))?;
            return Ok(Self::S3 { bucket: bucket.to_owned(), prefix });
        }
        let local = source.strip_prefix("file://").unwrap_or(source);
        if local.starts_with('/') {
            return Ok(Self::Local(PathBuf::from(local)));
        }
        Err(format!(
            "source {source:?}: models:/m-<id>, runs:/<run>/<path>, mlflow-artifacts:/<path>, \
             s3://<bucket>/<prefix> (or, in development, a local path) are imported"
        ))
    }
}

/// A local source checked against the operator's development root: it must exist and, with
/// every link followed, lie under the root.
///
/// # Errors
/// No root configured (local sources are refused in production), or a path outside it.
pub fn local_dir(path: &Path, root: Option<&Path>) -> Result<PathBuf, String> {
    let root = root.ok_or_else(|| {
        "local-path sources are read only in development (fulcrum serve --mlflow-local-source-root DIR)".to_owned()
    })?;
    let root = root.canonicalize().map_err(|e| format!("the local source root {}: {e}", root.display()))?;
    let dir = path.canonicalize().map_err(|e| format!("source {}: {e}", path.display()))?;
    if !dir.starts_with(&root) || !dir.is_dir() {
        return Err(format!("source {} is not a directory under the local source root", path.display()));
    }
    Ok(dir)
}

/// Every file under a local directory (links followed only inside it), sorted.
///
/// # Errors
/// Unreadable entries, too many files, or a link leaving the directory.
pub fn list_local(dir: &Path) -> Result<Vec<(Listed, PathBuf)>, String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| format!("{}: {e}", d.display()))?.path();
            let real = p.canonicalize().map_err(|e| format!("{}: {e}", p.display()))?;
            if !real.starts_with(dir) {
                return Err(format!("{} leaves the source directory", p.display()));
            }
            if real.is_dir() {
                todo.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).map_err(|_| "path outside the source".to_owned())?;
            let rel = rel.to_str().ok_or_else(|| format!("{} is not UTF-8", p.display()))?.replace('\\', "/");
            let size = real.metadata().map_err(|e| format!("{}: {e}", p.display()))?.len();
            out.push((Listed { path: rel, size: Some(size) }, real));
            if out.len() > MAX_FILES {
                return Err(format!("more than {MAX_FILES} files under the source"));
            }
        }
    }
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    Ok(out)
}

/// Where MLflow's S3 artifacts are and the keys to read them (re-read from their files).
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `None`: AWS itself; otherwise an S3-compatible endpoint (path-style).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: fulcrum_kms::Secret,
    pub secret_key: fulcrum_kms::Secret,
}

/// The objects under one S3 prefix.
#[derive(Debug)]
pub struct S3Reader {
    store: object_store::aws::AmazonS3,
    prefix: String,
}

impl S3Reader {
    /// # Errors
    /// Settings object storage refuses.
    pub fn new(s: &S3Settings, bucket: &str, prefix: &str) -> Result<Self, String> {
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&s.region)
            .with_access_key_id(s.access_key.get())
            .with_secret_access_key(s.secret_key.get());
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false).with_allow_http(e.starts_with("http://"));
        }
        let store = b.build().map_err(|e| format!("S3: {e}"))?;
        Ok(Self { store, prefix: prefix.to_owned() })
    }

    /// Every object under the prefix, as paths inside the version, sorted.
    ///
    /// # Errors
    /// S3 refusing, an unsafe key, or too many objects.
    pub async fn list(&self) -> Result<Vec<Listed>, String> {
        use futures_util::TryStreamExt as _;
        use object_store::ObjectStore as _;
        let prefix = object_store::path::Path::from(self.prefix.as_str());
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| format!("S3 listing {}: {e}", self.prefix))?;
        let mut out = Vec::new();
        for m in metas {
            let key = m.location.as_ref();
            let rel = key
                .strip_prefix(&self.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .and_then(clean)
                .ok_or_else(|| format!("S3 listed an unsafe key {key:?}"))?;
            out.push(Listed { path: rel, size: Some(m.size) });
            if out.len() > MAX_FILES {
                return Err(format!("more than {MAX_FILES} objects under the source"));
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// One object's bytes, as a stream.
    ///
    /// # Errors
    /// S3 refusing.
    pub async fn open(
        &self,
        rel: &str,
    ) -> Result<impl futures_util::Stream<Item = Result<axum::body::Bytes, object_store::Error>> + use<>, String> {
        use object_store::ObjectStoreExt as _;
        let key = object_store::path::Path::from(format!("{}/{rel}", self.prefix));
        let got = self.store.get(&key).await.map_err(|e| format!("S3 {key}: {e}"))?;
        Ok(got.into_stream())
    }
}

/// An MLflow tracking server's REST API (runs, logged models, the artifact proxy).
#[derive(Debug, Clone)]
pub struct Tracking {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Tracking {
    /// # Errors
    /// A base URL that is not http(s).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| format!("tracking URI {base}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("tracking URI {base}: http(s) only"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { http, base, token })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, url: reqwest::Url) -> reqwest::RequestBuilder {
        let r = self.http.get(url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<reqwest::Url, String> {
        let mut url = reqwest::Url::parse(&self.base).map_err(|e| format!("tracking URI: {e}"))?;
        url.path_segments_mut()
            .map_err(|()| "the tracking URI cannot take a path".to_owned())?
            .pop_if_empty()
            .extend(segments.iter().flat_map(|s| s.split('/')));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// A GET on the tracking server's API, as JSON.
    ///
    /// # Errors
    /// Unreachable, a non-2xx answer (with MLflow's message), or not JSON.
    pub async fn get(&self, path: &[&str], query: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        let url = self.url(path, query)?;
        let r = self.request(url.clone()).send().await.map_err(|e| format!("the MLflow tracking server: {e}"))?;
        let status = r.status();
        let body: serde_json::Value =
            r.json().await.map_err(|e| format!("the MLflow tracking server's answer to {url}: {e}"))?;
        if !status.is_success() {
            let msg = body["message"].as_str().unwrap_or_default();
            return Err(format!("the MLflow tracking server answered {status} for {}: {msg}", url.path()));
        }
        Ok(body)
    }

    /// The artifact path (under `mlflow-artifacts:/`) a tracking source names.
    ///
    /// # Errors
    /// The tracking server's refusal, or a logged model or run whose artifacts are not behind
    /// its artifact proxy.
    pub async fn artifact_root(&self, src: &TrackingSource) -> Result<String, String> {
        let uri = match src {
            TrackingSource::LoggedModel(id) => {
                let v = self.get(&["api/2.0/mlflow/logged-models", id], &[]).await?;
                v["model"]["info"]["artifact_uri"].as_str().unwrap_or_default().to_owned()
            }
            TrackingSource::Run { run, path } => {
                let v = self.get(&["api/2.0/mlflow/runs/get"], &[("run_id", run)]).await?;
                format!("{}/{path}", v["run"]["info"]["artifact_uri"].as_str().unwrap_or_default())
            }
            TrackingSource::Artifacts(p) => return Ok(p.clone()),
        };
        let rel = uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
            format!("artifacts at {uri:?} are not served by the tracking server's artifact proxy (mlflow-artifacts:/)")
        })?;
        clean(rel).ok_or_else(|| format!("artifact URI {uri:?} names no path"))
    }

    /// Every file under an artifact root, with sizes, sorted.
    ///
    /// # Errors
    /// The tracking server's refusal, an unsafe name, or too many files.
    pub async fn list(&self, root: &str) -> Result<Vec<Listed>, String> {
        let mut out = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            let path = if dir.is_empty() { root.to_owned() } else { format!("{root}/{dir}") };
            let listing = self.get(&["api/2.0/mlflow-artifacts/artifacts"], &[("path", &path)]).await?;
            for f in listing["files"].as_array().cloned().unwrap_or_default() {
                let name = f["path"].as_str().unwrap_or_default();
                if name.is_empty() || name.contains('/') || name == ".." || name == "." {
                    return Err(format!("the tracking server listed an unsafe path {name:?}"));
                }
                let rel = if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") };
                if f["is_dir"].as_bool() == Some(true) {
                    dirs.push(rel);
                } else {
                    out.push(Listed { path: rel, size: f["file_size"].as_u64() });
                    if out.len() > MAX_FILES {
                        return Err(format!("more than {MAX_FILES} files under the source"));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// One file's bytes, as a response to stream.
    ///
    /// # Errors
    /// Unreachable or a non-2xx answer.
    pub async fn open(&self, root: &str, rel: &str) -> Result<reqwest::Response, String> {
        let url = self.url(&["api/2.0/mlflow-artifacts/artifacts", root, rel], &[])?;
        let r = self.request(url).send().await.map_err(|e| format!("the MLflow tracking server: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("the tracking server answered {} for {rel}", r.status()));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_as_clients_give_them() {
        assert_eq!(
            Source::parse("models:/m-0a1b").unwrap(),
            Source::Tracking(TrackingSource::LoggedModel("m-0a1b".into()))
        );
        assert_eq!(
            Source::parse("runs:/abc123/model").unwrap(),
            Source::Tracking(TrackingSource::Run { run: "abc123".into(), path: "model".into() })
        );
        assert_eq!(
            Source::parse("mlflow-artifacts:/1/abc/artifacts/model").unwrap(),
            Source::Tracking(TrackingSource::Artifacts("1/abc/artifacts/model".into()))
        );
        assert_eq!(Source::parse("/srv/models/fraud").unwrap(), Source::Local("/srv/models/fraud".into()));
        assert_eq!(
            Source::parse("s3://mlflow-artifacts/1/abc/model").unwrap(),
            Source::S3 { bucket: "mlflow-artifacts".into(), prefix: "1/abc/model".into() }
        );
        assert_eq!(Source::parse("file:///srv/m").unwrap(), Source::Local("/srv/m".into()));
        assert_eq!(
            Source::parse("models:/fraud/1").unwrap(),
            Source::Registered { name: "fraud".into(), version: "1".into() }
        );
        for bad in [
            "models:/fraud",
            "models:/fraud/1/x",
            "models:/m-a/../b",
            "models:/m-!!",
            "runs:/../x",
            "runs:/abc/../../etc",
            "mlflow-artifacts:/a/../../b",
            "mlflow-artifacts:/",
            "relative/path",
            "hdfs://x/y",
            "s3:/half",
            "s3://bucket",
            "s3://Bucket_Upper/x",
            "s3://bucket/../x",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_sources_stay_under_the_root_and_need_one() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let m = root.path().join("m");
        std::fs::create_dir_all(m.join("sub")).unwrap();
        std::fs::write(m.join("MLmodel"), "x").unwrap();
        std::fs::write(m.join("sub/w.bin"), "yy").unwrap();
        assert!(local_dir(&m, None).unwrap_err().contains("development"));
        assert!(local_dir(outside.path(), Some(root.path())).is_err());
        assert!(local_dir(&m.join("../m/../../"), Some(root.path())).is_err(), "no way out through ..");
        let dir = local_dir(&m, Some(root.path())).unwrap();
        let files = list_local(&dir).unwrap();
        let names: Vec<(&str, Option<u64>)> = files.iter().map(|(l, _)| (l.path.as_str(), l.size)).collect();
        assert_eq!(names, [("MLmodel", Some(1)), ("sub/w.bin", Some(2))]);
        #[cfg(unix)]
        {
            std::fs::write(outside.path().join("secret"), "s").unwrap();
            std::os::unix::fs::symlink(outside.path().join("secret"), m.join("link")).unwrap();
            assert!(list_local(&dir).unwrap_err().contains("leaves"), "a link out of the source is refused");
        }
    }
}
