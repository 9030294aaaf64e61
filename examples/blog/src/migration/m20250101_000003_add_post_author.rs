//! Add `posts.author_id`: the account (in the auth module's `chopin_auth_users`) that wrote
//! the post. Nullable: posts written before authentication existed have no author, and only
//! an admin can delete them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Posts::Table)
                    .add_column(big_integer_null(Posts::AuthorId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_posts_author_id")
                    .table(Posts::Table)
                    .col(Posts::AuthorId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_posts_author_id")
                    .table(Posts::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Posts::Table)
                    .drop_column(Posts::AuthorId)
                    .to_owned(),
            )
            .await
    }
}

/// Identifiers of the `posts` table used here.
#[derive(DeriveIden)]
pub enum Posts {
    Table,
    AuthorId,
}
