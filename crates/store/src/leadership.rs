//! One leader among many processes (the sweeper), or one process that
//! excludes all others sharing a role (a sole api replica): a PostgreSQL
//! session advisory lock held on a connection of its own, so the lock goes
//! when the holder's process or connection dies. SQLite serves one
//! process, which always holds it.

use crate::{Result, Store};
use sqlx::Row;
use sqlx::postgres::Postgres;

/// Held while this process leads; dropping it gives leadership up.
pub struct Leadership {
    conn: Option<sqlx::pool::PoolConnection<Postgres>>,
}

impl Drop for Leadership {
    /// The lock belongs to the connection's session: returned to the pool it
    /// would stay held by a connection nobody leads with. Closing the
    /// connection releases it.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

impl Store {
    /// Tries to become the one leader for `key` (e.g. the sweeper). On
    /// PostgreSQL this is a session advisory lock held by a dedicated
    /// connection: it is released when the leader's process or connection
    /// dies. SQLite serves one process, which always leads.
    pub async fn try_leadership(&self, key: i64) -> Result<Option<Leadership>> {
        self.try_session_lock("SELECT pg_try_advisory_lock($1) AS locked", key)
            .await
    }

    /// Tries to take `key` shared: any number of processes may hold it so,
    /// and while any does, [`Store::try_leadership`] of the same key fails
    /// (and the other way round). SQLite: always granted.
    pub async fn try_shared_lock(&self, key: i64) -> Result<Option<Leadership>> {
        self.try_session_lock("SELECT pg_try_advisory_lock_shared($1) AS locked", key)
            .await
    }

    async fn try_session_lock(&self, sql: &'static str, key: i64) -> Result<Option<Leadership>> {
        let Some(postgres) = self.db.postgres() else {
            return Ok(Some(Leadership { conn: None }));
        };
        let database = |e: sqlx::Error| crate::StoreError::Database(e.into());
        let mut conn = postgres.pool().acquire().await.map_err(database)?;
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .map_err(database)?;
        let locked: bool = row.try_get("locked").map_err(database)?;
        Ok(locked.then_some(Leadership { conn: Some(conn) }))
    }
}

impl Leadership {
    /// False once the lock's connection is gone (the lock went with it).
    pub async fn still_held(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(conn) => sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok(),
        }
    }
}
