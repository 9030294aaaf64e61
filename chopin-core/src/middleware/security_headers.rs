//! Security response headers: `nosniff`, no framing, no referrer, a locked-down CSP on JSON,
//! HSTS when asked.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use http::header::{self, HeaderName};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// Adds security headers to every response that does not set them itself:
///
/// * `X-Content-Type-Options: nosniff` — browsers must not guess a content type;
/// * `X-Frame-Options: DENY` — no framing (clickjacking);
/// * `Referrer-Policy: no-referrer`;
/// * `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` on JSON responses
///   (a JSON API needs no scripts, styles or frames; the HTML docs UI is left alone);
/// * `Strict-Transport-Security: max-age=31536000; includeSubDomains` when `hsts` is on
///   (production by default: only ever send it from an HTTPS origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityHeadersLayer {
    hsts: bool,
    enabled: bool,
}

impl SecurityHeadersLayer {
    /// The layer, with or without HSTS.
    pub fn new(hsts: bool) -> Self {
        Self {
            hsts,
            enabled: true,
        }
    }

    /// Switched on or off (off: responses pass unchanged).
    pub fn enabled(self, enabled: bool) -> Self {
        Self { enabled, ..self }
    }

    /// `Some(hsts)` when the layer is on, `None` when it is off.
    pub(super) fn hsts_if_enabled(&self) -> Option<bool> {
        self.enabled.then_some(self.hsts)
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeadersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeadersService {
            inner,
            hsts: self.hsts,
            enabled: self.enabled,
        }
    }
}

/// Service of [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeadersService<S> {
    inner: S,
    hsts: bool,
    enabled: bool,
}

impl<S, B, ResBody> Service<http::Request<B>> for SecurityHeadersService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = SecurityHeadersFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        SecurityHeadersFuture {
            inner: self.inner.call(req),
            hsts: self.hsts,
            enabled: self.enabled,
        }
    }
}

pin_project! {
    /// Future of [`SecurityHeadersService`].
    pub struct SecurityHeadersFuture<F> {
        #[pin]
        inner: F,
        hsts: bool,
        enabled: bool,
    }
}

impl<F, ResBody, E> Future for SecurityHeadersFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if !*this.enabled {
            return Poll::Ready(Ok(response));
        }
        add_security_headers(response.headers_mut(), *this.hsts);
        Poll::Ready(Ok(response))
    }
}

/// The headers, in the order they are written. Built once, at compile time
/// (`HeaderValue::from_static` outside a const context validates every byte per call), and a
/// `static`, not a `const`: each use of a `const` array materialises a copy of it. The names
/// are standard headers, which compare as one byte; the values clone without allocating.
static TEMPLATE: [(HeaderName, HeaderValue); 5] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    (
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    ),
];
const CSP: usize = 3;
const HSTS: usize = 4;

/// Add the template's headers that `headers` does not have. One pass over the response's few
/// headers finds the content type and the security headers a handler set itself; then each
/// missing one is appended (one hash and one probe each) instead of looked up and then inserted.
pub(super) fn add_security_headers(headers: &mut http::HeaderMap, hsts: bool) {
    let mut present = [false; 5];
    let mut is_json = false;
    for (name, value) in headers.iter() {
        if name == header::CONTENT_TYPE {
            is_json = value.as_bytes().starts_with(b"application/json");
        } else if let Some(i) = TEMPLATE.iter().position(|(n, _)| n == name) {
            present[i] = true;
        }
    }
    present[CSP] |= !is_json;
    present[HSTS] |= !hsts;
    let missing = present.iter().filter(|p| !**p).count();
    headers.reserve(missing);
    for ((name, value), present) in TEMPLATE.iter().zip(present) {
        if !present {
            headers.append(name.clone(), value.clone());
        }
    }
}
