//! The database side of the auth module: accounts, refresh tokens (hashed, rotated, revoked
//! by family) and one-time tokens.

use chrono::{DateTime, Utc};
use ring::digest;
use sea_orm::prelude::async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, ExecResult, PaginatorTrait, QueryFilter, QueryResult, Set,
    Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde::Serialize;

use super::entity::{one_time_token, refresh_token, user};
use super::jwt::{hex, random_bytes};
use super::migration::AuthMigrator;
use crate::db::Db;
use crate::error::ChopinError;

/// An account, as the auth routes return it (no password hash). Its JSON keys are camelCase
/// (`emailVerified`, `createdAt`), like every resource Chopin documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The account's id (the `sub` of its tokens).
    pub id: i64,
    /// E-mail address (lowercased).
    pub email: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Whether the address was verified.
    pub email_verified: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for User {
    fn from(m: user::Model) -> Self {
        User {
            id: m.id,
            roles: split_roles(&m.roles),
            email: m.email,
            email_verified: m.email_verified,
            created_at: m.created_at,
        }
    }
}

fn split_roles(roles: &str) -> Vec<String> {
    roles.split_whitespace().map(str::to_string).collect()
}

/// SHA-256 of a high-entropy token, hex. Tokens are stored only as this digest, so a leaked
/// table gives no usable token.
pub(crate) fn token_digest(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// A new random token: 256 bits from `SystemRandom`, hex.
pub(crate) fn new_token() -> Result<String, ChopinError> {
    Ok(hex(&random_bytes::<32>().map_err(ChopinError::from)?))
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefreshRefusal {
    /// Unknown, expired or revoked.
    Invalid,
    /// Already rotated: a replay. The family has been revoked; these access tokens
    /// (`jti`, `exp`) were issued in it and may still be live.
    Reused(Vec<(String, i64)>),
}

/// The auth tables on the application's database. A cheap clone.
///
/// Built from a [`Db`] ([`AuthStore::new`], what the auth routes, the blog and `chopin new`
/// projects use), every query and transaction of the store goes through that `Db`, so its
/// circuit breaker applies: while the database is down the auth routes answer 503
/// `SERVICE_UNAVAILABLE` with `Retry-After` at once instead of waiting the pool's acquire
/// timeout, and the connection failures they see open the breaker like any other query's.
/// Built from a plain sea-orm connection ([`AuthStore::from_connection`]) there is no breaker.
#[derive(Debug, Clone)]
pub struct AuthStore {
    db: StoreConn,
    /// Seconds an expired access token is still accepted (the JWT leeway): a family's
    /// access tokens are revoked while `exp + leeway` is in the future. `AuthModule::new`
    /// sets it from the `Auth` settings.
    leeway: i64,
}

/// Leeway assumed until `AuthModule` sets the real one (the `TokenSettings` default).
const DEFAULT_LEEWAY_SECS: i64 = 60;

impl AuthStore {
    /// Use `db` and apply the auth migrations (recorded in `chopin_auth_migrations`), under
    /// the migration lock `auth` (see [`Db::migration_lock`]).
    ///
    /// The store keeps a clone of `db` (the same pool and circuit breaker) and runs every
    /// query through it: while the breaker is open, the store's methods fail at once with a
    /// 503 `SERVICE_UNAVAILABLE` (`Retry-After`).
    pub async fn new(db: &Db) -> Result<AuthStore, sea_orm::DbErr> {
        AuthStore::migrate(db.conn()).await?;
        Ok(AuthStore {
            db: StoreConn::Db(db.clone()),
            leeway: DEFAULT_LEEWAY_SECS,
        })
    }

    /// Like [`AuthStore::new`], from a plain sea-orm connection. Such a store has **no
    /// circuit breaker**: while the database is down each query waits for the pool (its
    /// acquire timeout) before failing. Prefer [`AuthStore::new`] with a [`Db`].
    pub async fn from_connection(db: DatabaseConnection) -> Result<AuthStore, sea_orm::DbErr> {
        AuthStore::migrate(&db).await?;
        Ok(AuthStore {
            db: StoreConn::Plain(db),
            leeway: DEFAULT_LEEWAY_SECS,
        })
    }

    /// The auth migrations, under the migration lock `auth`.
    async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
        // Several instances starting together take turns (a PostgreSQL advisory lock).
        let lock = crate::db::migrate_lock(db, "auth").await?;
        AuthMigrator::up(db, None).await?;
        lock.release().await
    }

    /// The same store, counting `leeway` when collecting a revoked family's live access
    /// tokens.
    pub(crate) fn with_leeway(mut self, leeway: std::time::Duration) -> AuthStore {
        self.leeway = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// The underlying sea-orm connection (of the [`Db`] the store was built from, or the one
    /// given to [`AuthStore::from_connection`]). Queries on it bypass the circuit breaker;
    /// use [`AuthStore::db`] where there is one.
    pub fn conn(&self) -> &DatabaseConnection {
        match &self.db {
            StoreConn::Db(db) => db.conn(),
            StoreConn::Plain(conn) => conn,
        }
    }

    /// The [`Db`] the store was built from ([`AuthStore::new`]), whose queries check its
    /// circuit breaker; `None` for a store built from a plain connection.
    pub fn db(&self) -> Option<&Db> {
        match &self.db {
            StoreConn::Db(db) => Some(db),
            StoreConn::Plain(_) => None,
        }
    }

    /// `Err` (503 `SERVICE_UNAVAILABLE`, `Retry-After`) while the circuit breaker of the
    /// store's [`Db`] is open: for a route to fail at once before expensive work (a password
    /// hash) whose result could not be stored anyway. Always `Ok` without a `Db`.
    pub(crate) fn check_available(&self) -> Result<(), ChopinError> {
        match &self.db {
            StoreConn::Db(db) => db.breaker_check(),
            StoreConn::Plain(_) => Ok(()),
        }
    }

    /// `err`, from a statement on a transaction of this store, reported to the breaker
    /// (statements on a `DatabaseTransaction` do not pass through `Db`).
    fn seen(&self, err: DbErr) -> DbErr {
        if let StoreConn::Db(db) = &self.db {
            db.observe_db_error(&err);
        }
        err
    }

    /// Create an account with an already-hashed password. 409 `CONFLICT` when the e-mail is
    /// taken.
    pub async fn create_user(&self, email: &str, password_hash: &str) -> Result<User, ChopinError> {
        let now = Utc::now();
        let model = user::ActiveModel {
            email: Set(normalize_email(email)),
            password_hash: Set(password_hash.to_string()),
            roles: Set(String::new()),
            email_verified: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(model.into())
    }

    /// The account with this e-mail (case-insensitive), with its password hash.
    pub(crate) async fn find_by_email(
        &self,
        email: &str,
    ) -> Result<Option<user::Model>, ChopinError> {
        Ok(user::Entity::find()
            .filter(user::Column::Email.eq(normalize_email(email)))
            .one(&self.db)
            .await?)
    }

    /// The id of the account with this e-mail (case-insensitive).
    pub async fn user_id_by_email(&self, email: &str) -> Result<Option<i64>, ChopinError> {
        Ok(self.find_by_email(email).await?.map(|m| m.id))
    }

    /// The account with this id.
    pub async fn user(&self, id: i64) -> Result<Option<User>, ChopinError> {
        Ok(user::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(User::from))
    }

    /// Replace an account's roles (they reach its tokens at the next login or refresh).
    pub async fn set_roles(&self, user_id: i64, roles: &[&str]) -> Result<(), ChopinError> {
        if roles
            .iter()
            .any(|r| r.is_empty() || r.contains(char::is_whitespace))
        {
            return Err(ChopinError::BadRequest(
                "role names must be non-empty and contain no spaces".into(),
            ));
        }
        let result = user::Entity::update_many()
            .col_expr(user::Column::Roles, Expr::value(roles.join(" ")))
            .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(user::Column::Id.eq(user_id))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(ChopinError::NotFound(format!("user {user_id} not found")));
        }
        Ok(())
    }

    pub(crate) async fn set_password_hash(
        &self,
        user_id: i64,
        password_hash: &str,
    ) -> Result<(), ChopinError> {
        user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(password_hash))
            .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(user::Column::Id.eq(user_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub(crate) async fn mark_verified(&self, user_id: i64) -> Result<(), ChopinError> {
        user::Entity::update_many()
            .col_expr(user::Column::EmailVerified, Expr::value(true))
            .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(user::Column::Id.eq(user_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Issue a refresh token in a new family, recording the access token (`jti`, `exp`)
    /// issued with it; returns the token.
    pub(crate) async fn issue_refresh(
        &self,
        user_id: i64,
        ttl: std::time::Duration,
        access: (&str, i64),
    ) -> Result<String, ChopinError> {
        let family = hex(&random_bytes::<16>().map_err(ChopinError::from)?);
        let (token, row) = refresh_row(user_id, family, ttl, access)?;
        row.insert(&self.db).await?;
        Ok(token)
    }

    /// Rotate `token`: spend it and, in the same transaction, insert its replacement in the
    /// same family, recording the access token `issue` makes for the account.
    ///
    /// A token already spent is a replay: its whole family is revoked. Because spending and
    /// inserting the replacement commit together, whoever sees the token spent also sees the
    /// replacement, and revoking the family revokes it too; two concurrent uses cannot both
    /// succeed (the spend is a conditional update). After inserting, the family is checked
    /// once more: if it was revoked meanwhile (logout, password reset), nothing is committed.
    pub(crate) async fn rotate_refresh<T>(
        &self,
        token: &str,
        ttl: std::time::Duration,
        issue: impl FnOnce(&user::Model) -> Result<(T, String, i64), ChopinError>,
    ) -> Result<Result<(T, String), RefreshRefusal>, ChopinError> {
        let Some(row) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_digest(token)))
            .one(&self.db)
            .await?
        else {
            return Ok(Err(RefreshRefusal::Invalid));
        };
        if row.revoked_at.is_some() {
            return Ok(Err(RefreshRefusal::Invalid));
        }
        if row.used_at.is_some() {
            let live = self.revoke_family(&row.family).await?;
            return Ok(Err(RefreshRefusal::Reused(live)));
        }
        let now = Utc::now();
        if row.expires_at <= now {
            return Ok(Err(RefreshRefusal::Invalid));
        }
        let txn = self.db.begin().await?;
        let claimed = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::Id.eq(row.id))
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(|e| self.seen(e))?;
        if claimed.rows_affected == 0 {
            txn.rollback().await.map_err(|e| self.seen(e))?;
            // Spent (or revoked) between our read and our update: treat as a replay. The
            // competing rotation has committed (our update waited for it), so its
            // replacement is revoked with the family.
            let live = self.revoke_family(&row.family).await?;
            return Ok(Err(RefreshRefusal::Reused(live)));
        }
        let Some(account) = user::Entity::find_by_id(row.user_id)
            .one(&txn)
            .await
            .map_err(|e| self.seen(e))?
        else {
            txn.rollback().await.map_err(|e| self.seen(e))?;
            return Ok(Err(RefreshRefusal::Invalid));
        };
        let (issued, jti, exp) = issue(&account)?;
        let (replacement, new_row) =
            refresh_row(row.user_id, row.family.clone(), ttl, (&jti, exp))?;
        new_row.insert(&txn).await.map_err(|e| self.seen(e))?;
        let revoked = refresh_token::Entity::find()
            .filter(refresh_token::Column::Family.eq(row.family.as_str()))
            .filter(refresh_token::Column::RevokedAt.is_not_null())
            .count(&txn)
            .await
            .map_err(|e| self.seen(e))?;
        if revoked > 0 {
            txn.rollback().await.map_err(|e| self.seen(e))?;
            return Ok(Err(RefreshRefusal::Invalid));
        }
        txn.commit().await.map_err(|e| self.seen(e))?;
        Ok(Ok((issued, replacement)))
    }

    /// The account a refresh token belongs to, if it is known (spent, revoked or expired
    /// included): for the refresh route's per-user limit, asked before the token is spent.
    pub(crate) async fn refresh_owner(&self, token: &str) -> Result<Option<i64>, ChopinError> {
        Ok(refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_digest(token)))
            .one(&self.db)
            .await?
            .map(|row| row.user_id))
    }

    /// Revoke every token of the family `token` belongs to (logout); returns the access
    /// tokens issued in it that have not expired. Unknown tokens are ignored.
    pub(crate) async fn revoke_refresh(
        &self,
        token: &str,
    ) -> Result<Vec<(String, i64)>, ChopinError> {
        match refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_digest(token)))
            .one(&self.db)
            .await?
        {
            Some(row) => self.revoke_family(&row.family).await,
            None => Ok(Vec::new()),
        }
    }

    /// Revoke a family; returns its access tokens (`jti`, `exp`) that have not expired
    /// (within the leeway).
    ///
    /// Runs twice: if the first pass had to wait for a rotation of this family still in
    /// flight (it locked a row of it), the second pass, a new statement, sees the
    /// replacement that rotation committed and revokes it too.
    async fn revoke_family(&self, family: &str) -> Result<Vec<(String, i64)>, ChopinError> {
        let mut live = Vec::new();
        for _ in 0..2 {
            live.extend(self.revoke_family_once(family).await?);
        }
        live.sort();
        live.dedup();
        Ok(live)
    }

    async fn revoke_family_once(&self, family: &str) -> Result<Vec<(String, i64)>, ChopinError> {
        let now = super::jwt::now_secs().saturating_sub(self.leeway);
        let live: Vec<(String, i64)> = refresh_token::Entity::find()
            .filter(refresh_token::Column::Family.eq(family))
            .filter(refresh_token::Column::AccessExp.gt(now))
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|r| Some((r.access_jti?, r.access_exp?)))
            .collect();
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(refresh_token::Column::Family.eq(family))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(live)
    }

    /// Revoke every refresh token of an account (password reset, "log out everywhere");
    /// returns the access tokens (`jti`, `exp`) issued with its refresh tokens that have not
    /// expired (within the leeway), for the caller to revoke.
    pub async fn revoke_all_refresh(
        &self,
        user_id: i64,
    ) -> Result<Vec<(String, i64)>, ChopinError> {
        let now = super::jwt::now_secs().saturating_sub(self.leeway);
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(refresh_token::Column::UserId.eq(user_id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(refresh_token::Entity::find()
            .filter(refresh_token::Column::UserId.eq(user_id))
            .filter(refresh_token::Column::AccessExp.gt(now))
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|r| Some((r.access_jti?, r.access_exp?)))
            .collect())
    }

    /// Mark every unused single-use token of an account for `purpose` as used.
    pub(crate) async fn spend_all_one_time(
        &self,
        user_id: i64,
        purpose: &str,
    ) -> Result<(), ChopinError> {
        one_time_token::Entity::update_many()
            .col_expr(one_time_token::Column::UsedAt, Expr::value(Utc::now()))
            .filter(one_time_token::Column::UserId.eq(user_id))
            .filter(one_time_token::Column::Purpose.eq(purpose))
            .filter(one_time_token::Column::UsedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Create a single-use token for `purpose`; returns the token.
    pub(crate) async fn issue_one_time(
        &self,
        user_id: i64,
        purpose: &str,
        ttl: chrono::Duration,
    ) -> Result<String, ChopinError> {
        let token = new_token()?;
        one_time_token::ActiveModel {
            user_id: Set(user_id),
            purpose: Set(purpose.to_string()),
            token_hash: Set(token_digest(&token)),
            expires_at: Set(Utc::now() + ttl),
            used_at: Set(None),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(token)
    }

    /// Use a single-use token: its account, or `None` when it is unknown, used, expired or
    /// for another purpose.
    pub(crate) async fn consume_one_time(
        &self,
        token: &str,
        purpose: &str,
    ) -> Result<Option<i64>, ChopinError> {
        let now = Utc::now();
        let Some(row) = one_time_token::Entity::find()
            .filter(one_time_token::Column::TokenHash.eq(token_digest(token)))
            .filter(one_time_token::Column::Purpose.eq(purpose))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if row.used_at.is_some() || row.expires_at <= now {
            return Ok(None);
        }
        let claimed = one_time_token::Entity::update_many()
            .col_expr(one_time_token::Column::UsedAt, Expr::value(now))
            .filter(one_time_token::Column::Id.eq(row.id))
            .filter(one_time_token::Column::UsedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok((claimed.rows_affected == 1).then_some(row.user_id))
    }
}

/// A new refresh token and the row that records it (to insert on the store's connection or a
/// transaction).
fn refresh_row(
    user_id: i64,
    family: String,
    ttl: std::time::Duration,
    access: (&str, i64),
) -> Result<(String, refresh_token::ActiveModel), ChopinError> {
    let token = new_token()?;
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(ttl)
        .map_err(|_| ChopinError::internal("refresh TTL out of range"))?;
    let row = refresh_token::ActiveModel {
        user_id: Set(user_id),
        family: Set(family),
        token_hash: Set(token_digest(&token)),
        expires_at: Set(now + ttl),
        created_at: Set(now),
        used_at: Set(None),
        revoked_at: Set(None),
        access_jti: Set(Some(access.0.to_string())),
        access_exp: Set(Some(access.1)),
        ..Default::default()
    };
    Ok((token, row))
}

/// Trimmed and lowercased.
pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Roles of a stored account.
pub(crate) fn roles_of(model: &user::Model) -> Vec<String> {
    split_roles(&model.roles)
}

/// Where an [`AuthStore`]'s queries go: through a [`Db`] (its circuit breaker applies) or
/// straight to a plain sea-orm connection.
#[derive(Debug, Clone)]
enum StoreConn {
    Db(Db),
    Plain(DatabaseConnection),
}

impl StoreConn {
    /// A transaction: through `Db::begin` (refused at once while the breaker is open, and a
    /// connection failure reported to it) or on the plain connection.
    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        match self {
            StoreConn::Db(db) => db.begin().await,
            StoreConn::Plain(conn) => conn.begin().await,
        }
    }
}

#[async_trait]
impl ConnectionTrait for StoreConn {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            StoreConn::Db(db) => db.get_database_backend(),
            StoreConn::Plain(conn) => conn.get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            StoreConn::Db(db) => db.execute_raw(stmt).await,
            StoreConn::Plain(conn) => conn.execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            StoreConn::Db(db) => db.execute_unprepared(sql).await,
            StoreConn::Plain(conn) => conn.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            StoreConn::Db(db) => db.query_one_raw(stmt).await,
            StoreConn::Plain(conn) => conn.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            StoreConn::Db(db) => db.query_all_raw(stmt).await,
            StoreConn::Plain(conn) => conn.query_all_raw(stmt).await,
        }
    }

    fn support_returning(&self) -> bool {
        match self {
            StoreConn::Db(db) => db.support_returning(),
            StoreConn::Plain(conn) => conn.support_returning(),
        }
    }

    fn is_mock_connection(&self) -> bool {
        match self {
            StoreConn::Db(db) => db.is_mock_connection(),
            StoreConn::Plain(conn) => conn.is_mock_connection(),
        }
    }
}
