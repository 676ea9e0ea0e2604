//! Kiln's state: accounts, orders, authorizations, challenges, certificates
//! and used nonces, in SQLite (embedded) or PostgreSQL (distributed).
//!
//! The database is the truth (invariant 1). Every state change here is a
//! compare-and-set — `UPDATE … WHERE id = $1 AND state = $expected` — whose
//! `bool` result says whether this caller made the transition (invariant 3).
//! One implementation serves both back ends through sqlx's `Any` driver: the
//! SQL is the portable subset, the migrations differ per back end.

#![forbid(unsafe_code)]

mod accounts;
mod certificates;
mod compat;
mod finalization;
mod leadership;
mod nonces;
mod notifications;
mod records;
mod sweeping;

pub use accounts::Account;
pub use certificates::{CertificateRecord, CertificateState, NewCertificate};
pub use compat::FinalizeObservation;
pub use leadership::Leadership;
pub use records::*;
pub use sweeping::{CompletedOrder, ProcessingCounts};

use domain::{AuthzStatus, ChallengeStatus, OrderStatus, Problem};
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

    // ---- orders, authorizations, challenges --------------------------------

    /// Stores a new order with its authorizations and their challenges in one
    /// transaction: a client never sees half an order.
    pub async fn insert_order(
        &self,
        order: &Order,
        authzs: &[(Authz, Vec<Challenge>)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO orders (id, account_id, status, identifiers, not_before, not_after, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&order.id)
        .bind(&order.account_id)
        .bind(order.status.as_str())
        .bind(json(&order.identifiers))
        .bind(order.not_before)
        .bind(order.not_after)
        .bind(order.expires_at)
        .bind(order.created_at)
        .execute(&mut *tx)
        .await?;
        for (authz, challenges) in authzs {
            sqlx::query(
                "INSERT INTO authzs (id, order_id, account_id, identifier, wildcard, status, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&authz.id)
            .bind(&authz.order_id)
            .bind(&authz.account_id)
            .bind(&authz.identifier)
            .bind(authz.wildcard as i64)
            .bind(authz.status.as_str())
            .bind(authz.expires_at)
            .execute(&mut *tx)
            .await?;
            for c in challenges {
                sqlx::query(
                    "INSERT INTO challenges (id, authz_id, kind, token, status) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&c.id)
                .bind(&c.authz_id)
                .bind(c.kind.as_str())
                .bind(&c.token)
                .bind(c.status.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn order(&self, id: &str) -> Result<Option<Order>> {
        let row = sqlx::query("SELECT * FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Order::from_row(&r)).transpose()
    }

    /// The account's order ids, oldest first, from `offset`.
    pub async fn order_ids_for_account(
        &self,
        account_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM orders WHERE account_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        )
        .bind(account_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    pub async fn authzs_for_order(&self, order_id: &str) -> Result<Vec<Authz>> {
        let rows =
            sqlx::query("SELECT * FROM authzs WHERE order_id = $1 ORDER BY identifier, wildcard")
                .bind(order_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(Authz::from_row).collect()
    }

    pub async fn authz(&self, id: &str) -> Result<Option<Authz>> {
        let row = sqlx::query("SELECT * FROM authzs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Authz::from_row(&r)).transpose()
    }

    pub async fn challenges_for_authz(&self, authz_id: &str) -> Result<Vec<Challenge>> {
        let rows = sqlx::query("SELECT * FROM challenges WHERE authz_id = $1 ORDER BY kind")
            .bind(authz_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Challenge::from_row).collect()
    }

    pub async fn challenge(&self, id: &str) -> Result<Option<Challenge>> {
        let row = sqlx::query("SELECT * FROM challenges WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Challenge::from_row(&r)).transpose()
    }

    /// pending → processing, only while its authorization is still pending
    /// and no sibling challenge is already being validated.
    pub async fn start_challenge(&self, challenge_id: &str, deadline: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE challenges SET status = 'processing', deadline = $2
             WHERE id = $1 AND status = 'pending'
               AND EXISTS (SELECT 1 FROM authzs a WHERE a.id = challenges.authz_id AND a.status = 'pending')
               AND NOT EXISTS (SELECT 1 FROM challenges s
                               WHERE s.authz_id = challenges.authz_id AND s.status = 'processing')",
        )
        .bind(challenge_id)
        .bind(deadline)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a validation result: the challenge, its authorization and, when
    /// this was the last missing authorization, the order (→ `ready`), in one
    /// transaction. False when the challenge was no longer `processing`.
    pub async fn finish_challenge(
        &self,
        challenge_id: &str,
        outcome: std::result::Result<(), &Problem>,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let (status, error) = match outcome {
            Ok(()) => (ChallengeStatus::Valid, None),
            Err(p) => (ChallengeStatus::Invalid, Some(json(p))),
        };
        let done = sqlx::query(
            "UPDATE challenges SET status = $2, validated_at = $3, error = $4, deadline = NULL
             WHERE id = $1 AND status = 'processing'",
        )
        .bind(challenge_id)
        .bind(status.as_str())
        .bind(now)
        .bind(error.clone())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT a.id AS authz_id, a.order_id AS order_id FROM challenges c
             JOIN authzs a ON a.id = c.authz_id WHERE c.id = $1",
        )
        .bind(challenge_id)
        .fetch_one(&mut *tx)
        .await?;
        let authz_id: String = row.try_get("authz_id")?;
        let order_id: String = row.try_get("order_id")?;
        let authz_status = if outcome.is_ok() {
            AuthzStatus::Valid
        } else {
            AuthzStatus::Invalid
        };
        sqlx::query(
            "UPDATE authzs SET status = $2, validated_at = $3 WHERE id = $1 AND status = 'pending'",
        )
        .bind(&authz_id)
        .bind(authz_status.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if outcome.is_ok() {
            sqlx::query(
                "UPDATE orders SET status = 'ready' WHERE id = $1 AND status = 'pending'
                 AND NOT EXISTS (SELECT 1 FROM authzs WHERE order_id = $1 AND status <> 'valid')",
            )
            .bind(&order_id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query("UPDATE orders SET status = 'invalid', error = $2 WHERE id = $1 AND status = 'pending'")
                .bind(&order_id)
                .bind(error)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// pending|valid → deactivated (RFC 8555 §7.5.2); the order then reads
    /// as `invalid` if it was not finalized yet.
    pub async fn deactivate_authz(&self, authz_id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE authzs SET status = 'deactivated' WHERE id = $1 AND status IN ('pending', 'valid')",
        )
        .bind(authz_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            sqlx::query(
                "UPDATE orders SET status = 'invalid' WHERE status IN ('pending', 'ready')
                 AND id = (SELECT order_id FROM authzs WHERE id = $1)",
            )
            .bind(authz_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
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

impl Order {
    fn from_row(r: &AnyRow) -> Result<Self> {
        let step: Option<String> = r.try_get("step")?;
        Ok(Order {
            id: r.try_get("id")?,
            account_id: r.try_get("account_id")?,
            status: parse::<OrderStatus>(r, "status")?,
            step: step
                .map(|s| s.parse())
                .transpose()
                .map_err(StoreError::Corrupt)?,
            identifiers: parse_json(r, "identifiers")?.unwrap_or_default(),
            not_before: r.try_get("not_before")?,
            not_after: r.try_get("not_after")?,
            expires_at: r.try_get("expires_at")?,
            created_at: r.try_get("created_at")?,
            csr: r.try_get("csr")?,
            processing_since: r.try_get("processing_since")?,
            step_deadline: r.try_get("step_deadline")?,
            finalize_deadline: r.try_get("finalize_deadline")?,
            error: parse_json(r, "error")?,
            certificate_serial: r.try_get("certificate_serial")?,
            timeline: Timeline {
                caa_checked_at: r.try_get("caa_checked_at")?,
                precert_at: r.try_get("precert_at")?,
                scts_at: r.try_get("scts_at")?,
                completed_at: r.try_get("completed_at")?,
                trace_id: r.try_get("trace_id")?,
            },
        })
    }
}

impl Authz {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Authz {
            id: r.try_get("id")?,
            order_id: r.try_get("order_id")?,
            account_id: r.try_get("account_id")?,
            identifier: r.try_get("identifier")?,
            wildcard: r.try_get::<i64, _>("wildcard")? != 0,
            status: parse::<AuthzStatus>(r, "status")?,
            expires_at: r.try_get("expires_at")?,
            validated_at: r.try_get("validated_at")?,
        })
    }
}

impl Challenge {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Challenge {
            id: r.try_get("id")?,
            authz_id: r.try_get("authz_id")?,
            kind: parse(r, "kind")?,
            token: r.try_get("token")?,
            status: parse::<ChallengeStatus>(r, "status")?,
            validated_at: r.try_get("validated_at")?,
            error: parse_json(r, "error")?,
        })
    }
}
