//! A blog post (table `posts`).

use sea_orm::entity::prelude::*;

/// One row of `posts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "posts")]
pub struct Model {
    /// Primary key, assigned by the database.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Title, 1 to 200 characters.
    pub title: String,
    /// URL-friendly unique name: lowercase letters, digits and hyphens.
    #[sea_orm(unique)]
    pub slug: String,
    /// Body text, up to 100 000 characters.
    #[sea_orm(column_type = "Text")]
    pub body: String,
    /// Whether the post is visible to readers.
    pub published: bool,
    /// When the post was created.
    pub created_at: DateTimeUtc,
    /// When the post was last replaced.
    pub updated_at: DateTimeUtc,
    /// The account that wrote it (`sub` of its access token); `None` for posts older than
    /// authentication.
    pub author_id: Option<i64>,
}

/// Relations of a post.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// A post has many comments (deleted with it).
    #[sea_orm(has_many = "super::comment::Entity")]
    Comment,
}

impl Related<super::comment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Comment.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
