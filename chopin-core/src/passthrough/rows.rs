//! Building the response envelope from rows of JSON text, without parsing them.

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use super::rewrite::Rewriter;
use crate::error::ChopinError;
use crate::extractors::Pagination;
use crate::json;
use crate::response::{PageMeta, SUCCESS_LIST_PREFIX, SUCCESS_PREFIX};

/// One row's JSON, as the database produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawJson<'a> {
    /// SQL `NULL`: written as JSON `null`.
    Null,
    /// Text of a column whose type guarantees valid JSON (PostgreSQL `json` / `jsonb`). Written
    /// as is unless a rewriter is set.
    Trusted(&'a [u8]),
    /// Text from a plain text column (PostgreSQL `text`, any SQLite column): validated (and
    /// minified) before it is written, so an invalid value can never corrupt the body.
    Untrusted(&'a [u8]),
}

/// How rows become bytes: copied, validated, or rewritten.
#[derive(Debug, Clone, Default)]
pub struct RowEncoder {
    rewriter: Option<Rewriter>,
    trust_text: bool,
}

/// The identity rewriter validates and minifies.
fn validator() -> &'static Rewriter {
    static VALIDATOR: std::sync::OnceLock<Rewriter> = std::sync::OnceLock::new();
    VALIDATOR.get_or_init(Rewriter::new)
}

impl RowEncoder {
    /// Copy trusted rows, validate untrusted ones, no rewriting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewrite every row with `rewriter` (an identity rewriter is ignored for trusted rows).
    pub fn with_rewriter(mut self, rewriter: Rewriter) -> Self {
        self.rewriter = (!rewriter.is_identity()).then_some(rewriter);
        self
    }

    /// Treat text columns as trusted JSON (skip validation). Only for SQL that builds the JSON
    /// itself (for example SQLite's `json_object`), never for stored user text.
    pub fn trust_text(mut self, trust: bool) -> Self {
        self.trust_text = trust;
        self
    }

    /// Append one row's JSON to `out`.
    pub fn write(&self, out: &mut Vec<u8>, row: RawJson<'_>) -> Result<(), ChopinError> {
        let (bytes, trusted) = match row {
            RawJson::Null => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
            RawJson::Trusted(b) => (b, true),
            RawJson::Untrusted(b) => (b, self.trust_text),
        };
        let rewriter = match (&self.rewriter, trusted) {
            (Some(r), _) => r,
            (None, true) => {
                out.extend_from_slice(bytes);
                return Ok(());
            }
            (None, false) => validator(),
        };
        rewriter
            .rewrite_into(bytes, out)
            .map_err(|e| ChopinError::internal(format!("database row is not valid JSON: {e}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    One,
    GraphQl,
}

/// A JSON response whose rows were copied from the database without being parsed: the
/// pass-through responder.
///
/// Build it with [`JsonQuery`](super::JsonQuery) (which runs the query), or from rows you
/// fetched yourself with [`JsonRows::list`] / [`JsonRows::push`]. The body is the standard
/// envelope:
///
/// * list: `{"success":true,"data":[row,row,…]}` (plus `"meta"` when paginated);
/// * one: `{"success":true,"data":row}`;
/// * GraphQL-style: `{"data":{"<field>":[row,…]}}`.
///
/// ```
/// use chopin_core::passthrough::{JsonRows, RawJson};
///
/// let mut rows = JsonRows::list();
/// rows.push(RawJson::Trusted(br#"{"id":1}"#)).unwrap();
/// rows.push(RawJson::Untrusted(br#"{ "id" : 2 }"#)).unwrap(); // validated and minified
/// assert_eq!(rows.body_preview(), br#"{"success":true,"data":[{"id":1},{"id":2}]}"#);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct JsonRows {
    buf: Vec<u8>,
    kind: Kind,
    rows: usize,
    meta: Option<PageMeta>,
    encoder: RowEncoder,
    /// When the query that produced the rows started (for the first-byte metric).
    #[cfg(feature = "metrics")]
    query_started: Option<std::time::Instant>,
}

impl JsonRows {
    fn start(kind: Kind, prefix: &[u8], encoder: RowEncoder, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(prefix.len() + 16));
        buf.extend_from_slice(prefix);
        Self {
            buf,
            kind,
            rows: 0,
            meta: None,
            encoder,
            #[cfg(feature = "metrics")]
            query_started: None,
        }
    }

    /// An empty list envelope.
    pub fn list() -> Self {
        Self::list_with(RowEncoder::new(), 0)
    }

    /// An empty list envelope with an encoder and an initial buffer capacity in bytes.
    pub fn list_with(encoder: RowEncoder, capacity: usize) -> Self {
        Self::start(Kind::List, SUCCESS_LIST_PREFIX, encoder, capacity)
    }

    /// A GraphQL-style envelope `{"data":{"<field>":[…]}}`.
    pub fn graphql(field: &str, encoder: RowEncoder, capacity: usize) -> Self {
        let mut prefix = Vec::with_capacity(field.len() + 16);
        prefix.extend_from_slice(br#"{"data":{"#);
        // Field names are escaped once, here; a `&str` always serialises.
        let _ = json::write_to(&mut prefix, field);
        prefix.extend_from_slice(b":[");
        Self::start(Kind::GraphQl, &prefix, encoder, capacity)
    }

    /// A single-object envelope holding `row`.
    pub fn one(row: RawJson<'_>, encoder: RowEncoder) -> Result<Self, ChopinError> {
        let capacity = match row {
            RawJson::Trusted(b) | RawJson::Untrusted(b) => b.len() + SUCCESS_PREFIX.len() + 1,
            RawJson::Null => SUCCESS_PREFIX.len() + 5,
        };
        let mut rows = Self::start(Kind::One, SUCCESS_PREFIX, encoder, capacity);
        rows.encoder.write(&mut rows.buf, row)?;
        rows.rows = 1;
        Ok(rows)
    }

    /// A single-object envelope whose data is `null`.
    pub fn null() -> Self {
        let mut rows = Self::start(Kind::One, SUCCESS_PREFIX, RowEncoder::new(), 32);
        rows.buf.extend_from_slice(b"null");
        rows
    }

    /// Append a row to a list (or GraphQL) envelope. On error nothing is appended.
    pub fn push(&mut self, row: RawJson<'_>) -> Result<(), ChopinError> {
        if self.kind == Kind::One {
            return Err(ChopinError::internal(
                "JsonRows::push on a single-object envelope",
            ));
        }
        let mark = self.buf.len();
        if self.rows > 0 {
            self.buf.push(b',');
        }
        if let Err(e) = self.encoder.write(&mut self.buf, row) {
            self.buf.truncate(mark);
            return Err(e);
        }
        self.rows += 1;
        Ok(())
    }

    /// Number of rows written.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// `true` when no row was written.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Add pagination metadata (`limit`, `offset`, optional `total`) to a list.
    pub fn paginated(self, pagination: &Pagination, total: Option<u64>) -> Self {
        self.with_meta(PageMeta::new(pagination, total))
    }

    /// Add pagination metadata to a list.
    pub fn with_meta(mut self, meta: PageMeta) -> Self {
        self.meta = Some(meta);
        self
    }

    /// The finished body.
    pub fn into_body(mut self) -> Vec<u8> {
        match self.kind {
            Kind::List => {
                self.buf.push(b']');
                if let Some(meta) = &self.meta {
                    self.buf.extend_from_slice(br#","meta":"#);
                    // PageMeta holds only numbers and an optional string: it always serialises.
                    let _ = json::write_to(&mut self.buf, meta);
                }
                self.buf.push(b'}');
            }
            Kind::One => self.buf.push(b'}'),
            Kind::GraphQl => self.buf.extend_from_slice(b"]}}"),
        }
        self.buf
    }

    /// Mark the start of the query these rows come from: the response then records the
    /// time from it to the body (`chopin_passthrough_first_byte_seconds`).
    #[cfg(feature = "metrics")]
    #[cfg_attr(not(chopin_db), allow(dead_code))] // `JsonQuery` needs a database.
    pub(crate) fn query_started(mut self, at: std::time::Instant) -> Self {
        self.query_started = Some(at);
        self
    }

    /// The body as it would be sent (for tests and examples).
    pub fn body_preview(&self) -> Vec<u8> {
        self.clone().into_body()
    }
}

impl IntoResponse for JsonRows {
    fn into_response(self) -> Response {
        #[cfg(feature = "metrics")]
        let (rows, started) = (self.rows, self.query_started);
        let body = self.into_body();
        #[cfg(feature = "metrics")]
        {
            // The whole body is handed over at once: rows, bytes and the first byte now.
            let metrics = &crate::metrics::global().passthrough;
            metrics.rows.inc_by(rows as u64);
            metrics.bytes.inc_by(body.len() as u64);
            if let Some(started) = started {
                metrics.first_byte.observe(started.elapsed().as_secs_f64());
            }
        }
        let mut response = (StatusCode::OK, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, crate::json::APPLICATION_JSON);
        response
    }
}
