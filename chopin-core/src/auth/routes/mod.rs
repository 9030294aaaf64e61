//! The mountable auth routes: sign-up, login, refresh, logout, me, e-mail verification and
//! password reset.

mod bodies;
mod handlers;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;

use super::mail_queue::MailQueue;
use super::password;
use super::rate_limit::{RouteLimits, limit_routes};
use super::{Auth, AuthRateLimits, AuthStore, LogMailer, Mail, MailKind, Mailer};
use crate::error::ChopinError;
use crate::openapi::OpenApiRouter;
pub use bodies::{
    MAX_EMAIL_LEN, MAX_EMAIL_LOCAL_LEN, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, TokenPair,
};
use bodies::{ONE_TIME_TTL_MINUTES, PURPOSE_RESET};

/// The auth routes, ready to mount (usually under `/auth`). Every answer is
/// `Cache-Control: no-store` (RFC 6749 §5.1):
///
/// | method | path | |
/// |---|---|---|
/// | `POST` | `/signup` | `{email, password}` → 201 tokens; 409 when taken; 422 on invalid fields; sends a verification mail |
/// | `POST` | `/login` | `{email, password}` → tokens; 401 `invalid email or password` for every failure |
/// | `POST` | `/refresh` | `{refresh_token}` → new tokens; the old refresh token is spent, and replaying it revokes the whole family and the family's live access tokens |
/// | `POST` | `/logout` | bearer token required; `Content-Type: application/json` required (415) unless the token is in `Authorization` and there is no body; revokes the token, and the refresh family (with its access tokens) of an optional `{refresh_token}` → 204 |
/// | `GET` | `/me` | bearer token required → the account |
/// | `POST` | `/verify-email` | `{token}` from the verification mail → 204; 404 for an unknown, used or expired token |
/// | `POST` | `/password-reset` | `{email}` → 202 whether or not the account exists; mails a reset token; 422 for a non-address |
/// | `POST` | `/password-reset/confirm` | `{token, password}` → 204; signs the account out everywhere; 404 for an unknown, used or expired token |
///
/// The routes carry their own rate limits ([`AuthRateLimits`], on by default: login 10/min per
/// address and 5 failures per 15 min per account and address, sign-up 10/h per address,
/// password reset 5/h per account and address and 20/h per address, 5 failed token
/// redemptions per hour per address, refresh 60/min per user; an IPv6 client counts by its /64), answered with 429 `RATE_LIMITED`, `Retry-After`,
/// `RateLimit-Policy` and `RateLimit`.
///
/// ```no_run
/// use chopin_core::auth::{Auth, AuthModule, AuthStore, mailer_from_config};
/// use chopin_core::openapi::OpenApiRouter;
/// use chopin_core::prelude::*;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_env()?;
/// let db = Db::connect(&config.database).await?;
/// let auth = Auth::from_config(&config).await?;
/// // SMTP when CHOPIN_SMTP_URL is set; else the LogMailer in development (an error in production).
/// let mailer = mailer_from_config(&config)?;
/// let module = AuthModule::with_mailer(auth.clone(), AuthStore::new(&db).await?, mailer).await?;
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
    limits: AuthRateLimits,
    queue: MailQueue,
}

impl std::fmt::Debug for AuthModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthModule")
            .field("auth", &self.auth)
            .field("store", &self.store)
            .field("limits", &self.limits)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl AuthModule {
    /// The module with the development [`LogMailer`]; replace it with
    /// [`AuthModule::mailer`], or build it with [`AuthModule::with_mailer`]. Precomputes the
    /// dummy password hash, so that the first login for an unknown account is not slower
    /// than the others.
    ///
    /// When `auth` is configured for anything but development ([`Auth::environment`]) this
    /// fails: the development mailer would write reset and verification tokens to the log.
    /// Use [`AuthModule::with_mailer`] with a real [`Mailer`] there, for example the one
    /// [`mailer_from_config`](super::mailer_from_config) picks.
    pub async fn new(auth: Auth, store: AuthStore) -> Result<AuthModule, ChopinError> {
        AuthModule::with_mailer(auth, store, LogMailer).await
    }

    /// The module sending verification and reset tokens through `mailer`. Fails outside
    /// development (test, production) when `mailer` is
    /// [development-only](Mailer::development_only).
    pub async fn with_mailer(
        auth: Auth,
        store: AuthStore,
        mailer: impl Mailer,
    ) -> Result<AuthModule, ChopinError> {
        if !auth.environment().is_development() && mailer.development_only() {
            return Err(ChopinError::internal(format!(
                "the auth module needs a real Mailer in {}: the development LogMailer \
                 would write password-reset and verification tokens to the log; set \
                 CHOPIN_SMTP_URL and build the module with AuthModule::with_mailer(auth, \
                 store, mailer_from_config(&config)?), or pass your own Mailer",
                auth.environment().as_str()
            )));
        }
        password::dummy_hash().await?;
        let store = store.with_leeway(auth.settings().leeway);
        let (capacity, workers) = auth.mail_queue_limits();
        Ok(AuthModule {
            queue: MailQueue::new(capacity, workers),
            limits: auth.route_limits().clone(),
            auth,
            store,
            mailer: Arc::new(mailer),
        })
    }

    /// Bound the background work of the routes — the verification mail of a sign-up, and a
    /// password reset's account lookup, token and mail — to `capacity` jobs waiting for
    /// `workers` tasks (each at least 1). The module starts with the [`Auth`]'s
    /// ([`Auth::mail_queue_limits`]: `CHOPIN_AUTH_MAIL_QUEUE` and `CHOPIN_AUTH_MAIL_WORKERS`
    /// with [`Auth::from_config`]; otherwise
    /// [`DEFAULT_MAIL_QUEUE_CAPACITY`](super::DEFAULT_MAIL_QUEUE_CAPACITY) (1024) and
    /// [`DEFAULT_MAIL_WORKERS`](super::DEFAULT_MAIL_WORKERS) (4)).
    ///
    /// When the queue is full the job is dropped and the request answers exactly as usual
    /// (so a reset request says nothing about whether the address exists, or about the
    /// queue); the drop is counted ([`AuthModule::mail_queue_overflow`], and
    /// `chopin_auth_mail_queue_overflow_total` with the `metrics` feature) and logged at most
    /// once every 10 s. At graceful shutdown an [`App`](crate::App) given the module with
    /// [`App::auth_module`](crate::App::auth_module) lets the queue finish its jobs within
    /// what is left of `CHOPIN_SHUTDOWN_TIMEOUT` ([`AuthModule::drain_mail_queue`]).
    pub fn mail_queue(mut self, capacity: usize, workers: usize) -> Self {
        self.queue = MailQueue::new(capacity, workers);
        self
    }

    /// The mail queue's capacity and worker count ([`AuthModule::mail_queue`]).
    pub fn mail_queue_limits(&self) -> (usize, usize) {
        self.queue.limits()
    }

    /// Stop taking background jobs (later ones are dropped, with a warning) and wait up to
    /// `within` for the queued and running ones (mails, password resets) to finish. Returns
    /// how many were left unfinished at the deadline (they are lost when the process exits;
    /// logged as a warning). [`App::auth_module`](crate::App::auth_module) calls it at
    /// graceful shutdown, after the last request; call it yourself when serving otherwise.
    pub async fn drain_mail_queue(&self, within: std::time::Duration) -> usize {
        self.queue.drain(within).await
    }

    /// Background jobs dropped because the mail queue was full ([`AuthModule::mail_queue`]).
    pub fn mail_queue_overflow(&self) -> u64 {
        self.queue.overflow()
    }

    /// Limit the routes with `limits` instead of the ones the [`Auth`] was configured with
    /// ([`Auth::route_limits`]: `CHOPIN_RATE_LIMIT_LOGIN` and its siblings with
    /// [`Auth::from_config`], the defaults otherwise); [`AuthRateLimits::off`] turns them off.
    /// See [`AuthRateLimits`] for what each limit counts.
    pub fn rate_limits(mut self, limits: AuthRateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits on the routes.
    pub fn limits(&self) -> &AuthRateLimits {
        &self.limits
    }

    /// Send verification and reset tokens through `mailer`. Outside development a
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
    /// the app installed it, and their own rate limits ([`AuthModule::rate_limits`]).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.api_router().split_for_parts().0
    }

    /// The same routes with their OpenAPI operations (tag `auth`) and the `bearer` security
    /// scheme, for [`App::api`](crate::App::api) — the way to mount them:
    /// `app.api(OpenApiRouter::new().nest("/api/auth", module.api_router()))`.
    pub fn api_router<S: Clone + Send + Sync + 'static>(&self) -> OpenApiRouter<S> {
        let limits = RouteLimits::new(self.limits.clone(), self.store.clone());
        let mut router = documented_routes()
            .route_layer(axum::middleware::from_fn_with_state(limits, limit_routes))
            .layer(axum::middleware::map_response(no_store))
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

    /// Queue `job` (bounded: see [`AuthModule::mail_queue`]); a full queue drops it.
    fn in_background(
        &self,
        what: &'static str,
        job: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.queue.submit(what, Box::pin(job));
    }

    /// Send a mail in the background (see [`AuthModule::in_background`]).
    fn send_later(&self, kind: MailKind, to: String, token: String) {
        let module = self.clone();
        self.in_background("mail", async move { module.send(kind, to, token).await });
    }

    async fn send(&self, kind: MailKind, to: String, token: String) {
        if !self.auth.environment().is_development() && self.mailer.development_only() {
            tracing::error!(
                ?kind,
                environment = self.auth.environment().as_str(),
                "mail not sent: a development-only mailer is installed outside development"
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
        .routes(routes!(handlers::signup))
        .routes(routes!(handlers::login))
        .routes(routes!(handlers::refresh))
        .routes(routes!(handlers::logout))
        .routes(routes!(handlers::me))
        .routes(routes!(handlers::verify_email))
        .routes(routes!(handlers::request_reset))
        .routes(routes!(handlers::confirm_reset))
}

/// `Cache-Control: no-store` and `Pragma: no-cache` on every answer of the module: tokens
/// (sign-up, login, refresh) must not be kept by any cache (RFC 6749 §5.1), nor the account
/// data of `/me`. `Pragma` is for HTTP/1.0 caches, as in RFC 6749's examples.
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::PRAGMA,
        http::HeaderValue::from_static("no-cache"),
    );
    response
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
