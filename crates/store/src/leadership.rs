//! One leader among many processes (the sweeper): a PostgreSQL session
//! advisory lock held on a connection of its own, so the lock goes when the
//! leader's process or connection dies. SQLite serves one process, which
//! always leads.

use crate::{Backend, Result, Store};
use sqlx::Row;

/// Held while this process leads; dropping it gives leadership up.
pub struct Leadership {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl Store {
    /// Tries to become the one leader for `key` (e.g. the sweeper). On
    /// PostgreSQL this is a session advisory lock held by a dedicated
    /// connection: it is released when the leader's process or connection
    /// dies. SQLite serves one process, which always leads.
    pub async fn try_leadership(&self, key: i64) -> Result<Option<Leadership>> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(Leadership { conn: None }));
        }
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        let locked: bool = row.try_get("locked")?;
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
