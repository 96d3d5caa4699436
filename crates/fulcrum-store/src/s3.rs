//! Evidence on S3 with Object Lock in COMPLIANCE mode: the bucket (created with Object Lock, so
//! versioned) refuses to delete a version or shorten its retention before the date — for everyone,
//! the account's root included. Requests are signed with AWS Signature V4 (path-style).
//!
//! Written once: a key that exists is refused before anything is sent; (a PUT racing it would
//! only add a version — the locked one stays).

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::worm::{Retention, WormError};

/// Where the bucket is and the credentials (read from files, re-read when rotated).
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `https://s3.example` or `http://127.0.0.1:8333` (path-style addressing).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: fulcrum_secret::Secret,
    pub secret_key: fulcrum_secret::Secret,
}

#[derive(Debug, Clone)]
pub struct S3Worm {
    cfg: S3Config,
    http: reqwest::Client,
}

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn mac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref().to_vec()
}

/// RFC 3986 encoding as SigV4 wants it (`/` kept in paths).
fn enc(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why S3 answered as it did, kept short (its error code).
fn s3_error(status: u16, body: &str) -> String {
    let code = body.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or("no code");
    format!("HTTP {status} {code}")
}

impl S3Worm {
    /// # Errors
    /// An endpoint that is not a URL.
    pub fn new(cfg: S3Config) -> Result<Self, WormError> {
        reqwest::Url::parse(&cfg.endpoint)
            .map_err(|e| WormError::Io(cfg.endpoint.clone(), std::io::Error::other(e)))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| WormError::Io("S3 client".into(), std::io::Error::other(e)))?;
        Ok(Self { cfg, http })
    }

    /// A signed request: `path` is `/<bucket>[/<key>]`, `query` sorted pairs, extra headers
    /// lowercase.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), WormError> {
        let now = OffsetDateTime::now_utc();
        let date = now.format(&time::macros::format_description!("[year][month][day]")).expect("formats");
        let amz = now
            .format(&time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .expect("formats");
        let url = reqwest::Url::parse(&self.cfg.endpoint).expect("checked");
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let payload_hash = hex_sha256(&body);
        let mut hs: Vec<(String, String)> = vec![
            ("host".into(), host),
            ("x-amz-content-sha256".into(), payload_hash.clone()),
            ("x-amz-date".into(), amz.clone()),
        ];
        hs.extend(headers.iter().map(|(k, v)| ((*k).to_owned(), v.trim().to_owned())));
        hs.sort();
        let mut q: Vec<(String, String)> = query.iter().map(|(k, v)| (enc(k, false), enc(v, false))).collect();
        q.sort();
        let canonical_query = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let canonical_path = enc(path, true);
        let signed: Vec<&str> = hs.iter().map(|(k, _)| k.as_str()).collect();
        let canonical = format!(
            "{}\n{canonical_path}\n{canonical_query}\n{}\n{}\n{payload_hash}",
            method.as_str(),
            hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect::<String>(),
            signed.join(";"),
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.cfg.region);
        let to_sign = format!("AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}", hex_sha256(canonical.as_bytes()));
        let secret = self.cfg.secret_key.get();
        let k = mac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        let k = mac(&k, self.cfg.region.as_bytes());
        let k = mac(&k, b"s3");
        let k = mac(&k, b"aws4_request");
        let signature = hex::encode(mac(&k, to_sign.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            self.cfg.access_key.get(),
            signed.join(";")
        );
        let full = format!(
            "{}{canonical_path}{}",
            self.cfg.endpoint.trim_end_matches('/'),
            if canonical_query.is_empty() { String::new() } else { format!("?{canonical_query}") }
        );
        let mut rb = self.http.request(method, &full).header("authorization", auth);
        for (k, v) in &hs {
            if k != "host" {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        let resp = rb
            .body(body)
            .send()
            .await
            .map_err(|e| WormError::Io(self.cfg.endpoint.clone(), std::io::Error::other(e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, headers, text))
    }

    fn object(&self, key: &str) -> Result<String, WormError> {
        crate::worm::check_key(key)?;
        Ok(format!("/{}/{key}", self.cfg.bucket))
    }

    /// Create the bucket with Object Lock (and so versioning) on; an existing one is fine.
    ///
    /// # Errors
    /// S3 refusing.
    pub async fn ensure_bucket(&self) -> Result<(), WormError> {
        self.create_bucket(true).await
    }

    /// Create the bucket, with Object Lock or without (a blob bucket); an existing one is fine.
    ///
    /// # Errors
    /// S3 refusing.
    pub async fn create_bucket(&self, object_lock: bool) -> Result<(), WormError> {
        let path = format!("/{}", self.cfg.bucket);
        let lock = [("x-amz-bucket-object-lock-enabled", "true".to_owned())];
        let headers: &[(&str, String)] = if object_lock { &lock } else { &[] };
        let (status, _, body) = self.send(reqwest::Method::PUT, &path, &[], headers, vec![]).await?;
        match status {
            200 => Ok(()),
            409 if body.contains("BucketAlreadyOwnedByYou") || body.contains("BucketAlreadyExists") => Ok(()),
            _ => Err(WormError::Io(path, std::io::Error::other(s3_error(status, &body)))),
        }
    }

    /// The newest version of `key`: (version id, retention).
    ///
    /// # Errors
    /// Unknown keys, S3 failures.
    pub async fn head(&self, key: &str) -> Result<(String, Retention), WormError> {
        let path = self.object(key)?;
        let (status, h, body) = self.send(reqwest::Method::HEAD, &path, &[], &[], vec![]).await?;
        match status {
            200 => {}
            404 => return Err(WormError::NotFound(key.to_owned())),
            _ => return Err(WormError::Io(path, std::io::Error::other(s3_error(status, &body)))),
        }
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok((
            get("x-amz-version-id"),
            Retention {
                retain_until: get("x-amz-object-lock-retain-until-date"),
                sha256: get("x-amz-meta-sha256"),
                created_at: get("last-modified"),
            },
        ))
    }

    /// Store `bytes` under `key` once, locked (COMPLIANCE) until `until`.
    ///
    /// # Errors
    /// An existing key, S3 refusing.
    pub async fn put(&self, key: &str, bytes: &[u8], until: OffsetDateTime) -> Result<Retention, WormError> {
        let path = self.object(key)?;
        match self.head(key).await {
            Ok(_) => return Err(WormError::Exists(key.to_owned())),
            Err(WormError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let until = until.replace_nanosecond(0).unwrap_or(until);
        let digest = fulcrum_core::Digest::of(bytes).to_string();
        let headers = [
            ("content-md5", B64.encode(md5::Md5::digest(bytes))),
            ("x-amz-object-lock-mode", "COMPLIANCE".into()),
            ("x-amz-object-lock-retain-until-date", until.format(&Rfc3339).expect("formats")),
            ("x-amz-meta-sha256", digest.clone()),
        ];
        let (status, _, body) = self.send(reqwest::Method::PUT, &path, &[], &headers, bytes.to_vec()).await?;
        if status != 200 {
            return Err(WormError::Io(path, std::io::Error::other(s3_error(status, &body))));
        }
        let (_, r) = self.head(key).await?;
        Ok(Retention { sha256: digest, ..r })
    }

    /// Read the newest version, checked against the digest it was stored with.
    ///
    /// # Errors
    /// Unknown keys, a changed object, S3 failures.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, WormError> {
        let (_, r) = self.head(key).await?;
        let path = self.object(key)?;
        let (status, _, body) = self.send(reqwest::Method::GET, &path, &[], &[], vec![]).await?;
        if status != 200 {
            return Err(WormError::Io(path, std::io::Error::other(s3_error(status, &body))));
        }
        let bytes = body.into_bytes();
        if fulcrum_core::Digest::of(&bytes).to_string() != r.sha256 {
            return Err(WormError::Corrupt(key.to_owned()));
        }
        Ok(bytes)
    }

    /// Delete a version (refused by S3 while it is retained).
    ///
    /// # Errors
    /// Retention not ended (`Retained`), S3 failures.
    pub async fn delete_version(&self, key: &str, version: &str) -> Result<(), WormError> {
        let path = self.object(key)?;
        let (status, _, body) =
            self.send(reqwest::Method::DELETE, &path, &[("versionId", version)], &[], vec![]).await?;
        match status {
            200 | 204 => Ok(()),
            403 => Err(WormError::Retained(key.to_owned(), s3_error(status, &body))),
            _ => Err(WormError::Io(path, std::io::Error::other(s3_error(status, &body)))),
        }
    }

    /// Set a version's retention (S3 refuses to shorten COMPLIANCE retention).
    ///
    /// # Errors
    /// A shorter date (`Shorten`), S3 failures.
    pub async fn set_retention(&self, key: &str, version: &str, until: OffsetDateTime) -> Result<(), WormError> {
        let path = self.object(key)?;
        let until = until.replace_nanosecond(0).unwrap_or(until).format(&Rfc3339).expect("formats");
        let xml = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>COMPLIANCE</Mode><RetainUntilDate>{until}</RetainUntilDate></Retention>"
        );
        let headers = [("content-md5", B64.encode(md5::Md5::digest(xml.as_bytes())))];
        let (status, _, body) = self
            .send(reqwest::Method::PUT, &path, &[("retention", ""), ("versionId", version)], &headers, xml.into_bytes())
            .await?;
        match status {
            200 => Ok(()),
            403 => Err(WormError::Shorten(key.to_owned(), s3_error(status, &body))),
            _ => Err(WormError::Io(path, std::io::Error::other(s3_error(status, &body)))),
        }
    }
}
