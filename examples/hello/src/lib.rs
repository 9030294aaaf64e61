//! The routes of the `hello` example, as a library so that tests drive the same app.

use axum::extract::Path;
use chopin_core::openapi::{OpenApiRouter, routes};
use chopin_core::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A greeting.
#[derive(Debug, Serialize, ToSchema)]
pub struct Greeting {
    /// The text of the greeting.
    pub message: String,
}

/// The body `POST /echo` accepts and returns.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Echo {
    /// Any text.
    pub text: String,
}

/// Say hello to the world.
#[utoipa::path(get, path = "/", responses((status = 200, body = ApiResponse<Greeting>)))]
pub async fn index() -> ApiResponse<Greeting> {
    ApiResponse::success(Greeting {
        message: "Hello, World!".into(),
    })
}

/// Say hello to someone.
#[utoipa::path(
    get,
    path = "/greet/{name}",
    params(("name" = String, Path, description = "Who to greet (1 to 64 characters)")),
    responses(
        (status = 200, body = ApiResponse<Greeting>),
        (status = 422, body = chopin_core::error::ErrorEnvelope),
    )
)]
pub async fn greet(Path(name): Path<String>) -> Result<ApiResponse<Greeting>, ChopinError> {
    if name.chars().count() > 64 {
        return Err(ChopinError::invalid_field(
            "name",
            "length",
            "must have at most 64 characters",
        ));
    }
    Ok(ApiResponse::success(Greeting {
        message: format!("Hello, {name}!"),
    }))
}

/// Return the JSON body it was given.
#[utoipa::path(
    post,
    path = "/echo",
    request_body = Echo,
    responses(
        (status = 200, body = ApiResponse<Echo>),
        (status = 400, body = chopin_core::error::ErrorEnvelope),
        (status = 415, body = chopin_core::error::ErrorEnvelope),
        (status = 422, body = chopin_core::error::ErrorEnvelope),
    )
)]
pub async fn echo(Json(body): Json<Echo>) -> ApiResponse<Echo> {
    ApiResponse::success(body)
}

/// The application: three documented routes and Chopin's defaults.
pub fn app(config: Config) -> App {
    App::new(config)
        .openapi_info("Chopin hello", env!("CARGO_PKG_VERSION"))
        .api(
            OpenApiRouter::new()
                .routes(routes!(index))
                .routes(routes!(greet))
                .routes(routes!(echo)),
        )
}
