//! The store's two back ends behind one small interface: point reads,
//! scans, and *scripts* — short lists of writes that commit together or
//! not at all, each write optionally required to change an exact number of
//! rows (the compare-and-set of invariant 3). Every piece of SQL is written
//! once, in the portable subset both databases accept; only the executors
//! differ:
//!
//! - **SQLite** (the all-in-one): rusqlite, one writer thread that commits
//!   whatever scripts are waiting as one transaction (a savepoint each, so
//!   one script's failure never touches another's), and a few read-only
//!   connections used directly by the caller, so a poll never waits behind a
//!   write. sqlx's SQLite driver cost ~100 µs of CPU per statement here;
//!   this costs a few.
//! - **PostgreSQL** (distributed): sqlx's native driver with a pool and
//!   prepared statements; one transaction per script.

mod postgres;
mod sqlite;
mod value;

pub use value::{Row, Stmt, Value};

use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(String),
    /// A transaction could not begin or commit; every script in it failed.
    #[error("transaction: {0}")]
    Transaction(String),
    #[error("decoding a row: {0}")]
    Decode(String),
    #[error("the database connection is closed")]
    Closed,
}

impl DbError {
    /// A UNIQUE or PRIMARY KEY constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            DbError::Postgres(sqlx::Error::Database(db)) => db.is_unique_violation(),
            _ => false,
        }
    }

    /// The database could not be reached or its connection broke (no
    /// server, a restart, a pool waiting for a connection), as opposed to
    /// an answer from a server that is up.
    pub fn is_unreachable(&self) -> bool {
        match self {
            DbError::Postgres(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            )
            | DbError::Closed => true,
            // SQLSTATE class 08 (connection exception) and 57P01-57P03
            // (shutting down, or starting up: cannot connect now).
            DbError::Postgres(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
            _ => false,
        }
    }
}

/// Writes that commit together or not at all.
#[derive(Debug, Default)]
pub struct Script {
    pub(crate) steps: Vec<Step>,
}

#[derive(Debug)]
pub(crate) struct Step {
    pub stmt: Stmt,
    /// Roll the whole script back unless the write changed exactly this
    /// many rows.
    pub require_rows: Option<u64>,
    /// Run only on this back end (e.g. PostgreSQL's NOTIFY).
    pub only_on: Option<Backend>,
}

impl Script {
    pub fn new() -> Self {
        Script::default()
    }

    /// A write whose row count does not decide anything.
    pub fn then(mut self, stmt: Stmt) -> Self {
        self.steps.push(Step {
            stmt,
            require_rows: None,
            only_on: None,
        });
        self
    }

    /// A write that must change exactly `rows` rows, or the script is
    /// rolled back and reported [`Outcome::Refused`].
    pub fn require(mut self, rows: u64, stmt: Stmt) -> Self {
        self.steps.push(Step {
            stmt,
            require_rows: Some(rows),
            only_on: None,
        });
        self
    }

    /// One write whose row count decides nothing: it commits unless it
    /// fails, and a failed statement changes nothing.
    pub(crate) fn is_one_unconditional(&self) -> bool {
        matches!(self.steps.as_slice(), [step] if step.require_rows.is_none())
    }

    /// A write made only on `backend`.
    pub fn only_on(mut self, backend: Backend, stmt: Stmt) -> Self {
        self.steps.push(Step {
            stmt,
            require_rows: None,
            only_on: Some(backend),
        });
        self
    }
}

/// What became of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed; the rows each step changed (0 for steps skipped on this
    /// back end).
    Committed(Vec<u64>),
    /// A required row count did not hold (someone else got there first):
    /// nothing was written.
    Refused,
}

impl Outcome {
    pub fn committed(&self) -> bool {
        matches!(self, Outcome::Committed(_))
    }

    /// Rows changed by step `i` (0 if the script was refused).
    pub fn rows(&self, i: usize) -> u64 {
        match self {
            Outcome::Committed(rows) => rows.get(i).copied().unwrap_or(0),
            Outcome::Refused => 0,
        }
    }
}

/// Counts what the database is asked to do, per back end, so that a
/// benchmark (and an operator) can see round trips per order:
/// `kiln_db_statements_total{kind="read"|"write"}` and
/// `kiln_db_commits_total` (with group commit, several scripts per commit).
pub(crate) fn count_reads(n: u64) {
    metrics::counter!("kiln_db_statements_total", "kind" => "read").increment(n);
}

pub(crate) fn count_writes(statements: u64, commits: u64) {
    metrics::counter!("kiln_db_statements_total", "kind" => "write").increment(statements);
    metrics::counter!("kiln_db_commits_total").increment(commits);
}

/// A connected database of either kind; cheap to clone.
#[derive(Clone)]
pub enum Db {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(postgres::Postgres),
}

impl Db {
    /// `sqlite://PATH` (created if missing; query string ignored) or
    /// `postgres://…` with at most `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbError> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path).to_string();
            let db = tokio::task::spawn_blocking(move || sqlite::Sqlite::open(&path))
                .await
                .map_err(|e| DbError::Migrate(format!("opening SQLite: {e}")))??;
            Ok(Db::Sqlite(Arc::new(db)))
        } else {
            Ok(Db::Postgres(
                postgres::Postgres::connect(url, max_connections).await?,
            ))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The one row the statement selects, if any.
    pub async fn optional(&self, stmt: Stmt) -> Result<Option<Row>, DbError> {
        count_reads(1);
        match self {
            Db::Sqlite(db) => Ok(db.read(&stmt)?.into_iter().next()),
            Db::Postgres(db) => db.optional(&stmt).await,
        }
    }

    /// Every row the statement selects.
    pub async fn all(&self, stmt: Stmt) -> Result<Vec<Row>, DbError> {
        count_reads(1);
        match self {
            Db::Sqlite(db) => db.read(&stmt),
            Db::Postgres(db) => db.all(&stmt).await,
        }
    }

    /// One write on its own; the rows it changed.
    pub async fn execute(&self, stmt: Stmt) -> Result<u64, DbError> {
        Ok(self.run(Script::new().then(stmt)).await?.rows(0))
    }

    pub async fn run(&self, script: Script) -> Result<Outcome, DbError> {
        match self {
            Db::Sqlite(db) => db.write(script).await,
            Db::Postgres(db) => db.run(script).await,
        }
    }

    /// Applies the back end's migrations (idempotent).
    pub async fn migrate(&self, migrations: &'static [Migration]) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.migrate(migrations))
                    .await
                    .map_err(|e| DbError::Migrate(e.to_string()))?
            }
            Db::Postgres(db) => db.migrate(migrations).await,
        }
    }

    /// SQL from an operator or a test (`CREATE DATABASE …`), never from a
    /// client.
    pub async fn execute_admin(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(db) => db.execute_batch(sql.to_string()).await,
            Db::Postgres(db) => db.execute_admin(sql).await,
        }
    }

    pub fn postgres(&self) -> Option<&postgres::Postgres> {
        match self {
            Db::Postgres(db) => Some(db),
            Db::Sqlite(_) => None,
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(db) => db.close().await,
            Db::Postgres(db) => db.close().await,
        }
    }
}

/// One schema migration: its version, name and SQL.
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}
