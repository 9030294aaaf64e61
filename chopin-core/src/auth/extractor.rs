//! The [`AuthUser`] extractor.

use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::header;
use http::request::Parts;

use super::{Auth, AuthClaims, AuthError, Claims};
use crate::error::ChopinError;

/// The verified claims of the request's access token.
///
/// The token comes from `Authorization: Bearer <token>`, or, when `CHOPIN_AUTH_COOKIE` names
/// a cookie, from that cookie (the header wins when both are present). It must be signed by
/// one of the configured keys with that key's algorithm, be within `nbf`..`exp` (plus the
/// leeway), carry the configured issuer and audience, and not be revoked. Otherwise the
/// handler is not called and the client gets 401 `UNAUTHORIZED` with `WWW-Authenticate`.
///
/// `Option<AuthUser>` is `None` without a token and still rejects an invalid one.
///
/// `C` is the claims type: [`Claims`] by default, `Claims<MyExtra>` for typed custom claims,
/// or any type implementing [`AuthClaims`]. Dereferences to `C`.
///
/// The [`Auth`] handle must be installed (`App::auth` or `.layer(auth.extension())`);
/// without it every request fails with 500.
#[derive(Debug, Clone)]
pub struct AuthUser<C = Claims>(pub C);

impl<C> AuthUser<C> {
    /// The claims.
    pub fn into_inner(self) -> C {
        self.0
    }
}

impl<C: AuthClaims> AuthUser<C> {
    /// `true` when the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.0.roles().iter().any(|r| r == role)
    }

    /// `Ok` when the token carries `role`, else 403 `FORBIDDEN`: for checks that depend on
    /// data (for example "the author, or an admin").
    pub fn require_role(&self, role: &str) -> Result<(), ChopinError> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(ChopinError::Forbidden(format!("requires role {role}")))
        }
    }

    /// `true` when the token carries `permission`.
    pub fn has_permission(&self, permission: &str) -> bool {
        self.0.permissions().iter().any(|p| p == permission)
    }
}

impl<C> Deref for AuthUser<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

/// The access token of a request: the `Authorization: Bearer` value, else the value of
/// `cookie` when given. `None` when neither is present; an `Authorization` header with
/// another scheme counts as absent.
pub fn bearer_token<'a>(parts: &'a http::HeaderMap, cookie: Option<&str>) -> Option<&'a str> {
    if let Some(value) = parts.get(header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some((scheme, token)) = value.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        let token = token.trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    let name = cookie?;
    parts
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
}

fn auth_of(parts: &Parts) -> Result<Auth, ChopinError> {
    parts.extensions.get::<Auth>().cloned().ok_or_else(|| {
        ChopinError::internal(
            "AuthUser used without an Auth extension (App::auth or auth.extension())",
        )
    })
}

impl<S, C> FromRequestParts<S> for AuthUser<C>
where
    S: Send + Sync,
    C: AuthClaims,
{
    type Rejection = ChopinError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let auth = auth_of(parts)?;
        let token = bearer_token(&parts.headers, auth.settings().cookie.as_deref())
            .ok_or(AuthError::Missing)?;
        Ok(AuthUser(auth.verify::<C>(token).await?))
    }
}

impl<S, C> OptionalFromRequestParts<S> for AuthUser<C>
where
    S: Send + Sync,
    C: AuthClaims,
{
    type Rejection = ChopinError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let auth = auth_of(parts)?;
        match bearer_token(&parts.headers, auth.settings().cookie.as_deref()) {
            None => Ok(None),
            Some(token) => Ok(Some(AuthUser(auth.verify::<C>(token).await?))),
        }
    }
}
