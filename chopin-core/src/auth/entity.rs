//! The auth tables, as sea-orm entities. Every name starts with `chopin_auth_` so they never
//! collide with the application's tables; their migrations are recorded in
//! `chopin_auth_migrations`, not in the application's `seaql_migrations`.

/// `chopin_auth_users`: one row per account.
pub mod user {
    use sea_orm::entity::prelude::*;

    /// One account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chopin_auth_users")]
    pub struct Model {
        /// Primary key; the `sub` of the account's tokens.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// E-mail address, trimmed and lowercased; unique.
        #[sea_orm(unique)]
        pub email: String,
        /// argon2id PHC string.
        pub password_hash: String,
        /// Role names separated by spaces (`"admin editor"`); empty for none.
        pub roles: String,
        /// Whether the address was confirmed through the verification mail.
        pub email_verified: bool,
        /// When the account was created.
        pub created_at: DateTimeUtc,
        /// When the account last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated from users.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `chopin_auth_refresh_tokens`: one row per refresh token ever issued (hash only).
pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    /// One refresh token.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chopin_auth_refresh_tokens")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The account.
        pub user_id: i64,
        /// The rotation family: every token obtained by rotating one login's token.
        pub family: String,
        /// SHA-256 of the token, hex; unique.
        #[sea_orm(unique)]
        pub token_hash: String,
        /// When it stops being accepted.
        pub expires_at: DateTimeUtc,
        /// When it was issued.
        pub created_at: DateTimeUtc,
        /// When it was exchanged for a new one (a second use is a replay).
        pub used_at: Option<DateTimeUtc>,
        /// When its family was revoked (logout, replay, password reset).
        pub revoked_at: Option<DateTimeUtc>,
        /// `jti` of the access token issued with it.
        pub access_jti: Option<String>,
        /// `exp` of that access token (seconds since the epoch).
        pub access_exp: Option<i64>,
    }

    /// No relations are navigated from refresh tokens.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `chopin_auth_one_time_tokens`: password-reset and e-mail verification tokens (hash only).
pub mod one_time_token {
    use sea_orm::entity::prelude::*;

    /// One single-use token.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chopin_auth_one_time_tokens")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The account.
        pub user_id: i64,
        /// `verify_email` or `password_reset`.
        pub purpose: String,
        /// SHA-256 of the token, hex; unique.
        #[sea_orm(unique)]
        pub token_hash: String,
        /// When it stops being accepted.
        pub expires_at: DateTimeUtc,
        /// When it was used (it is then refused).
        pub used_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated from one-time tokens.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
