//! The stored format of the response cache: a response (status, the headers that describe the
//! body, the body) or a vary manifest, as raw bytes (see the module docs of `cache::http`).

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};

const MAGIC: &[u8; 4] = b"CHR1";
const KIND_RESPONSE: u8 = 0;
const KIND_VARY: u8 = 1;

/// Headers of the inner response that are stored (besides those added with
/// [`ResponseCacheLayer::store_header`](crate::cache::http::ResponseCacheLayer::store_header)).
pub(crate) const STORED_HEADERS: [HeaderName; 9] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::VARY,
];

/// A response read back from the cache.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

pub(crate) enum Entry {
    Response(Stored),
    Vary(Vec<HeaderName>),
}

pub(crate) fn encode_response(
    parts: &http::response::Parts,
    body: &Bytes,
    extra_headers: &[HeaderName],
) -> Option<Bytes> {
    let kept: Vec<(&HeaderName, &HeaderValue)> = parts
        .headers
        .iter()
        .filter(|(name, _)| STORED_HEADERS.contains(name) || extra_headers.contains(name))
        .collect();
    let mut out = Vec::with_capacity(
        body.len()
            + 9
            + kept
                .iter()
                .map(|(n, v)| 3 + n.as_str().len() + v.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.push(KIND_RESPONSE);
    out.extend_from_slice(&parts.status.as_u16().to_be_bytes());
    out.extend_from_slice(&u16::try_from(kept.len()).ok()?.to_be_bytes());
    for (name, value) in kept {
        out.push(u8::try_from(name.as_str().len()).ok()?);
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(&u16::try_from(value.len()).ok()?.to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(body);
    Some(Bytes::from(out))
}

pub(crate) fn encode_vary(names: &[String]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(6 + names.iter().map(|n| n.len() + 1).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.push(KIND_VARY);
    out.push(u8::try_from(names.len()).ok()?);
    for name in names {
        out.push(u8::try_from(name.len()).ok()?);
        out.extend_from_slice(name.as_bytes());
    }
    Some(Bytes::from(out))
}

/// Decode an entry; `None` for anything malformed.
pub(crate) fn decode(raw: Bytes) -> Option<Entry> {
    struct Reader {
        raw: Bytes,
        pos: usize,
    }
    impl Reader {
        fn take(&mut self, n: usize) -> Option<Bytes> {
            let end = self.pos.checked_add(n).filter(|&e| e <= self.raw.len())?;
            let out = self.raw.slice(self.pos..end);
            self.pos = end;
            Some(out)
        }
        fn u8(&mut self) -> Option<u8> {
            self.take(1).map(|b| b[0])
        }
        fn u16(&mut self) -> Option<u16> {
            self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
        }
    }
    let mut r = Reader { raw, pos: 0 };
    if r.take(4)?.as_ref() != MAGIC {
        return None;
    }
    match r.u8()? {
        KIND_RESPONSE => {
            let status = StatusCode::from_u16(r.u16()?).ok()?;
            let count = r.u16()?;
            let mut headers = HeaderMap::with_capacity(usize::from(count) + 2);
            for _ in 0..count {
                let len = usize::from(r.u8()?);
                let name = HeaderName::from_bytes(&r.take(len)?).ok()?;
                let len = usize::from(r.u16()?);
                let value = HeaderValue::from_maybe_shared(r.take(len)?).ok()?;
                headers.append(name, value);
            }
            let body = r.raw.slice(r.pos..);
            Some(Entry::Response(Stored {
                status,
                headers,
                body,
            }))
        }
        KIND_VARY => {
            let count = r.u8()?;
            let mut names = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let len = usize::from(r.u8()?);
                names.push(HeaderName::from_bytes(&r.take(len)?).ok()?);
            }
            (r.pos == r.raw.len()).then_some(Entry::Vary(names))
        }
        _ => None,
    }
}
