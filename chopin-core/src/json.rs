//! The one JSON engine of Chopin.
//!
//! This module is the only place in Chopin that calls [sonic-rs](https://docs.rs/sonic-rs), a
//! SIMD-accelerated JSON library with a serde-compatible API. Request bodies, response bodies
//! and (later) cached values all go through it, so there is one set of behaviours to learn:
//!
//! * decoding rejects invalid UTF-8, trailing garbage and nesting deeper than [`MAX_DEPTH`]
//!   (64) levels;
//! * syntax errors report line and column; type errors report the path of the offending field.
//!
//! ## CPU features
//!
//! sonic-rs picks its SIMD code paths **at compile time**. On x86-64 its fast path needs the
//! `avx2`, `pclmulqdq` and `sse2` target features; without them it falls back to portable
//! (slower) code. The workspace builds portable binaries by default; opt in on hosts that have
//! those features (any x86-64 CPU since ~2013) with
//! `cargo --config .cargo/x86-64-simd.toml build --release`. On Apple Silicon NEON is always
//! available and `.cargo/config.toml` already targets the M-series. See `docs/performance.md`.

use bytes::Bytes;
use http::HeaderValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Initial capacity of response buffers: large enough for typical small API responses so
/// that most serialisations never reallocate.
pub const DEFAULT_BUFFER_CAPACITY: usize = 256;

/// Deepest nesting of arrays and objects that [`from_slice`] accepts; deeper documents are a
/// [`DecodeError::Syntax`]. Decoding recurses once per level, and in debug builds a level can
/// take over 10 KiB of stack (into `serde_json::Value`), so this limit — not sonic-rs's own 255
/// — is what keeps a hostile document from overflowing a 2 MiB thread stack.
pub const MAX_DEPTH: usize = 64;

/// Serialising a value failed (a `Serialize` impl returned an error, or a map had non-string
/// keys).
#[derive(Debug, thiserror::Error)]
#[error("JSON serialisation failed: {0}")]
pub struct EncodeError(#[from] sonic_rs::Error);

/// Why a JSON document could not be decoded into the requested type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is not valid UTF-8.
    #[error("request body is not valid UTF-8 (invalid byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The input is not syntactically valid JSON (including truncation and excessive depth).
    #[error("{message} at line {line}, column {column}")]
    Syntax {
        /// What is wrong.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The JSON is well-formed but does not match the expected type.
    #[error("{path}: {message}")]
    Data {
        /// Path of the offending field (`author.emails[1]`), or `""` for the document itself.
        path: String,
        /// `"required"` for a missing field, `"invalid_type"` otherwise.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// `application/json`, as a constant: `HeaderValue::from_static` outside a const context
/// re-validates its bytes on every call, and this is on every response.
pub(crate) const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response around `body`. Its header map is sized up front for what the default
/// layers add (request id, `Vary`, the security headers), so it is allocated once instead of
/// growing on the way out.
pub(crate) fn response(status: http::StatusCode, body: Vec<u8>) -> axum::response::Response {
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.reserve(12);
    headers.insert(http::header::CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// Serialise `value` into `buf` (appending).
pub fn write_to<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), EncodeError> {
    sonic_rs::to_writer(buf, value).map_err(EncodeError)
}

/// Serialise `value` into a new buffer pre-sized to [`DEFAULT_BUFFER_CAPACITY`].
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::with_capacity(DEFAULT_BUFFER_CAPACITY);
    write_to(&mut buf, value)?;
    Ok(buf)
}

/// Serialise `value` into [`Bytes`], ready to be a response body.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, EncodeError> {
    to_vec(value).map(Bytes::from)
}

/// Serialise `value` into a `String`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, EncodeError> {
    sonic_rs::to_string(value).map_err(EncodeError)
}

/// Decode a complete JSON document from bytes.
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// struct Point { x: i32, y: i32 }
///
/// let p: Point = chopin_core::json::from_slice(br#"{"x":1,"y":2}"#).unwrap();
/// assert_eq!((p.x, p.y), (1, 2));
///
/// let err = chopin_core::json::from_slice::<Point>(br#"{"x":1,"y":"two"}"#).unwrap_err();
/// assert!(matches!(err, chopin_core::json::DecodeError::Data { ref path, .. } if path == "y"));
/// ```
pub fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, DecodeError> {
    let text = std::str::from_utf8(input).map_err(|e| DecodeError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    check_depth(input)?;
    match decode(text, text, &[]) {
        Ok(value) => Ok(value),
        Err(first) => retry_integral_numbers(text, first),
    }
}

/// Most numbers [`retry_integral_numbers`] writes as integers in one document; past it, the
/// first error stands. Each costs one more decode of the document.
const MAX_INTEGRAL_REWRITES: usize = 8;

/// Most digits [`integral`] writes: `u64::MAX` has 20, `i64::MIN` 19 and a sign. A bound also
/// keeps `1e999999999` from allocating.
const MAX_INTEGER_DIGITS: usize = 20;

/// A failed decode: the error to report, and where sonic-rs detected it.
struct Failure {
    error: DecodeError,
    /// Byte offset of the error in the decoded text (for a type error on a number, its last
    /// byte).
    offset: usize,
    /// The error is `invalid type: floating point …`: a number with a fraction or an exponent
    /// reached a field that refuses floats.
    float_refused: bool,
}

/// A number token that [`retry_integral_numbers`] replaced, in the text it was replaced in.
#[derive(Clone, Copy)]
struct Edit {
    start: usize,
    old_len: usize,
    new_len: usize,
}

/// Decode `text` — `original` with `edits` applied — reporting syntax errors at their place in
/// `original`.
fn decode<T: DeserializeOwned>(text: &str, original: &str, edits: &[Edit]) -> Result<T, Failure> {
    let mut de = sonic_rs::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        failure(err.into_inner(), path, original, edits)
    })?;
    de.end()
        .map_err(|e| failure(e, String::new(), original, edits))?;
    Ok(value)
}

fn failure(err: sonic_rs::Error, path: String, original: &str, edits: &[Edit]) -> Failure {
    let offset = err.offset();
    let error = classify(err, path, original, edits);
    let float_refused = matches!(
        &error,
        DecodeError::Data { code: "invalid_type", message, .. }
            if message.starts_with("invalid type: floating point")
    );
    Failure {
        error,
        offset,
        float_refused,
    }
}

/// After a decode failed with `first`: when it failed because a field that takes no floats got
/// a number with a fraction or an exponent but an integral value (`5.0`, `1e3`), write that one
/// token as an integer and decode again, up to [`MAX_INTEGRAL_REWRITES`] tokens.
///
/// JSON has one number type, and JSON Schema's `integer` is any number without a fractional
/// part: to a client (and to the OpenAPI spec) `5.0` and `5e2` are integers. Only the token the
/// decoder refused is rewritten, so other fields (a `serde_json::Value`'s `10.0`, a float
/// field) get what was sent. The rewrite works on the text, with no float rounding.
///
/// Returns the first error when the refused token is not an integral number, or when the
/// document holds more than [`MAX_INTEGRAL_REWRITES`] of them; when the integer is refused too
/// (a string field, or out of range), the error about the number as it was sent; otherwise
/// the error of the last decode (a real problem further on).
fn retry_integral_numbers<T: DeserializeOwned>(
    original: &str,
    first: Failure,
) -> Result<T, DecodeError> {
    if !first.float_refused {
        return Err(first.error);
    }
    let mut text = original.to_owned();
    let mut edits: Vec<Edit> = Vec::new();
    // The error of the latest decode, and the offset of the token it refused.
    let (mut error, mut at) = (first.error.clone(), first.offset);
    while edits.len() < MAX_INTEGRAL_REWRITES {
        let Some(edit) = rewrite_integral_at(&mut text, at) else {
            return Err(error);
        };
        edits.push(edit);
        match decode(&text, original, &edits) {
            Ok(value) => return Ok(value),
            // The integer is refused too: report the number as it was sent.
            Err(next) if (edit.start..edit.start + edit.new_len).contains(&next.offset) => {
                return Err(error);
            }
            Err(next) if next.float_refused => (error, at) = (next.error, next.offset),
            Err(next) => return Err(next.error),
        }
    }
    Err(first.error)
}

/// Replace the number token around byte `at` of `text` by its integer form, if it is an
/// integral number written with a fraction or an exponent.
fn rewrite_integral_at(text: &mut String, at: usize) -> Option<Edit> {
    let bytes = text.as_bytes();
    let in_number = |b: &u8| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-');
    if !bytes.get(at).is_some_and(in_number) {
        return None;
    }
    let start = bytes[..at]
        .iter()
        .rposition(|b| !in_number(b))
        .map_or(0, |p| p + 1);
    let end = bytes[at..]
        .iter()
        .position(|b| !in_number(b))
        .map_or(bytes.len(), |p| at + p);
    let integer = integral(&text[start..end])?;
    text.replace_range(start..end, &integer);
    Some(Edit {
        start,
        old_len: end - start,
        new_len: integer.len(),
    })
}

/// The integer a JSON number token with a fraction or an exponent stands for, if it is one
/// and has at most [`MAX_INTEGER_DIGITS`] digits.
fn integral(token: &str) -> Option<String> {
    let (negative, unsigned) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    if fraction.is_none() && exponent.is_none() {
        return None; // already an integer
    }
    let valid_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !valid_digits(whole) || fraction.is_some_and(|f| !valid_digits(f)) {
        return None;
    }
    let fraction = fraction.unwrap_or("");
    let shift: i64 = match exponent {
        Some(e) => {
            let e = e.strip_prefix('+').unwrap_or(e);
            if !valid_digits(e.strip_prefix('-').unwrap_or(e)) {
                return None;
            }
            e.parse().ok()?
        }
        None => 0,
    };
    // The digits without leading zeros, and where the decimal point falls among them.
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some("0".into()); // 0.0, -0.0, 0e5
    }
    let leading_zeros = i64::try_from(digits.len() - significant.len()).ok()?;
    let point = i64::try_from(whole.len())
        .ok()?
        .checked_add(shift)?
        .checked_sub(leading_zeros)?;
    let point = usize::try_from(point).ok().filter(|&p| p > 0)?; // else 0 < |value| < 1
    if point > MAX_INTEGER_DIGITS {
        return None;
    }
    let sign = if negative { "-" } else { "" };
    if point >= significant.len() {
        Some(format!(
            "{sign}{significant}{}",
            "0".repeat(point - significant.len())
        ))
    } else if significant[point..].bytes().all(|b| b == b'0') {
        Some(format!("{sign}{}", &significant[..point]))
    } else {
        None
    }
}

/// `offset` in the text `edits` produced, as an offset in the text before them (an offset
/// inside a replaced token maps to the token's start).
fn offset_before_edits(mut offset: usize, edits: &[Edit]) -> usize {
    for edit in edits.iter().rev() {
        if offset >= edit.start + edit.new_len {
            offset = offset - edit.new_len + edit.old_len;
        } else if offset > edit.start {
            offset = edit.start;
        }
    }
    offset
}

/// Reject documents nesting arrays and objects deeper than [`MAX_DEPTH`], before any recursion.
fn check_depth(input: &[u8]) -> Result<(), DecodeError> {
    // Fast path: a document with no more opening brackets than the limit cannot exceed it.
    if input.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_DEPTH {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in input.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let (line, column) = line_and_column(input, i);
                    return Err(DecodeError::Syntax {
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                        line,
                        column,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The 1-based line and byte column of byte `offset` of `input`.
fn line_and_column(input: &[u8], offset: usize) -> (usize, usize) {
    let before = &input[..offset.min(input.len())];
    let line_start = before
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1);
    (
        1 + before.iter().filter(|&&c| c == b'\n').count(),
        before.len() - line_start + 1,
    )
}

/// Decode a complete JSON document from a string.
pub fn from_str<T: DeserializeOwned>(input: &str) -> Result<T, DecodeError> {
    from_slice(input.as_bytes())
}

fn classify(err: sonic_rs::Error, path: String, original: &str, edits: &[Edit]) -> DecodeError {
    let (line, column) = if edits.is_empty() {
        (err.line(), err.column())
    } else {
        // sonic-rs counts in the rewritten text; count in the one the client sent.
        line_and_column(
            original.as_bytes(),
            offset_before_edits(err.offset(), edits),
        )
    };
    let full = err.to_string();
    // sonic-rs appends " at line L column C" and an excerpt of the input; keep the description.
    let message = match full.find(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    if !err.is_unmatched_type() {
        return DecodeError::Syntax {
            message,
            line: line.max(1),
            column: column.max(1),
        };
    }
    let path = if path == "." { String::new() } else { path };
    // serde reports a missing field at the parent's path; point at the field itself.
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(name) = rest.strip_suffix('`')
    {
        let field = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return DecodeError::Data {
            path: field,
            code: "required",
            message: "is required".into(),
        };
    }
    DecodeError::Data {
        path,
        code: "invalid_type",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_tokens() {
        for (token, integer) in [
            ("5.0", Some("5")),
            ("-57083.000", Some("-57083")),
            ("0.0", Some("0")),
            ("-0.0", Some("0")),
            ("0e5", Some("0")),
            ("1e3", Some("1000")),
            ("1E+3", Some("1000")),
            ("-2.50e1", Some("-25")),
            ("2500e-2", Some("25")),
            ("0.05e2", Some("5")),
            ("9007199254740993.0", Some("9007199254740993")),
            ("1e19", Some("10000000000000000000")),
            ("18446744073709551615.0", Some("18446744073709551615")),
            ("-9223372036854775808.0", Some("-9223372036854775808")),
            ("1e20", None),
            ("123456789012345678901.0", None),
            ("0.5", None),
            ("1e-1", None),
            ("0.05e1", None),
            ("5", None),
            ("1e999999999", None),
            ("1e-999999999999999999999", None),
            ("1.", None),
            ("--1.0", None),
            ("1e--1", None),
        ] {
            assert_eq!(integral(token).as_deref(), integer, "{token}");
        }
    }

    #[test]
    fn only_the_token_at_the_offset_is_rewritten() {
        let mut text = String::from(r#"{"a":5.0,"b":1e2}"#);
        // Offset 7 is the last byte of `5.0`.
        let edit = rewrite_integral_at(&mut text, 7).map(|e| (e.start, e.old_len, e.new_len));
        assert_eq!(edit, Some((5, 3, 1)));
        assert_eq!(text, r#"{"a":5,"b":1e2}"#);
        // Not a number, or not integral: nothing changes.
        assert!(rewrite_integral_at(&mut text, 0).is_none());
        let mut fraction = String::from(r#"{"a":0.5}"#);
        assert!(rewrite_integral_at(&mut fraction, 7).is_none());
        assert_eq!(fraction, r#"{"a":0.5}"#);
    }

    #[test]
    fn offsets_map_back_through_edits() {
        // `1e3` (3 bytes) became `1000` at 5, then `2.0` (3 bytes) became `2` at 15.
        let edits = [
            Edit {
                start: 5,
                old_len: 3,
                new_len: 4,
            },
            Edit {
                start: 15,
                old_len: 3,
                new_len: 1,
            },
        ];
        assert_eq!(offset_before_edits(2, &edits), 2);
        assert_eq!(offset_before_edits(7, &edits), 5);
        assert_eq!(offset_before_edits(10, &edits), 9);
        assert_eq!(offset_before_edits(16, &edits), 17);
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Seats {
        seats: i32,
        ratio: f64,
        label: String,
    }

    #[test]
    fn an_integral_number_decodes_into_an_integer() {
        let s: Seats = from_slice(br#"{"seats": 203389.0, "ratio": 1.0, "label": "7.0"}"#).unwrap();
        assert_eq!(
            s,
            Seats {
                seats: 203389,
                ratio: 1.0,
                label: "7.0".into()
            }
        );
        let s: Seats = from_slice(br#"{"seats": 2e3, "ratio": 0.5, "label": ""}"#).unwrap();
        assert_eq!(s.seats, 2000);
        // A real fraction is still refused, with the first error's path.
        let err = from_slice::<Seats>(br#"{"seats": 1.5, "ratio": 1, "label": ""}"#).unwrap_err();
        assert!(
            matches!(err, DecodeError::Data { ref path, code: "invalid_type", .. } if path == "seats"),
            "{err:?}"
        );
        // Out of range stays out of range.
        assert!(from_slice::<Seats>(br#"{"seats": 3e9, "ratio": 1, "label": ""}"#).is_err());
    }
}
