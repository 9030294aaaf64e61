//! Entity tags (RFC 9110 §8.8.3): [`EntityTag`], the tag of a body, and matching a request's
//! `If-None-Match` list against a current tag.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use axum::response::{IntoResponseParts, ResponseParts};
use http::HeaderValue;
use http::header;

/// An HTTP entity tag (RFC 9110 §8.8.3): an opaque validator, strong (`"abc"`) or weak
/// (`W/"abc"`).
///
/// ```
/// use chopin_core::cache::http::EntityTag;
///
/// let tag = EntityTag::from_body(b"hello");
/// assert!(!tag.is_weak());
/// assert_eq!(tag.to_string().len(), 34); // "<32 hex digits>"
///
/// let weak: EntityTag = r#"W/"v1""#.parse().unwrap();
/// assert!(weak.weak_eq(&EntityTag::strong("v1").unwrap()));
/// assert!(!weak.strong_eq(&EntityTag::strong("v1").unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityTag {
    pub(super) weak: bool,
    pub(super) opaque: String,
}

/// A string that is not a valid entity tag (or opaque tag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid entity tag: {0:?}")]
pub struct InvalidEntityTag(String);

/// `etagc = %x21 / %x23-7E / obs-text` (RFC 9110 §8.8.3).
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

impl EntityTag {
    /// A strong tag with the opaque value `opaque` (written without the quotes). Fails when
    /// `opaque` contains a `"`, a space or a control character.
    pub fn strong(opaque: impl Into<String>) -> Result<Self, InvalidEntityTag> {
        Self::new(false, opaque.into())
    }

    /// A weak tag (`W/"…"`) with the opaque value `opaque`.
    pub fn weak(opaque: impl Into<String>) -> Result<Self, InvalidEntityTag> {
        Self::new(true, opaque.into())
    }

    fn new(weak: bool, opaque: String) -> Result<Self, InvalidEntityTag> {
        if opaque.bytes().all(is_etagc) {
            Ok(Self { weak, opaque })
        } else {
            Err(InvalidEntityTag(opaque))
        }
    }

    /// The strong tag [`ETagLayer`] gives a body: the xxh3-128 hash of its bytes as 32
    /// lower-case hex digits. Equal bodies always get equal tags, across processes and
    /// versions of Chopin built on the same hash.
    ///
    /// [`ETagLayer`]: crate::cache::http::ETagLayer
    pub fn from_body(body: &[u8]) -> Self {
        let quoted = body_etag(body);
        // 32 hex digits between the quotes: always ASCII.
        let opaque = String::from_utf8_lossy(&quoted[1..quoted.len() - 1]).into_owned();
        Self {
            weak: false,
            opaque,
        }
    }

    /// `true` for a weak tag (`W/"…"`).
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// The opaque value, without quotes or `W/`.
    pub fn opaque(&self) -> &str {
        &self.opaque
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): both strong and the same opaque value.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the same opaque value, whatever the weakness. This
    /// is the comparison `If-None-Match` uses.
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }

    /// The tag as an `ETag` header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // Every byte was checked to be `etagc`, which are all valid header-value bytes.
        HeaderValue::from_str(&self.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

impl fmt::Display for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", self.opaque)
    }
}

impl FromStr for EntityTag {
    type Err = InvalidEntityTag;

    /// Parse `"abc"` or `W/"abc"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut tags = Vec::with_capacity(1);
        match parse_tag_list(s.trim().as_bytes(), |weak, opaque| {
            tags.push((weak, opaque.to_vec()))
        }) {
            Ok(ListKind::Tags) if tags.len() == 1 => {
                let (weak, opaque) = tags.remove(0);
                let opaque = String::from_utf8(opaque).map_err(|_| InvalidEntityTag(s.into()))?;
                Ok(Self { weak, opaque })
            }
            _ => Err(InvalidEntityTag(s.into())),
        }
    }
}

impl IntoResponseParts for EntityTag {
    type Error = Infallible;

    /// Sets the `ETag` header.
    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.headers_mut()
            .insert(header::ETAG, self.to_header_value());
        Ok(res)
    }
}

/// The quoted strong tag of `body`: `"` + 32 hex digits + `"`.
pub(crate) fn body_etag(body: &[u8]) -> [u8; 34] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = xxhash_rust::xxh3::xxh3_128(body).to_be_bytes();
    let mut out = [b'"'; 34];
    for (i, byte) in hash.iter().enumerate() {
        out[1 + 2 * i] = HEX[usize::from(byte >> 4)];
        out[2 + 2 * i] = HEX[usize::from(byte & 0x0f)];
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListKind {
    /// `*`
    Any,
    /// A list of entity tags (possibly empty).
    Tags,
}

/// Parse an `If-None-Match` / `If-Match` field value: `*` or `#entity-tag` (RFC 9110 §13.1.2),
/// calling `each(weak, opaque)` for every tag. Empty list elements are allowed (RFC 9110
/// §5.6.1). `Err` on anything malformed.
pub(super) fn parse_tag_list(
    value: &[u8],
    mut each: impl FnMut(bool, &[u8]),
) -> Result<ListKind, ()> {
    let trimmed = value.trim_ascii();
    if trimmed == b"*" {
        return Ok(ListKind::Any);
    }
    let mut rest = trimmed;
    loop {
        // Skip separators and optional whitespace between elements.
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return Ok(ListKind::Tags);
        }
        let weak = match rest {
            [b'W', b'/', tail @ ..] => {
                rest = tail;
                true
            }
            _ => false,
        };
        let [b'"', tail @ ..] = rest else {
            return Err(());
        };
        let end = tail.iter().position(|&b| b == b'"').ok_or(())?;
        let opaque = &tail[..end];
        if !opaque.iter().all(|&b| is_etagc(b)) {
            return Err(());
        }
        each(weak, opaque);
        rest = &tail[end + 1..];
        // After a tag: whitespace, then a comma or the end.
        let after = rest.trim_ascii_start();
        if !(after.is_empty() || after[0] == b',') {
            return Err(());
        }
        rest = after;
    }
}

/// Does an `If-None-Match` condition (all its field lines) match the current representation
/// whose tag's opaque value is `opaque`? Weak comparison; `*` matches any current
/// representation. `None` when the header is absent or malformed (a malformed condition is
/// ignored, as if absent).
pub(crate) fn if_none_match_matches<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    opaque: &[u8],
) -> Option<bool> {
    let mut present = false;
    let mut matched = false;
    for value in values {
        present = true;
        let kind = parse_tag_list(value.as_bytes(), |_weak, tag| matched |= tag == opaque).ok()?;
        if kind == ListKind::Any {
            matched = true;
        }
    }
    present.then_some(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn matches(values: &[&str], opaque: &str) -> Option<bool> {
        let values: Vec<HeaderValue> = values.iter().map(|v| hv(v)).collect();
        if_none_match_matches(&values, opaque.as_bytes())
    }

    #[test]
    fn if_none_match_lists_star_and_weak() {
        assert_eq!(matches(&[], "a"), None);
        assert_eq!(matches(&[r#""a""#], "a"), Some(true));
        assert_eq!(matches(&[r#""b""#], "a"), Some(false));
        assert_eq!(matches(&[r#""b", "a""#], "a"), Some(true));
        assert_eq!(matches(&[r#""b" ,W/"a""#], "a"), Some(true));
        assert_eq!(matches(&[r#"W/"a""#], "a"), Some(true));
        assert_eq!(matches(&["*"], "a"), Some(true));
        assert_eq!(matches(&[r#""b""#, r#""a""#], "a"), Some(true));
        assert_eq!(matches(&[r#", "a",,"#], "a"), Some(true));
        // Commas are legal inside an opaque tag.
        assert_eq!(matches(&[r#""x,a""#], "a"), Some(false));
        assert_eq!(matches(&[r#""x,a""#], "x,a"), Some(true));
        // Malformed: ignored as a whole.
        for bad in [
            r#"a"#,
            r#""a"#,
            r#""a" "b""#,
            r#"w/"a""#,
            r#""a"x"#,
            "* , \"a\"",
        ] {
            assert_eq!(matches(&[bad], "a"), None, "{bad}");
        }
    }

    #[test]
    fn entity_tags_parse_and_print() {
        let strong: EntityTag = "\"abc\"".parse().unwrap();
        assert_eq!(strong, EntityTag::strong("abc").unwrap());
        assert_eq!(strong.to_string(), "\"abc\"");
        let weak: EntityTag = " W/\"abc\" ".parse().unwrap();
        assert!(weak.is_weak());
        assert_eq!(weak.to_string(), "W/\"abc\"");
        assert!(weak.weak_eq(&strong) && !weak.strong_eq(&strong));
        assert!("abc".parse::<EntityTag>().is_err());
        assert!("\"a\", \"b\"".parse::<EntityTag>().is_err());
        assert!("*".parse::<EntityTag>().is_err());
        assert!(EntityTag::strong("has\"quote").is_err());
        assert!(EntityTag::strong("has space").is_err());
        let body = EntityTag::from_body(b"hello");
        assert_eq!(body.opaque().len(), 32);
        assert_eq!(body, EntityTag::from_body(b"hello"));
        assert_ne!(body, EntityTag::from_body(b"hello!"));
        assert_eq!(
            body.to_header_value().as_bytes(),
            body_etag(b"hello").as_slice()
        );
    }
}
