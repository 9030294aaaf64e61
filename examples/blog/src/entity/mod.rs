//! sea-orm entities: the rows of the `posts` and `comments` tables.

pub mod comment;
pub mod post;
