//! A comment on a post (table `comments`).

use sea_orm::entity::prelude::*;

/// One row of `comments`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "comments")]
pub struct Model {
    /// Primary key, assigned by the database.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The post commented on; the comment is deleted with its post.
    pub post_id: i64,
    /// Who wrote the comment, 1 to 100 characters.
    pub author: String,
    /// Comment text, 1 to 10 000 characters.
    #[sea_orm(column_type = "Text")]
    pub body: String,
    /// When the comment was created.
    pub created_at: DateTimeUtc,
}

/// Relations of a comment.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Every comment belongs to one post.
    #[sea_orm(
        belongs_to = "super::post::Entity",
        from = "Column::PostId",
        to = "super::post::Column::Id",
        on_delete = "Cascade"
    )]
    Post,
}

impl Related<super::post::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Post.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
