//! The OCI registry, by digest: resolve a tag once, pull manifests and blobs whose bytes are
//! checked against the digest that named them, list referrers (the OCI 1.1 API, or the
//! `sha256-<hex>` tag-schema index where a registry has none), read legacy `.sig` tags, and push
//! blobs, manifests and referrers. The only network I/O of this crate.

use std::path::Path;

use futures_util::{Stream, StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::layout::{Descriptor, ImageIndex, ImageManifest, OCI_INDEX, OCI_MANIFEST};
use crate::{OciError, sha256_of};

/// Largest manifest, signature or small document read into memory.
pub const MAX_DOCUMENT: u64 = 4 << 20;

const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, crate::layout::DOCKER_MANIFEST, crate::layout::DOCKER_LIST];

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Registries (`host:port`) spoken to over plain HTTP (development and tests only).
    pub insecure: Vec<String>,
    /// Basic credentials, if the registry needs them.
    pub basic: Option<(String, String)>,
}

/// A parsed reference: `registry/repository` plus a tag or a digest.
#[derive(Debug, Clone)]
pub struct Target {
    reference: Reference,
}

impl Target {
    /// # Errors
    /// A reference that does not parse.
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let s = s.strip_prefix("oci://").unwrap_or(s);
        let reference: Reference = s.parse().map_err(|_| OciError::Reference(s.to_owned()))?;
        Ok(Self { reference })
    }

    /// The registry host (`host[:port]`).
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// `registry/repository`, without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.reference.registry(), self.reference.repository())
    }

    pub fn digest(&self) -> Option<&str> {
        self.reference.digest()
    }

    pub fn tag(&self) -> Option<&str> {
        self.reference.tag()
    }

    /// The same repository at `digest`.
    pub fn at(&self, digest: &str) -> Self {
        Self {
            reference: Reference::with_digest(
                self.reference.registry().to_owned(),
                self.reference.repository().to_owned(),
                digest.to_owned(),
            ),
        }
    }

    /// The same repository at `tag`.
    pub fn tagged(&self, tag: &str) -> Self {
        Self {
            reference: Reference::with_tag(
                self.reference.registry().to_owned(),
                self.reference.repository().to_owned(),
                tag.to_owned(),
            ),
        }
    }

    /// `registry/repository@digest`: the only form recorded.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repository())
    }
}

/// A registry client.
pub struct Remote {
    client: Client,
    auth: RegistryAuth,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}

fn registry_err(e: impl std::fmt::Display) -> OciError {
    OciError::Registry(e.to_string())
}

fn is_not_found(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(_) => true,
        E::ServerError { code, .. } => *code == 404,
        E::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|x| matches!(x.code, oci_client::errors::OciErrorCode::ManifestUnknown))
        }
        _ => false,
    }
}

impl Remote {
    pub fn new(settings: &Settings) -> Self {
        let protocol = if settings.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(settings.insecure.clone())
        };
        let config = ClientConfig { protocol, ..Default::default() };
        let auth = match &settings.basic {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        Self { client: Client::new(config), auth }
    }

    /// The digest a reference names now: its own digest, or the tag resolved once.
    ///
    /// # Errors
    /// The registry failing or not knowing the tag.
    pub async fn resolve(&self, t: &Target) -> Result<String, OciError> {
        if let Some(d) = t.digest() {
            return Ok(d.to_owned());
        }
        self.client.fetch_manifest_digest(&t.reference, &self.auth).await.map_err(registry_err)
    }

    /// A manifest's exact bytes, checked against `digest`.
    ///
    /// # Errors
    /// Not found, too large, or bytes that do not hash to `digest`.
    pub async fn manifest(&self, t: &Target, digest: &str) -> Result<bytes::Bytes, OciError> {
        let (bytes, _) =
            self.client.pull_manifest_raw(&t.at(digest).reference, &self.auth, ACCEPTED).await.map_err(registry_err)?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(OciError::TooLarge(format!("manifest {digest}")));
        }
        if sha256_of(&bytes) != digest {
            return Err(OciError::DigestMismatch { what: "the manifest".into(), digest: digest.to_owned() });
        }
        Ok(bytes)
    }

    /// The manifest a tag names, if it exists (`None` for 404).
    ///
    /// # Errors
    /// The registry failing otherwise.
    pub async fn manifest_at_tag(&self, t: &Target, tag: &str) -> Result<Option<bytes::Bytes>, OciError> {
        match self.client.pull_manifest_raw(&t.tagged(tag).reference, &self.auth, ACCEPTED).await {
            Ok((bytes, _)) if bytes.len() as u64 > MAX_DOCUMENT => Err(OciError::TooLarge(format!("manifest {tag}"))),
            Ok((bytes, _)) => Ok(Some(bytes)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(registry_err(e)),
        }
    }

    /// A blob as a stream; each chunk as it arrives. The stream fails at its end if the bytes
    /// do not hash to `digest` (checked here, and again by whoever stores them).
    ///
    /// # Errors
    /// The registry failing before the first byte.
    pub async fn blob_stream(
        &self,
        t: &Target,
        digest: &str,
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static, OciError> {
        let s = self.client.pull_blob_stream(&t.reference, &digest).await.map_err(registry_err)?;
        Ok(s.stream)
    }

    /// A small blob in memory, checked against `digest` and `max`.
    ///
    /// # Errors
    /// Too large, unreadable, or not the bytes named.
    pub async fn blob_bytes(&self, t: &Target, digest: &str, max: u64) -> Result<Vec<u8>, OciError> {
        let mut out = Vec::new();
        self.blob_into(t, digest, max, &mut out).await?;
        Ok(out)
    }

    /// A blob written to `path`, checked against `digest` and `max`; its size.
    ///
    /// # Errors
    /// Too large, unreadable, not the bytes named, or the file not writable.
    pub async fn blob_to_file(&self, t: &Target, digest: &str, path: &Path, max: u64) -> Result<u64, OciError> {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::File::create(path).await.map_err(|e| OciError::Io(e.to_string()))?;
        let size = self.blob_into(t, digest, max, &mut f).await?;
        f.flush().await.map_err(|e| OciError::Io(e.to_string()))?;
        Ok(size)
    }

    /// Every chunk of a blob into `out`, the total bounded by `max` and the bytes hashed here
    /// against `digest` (whatever the client checked on its side); the size. On an error what
    /// was written must not be used.
    async fn blob_into(
        &self,
        t: &Target,
        digest: &str,
        max: u64,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, OciError> {
        use sha2::Digest as _;
        use tokio::io::AsyncWriteExt;
        let mut stream = std::pin::pin!(self.blob_stream(t, digest).await?);
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| OciError::DigestMismatch { what: format!("blob ({e})"), digest: digest.into() })?;
            size += chunk.len() as u64;
            if size > max {
                return Err(OciError::TooLarge(format!("blob {digest}")));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(|e| OciError::Io(e.to_string()))?;
        }
        if format!("sha256:{}", hex::encode(hasher.finalize())) != digest {
            return Err(OciError::DigestMismatch { what: "a blob".into(), digest: digest.to_owned() });
        }
        Ok(size)
    }

    /// The referrers of `digest`: the registry's referrers API, or the tag-schema index.
    ///
    /// # Errors
    /// The registry failing.
    pub async fn referrers(&self, t: &Target, digest: &str) -> Result<Vec<Descriptor>, OciError> {
        let index = self.client.pull_referrers(&t.at(digest).reference, None).await.map_err(registry_err)?;
        Ok(index
            .manifests
            .into_iter()
            .map(|m| Descriptor {
                media_type: m.media_type,
                digest: m.digest,
                size: u64::try_from(m.size).unwrap_or(0),
                artifact_type: m.artifact_type,
                annotations: m.annotations.map(|a| a.into_iter().collect()).unwrap_or_default(),
            })
            .collect())
    }

    /// Authenticate for pushing to `t`'s repository (every push starts here).
    async fn push_auth(&self, t: &Target) -> Result<(), OciError> {
        self.client.auth(&t.reference, &self.auth, oci_client::RegistryOperation::Push).await.map_err(registry_err)?;
        Ok(())
    }

    /// Push a blob from memory (skipped when the registry has it).
    ///
    /// # Errors
    /// The registry refusing it.
    pub async fn push_blob(&self, t: &Target, bytes: Vec<u8>) -> Result<Descriptor, OciError> {
        self.push_auth(t).await?;
        let digest = sha256_of(&bytes);
        let size = bytes.len() as u64;
        if !self.client.blob_exists(&t.reference, &digest).await.unwrap_or(false) {
            self.client.push_blob(&t.reference, bytes, &digest).await.map_err(registry_err)?;
        }
        Ok(Descriptor { media_type: String::new(), digest, size, artifact_type: None, annotations: Default::default() })
    }

    /// Push a file's bytes as a blob whose digest is known (streamed in chunks).
    ///
    /// # Errors
    /// The registry refusing it, or the file not readable.
    pub async fn push_file(&self, t: &Target, path: &Path, digest: &str, size: u64) -> Result<(), OciError> {
        self.push_auth(t).await?;
        if self.client.blob_exists(&t.reference, digest).await.unwrap_or(false) {
            return Ok(());
        }
        let file = tokio::fs::File::open(path).await.map_err(|e| OciError::Io(e.to_string()))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
            .map_err(oci_client::errors::OciDistributionError::IoError);
        self.client.push_blob_stream(&t.reference, stream, digest, Some(size)).await.map_err(registry_err)?;
        Ok(())
    }

    /// Push a manifest (by digest, or under `tag`); returns its digest.
    ///
    /// # Errors
    /// The registry refusing it.
    pub async fn push_manifest(
        &self,
        t: &Target,
        manifest: &ImageManifest,
        tag: Option<&str>,
    ) -> Result<String, OciError> {
        let bytes = serde_json::to_vec(manifest).expect("manifests serialise");
        self.push_manifest_bytes(t, bytes, manifest.media_type.as_deref().unwrap_or(OCI_MANIFEST), tag).await
    }

    /// Push a manifest document as given (by digest, or under `tag`); returns its digest.
    ///
    /// # Errors
    /// The registry refusing it.
    pub async fn push_manifest_bytes(
        &self,
        t: &Target,
        bytes: Vec<u8>,
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<String, OciError> {
        self.push_auth(t).await?;
        let digest = sha256_of(&bytes);
        let at = match tag {
            Some(tag) => t.tagged(tag),
            None => t.at(&digest),
        };
        let ct = reqwest_header(media_type)?;
        self.client.push_manifest_raw(&at.reference, bytes, ct).await.map_err(registry_err)?;
        Ok(digest)
    }

    /// Attach a referrer manifest to `subject` and list it where referrers are found: registries
    /// with the referrers API index it themselves; for the rest the `sha256-<hex>` tag-schema
    /// index is updated (read, extended, written back).
    ///
    /// # Errors
    /// The registry refusing either push.
    pub async fn push_referrer(&self, t: &Target, referrer: &ImageManifest) -> Result<String, OciError> {
        let subject =
            referrer.subject.as_ref().ok_or_else(|| OciError::Manifest("a referrer needs a subject".into()))?;
        if referrer.config.media_type == crate::layout::EMPTY_MEDIA_TYPE {
            // Registries check that a manifest's config exists, the empty one included.
            self.push_blob(t, b"{}".to_vec()).await?;
        }
        let bytes = serde_json::to_vec(referrer).expect("manifests serialise");
        let size = bytes.len() as u64;
        let digest = self.push_manifest_bytes(t, bytes, OCI_MANIFEST, None).await?;
        let tag = subject.digest.replace(':', "-");
        let mut index = match self.manifest_at_tag(t, &tag).await? {
            Some(bytes) => serde_json::from_slice::<ImageIndex>(&bytes)
                .map_err(|e| OciError::Manifest(format!("the referrers index {tag}: {e}")))?,
            None => ImageIndex { schema_version: 2, media_type: Some(OCI_INDEX.into()), manifests: vec![] },
        };
        if !index.manifests.iter().any(|m| m.digest == digest) {
            index.manifests.push(Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: digest.clone(),
                size,
                artifact_type: referrer.artifact_type.clone(),
                annotations: referrer.annotations.clone(),
            });
            let bytes = serde_json::to_vec(&index).expect("indexes serialise");
            self.push_manifest_bytes(t, bytes, OCI_INDEX, Some(&tag)).await?;
        }
        Ok(digest)
    }
}

fn reqwest_header(media_type: &str) -> Result<http::HeaderValue, OciError> {
    http::HeaderValue::from_str(media_type).map_err(|e| OciError::Manifest(e.to_string()))
}
