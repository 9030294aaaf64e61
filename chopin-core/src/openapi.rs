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
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Response,
};
use utoipa::{PartialSchema, ToSchema};

pub use utoipa_axum::router::OpenApiRouter;
pub use utoipa_axum::routes;

use crate::config::OpenApiConfig;
use crate::error::{ErrorCode, ErrorEnvelope, FieldError};
use crate::extractors::{Pagination, PaginationConfig};
use crate::json;
use crate::response::PageMeta;

/// A spec with the given title and version, Chopin's shared schemas (`ErrorEnvelope`,
/// `ErrorCode`, `FieldError`, `PageMeta`) and its shared error responses (see
/// [`add_error_responses`]) in its components.
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
    let mut spec = OpenApiBuilder::new()
        .info(InfoBuilder::new().title(title).version(version).build())
        .components(Some(components.build()))
        .build();
    add_shared_responses(&mut spec);
    spec
}

/// The name of the security scheme Chopin's bearer tokens are documented under: operations
/// that need a token say `security(("bearer" = []))`.
pub const BEARER_SCHEME: &str = "bearer";

/// The `bearer` security scheme (HTTP bearer, JWT): what [`App::auth`](crate::App::auth) and
/// the auth module's documentation declare under [`BEARER_SCHEME`].
pub fn bearer_security_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build(),
    )
}

/// One error response that the framework itself can produce, shared by every operation
/// through `#/components/responses/<name>`.
struct SharedError {
    /// The HTTP status.
    status: &'static str,
    /// The name under `components/responses`.
    name: &'static str,
    /// Its description (the codes and when).
    description: &'static str,
    /// Response headers it always carries: (name, description).
    headers: &'static [(&'static str, &'static str)],
    /// Which operations can answer it.
    applies: Applies,
}

/// Which operations a [`SharedError`] is added to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Applies {
    /// Every operation.
    Always,
    /// Operations with parameters or a request body (something the client can get wrong).
    WithInput,
    /// Operations with a request body.
    WithBody,
    /// Operations that require a security scheme.
    WithSecurity,
}

/// The framework-level error responses, in status order.
const SHARED_ERRORS: &[SharedError] = &[
    SharedError {
        status: "400",
        name: "BadRequest",
        description: "The request is malformed: `MALFORMED_JSON` (the body is not JSON, or not \
                      the documented shape), `INVALID_QUERY` (a query parameter is invalid), \
                      `INVALID_CURSOR` (a pagination cursor was altered or has expired) or \
                      `BAD_REQUEST`.",
        headers: &[],
        applies: Applies::WithInput,
    },
    SharedError {
        status: "401",
        name: "Unauthorized",
        description: "No valid access token (`UNAUTHORIZED`): missing, malformed, expired or \
                      revoked.",
        headers: &[(
            "WWW-Authenticate",
            "`Bearer`, or `Bearer error=\"invalid_token\"` for a token that was presented \
             and refused.",
        )],
        applies: Applies::WithSecurity,
    },
    SharedError {
        status: "413",
        name: "PayloadTooLarge",
        description: "The body exceeds the configured limit (`PAYLOAD_TOO_LARGE`, \
                      `CHOPIN_BODY_LIMIT`).",
        headers: &[],
        applies: Applies::WithBody,
    },
    SharedError {
        status: "415",
        name: "UnsupportedMediaType",
        description: "The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).",
        headers: &[],
        applies: Applies::WithBody,
    },
    SharedError {
        status: "422",
        name: "ValidationFailed",
        description: "Well-formed JSON with invalid content (`VALIDATION_FAILED`); each \
                      invalid field is listed in `error.fields`, named by its JSON key.",
        headers: &[],
        applies: Applies::WithBody,
    },
    SharedError {
        status: "429",
        name: "RateLimited",
        description: "Too many requests (`RATE_LIMITED`); retry after `Retry-After` seconds.",
        headers: &[("Retry-After", "Seconds to wait before retrying.")],
        applies: Applies::Always,
    },
    SharedError {
        status: "500",
        name: "InternalError",
        description: "An unexpected failure inside the server (`INTERNAL_ERROR`); no detail \
                      is exposed outside development.",
        headers: &[],
        applies: Applies::Always,
    },
    SharedError {
        status: "503",
        name: "ServiceUnavailable",
        description: "A dependency (database pool, cache, token revocations) is unavailable \
                      (`SERVICE_UNAVAILABLE`); retry after `Retry-After` seconds when given.",
        headers: &[("Retry-After", "Seconds to wait before retrying.")],
        applies: Applies::Always,
    },
    SharedError {
        status: "504",
        name: "Timeout",
        description: "The request did not complete within the configured timeout (`TIMEOUT`, \
                      `CHOPIN_REQUEST_TIMEOUT`).",
        headers: &[],
        applies: Applies::Always,
    },
];

/// The shared error response `error` as a `components/responses` entry: the error envelope
/// as `application/json`, with its headers.
fn shared_response(error: &SharedError) -> Response {
    let mut response = ResponseBuilder::new()
        .description(error.description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorEnvelope::name())))
                .build(),
        );
    for (name, description) in error.headers {
        response = response.header(*name, documented_header(name, description));
    }
    response.build()
}

/// A response header as the shared responses document it: `Retry-After` is an integer of
/// seconds, anything else a string.
fn documented_header(name: &str, description: &str) -> Header {
    let schema = if name == "Retry-After" {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(1.0))
    } else {
        ObjectBuilder::new().schema_type(SchemaType::Type(Type::String))
    };
    HeaderBuilder::new()
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

/// The header `name` as the shared responses document it.
fn shared_header(name: &str) -> Option<Header> {
    SHARED_ERRORS
        .iter()
        .flat_map(|error| error.headers)
        .find(|(header_name, _)| *header_name == name)
        .map(|(name, description)| documented_header(name, description))
}

/// Every operation of `item`: the standard methods', then any others.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
        &mut item.query,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
    .chain(item.additional_operations.values_mut())
}

/// Register the shared error responses in `components/responses` (existing entries of the
/// same name are kept).
fn add_shared_responses(spec: &mut OpenApi) {
    let components = spec.components.get_or_insert_with(Default::default);
    for error in SHARED_ERRORS {
        components
            .responses
            .entry(error.name.to_string())
            .or_insert_with(|| RefOr::T(shared_response(error)));
    }
}

/// Document on every operation of `spec` the error statuses the framework itself can answer
/// with, as references to shared responses in `components/responses`, all with the one
/// [`ErrorEnvelope`] schema:
///
/// | status | response | added to |
/// |---|---|---|
/// | 400 | `BadRequest` | operations with parameters or a request body |
/// | 401 | `Unauthorized` (with `WWW-Authenticate`) | operations with a security requirement |
/// | 413 | `PayloadTooLarge` | operations with a request body |
/// | 415 | `UnsupportedMediaType` | operations with a request body |
/// | 422 | `ValidationFailed` | operations with a request body |
/// | 429 | `RateLimited` (with `Retry-After`) | every operation |
/// | 500 | `InternalError` | every operation |
/// | 503 | `ServiceUnavailable` (with `Retry-After`) | every operation |
/// | 504 | `Timeout` | every operation |
///
/// A status the operation already documents is left as the handler wrote it, except that a
/// handler's own 401 gets the `WWW-Authenticate` header every Chopin 401 carries. Running it
/// twice changes nothing. [`spec_for`] and [`App`](crate::App) (for what it serves and what
/// [`App::openapi`](crate::App::openapi) returns) call it; call it yourself on a spec you
/// assemble another way.
///
/// ```
/// use chopin_core::openapi::{OpenApiRouter, add_error_responses, routes};
/// use chopin_core::prelude::*;
///
/// /// Say hello.
/// #[utoipa::path(get, path = "/hello", responses((status = 200, body = ApiResponse<String>)))]
/// async fn hello() -> ApiResponse<String> {
///     ApiResponse::success("hello".to_string())
/// }
///
/// let (_, mut spec) = OpenApiRouter::<()>::new().routes(routes!(hello)).split_for_parts();
/// add_error_responses(&mut spec);
/// let op = spec.paths.paths["/hello"].get.as_ref().unwrap();
/// assert!(op.responses.responses.contains_key("500"));
/// assert!(!op.responses.responses.contains_key("415")); // no request body
/// ```
pub fn add_error_responses(spec: &mut OpenApi) {
    add_shared_responses(spec);
    let global_security = spec.security.clone();
    for item in spec.paths.paths.values_mut() {
        let path_params = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
        for op in operations_mut(item) {
            add_to_operation(op, path_params, global_security.as_deref());
        }
    }
}

/// Replace the pagination parameters documented with the default limits
/// (`params(Pagination)`) by the ones `config` enforces, so that a served spec states the
/// configured page size and overflow mode. Does nothing for the default configuration.
pub(crate) fn document_pagination(spec: &mut OpenApi, config: PaginationConfig) {
    if config == PaginationConfig::default() {
        return;
    }
    let defaults = Pagination::parameters(PaginationConfig::default(), ParameterIn::Query);
    let configured = Pagination::parameters(config, ParameterIn::Query);
    for op in spec.paths.paths.values_mut().flat_map(operations_mut) {
        for parameter in op.parameters.iter_mut().flatten() {
            if let RefOr::T(parameter) = parameter
                && let Some(i) = defaults.iter().position(|d| d == parameter)
            {
                *parameter = configured[i].clone();
            }
        }
    }
}

fn add_to_operation(
    op: &mut Operation,
    path_params: bool,
    global_security: Option<&[SecurityRequirement]>,
) {
    let has_body = op.request_body.is_some();
    let has_input =
        has_body || path_params || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    // Any named scheme among the alternatives means a token is checked when presented (an
    // empty alternative `{}` only makes it optional), and a refused token answers 401.
    let requirements = op.security.as_deref().or(global_security);
    let secured = requirements.is_some_and(|reqs| {
        reqs.iter()
            .any(|req| *req != SecurityRequirement::default())
    });
    // Every 401 Chopin sends carries `WWW-Authenticate`: say so on a handler's own 401 too.
    if let Some(RefOr::T(own)) = op.responses.responses.get_mut("401")
        && !own.headers.contains_key("WWW-Authenticate")
        && let Some(header) = shared_header("WWW-Authenticate")
    {
        own.headers
            .insert("WWW-Authenticate".to_string(), RefOr::T(header));
    }
    for error in SHARED_ERRORS {
        let applies = match error.applies {
            Applies::Always => true,
            Applies::WithInput => has_input,
            Applies::WithBody => has_body,
            Applies::WithSecurity => secured,
        };
        if applies {
            op.responses
                .responses
                .entry(error.status.to_string())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(error.name)));
        }
    }
}

/// The spec an [`App`](crate::App) serves for `api`: [`base_spec`] with `title` and `version`,
/// the built-in health routes, and every operation and schema of `api`.
///
/// It needs no state, database or server: applications use it to export their spec (for
/// example a `openapi` subcommand that prints it, which is what `chopin openapi export`
/// runs) without connecting to anything. It reads no configuration either, so
/// `params(Pagination)` states the default page sizes; an [`App`](crate::App) configured
/// with other `CHOPIN_PAGINATION_*` values serves them instead, and that is the only
/// difference.
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
    add_error_responses(&mut spec);
    spec
}

/// The operations of `/health/live` and `/health/ready`.
pub(crate) fn health_spec() -> OpenApi {
    let (_, mut spec) = OpenApiRouter::<()>::new()
        .routes(routes!(crate::health::live))
        .routes(routes!(crate::health::ready))
        .split_for_parts();
    add_error_responses(&mut spec);
    spec
}

/// Routes serving `spec` as JSON at `config.spec_path` and, with the `openapi-ui` feature, the
/// docs UI at `config.ui_path`. The spec is serialised once, here, after
/// [`add_error_responses`] (so operations added through `App::openapi_mut` get them too).
pub fn spec_routes(spec: &OpenApi, config: &OpenApiConfig) -> Router {
    let mut spec = spec.clone();
    add_error_responses(&mut spec);
    let body = match json::to_bytes(&spec) {
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
