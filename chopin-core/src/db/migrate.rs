//! Migrations under a lock: several instances starting together against one PostgreSQL
//! database must not run the same migrations at once (each would try to create the same
//! tables and record the same versions, and all but one would fail start-up).
//!
//! [`Db::migration_lock`] takes a PostgreSQL session-level advisory lock on a connection of
//! its own (outside the pool, so the migrations keep every pooled connection); the lock is
//! released by [`MigrationLock::release`] or, if the guard is dropped on an error path, by the
//! server when that connection closes. SQLite needs no lock (one file, one writer at a time;
//! every connection of a `Db` is in one process) and gets a guard that holds nothing.

use sea_orm::{DatabaseConnection, DbErr};

use super::Db;

/// A held migration lock (see [`Db::migration_lock`]). Release it with
/// [`MigrationLock::release`] once the migrations ran; dropping it releases it too (the
/// connection holding it closes).
#[derive(Debug)]
#[must_use = "the lock is released when this guard is dropped"]
pub struct MigrationLock {
    #[cfg(feature = "postgres")]
    held: Option<(sea_orm::sqlx::PgConnection, i64)>,
}

impl Db {
    /// Wait for and take the migration lock called `name` (one lock per migrator: use
    /// distinct names for migrators that may run inside one another). On PostgreSQL this is
    /// an advisory lock held by a dedicated connection, so instances starting together run
    /// their migrations one after the other, and the later ones find them applied; it waits
    /// as long as another instance holds the lock. On SQLite it returns at once.
    ///
    /// ```no_run
    /// # use sea_orm_migration::prelude::*;
    /// # struct Migrator;
    /// # impl MigratorTrait for Migrator {
    /// #     fn migrations() -> Vec<Box<dyn MigrationTrait>> { vec![] }
    /// # }
    /// # async fn run(db: chopin_core::db::Db) -> Result<(), sea_orm::DbErr> {
    /// let lock = db.migration_lock("app").await?;
    /// Migrator::up(&db, None).await?;
    /// lock.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn migration_lock(&self, name: &str) -> Result<MigrationLock, DbErr> {
        lock(&self.conn, name).await
    }
}

/// [`Db::migration_lock`] for a plain sea-orm connection (the auth store's migrations).
pub(crate) async fn lock(conn: &DatabaseConnection, name: &str) -> Result<MigrationLock, DbErr> {
    #[cfg(feature = "postgres")]
    if matches!(
        conn.inner,
        sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_)
    ) {
        use sea_orm::sqlx::{self, Connection};
        let pool = conn.get_postgres_connection_pool();
        let key = lock_key(name);
        #[cfg(feature = "metrics")]
        let start = std::time::Instant::now();
        let mut own = sqlx::PgConnection::connect_with(&pool.connect_options())
            .await
            .map_err(|e| DbErr::Conn(sqlx_err(e)))?;
        #[cfg(feature = "metrics")]
        super::metrics::acquired(start.elapsed());
        // The pool's `statement_timeout` (the request timeout) would also end the wait for
        // the lock while another instance migrates: this connection waits as long as it takes.
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut own)
            .await
            .map_err(|e| DbErr::Exec(sqlx_err(e)))?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut own)
            .await
            .map_err(|e| DbErr::Exec(sqlx_err(e)))?;
        return Ok(MigrationLock {
            held: Some((own, key)),
        });
    }
    let _ = (conn, name);
    Ok(MigrationLock {
        #[cfg(feature = "postgres")]
        held: None,
    })
}

impl MigrationLock {
    /// Release the lock and close its connection.
    pub async fn release(self) -> Result<(), DbErr> {
        #[cfg(feature = "postgres")]
        if let Some((mut own, key)) = self.held {
            use sea_orm::sqlx::{self, Connection};
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut own)
                .await
                .map(drop)
                .map_err(|e| DbErr::Exec(sqlx_err(e)));
            // Closing the session releases the lock even if the unlock failed.
            let _ = own.close().await;
            return unlocked;
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
fn sqlx_err(e: sea_orm::sqlx::Error) -> sea_orm::RuntimeErr {
    sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e))
}

/// The advisory lock key of `name`: FNV-1a (64 bits) of `chopin-migrations:<name>`, the
/// same in every process and every build.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"chopin-migrations:".iter().chain(name.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("auth"), lock_key("auth"));
        assert_ne!(lock_key("auth"), lock_key("app"));
        // Fixed across builds: instances of different versions must agree.
        assert_eq!(lock_key(""), 0x8d89_7b2c_158c_1fe6_u64 as i64);
    }
}
