//! Who may read which posts: a published post is public; a draft (`published = false`) is
//! visible only to its author and to admins. Every read route applies it, on the model path
//! ([`Reader::condition`], [`Reader::may_see`]) and on the pass-through path
//! ([`Reader::sql_params`], bound into the statements' visibility condition). For anyone else
//! a draft does not exist: it is left out of lists (and of `meta.total`), and asking for it by
//! id answers 404 `NOT_FOUND`, never 403, so its existence is not disclosed.

use chopin_core::auth::AuthUser;
use sea_orm::{ColumnTrait, Condition};

use crate::ADMIN;
use crate::entity::post;

/// The reader of a request, as far as post visibility goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// No access token: published posts only.
    Anonymous,
    /// A signed-in account: published posts and its own drafts.
    Account(i64),
    /// An account with the [`ADMIN`] role: every post.
    Admin,
}

impl Reader {
    /// The reader behind an optional access token (`Option<AuthUser>`: no token is anonymous,
    /// an invalid one was already refused with 401). A token whose `sub` names no blog
    /// account reads as anonymous.
    pub fn of(user: Option<&AuthUser>) -> Reader {
        match user {
            None => Reader::Anonymous,
            Some(user) if user.has_role(ADMIN) => Reader::Admin,
            Some(user) => user.sub.parse().map_or(Reader::Anonymous, Reader::Account),
        }
    }

    /// Whether this reader may see a post with these `published` and `author_id` values.
    pub fn may_see(self, published: bool, author_id: Option<i64>) -> bool {
        match self {
            Reader::Admin => true,
            _ if published => true,
            Reader::Account(me) => author_id == Some(me),
            Reader::Anonymous => false,
        }
    }

    /// The condition selecting the posts this reader may see (sea-orm).
    pub fn condition(self) -> Condition {
        let published = post::Column::Published.eq(true);
        match self {
            Reader::Admin => Condition::all(),
            Reader::Account(me) => Condition::any()
                .add(published)
                .add(post::Column::AuthorId.eq(me)),
            Reader::Anonymous => Condition::all().add(published),
        }
    }

    /// What the pass-through statements' visibility condition needs: whether the reader sees
    /// every post, and its account id — `None` for anonymous readers and admins, so that no
    /// id (not even 0, which no account has) ever stands for "nobody" in a comparison.
    pub fn sql_params(self) -> (bool, Option<i64>) {
        match self {
            Reader::Admin => (true, None),
            Reader::Account(me) => (false, Some(me)),
            Reader::Anonymous => (false, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_are_visible_to_their_author_and_admins_only() {
        for reader in [Reader::Anonymous, Reader::Account(7), Reader::Admin] {
            assert!(reader.may_see(true, Some(1)), "{reader:?}");
            assert!(reader.may_see(true, None), "{reader:?}");
        }
        assert!(!Reader::Anonymous.may_see(false, Some(7)));
        assert!(!Reader::Anonymous.may_see(false, None));
        assert!(Reader::Account(7).may_see(false, Some(7)));
        assert!(!Reader::Account(7).may_see(false, Some(8)));
        assert!(!Reader::Account(7).may_see(false, None));
        assert!(Reader::Admin.may_see(false, Some(8)));
        assert!(Reader::Admin.may_see(false, None));
        assert_eq!(Reader::Anonymous.sql_params(), (false, None));
        assert_eq!(Reader::Account(7).sql_params(), (false, Some(7)));
        assert_eq!(Reader::Admin.sql_params(), (true, None));
    }
}
