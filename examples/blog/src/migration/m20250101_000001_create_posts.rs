//! Create `posts`, with a unique `slug` and an index for newest-first listing.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Posts::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Posts::Id))
                    .col(string_len(Posts::Title, 200))
                    .col(string_len_uniq(Posts::Slug, 100))
                    .col(text(Posts::Body))
                    .col(boolean(Posts::Published).default(false))
                    .col(timestamp_with_time_zone(Posts::CreatedAt))
                    .col(timestamp_with_time_zone(Posts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_posts_created_at")
                    .table(Posts::Table)
                    .col(Posts::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Posts::Table).to_owned())
            .await
    }
}

/// Identifiers of the `posts` table.
#[derive(DeriveIden)]
pub enum Posts {
    Table,
    Id,
    Title,
    Slug,
    Body,
    Published,
    CreatedAt,
    UpdatedAt,
}
