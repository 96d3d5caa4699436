//! The S3 backend, on `object_store` (its `aws` feature signs with aws-lc-rs, our one crypto
//! provider). Objects are `sha256/<hex>` in one bucket; keys are read from files on every
//! request that needs them, so rotated credentials are used without a restart.
//!
//! Why `object_store` here and a hand-signed client for WORM evidence (`crate::s3`): the library
//! has no per-object Object Lock headers (retention mode and date), which evidence needs; blobs
//! need none of that, and get multipart uploads, ranged reads, retries and pre-signed URLs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fulcrum_core::Digest;
use fulcrum_secret::Secret;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential};
use object_store::path::Path as Key;
use object_store::signer::Signer as _;
use object_store::{GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _};

use super::{BlobError, ByteStream};

/// `s3://BUCKET?endpoint=URL&region=R` plus keys from files.
#[derive(Debug, Clone)]
pub struct S3BlobConfig {
    pub bucket: String,
    /// `None`: AWS itself (virtual-hosted style); otherwise an S3-compatible endpoint (path style).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: Secret,
    pub secret_key: Secret,
}

impl S3BlobConfig {
    /// Parse `s3://BUCKET?endpoint=URL&region=R` (the keys come apart, from files).
    ///
    /// # Errors
    /// Anything else, with what is wrong.
    pub fn parse(url: &str, access_key: Secret, secret_key: Secret) -> Result<Self, BlobError> {
        let bad = |why: &str| BlobError::Config(format!("--blob-store {url:?}: {why}"));
        let u = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if u.scheme() != "s3" {
            return Err(bad("the scheme must be s3://"));
        }
        let bucket = u.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad("no bucket"))?.to_owned();
        if !(u.path().is_empty() || u.path() == "/") || !u.username().is_empty() || u.password().is_some() {
            return Err(bad(
                "only s3://BUCKET?endpoint=…&region=… (keys come from --s3-access-key-file and --s3-secret-key-file)",
            ));
        }
        let (mut endpoint, mut region) = (None, "us-east-1".to_owned());
        for (k, v) in u.query_pairs() {
            match &*k {
                "endpoint" => {
                    let e = reqwest::Url::parse(&v).map_err(|e| bad(&format!("endpoint: {e}")))?;
                    if !matches!(e.scheme(), "http" | "https") {
                        return Err(bad("the endpoint must be http(s)"));
                    }
                    endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                "region" => region = v.into_owned(),
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        Ok(Self { bucket, endpoint, region, access_key, secret_key })
    }
}

/// Credentials read from their files whenever they change (see [`Secret`]).
#[derive(Debug)]
struct FileCredentials {
    access_key: Secret,
    secret_key: Secret,
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for FileCredentials {
    type Credential = AwsCredential;
    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        Ok(Arc::new(AwsCredential { key_id: self.access_key.get(), secret_key: self.secret_key.get(), token: None }))
    }
}

#[derive(Debug, Clone)]
pub struct S3Blobs {
    s3: Arc<AmazonS3>,
    bucket: String,
    endpoint: Option<String>,
    spool: PathBuf,
}

fn key(d: &Digest) -> Key {
    Key::from(format!("sha256/{}", d.hex()))
}

fn remote(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { path, .. } => {
            BlobError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no object {path}")))
        }
        other => BlobError::Remote(other.to_string()),
    }
}

impl S3Blobs {
    pub(super) async fn open(cfg: S3BlobConfig, spool: &Path) -> Result<Self, BlobError> {
        let mut b = AmazonS3Builder::new().with_bucket_name(&cfg.bucket).with_region(&cfg.region).with_credentials(
            Arc::new(FileCredentials { access_key: cfg.access_key.clone(), secret_key: cfg.secret_key.clone() }),
        );
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false).with_allow_http(e.starts_with("http://"));
        }
        let s3 = b.build().map_err(|e| BlobError::Config(e.to_string()))?;
        std::fs::create_dir_all(spool)?;
        for e in std::fs::read_dir(spool)? {
            let _ = std::fs::remove_file(e?.path());
        }
        let me = Self { s3: Arc::new(s3), bucket: cfg.bucket, endpoint: cfg.endpoint, spool: spool.to_owned() };
        // Reachable, and the keys work: a listing of at most one object.
        let mut probe = me.s3.list(Some(&Key::from("sha256")));
        if let Some(Err(e)) = probe.next().await {
            return Err(BlobError::Remote(format!("bucket {} is not usable: {e}", me.bucket)));
        }
        Ok(me)
    }

    pub(super) fn describe(&self) -> String {
        format!("s3://{} at {}", self.bucket, self.endpoint.as_deref().unwrap_or("AWS"))
    }

    pub(super) fn spool(&self) -> PathBuf {
        self.spool.clone()
    }

    pub(super) async fn stat(&self, d: &Digest) -> Result<Option<u64>, BlobError> {
        match self.s3.head(&key(d)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote(e)),
        }
    }

    pub(super) async fn stream(&self, d: &Digest, from: u64) -> Result<ByteStream, BlobError> {
        let opts = GetOptions { range: (from > 0).then_some(GetRange::Offset(from)), ..Default::default() };
        let got = self.s3.get_opts(&key(d), opts).await.map_err(remote)?;
        Ok(Box::pin(got.into_stream().map_err(|e| std::io::Error::other(e.to_string()))))
    }

    pub(super) async fn presign(&self, d: &Digest, ttl: Duration) -> Result<String, BlobError> {
        let url = self.s3.signed_url(reqwest::Method::GET, &key(d), ttl).await.map_err(remote)?;
        Ok(url.to_string())
    }

    /// Send a checked spool file to the bucket (multipart for large files).
    pub(super) async fn publish(&self, tmp: &Path, digest: &Digest, size: u64) -> Result<bool, BlobError> {
        let created = self.stat(digest).await?.is_none();
        let k = key(digest);
        if size <= 8 << 20 {
            let bytes = tokio::fs::read(tmp).await?;
            self.s3.put(&k, bytes.into()).await.map_err(remote)?;
        } else {
            let upload = self.s3.put_multipart(&k).await.map_err(remote)?;
            let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, 16 << 20);
            let mut f = tokio::fs::File::open(tmp).await?;
            let mut buf = vec![0u8; 4 << 20];
            loop {
                use tokio::io::AsyncReadExt as _;
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(4).await.map_err(remote)?;
                w.write(&buf[..n]);
            }
            w.finish().await.map_err(remote)?;
        }
        let _ = tokio::fs::remove_file(tmp).await;
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_store_urls_are_parsed_strictly() {
        let k = || Secret::from("k");
        let c = S3BlobConfig::parse("s3://models?endpoint=http://127.0.0.1:9000&region=eu-west-1", k(), k()).unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.endpoint.as_deref(), c.region.as_str()),
            ("models", Some("http://127.0.0.1:9000"), "eu-west-1")
        );
        let c = S3BlobConfig::parse("s3://models", k(), k()).unwrap();
        assert_eq!((c.endpoint, c.region.as_str()), (None, "us-east-1"));
        for bad in [
            "http://models",
            "s3://",
            "s3://models/prefix",
            "s3://ak:sk@models",
            "s3://m?endpoint=ftp://x",
            "s3://m?secret=x",
        ] {
            assert!(S3BlobConfig::parse(bad, k(), k()).is_err(), "{bad}");
        }
    }
}
