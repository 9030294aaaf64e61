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
    match decode(text) {
        Err(DecodeError::Data {
            code: "invalid_type",
            ref message,
            ..
        }) if message.starts_with("invalid type: floating point") => {
            // JSON has one number type, and JSON Schema's `integer` is any number without a
            // fractional part: to a client (and to the OpenAPI spec) `5.0` and `5e2` are
            // integers. Only on this failure, write integral numbers as integers and decode
            // again; anything else keeps the first error.
            match integral_numbers_as_integers(text) {
                Some(rewritten) => decode(&rewritten),
                None => decode(text),
            }
        }
        other => other,
    }
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    let mut de = sonic_rs::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        classify(err.into_inner(), path)
    })?;
    de.end().map_err(|e| classify(e, String::new()))?;
    Ok(value)
}

/// Largest exponent written out by [`integral_numbers_as_integers`]: no integer type holds
/// more digits, and a bound keeps `1e999999999` from allocating.
const MAX_WRITTEN_EXPONENT: usize = 40;

/// `text` with every number outside strings that has a fraction or an exponent but an
/// integral value (`5.0`, `-2.50e1`, `1E+3`) written as an integer (`5`, `-25`, `1000`), or
/// `None` when there is none. Works on the text (no float rounding): `9007199254740993.0`
/// becomes `9007199254740993`.
fn integral_numbers_as_integers(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut changed, mut i) = (0, false, 0);
    let (mut in_string, mut escaped) = (false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b != b'-' && !b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
        {
            i += 1;
        }
        if let Some(integer) = integral(&text[start..i]) {
            out.push_str(&text[copied..start]);
            out.push_str(&integer);
            copied = i;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The integer a JSON number token with a fraction or an exponent stands for, if it is one.
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
            if !valid_digits(e.trim_start_matches('-')) {
                return None;
            }
            e.parse().ok()?
        }
        None => 0,
    };
    // The digits, and where the decimal point falls among them.
    let digits = format!("{whole}{fraction}");
    let point = i64::try_from(whole.len()).ok()?.checked_add(shift)?;
    let integer = if point <= 0 {
        if digits.bytes().any(|b| b != b'0') {
            return None;
        }
        String::from("0")
    } else {
        let point = usize::try_from(point).ok()?;
        if point > digits.len() {
            if point - digits.len() > MAX_WRITTEN_EXPONENT {
                return None;
            }
            format!("{digits}{}", "0".repeat(point - digits.len()))
        } else if digits[point..].bytes().all(|b| b == b'0') {
            digits[..point].to_string()
        } else {
            return None;
        }
    };
    let integer = integer.trim_start_matches('0');
    Some(match (integer.is_empty(), negative) {
        (true, _) => "0".to_string(),
        (false, true) => format!("-{integer}"),
        (false, false) => integer.to_string(),
    })
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
                    let before = &input[..i];
                    let line_start = before
                        .iter()
                        .rposition(|&c| c == b'\n')
                        .map_or(0, |p| p + 1);
                    return Err(DecodeError::Syntax {
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                        line: 1 + before.iter().filter(|&&c| c == b'\n').count(),
                        column: i - line_start + 1,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Decode a complete JSON document from a string.
pub fn from_str<T: DeserializeOwned>(input: &str) -> Result<T, DecodeError> {
    from_slice(input.as_bytes())
}

fn classify(err: sonic_rs::Error, path: String) -> DecodeError {
    let line = err.line();
    let column = err.column();
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

impl From<DecodeError> for crate::ChopinError {
    fn from(err: DecodeError) -> Self {
        match err {
            DecodeError::InvalidUtf8 { offset } => crate::ChopinError::MalformedJson {
                message: format!("invalid UTF-8 at byte offset {offset}"),
                line: 1,
                column: 1,
            },
            DecodeError::Syntax {
                message,
                line,
                column,
            } => crate::ChopinError::MalformedJson {
                message,
                line,
                column,
            },
            DecodeError::Data {
                path,
                code,
                message,
            } => crate::ChopinError::invalid_field(
                if path.is_empty() { "$".into() } else { path },
                code,
                message,
            ),
        }
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
            ("1e3", Some("1000")),
            ("1E+3", Some("1000")),
            ("-2.50e1", Some("-25")),
            ("2500e-2", Some("25")),
            ("9007199254740993.0", Some("9007199254740993")),
            ("0.5", None),
            ("1e-1", None),
            ("5", None),
            ("1e999999999", None),
            ("1.", None),
            ("--1.0", None),
        ] {
            assert_eq!(integral(token).as_deref(), integer, "{token}");
        }
    }

    #[test]
    fn only_numbers_outside_strings_are_rewritten() {
        assert_eq!(
            integral_numbers_as_integers(r#"{"a":5.0,"b":"5.0","c\"":[1e2,0.5,-3]}"#).as_deref(),
            Some(r#"{"a":5,"b":"5.0","c\"":[100,0.5,-3]}"#)
        );
        assert_eq!(integral_numbers_as_integers(r#"{"a":5,"b":0.5}"#), None);
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
