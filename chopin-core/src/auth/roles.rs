//! Role and permission extractors: 403 `FORBIDDEN` when the token lacks them.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use http::request::Parts;

use super::{AuthClaims, AuthUser, Claims};
use crate::error::ChopinError;

/// A role, as a type, for [`RequireRole`].
///
/// ```
/// use chopin_core::auth::{RequireRole, Role};
/// use chopin_core::prelude::*;
///
/// struct Admin;
/// impl Role for Admin {
///     const NAME: &'static str = "admin";
/// }
///
/// async fn purge(admin: RequireRole<Admin>) -> ApiResponse<String> {
///     ApiResponse::success(format!("purged by {}", admin.sub))
/// }
/// ```
pub trait Role: Send + Sync + 'static {
    /// The role name as it appears in the token's `roles` claim.
    const NAME: &'static str;
}

/// A permission, as a type, for [`RequirePermission`].
pub trait Permission: Send + Sync + 'static {
    /// The permission name as it appears in the token's `perms` claim.
    const NAME: &'static str;
}

/// An [`AuthUser`] whose token carries role `R`: 401 without a valid token, 403 `FORBIDDEN`
/// without the role. Dereferences to the claims.
pub struct RequireRole<R: Role, C = Claims> {
    /// The authenticated user.
    pub user: AuthUser<C>,
    _role: PhantomData<fn() -> R>,
}

impl<R: Role, C> Deref for RequireRole<R, C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.user.0
    }
}

impl<S, R, C> FromRequestParts<S> for RequireRole<R, C>
where
    S: Send + Sync,
    R: Role,
    C: AuthClaims,
{
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::<C>::from_request_parts(parts, state).await?;
        user.require_role(R::NAME)?;
        Ok(RequireRole {
            user,
            _role: PhantomData,
        })
    }
}

/// An [`AuthUser`] whose token carries permission `P`: 401 without a valid token, 403
/// `FORBIDDEN` without the permission. Dereferences to the claims.
pub struct RequirePermission<P: Permission, C = Claims> {
    /// The authenticated user.
    pub user: AuthUser<C>,
    _permission: PhantomData<fn() -> P>,
}

impl<P: Permission, C> Deref for RequirePermission<P, C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.user.0
    }
}

impl<S, P, C> FromRequestParts<S> for RequirePermission<P, C>
where
    S: Send + Sync,
    P: Permission,
    C: AuthClaims,
{
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::<C>::from_request_parts(parts, state).await?;
        if !user.has_permission(P::NAME) {
            return Err(ChopinError::Forbidden(format!(
                "requires permission {}",
                P::NAME
            )));
        }
        Ok(RequirePermission {
            user,
            _permission: PhantomData,
        })
    }
}
