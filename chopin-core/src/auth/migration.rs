//! The auth tables' migrations, recorded in their own table `chopin_auth_migrations`, so
//! they run alongside the application's migrations (in `seaql_migrations`) without either
//! seeing the other's history. [`AuthStore::new`](super::AuthStore::new) applies them.
//!
//! Append-only: a released migration is never edited.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The auth migrator.
pub struct AuthMigrator;

/// The table recording applied auth migrations.
pub const MIGRATION_TABLE: &str = "chopin_auth_migrations";

#[async_trait::async_trait]
impl MigratorTrait for AuthMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateAuthTables), Box::new(TrackAccessTokens)]
    }

    fn migration_table_name() -> DynIden {
        Alias::new(MIGRATION_TABLE).into_iden()
    }
}

struct CreateAuthTables;

impl MigrationName for CreateAuthTables {
    fn name(&self) -> &str {
        "chopin_auth_m0001_create_tables"
    }
}

/// Remember, per refresh token, the access token issued with it, so that revoking a refresh
/// family (replay, logout) revokes its live access tokens too.
struct TrackAccessTokens;

impl MigrationName for TrackAccessTokens {
    fn name(&self) -> &str {
        "chopin_auth_m0002_track_access_tokens"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TrackAccessTokens {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(ChopinAuthRefreshTokens::Table)
                    .add_column(string_len_null(ChopinAuthRefreshTokens::AccessJti, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ChopinAuthRefreshTokens::Table)
                    .add_column(big_integer_null(ChopinAuthRefreshTokens::AccessExp))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ChopinAuthRefreshTokens::AccessExp,
            ChopinAuthRefreshTokens::AccessJti,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ChopinAuthRefreshTokens::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ChopinAuthUsers {
    Table,
    Id,
    Email,
    PasswordHash,
    Roles,
    EmailVerified,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChopinAuthRefreshTokens {
    Table,
    Id,
    UserId,
    Family,
    TokenHash,
    ExpiresAt,
    CreatedAt,
    UsedAt,
    RevokedAt,
    AccessJti,
    AccessExp,
}

#[derive(DeriveIden)]
enum ChopinAuthOneTimeTokens {
    Table,
    Id,
    UserId,
    Purpose,
    TokenHash,
    ExpiresAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuthTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChopinAuthUsers::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ChopinAuthUsers::Id))
                    .col(string_len_uniq(ChopinAuthUsers::Email, 254))
                    .col(string_len(ChopinAuthUsers::PasswordHash, 255))
                    .col(string_len(ChopinAuthUsers::Roles, 1000).default(""))
                    .col(boolean(ChopinAuthUsers::EmailVerified).default(false))
                    .col(timestamp_with_time_zone(ChopinAuthUsers::CreatedAt))
                    .col(timestamp_with_time_zone(ChopinAuthUsers::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChopinAuthRefreshTokens::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ChopinAuthRefreshTokens::Id))
                    .col(big_integer(ChopinAuthRefreshTokens::UserId))
                    .col(string_len(ChopinAuthRefreshTokens::Family, 64))
                    .col(string_len_uniq(ChopinAuthRefreshTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(ChopinAuthRefreshTokens::ExpiresAt))
                    .col(timestamp_with_time_zone(ChopinAuthRefreshTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(
                        ChopinAuthRefreshTokens::UsedAt,
                    ))
                    .col(timestamp_with_time_zone_null(
                        ChopinAuthRefreshTokens::RevokedAt,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chopin_auth_refresh_tokens_user")
                            .from(
                                ChopinAuthRefreshTokens::Table,
                                ChopinAuthRefreshTokens::UserId,
                            )
                            .to(ChopinAuthUsers::Table, ChopinAuthUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_chopin_auth_refresh_tokens_family")
                    .table(ChopinAuthRefreshTokens::Table)
                    .col(ChopinAuthRefreshTokens::Family)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_chopin_auth_refresh_tokens_user")
                    .table(ChopinAuthRefreshTokens::Table)
                    .col(ChopinAuthRefreshTokens::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChopinAuthOneTimeTokens::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ChopinAuthOneTimeTokens::Id))
                    .col(big_integer(ChopinAuthOneTimeTokens::UserId))
                    .col(string_len(ChopinAuthOneTimeTokens::Purpose, 32))
                    .col(string_len_uniq(ChopinAuthOneTimeTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(ChopinAuthOneTimeTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(
                        ChopinAuthOneTimeTokens::UsedAt,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chopin_auth_one_time_tokens_user")
                            .from(
                                ChopinAuthOneTimeTokens::Table,
                                ChopinAuthOneTimeTokens::UserId,
                            )
                            .to(ChopinAuthUsers::Table, ChopinAuthUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ChopinAuthOneTimeTokens::Table.into_iden(),
            ChopinAuthRefreshTokens::Table.into_iden(),
            ChopinAuthUsers::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
