//! The route handlers, each with its OpenAPI operation (`#[utoipa::path]`).

use axum::extract::State;
use bytes::Bytes;
use http::StatusCode;

use super::AuthModule;
use super::bodies::{
    Accepted, Credentials, EmailRequest, LOGIN_FAILED, LogoutRequest, MAX_PASSWORD_LEN,
    ONE_TIME_TTL_MINUTES, PURPOSE_RESET, PURPOSE_VERIFY, RefreshRequest, ResetRequest, TokenPair,
    TokenRequest, validate_credentials, validate_email, validate_password,
};
use crate::auth::password;
use crate::auth::store::{RefreshRefusal, roles_of};
use crate::auth::{AuthUser, MailKind, User};
use crate::error::{ChopinError, ErrorEnvelope};
use crate::extractors::Json;
use crate::response::ApiResponse;

/// Create an account; answers with its first tokens.
#[utoipa::path(post, path = "/signup", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "The account's tokens.", body = ApiResponse<TokenPair>),
        (status = 409, description = "The e-mail is taken (`CONFLICT`).", body = ErrorEnvelope),
        (status = 422, description = "Invalid e-mail or password (`VALIDATION_FAILED`).", body = ErrorEnvelope),
    ))]
pub(super) async fn signup(
    State(module): State<AuthModule>,
    Json(body): Json<Credentials>,
) -> Result<ApiResponse<TokenPair>, ChopinError> {
    validate_credentials(&body.email, &body.password)?;
    // While the database is known to be down, answer its 503 now rather than after the
    // password hash, whose result could not be stored.
    module.store.check_available()?;
    let hash = password::hash(&body.password).await?;
    let user = module.store.create_user(&body.email, &hash).await?;
    let pair = module.tokens_for(user.id, user.roles.clone()).await?;
    let token = module
        .store
        .issue_one_time(
            user.id,
            PURPOSE_VERIFY,
            chrono::Duration::minutes(ONE_TIME_TTL_MINUTES),
        )
        .await?;
    module.send_later(MailKind::VerifyEmail, user.email, token);
    Ok(ApiResponse::created(pair))
}

/// Exchange e-mail and password for tokens.
#[utoipa::path(post, path = "/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "New tokens (a new refresh family).", body = ApiResponse<TokenPair>),
        (status = 401, description = "`invalid email or password`, whatever failed.", body = ErrorEnvelope),
    ))]
pub(super) async fn login(
    State(module): State<AuthModule>,
    Json(body): Json<Credentials>,
) -> Result<ApiResponse<TokenPair>, ChopinError> {
    let account = if body.password.chars().count() > MAX_PASSWORD_LEN {
        None
    } else {
        module.store.find_by_email(&body.email).await?
    };
    // Same argon2 work whether or not the account exists; one message for every failure.
    let ok = password::verify_or_dummy(
        &body.password,
        account.as_ref().map(|a| a.password_hash.as_str()),
    )
    .await?;
    let Some(account) = account.filter(|_| ok) else {
        #[cfg(feature = "metrics")]
        crate::metrics::global().auth.login("failure");
        return Err(ChopinError::Unauthorized(LOGIN_FAILED.into()));
    };
    let pair = module.tokens_for(account.id, roles_of(&account)).await?;
    #[cfg(feature = "metrics")]
    crate::metrics::global().auth.login("success");
    Ok(ApiResponse::success(pair))
}

/// Spend a refresh token for new tokens. Replaying a spent token revokes its family.
#[utoipa::path(post, path = "/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the presented refresh token is spent.", body = ApiResponse<TokenPair>),
        (status = 401, description = "Unknown, expired, revoked or already used.", body = ErrorEnvelope),
    ))]
pub(super) async fn refresh(
    State(module): State<AuthModule>,
    Json(body): Json<RefreshRequest>,
) -> Result<ApiResponse<TokenPair>, ChopinError> {
    let refused = |why: &str| ChopinError::InvalidToken(why.to_string());
    let rotated = module
        .store
        .rotate_refresh(&body.refresh_token, module.auth.refresh_ttl(), |account| {
            module.access_token(account.id, roles_of(account))
        })
        .await?;
    match rotated {
        Ok((access_token, refresh_token)) => Ok(ApiResponse::success(
            module.pair(access_token, refresh_token),
        )),
        Err(RefreshRefusal::Invalid) => Err(refused("the refresh token is invalid or expired")),
        Err(RefreshRefusal::Reused(live)) => {
            tracing::warn!("a spent refresh token was replayed; its family is revoked");
            #[cfg(feature = "metrics")]
            crate::metrics::global().auth.refresh_reuse.inc();
            module.revoke_access(live).await?;
            Err(refused("the refresh token was already used; sign in again"))
        }
    }
}

/// Revoke the access token (and, if given, the refresh token's family).
#[utoipa::path(post, path = "/logout", tag = "auth",
    request_body(content = Option<LogoutRequest>, description = "Optional: without a body (or with an empty one) only the access token is revoked. `Content-Type: application/json` is required, even with an empty body, unless the token is in the `Authorization` header and there is no body."),
    responses(
        (status = 204, description = "Signed out."),
        (status = 401, description = "No valid access token.", body = ErrorEnvelope),
        (status = 415, description = "Not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(super) async fn logout(
    State(module): State<AuthModule>,
    user: AuthUser,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<ApiResponse<()>, ChopinError> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    // JSON, like every other route: a cross-site form (or a CORS-simple `fetch`) cannot send
    // it, so it cannot sign a cookie-session user out. A body-less request without any
    // `Content-Type` is accepted only with an `Authorization` header, which such a request
    // cannot carry either.
    let bare_bearer = empty
        && !headers.contains_key(http::header::CONTENT_TYPE)
        && headers.contains_key(http::header::AUTHORIZATION);
    if !bare_bearer && !crate::extractors::json::has_json_content_type(&headers) {
        return Err(ChopinError::UnsupportedMediaType(
            "expected `Content-Type: application/json` (the body may be empty)".into(),
        ));
    }
    let request: LogoutRequest = if empty {
        LogoutRequest::default()
    } else {
        // `null` says "no body" too, as the optional body's schema allows.
        crate::json::from_slice::<Option<LogoutRequest>>(&body)
            .map_err(ChopinError::from)?
            .unwrap_or_default()
    };
    module.auth.revoke(&user.0).await?;
    if let Some(token) = request.refresh_token {
        let live = module.store.revoke_refresh(&token).await?;
        module.revoke_access(live).await?;
    }
    Ok(ApiResponse::no_content())
}

/// The signed-in account.
#[utoipa::path(get, path = "/me", tag = "auth",
    responses(
        (status = 200, description = "The account.", body = ApiResponse<User>),
        (status = 401, description = "No valid access token.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(super) async fn me(
    State(module): State<AuthModule>,
    user: AuthUser,
) -> Result<ApiResponse<User>, ChopinError> {
    let id: i64 = user
        .sub
        .parse()
        .map_err(|_| ChopinError::InvalidToken("the access token is invalid".into()))?;
    match module.store.user(id).await? {
        Some(account) => Ok(ApiResponse::success(account)),
        None => Err(ChopinError::NotFound("the account no longer exists".into())),
    }
}

/// Confirm the e-mail address with the token from the verification mail.
#[utoipa::path(post, path = "/verify-email", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 204, description = "Verified."),
        (status = 404, description = "No pending verification has this token: unknown, used or expired (`NOT_FOUND`).", body = ErrorEnvelope),
    ))]
pub(super) async fn verify_email(
    State(module): State<AuthModule>,
    Json(body): Json<TokenRequest>,
) -> Result<ApiResponse<()>, ChopinError> {
    match module
        .store
        .consume_one_time(&body.token, PURPOSE_VERIFY)
        .await?
    {
        Some(user_id) => {
            module.store.mark_verified(user_id).await?;
            Ok(ApiResponse::no_content())
        }
        None => Err(ChopinError::NotFound(
            "the verification token is invalid or expired".into(),
        )),
    }
}

/// Mail a password-reset token, if the account exists (the answer is the same either way).
#[utoipa::path(post, path = "/password-reset", tag = "auth", request_body = EmailRequest,
    responses(
        (status = 202, description = "Accepted.", body = ApiResponse<Accepted>),
        (status = 422, description = "Not an e-mail address (`VALIDATION_FAILED`).", body = ErrorEnvelope),
    ))]
pub(super) async fn request_reset(
    State(module): State<AuthModule>,
    Json(body): Json<EmailRequest>,
) -> Result<ApiResponse<Accepted>, ChopinError> {
    let mut fields = Vec::new();
    validate_email(&body.email, &mut fields);
    if !fields.is_empty() {
        return Err(ChopinError::Validation(fields));
    }
    // While the database is known to be down no token could be issued: say so (503, the
    // same answer for every address) instead of accepting work that will fail.
    module.store.check_available()?;
    // The lookup, the insert and the mail happen after the answer, so its timing says
    // nothing about whether the account exists. They go through the bounded mail queue: when
    // it is full they are dropped (counted, logged) and the answer is still the same.
    let email = body.email;
    let worker = module.clone();
    module.in_background("password_reset", async move {
        if let Err(error) = worker.mail_reset_token(&email).await {
            tracing::error!(%error, "password reset: could not issue a token");
        }
    });
    Ok(ApiResponse::success(Accepted {
        message: "if the account exists, a reset link was sent",
    })
    .with_status(StatusCode::ACCEPTED))
}

/// Set a new password with the token from the reset mail; signs the account out everywhere.
#[utoipa::path(post, path = "/password-reset/confirm", tag = "auth", request_body = ResetRequest,
    responses(
        (status = 204, description = "Password changed; refresh tokens, their access tokens and other reset tokens revoked."),
        (status = 404, description = "No pending reset has this token: unknown, used or expired (`NOT_FOUND`).", body = ErrorEnvelope),
        (status = 422, description = "Invalid password (`VALIDATION_FAILED`).", body = ErrorEnvelope),
    ))]
pub(super) async fn confirm_reset(
    State(module): State<AuthModule>,
    Json(body): Json<ResetRequest>,
) -> Result<ApiResponse<()>, ChopinError> {
    let mut fields = Vec::new();
    validate_password(&body.password, &mut fields);
    if !fields.is_empty() {
        return Err(ChopinError::Validation(fields));
    }
    let Some(user_id) = module
        .store
        .consume_one_time(&body.token, PURPOSE_RESET)
        .await?
    else {
        return Err(ChopinError::NotFound(
            "the reset token is invalid or expired".into(),
        ));
    };
    let hash = password::hash(&body.password).await?;
    module.store.set_password_hash(user_id, &hash).await?;
    // Signed out everywhere: every refresh token, the access tokens issued with them, and
    // any other reset token still outstanding.
    module
        .store
        .spend_all_one_time(user_id, PURPOSE_RESET)
        .await?;
    let live = module.store.revoke_all_refresh(user_id).await?;
    module.revoke_access(live).await?;
    Ok(ApiResponse::no_content())
}
