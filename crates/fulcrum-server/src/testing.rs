//! Real services for tests and benchmarks (`fulcrum-testkit`), and the scale-out storage built
//! from them: a private PostgreSQL database and an S3 bucket on SeaweedFS.

pub use fulcrum_testkit::*;

/// PostgreSQL + S3 (SeaweedFS) with an empty database `fulcrum` and bucket `models`, ready for a
/// registry ([`ScaleOut::configure`]); both stop when it is dropped.
pub struct ScaleOut {
    pub pg: Postgres,
    pub weed: Weed,
    pub db_url: String,
}

impl ScaleOut {
    /// Start both (`None` only locally when one is not installed; under `CI=true` a missing one
    /// fails). `durable` makes PostgreSQL fsync every commit (benchmarks of durable writes).
    ///
    /// # Panics
    /// When a service does not start or the bucket cannot be created.
    pub async fn start(durable: bool) -> Option<Self> {
        let pg = if durable { Postgres::start_durable()? } else { Postgres::start()? };
        let db_url = pg.database("fulcrum");
        // SeaweedFS picks several internal ports; another test process may take one of them
        // after its S3 port opened, and then it exits: start it again on new ports.
        let mut last = String::new();
        for _ in 0..4 {
            let weed = Weed::start()?;
            let endpoint = format!("http://127.0.0.1:{}", weed.s3);
            let worm = fulcrum_store::s3::S3Worm::new(fulcrum_store::s3::S3Config {
                endpoint,
                bucket: "models".into(),
                region: "us-east-1".into(),
                access_key: "fulcrum".into(),
                secret_key: "fulcrum-secret".into(),
            })
            .expect("a loopback endpoint");
            match eventually(|| worm.create_bucket(false)).await {
                Ok(()) => return Some(Self { pg, weed, db_url }),
                Err(e) => last = e.to_string(),
            }
        }
        panic!("SeaweedFS never took the blob bucket: {last}");
    }

    /// [`ScaleOut::start`] outside an async runtime.
    pub fn start_blocking() -> Option<Self> {
        tokio::runtime::Runtime::new().expect("a runtime").block_on(Self::start(false))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.weed.s3)
    }

    /// The database `fulcrum`, or another one made on the same cluster.
    pub fn database(&self) -> fulcrum_store::Database {
        fulcrum_store::Database::Postgres { url: self.db_url.clone(), password: None }
    }

    pub fn blob_store(&self) -> fulcrum_store::blobs::S3BlobConfig {
        fulcrum_store::blobs::S3BlobConfig {
            bucket: "models".into(),
            endpoint: Some(self.endpoint()),
            region: "us-east-1".into(),
            access_key: "fulcrum".into(),
            secret_key: "fulcrum-secret".into(),
        }
    }

    /// Point a registry's configuration at this storage.
    pub fn configure(&self, c: &mut crate::Config) {
        self.tune()(c);
    }

    /// [`ScaleOut::configure`] as a closure that owns what it needs (for a `tune` argument).
    pub fn tune(&self) -> impl FnOnce(&mut crate::Config) + use<> {
        let (db, blobs) = (self.database(), self.blob_store());
        move |c| {
            c.database = Some(db);
            c.blob_store = Some(blobs);
        }
    }
}
