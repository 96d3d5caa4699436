//! The SQL seam: one set of queries, two engines.
//!
//! Every query is written once, in the SQL both engines accept (numbered `$1` placeholders,
//! `INSERT … ON CONFLICT`, `RETURNING`, `COALESCE`), and runs on sqlx's `Any` driver. The few
//! places where the engines differ (JSON access and aggregation, how a write is serialised) ask the [`Dialect`] and are listed here, so a reviewer sees every difference in one
//! file. Each engine has its own migrations (`migrations/sqlite`, `migrations/postgres`) with the
//! same tables and the same append-only guards.

use std::str::FromStr;
use std::time::Duration;

use fulcrum_secret::Secret;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions as _, Executor as _};

use crate::{Result, StoreError};

/// The connection a helper runs its statements on (inside a transaction or not).
pub(crate) type Conn = sqlx::AnyConnection;
/// A row as both engines return it.
pub(crate) type Row = sqlx::any::AnyRow;

/// Which SQL engine holds the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded default: one SQLite file in the data dir.
    Sqlite,
    /// A shared PostgreSQL 15+ database (scale-out).
    Postgres,
}

impl Dialect {
    /// `json_value(column, 'a.b')`: the text at a JSON path of a TEXT column holding JSON.
    pub(crate) fn json_text(self, column: &str, path: &[&str]) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.{}')", path.join(".")),
            Dialect::Postgres => format!("(({column})::jsonb #>> '{{{}}}')", path.join(",")),
        }
    }

    /// As [`Dialect::json_text`], NULL (not an error) for a value that is not JSON on SQLite —
    /// the expression of an index, which must not refuse writes of rows it cannot read. (On
    /// PostgreSQL every event body is valid `jsonb` by the cast itself.)
    pub(crate) fn json_text_lenient(self, column: &str, path: &[&str]) -> String {
        match self {
            Dialect::Sqlite => format!("(CASE WHEN json_valid({column}) THEN {} END)", self.json_text(column, path)),
            Dialect::Postgres => self.json_text(column, path),
        }
    }

    /// A BLOB/BYTEA column read as bytes whatever was written into it (SQLite keeps the type of
    /// each value: text written into a hash column by hand must still read as bytes, so a
    /// tampered row is reported as a wrong hash rather than failing to decode).
    pub(crate) fn bytes(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST({column} AS BLOB)"),
            Dialect::Postgres => column.to_owned(),
        }
    }

    /// The values of `expr` in a group, as a JSON array (text).
    pub(crate) fn json_array_agg(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_group_array({expr})"),
            Dialect::Postgres => format!("json_agg({expr})::text"),
        }
    }
}

/// Where the metadata lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file (created when missing).
    Sqlite { path: std::path::PathBuf },
    /// `postgres://USER@HOST:PORT/DB[?sslmode=…]`; the password comes apart, from a file, so it is
    /// in neither the command line nor the logs.
    Postgres { url: String, password: Option<Secret> },
}

impl Database {
    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Sqlite { .. } => Dialect::Sqlite,
            Database::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// The URL without any password, for logs and status pages.
    pub fn display(&self) -> String {
        match self {
            Database::Sqlite { path } => format!("sqlite:{}", path.display()),
            Database::Postgres { url, .. } => match reqwest::Url::parse(url) {
                Ok(mut u) => {
                    let _ = u.set_password(None);
                    u.to_string()
                }
                Err(_) => "postgres://(unparseable)".into(),
            },
        }
    }
}

/// The lock key every PostgreSQL write transaction takes first (`pg_advisory_xact_lock`): writes
/// are serialised as SQLite's single writer serialises them, so sequence numbers, ledger leaves
/// and the per-model read-then-write of governance keep their order even across processes.
pub(crate) const WRITE_LOCK: i64 = 0x0046_554c_4352_554d; // "FULCRUM"

/// The pools a store uses: `write` for every change (one writer at a time), `read` for the rest.
pub(crate) struct Pools {
    pub write: AnyPool,
    pub read: AnyPool,
}

fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sqlx::any::install_drivers(&[sqlx::sqlite::any::DRIVER, sqlx::postgres::any::DRIVER])
            .expect("sqlx drivers are installed once");
    });
}

/// Connect (creating a SQLite file when missing). Does not migrate.
pub(crate) async fn connect(db: &Database, durable: bool, read_connections: u32) -> Result<Pools> {
    install_drivers();
    match db {
        Database::Sqlite { path } => {
            let base = sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true);
            let write_url = base.to_url_lossy();
            let read_url = base.clone().create_if_missing(false).read_only(true).to_url_lossy();
            // One writer (it also sets the journal mode); readers open the file read-only.
            let write_pragmas = if durable {
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"
            } else {
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"
            };
            let write = sqlite_pool(write_url.as_str(), 1, write_pragmas).await?;
            let read = sqlite_pool(
                read_url.as_str(),
                read_connections.max(1),
                "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
            )
            .await?;
            Ok(Pools { write, read })
        }
        Database::Postgres { url, password } => {
            let u = reqwest::Url::parse(url).map_err(|e| StoreError::Config(format!("database URL: {e}")))?;
            if !matches!(u.scheme(), "postgres" | "postgresql") {
                return Err(StoreError::Config(format!("database URL scheme {:?} is not postgres", u.scheme())));
            }
            if u.password().is_some() {
                return Err(StoreError::Config(
                    "the database URL must not carry a password: give it with --database-password-file".into(),
                ));
            }
            let with_password = move |pw: Option<&str>| -> Result<AnyConnectOptions> {
                let mut u = u.clone();
                if let Some(pw) = pw {
                    u.set_password(Some(pw))
                        .map_err(|()| StoreError::Config("the database URL cannot take a password".into()))?;
                }
                Ok(AnyConnectOptions::from_str(u.as_str())?.disable_statement_logging())
            };
            let opts = with_password(password.as_ref().map(Secret::get).as_deref())?;
            let pool = |n: u32| {
                AnyPoolOptions::new()
                    .max_connections(n)
                    .acquire_timeout(Duration::from_secs(5))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // A statement that hangs (a lock held by a dead client) fails instead.
                            conn.execute("SET statement_timeout = '30s'; SET lock_timeout = '15s'").await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(opts.clone())
            };
            let write = pool(4);
            let read = pool(read_connections.max(1) * 2);
            // Fail now, with the reason, when the database cannot be reached.
            read.acquire().await?;
            if let Some(secret) = password.clone() {
                // A rotated password file is used for the next connections, without a restart.
                let (w, r) = (write.clone(), read.clone());
                tokio::spawn(async move {
                    let mut last = secret.get();
                    while !w.is_closed() {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        let now = secret.get();
                        if now != last
                            && let Ok(o) = with_password(Some(&now))
                        {
                            tracing::info!("the database password file changed; new connections use it");
                            w.set_connect_options(o.clone());
                            r.set_connect_options(o);
                            last = now;
                        }
                    }
                });
            }
            Ok(Pools { write, read })
        }
    }
}

/// A SQLite pool of `size` connections, each set up with `pragmas` when it opens.
async fn sqlite_pool(url: &str, size: u32, pragmas: &'static str) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(size)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(pragmas).await?;
                Ok(())
            })
        })
        .connect_with(AnyConnectOptions::from_str(url)?)
        .await?)
}

/// Begin a write transaction. On PostgreSQL it first takes the store's write lock (a
/// transaction-scoped advisory lock), so writes are serialised as SQLite's single writer
/// serialises them: sequence numbers and ledger leaves follow commit order.
pub(crate) async fn begin_write(pool: &AnyPool, dialect: Dialect) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    let mut tx = pool.begin().await?;
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK).execute(&mut *tx).await?;
    }
    Ok(tx)
}

/// Run the dialect's migrations (PostgreSQL: under sqlx's advisory lock, so replicas starting
/// together migrate once). Returns the versions applied now.
pub(crate) async fn migrate(pool: &AnyPool, dialect: Dialect) -> Result<Vec<i64>> {
    let migrator = match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    let before = applied(pool).await.unwrap_or_default();
    migrator.run(pool).await?;
    let after = applied(pool).await?;
    Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
}

async fn applied(pool: &AnyPool) -> Result<Vec<i64>> {
    use sqlx::Row as _;
    Ok(sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect())
}

/// `template` (a row of `?` placeholders, e.g. `(?, 'event', ?)`) repeated `rows` times, joined
/// by commas, with the placeholders numbered `$1, $2, …` in order.
pub(crate) fn numbered_rows(template: &str, rows: usize) -> String {
    let mut out = String::with_capacity((template.len() + 4) * rows);
    let mut n = 0usize;
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        for c in template.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_numbered_in_order() {
        assert_eq!(numbered_rows("(?, 'e', ?)", 2), "($1, 'e', $2),($3, 'e', $4)");
        assert_eq!(numbered_rows("?", 3), "$1,$2,$3");
        assert_eq!(numbered_rows("?", 0), "");
    }

    #[test]
    fn dialects_spell_json() {
        assert_eq!(Dialect::Sqlite.json_text("body", &["data", "inc_id"]), "json_extract(body, '$.data.inc_id')");
        assert_eq!(Dialect::Postgres.json_text("body", &["data", "inc_id"]), "((body)::jsonb #>> '{data,inc_id}')");
    }

    #[test]
    fn display_hides_the_password() {
        let db = Database::Postgres { url: "postgres://u:pw@h:5/d".into(), password: None };
        assert_eq!(db.display(), "postgres://u@h:5/d");
    }
}
