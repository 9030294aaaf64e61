//! OpenAPI settings (`CHOPIN_OPENAPI`, `CHOPIN_OPENAPI_PATH`, `CHOPIN_DOCS_PATH`).

use super::Environment;
use super::reader::{Reader, parse_bool};

/// OpenAPI settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApiConfig {
    /// `CHOPIN_OPENAPI`: serve the spec and the docs UI (on in development and test, off in
    /// production unless set to `true`).
    pub enabled: bool,
    /// `CHOPIN_OPENAPI_PATH`: where the spec is served (`/openapi.json`).
    pub spec_path: String,
    /// `CHOPIN_DOCS_PATH`: where the interactive UI is served (`/docs`).
    pub ui_path: String,
}

impl OpenApiConfig {
    /// Read `CHOPIN_OPENAPI*` and `CHOPIN_DOCS_PATH`; the spec is on by default outside
    /// production.
    pub(super) fn from_reader(r: &mut Reader<'_>, environment: Environment) -> OpenApiConfig {
        let path = |s: &str| {
            if s.starts_with('/') && !s.contains(['?', '#', ' ']) {
                Ok(s.to_string())
            } else {
                Err("must be a path starting with /".to_string())
            }
        };
        OpenApiConfig {
            enabled: r
                .get("CHOPIN_OPENAPI", parse_bool)
                .unwrap_or(!environment.is_production()),
            spec_path: r
                .get("CHOPIN_OPENAPI_PATH", path)
                .unwrap_or_else(|| "/openapi.json".into()),
            ui_path: r
                .get("CHOPIN_DOCS_PATH", path)
                .unwrap_or_else(|| "/docs".into()),
        }
    }
}
