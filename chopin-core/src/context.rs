//! Per-request context: the request id, the W3C trace context, and whether internal error
//! details may be shown.
//!
//! The request-id layer ([`crate::layers::RequestIdLayer`]) runs the rest of the request inside
//! a task-local scope, so that any [`ChopinError`](crate::ChopinError) rendered while the request
//! is being handled — by a handler, an extractor or a layer such as catch-panic — carries the
//! request's id (and its log line the trace id) without threading it through every function.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::HeaderValue;
use http::request::Parts;

use crate::error::ChopinError;

/// The id of the current request, also available to handlers as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub(crate) HeaderValue);

impl RequestId {
    /// The id as text (always visible ASCII: Chopin sanitises incoming ids).
    pub fn as_str(&self) -> &str {
        // Ids are generated or sanitised to visible ASCII, so this never fails.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A W3C trace id: 16 bytes, never all zero, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

impl TraceId {
    /// The id as a number (big-endian: the first hex digit is the most significant).
    pub fn to_u128(self) -> u128 {
        self.0
    }

    /// The id's 16 bytes, in the order they are written.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A W3C span (parent) id: 8 bytes, never all zero, written as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(u64);

impl SpanId {
    /// The id as a number (big-endian: the first hex digit is the most significant).
    pub fn to_u64(self) -> u64 {
        self.0
    }

    /// The id's 8 bytes, in the order they are written.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl std::fmt::Display for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The `traceparent` request header of W3C Trace Context.
pub static TRACEPARENT: http::header::HeaderName =
    http::header::HeaderName::from_static("traceparent");

/// The `sampled` bit of the trace flags.
const FLAG_SAMPLED: u8 = 0x01;

/// The W3C trace context of the current request. Handlers take it as an extractor
/// (`trace: TraceContext`, or `Option<TraceContext>` when the request-id layer may be off).
///
/// It lives in Chopin's per-request context (the task-local the request-id layer sets), not in
/// the request's extensions: an extension would cost an allocation, a map insert and a free on
/// every request, for a value few handlers read. Without the request-id layer there is none:
/// `TraceContext` then rejects with a 500 `INTERNAL` envelope and `Option<TraceContext>` is
/// `None`.
///
/// The request-id layer makes it: from a valid incoming `traceparent` header (the request joins
/// the caller's trace: same trace id, the caller's span as parent, the caller's sampled flag),
/// or, when the header is absent or malformed, as the root of a new trace (random trace id,
/// sampled). Either way this server's part of the request gets a new random [`span_id`]
/// (with feature `otel`, the id of the exported `request` span).
///
/// To carry the trace on to another service, send [`traceparent`](TraceContext::traceparent)
/// as that call's `traceparent` header.
///
/// [`span_id`]: TraceContext::span_id
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    flags: u8,
}

impl TraceContext {
    /// The context for a request carrying `traceparent` (the header's value), or the root of
    /// a new trace when it is `None` or not a valid W3C `traceparent`.
    pub fn from_traceparent(traceparent: Option<&[u8]>) -> Self {
        Self::with_ids(traceparent, &Ids::random())
    }

    /// [`TraceContext::from_traceparent`], with its random ids taken from `ids`.
    pub(crate) fn with_ids(traceparent: Option<&[u8]>, ids: &Ids) -> Self {
        match traceparent.and_then(parse_traceparent) {
            Some(parent) => TraceContext {
                trace_id: parent.trace_id,
                span_id: ids.span_id(),
                parent_span_id: Some(parent.span_id),
                flags: parent.flags & FLAG_SAMPLED,
            },
            None => TraceContext {
                trace_id: ids.trace_id(),
                span_id: ids.span_id(),
                parent_span_id: None,
                flags: FLAG_SAMPLED,
            },
        }
    }

    /// The trace this request belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This server's span for the request: the parent id to send on to other services.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The caller's span (the incoming `traceparent`'s parent id), `None` for a new trace.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.parent_span_id
    }

    /// Whether the caller asked for this trace to be recorded (always `true` for a new trace).
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The trace flags (version 00 defines only `sampled`, `0x01`; Chopin keeps only that one).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The `traceparent` to send on calls made while handling this request
    /// (`00-<trace id>-<this span id>-<flags>`).
    pub fn traceparent(&self) -> http::HeaderValue {
        let text = format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags);
        // Hex digits and dashes only: always a valid header value.
        http::HeaderValue::from_str(&text).unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }
}

/// The random ids of one request, drawn from the thread's generator in one call: 128 bits for
/// a new request id (a UUID v4 keeps 122 of them), 128 for a new trace id, 64 for the span id.
/// The generator is rand's `ThreadRng` (ChaCha seeded by the operating system), the one `uuid`'s
/// `fast-rng` feature uses; one draw instead of two (request id, then trace context) saves a
/// second trip through the thread-local generator. The three ids stay independent.
pub(crate) struct Ids([u64; 5]);

impl Ids {
    /// Five fresh words.
    pub(crate) fn random() -> Self {
        Ids(rand::random())
    }

    /// A new request id: a UUID v4 (version and variant bits set, as RFC 9562 asks) made of
    /// the first 128 bits.
    pub(crate) fn request_id(&self) -> uuid::Uuid {
        let bits = (u128::from(self.0[0]) << 64) | u128::from(self.0[1]);
        uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
    }

    /// A trace id, never zero (zero is invalid; the chance of drawing it is 2^-128).
    fn trace_id(&self) -> TraceId {
        let id = (u128::from(self.0[2]) << 64) | u128::from(self.0[3]);
        TraceId(id.max(1))
    }

    /// A span id, never zero.
    fn span_id(&self) -> SpanId {
        SpanId(self.0[4].max(1))
    }
}

/// The fields of a valid `traceparent`.
#[derive(Debug, PartialEq, Eq)]
struct Parent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
}

/// Parse a `traceparent` value by W3C Trace Context (level 1, section 3.2):
/// `version "-" trace-id "-" parent-id "-" trace-flags`, lowercase hex only. Version `ff` is
/// invalid; version 00 is exactly 55 characters; a later version may be longer if the next
/// character is a `-` (its extra fields are ignored). All-zero trace or parent ids are invalid.
fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    if value.len() < 55 {
        return None;
    }
    let version = hex_lower(&value[0..2])?;
    let length_ok = match version {
        0xff => false,
        0x00 => value.len() == 55,
        _ => value.len() == 55 || value[55] == b'-',
    };
    if !length_ok || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = hex_lower(&value[3..35])?;
    let span_id = u64::try_from(hex_lower(&value[36..52])?).ok()?;
    let flags = u8::try_from(hex_lower(&value[53..55])?).ok()?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id: TraceId(trace_id),
        span_id: SpanId(span_id),
        flags,
    })
}

/// The value of up to 32 lowercase hex digits; `None` for any other character.
fn hex_lower(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u128::from(digit))
    })
}

/// What an error rendered during a request needs to know about that request.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    pub(crate) id: RequestId,
    pub(crate) trace: TraceContext,
    pub(crate) expose_internal_errors: bool,
}

impl RequestContext {
    pub(crate) fn id(&self) -> &str {
        self.id.as_str()
    }
}

tokio::task_local! {
    pub(crate) static REQUEST_CONTEXT: RequestContext;
}

/// The context of the request being handled on this task, if any.
pub(crate) fn current() -> Option<RequestContext> {
    REQUEST_CONTEXT.try_with(Clone::clone).ok()
}

/// The trace id of the request being handled on this task, if any.
pub(crate) fn current_trace_id() -> Option<TraceId> {
    REQUEST_CONTEXT.try_with(|c| c.trace.trace_id).ok()
}

/// The trace context of the request being handled on this task, if any.
pub(crate) fn current_trace() -> Option<TraceContext> {
    REQUEST_CONTEXT.try_with(|c| c.trace).ok()
}

impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = ChopinError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        current_trace().ok_or_else(|| {
            ChopinError::internal("no trace context: Chopin's request-id layer is off")
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for TraceContext {
    type Rejection = Infallible;

    async fn from_request_parts(
        _parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(current_trace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn valid() -> String {
        format!("00-{TRACE}-{PARENT}-01")
    }

    #[test]
    fn a_valid_traceparent_is_joined() {
        let ctx = TraceContext::from_traceparent(Some(valid().as_bytes()));
        assert_eq!(ctx.trace_id().to_string(), TRACE);
        assert_eq!(
            ctx.parent_span_id().map(|p| p.to_string()).as_deref(),
            Some(PARENT)
        );
        assert_ne!(ctx.span_id().to_string(), PARENT);
        assert_ne!(ctx.span_id().to_u64(), 0);
        assert!(ctx.sampled());
        assert_eq!(
            ctx.traceparent().to_str().unwrap(),
            format!("00-{TRACE}-{}-01", ctx.span_id())
        );
        assert_eq!(ctx.trace_id().to_bytes()[0], 0x4b);
        assert_eq!(ctx.trace_id().to_u128() & 0xff, 0x36);
    }

    #[test]
    fn the_sampled_flag_is_kept_and_other_flags_dropped() {
        let unsampled =
            TraceContext::from_traceparent(Some(format!("00-{TRACE}-{PARENT}-00").as_bytes()));
        assert_eq!(unsampled.trace_id().to_string(), TRACE);
        assert!(!unsampled.sampled());
        assert!(unsampled.traceparent().to_str().unwrap().ends_with("-00"));
        let extra =
            TraceContext::from_traceparent(Some(format!("00-{TRACE}-{PARENT}-ff").as_bytes()));
        assert_eq!(extra.trace_id().to_string(), TRACE);
        assert!(extra.sampled());
        assert_eq!(extra.flags(), 0x01);
    }

    #[test]
    fn later_versions_are_parsed_by_their_first_fields() {
        for header in [
            format!("01-{TRACE}-{PARENT}-01"),
            format!("cc-{TRACE}-{PARENT}-01-what-the-future-holds"),
        ] {
            let parsed = parse_traceparent(header.as_bytes());
            assert_eq!(
                parsed.map(|p| p.trace_id.to_string()).as_deref(),
                Some(TRACE),
                "{header}"
            );
        }
    }

    #[test]
    fn every_invalid_form_starts_a_new_trace() {
        let zero_trace = "0".repeat(32);
        let zero_parent = "0".repeat(16);
        let upper = TRACE.to_uppercase();
        let invalid = [
            String::new(),
            "garbage".to_string(),
            // Version ff is forbidden; a version must be two lowercase hex digits.
            format!("ff-{TRACE}-{PARENT}-01"),
            format!("0g-{TRACE}-{PARENT}-01"),
            format!("0-{TRACE}-{PARENT}-01"),
            // Version 00 is exactly 55 characters.
            format!("00-{TRACE}-{PARENT}-01-extra"),
            format!("00-{TRACE}-{PARENT}-01 "),
            format!("00-{TRACE}-{PARENT}-1"),
            // A later version that is longer must go on with a dash.
            format!("01-{TRACE}-{PARENT}-01x"),
            // All-zero ids.
            format!("00-{zero_trace}-{PARENT}-01"),
            format!("00-{TRACE}-{zero_parent}-01"),
            // Uppercase and non-hex digits, short and long fields.
            format!("00-{upper}-{PARENT}-01"),
            format!("00-{TRACE}-00F067AA0BA902B7-01"),
            format!("00-{TRACE}-{PARENT}-0A"),
            format!("00-4bf92f3577b34da6a3ce929d0e0e473z-{PARENT}-01"),
            format!("00-{TRACE}-{PARENT}-0x"),
            format!("00-{TRACE}0-{}-01", &PARENT[1..]),
            format!("00-{}-{PARENT}0-01", &TRACE[1..]),
            // Wrong separators.
            format!("00_{TRACE}-{PARENT}-01"),
            format!("00-{TRACE}_{PARENT}-01"),
            format!("00-{TRACE}-{PARENT}_01"),
        ];
        for header in &invalid {
            assert_eq!(parse_traceparent(header.as_bytes()), None, "{header:?}");
            let ctx = TraceContext::from_traceparent(Some(header.as_bytes()));
            assert_eq!(ctx.parent_span_id(), None, "{header:?}");
            assert_ne!(ctx.trace_id().to_string(), TRACE, "{header:?}");
            assert!(ctx.sampled());
        }
    }

    #[test]
    fn one_draw_makes_a_uuid_v4_request_id_and_a_trace() {
        let ids = Ids::random();
        let id = ids.request_id();
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let trace = TraceContext::with_ids(None, &ids);
        assert_ne!(trace.trace_id().to_u128(), 0);
        assert_ne!(trace.span_id().to_u64(), 0);
        assert_ne!(Ids::random().request_id(), id);
    }

    #[test]
    fn new_traces_have_fresh_valid_ids() {
        let a = TraceContext::from_traceparent(None);
        let b = TraceContext::from_traceparent(None);
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), b.span_id());
        assert_ne!(a.trace_id().to_u128(), 0);
        assert_ne!(a.span_id().to_u64(), 0);
        assert_eq!(a.parent_span_id(), None);
        let header = a.traceparent();
        let text = header.to_str().unwrap();
        assert_eq!(text.len(), 55);
        let reparsed = parse_traceparent(text.as_bytes()).expect("own traceparent parses");
        assert_eq!(reparsed.trace_id, a.trace_id());
        assert_eq!(reparsed.span_id, a.span_id());
        assert_eq!(reparsed.flags, 1);
    }
}
