//! Schema migrations (sea-orm-migration), applied at start-up by [`crate::app`].
//!
//! Migrations are append-only: once released, a migration is never edited; a schema change is
//! a new file added at the end of [`Migrator::migrations`].

use sea_orm_migration::prelude::*;

mod m20250101_000001_create_posts;
mod m20250101_000002_create_comments;
mod m20250101_000003_add_post_author;
mod m20250101_000004_create_tv_post;

/// The blog's migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_posts::Migration),
            Box::new(m20250101_000002_create_comments::Migration),
            Box::new(m20250101_000003_add_post_author::Migration),
            Box::new(m20250101_000004_create_tv_post::Migration),
        ]
    }
}
