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
use crate::config::Environment;
use crate::error::{ChopinError, ErrorEnvelope, FieldError};
use crate::extractors::Json;
use crate::openapi::OpenApiRouter;
use crate::response::ApiResponse;

/// Shortest accepted password, in characters (the `minLength` of the documented schemas).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest accepted password, in characters (argon2 would take anything; a bound keeps
/// requests cheap; the `maxLength` of the documented schemas).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Longest accepted e-mail address, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Lifetime of verification and password-reset tokens.
const ONE_TIME_TTL_MINUTES: i64 = 60;

const PURPOSE_VERIFY: &str = "verify_email";
const PURPOSE_RESET: &str = "password_reset";

/// `"***"` for a secret that is set, in `Debug` output.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `Debug` for request and response bodies carrying secrets: the listed fields are shown,
/// the secret ones as `***`.
macro_rules! redacted_debug {
    ($ty:ident { $($shown:ident),* ; $($secret:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($shown), &self.$shown))*
                    $(.field(stringify!($secret), &Redacted))*
                    .finish()
            }
        }
    };
}

redacted_debug!(TokenPair { token_type, expires_in; access_token, refresh_token });
redacted_debug!(Credentials { email; password });
redacted_debug!(RefreshRequest { ; refresh_token });
redacted_debug!(LogoutRequest { ; refresh_token });
redacted_debug!(TokenRequest { ; token });
redacted_debug!(ResetRequest { ; token, password });

/// The one message of every failed login (unknown e-mail, wrong password).
pub const LOGIN_FAILED: &str = "invalid email or password";

/// Tokens returned by sign-up, login and refresh.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
///
/// The schema's bounds are the ones [`validate_credentials`] applies (a unit test compares
/// them): sign-up answers 422 outside them, login 401.
#[derive(Deserialize, utoipa::ToSchema)]
struct Credentials {
    /// E-mail address (case-insensitive; surrounding spaces are ignored): a non-empty local
    /// part, `@`, and a domain containing a dot; no spaces; at most 254 characters.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// Body of `/refresh`.
#[derive(Deserialize, utoipa::ToSchema)]
struct RefreshRequest {
    /// The latest refresh token of the session.
    refresh_token: String,
}

/// Body of `/logout`; the whole body is optional (an empty body revokes only the access
/// token).
#[derive(Deserialize, Default, utoipa::ToSchema)]
struct LogoutRequest {
    /// Also revoke this refresh token's family.
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Body of `/password-reset`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct EmailRequest {
    /// The account's e-mail address (the same rule as sign-up's).
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// Body of `/verify-email`.
#[derive(Deserialize, utoipa::ToSchema)]
struct TokenRequest {
    /// The token from the mail.
    token: String,
}

/// Body of `/password-reset/confirm`.
#[derive(Deserialize, utoipa::ToSchema)]
struct ResetRequest {
    /// The token from the mail.
    token: String,
    /// The new password, 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
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
/// | `POST` | `/verify-email` | `{token}` from the verification mail → 204; 404 for an unknown, used or expired token |
/// | `POST` | `/password-reset` | `{email}` → 202 whether or not the account exists; mails a reset token; 422 for a non-address |
/// | `POST` | `/password-reset/confirm` | `{token, password}` → 204; signs the account out everywhere; 404 for an unknown, used or expired token |
///
/// ```no_run
/// use chopin_core::auth::{Auth, AuthModule, AuthStore};
/// use chopin_core::openapi::OpenApiRouter;
/// use chopin_core::prelude::*;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_env()?;
/// let db = Db::connect(&config.database).await?;
/// let auth = Auth::from_config(&config).await?;
/// let module = AuthModule::new(auth.clone(), AuthStore::new(&db).await?).await?;
/// App::new(config)
///     .auth(&auth)
///     .api(OpenApiRouter::new().nest("/api/auth", module.api_router()))
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
    /// [`AuthModule::mailer`], or build it with [`AuthModule::with_mailer`]. Precomputes the
    /// dummy password hash, so that the first login for an unknown account is not slower
    /// than the others.
    ///
    /// When `auth` is configured for production ([`Auth::environment`]) this fails: the
    /// development mailer would write reset and verification tokens to the log. Use
    /// [`AuthModule::with_mailer`] with a real [`Mailer`] there.
    pub async fn new(auth: Auth, store: AuthStore) -> Result<AuthModule, ChopinError> {
        AuthModule::with_mailer(auth, store, LogMailer).await
    }

    /// The module sending verification and reset tokens through `mailer`. Fails in
    /// production when `mailer` is [development-only](Mailer::development_only).
    pub async fn with_mailer(
        auth: Auth,
        store: AuthStore,
        mailer: impl Mailer,
    ) -> Result<AuthModule, ChopinError> {
        if auth.environment() == Environment::Production && mailer.development_only() {
            return Err(ChopinError::internal(
                "the auth module needs a real Mailer in production: the development LogMailer \
                 would write password-reset and verification tokens to the log; build the \
                 module with AuthModule::with_mailer(auth, store, your_mailer)",
            ));
        }
        password::dummy_hash().await?;
        let store = store.with_leeway(auth.settings().leeway);
        Ok(AuthModule {
            auth,
            store,
            mailer: Arc::new(mailer),
        })
    }

    /// Send verification and reset tokens through `mailer`. In production a
    /// [development-only](Mailer::development_only) mailer given here is not used: every
    /// mail is dropped with an error in the log (without its token).
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

    /// The routes (relative: mount them with `Router::nest`), undocumented: prefer
    /// [`AuthModule::api_router`] with [`App::api`](crate::App::api), which puts them in the
    /// OpenAPI spec. They carry the [`Auth`] extension themselves, so they work whether or not
    /// the app installed it.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.api_router().split_for_parts().0
    }

    /// The same routes with their OpenAPI operations (tag `auth`) and the `bearer` security
    /// scheme, for [`App::api`](crate::App::api) — the way to mount them:
    /// `app.api(OpenApiRouter::new().nest("/api/auth", module.api_router()))`.
    pub fn api_router<S: Clone + Send + Sync + 'static>(&self) -> OpenApiRouter<S> {
        let mut router = documented_routes()
            .layer(self.auth.extension())
            .with_state(self.clone());
        add_bearer_scheme(router.get_openapi_mut());
        router
    }

    /// The OpenAPI documentation of the routes alone (relative paths, the `bearer` security
    /// scheme), built without a module, a database or a token key: what [`api_router`]
    /// documents.
    ///
    /// [`api_router`]: AuthModule::api_router
    pub fn openapi() -> utoipa::openapi::OpenApi {
        let (_, mut spec) = documented_routes().split_for_parts();
        add_bearer_scheme(&mut spec);
        spec
    }

    /// An [`OpenApiRouter`] that carries [`AuthModule::openapi`] and **serves nothing**: for
    /// building the application's spec where no database is available, e.g.
    /// `spec_for(title, version, api().nest("/api/auth", AuthModule::api_docs()))` in an
    /// `openapi` export task. Serve the routes with [`AuthModule::api_router`].
    ///
    /// ```
    /// use chopin_core::auth::AuthModule;
    /// use chopin_core::openapi::{OpenApiRouter, spec_for};
    ///
    /// let spec = spec_for(
    ///     "Accounts",
    ///     "1.0.0",
    ///     OpenApiRouter::<()>::new().nest("/api/auth", AuthModule::api_docs()),
    /// );
    /// assert!(spec.paths.paths.contains_key("/api/auth/login"));
    /// ```
    pub fn api_docs<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
        OpenApiRouter::with_openapi(AuthModule::openapi())
    }

    /// A signed access token for an account, with its `jti` and `exp`.
    fn access_token(
        &self,
        user_id: i64,
        roles: Vec<String>,
    ) -> Result<(String, String, i64), ChopinError> {
        let mut claims = self.auth.claims_for(user_id.to_string());
        claims.roles = roles;
        let (jti, exp) = (claims.jti.clone(), claims.exp);
        Ok((self.auth.issue(claims)?, jti, exp))
    }

    fn pair(&self, access_token: String, refresh_token: String) -> TokenPair {
        TokenPair {
            access_token,
            token_type: "Bearer".into(),
            expires_in: self.auth.access_ttl_secs(),
            refresh_token,
        }
    }

    /// Access and refresh tokens for an account, in a new refresh family.
    async fn tokens_for(&self, user_id: i64, roles: Vec<String>) -> Result<TokenPair, ChopinError> {
        let (access_token, jti, exp) = self.access_token(user_id, roles)?;
        let refresh_token = self
            .store
            .issue_refresh(user_id, self.auth.refresh_ttl(), (&jti, exp))
            .await?;
        Ok(self.pair(access_token, refresh_token))
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

    /// Issue and mail a reset token if the account exists.
    async fn mail_reset_token(&self, email: &str) -> Result<(), ChopinError> {
        if let Some(account) = self.store.find_by_email(email).await? {
            let token = self
                .store
                .issue_one_time(
                    account.id,
                    PURPOSE_RESET,
                    chrono::Duration::minutes(ONE_TIME_TTL_MINUTES),
                )
                .await?;
            self.send(MailKind::PasswordReset, account.email, token)
                .await;
        }
        Ok(())
    }

    async fn send(&self, kind: MailKind, to: String, token: String) {
        if self.auth.environment() == Environment::Production && self.mailer.development_only() {
            tracing::error!(
                ?kind,
                "mail not sent: a development-only mailer is installed in production"
            );
            return;
        }
        if let Err(error) = self.mailer.send(Mail { kind, to, token }).await {
            tracing::error!(%error, ?kind, "the mailer failed");
        }
    }
}

/// The handlers with their OpenAPI operations, before state and layers.
fn documented_routes() -> OpenApiRouter<AuthModule> {
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
}

/// Declare the `bearer` scheme that `/logout` and `/me` require.
fn add_bearer_scheme(spec: &mut utoipa::openapi::OpenApi) {
    spec.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            crate::openapi::BEARER_SCHEME,
            crate::openapi::bearer_security_scheme(),
        );
}

/// Whether `email` (already trimmed) is accepted as an e-mail address.
fn valid_email(email: &str) -> bool {
    email.chars().count() <= MAX_EMAIL_LEN
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.contains(char::is_whitespace)
}

fn validate_email(email: &str, fields: &mut Vec<FieldError>) {
    if !valid_email(email.trim()) {
        fields.push(FieldError::new(
            "email",
            "email",
            "must be an e-mail address",
        ));
    }
}

fn validate_credentials(email: &str, password: &str) -> Result<(), ChopinError> {
    let mut fields = Vec::new();
    validate_email(email, &mut fields);
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
    let pair = module.tokens_for(user.id, user.roles.clone()).await?;
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
    let pair = module.tokens_for(account.id, roles_of(&account)).await?;
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
            module.revoke_access(live).await?;
            Err(refused("the refresh token was already used; sign in again"))
        }
    }
}

/// Revoke the access token (and, if given, the refresh token's family).
#[utoipa::path(post, path = "/logout", tag = "auth",
    request_body(content = Option<LogoutRequest>, description = "Optional: without a body (or with an empty one) only the access token is revoked."),
    responses(
        (status = 204, description = "Signed out."),
        (status = 401, description = "No valid access token.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
async fn logout(
    State(module): State<AuthModule>,
    user: AuthUser,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<ApiResponse<()>, ChopinError> {
    let request: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else if !crate::extractors::json::has_json_content_type(&headers) {
        return Err(ChopinError::UnsupportedMediaType(
            "expected a request body with `Content-Type: application/json`".into(),
        ));
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
        (status = 404, description = "No pending verification has this token: unknown, used or expired (`NOT_FOUND`).", body = ErrorEnvelope),
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
async fn request_reset(
    State(module): State<AuthModule>,
    Json(body): Json<EmailRequest>,
) -> Result<ApiResponse<Accepted>, ChopinError> {
    let mut fields = Vec::new();
    validate_email(&body.email, &mut fields);
    if !fields.is_empty() {
        return Err(ChopinError::Validation(fields));
    }
    // The lookup, the insert and the mail happen after the answer, so its timing says
    // nothing about whether the account exists.
    let email = body.email;
    tokio::spawn(async move {
        if let Err(error) = module.mail_reset_token(&email).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{Schema, SchemaFormat};

    /// The property `name` of the component schema `T`.
    fn property<T: utoipa::ToSchema>(name: &str) -> utoipa::openapi::schema::Object {
        let RefOr::T(Schema::Object(object)) = T::schema() else {
            panic!("{} is not an object schema", T::name());
        };
        match object.properties.get(name) {
            Some(RefOr::T(Schema::Object(p))) => p.clone(),
            _ => panic!("{}.{name} is not an inline object property", T::name()),
        }
    }

    fn password_rejected(password: &str) -> bool {
        let mut fields = Vec::new();
        validate_password(password, &mut fields);
        !fields.is_empty()
    }

    fn email_rejected(email: &str) -> bool {
        let mut fields = Vec::new();
        validate_email(email, &mut fields);
        !fields.is_empty()
    }

    /// The documented bounds are the enforced ones: each schema's `minLength` / `maxLength`
    /// is accepted at the edge and refused one character past it.
    #[test]
    fn schemas_state_the_rules_the_routes_apply() {
        for password in [
            property::<Credentials>("password"),
            property::<ResetRequest>("password"),
        ] {
            let (min, max) = (password.min_length.unwrap(), password.max_length.unwrap());
            assert_eq!((min, max), (MIN_PASSWORD_LEN, MAX_PASSWORD_LEN));
            // Characters, not bytes, on both sides.
            assert!(!password_rejected(&"é".repeat(min)));
            assert!(!password_rejected(&"é".repeat(max)));
            assert!(password_rejected(&"é".repeat(min - 1)));
            assert!(password_rejected(&"é".repeat(max + 1)));
        }
        for email in [
            property::<Credentials>("email"),
            property::<EmailRequest>("email"),
        ] {
            assert_eq!(email.max_length, Some(MAX_EMAIL_LEN));
            assert!(matches!(
                email.format,
                Some(SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Email
                ))
            ));
            let at_max = format!("{}@example.com", "a".repeat(MAX_EMAIL_LEN - 12));
            assert_eq!(at_max.chars().count(), MAX_EMAIL_LEN);
            assert!(!email_rejected(&at_max));
            assert!(email_rejected(&format!("a{at_max}")));
            // JSON Schema's `email` format needs an `@`: every string without one is refused.
            assert!(email_rejected("ada.example.com"));
            assert!(email_rejected(""));
        }
        // The other bodies carry no bound the routes don't apply.
        assert_eq!(property::<ResetRequest>("token").min_length, None);
        assert_eq!(property::<TokenRequest>("token").min_length, None);
    }

    #[test]
    fn the_spec_needs_no_database_and_mounts_where_the_routes_do() {
        let spec = AuthModule::openapi();
        let mut paths: Vec<&str> = spec.paths.paths.keys().map(String::as_str).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "/login",
                "/logout",
                "/me",
                "/password-reset",
                "/password-reset/confirm",
                "/refresh",
                "/signup",
                "/verify-email"
            ]
        );
        let components = spec.components.as_ref().unwrap();
        assert!(components.security_schemes.contains_key("bearer"));
        // The logout body is optional, as the handler treats it.
        let logout = spec.paths.paths["/logout"].post.as_ref().unwrap();
        let Some(RefOr::T(body)) = &logout.request_body else {
            panic!("logout documents its body inline")
        };
        assert!(!matches!(
            body.required,
            Some(utoipa::openapi::Required::True)
        ));
        // The docs router nests like the served one.
        let nested = OpenApiRouter::<()>::new()
            .nest("/api/auth", AuthModule::api_docs())
            .into_openapi();
        assert!(nested.paths.paths.contains_key("/api/auth/signup"));
        assert!(
            nested
                .paths
                .paths
                .contains_key("/api/auth/password-reset/confirm")
        );
    }

    #[test]
    fn debug_output_hides_passwords_and_tokens() {
        let shown = [
            format!(
                "{:?}",
                TokenPair {
                    access_token: "SECRET-access".into(),
                    token_type: "Bearer".into(),
                    expires_in: 900,
                    refresh_token: "SECRET-refresh".into(),
                }
            ),
            format!(
                "{:?}",
                Credentials {
                    email: "a@example.com".into(),
                    password: "SECRET-password".into(),
                }
            ),
            format!(
                "{:?}",
                RefreshRequest {
                    refresh_token: "SECRET-refresh".into(),
                }
            ),
            format!(
                "{:?}",
                LogoutRequest {
                    refresh_token: Some("SECRET-refresh".into()),
                }
            ),
            format!(
                "{:?}",
                TokenRequest {
                    token: "SECRET-token".into(),
                }
            ),
            format!(
                "{:?}",
                ResetRequest {
                    token: "SECRET-token".into(),
                    password: "SECRET-password".into(),
                }
            ),
        ];
        for text in &shown {
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
        assert!(shown[0].contains("Bearer") && shown[0].contains("900"));
        assert!(shown[1].contains("a@example.com"));
    }
}
