//! The PostgreSQL executor: sqlx's native driver (prepared statements,
//! cached per connection) over a bounded pool; one transaction per script.

use super::{Backend, DbError, Migration, Outcome, Row, Script, Stmt, Value};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Postgres as Pg, Row as _, TypeInfo};
use std::sync::Arc;
use std::time::Duration;

/// A pooled connection idle this long is pinged before it is used again.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Postgres {
    pool: PgPool,
    url: Arc<String>,
}

fn bind<'q>(
    mut query: Query<'q, Pg, PgArguments>,
    params: &'q [Value],
) -> Query<'q, Pg, PgArguments> {
    for value in params {
        query = match value {
            Value::Int(v) => query.bind(*v),
            Value::Text(v) => query.bind(v.as_deref()),
            Value::Blob(v) => query.bind(v.as_deref()),
        };
    }
    query
}

fn decode(row: &PgRow) -> Result<Row, DbError> {
    let columns: Arc<[String]> = row.columns().iter().map(|c| c.name().to_string()).collect();
    let mut values = Vec::with_capacity(columns.len());
    for (i, column) in row.columns().iter().enumerate() {
        values.push(match column.type_info().name() {
            "INT8" => Value::Int(row.try_get::<Option<i64>, _>(i)?),
            "INT4" => Value::Int(row.try_get::<Option<i32>, _>(i)?.map(i64::from)),
            "INT2" => Value::Int(row.try_get::<Option<i16>, _>(i)?.map(i64::from)),
            "BOOL" => Value::Int(row.try_get::<Option<bool>, _>(i)?.map(i64::from)),
            "TEXT" | "VARCHAR" | "NAME" => Value::Text(row.try_get::<Option<String>, _>(i)?),
            "BYTEA" => Value::Blob(row.try_get::<Option<Vec<u8>>, _>(i)?),
            other => {
                return Err(DbError::Decode(format!(
                    "column {} has type {other}, which Kiln does not use",
                    column.name()
                )));
            }
        });
    }
    Ok(Row { columns, values })
}

impl Postgres {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Postgres, DbError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it hands out by default: a round
            // trip (and a backend wake-up) before every statement, a third
            // of PostgreSQL's work per order in `bench/scenario2.sh`. A
            // connection in steady use needs no ping; one idle for a while
            // (the server may have restarted) is still checked.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        Ok(Postgres {
            pool,
            url: Arc::new(url.to_string()),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn optional(&self, stmt: &Stmt) -> Result<Option<Row>, DbError> {
        let row = bind(sqlx::query(stmt.sql), &stmt.params)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    pub async fn all(&self, stmt: &Stmt) -> Result<Vec<Row>, DbError> {
        let rows = bind(sqlx::query(stmt.sql), &stmt.params)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    pub async fn run(&self, script: Script) -> Result<Outcome, DbError> {
        let steps: Vec<_> = script
            .steps
            .iter()
            .filter(|s| s.only_on.is_none_or(|b| b == Backend::Postgres))
            .collect();
        // One unconditional write needs no transaction of its own.
        if let [step] = steps.as_slice()
            && step.require_rows.is_none()
            && script.steps.len() == 1
        {
            let done = bind(sqlx::query(step.stmt.sql), &step.stmt.params)
                .execute(&self.pool)
                .await?;
            super::count_writes(1, 1);
            return Ok(Outcome::Committed(vec![done.rows_affected()]));
        }
        let mut tx = self.pool.begin().await?;
        let mut rows = Vec::with_capacity(script.steps.len());
        for step in &script.steps {
            if step.only_on.is_some_and(|b| b != Backend::Postgres) {
                rows.push(0);
                continue;
            }
            let changed = bind(sqlx::query(step.stmt.sql), &step.stmt.params)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if step.require_rows.is_some_and(|want| want != changed) {
                tx.rollback().await?;
                return Ok(Outcome::Refused);
            }
            rows.push(changed);
        }
        tx.commit().await?;
        super::count_writes(steps.len() as u64, 1);
        Ok(Outcome::Committed(rows))
    }

    pub async fn migrate(&self, migrations: &'static [Migration]) -> Result<(), DbError> {
        use sqlx::SqlSafeStr;
        let list = migrations
            .iter()
            .map(|m| {
                sqlx::migrate::Migration::new(
                    m.version,
                    m.description.into(),
                    sqlx::migrate::MigrationType::Simple,
                    sqlx::AssertSqlSafe(m.sql).into_sql_str(),
                    false,
                )
            })
            .collect::<Vec<_>>();
        let migrator = sqlx::migrate::Migrator {
            migrations: list.into(),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| DbError::Migrate(e.to_string()))
    }

    pub async fn execute_admin(&self, sql: &str) -> Result<(), DbError> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
