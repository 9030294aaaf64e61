//! A single-pass rewriter for JSON rows produced by the database.
//!
//! [`Rewriter`] reads one JSON value (a "row") as bytes and appends a rewritten copy to an output
//! buffer, in one left-to-right pass and without building a document tree. It always validates
//! the row and removes insignificant whitespace; optionally it also
//!
//! * renames object keys from `snake_case` to `camelCase` at every depth ([`Rewriter::camel_case`]);
//! * adds `"__typename":"<name>"` as the first member of the row's top-level object
//!   ([`Rewriter::typename`]);
//! * keeps only a set of top-level members ([`Rewriter::project`]).
//!
//! ```
//! use chopin_core::passthrough::Rewriter;
//!
//! let rewriter = Rewriter::new()
//!     .camel_case(true)
//!     .typename("User")
//!     .project(["id", "displayName", "address"]);
//! let row = br#"{"id": 7, "display_name": "Ann\n", "pass_hash": "x", "address": {"zip_code": "75001"}}"#;
//! let mut out = Vec::new();
//! rewriter.rewrite_into(row, &mut out).unwrap();
//! assert_eq!(
//!     out,
//!     br#"{"__typename":"User","id":7,"displayName":"Ann\n","address":{"zipCode":"75001"}}"#
//! );
//! ```
//!
//! # Rules
//!
//! **Values are copied byte for byte.** Strings keep their original escapes (`\n`, `\"`, `\\`,
//! `\u00e9`, surrogate pairs, raw UTF-8): nothing is decoded and re-encoded, so nothing can be
//! double-escaped. Numbers are checked against the JSON grammar and copied as written
//! (`1.0e+10`, `-0` and 400-digit integers come out exactly as they went in). Only whitespace
//! outside strings is removed.
//!
//! **Validation.** The whole row must be exactly one JSON value (RFC 8259), optionally surrounded
//! by whitespace. Strings must be valid UTF-8, contain no raw control bytes (`< 0x20`), use only
//! the escapes `\" \\ \/ \b \f \n \r \t \uXXXX`, and pair every `\u` high surrogate with a `\u` low
//! surrogate. Containers may nest at most [`Rewriter::max_depth`] levels (default
//! [`DEFAULT_MAX_DEPTH`]; `[]` is one level, a scalar is zero). The parser is iterative, so deep
//! input cannot overflow the stack. Anything else is a [`RewriteError`] and the output buffer is
//! left exactly as it was before the call. A byte outside a string that is not part of a token is
//! reported as [`RewriteError::Unexpected`], even when it starts a valid UTF-8 character.
//!
//! **camelCase** ([`snake_to_camel`], the one rule used everywhere): an underscore is removed
//! exactly when it is preceded by a character other than `_` and followed by an ASCII lowercase
//! letter or an ASCII digit; a following letter is upper-cased. Every other underscore is kept:
//! leading ones (`_id`, `__typename`), trailing ones (`total_`), runs of two or more (`a__b`), and
//! ones before anything else (`a_B`, `a_é`). So `user_id` → `userId`, `line_1` → `line1`,
//! `a_b_c` → `aBC`, `a__b` → `a__b`. The rule looks at one character on each side only, is
//! deterministic, and is idempotent (converting a converted key changes nothing). Keys are
//! converted on their decoded text, so escaped keys (`"user\u005fid"`) are handled; a key the
//! rule does not change is copied with its original bytes, a changed key that needs escaping is
//! written with minimal escaping (`\"`, `\\`, short forms and `\u00XX` for control characters).
//! Two input keys may map to the same output key (`a_b` and `aB`); both members are kept, in
//! order, as are duplicate keys in the input.
//!
//! **Top-level object only.** `__typename` and projection apply to the row's top-level object
//! and never to nested objects. With a type name set, the output object starts with
//! `"__typename":"<name>"` and any top-level `__typename` member of the input is dropped, so there
//! is never a duplicate. Projection keeps the top-level members whose *output* key (after
//! camelCase, when enabled) is exactly, byte for byte, one of the requested names; a kept member's
//! value is copied whole. Projection never removes the added `__typename`. Rows that are not
//! objects (arrays, strings, numbers, literals) are validated and minified only.
//!
//! # Performance
//!
//! One pass, no tree, no `unsafe`, and no allocation per row beyond the output (a key is decoded
//! into a scratch buffer only when it contains escapes or non-ASCII text and a rule needs its
//! text). Output is produced lazily: input that needs no change is copied in spans, so a compact
//! row without renamed keys costs one validation pass and one copy. Strings are scanned eight
//! bytes at a time for quotes, backslashes, control bytes and non-ASCII bytes; long plain runs
//! go to `memchr`. `chopin-core/benches/rewrite.rs` measures it against copying the rows and
//! against parsing and re-serialising them with serde_json and sonic-rs.
//!
//! # Testing
//!
//! Unit tests live in this module; property tests against a `serde_json` reference live in
//! `chopin-core/tests/rewrite_props.rs` (256 cases per property by default). The long run is
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test -p chopin-web-core --test rewrite_props --release
//! ```
//!
//! and a cargo-fuzz target lives in `fuzz/` (`cargo +nightly fuzz run rewrite`).

use std::borrow::Cow;

/// The nesting limit used unless [`Rewriter::max_depth`] sets another one.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// A precomputed, reusable set of rewriting options. Cheap to share (`&Rewriter` is all
/// [`rewrite_into`](Self::rewrite_into) needs), so build it once per query shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewriter {
    camel: bool,
    /// `"__typename":"<escaped name>"`, rendered once.
    typename_member: Option<Box<[u8]>>,
    /// Requested top-level output keys (decoded text), sorted and deduplicated.
    fields: Option<FieldSet>,
    max_depth: usize,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    /// A rewriter that only validates and minifies.
    pub fn new() -> Self {
        Self {
            camel: false,
            typename_member: None,
            fields: None,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// Rename object keys from `snake_case` to `camelCase` at every depth (see [`snake_to_camel`]).
    pub fn camel_case(mut self, on: bool) -> Self {
        self.camel = on;
        self
    }

    /// Start each row's top-level object with `"__typename":"<name>"`, dropping any top-level
    /// `__typename` member of the input. `name` is JSON-escaped here, once.
    pub fn typename(mut self, name: &str) -> Self {
        let mut member = Vec::with_capacity(name.len() + 15);
        member.extend_from_slice(b"\"__typename\":\"");
        write_escaped(name.as_bytes(), &mut member);
        member.push(b'"');
        self.typename_member = Some(member.into_boxed_slice());
        self
    }

    /// Keep only the top-level members whose output key (after camelCase, when enabled) is
    /// exactly one of `fields`. An empty list keeps no member (the added `__typename` stays).
    pub fn project<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.fields = Some(FieldSet::new(fields));
        self
    }

    /// Reject rows whose containers nest more than `depth` levels (default [`DEFAULT_MAX_DEPTH`]).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// `true` when this rewriter only validates and minifies: its output is its input without
    /// insignificant whitespace.
    pub fn is_identity(&self) -> bool {
        !self.camel && self.typename_member.is_none() && self.fields.is_none()
    }

    /// Validate one JSON value in `row` and append its rewritten form to `out`.
    ///
    /// On error, `out` is truncated back to the length it had before the call.
    pub fn rewrite_into(&self, row: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let start = out.len();
        // The output is never longer than the row plus the type name member and its comma (see
        // `Out`), so it is written into a slice of that size, which is then cut to length.
        let extra = self.typename_member.as_ref().map_or(0, |t| t.len() + 1);
        out.resize(start + row.len() + extra + SLACK, 0);
        let buf = &mut out[start..];
        let managed = self.typename_member.is_some() || self.fields.is_some();
        let result = match (self.camel, managed) {
            (false, false) => self.run::<false, false>(row, buf),
            (true, false) => self.run::<true, false>(row, buf),
            (false, true) => self.run::<false, true>(row, buf),
            (true, true) => self.run::<true, true>(row, buf),
        };
        match result {
            Ok(written) => {
                out.truncate(start + written);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Whether a top-level member with output key `name` (decoded text) is kept.
    #[inline(always)]
    fn keeps(&self, name: &[u8]) -> bool {
        if self.typename_member.is_some() && name == b"__typename" {
            return false;
        }
        self.fields.as_ref().is_none_or(|f| f.contains(name))
    }

    /// The parser. `CAMEL`: convert keys. `MANAGED`: typename and/or projection, i.e. the root
    /// object's members are handled one by one by [`root_object`](Self::root_object); every
    /// other value goes through [`value`](Self::value).
    ///
    /// Output is produced lazily: `row[pending..i]` is input still to be copied verbatim, and it
    /// is flushed only where the output differs from the input (whitespace, a renamed key, the
    /// typename, a dropped member), so a compact row that needs no change is one `memcpy`.
    #[inline(never)]
    fn run<const CAMEL: bool, const MANAGED: bool>(
        &self,
        b: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, RewriteError> {
        // A local cursor, so that the optimiser keeps it in registers.
        let mut out = Out { buf, pos: 0 };
        let out = &mut out;
        let mut cx = Cx {
            kinds: KindStack::new(),
            scratch: KeyScratch::default(),
        };
        let mut i = skip_ws(b, 0);
        let mut pending = i;
        if MANAGED && b.get(i) == Some(&b'{') {
            i = self.root_object::<CAMEL>(b, i, out, &mut cx)?;
        } else {
            i = self.value::<CAMEL>(b, i, out, &mut pending, 0, &mut cx)?;
            copy_span(out, b, pending, i);
        }
        let end = skip_ws(b, i);
        if end < b.len() {
            return Err(RewriteError::TrailingData { offset: end });
        }
        Ok(out.pos)
    }

    /// The row's top-level object (at `b[i] == '{'`) with typename and projection: each member
    /// is written (key converted, value through [`value`](Self::value)), then kept or cut off
    /// again. Returns the offset after the closing brace.
    #[inline(always)]
    fn root_object<const CAMEL: bool>(
        &self,
        b: &[u8],
        mut i: usize,
        out: &mut Out<'_>,
        cx: &mut Cx,
    ) -> Result<usize, RewriteError> {
        if self.max_depth == 0 {
            return Err(RewriteError::TooDeep {
                offset: i,
                limit: 0,
            });
        }
        out.push(b'{');
        let mut emitted = false;
        if let Some(member) = &self.typename_member {
            out.put(member);
            emitted = true;
        }
        i = skip_ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            out.push(b'}');
            return Ok(i + 1);
        }
        loop {
            match b.get(i) {
                Some(b'"') => {}
                Some(&c) => return Err(RewriteError::Unexpected { byte: c, offset: i }),
                None => return Err(RewriteError::Truncated { offset: b.len() }),
            }
            // Write `,"key"` speculatively, converted; drop it again if not requested.
            let ks = i;
            let mark = out.pos;
            if emitted {
                out.push(b',');
            }
            let key_at = out.pos;
            let mut pending = ks;
            let (end, slow) = if CAMEL {
                scan_key_camel(b, ks, out, &mut pending)?
            } else {
                scan_string(b, ks + 1)?
            };
            // The common case decides once the value is written: by then the key's bytes have
            // reached the cache, whereas reading them back right away would stall on the
            // stores. A key with escapes or non-ASCII text decides now, before parsing the
            // value reuses the scratch buffers.
            let decision = match slow.then(|| cx.scratch.convert(&b[ks + 1..end - 1], CAMEL)) {
                Some(true) => {
                    out.put(&cx.scratch.written);
                    Decision::Now(self.keeps(&cx.scratch.converted))
                }
                Some(false) => {
                    copy_span(out, b, ks, end);
                    Decision::Now(self.keeps(&cx.scratch.decoded))
                }
                None => {
                    copy_span(out, b, pending, end);
                    Decision::Later(key_at + 1..out.pos - 1)
                }
            };
            i = skip_ws(b, end);
            match b.get(i) {
                Some(b':') => i += 1,
                Some(&c) => return Err(RewriteError::Unexpected { byte: c, offset: i }),
                None => return Err(RewriteError::Truncated { offset: b.len() }),
            }
            out.push(b':');
            // Scalars (most members) directly; containers through the general parser.
            let start = skip_ws(b, i);
            let mut pending = start;
            i = match scan_scalar(b, start)? {
                Some(end) => end,
                None => self.value::<CAMEL>(b, start, out, &mut pending, 1, cx)?,
            };
            copy_span(out, b, pending, i);
            let keep = match decision {
                Decision::Now(keep) => keep,
                Decision::Later(key) => self.keeps(&out.buf[key]),
            };
            if keep {
                emitted = true;
            } else {
                out.pos = mark;
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    out.push(b'}');
                    return Ok(i + 1);
                }
                Some(&c) => return Err(RewriteError::Unexpected { byte: c, offset: i }),
                None => return Err(RewriteError::Truncated { offset: b.len() }),
            }
        }
    }

    /// Parse one value starting at `b[i]` (whitespace allowed before it) inside `base` levels of
    /// nesting; return the offset just after it. The output is produced through `pending`: the
    /// caller flushes `b[pending..returned offset]`. Iterative: the depth of the input cannot
    /// overflow the stack.
    #[inline(always)]
    fn value<const CAMEL: bool>(
        &self,
        b: &[u8],
        mut i: usize,
        out: &mut Out<'_>,
        pending: &mut usize,
        base: usize,
        cx: &mut Cx,
    ) -> Result<usize, RewriteError> {
        let n = b.len();
        let mut depth = base;
        let mut in_obj = false;
        let mut state = State::Value;

        macro_rules! skip_ws {
            () => {
                if i < n && is_ws(b[i]) {
                    copy_span(out, b, *pending, i);
                    i = skip_ws(b, i + 1);
                    *pending = i;
                }
            };
        }
        macro_rules! close {
            () => {{
                depth -= 1;
                in_obj = depth > base && cx.kinds.get(depth - 1);
                i += 1;
                state = State::After;
            }};
        }

        loop {
            match state {
                State::Value | State::ArrayFirst => {
                    skip_ws!();
                    let Some(&c) = b.get(i) else {
                        return Err(RewriteError::Truncated { offset: n });
                    };
                    match c {
                        b'"' => i = scan_string(b, i + 1)?.0,
                        b'{' | b'[' => {
                            if depth >= self.max_depth {
                                return Err(RewriteError::TooDeep {
                                    offset: i,
                                    limit: self.max_depth,
                                });
                            }
                            in_obj = c == b'{';
                            cx.kinds.set(depth, in_obj);
                            depth += 1;
                            i += 1;
                            state = if in_obj {
                                State::ObjectFirst
                            } else {
                                State::ArrayFirst
                            };
                            continue;
                        }
                        b']' if state == State::ArrayFirst => {
                            close!();
                            continue;
                        }
                        b'-' | b'0'..=b'9' => i = scan_number(b, i)?,
                        b't' => i = scan_literal(b, i, b"true")?,
                        b'f' => i = scan_literal(b, i, b"false")?,
                        b'n' => i = scan_literal(b, i, b"null")?,
                        _ => return Err(RewriteError::Unexpected { byte: c, offset: i }),
                    }
                    state = State::After;
                }
                State::ObjectFirst | State::Key => {
                    skip_ws!();
                    let Some(&c) = b.get(i) else {
                        return Err(RewriteError::Truncated { offset: n });
                    };
                    if c == b'"' {
                        let ks = i;
                        if CAMEL {
                            let (end, slow) = scan_key_camel(b, ks, out, pending)?;
                            i = end;
                            if slow && cx.scratch.convert(&b[ks + 1..end - 1], true) {
                                copy_span(out, b, *pending, ks);
                                out.put(&cx.scratch.written);
                                *pending = end;
                            }
                        } else {
                            i = scan_string(b, ks + 1)?.0;
                        }
                        skip_ws!();
                        match b.get(i) {
                            Some(b':') => i += 1,
                            Some(&c) => {
                                return Err(RewriteError::Unexpected { byte: c, offset: i });
                            }
                            None => return Err(RewriteError::Truncated { offset: n }),
                        }
                        state = State::Value;
                    } else if c == b'}' && state == State::ObjectFirst {
                        close!();
                    } else {
                        return Err(RewriteError::Unexpected { byte: c, offset: i });
                    }
                }
                State::After => {
                    if depth == base {
                        return Ok(i);
                    }
                    skip_ws!();
                    let Some(&c) = b.get(i) else {
                        return Err(RewriteError::Truncated { offset: n });
                    };
                    match c {
                        b',' => {
                            i += 1;
                            state = if in_obj { State::Key } else { State::Value };
                        }
                        b'}' if in_obj => close!(),
                        b']' if !in_obj => close!(),
                        _ => return Err(RewriteError::Unexpected { byte: c, offset: i }),
                    }
                }
            }
        }
    }
}

/// Whether a root member is kept: decided already, or to be decided on its output key, written
/// at this range of the output.
enum Decision {
    Now(bool),
    Later(std::ops::Range<usize>),
}

/// Per-call working state shared by the parts of the parser.
struct Cx {
    kinds: KindStack,
    scratch: KeyScratch,
}

/// The offset of the first non-whitespace byte at or after `i`.
#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// The requested top-level names, compared exactly (no hashing, so nothing unrequested can slip
/// through) but cheaply: a name is its length plus two integers that, for names up to 16 bytes,
/// hold every byte (see [`Probe`]); longer names are also compared in full.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldSet {
    /// Sorted, deduplicated.
    probes: Vec<(Probe, Box<[u8]>)>,
    /// Bit `l` is set when some name is `l` bytes long (bit 63: 63 bytes or more), so most keys
    /// that are not requested are rejected with one test.
    lengths: u64,
}

/// `(length, first bytes, last bytes)`: together they determine a name of up to 16 bytes.
type Probe = (usize, u64, u64);

#[inline(always)]
fn probe(name: &[u8]) -> Probe {
    let n = name.len();
    let (a, b) = if let (Some(first), Some(last)) =
        (name.first_chunk::<8>(), name.last_chunk::<8>())
    {
        (u64::from_le_bytes(*first), u64::from_le_bytes(*last))
    } else if let (Some(first), Some(last)) = (name.first_chunk::<4>(), name.last_chunk::<4>()) {
        (
            u32::from_le_bytes(*first) as u64,
            u32::from_le_bytes(*last) as u64,
        )
    } else {
        (name.iter().fold(0, |acc, &c| acc << 8 | c as u64), 0)
    };
    (n, a, b)
}

impl FieldSet {
    fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut probes: Vec<(Probe, Box<[u8]>)> = fields
            .into_iter()
            .map(|f| {
                (
                    probe(f.as_ref().as_bytes()),
                    Box::from(f.as_ref().as_bytes()),
                )
            })
            .collect();
        probes.sort_unstable();
        probes.dedup();
        let lengths = probes.iter().fold(0, |m, (p, _)| m | 1 << p.0.min(63));
        Self { probes, lengths }
    }

    #[inline(always)]
    fn contains(&self, name: &[u8]) -> bool {
        if self.lengths >> name.len().min(63) & 1 == 0 {
            return false;
        }
        let p = probe(name);
        // The first entry with this probe, if any.
        let found = if self.probes.len() <= 8 {
            self.probes.iter().position(|(q, _)| *q == p)
        } else {
            let k = self.probes.partition_point(|(q, _)| *q < p);
            self.probes.get(k).filter(|(q, _)| *q == p).map(|_| k)
        };
        // Up to 16 bytes the probe is the name; beyond, compare the rest too. Names longer
        // than 16 bytes sharing a probe are adjacent in the sorted list.
        match found {
            None => false,
            Some(_) if name.len() <= 16 => true,
            Some(k) => self.probes[k..]
                .iter()
                .take_while(|(q, _)| *q == p)
                .any(|(_, full)| **full == *name),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value is expected (start, after `:`, after `,` in an array).
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// A value just ended: `,`, the closing bracket of the container, or the end of the row.
    After,
}

/// One bit per open container (1 = object), 256 levels inline and the rest on the heap (only
/// when a caller raises `max_depth` above 256 and a row is that deep).
struct KindStack {
    inline: [u64; 4],
    spill: Vec<u64>,
}

impl KindStack {
    fn new() -> Self {
        Self {
            inline: [0; 4],
            spill: Vec::new(),
        }
    }

    #[inline(always)]
    fn set(&mut self, level: usize, is_obj: bool) {
        let (word, bit) = (level / 64, level % 64);
        let slot = if let Some(w) = self.inline.get_mut(word) {
            w
        } else {
            let k = word - 4;
            if self.spill.len() <= k {
                self.spill.resize(k + 1, 0);
            }
            &mut self.spill[k]
        };
        *slot = (*slot & !(1 << bit)) | ((is_obj as u64) << bit);
    }

    #[inline(always)]
    fn get(&self, level: usize) -> bool {
        let (word, bit) = (level / 64, level % 64);
        let w = match self.inline.get(word) {
            Some(w) => *w,
            None => self.spill.get(word - 4).copied().unwrap_or(0),
        };
        w >> bit & 1 == 1
    }
}

/// Buffers for keys that contain escapes (rare): allocated only when such a key needs them.
#[derive(Default)]
struct KeyScratch {
    /// The key's text.
    decoded: Vec<u8>,
    /// Its camelCase form, when that differs.
    converted: Vec<u8>,
    /// `converted` as a JSON string (quoted, minimally escaped).
    written: Vec<u8>,
}

impl KeyScratch {
    /// Decode the (validated) key body `body` into `decoded`; if `camel` and the rule changes
    /// it, fill `converted` and `written` and return `true`; else the original bytes can be
    /// copied.
    #[inline(never)]
    fn convert(&mut self, body: &[u8], camel: bool) -> bool {
        self.decoded.clear();
        decode_into(body, &mut self.decoded);
        if !(camel && needs_camel(&self.decoded)) {
            return false;
        }
        self.converted.clear();
        camel_into(&self.decoded, &mut self.converted);
        self.written.clear();
        self.written.push(b'"');
        write_escaped(&self.converted, &mut self.written);
        self.written.push(b'"');
        true
    }
}

/// Why a row could not be rewritten. Every offset is a byte offset into the row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The row ended in the middle of a value (or was empty).
    #[error("truncated JSON: input ends at offset {offset} in the middle of a value")]
    Truncated {
        /// The length of the row.
        offset: usize,
    },
    /// A byte that cannot appear at this position.
    #[error("unexpected {} at offset {offset}", describe_byte(*byte))]
    Unexpected {
        /// The offending byte.
        byte: u8,
        /// Its offset.
        offset: usize,
    },
    /// A backslash not followed by a valid escape (`\" \\ \/ \b \f \n \r \t \uXXXX`).
    #[error("invalid escape sequence at offset {offset}")]
    BadEscape {
        /// Offset of the backslash (of the second `\u` of a surrogate pair when its hex digits are
        /// invalid).
        offset: usize,
    },
    /// A `\u` escape of a UTF-16 surrogate that is not part of a high + low pair.
    #[error("unpaired UTF-16 surrogate escape at offset {offset}")]
    LoneSurrogate {
        /// Offset of the backslash of the unpaired surrogate.
        offset: usize,
    },
    /// A raw byte below 0x20 inside a string (it must be escaped).
    #[error("unescaped control character in string at offset {offset}")]
    ControlCharacter {
        /// Offset of the control byte.
        offset: usize,
    },
    /// Containers nest deeper than the configured limit.
    #[error("nesting deeper than {limit} levels at offset {offset}")]
    TooDeep {
        /// Offset of the opening bracket that exceeds the limit.
        offset: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A string contains bytes that are not valid UTF-8.
    #[error("invalid UTF-8 in string at offset {offset}")]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Something other than whitespace follows the value.
    #[error("trailing data after the JSON value at offset {offset}")]
    TrailingData {
        /// Offset of the first non-whitespace byte after the value.
        offset: usize,
    },
    /// A number that does not follow the JSON grammar (`01`, `1.`, `-`, `1e`, `+1`, `.5` …).
    #[error("invalid number at offset {offset}")]
    InvalidNumber {
        /// Offset of the offending byte.
        offset: usize,
    },
}

fn describe_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("byte 0x{byte:02x}")
    }
}

/// Convert a `snake_case` key to `camelCase` with the module's rule: an `_` preceded by a
/// character other than `_` and followed by an ASCII lowercase letter or digit is removed (the
/// letter is upper-cased); every other `_` is kept.
///
/// ```
/// use chopin_core::passthrough::snake_to_camel;
///
/// assert_eq!(snake_to_camel("user_id"), "userId");
/// assert_eq!(snake_to_camel("address_line_1"), "addressLine1");
/// assert_eq!(snake_to_camel("_id"), "_id");
/// assert_eq!(snake_to_camel("__typename"), "__typename");
/// assert_eq!(snake_to_camel("a__b"), "a__b");
/// assert_eq!(snake_to_camel("total_"), "total_");
/// ```
pub fn snake_to_camel(key: &str) -> Cow<'_, str> {
    if !needs_camel(key.as_bytes()) {
        return Cow::Borrowed(key);
    }
    let mut out = Vec::with_capacity(key.len());
    camel_into(key.as_bytes(), &mut out);
    // Only ASCII `_` are removed and ASCII letters upper-cased: still valid UTF-8.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

#[inline(always)]
fn is_camel_follower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Whether [`camel_into`] would change `key`.
#[inline]
fn needs_camel(key: &[u8]) -> bool {
    // `_` at 0 never converts; look at interior positions only.
    let mut k = 1;
    while k + 1 < key.len() {
        if key[k] == b'_' && key[k - 1] != b'_' && is_camel_follower(key[k + 1]) {
            return true;
        }
        k += 1;
    }
    false
}

/// Append the camelCase form of `key` to `out`.
fn camel_into(key: &[u8], out: &mut Vec<u8>) {
    let mut k = 0;
    while k < key.len() {
        let c = key[k];
        if c == b'_'
            && k > 0
            && key[k - 1] != b'_'
            && k + 1 < key.len()
            && is_camel_follower(key[k + 1])
        {
            out.push(key[k + 1].to_ascii_uppercase());
            k += 2;
        } else {
            out.push(c);
            k += 1;
        }
    }
}

/// Append `s` as the body of a JSON string with minimal escaping.
fn write_escaped(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (k, &c) in s.iter().enumerate() {
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&s[start..k]);
        if short == 0 {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        start = k + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Decode the body of a string that [`scan_string`] accepted.
fn decode_into(body: &[u8], out: &mut Vec<u8>) {
    let mut k = 0;
    while k < body.len() {
        let c = body[k];
        if c != b'\\' {
            out.push(c);
            k += 1;
            continue;
        }
        let e = body.get(k + 1).copied().unwrap_or(b'\\');
        k += 2;
        let simple = match e {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'u' => {
                let hi = hex4(body, k).unwrap_or(0xfffd);
                k += 4;
                let cp = if (0xd800..0xdc00).contains(&hi) {
                    let lo = hex4(body, k + 2).unwrap_or(0xdc00);
                    k += 6;
                    0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                } else {
                    hi
                };
                let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            other => other, // `"`, `\`, `/`
        };
        out.push(simple);
    }
}

/// Append `b[from..to]` to `out`.
#[inline(always)]
fn copy_span(out: &mut Out<'_>, b: &[u8], from: usize, to: usize) {
    out.copy_span(b, from, to);
}

/// The output of one call: a zero-filled slice as long as the longest possible output plus
/// [`SLACK`], and a cursor. Writing through plain slice stores (instead of `Vec` methods,
/// which check capacity and update the length on every call and which the optimiser does not
/// always inline) keeps the hot path free of calls; the slice is bounds-checked, so a bug
/// could only panic, never write out of bounds.
///
/// The bound: values and unchanged keys are copied, converted keys only get shorter, a key
/// rewritten with minimal escaping is never longer than it was written, whitespace and dropped
/// members are removed, and the root object gains only the type name member and one comma.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

/// Spare room after the longest output, for [`Out::copy_span`]'s fixed-size blocks.
const SLACK: usize = 32;

impl Out<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    #[inline(always)]
    fn push(&mut self, c: u8) {
        self.buf[self.pos] = c;
        self.pos += 1;
    }

    /// Append `b[from..to]`. Short spans (the common case: a key, a value, the text between two
    /// whitespace runs) are copied as one 32-byte block — two vector moves, no `memcpy` call —
    /// and the cursor only advances by the span's length.
    #[inline(always)]
    fn copy_span(&mut self, b: &[u8], from: usize, to: usize) {
        let len = to - from;
        if len <= SLACK
            && let Some(block) = b.get(from..).and_then(|r| r.first_chunk::<SLACK>())
            && let Some(dst) = self
                .buf
                .get_mut(self.pos..)
                .and_then(|r| r.first_chunk_mut::<SLACK>())
        {
            *dst = *block;
            self.pos += len;
        } else {
            self.put(&b[from..to]);
        }
    }
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    const WS: u64 = 1 << b' ' | 1 << b'\n' | 1 << b'\r' | 1 << b'\t';
    c <= b' ' && WS >> c & 1 == 1
}

#[inline(always)]
fn hex_val(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some((c - b'0') as u32),
        b'a'..=b'f' => Some((c - b'a' + 10) as u32),
        b'A'..=b'F' => Some((c - b'A' + 10) as u32),
        _ => None,
    }
}

/// The four hex digits at `b[k..k + 4]`, if they are there and valid.
#[inline]
fn hex4(b: &[u8], k: usize) -> Option<u32> {
    let d = b.get(k..k + 4)?;
    Some(hex_val(d[0])? << 12 | hex_val(d[1])? << 8 | hex_val(d[2])? << 4 | hex_val(d[3])?)
}

/// Four hex digits for the escape whose backslash is at `at`: `Truncated` when the row ends
/// first, `BadEscape` when a digit is not hex.
#[inline]
fn escape_hex(b: &[u8], at: usize) -> Result<u32, RewriteError> {
    let k = at + 2;
    match hex4(b, k) {
        Some(v) => Ok(v),
        None => {
            let avail = &b[k.min(b.len())..];
            if avail.len() < 4 && avail.iter().all(|&c| hex_val(c).is_some()) {
                Err(RewriteError::Truncated { offset: b.len() })
            } else {
                Err(RewriteError::BadEscape { offset: at })
            }
        }
    }
}

/// Validate the escape whose backslash is at `at`; return the offset just after it.
#[inline(never)]
fn scan_escape(b: &[u8], at: usize) -> Result<usize, RewriteError> {
    let n = b.len();
    match b.get(at + 1) {
        None => Err(RewriteError::Truncated { offset: n }),
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
        Some(b'u') => {
            let cp = escape_hex(b, at)?;
            match cp {
                0xd800..=0xdbff => {
                    let lo_at = at + 6;
                    match (b.get(lo_at), b.get(lo_at + 1)) {
                        (None, _) | (Some(b'\\'), None) => {
                            return Err(RewriteError::Truncated { offset: n });
                        }
                        (Some(b'\\'), Some(b'u')) => {}
                        _ => return Err(RewriteError::LoneSurrogate { offset: at }),
                    }
                    let lo = escape_hex(b, lo_at)?;
                    if (0xdc00..=0xdfff).contains(&lo) {
                        Ok(at + 12)
                    } else {
                        Err(RewriteError::LoneSurrogate { offset: at })
                    }
                }
                0xdc00..=0xdfff => Err(RewriteError::LoneSurrogate { offset: at }),
                _ => Ok(at + 6),
            }
        }
        Some(_) => Err(RewriteError::BadEscape { offset: at }),
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is `"`, `\`, a control byte or non-ASCII. Bits above
/// the first such byte may be spurious (borrows); the lowest set bit is always exact.
#[inline(always)]
fn special_mask(w: u64) -> u64 {
    let q = w ^ (LO * b'"' as u64);
    let s = w ^ (LO * b'\\' as u64);
    let quote = q.wrapping_sub(LO) & !q;
    let backslash = s.wrapping_sub(LO) & !s;
    let control = w.wrapping_sub(LO * 0x20) & !w;
    (quote | backslash | control | w) & HI
}

/// Validate a string body starting at `i` (just after the opening quote). Returns the offset
/// just after the closing quote and whether the string contains escapes.
#[inline(always)]
fn scan_string(b: &[u8], mut i: usize) -> Result<(usize, bool), RewriteError> {
    let n = b.len();
    let mut escaped = false;
    loop {
        // Skip ordinary ASCII eight bytes at a time; hand long runs to `memchr`.
        let mut chunks = 0;
        while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
            let m = special_mask(u64::from_le_bytes(*chunk));
            if m != 0 {
                i += (m.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
            chunks += 1;
            if chunks == LONG_STRING_CHUNKS {
                i = scan_long(b, i)?;
                break;
            }
        }
        // `i` is at a special byte, or fewer than eight bytes remain.
        let Some(&c) = b.get(i) else {
            return Err(RewriteError::Truncated { offset: n });
        };
        match c {
            b'"' => return Ok((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i = scan_escape(b, i)?;
            }
            0..=0x1f => return Err(RewriteError::ControlCharacter { offset: i }),
            0x80..=0xff => {
                i = utf8_char(b, i)?;
                while let Some(&c) = b.get(i)
                    && c >= 0x80
                {
                    i = utf8_char(b, i)?;
                }
            }
            _ => i += 1,
        }
    }
}

/// After this many eight-byte chunks of plain text, a string is scanned by [`scan_long`].
const LONG_STRING_CHUNKS: u32 = 8;

/// Validate the string content from `i` up to the next `"` or `\` (or the end of the row) in
/// bulk: `memchr2` finds the end, then the span is checked for control bytes and, only if it
/// has non-ASCII bytes, for UTF-8. Returns the offset of that `"` / `\` (or the end).
#[inline(never)]
fn scan_long(b: &[u8], i: usize) -> Result<usize, RewriteError> {
    let end = memchr::memchr2(b'"', b'\\', &b[i..]).map_or(b.len(), |p| i + p);
    let span = &b[i..end];
    // Branch-free so that it vectorises: is any byte < 0x20 or >= 0x80?
    let odd = span
        .iter()
        .fold(false, |acc, &c| acc | (c.wrapping_sub(0x20) >= 0x60));
    if !odd {
        return Ok(end);
    }
    // Rare: find the first problem byte by byte (this also validates UTF-8).
    let mut k = i;
    while k < end {
        match b[k] {
            0..=0x1f => return Err(RewriteError::ControlCharacter { offset: k }),
            0x80..=0xff => k = utf8_char(b, k)?,
            _ => k += 1,
        }
    }
    Ok(end)
}

/// Validate the UTF-8 character whose first byte, `b[i]`, is not ASCII; return the offset
/// after it.
#[inline(always)]
fn utf8_char(b: &[u8], i: usize) -> Result<usize, RewriteError> {
    // The ranges of the second byte for each lead byte (RFC 3629: no overlong forms, no
    // surrogates, nothing above U+10FFFF).
    let (len, lo, hi) = match b[i] {
        0xc2..=0xdf => (2, 0x80, 0xbf),
        0xe0 => (3, 0xa0, 0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80, 0xbf),
        0xed => (3, 0x80, 0x9f),
        0xf0 => (4, 0x90, 0xbf),
        0xf1..=0xf3 => (4, 0x80, 0xbf),
        0xf4 => (4, 0x80, 0x8f),
        _ => return Err(RewriteError::InvalidUtf8 { offset: i }),
    };
    for k in 1..len {
        let (lo, hi) = if k == 1 { (lo, hi) } else { (0x80, 0xbf) };
        match b.get(i + k) {
            Some(&c) if (lo..=hi).contains(&c) => {}
            Some(_) => return Err(RewriteError::InvalidUtf8 { offset: i }),
            None => return Err(RewriteError::Truncated { offset: b.len() }),
        }
    }
    Ok(i + len)
}

/// [`scan_string`] for a key, converting it to camelCase in place: each underscore the rule
/// removes is dropped by flushing `b[pending..underscore]` to `out` and writing the upper-cased
/// letter. Returns the offset after the closing quote, and `true` ("slow") when the key contains
/// an escape or non-ASCII text: then nothing was written (and `pending` is unchanged) and the
/// caller converts the decoded key instead.
#[inline(always)]
fn scan_key_camel(
    b: &[u8],
    ks: usize,
    out: &mut Out<'_>,
    pending: &mut usize,
) -> Result<(usize, bool), RewriteError> {
    let (out_len, pending_at) = (out.pos, *pending);
    let mut i = ks + 1;
    loop {
        // Eight bytes at a time: handle every underscore before the first special byte
        // without going byte by byte.
        while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
            let w = u64::from_le_bytes(*chunk);
            let stop = special_mask(w);
            // The bits below the lowest set bit of `stop` (all of them when it is zero).
            let below = !stop & stop.wrapping_sub(1);
            let mut under = eq_mask(w, b'_') & below;
            while under != 0 {
                camel_underscore(
                    b,
                    ks,
                    i + (under.trailing_zeros() / 8) as usize,
                    out,
                    pending,
                );
                under &= under - 1;
            }
            if stop != 0 {
                i += (stop.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        let Some(&c) = b.get(i) else {
            return Err(RewriteError::Truncated { offset: b.len() });
        };
        match c {
            b'"' => return Ok((i + 1, false)),
            b'\\' | 0x80..=0xff => {
                out.pos = out_len;
                *pending = pending_at;
                return Ok((scan_string(b, i)?.0, true));
            }
            0..=0x1f => return Err(RewriteError::ControlCharacter { offset: i }),
            // Fewer than eight bytes left: one at a time.
            b'_' => {
                camel_underscore(b, ks, i, out, pending);
                i += 1;
            }
            _ => i += 1,
        }
    }
}

/// Convert the underscore at `b[k]` of the key whose opening quote is at `ks`, if the rule
/// says so (see [`scan_key_camel`]).
#[inline(always)]
fn camel_underscore(b: &[u8], ks: usize, k: usize, out: &mut Out<'_>, pending: &mut usize) {
    if k > ks + 1
        && b[k - 1] != b'_'
        && let Some(&next) = b.get(k + 1)
        && is_camel_follower(next)
        && k >= *pending
    {
        copy_span(out, b, *pending, k);
        out.push(next.to_ascii_uppercase());
        *pending = k + 2;
    }
}

/// High bit set in exactly the bytes of `w` equal to `c`.
#[inline(always)]
fn eq_mask(w: u64, c: u8) -> u64 {
    let x = w ^ (LO * c as u64);
    !(((x & !HI).wrapping_add(!HI)) | x) & HI
}

/// If a string, number or literal starts at `b[i]`, validate it and return the offset after
/// it; `None` for anything else (a container, or an error [`Rewriter::value`] will report).
#[inline(always)]
fn scan_scalar(b: &[u8], i: usize) -> Result<Option<usize>, RewriteError> {
    Ok(Some(match b.get(i) {
        Some(b'"') => scan_string(b, i + 1)?.0,
        Some(b'-' | b'0'..=b'9') => scan_number(b, i)?,
        Some(b't') => scan_literal(b, i, b"true")?,
        Some(b'f') => scan_literal(b, i, b"false")?,
        Some(b'n') => scan_literal(b, i, b"null")?,
        _ => return Ok(None),
    }))
}

/// Validate a number starting at `i`; return the offset just after it.
#[inline(always)]
fn scan_number(b: &[u8], mut i: usize) -> Result<usize, RewriteError> {
    let n = b.len();
    // Require at least one digit at `i`, reporting truncation or the bad byte.
    let need_digit = |i: usize| match b.get(i) {
        Some(b'0'..=b'9') => Ok(()),
        Some(_) => Err(RewriteError::InvalidNumber { offset: i }),
        None => Err(RewriteError::Truncated { offset: n }),
    };
    if b[i] == b'-' {
        i += 1;
    }
    need_digit(i)?;
    i = if b[i] == b'0' {
        i + 1
    } else {
        digits(b, i + 1)
    };
    if b.get(i) == Some(&b'.') {
        need_digit(i + 1)?;
        i = digits(b, i + 2);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        need_digit(i)?;
        i = digits(b, i + 1);
    }
    match b.get(i) {
        Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') => {
            Err(RewriteError::InvalidNumber { offset: i })
        }
        _ => Ok(i),
    }
}

/// The end of the run of ASCII digits starting at `i`. (Numbers in rows are short: a byte
/// loop measured faster than an eight-byte scan.)
#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Validate the literal `lit` (`true`, `false`, `null`) at `i`; return the offset after it.
#[inline(always)]
fn scan_literal(b: &[u8], i: usize, lit: &'static [u8]) -> Result<usize, RewriteError> {
    let end = i + lit.len();
    if b.get(i..end) == Some(lit) {
        return Ok(end);
    }
    for (k, &want) in lit.iter().enumerate() {
        match b.get(i + k) {
            None => return Err(RewriteError::Truncated { offset: b.len() }),
            Some(&c) if c != want => {
                return Err(RewriteError::Unexpected {
                    byte: c,
                    offset: i + k,
                });
            }
            Some(_) => {}
        }
    }
    Ok(end)
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
