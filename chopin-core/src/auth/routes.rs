//! The mountable auth routes: sign-up, login, refresh, logout, me, e-mail verification and
//! password reset.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::password;
use super::store::{RefreshRefusal, roles_of};
use super::{Auth, AuthStore, AuthUser, LogMailer, Mail, MailKind, Mailer, User};
use crate::error::{ChopinError, FieldError};
use crate::extractors::Json;
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

#[derive(Debug, Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Debug, Deserialize, Default)]
struct LogoutRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EmailRequest {
    email: String,
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    token: String,
}

#[derive(Debug, Deserialize)]
struct ResetRequest {
    token: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct Accepted {
    message: &'static str,
}

/// The auth routes, ready to mount (usually under `/auth`):
///
/// | method | path | |
/// |---|---|---|
/// | `POST` | `/signup` | `{email, password}` → 201 tokens; 409 when taken; 422 on invalid fields; sends a verification mail |
/// | `POST` | `/login` | `{email, password}` → tokens; 401 `invalid email or password` for every failure |
/// | `POST` | `/refresh` | `{refresh_token}` → new tokens; the old refresh token is spent, and replaying it revokes the whole family |
/// | `POST` | `/logout` | bearer token required; revokes it, and the refresh family of an optional `{refresh_token}` → 204 |
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
        Router::new()
            .route("/signup", post(signup))
            .route("/login", post(login))
            .route("/refresh", post(refresh))
            .route("/logout", post(logout))
            .route("/me", get(me))
            .route("/verify-email", post(verify_email))
            .route("/password-reset", post(request_reset))
            .route("/password-reset/confirm", post(confirm_reset))
            .layer(self.auth.extension())
            .with_state(self.clone())
    }

    /// Access and refresh tokens for an account (a new refresh family when `family` is
    /// `None`).
    async fn tokens_for(
        &self,
        user_id: i64,
        roles: Vec<String>,
        refresh_token: Option<String>,
    ) -> Result<TokenPair, ChopinError> {
        let mut claims = self.auth.claims_for(user_id.to_string());
        claims.roles = roles;
        let access_token = self.auth.issue(claims)?;
        let refresh_token = match refresh_token {
            Some(t) => t,
            None => {
                self.store
                    .issue_refresh(user_id, None, self.auth.refresh_ttl())
                    .await?
            }
        };
        Ok(TokenPair {
            access_token,
            token_type: "Bearer".into(),
            expires_in: self.auth.access_ttl_secs(),
            refresh_token,
        })
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

async fn refresh(
    State(module): State<AuthModule>,
    Json(body): Json<RefreshRequest>,
) -> Result<ApiResponse<TokenPair>, ChopinError> {
    let refused = |why: &str| ChopinError::InvalidToken(why.to_string());
    let (user_id, next) = match module
        .store
        .rotate_refresh(&body.refresh_token, module.auth.refresh_ttl())
        .await?
    {
        Ok(pair) => pair,
        Err(RefreshRefusal::Invalid) => {
            return Err(refused("the refresh token is invalid or expired"));
        }
        Err(RefreshRefusal::Reused) => {
            tracing::warn!("a spent refresh token was replayed; its family is revoked");
            return Err(refused("the refresh token was already used; sign in again"));
        }
    };
    let Some(account) = module.store.user(user_id).await? else {
        return Err(refused("the account no longer exists"));
    };
    let pair = module
        .tokens_for(account.id, account.roles, Some(next))
        .await?;
    Ok(ApiResponse::success(pair))
}

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
        module.store.revoke_refresh(&token).await?;
    }
    Ok(ApiResponse::no_content())
}

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
