//! Kiln's state: accounts, orders, authorizations, challenges, certificates
//! and used nonces, in SQLite (embedded) or PostgreSQL (distributed).
//!
//! The database is the truth (invariant 1). Every state change here is a
//! compare-and-set — `UPDATE … WHERE id = $1 AND state = $expected` — whose
//! `bool` result says whether this caller made the transition (invariant 3).
//! One implementation serves both back ends through sqlx's `Any` driver: the
//! SQL is the portable subset, the migrations differ per back end.
//!
//! `Store` is one handle; its methods are grouped by aggregate, one module
//! each, every row type with its `from_row` beside its queries:
//!
//! - `accounts`: accounts, one per key;
//! - `orders`: orders, authorizations, challenges, and validation's
//!   challenge transitions;
//! - `finalization`: the pipeline's transitions over an order and its
//!   certificate, from `begin_finalize` to `store_final`;
//! - `certificates`: certificate rows read, and revocation;
//! - `nonces`: shared secrets and used nonces;
//! - `compat`: what clients did after a `processing` finalize;
//! - `sweeping`: queries over work in flight, for the sweeper;
//! - `leadership`: one leader among processes (advisory lock);
//! - `notifications`: finished orders announced to waiters, across
//!   processes on PostgreSQL.
//!
//! This file holds connecting, migrations, the error type and the row
//! helpers every module shares.

#![forbid(unsafe_code)]

mod accounts;
mod certificates;
mod compat;
mod finalization;
mod leadership;
mod nonces;
mod notifications;
mod orders;
mod sweeping;

pub use accounts::Account;
pub use certificates::{CertificateRecord, CertificateState, NewCertificate};
pub use compat::FinalizeObservation;
pub use leadership::Leadership;
pub use orders::{Authz, Challenge, Order, Timeline};
pub use sweeping::{CompletedOrder, ProcessingCounts};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Migrations are compiled in (so the binary needs no files beside it), one
/// list per back end; a new migration is a new file and a new line here.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "timeline and compat",
        include_str!("../migrations/sqlite/0002_timeline_and_compat.sql"),
    ),
    (
        3,
        "trace id",
        include_str!("../migrations/sqlite/0003_trace_id.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "timeline and compat",
        include_str!("../migrations/postgres/0002_timeline_and_compat.sql"),
    ),
    (
        3,
        "trace id",
        include_str!("../migrations/postgres/0003_trace_id.sql"),
    ),
];

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    let migrations = list
        .iter()
        .map(|(version, name, sql)| {
            sqlx::migrate::Migration::new(
                *version,
                (*name).into(),
                sqlx::migrate::MigrationType::Simple,
                sqlx::AssertSqlSafe(*sql).into_sql_str(),
                false,
            )
        })
        .collect::<Vec<_>>();
    sqlx::migrate::Migrator {
        migrations: migrations.into(),
        ..sqlx::migrate::Migrator::DEFAULT
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: Arc<String>,
    /// Ids of orders that just became `valid` or `invalid`, for waiters in
    /// this process (the sync and hybrid finalize modes).
    done: broadcast::Sender<String>,
    /// PostgreSQL: the one LISTEN connection that relays other processes'
    /// notifications into `done`, started by the first subscriber.
    listening: Arc<tokio::sync::OnceCell<()>>,
}

/// PostgreSQL connections one `Store` holds at most, unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// Milliseconds since the Unix epoch: the unit of every stored time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// `connect`, holding at most `max_connections` PostgreSQL connections
    /// (SQLite always uses one). Every replica of every binary has a pool of
    /// its own: their sum must stay below the server's `max_connections`.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let pool = match backend {
            // One connection: SQLite has one writer anyway, and a single
            // connection can never hit SQLITE_BUSY on a read→write upgrade.
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(max_connections.max(1))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?
            }
        };
        let (done, _) = broadcast::channel(4096);
        Ok(Store {
            pool,
            backend,
            url: Arc::new(url.to_string()),
            done,
            listening: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the back end's migrations (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => migrator(SQLITE_MIGRATIONS).run(&self.pool).await?,
            Backend::Postgres => migrator(POSTGRES_MIGRATIONS).run(&self.pool).await?,
        }
        Ok(())
    }

    /// True when the database answers; for readiness probes.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Runs one administrative statement (e.g. `CREATE DATABASE` in tests
    /// and tooling). Never pass it client input.
    pub async fn execute_admin(&self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("domain types serialize")
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn parse<T: FromStr<Err = String>>(row: &AnyRow, col: &str) -> Result<T> {
    let text: String = row.try_get(col)?;
    text.parse().map_err(StoreError::Corrupt)
}

fn parse_json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<Option<T>> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
        .transpose()
}
