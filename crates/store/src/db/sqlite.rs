//! The SQLite executor: one writer thread with group commit, and a few
//! read-only connections used on the caller's thread.
//!
//! Reads run where they are asked for: an indexed lookup takes a few
//! microseconds, less than a hand-off to another thread would cost, and WAL
//! lets them proceed while a write commits. Writes go to the one writer
//! thread (SQLite allows one writer), which takes every script waiting and
//! commits them as one transaction, each inside its own savepoint: under
//! load many scripts share one commit; alone, a script commits at once. A
//! checkpoint's fsync happens on that thread, never on the async runtime.

use super::{Backend, DbError, Migration, Outcome, Row, Script, Stmt, Value};
use rusqlite::{Connection, OpenFlags, ToSql, types::ToSqlOutput, types::ValueRef};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

/// Scripts committed in one transaction at most.
const MAX_BATCH: usize = 256;
/// Read-only connections: enough for the runtime's threads and a few more.
const READERS: usize = 4;
/// Statements each connection keeps prepared (Kiln has fewer than this).
const STATEMENT_CACHE: usize = 256;

pub struct Sqlite {
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// `None` once closed.
    readers: Vec<Mutex<Option<Reader>>>,
    next_reader: AtomicUsize,
}

enum WriteJob {
    Script(
        Script,
        tokio::sync::oneshot::Sender<Result<Outcome, DbError>>,
    ),
    Batch(String, tokio::sync::oneshot::Sender<Result<(), DbError>>),
    Migrate(
        &'static [Migration],
        tokio::sync::oneshot::Sender<Result<(), DbError>>,
    ),
}

struct Reader {
    conn: Connection,
    /// Column names per statement, so a row costs no string allocations.
    columns: HashMap<&'static str, Arc<[String]>>,
}

/// No memory map (`mmap_size` 0). In WAL mode a read transaction that
/// finds the database changed since its last one resets its page cache and
/// unmaps the whole map; under load that is nearly every read, and the
/// munmap, mmap and page faults cost more than the `pread`s they save
/// (6.6 against 5.8 ms of CPU per order in `bench/`, BENCHMARKS.md).
const MMAP_SIZE: i64 = 0;

fn configure(conn: &Connection) -> Result<(), DbError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "mmap_size", MMAP_SIZE)?;
    Ok(())
}

impl Sqlite {
    /// Opens (creating if missing) the database file in WAL mode.
    pub fn open(path: &str) -> Result<Sqlite, DbError> {
        let writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // No fsync per commit (WAL stays consistent; a power cut may lose
        // the last commits, a process crash loses nothing).
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        configure(&writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&conn)?;
            readers.push(Mutex::new(Some(Reader {
                conn,
                columns: HashMap::new(),
            })));
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kiln-sqlite-writer".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| DbError::Migrate(format!("starting the writer thread: {e}")))?;
        Ok(Sqlite {
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn send(&self, job: WriteJob) -> Result<(), DbError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer
            .as_ref()
            .ok_or(DbError::Closed)?
            .send(job)
            .map_err(|_| DbError::Closed)
    }

    pub async fn write(&self, script: Script) -> Result<Outcome, DbError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(WriteJob::Script(script, reply))?;
        answer.await.map_err(|_| DbError::Closed)?
    }

    pub async fn execute_batch(&self, sql: String) -> Result<(), DbError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(WriteJob::Batch(sql, reply))?;
        answer.await.map_err(|_| DbError::Closed)?
    }

    /// Blocking: run from `spawn_blocking`.
    pub fn migrate(&self, migrations: &'static [Migration]) -> Result<(), DbError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(WriteJob::Migrate(migrations, reply))?;
        answer.blocking_recv().map_err(|_| DbError::Closed)?
    }

    /// Runs a read on a free read-only connection of this thread's choosing.
    pub fn read(&self, stmt: &Stmt) -> Result<Vec<Row>, DbError> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(mut reader) = self.readers[(start + i) % n].try_lock() {
                return reader.as_mut().ok_or(DbError::Closed)?.query(stmt);
            }
        }
        // Every connection busy (more threads than connections): wait.
        let mut reader = self.readers[start % n]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        reader.as_mut().ok_or(DbError::Closed)?.query(stmt)
    }

    /// Stops the writer once the writes queued so far are committed, and
    /// closes the read connections.
    pub async fn close(&self) {
        for reader in &self.readers {
            reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self
            .writer_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// `$1…$n` (PostgreSQL's placeholders, used in Kiln's SQL) as `?1…?n`.
fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') {
        Cow::Owned(sql.replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Blob(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Value::Int(None) | Value::Text(None) | Value::Blob(None) => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
        })
    }
}

fn prepare<'c>(
    conn: &'c Connection,
    stmt: &Stmt,
) -> Result<rusqlite::CachedStatement<'c>, DbError> {
    let mut prepared = conn.prepare_cached(&sqlite_sql(stmt.sql))?;
    for (i, value) in stmt.params.iter().enumerate() {
        prepared.raw_bind_parameter(i + 1, value)?;
    }
    Ok(prepared)
}

impl Reader {
    fn query(&mut self, stmt: &Stmt) -> Result<Vec<Row>, DbError> {
        let mut prepared = prepare(&self.conn, stmt)?;
        let columns = self
            .columns
            .entry(stmt.sql)
            .or_insert_with(|| {
                prepared
                    .column_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            })
            .clone();
        let mut rows = prepared.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Int(None),
                    ValueRef::Integer(v) => Value::Int(Some(v)),
                    ValueRef::Real(v) => Value::Int(Some(v as i64)),
                    ValueRef::Text(v) => Value::Text(Some(String::from_utf8_lossy(v).into_owned())),
                    ValueRef::Blob(v) => Value::Blob(Some(v.to_vec())),
                });
            }
            out.push(Row {
                columns: columns.clone(),
                values,
            });
        }
        Ok(out)
    }
}

fn write_loop(conn: Connection, jobs: mpsc::Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut scripts = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                WriteJob::Script(script, reply) => scripts.push((script, reply)),
                // Administrative work runs alone, after the scripts before it.
                WriteJob::Batch(sql, reply) => {
                    commit_scripts(&conn, std::mem::take(&mut scripts));
                    let _ = reply.send(conn.execute_batch(&sql).map_err(DbError::from));
                }
                WriteJob::Migrate(list, reply) => {
                    commit_scripts(&conn, std::mem::take(&mut scripts));
                    let _ = reply.send(migrate(&conn, list));
                }
            }
            if scripts.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        commit_scripts(&conn, scripts);
    }
}

type Pending = (
    Script,
    tokio::sync::oneshot::Sender<Result<Outcome, DbError>>,
);

/// Commits the scripts as one transaction, each in its own savepoint, and
/// answers each once the commit is durable.
fn commit_scripts(conn: &Connection, scripts: Vec<Pending>) {
    if scripts.is_empty() {
        return;
    }
    if let Err(e) = conn
        .prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]))
    {
        let message = e.to_string();
        for (_, reply) in scripts {
            let _ = reply.send(Err(DbError::Transaction(format!("BEGIN: {message}"))));
        }
        return;
    }
    // Alone in its transaction, a script needs no savepoint: a refusal or
    // an error rolls the whole transaction back. Nor does one unconditional
    // statement: it cannot be refused, and SQLite undoes a statement that
    // fails (a constraint's ABORT) without touching the rest of the
    // transaction. Most scripts are that one statement.
    let alone = scripts.len() == 1;
    let outcomes: Vec<Result<Outcome, DbError>> = scripts
        .iter()
        .map(|(script, _)| match alone || script.is_one_unconditional() {
            true => run_steps(conn, script),
            false => run_in_savepoint(conn, script),
        })
        .collect();
    if alone && !matches!(outcomes[0], Ok(Outcome::Committed(_))) {
        let _ = conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut s| s.execute([]));
        for ((_, reply), outcome) in scripts.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
        return;
    }
    match conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
    {
        Ok(_) => {
            let statements = scripts.iter().map(|(s, _)| s.steps.len() as u64).sum();
            super::count_writes(statements, 1);
            for ((_, reply), outcome) in scripts.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let message = e.to_string();
            for (_, reply) in scripts {
                let _ = reply.send(Err(DbError::Transaction(format!("COMMIT: {message}"))));
            }
        }
    }
}

fn run_in_savepoint(conn: &Connection, script: &Script) -> Result<Outcome, DbError> {
    let exec = |sql: &str| -> Result<(), DbError> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    exec("SAVEPOINT script")?;
    let result = run_steps(conn, script);
    match &result {
        Ok(Outcome::Committed(_)) => exec("RELEASE script")?,
        _ => {
            exec("ROLLBACK TO script")?;
            exec("RELEASE script")?;
        }
    }
    result
}

fn run_steps(conn: &Connection, script: &Script) -> Result<Outcome, DbError> {
    let mut rows = Vec::with_capacity(script.steps.len());
    for step in &script.steps {
        if step.only_on.is_some_and(|b| b != Backend::Sqlite) {
            rows.push(0);
            continue;
        }
        let changed = prepare(conn, &step.stmt)?.raw_execute()? as u64;
        if step.require_rows.is_some_and(|want| want != changed) {
            return Ok(Outcome::Refused);
        }
        rows.push(changed);
    }
    Ok(Outcome::Committed(rows))
}

/// The migrations table sqlx uses, so a data directory made by an earlier
/// Kiln (which migrated through sqlx) is recognised, and the other way round.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

fn migrate(conn: &Connection, migrations: &[Migration]) -> Result<(), DbError> {
    conn.execute_batch(MIGRATIONS_TABLE)?;
    for m in migrations {
        let applied: Option<bool> = conn
            .query_row(
                "SELECT success FROM _sqlx_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        match applied {
            Some(true) => continue,
            Some(false) => {
                return Err(DbError::Migrate(format!(
                    "migration {} is recorded as failed; repair the database",
                    m.version
                )));
            }
            None => {}
        }
        let started = std::time::Instant::now();
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(m.sql)?;
        use sha2::Digest;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            rusqlite::params![
                m.version,
                m.description,
                sha2::Sha384::digest(m.sql.as_bytes()).to_vec(),
                started.elapsed().as_nanos() as i64
            ],
        )?;
        tx.commit()?;
    }
    Ok(())
}
