//! The mountable auth routes: sign-up, login, refresh, logout, me, e-mail verification and
//! password reset.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::password;
use super::store::{RefreshRefusal, roles_of};
use super::{Auth, AuthStore, AuthUser, LogMailer, Mail, MailKind, Mailer, User};
use crate::error::{ChopinError, ErrorEnvelope, FieldError};
use crate::extractors::Json;
use crate::openapi::OpenApiRouter;
use crate::response::ApiResponse;

/// Shortest accepted password.
const MIN_PASSWORD_LEN: usize = 8;
/// Longest accepted password (argon2 would take anything; a bound keeps requests cheap).
const MAX_PASSWORD_LEN: usize = 1024;
/// Lifetime of verification and password-reset tokens.
const ONE_TIME_TTL_MINUTES: i64 = 60;

const PURPOSE_VERIFY: &str = "verify_email";
const PURPOSE_RESET: &str = "password_reset";

/// The one message of every failed login (unknown e-mail, wrong password).
pub const LOGIN_FAILED: &str = "invalid email or password";

/// Tokens returned by sign-up, login and refresh.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// The JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single-use token for `POST /refresh`; rotated on every use.
    pub refresh_token: String,
}

/// Body of sign-up and login.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct Credentials {
    /// E-mail address (case-insensitive).
    email: String,
    /// 8 to 1024 characters.
    password: String,
}

/// Body of `/refresh`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RefreshRequest {
    /// The latest refresh token of the session.
    refresh_token: String,
}

/// Body of `/logout` (optional).
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
struct LogoutRequest {
    /// Also revoke this refresh token's family.
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Body of `/password-reset`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct EmailRequest {
    /// The account's e-mail address.
    email: String,
}

/// Body of `/verify-email`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct TokenRequest {
    /// The token from the mail.
    token: String,
}

/// Body of `/password-reset/confirm`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ResetRequest {
    /// The token from the mail.
    token: String,
    /// The new password, 8 to 1024 characters.
    password: String,
}

/// Answer of `/password-reset`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Accepted {
    /// Always the same text, whether or not the account exists.
    message: &'static str,
}

/// The auth routes, ready to mount (usually under `/auth`):
///
/// | method | path | |
/// |---|---|---|
/// | `POST` | `/signup` | `{email, password}` → 201 tokens; 409 when taken; 422 on invalid fields; sends a verification mail |
/// | `POST` | `/login` | `{email, password}` → tokens; 401 `invalid email or password` for every failure |
/// | `POST` | `/refresh` | `{refresh_token}` → new tokens; the old refresh token is spent, and replaying it revokes the whole family and the family's live access tokens |
/// | `POST` | `/logout` | bearer token required; revokes it, and the refresh family (with its access tokens) of an optional `{refresh_token}` → 204 |
/// | `GET` | `/me` | bearer token required → the account |
/// | `POST` | `/verify-email` | `{token}` from the verification mail → 204 |
/// | `POST` | `/password-reset` | `{email}` → 202 whether or not the account exists; mails a reset token |
/// | `POST` | `/password-reset/confirm` | `{token, password}` → 204; signs the account out everywhere |
///
/// ```no_run
/// use chopin_core::auth::{Auth, AuthModule, AuthStore};
/// use chopin_core::prelude::*;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_env()?;
/// let db = Db::connect(&config.database).await?;
/// let auth = Auth::from_config(&config).await?;
/// let module = AuthModule::new(auth.clone(), AuthStore::new(&db).await?).await?;
/// App::new(config)
///     .auth(&auth)
///     .router(axum::Router::new().nest("/auth", module.router()))
///     .serve()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthModule {
    auth: Auth,
    store: AuthStore,
    mailer: Arc<dyn Mailer>,
}

impl std::fmt::Debug for AuthModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthModule")
            .field("auth", &self.auth)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AuthModule {
    /// The module with the development [`LogMailer`]; replace it with
    /// [`AuthModule::mailer`]. Precomputes the dummy password hash, so that the first login
    /// for an unknown account is not slower than the others.
    pub async fn new(auth: Auth, store: AuthStore) -> Result<AuthModule, ChopinError> {
        password::dummy_hash().await?;
        Ok(AuthModule {
            auth,
            store,
            mailer: Arc::new(LogMailer),
        })
    }

    /// Send verification and reset tokens through `mailer`.
    pub fn mailer(mut self, mailer: impl Mailer) -> Self {
        self.mailer = Arc::new(mailer);
        self
    }

    /// The token handle.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The database side.
    pub fn store(&self) -> &AuthStore {
        &self.store
    }

    /// The routes (relative: mount them with `Router::nest`). They carry the [`Auth`]
    /// extension themselves, so they work whether or not the app installed it.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.api_router().split_for_parts().0
    }

    /// The same routes with their OpenAPI operations (tag `auth`), for
    /// [`App::api`](crate::App::api): `app.api(OpenApiRouter::new().nest("/auth",
    /// module.api_router()))`.
    pub fn api_router<S: Clone + Send + Sync + 'static>(&self) -> OpenApiRouter<S> {
        use utoipa_axum::routes;
        OpenApiRouter::new()
            .routes(routes!(signup))
            .routes(routes!(login))
            .routes(routes!(refresh))
            .routes(routes!(logout))
            .routes(routes!(me))
            .routes(routes!(verify_email))
            .routes(routes!(request_reset))
            .routes(routes!(confirm_reset))
            .layer(self.auth.extension())
            .with_state(self.clone())
    }

    /// Access and refresh tokens for an account (a new refresh family when `family` is
    /// `None`).
    async fn tokens_for(
        &self,
        user_id: i64,
        roles: Vec<String>,
        family: Option<String>,
    ) -> Result<TokenPair, ChopinError> {
        let mut claims = self.auth.claims_for(user_id.to_string());
        claims.roles = roles;
        let access = (claims.jti.clone(), claims.exp);
        let access_token = self.auth.issue(claims)?;
        let refresh_token = self
            .store
            .issue_refresh(
                user_id,
                family,
                self.auth.refresh_ttl(),
                (&access.0, access.1),
            )
            .await?;
        Ok(TokenPair {
            access_token,
            token_type: "Bearer".into(),
            expires_in: self.auth.access_ttl_secs(),
            refresh_token,
        })
    }

    /// Revoke access tokens (`jti`, `exp`) of a revoked refresh family.
    async fn revoke_access(&self, live: Vec<(String, i64)>) -> Result<(), ChopinError> {
        let leeway = self.auth.settings().leeway.as_secs() as i64;
        for (jti, exp) in live {
            self.auth
                .revocations()
                .revoke(&jti, exp.saturating_add(leeway))
                .await?;
        }
        Ok(())
    }

    async fn send(&self, kind: MailKind, to: String, token: String) {
        if let Err(error) = self.mailer.send(Mail { kind, to, token }).await {
            tracing::error!(%error, ?kind, "the mailer failed");
        }
    }
}

fn validate_credentials(email: &str, password: &str) -> Result<(), ChopinError> {
    let mut fields = Vec::new();
    let email = email.trim();
    let valid_email = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.contains(char::is_whitespace);
    if !valid_email {
        fields.push(FieldError::new(
            "email",
            "email",
            "must be an e-mail address",
        ));
    }
    validate_password(password, &mut fields);
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ChopinError::Validation(fields))
    }
}

fn validate_password(password: &str, fields: &mut Vec<FieldError>) {
    let len = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        fields.push(FieldError::new(
            "password",
            "length",
            format!("must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"),
        ));
    }
}

/// Create an account; answers with its first tokens.
#[utoipa::path(post, path = "/signup", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "The account's tokens.", body = ApiResponse<TokenPair>),
        (status = 409, description = "The e-mail is taken (`CONFLICT`).", body = ErrorEnvelope),
        (status = 422, description = "Invalid e-mail or password (`VALIDATION_FAILED`).", body = ErrorEnvelope),
    ))]
async fn signup(
    State(module): State<AuthModule>,
    Json(body): Json<Credentials>,
) -> Result<ApiResponse<TokenPair>, ChopinError> {
    validate_credentials(&body.email, &body.password)?;
    let hash = password::hash(&body.password).await?;
    let user = module.store.create_user(&body.email, &hash).await?;
    let pair = module.tokens_for(user.id, user.roles.clone(), None).await?;
    let token = module
        .store
        .issue_one_time(
            user.id,
            PURPOSE_VERIFY,
            chrono::Duration::minutes(ONE_TIME_TTL_MINUTES),
        )
        .await?;
    module.send(MailKind::VerifyEmail, user.email, token).await;
    Ok(ApiResponse::created(pair))
}

/// Exchange e-mail and password for tokens.
#[utoipa::path(post, path = "/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "New tokens (a new refresh family).", body = ApiResponse<TokenPair>),
        (status = 401, description = "`invalid email or password`, whatever failed.", body = ErrorEnvelope),
    ))]
async fn login(
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
        return Err(ChopinError::Unauthorized(LOGIN_FAILED.into()));
    };
    let pair = module
        .tokens_for(account.id, roles_of(&account), None)
        .await?;
    Ok(ApiResponse::success(pair))
}

/// Spend a refresh token for new tokens. Replaying a spent token revokes its family.
#[utoipa::path(post, path = "/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the presented refresh token is spent.", body = ApiResponse<TokenPair>),
        (status = 401, description = "Unknown, expired, revoked or already used.", body = ErrorEnvelope),
    ))]
async fn refresh(
    State(module): State<AuthModule>,
    Json(body): Json<RefreshRequest>,
) -> Result<ApiResponse<TokenPair>, ChopinError> {
    let refused = |why: &str| ChopinError::InvalidToken(why.to_string());
    let claimed = match module.store.claim_refresh(&body.refresh_token).await? {
        Ok(claimed) => claimed,
        Err(RefreshRefusal::Invalid) => {
            return Err(refused("the refresh token is invalid or expired"));
        }
        Err(RefreshRefusal::Reused(live)) => {
            tracing::warn!("a spent refresh token was replayed; its family is revoked");
            module.revoke_access(live).await?;
            return Err(refused("the refresh token was already used; sign in again"));
        }
    };
    let Some(account) = module.store.user(claimed.user_id).await? else {
        return Err(refused("the account no longer exists"));
    };
    let pair = module
        .tokens_for(account.id, account.roles, Some(claimed.family))
        .await?;
    Ok(ApiResponse::success(pair))
}

/// Revoke the access token (and, if given, the refresh token's family).
#[utoipa::path(post, path = "/logout", tag = "auth", request_body(content = LogoutRequest, description = "Optional."),
    responses(
        (status = 204, description = "Signed out."),
        (status = 401, description = "No valid access token.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
async fn logout(
    State(module): State<AuthModule>,
    user: AuthUser,
    body: Bytes,
) -> Result<ApiResponse<()>, ChopinError> {
    let request: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        crate::json::from_slice(&body).map_err(ChopinError::from)?
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
async fn me(
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
        (status = 400, description = "Invalid, used or expired token.", body = ErrorEnvelope),
    ))]
async fn verify_email(
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
        None => Err(ChopinError::BadRequest(
            "the verification token is invalid or expired".into(),
        )),
    }
}

/// Mail a password-reset token, if the account exists (the answer is the same either way).
#[utoipa::path(post, path = "/password-reset", tag = "auth", request_body = EmailRequest,
    responses((status = 202, description = "Accepted.", body = ApiResponse<Accepted>)))]
async fn request_reset(
    State(module): State<AuthModule>,
    Json(body): Json<EmailRequest>,
) -> Result<ApiResponse<Accepted>, ChopinError> {
    if let Some(account) = module.store.find_by_email(&body.email).await? {
        let token = module
            .store
            .issue_one_time(
                account.id,
                PURPOSE_RESET,
                chrono::Duration::minutes(ONE_TIME_TTL_MINUTES),
            )
            .await?;
        module
            .send(MailKind::PasswordReset, account.email, token)
            .await;
    }
    Ok(ApiResponse::success(Accepted {
        message: "if the account exists, a reset link was sent",
    })
    .with_status(StatusCode::ACCEPTED))
}

/// Set a new password with the token from the reset mail; signs the account out everywhere.
#[utoipa::path(post, path = "/password-reset/confirm", tag = "auth", request_body = ResetRequest,
    responses(
        (status = 204, description = "Password changed; refresh tokens revoked."),
        (status = 400, description = "Invalid, used or expired token.", body = ErrorEnvelope),
        (status = 422, description = "Invalid password (`VALIDATION_FAILED`).", body = ErrorEnvelope),
    ))]
async fn confirm_reset(
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
        return Err(ChopinError::BadRequest(
            "the reset token is invalid or expired".into(),
        ));
    };
    let hash = password::hash(&body.password).await?;
    module.store.set_password_hash(user_id, &hash).await?;
    module.store.revoke_all_refresh(user_id).await?;
    Ok(ApiResponse::no_content())
}
