//! Create the `tv_post` table view ([`post_table_view`]): its table and index, the triggers on
//! `posts` and `comments` that keep it fresh, its row in `chopin_table_views` (for
//! `chopin db rebuild-views`), and the documents of the posts that already exist.
//!
//! When `PostView`'s shape changes, add a migration that drops and creates the view again
//! (`post_table_view().drop(conn)` then `.create(conn)`): `create` fills it from the posts.

use sea_orm_migration::prelude::*;

use crate::api::passthrough::post_table_view;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        post_table_view().create(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        post_table_view().drop(manager.get_connection()).await
    }
}
