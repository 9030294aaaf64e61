//! Property tests of the pass-through rewriter against references built independently of it:
//! a generated JSON syntax tree that records every string's exact escaped text and every
//! number's exact digits (for byte-exact expectations), and `serde_json` (for "parses to the
//! same value" and "rejects the same inputs").
//!
//! 256 cases per property by default; the long run is
//! `PROPTEST_CASES=200000 cargo test -p chopin-web-core --test rewrite_props --release`.

use chopin_core::passthrough::snake_to_camel;
use chopin_core::passthrough::{RewriteError, Rewriter};
use proptest::prelude::*;
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// The generated syntax tree.

/// A string as written (`raw`, the bytes between the quotes) and as meant (`text`).
#[derive(Debug, Clone)]
struct JStr {
    raw: String,
    text: String,
}

#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    /// The number's exact text.
    Num(String),
    Str(JStr),
    Arr(Vec<J>),
    Obj(Vec<(JStr, J)>),
}

fn hex4(v: u32, upper: bool) -> String {
    if upper {
        format!("{v:04X}")
    } else {
        format!("{v:04x}")
    }
}

/// One character, encoded in one of the ways JSON allows.
fn piece(c: char, how: u8) -> JStr {
    let text = c.to_string();
    let forced = c == '"' || c == '\\' || (c as u32) < 0x20;
    let raw = match (how % 4, c) {
        // Raw, when allowed.
        (0, _) if !forced => text.clone(),
        // The short escape, when there is one.
        (1, '"') => "\\\"".into(),
        (1, '\\') => "\\\\".into(),
        (1, '/') => "\\/".into(),
        (1, '\u{8}') => "\\b".into(),
        (1, '\u{c}') => "\\f".into(),
        (1, '\n') => "\\n".into(),
        (1, '\r') => "\\r".into(),
        (1, '\t') => "\\t".into(),
        // `\uXXXX` (a surrogate pair above the BMP), in either case.
        _ => {
            let upper = how >= 128;
            let mut units = [0u16; 2];
            c.encode_utf16(&mut units)
                .iter()
                .map(|&u| format!("\\u{}", hex4(u as u32, upper)))
                .collect()
        }
    };
    JStr { raw, text }
}

fn concat(pieces: Vec<JStr>) -> JStr {
    JStr {
        raw: pieces.iter().map(|p| p.raw.as_str()).collect(),
        text: pieces.iter().map(|p| p.text.as_str()).collect(),
    }
}

/// Characters that make strings interesting: ASCII, specials, controls, non-ASCII, astral.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => prop::sample::select(vec!['"', '\\', '/', '\n', '\t', '\r', '\u{8}', '\u{c}', '\0', '\u{1f}', '\u{7f}', '_']),
        1 => proptest::char::range('\u{80}', '\u{7ff}'),
        1 => proptest::char::range('\u{800}', '\u{ffff}'),
        1 => proptest::char::range('\u{10000}', '\u{10ffff}'),
    ]
}

/// A string with escapes already encoded in various ways.
fn jstr() -> impl Strategy<Value = JStr> {
    prop::collection::vec((any_char(), any::<u8>()), 0..24)
        .prop_map(|cs| concat(cs.into_iter().map(|(c, how)| piece(c, how)).collect()))
}

/// Keys: mostly snake_case (with odd underscores), some with escapes, some anything.
fn key() -> impl Strategy<Value = JStr> {
    let snake = (
        "_{0,2}[a-z][a-z0-9]{0,5}(_{1,2}[a-z0-9][a-z0-9]{0,4}){0,3}_{0,1}",
        any::<u32>(),
    )
        .prop_map(|(s, bits)| {
            // Encode a few characters (often the underscores) as `\u00XX`.
            concat(
                s.chars()
                    .enumerate()
                    .map(|(k, c)| {
                        let escape = bits >> (k % 32) & 1 == 1 && bits % 5 == 0;
                        piece(c, if escape { 2 } else { 0 })
                    })
                    .collect(),
            )
        });
    prop_oneof![
        6 => snake,
        1 => prop::sample::select(vec!["id", "idx", "i", "ID", "__typename", "_id", "a_b", "aB"])
            .prop_map(piece_str),
        2 => jstr(),
    ]
}

fn piece_str(s: &str) -> JStr {
    JStr {
        raw: s.into(),
        text: s.into(),
    }
}

/// Numbers as text: odd forms, and (with `big`) integers and fractions far beyond `f64`.
fn number(big: bool) -> BoxedStrategy<String> {
    let normal = prop_oneof![
        "-?(0|[1-9][0-9]{0,18})",
        "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,2})?",
        prop::sample::select(vec![
            "-0",
            "0.0",
            "-0.0e-0",
            "1.0e+10",
            "1E5",
            "1e-7",
            "123456789012345678901234567890"
        ])
        .prop_map(String::from),
    ];
    if big {
        prop_oneof![4 => normal, 1 => "-?[1-9][0-9]{300,420}(\\.[0-9]{1,40})?"].boxed()
    } else {
        normal.boxed()
    }
}

fn leaf(big: bool) -> impl Strategy<Value = J> {
    prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number(big).prop_map(J::Num),
        jstr().prop_map(J::Str),
    ]
}

/// Object members whose output keys (after camelCase) are distinct, so that a parsed
/// `serde_json::Value` (one value per key) is a faithful reference.
fn dedup(members: Vec<(JStr, J)>) -> Vec<(JStr, J)> {
    let mut seen = std::collections::HashSet::new();
    members
        .into_iter()
        .filter(|(k, _)| seen.insert(snake_to_camel(&k.text).into_owned()))
        .collect()
}

fn tree(big: bool) -> impl Strategy<Value = J> {
    leaf(big).prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            prop::collection::vec((key(), inner), 0..7).prop_map(|m| J::Obj(dedup(m))),
        ]
    })
}

/// Rows: usually an object (what the database produces), sometimes deeply nested, sometimes
/// any value.
fn row(big: bool) -> impl Strategy<Value = J> {
    let deep = (
        leaf(big),
        prop::collection::vec(prop::option::of(key()), 1..100),
    )
        .prop_map(|(leaf, levels)| {
            levels.into_iter().fold(leaf, |inner, level| match level {
                Some(k) => J::Obj(vec![(k, inner)]),
                None => J::Arr(vec![J::Null, inner]),
            })
        });
    prop_oneof![
        6 => prop::collection::vec((key(), tree(big)), 0..10).prop_map(|m| J::Obj(dedup(m))),
        1 => deep,
        1 => tree(big),
    ]
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// Whitespace between tokens, from a seed (seed 0: none).
struct Ws(u64);

impl Ws {
    fn next(&mut self) -> &'static str {
        if self.0 == 0 {
            return "";
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ["", "", "", " ", "\n", "\t", "\r\n", "  ", " \t\n\r "][(self.0 % 9) as usize]
    }
}

fn render(j: &J, ws: &mut Ws, out: &mut String) {
    out.push_str(ws.next());
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(n) => out.push_str(n),
        J::Str(s) => {
            out.push('"');
            out.push_str(&s.raw);
            out.push('"');
        }
        J::Arr(items) => {
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                render(item, ws, out);
            }
            out.push_str(ws.next());
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (k, (key, value)) in members.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push_str(ws.next());
                out.push('"');
                out.push_str(&key.raw);
                out.push('"');
                out.push_str(ws.next());
                out.push(':');
                render(value, ws, out);
            }
            out.push_str(ws.next());
            out.push('}');
        }
    }
    out.push_str(ws.next());
}

fn text(j: &J, seed: u64) -> String {
    let mut s = String::new();
    render(j, &mut Ws(seed), &mut s);
    s
}

fn has_big_numbers(j: &J) -> bool {
    match j {
        J::Num(n) => n.len() > 100,
        J::Arr(items) => items.iter().any(has_big_numbers),
        J::Obj(members) => members.iter().any(|(_, v)| has_big_numbers(v)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The references.

#[derive(Debug, Clone)]
struct Config {
    camel: bool,
    typename: Option<String>,
    fields: Option<Vec<String>>,
}

impl Config {
    fn rewriter(&self) -> Rewriter {
        let mut r = Rewriter::new().camel_case(self.camel);
        if let Some(t) = &self.typename {
            r = r.typename(t);
        }
        if let Some(f) = &self.fields {
            r = r.project(f);
        }
        r
    }

    fn keeps(&self, output_key: &str) -> bool {
        if self.typename.is_some() && output_key == "__typename" {
            return false;
        }
        self.fields
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == output_key))
    }
}

/// Minimal JSON escaping, as serde_json writes strings.
fn escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap();
    quoted[1..quoted.len() - 1].to_string()
}

/// The exact bytes the rewriter must produce: built from the syntax tree.
fn expected(j: &J, cfg: &Config, root: bool, out: &mut String) {
    match j {
        J::Arr(items) => {
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                expected(item, cfg, false, out);
            }
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            let mut first = true;
            if root && let Some(t) = &cfg.typename {
                out.push_str(&format!("\"__typename\":\"{}\"", escaped(t)));
                first = false;
            }
            for (key, value) in members {
                let converted = if cfg.camel {
                    snake_to_camel(&key.text)
                } else {
                    key.text.as_str().into()
                };
                if root && !cfg.keeps(&converted) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                let raw = if converted == key.text {
                    key.raw.clone()
                } else {
                    escaped(&converted)
                };
                out.push_str(&format!("\"{raw}\":"));
                expected(value, cfg, false, out);
            }
            out.push('}');
        }
        leaf => render(leaf, &mut Ws(0), out),
    }
}

/// The same transformation on a `serde_json` tree.
fn reference(v: Value, cfg: &Config) -> Value {
    fn camel(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (snake_to_camel(&k).into_owned(), camel(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(camel).collect()),
            other => other,
        }
    }
    let v = if cfg.camel { camel(v) } else { v };
    match v {
        Value::Object(m) => {
            let mut kept = Map::new();
            if let Some(t) = &cfg.typename {
                kept.insert("__typename".into(), Value::String(t.clone()));
            }
            for (k, v) in m {
                if cfg.keeps(&k) {
                    kept.insert(k, v);
                }
            }
            Value::Object(kept)
        }
        other => other,
    }
}

/// A projection drawn from the row's own keys plus near misses (prefixes, extensions, case).
fn fields_for(j: &J, cfg_camel: bool, seed: u64) -> Vec<String> {
    let mut fields = Vec::new();
    if let J::Obj(members) = j {
        for (k, (key, _)) in members.iter().enumerate() {
            let out = if cfg_camel {
                snake_to_camel(&key.text).into_owned()
            } else {
                key.text.clone()
            };
            match (seed >> (2 * (k % 32))) & 3 {
                0 => fields.push(out),
                1 => {
                    fields.push(format!("{out}x"));
                    if let Some((cut, _)) = out.char_indices().last() {
                        fields.push(out[..cut].to_string());
                    }
                }
                2 => fields.push(out.to_uppercase()),
                _ => {}
            }
        }
    }
    fields.retain(|f| !f.is_empty() || seed.is_multiple_of(2));
    fields
}

fn config() -> impl Strategy<Value = (bool, Option<String>, Option<u64>)> {
    (
        any::<bool>(),
        prop::option::of(prop_oneof!["[A-Z][a-zA-Z]{0,12}", any::<String>()]),
        prop::option::of(any::<u64>()),
    )
}

fn make_config(
    j: &J,
    (camel, typename, projection): (bool, Option<String>, Option<u64>),
) -> Config {
    Config {
        camel,
        typename,
        fields: projection.map(|seed| fields_for(j, camel, seed)),
    }
}

fn rewrite(r: &Rewriter, input: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let mut out = Vec::new();
    r.rewrite_into(input, &mut out).map(|()| out)
}

/// No whitespace outside strings.
fn is_minified(s: &[u8]) -> bool {
    let (mut in_str, mut escape) = (false, false);
    for &c in s {
        if in_str {
            match (escape, c) {
                (true, _) => escape = false,
                (false, b'\\') => escape = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
        } else if c == b'"' {
            in_str = true;
        } else if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            return false;
        }
    }
    true
}

/// All raw string values of the tree, in order.
fn raw_strings<'a>(j: &'a J, out: &mut Vec<&'a str>) {
    match j {
        J::Str(s) => out.push(&s.raw),
        J::Arr(items) => items.iter().for_each(|i| raw_strings(i, out)),
        J::Obj(members) => members.iter().for_each(|(_, v)| raw_strings(v, out)),
        _ => {}
    }
}

/// serde_json errors that are limits of serde_json, not of JSON: numbers beyond `f64` and its
/// recursion limit.
fn serde_limit(e: &serde_json::Error) -> bool {
    let msg = e.to_string();
    msg.contains("number out of range") || msg.contains("recursion limit")
}

/// Bytes and byte sequences that mutations insert.
const INTERESTING: &[u8] =
    b"\"\\{}[],:0123456789-+.eEtrufalsn u/\x00\x1f\x7f\x80\xbf\xc3\xa9\xed\xf0\xff";
const SNIPPETS: &[&[u8]] = &[
    br"\ud800",
    br"\udc00",
    br"\uDBFF\uDFFF",
    br"\ud83d\ude00",
    br"\u00",
    br"\u00e9",
    br"\x",
    br"\",
    b"0",
    b"00",
    b"-",
    b"1e",
    b".5",
    b"1.",
    b"e+",
    b"\"",
    b"\"\"",
    b"{",
    b"}",
    b"[1,",
    b",",
    b":",
    b"\"k\":",
    b"\xed\xa0\x80",
    b"\xc3",
    b"\xf0\x9f\x98",
    b"\xe2\x82\xac",
    b"\x01",
    b"\t",
    b"nul",
    b"true",
    b"[[[[",
    b"]]",
];

impl Ws {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// One to four random edits: truncation, replacement, insertion (a byte or a snippet),
/// deletion. Half of them land next to a digit, backslash, quote or bracket, where the
/// interesting mistakes are (`01`, `\udc00`, a lost quote …); the rest anywhere.
fn mutate(original: &[u8], rng: &mut Ws) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..=rng.below(4) {
        let anchors: Vec<usize> = bytes
            .iter()
            .enumerate()
            .filter(|(_, c)| b"0123456789\\\"{}[],:eu".contains(c))
            .map(|(k, _)| k)
            .collect();
        let len = bytes.len();
        let k = if rng.below(2) == 0 && !anchors.is_empty() {
            anchors[rng.below(anchors.len())] + rng.below(2)
        } else {
            rng.below(len + 1)
        }
        .min(len);
        let byte = INTERESTING[rng.below(INTERESTING.len())];
        match rng.below(6) {
            0 => bytes.truncate(k),
            1 if k < len => bytes[k] = byte,
            2 => bytes.insert(
                k,
                if rng.below(4) == 0 {
                    rng.below(256) as u8
                } else {
                    byte
                },
            ),
            3 | 4 => {
                let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                bytes.splice(k..k, snippet.iter().copied());
            }
            _ if k < len => {
                bytes.remove(k);
            }
            _ => {}
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// The properties.

proptest! {
    /// (1) The identity rewriter minifies: its output is the input without whitespace, byte for
    /// byte, and parses to the same value.
    #[test]
    fn identity_is_exact_minification(j in row(true), seed in any::<u64>()) {
        let input = text(&j, seed);
        let out = rewrite(&Rewriter::new(), input.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {input}")))?;
        prop_assert_eq!(String::from_utf8(out.clone()).unwrap(), text(&j, 0));
        prop_assert!(is_minified(&out));
        if !has_big_numbers(&j) {
            let a: Value = serde_json::from_slice(&out).unwrap();
            let b: Value = serde_json::from_str(&input).unwrap();
            prop_assert_eq!(a, b);
        }
    }

    /// (2) camelCase + typename + projection: exactly the bytes the syntax-tree reference
    /// predicts, parsing to the value the serde_json reference predicts; rewriting again
    /// changes nothing.
    #[test]
    fn transform_matches_references(j in row(true), seed in any::<u64>(), cfg in config()) {
        let cfg = make_config(&j, cfg);
        let input = text(&j, seed);
        let rewriter = cfg.rewriter();
        let out = rewrite(&rewriter, input.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {input}")))?;
        let mut want = String::new();
        expected(&j, &cfg, true, &mut want);
        prop_assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        prop_assert!(is_minified(&out));
        if !has_big_numbers(&j) {
            let got: Value = serde_json::from_slice(&out).unwrap();
            let parsed: Value = serde_json::from_str(&input).unwrap();
            prop_assert_eq!(got, reference(parsed, &cfg));
        }
        prop_assert_eq!(rewrite(&rewriter, &out).unwrap(), out);
    }

    /// (3) String values come out byte-identical, whatever escapes they were written with and
    /// whatever the configuration.
    #[test]
    fn string_values_are_byte_identical(
        values in prop::collection::vec(jstr(), 1..8),
        keys in prop::collection::vec(key(), 1..8),
        seed in any::<u64>(),
        cfg in config(),
    ) {
        let members: Vec<(JStr, J)> = keys.into_iter().zip(values.iter().cloned().map(J::Str)).collect();
        let j = J::Obj(dedup(members.clone()));
        let nested = J::Arr(vec![J::Obj(dedup(members)), J::Arr(values.into_iter().map(J::Str).collect())]);
        for j in [j, nested] {
            let cfg = make_config(&j, cfg.clone());
            let out = rewrite(&cfg.rewriter(), text(&j, seed).as_bytes()).unwrap();
            let out = String::from_utf8(out).unwrap();
            let mut want = String::new();
            expected(&j, &cfg, true, &mut want);
            prop_assert_eq!(&out, &want);
            // And independently of the reference: every kept string value is there as written.
            let mut raws = Vec::new();
            raw_strings(&j, &mut raws);
            if cfg.fields.is_none() && cfg.typename.is_none() {
                for raw in raws {
                    let quoted = format!("\"{raw}\"");
                    prop_assert!(out.contains(&quoted), "{} missing from {}", quoted, out);
                }
            }
        }
    }

    /// (4) Mutated and truncated rows never panic; the rewriter rejects exactly what serde_json
    /// rejects (apart from serde_json's own number-range and recursion limits), and its output,
    /// when it accepts, is minified valid JSON. Each case tries 32 mutants of one row.
    #[test]
    fn mutations_never_panic_and_are_rejected_like_serde(
        j in row(false),
        seed in any::<u64>(),
        mutation_seed in any::<u64>(),
        cfg in config(),
    ) {
        let original = text(&j, seed).into_bytes();
        let cfg = make_config(&j, cfg);
        let rewriters = [Rewriter::new(), cfg.rewriter()];
        let mut rng = Ws(mutation_seed | 1);
        for _ in 0..32 {
            let bytes = mutate(&original, &mut rng);
            let serde = serde_json::from_slice::<Value>(&bytes);
            for rewriter in &rewriters {
                let got = rewrite(rewriter, &bytes);
                match (&serde, &got) {
                    (Err(e), Ok(_)) if !serde_limit(e) => {
                        return Err(TestCaseError::fail(format!(
                            "accepted what serde_json rejects ({e}): {:?}", String::from_utf8_lossy(&bytes))));
                    }
                    (Ok(_), Err(e)) => {
                        return Err(TestCaseError::fail(format!(
                            "rejected ({e}) what serde_json accepts: {:?}", String::from_utf8_lossy(&bytes))));
                    }
                    _ => {}
                }
                if let (Ok(out), Ok(value)) = (&got, &serde) {
                    prop_assert!(is_minified(out));
                    let again: Value = serde_json::from_slice(out).unwrap();
                    if rewriter.is_identity() {
                        prop_assert_eq!(&again, value);
                    }
                }
            }
        }
    }
}
