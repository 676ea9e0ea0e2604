//! Kiln's state: accounts, orders, authorizations, challenges, certificates
//! and used nonces, in SQLite (embedded) or PostgreSQL (distributed).
//!
//! The database is the truth (invariant 1). Every state change here is a
//! compare-and-set — `UPDATE … WHERE id = $1 AND state = $expected` — whose
//! `bool` result says whether this caller made the transition (invariant 3).
//! `Store` is one concrete handle, not a trait: every query is written once,
//! in the SQL both databases accept, and runs on either back end through
//! [`db`] (rusqlite with group commit for SQLite, sqlx for PostgreSQL); only
//! the migrations differ per back end.
//!
//! Its methods are grouped by aggregate, one module each, every row type
//! with its `from_row` beside its queries:
//!
//! - `accounts`: accounts, one per key;
//! - `eab`: External Account Binding keys, each binding one account;
//! - `orders`: orders, authorizations, challenges, and validation's
//!   challenge transitions;
//! - `finalization`: the pipeline's transitions over an order and its
//!   certificate, from `begin_finalize` to `store_final`;
//! - `certificates`: certificate rows read, and revocation;
//! - `issuers`: the issuing certificates the signer records, the one source
//!   of the chain;
//! - `nonces`: shared secrets and used nonces;
//! - `compat`: what clients did after a `processing` finalize;
//! - `rate_limits`: counted events behind the api's rate limits;
//! - `renewal`: ACME Renewal Information (RFC 9773): what a certificate's
//!   suggested window is made of, and orders that replace a certificate;
//! - `dead_letters`: the messages the stage runner gave up on;
//! - `sweeping`: queries over work in flight, for the sweeper;
//! - `leadership`: one leader among processes (advisory lock);
//! - `notifications`: finished orders announced to waiters, across
//!   processes on PostgreSQL.
//!
//! This file holds connecting, migrations, the error type and the row
//! helpers every module shares.

#![forbid(unsafe_code)]

mod accounts;
pub mod audit;
mod authz_reuse;
mod blocked_keys;
mod certificates;
mod compat;
mod crls;
pub mod db;
mod dead_letters;
mod eab;
mod finalization;
mod issuers;
mod leadership;
mod nonces;
mod notifications;
mod orders;
mod perspectives;
#[cfg(test)]
mod query_plans;
pub mod rate_limits;
mod renewal;
mod sweeping;
mod views;

pub use accounts::Account;
pub use blocked_keys::{BlockedKey, KeyCompromiseRevocation, KeyDigest};
pub use certificates::{CertificateRecord, CertificateState, NewCertificate};
pub use compat::FinalizeObservation;
pub use crls::{CRL_PATH, CrlStatus, RevokedEntry, StoredCrl, crl_name};
pub use db::Backend;
pub use dead_letters::DeadLetterRecord;
pub use eab::{EabBinding, EabKey};
pub use finalization::BeginFinalize;
pub use issuers::Issuer;
pub use leadership::Leadership;
pub use orders::{Authz, Challenge, Order, Timeline};
pub use perspectives::{Corroboration, PerspectiveResult, caa_recheck_subject};
pub use renewal::{RenewNow, RenewNowMark, RenewalFacts};
pub use sweeping::{CompletedOrder, ProcessingCounts};

use db::{Db, DbError, Migration, Row};
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(DbError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

impl StoreError {
    /// The database could not be reached (see [`db::DbError::is_unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Database(e) if e.is_unreachable())
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Decode(why) => StoreError::Corrupt(why),
            other => StoreError::Database(other),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Migrations are compiled in (so the binary needs no files beside it):
/// one list, with a file of that name per back end under `migrations/`; a
/// new migration is two new files and a new line here.
macro_rules! migrations {
    ($backend:literal) => {
        &[
            migrations!(@one $backend, 1, "initial", "0001_initial.sql"),
            migrations!(@one $backend, 2, "timeline and compat", "0002_timeline_and_compat.sql"),
            migrations!(@one $backend, 3, "trace id", "0003_trace_id.sql"),
            migrations!(@one $backend, 4, "issuers", "0004_issuers.sql"),
            migrations!(@one $backend, 5, "blocked keys", "0005_blocked_keys.sql"),
            migrations!(@one $backend, 6, "rate limits", "0006_rate_limits.sql"),
            migrations!(@one $backend, 7, "renewal info", "0007_renewal_info.sql"),
            migrations!(@one $backend, 8, "certificate keys", "0008_certificate_keys.sql"),
            migrations!(@one $backend, 9, "eab", "0009_eab.sql"),
            migrations!(@one $backend, 10, "profile", "0010_profile.sql"),
            migrations!(@one $backend, 11, "authzs by account", "0011_authzs_by_account.sql"),
            migrations!(@one $backend, 12, "crl shards", "0012_crl_shards.sql"),
            migrations!(@one $backend, 13, "alternate chains", "0013_alternate_chains.sql"),
            migrations!(@one $backend, 14, "perspectives", "0014_perspectives.sql"),
            migrations!(@one $backend, 15, "precert signing", "0015_precert_signing.sql"),
            migrations!(@one $backend, 16, "dead letters", "0016_dead_letters.sql"),
        ]
    };
    (@one $backend:literal, $version:literal, $description:literal, $file:literal) => {
        Migration {
            version: $version,
            description: $description,
            sql: include_str!(concat!("../migrations/", $backend, "/", $file)),
        }
    };
}
const SQLITE_MIGRATIONS: &[Migration] = migrations!("sqlite");
const POSTGRES_MIGRATIONS: &[Migration] = migrations!("postgres");

#[derive(Clone)]
pub struct Store {
    db: Db,
    /// Ids of orders that just became `valid` or `invalid`, for waiters in
    /// this process (the sync and hybrid finalize modes).
    done: broadcast::Sender<String>,
    /// PostgreSQL: the one LISTEN connection that relays other processes'
    /// notifications into `done`, started by the first subscriber.
    listening: Arc<tokio::sync::OnceCell<()>>,
    /// Issuers read so far, by id (a row never changes; see `issuers`).
    issuers: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Issuer>>>>,
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
    /// (SQLite has its own fixed set: one writer, a few readers). Every
    /// replica of every binary has a pool of its own: their sum must stay
    /// below the server's `max_connections`.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Store> {
        let db = Db::connect(url, max_connections).await?;
        let (done, _) = broadcast::channel(4096);
        Ok(Store {
            db,
            done,
            listening: Arc::default(),
            issuers: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Applies the back end's migrations (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        Ok(self.db.migrate(self.migrations()).await?)
    }

    /// This build's migrations for the back end.
    fn migrations(&self) -> &'static [Migration] {
        match self.backend() {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        }
    }

    /// The newest migration applied to this database and the newest this
    /// build has, when the database is behind (`None`: up to date): a
    /// reader such as `kiln audit` refuses it rather than fail on a table
    /// it lacks. Both back ends keep sqlx's `_sqlx_migrations` table.
    pub async fn migrations_behind(&self) -> Result<Option<(i64, i64)>> {
        let known = self.migrations().last().map_or(0, |m| m.version);
        let applied = self
            .db
            .optional(stmt!(
                "SELECT MAX(version) AS applied FROM _sqlx_migrations WHERE success"
            ))
            .await?
            .map(|row| row.opt_i64("applied"))
            .transpose()?
            .flatten()
            .unwrap_or(0);
        Ok((applied < known).then_some((applied, known)))
    }

    /// True when the database answers; for readiness probes.
    pub async fn ping(&self) -> bool {
        self.db.optional(stmt!("SELECT 1 AS one")).await.is_ok()
    }

    /// Runs administrative SQL (e.g. `CREATE DATABASE` in tests and
    /// tooling). Never pass it client input.
    pub async fn execute_admin(&self, sql: &str) -> Result<()> {
        Ok(self.db.execute_admin(sql).await?)
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("domain types serialize")
}

fn parse<T: FromStr<Err = String>>(row: &Row, col: &str) -> Result<T> {
    row.text(col)?.parse().map_err(StoreError::Corrupt)
}

fn parse_json<T: serde::de::DeserializeOwned>(row: &Row, col: &str) -> Result<Option<T>> {
    row.opt_text(col)?
        .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
        .transpose()
}
