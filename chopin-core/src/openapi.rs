//! OpenAPI with utoipa: routes are declared once and feed both axum and the spec.
//!
//! Write handlers with `#[utoipa::path]`, register them with [`routes!`] on an
//! [`OpenApiRouter`], and give the router to [`App::api`](crate::App::api). The App serves the
//! merged spec at `/openapi.json` and an interactive UI at `/docs` (assets embedded in the
//! binary, no CDN; the `openapi-ui` feature). Both are on in development and test and off in
//! production unless `CHOPIN_OPENAPI=true`.
//!
//! ```
//! use chopin_core::openapi::{OpenApiRouter, routes};
//! use chopin_core::prelude::*;
//!
//! /// Say hello.
//! #[utoipa::path(get, path = "/hello", responses((status = 200, body = ApiResponse<String>)))]
//! async fn hello() -> ApiResponse<String> {
//!     ApiResponse::success("hello".to_string())
//! }
//!
//! let app = App::new(Config::for_environment(Environment::Test))
//!     .api(OpenApiRouter::new().routes(routes!(hello)));
//! let spec = app.openapi();
//! assert!(spec.paths.paths.contains_key("/hello"));
//! ```

use axum::Router;
use axum::response::IntoResponse;
use bytes::Bytes;
use http::header;
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa::{PartialSchema, ToSchema};

pub use utoipa;
pub use utoipa_axum::router::OpenApiRouter;
pub use utoipa_axum::routes;

use crate::config::OpenApiConfig;
use crate::error::{ErrorCode, ErrorEnvelope, FieldError};
use crate::json;
use crate::response::PageMeta;

/// A spec with the given title and version and Chopin's shared schemas (`ErrorEnvelope`,
/// `ErrorCode`, `FieldError`, `PageMeta`) in its components.
pub fn base_spec(title: &str, version: &str) -> OpenApi {
    let mut components = ComponentsBuilder::new();
    let mut schemas = Vec::new();
    <ErrorEnvelope as ToSchema>::schemas(&mut schemas);
    components = components
        .schema(ErrorEnvelope::name(), ErrorEnvelope::schema())
        .schema(ErrorCode::name(), ErrorCode::schema())
        .schema(FieldError::name(), FieldError::schema())
        .schema(PageMeta::name(), PageMeta::schema())
        .schemas_from_iter(schemas);
    OpenApiBuilder::new()
        .info(InfoBuilder::new().title(title).version(version).build())
        .components(Some(components.build()))
        .build()
}

/// The spec an [`App`](crate::App) serves for `api`: [`base_spec`] with `title` and `version`,
/// the built-in health routes, and every operation and schema of `api`.
///
/// It needs no state, database or server: applications use it to export their spec (for
/// example a `openapi` subcommand that prints it, which is what `chopin openapi export`
/// runs) without connecting to anything.
///
/// ```
/// use chopin_core::openapi::{OpenApiRouter, routes, spec_for};
/// use chopin_core::prelude::*;
///
/// /// Say hello.
/// #[utoipa::path(get, path = "/hello", responses((status = 200, body = ApiResponse<String>)))]
/// async fn hello() -> ApiResponse<String> {
///     ApiResponse::success("hello".to_string())
/// }
///
/// let spec = spec_for("Greeter", "1.0.0", OpenApiRouter::<()>::new().routes(routes!(hello)));
/// assert_eq!(spec.info.title, "Greeter");
/// assert!(spec.paths.paths.contains_key("/hello"));
/// assert!(spec.paths.paths.contains_key("/health/ready"));
/// ```
pub fn spec_for<S>(title: &str, version: &str, api: OpenApiRouter<S>) -> OpenApi
where
    S: Clone + Send + Sync + 'static,
{
    let mut spec = base_spec(title, version);
    spec.merge(health_spec());
    let (_, api_spec) = api.split_for_parts();
    spec.merge(api_spec);
    spec
}

/// The operations of `/health/live` and `/health/ready`.
pub(crate) fn health_spec() -> OpenApi {
    let (_, spec) = OpenApiRouter::<()>::new()
        .routes(routes!(crate::health::live))
        .routes(routes!(crate::health::ready))
        .split_for_parts();
    spec
}

/// Routes serving `spec` as JSON at `config.spec_path` and, with the `openapi-ui` feature, the
/// docs UI at `config.ui_path`. The spec is serialised once, here.
pub fn spec_routes(spec: &OpenApi, config: &OpenApiConfig) -> Router {
    let body = match json::to_bytes(spec) {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(%err, "could not serialise the OpenAPI spec");
            Bytes::from_static(b"{}")
        }
    };
    let serve_spec = move || {
        let body = body.clone();
        async move {
            (
                [(header::CONTENT_TYPE, crate::json::APPLICATION_JSON)],
                body,
            )
                .into_response()
        }
    };
    let router = Router::new().route(&config.spec_path, axum::routing::get(serve_spec));
    #[cfg(feature = "openapi-ui")]
    let router = router.merge(
        utoipa_swagger_ui::SwaggerUi::new(config.ui_path.clone())
            .config(utoipa_swagger_ui::Config::new([config.spec_path.clone()])),
    );
    router
}
