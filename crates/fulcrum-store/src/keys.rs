//! Signing keys and trust bundles: which keys the registry has published, with their validity
//! windows, and every bundle it has issued (versions only grow).

use sqlx::Row;
use time::OffsetDateTime;

use crate::{Result, Store, StoreError, append_event, ts};
use fulcrum_core::event::{EventKind, EventPayload};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub public_key: String,
    pub backend: String,
    pub backend_ref: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub status: String,
    pub development: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BundleRecord {
    pub version: u64,
    pub body: String,
    pub kid: String,
    pub signature: String,
    /// Signatures over the same body by keys of the previous bundle (a JSON list of
    /// `{"kid", "sig"}`): the link an agent pinned to that bundle follows.
    pub endorsements: String,
}

/// A Sigstore trusted root a key-admin imported (see the `sigstore_roots` migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreRootRecord {
    pub version: u64,
    /// `sha256:<hex>` of `body`'s exact bytes.
    pub digest: String,
    pub body: String,
    pub note: String,
    pub imported_by: String,
    pub imported_at: String,
}

/// What a trust bundle publishes: every key with its window, and the Sigstore trusted root in
/// force (the newest import), if any.
#[derive(Debug, Clone)]
pub struct BundleContent {
    pub keys: Vec<KeyRecord>,
    pub sigstore: Option<SigstoreRootRecord>,
}

/// The issuer of a new bundle: given what it publishes and the version, returns the signed
/// bundle (its `version` is the one given).
pub type BundleSigner<'a> = &'a (dyn Fn(&BundleContent, u64) -> std::result::Result<BundleRecord, String> + Sync);

fn key_from_row(r: &crate::db::Row) -> KeyRecord {
    KeyRecord {
        kid: r.get("kid"),
        alg: r.get("alg"),
        public_key: r.get("public_key"),
        backend: r.get("backend"),
        backend_ref: r.get("backend_ref"),
        valid_from: r.get("valid_from"),
        valid_until: r.get("valid_until"),
        status: r.get("status"),
        development: r.get::<i64, _>("development") != 0,
        reason: r.get("reason"),
    }
}

async fn all_keys(tx: &mut crate::db::Conn) -> Result<Vec<KeyRecord>> {
    let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY valid_from, kid").fetch_all(&mut *tx).await?;
    Ok(rows.iter().map(key_from_row).collect())
}

fn sigstore_root_from_row(r: &crate::db::Row) -> SigstoreRootRecord {
    SigstoreRootRecord {
        version: r.get::<i64, _>("version") as u64,
        digest: r.get("digest"),
        body: r.get("body"),
        note: r.get("note"),
        imported_by: r.get("imported_by"),
        imported_at: r.get("imported_at"),
    }
}

async fn sigstore_root_in_force(tx: &mut crate::db::Conn) -> Result<Option<SigstoreRootRecord>> {
    let row =
        sqlx::query("SELECT * FROM sigstore_roots ORDER BY version DESC LIMIT 1").fetch_optional(&mut *tx).await?;
    Ok(row.as_ref().map(sigstore_root_from_row))
}

async fn issue_bundle(tx: &mut crate::db::Conn, sign: BundleSigner<'_>, now: OffsetDateTime) -> Result<BundleRecord> {
    let content = BundleContent { keys: all_keys(tx).await?, sigstore: sigstore_root_in_force(tx).await? };
    let version: i64 =
        sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 FROM trust_bundles").fetch_one(&mut *tx).await?.get(0);
    let b = sign(&content, version as u64).map_err(StoreError::Conflict)?;
    sqlx::query(
        "INSERT INTO trust_bundles (version, body, kid, signature, issued_at, endorsements) VALUES ($1,$2,$3,$4,$5,$6)",
    )
    .bind(version)
    .bind(&b.body)
    .bind(&b.kid)
    .bind(&b.signature)
    .bind(ts(now))
    .bind(&b.endorsements)
    .execute(&mut *tx)
    .await?;
    Ok(BundleRecord { version: version as u64, ..b })
}

fn bundle_from_row(r: &crate::db::Row) -> BundleRecord {
    BundleRecord {
        version: r.get::<i64, _>(0) as u64,
        body: r.get(1),
        kid: r.get(2),
        signature: r.get(3),
        endorsements: r.get(4),
    }
}

fn registry_event(kind: EventKind, now: OffsetDateTime, reason: String, actor: &str) -> EventPayload {
    let mut ev = EventPayload::new(kind, now, "*", "*", "_registry");
    ev.reason = Some(reason);
    ev.actor = Some(actor.to_owned());
    ev
}

impl Store {
    /// # Errors
    /// Database failures.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>> {
        let mut conn = self.read.acquire().await?;
        all_keys(&mut conn).await
    }

    /// # Errors
    /// Database failures.
    pub async fn latest_bundle(&self) -> Result<Option<BundleRecord>> {
        let row = sqlx::query(
            "SELECT version, body, kid, signature, endorsements FROM trust_bundles ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(bundle_from_row))
    }

    /// The bundles issued after `version`, oldest first, at most `limit`: the chain an agent
    /// pinned to `version` follows.
    ///
    /// # Errors
    /// Database failures.
    pub async fn bundles_after(&self, version: u64, limit: u32) -> Result<Vec<BundleRecord>> {
        let rows = sqlx::query(
            "SELECT version, body, kid, signature, endorsements FROM trust_bundles WHERE version > $1 ORDER BY version LIMIT $2",
        )
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(bundle_from_row).collect())
    }

    /// Make `new` the active key: the previous active key is retired with its window closed now,
    /// a new trust bundle (next version) is issued and `key_rotated` is emitted — in one
    /// transaction. On a first start (no keys) it just publishes the first key (bundle v1).
    ///
    /// # Errors
    /// `Conflict` for a kid already known; signer failures.
    pub async fn rotate_key(
        &self,
        new: KeyRecord,
        actor: &str,
        sign: BundleSigner<'_>,
        now: OffsetDateTime,
    ) -> Result<BundleRecord> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT 1 FROM signing_keys WHERE kid = $1")
            .bind(&new.kid)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "key {} is already published; a rotation needs a new key",
                new.kid
            )));
        }
        let previous: Option<String> = sqlx::query("SELECT kid FROM signing_keys WHERE status = 'active'")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get(0));
        sqlx::query(
            "UPDATE signing_keys SET status = 'retired', valid_until = $1, reason = 'rotated' WHERE status = 'active'",
        )
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, public_key, backend, backend_ref, valid_from, valid_until, status, development, reason, created_at)
             VALUES ($1,$2,$3,$4,$5,$6,NULL,'active',$7,NULL,$8)",
        )
        .bind(&new.kid)
        .bind(&new.alg)
        .bind(&new.public_key)
        .bind(&new.backend)
        .bind(&new.backend_ref)
        .bind(ts(now))
        .bind(i64::from(new.development))
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        let bundle = issue_bundle(&mut tx, sign, now).await?;
        // The first key of a new registry is recorded by trust bundle v1 itself; every later
        // change of signing key is an event.
        if let Some(p) = previous {
            let what = format!("key {p} -> {}; trust bundle v{}", new.kid, bundle.version);
            append_event(&mut tx, registry_event(EventKind::KeyRotated, now, what, actor)).await?;
        }
        tx.commit().await?;
        Ok(bundle)
    }

    /// Retire (or mark compromised) a key that is not the active one, and issue a new bundle.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` for the active key.
    pub async fn retire_key(
        &self,
        kid: &str,
        compromised: bool,
        reason: &str,
        actor: &str,
        sign: BundleSigner<'_>,
        now: OffsetDateTime,
    ) -> Result<BundleRecord> {
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query("SELECT status FROM signing_keys WHERE kid = $1").bind(kid).fetch_optional(&mut *tx).await?;
        let status: String = row.ok_or(StoreError::NotFound("key"))?.get(0);
        if status == "active" {
            return Err(StoreError::Conflict("the active key cannot be retired; rotate to a new key first".into()));
        }
        let new_status = if compromised { "compromised" } else { "retired" };
        sqlx::query(
            "UPDATE signing_keys SET status = $1, reason = $2, valid_until = COALESCE(valid_until, $3) WHERE kid = $4",
        )
        .bind(new_status)
        .bind(reason)
        .bind(ts(now))
        .bind(kid)
        .execute(&mut *tx)
        .await?;
        let bundle = issue_bundle(&mut tx, sign, now).await?;
        append_event(
            &mut tx,
            registry_event(
                EventKind::KeyRetired,
                now,
                format!("key {kid} {new_status}: {reason}; trust bundle v{}", bundle.version),
                actor,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(bundle)
    }

    /// Every Sigstore trusted root ever imported, newest first (the first is in force).
    ///
    /// # Errors
    /// Database failures.
    pub async fn sigstore_roots(&self) -> Result<Vec<SigstoreRootRecord>> {
        let rows = sqlx::query("SELECT * FROM sigstore_roots ORDER BY version DESC").fetch_all(&self.read).await?;
        Ok(rows.iter().map(sigstore_root_from_row).collect())
    }

    /// Put a Sigstore trusted root in force (the caller has checked it parses): a new import
    /// version, a new trust bundle carrying it and a `trust_root_imported` event, in one
    /// transaction. Importing the root already in force is a conflict (nothing changes).
    ///
    /// # Errors
    /// `Conflict`, database or signer failures.
    pub async fn import_sigstore_root(
        &self,
        digest: &str,
        body: &str,
        note: &str,
        actor: &str,
        sign: BundleSigner<'_>,
        now: OffsetDateTime,
    ) -> Result<(SigstoreRootRecord, BundleRecord)> {
        let mut tx = self.begin_write().await?;
        let current = sigstore_root_in_force(&mut tx).await?;
        if current.as_ref().is_some_and(|c| c.digest == digest) {
            return Err(StoreError::Conflict(format!("trusted root {digest} is already in force")));
        }
        let version = current.map_or(1, |c| c.version + 1);
        let rec = SigstoreRootRecord {
            version,
            digest: digest.to_owned(),
            body: body.to_owned(),
            note: note.to_owned(),
            imported_by: actor.to_owned(),
            imported_at: ts(now),
        };
        sqlx::query(
            "INSERT INTO sigstore_roots (version, digest, body, note, imported_by, imported_at) VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(version as i64)
        .bind(&rec.digest)
        .bind(&rec.body)
        .bind(&rec.note)
        .bind(&rec.imported_by)
        .bind(&rec.imported_at)
        .execute(&mut *tx)
        .await?;
        let bundle = issue_bundle(&mut tx, sign, now).await?;
        let what = format!("sigstore trusted root v{version} {digest}: {note}; trust bundle v{}", bundle.version);
        append_event(&mut tx, registry_event(EventKind::TrustRootImported, now, what, actor)).await?;
        tx.commit().await?;
        Ok((rec, bundle))
    }

    /// Re-issue the bundle with the same keys (a fresher expiry), as a new version.
    ///
    /// # Errors
    /// Database or signer failures.
    pub async fn reissue_bundle(&self, sign: BundleSigner<'_>, now: OffsetDateTime) -> Result<BundleRecord> {
        let mut tx = self.begin_write().await?;
        let b = issue_bundle(&mut tx, sign, now).await?;
        tx.commit().await?;
        Ok(b)
    }
}
