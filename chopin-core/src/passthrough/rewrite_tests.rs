//! Unit tests of the rewriter's state machine (kept beside it, out of its file).

use super::*;

const PREFIX: &[u8] = b"<prefix>";

/// Rewrite `input` after a prefix, checking the prefix survives and, on error, that the
/// buffer is exactly as before the call.
fn run(r: &Rewriter, input: &[u8]) -> Result<String, RewriteError> {
    let mut out = PREFIX.to_vec();
    let result = r.rewrite_into(input, &mut out);
    assert!(out.starts_with(PREFIX));
    match result {
        Ok(()) => Ok(String::from_utf8(out[PREFIX.len()..].to_vec()).expect("output is UTF-8")),
        Err(e) => {
            assert_eq!(out, PREFIX, "output changed on error {e:?} for {input:?}");
            Err(e)
        }
    }
}

fn ok(r: &Rewriter, input: &str) -> String {
    run(r, input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

fn err(r: &Rewriter, input: &[u8]) -> RewriteError {
    match run(r, input) {
        Ok(out) => panic!(
            "{:?} was accepted as {out:?}",
            String::from_utf8_lossy(input)
        ),
        Err(e) => e,
    }
}

/// Every configuration, so each error case is checked on every code path.
fn all_configs() -> Vec<Rewriter> {
    vec![
        Rewriter::new(),
        Rewriter::new().camel_case(true),
        Rewriter::new().typename("T"),
        Rewriter::new().project(["a", "id"]),
        Rewriter::new()
            .camel_case(true)
            .typename("T")
            .project(["a", "aB", "id"]),
    ]
}

fn err_all(input: &[u8]) -> RewriteError {
    let configs = all_configs();
    let first = err(&configs[0], input);
    for r in &configs[1..] {
        assert_eq!(
            err(r, input),
            first,
            "{r:?} on {:?}",
            String::from_utf8_lossy(input)
        );
    }
    first
}

fn id() -> Rewriter {
    Rewriter::new()
}

fn camel() -> Rewriter {
    Rewriter::new().camel_case(true)
}

#[test]
fn identity_minifies_and_appends() {
    assert_eq!(
        ok(
            &id(),
            " { \"a\" :\t[ 1 ,\r\n2 ] , \"b\" : { } , \"c\":\"x y\" }\n"
        ),
        r#"{"a":[1,2],"b":{},"c":"x y"}"#
    );
    for scalar in [
        "1", "\"x\"", "null", "true", "false", "[]", "{}", "-0", "[[]]", "[{}]",
    ] {
        assert_eq!(ok(&id(), scalar), scalar);
        assert_eq!(ok(&id(), &format!(" \n{scalar}\t\r ")), scalar);
    }
    let mut out = b"[".to_vec();
    id().rewrite_into(b"1", &mut out).unwrap();
    out.push(b',');
    id().rewrite_into(b" {\"a\": 2} ", &mut out).unwrap();
    assert_eq!(out, br#"[1,{"a":2}"#);
}

#[test]
fn is_identity() {
    assert!(Rewriter::new().is_identity());
    assert!(
        Rewriter::default()
            .max_depth(4)
            .camel_case(false)
            .is_identity()
    );
    assert!(!Rewriter::new().camel_case(true).is_identity());
    assert!(!Rewriter::new().typename("T").is_identity());
    assert!(!Rewriter::new().project(["a"]).is_identity());
    assert!(!Rewriter::new().project(Vec::<String>::new()).is_identity());
}

#[test]
fn string_escapes_are_copied_verbatim() {
    let strings = [
        r#""a\nb""#,
        r#""\\""#,
        r#""\"""#,
        r#""\u00e9""#,
        r#""\u00E9""#,
        r#""\ud83d\ude00""#,
        r#""\uD83D\uDE00""#,
        "\"😀 é 中文\"",
        r#""\/\b\f\n\r\t\\\"\u0000\u001f""#,
        r#""a\\nb""#,
        r#""\\\\\"\\""#,
        "\"\u{7f}\"",
    ];
    for r in all_configs() {
        for s in strings {
            assert_eq!(ok(&r, s), s, "{r:?}");
            assert_eq!(ok(&r, &format!("[ {s} , {s} ]")), format!("[{s},{s}]"));
            let obj = ok(&r, &format!("{{ \"a\" : {s} }}"));
            assert!(obj.contains(&format!("\"a\":{s}")), "{r:?}: {obj}");
        }
    }
}

#[test]
fn special_bytes_at_every_position_of_long_strings() {
    // Exercise the eight-byte scanner at every alignment.
    for pos in 0..24 {
        for special in [
            r#"\n"#,
            r#"\""#,
            r#"\\"#,
            r#"\u00e9"#,
            "é",
            "😀",
            r#"\ud83d\ude00"#,
        ] {
            let body = format!("{}{special}{}", "x".repeat(pos), "y".repeat(pos % 5));
            let s = format!("\"{body}\"");
            assert_eq!(ok(&id(), &s), s);
            let obj = format!("{{\"{body}\":{s}}}");
            assert_eq!(ok(&id(), &obj), obj);
        }
        let mut bad = format!("\"{}", "x".repeat(pos)).into_bytes();
        bad.push(0x01);
        bad.extend_from_slice(b"zz\"");
        assert_eq!(
            err_all(&bad),
            RewriteError::ControlCharacter { offset: pos + 1 }
        );
        let mut bad = format!("\"{}", "x".repeat(pos)).into_bytes();
        bad.extend_from_slice(b"\xffzz\"");
        assert_eq!(err_all(&bad), RewriteError::InvalidUtf8 { offset: pos + 1 });
        let unterminated = format!("\"{}", "x".repeat(pos));
        assert_eq!(
            err_all(unterminated.as_bytes()),
            RewriteError::Truncated { offset: pos + 1 }
        );
    }
}

#[test]
fn numbers_are_copied_verbatim() {
    let big = format!("-{}", "9".repeat(400));
    let numbers = [
        "0",
        "-0",
        "1.0e+10",
        "1E5",
        "-0.0E-0",
        "1e-7",
        "3.141592653589793238462643383279",
        "0.5",
        "123456789012345678901234567890",
        &big,
    ];
    for n in numbers {
        assert_eq!(ok(&id(), n), n);
        assert_eq!(
            ok(&camel(), &format!("{{\"n_n\": {n} }}")),
            format!("{{\"nN\":{n}}}")
        );
        assert_eq!(ok(&id(), &format!("[{n},{n}]")), format!("[{n},{n}]"));
    }
}

#[test]
fn invalid_numbers() {
    let cases: &[(&[u8], RewriteError)] = &[
        (b"01", RewriteError::InvalidNumber { offset: 1 }),
        (b"[00]", RewriteError::InvalidNumber { offset: 2 }),
        (b"-01", RewriteError::InvalidNumber { offset: 2 }),
        (b"[-]", RewriteError::InvalidNumber { offset: 2 }),
        (b"[-a]", RewriteError::InvalidNumber { offset: 2 }),
        (b"[1.]", RewriteError::InvalidNumber { offset: 3 }),
        (b"[1.e5]", RewriteError::InvalidNumber { offset: 3 }),
        (b"[1e]", RewriteError::InvalidNumber { offset: 3 }),
        (b"[1e+]", RewriteError::InvalidNumber { offset: 4 }),
        (b"1.5.3", RewriteError::InvalidNumber { offset: 3 }),
        (b"1ee5", RewriteError::InvalidNumber { offset: 2 }),
        (b"1e5e", RewriteError::InvalidNumber { offset: 3 }),
        (b"1-2", RewriteError::InvalidNumber { offset: 1 }),
        (b"2+", RewriteError::InvalidNumber { offset: 1 }),
        (b"-", RewriteError::Truncated { offset: 1 }),
        (b"1.", RewriteError::Truncated { offset: 2 }),
        (b"1e", RewriteError::Truncated { offset: 2 }),
        (b"1E-", RewriteError::Truncated { offset: 3 }),
        (
            b"+1",
            RewriteError::Unexpected {
                byte: b'+',
                offset: 0,
            },
        ),
        (
            b".5",
            RewriteError::Unexpected {
                byte: b'.',
                offset: 0,
            },
        ),
        (
            b"[1,.5]",
            RewriteError::Unexpected {
                byte: b'.',
                offset: 3,
            },
        ),
        (
            b"{\"a\":1x}",
            RewriteError::Unexpected {
                byte: b'x',
                offset: 6,
            },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            &err_all(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn truncated() {
    let cases: &[&[u8]] = &[
        b"",
        b"  \n",
        b"{",
        b"[",
        b"{\"a\"",
        b"{\"a\" ",
        b"{\"a\":",
        b"{\"a\": ",
        b"{\"a\":1",
        b"{\"a\":1,",
        b"[1",
        b"[1,",
        b"[1 ",
        b"\"abc",
        b"\"\\",
        b"\"\\u",
        b"\"\\u12",
        b"\"\\ud83d",
        b"\"\\ud83d\\",
        b"\"\\ud83d\\u",
        b"\"\\ud83d\\ude0",
        b"tru",
        b"f",
        b"nul",
        b"\"\xc3",
        b"\"ab\xf0\x9f\x98",
        b"[{\"a\":[{\"b\":[",
        b"{\"a\":{}",
    ];
    for input in cases {
        assert_eq!(
            err_all(input),
            RewriteError::Truncated {
                offset: input.len()
            },
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn unexpected_bytes() {
    let u = |byte: u8, offset| RewriteError::Unexpected { byte, offset };
    let cases: &[(&[u8], RewriteError)] = &[
        (b"{\"a\" 1}", u(b'1', 5)),
        (b"[1 2]", u(b'2', 3)),
        (b"{,}", u(b',', 1)),
        (b"[,]", u(b',', 1)),
        (b"{\"a\":1,}", u(b'}', 7)),
        (b"[1,]", u(b']', 3)),
        (b"x", u(b'x', 0)),
        (b"{1:2}", u(b'1', 1)),
        (b"]", u(b']', 0)),
        (b"}", u(b'}', 0)),
        (b"[}", u(b'}', 1)),
        (b"{]", u(b']', 1)),
        (b"[1}", u(b'}', 2)),
        (b"{\"a\":1]", u(b']', 6)),
        (b"nul!", u(b'!', 3)),
        (b"trUe", u(b'U', 2)),
        (b"{\"a\":tru}", u(b'}', 8)),
        (b"{\"a\"::1}", u(b':', 5)),
        (b"{'a':1}", u(b'\'', 1)),
        (b"\xc3\xa9", u(0xc3, 0)),
        (b"[\x0b]", u(0x0b, 1)),
        (b"\xef\xbb\xbf{}", u(0xef, 0)),
    ];
    for (input, want) in cases {
        assert_eq!(
            &err_all(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn trailing_data() {
    let cases: &[(&[u8], usize)] = &[
        (b"1 2", 2),
        (b"{} x", 3),
        (b"[]]", 2),
        (b"\"a\"\"b\"", 3),
        (b"null,", 4),
        (b"{}{}", 2),
    ];
    for (input, offset) in cases {
        assert_eq!(
            err_all(input),
            RewriteError::TrailingData { offset: *offset }
        );
    }
}

#[test]
fn bad_escapes_and_surrogates() {
    let bad = |offset| RewriteError::BadEscape { offset };
    let lone = |offset| RewriteError::LoneSurrogate { offset };
    let cases: &[(&[u8], RewriteError)] = &[
        (br#""\x""#, bad(1)),
        (br#""\U00e9""#, bad(1)),
        (br#""\'""#, bad(1)),
        (br#""ab\u12G4""#, bad(3)),
        (br#""\u12""#, bad(1)),
        (br#""\ud83d\uZZZZ""#, bad(7)),
        (br#"{"k\q":1}"#, bad(3)),
        (br#""\ud83d""#, lone(1)),
        (br#""\ude00""#, lone(1)),
        (br#""\ud83dx""#, lone(1)),
        (br#""\ud83d\u0041""#, lone(1)),
        (br#""\ud83d\n""#, lone(1)),
        (br#""\ud83d\ud83d""#, lone(1)),
        (br#""x\ude00\ud83d""#, lone(2)),
        (br#"{"\udfff":1}"#, lone(2)),
    ];
    for (input, want) in cases {
        assert_eq!(
            &err_all(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn control_characters_and_utf8() {
    let cases: &[(&[u8], RewriteError)] = &[
        (b"\"a\x01b\"", RewriteError::ControlCharacter { offset: 2 }),
        (b"\"a\tb\"", RewriteError::ControlCharacter { offset: 2 }),
        (b"\"a\nb\"", RewriteError::ControlCharacter { offset: 2 }),
        (
            b"{\"k\x00\":1}",
            RewriteError::ControlCharacter { offset: 3 },
        ),
        (
            b"\"\xc3\xa9\x1f\"",
            RewriteError::ControlCharacter { offset: 3 },
        ),
        (b"\"\xff\"", RewriteError::InvalidUtf8 { offset: 1 }),
        (b"\"ab\xc3\x28\"", RewriteError::InvalidUtf8 { offset: 3 }),
        (b"\"\xc0\xaf\"", RewriteError::InvalidUtf8 { offset: 1 }),
        (b"\"\xed\xa0\x80\"", RewriteError::InvalidUtf8 { offset: 1 }),
        (
            b"\"\xf4\x90\x80\x80\"",
            RewriteError::InvalidUtf8 { offset: 1 },
        ),
        (b"\"\xc3\"", RewriteError::InvalidUtf8 { offset: 1 }),
        (b"\"\xc3\\n\"", RewriteError::InvalidUtf8 { offset: 1 }),
        (
            b"\"\xc3\xa9\xe2\x82\xac\x80\"",
            RewriteError::InvalidUtf8 { offset: 6 },
        ),
        (b"{\"\xfe\":1}", RewriteError::InvalidUtf8 { offset: 2 }),
        // The first problem wins.
        (b"\"\xff\x01\"", RewriteError::InvalidUtf8 { offset: 1 }),
        (
            b"\"\xc3\xa9\x01\xff\"",
            RewriteError::ControlCharacter { offset: 3 },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            &err_all(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // DEL and all valid multi-byte forms are fine.
    let s = "\"\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}\"";
    assert_eq!(ok(&id(), s), s);
}

#[test]
fn depth_limit() {
    fn nested(depth: usize) -> String {
        let mut s = String::new();
        for k in 0..depth {
            s.push_str(if k % 2 == 0 { "[" } else { "{\"k\":" });
        }
        s.push('1');
        for k in (0..depth).rev() {
            s.push(if k % 2 == 0 { ']' } else { '}' });
        }
        s
    }
    for r in all_configs() {
        let at = nested(DEFAULT_MAX_DEPTH);
        run(&r, at.as_bytes()).unwrap();
        let past = nested(DEFAULT_MAX_DEPTH + 1);
        let offset = past.rfind(['[', '{']).unwrap();
        assert_eq!(
            err(&r, past.as_bytes()),
            RewriteError::TooDeep {
                offset,
                limit: DEFAULT_MAX_DEPTH
            }
        );
    }
    let r = Rewriter::new().max_depth(3);
    assert_eq!(ok(&r, "[[[1]],{\"a\":[]}]"), "[[[1]],{\"a\":[]}]");
    assert_eq!(
        err(&r, b"[[[[1]]]]"),
        RewriteError::TooDeep {
            offset: 3,
            limit: 3
        }
    );
    assert_eq!(
        err(&r, b"[{\"a\":[{}]}]"),
        RewriteError::TooDeep {
            offset: 7,
            limit: 3
        }
    );
    let r = Rewriter::new().max_depth(0);
    assert_eq!(ok(&r, "1"), "1");
    assert_eq!(
        err(&r, b"[]"),
        RewriteError::TooDeep {
            offset: 0,
            limit: 0
        }
    );
    // Past the inline kind stack: alternate kinds so a wrong bit would be noticed.
    let r = Rewriter::new().camel_case(true).max_depth(1000);
    let deep = nested(999);
    assert_eq!(ok(&r, &deep), deep);
    assert_eq!(
        err(&r, nested(1001).as_bytes()),
        RewriteError::TooDeep {
            offset: nested(1001).rfind(['[', '{']).unwrap(),
            limit: 1000
        }
    );
    // The limit is checked before the bracket is read, whatever follows.
    assert!(matches!(
        err(&Rewriter::new(), "[".repeat(100_000).as_bytes()),
        RewriteError::TooDeep { .. }
    ));
}

#[test]
fn camel_rule() {
    let cases = [
        ("user_id", "userId"),
        ("id", "id"),
        ("", ""),
        ("_", "_"),
        ("__", "__"),
        ("_id", "_id"),
        ("__typename", "__typename"),
        ("___a_b", "___aB"),
        ("line_1", "line1"),
        ("address_line_1", "addressLine1"),
        ("a_1_b", "a1B"),
        ("a_b_c", "aBC"),
        ("a__b", "a__b"),
        ("a___b_c", "a___bC"),
        ("total_", "total_"),
        ("total__", "total__"),
        ("a_B", "a_B"),
        ("userID", "userID"),
        ("already_camelCase", "alreadyCamelCase"),
        ("é_b", "éB"),
        ("a_é", "a_é"),
        ("a_-b", "a_-b"),
        ("a b_c", "a bC"),
        ("a\"_b", "a\"B"),
    ];
    for (input, want) in cases {
        assert_eq!(snake_to_camel(input), want, "{input:?}");
        // Idempotent.
        assert_eq!(snake_to_camel(want), want, "{want:?}");
        assert_eq!(needs_camel(input.as_bytes()), input != want);
    }
    assert!(matches!(snake_to_camel("plain"), Cow::Borrowed("plain")));
}

#[test]
fn camel_case_at_every_depth_values_untouched() {
    let input = r#"{ "user_id": 1, "first_name": "snake_case_value", "tags": ["a_b", {"tag_id": 2, "sub_items": [{"x_y": [], "_raw": null}]}], "nested_obj": {"inner_key": {"deep_key_1": "v_v"}}, "_id": "x", "__typename": "Keep_me" }"#;
    assert_eq!(
        ok(&camel(), input),
        r#"{"userId":1,"firstName":"snake_case_value","tags":["a_b",{"tagId":2,"subItems":[{"xY":[],"_raw":null}]}],"nestedObj":{"innerKey":{"deepKey1":"v_v"}},"_id":"x","__typename":"Keep_me"}"#
    );
    assert_eq!(
        ok(&camel(), r#"[{"a_b":1},[{"c_d":{"e_f":2}}]]"#),
        r#"[{"aB":1},[{"cD":{"eF":2}}]]"#
    );
    // Duplicates, and keys that collide after conversion, are all kept in order.
    assert_eq!(
        ok(&camel(), r#"{"a_b":1,"aB":2,"a_b":3}"#),
        r#"{"aB":1,"aB":2,"aB":3}"#
    );
    assert_eq!(ok(&id(), r#"{"a":1,"a":2}"#), r#"{"a":1,"a":2}"#);
}

#[test]
fn escaped_keys_are_decoded_converted_and_written_back() {
    let cases = [
        (r#"{"user\u005fid":1}"#, r#"{"userId":1}"#),
        (r#"{"user\u005Fid":1}"#, r#"{"userId":1}"#),
        (r#"{"\u0061bc":1}"#, r#"{"\u0061bc":1}"#), // unchanged: original bytes
        (r#"{"a\"b":1}"#, r#"{"a\"b":1}"#),
        (r#"{"a\"_b":1}"#, r#"{"a\"B":1}"#),
        (r#"{"x_y\n":1}"#, r#"{"xY\n":1}"#),
        (r#"{"x_y\u000A\u0001\/":1}"#, r#"{"xY\n\u0001/":1}"#),
        (r#"{"x_y\\_z":1}"#, r#"{"xY\\Z":1}"#),
        (r#"{"\ud83d\ude00_b":1}"#, r#"{"😀B":1}"#),
        ("{\"é_b\":1}", "{\"éB\":1}"),
        (r#"{"a\u005f\u005fb":1}"#, r#"{"a\u005f\u005fb":1}"#),
    ];
    for (input, want) in cases {
        assert_eq!(ok(&camel(), input), want, "{input}");
        // Same conversion in a nested object.
        let nested = format!("[{{\"k\":{input}}}]");
        assert_eq!(ok(&camel(), &nested), format!("[{{\"k\":{want}}}]"));
    }
}

#[test]
fn typename_only_on_the_top_level_object() {
    let r = Rewriter::new().typename("User");
    assert_eq!(
        ok(
            &r,
            r#"{ "id": 1, "friend": {"id": 2, "pets": [{"name": "x"}]}, "list": [{}] }"#
        ),
        r#"{"__typename":"User","id":1,"friend":{"id":2,"pets":[{"name":"x"}]},"list":[{}]}"#
    );
    assert_eq!(ok(&r, "{}"), r#"{"__typename":"User"}"#);
    assert_eq!(ok(&r, " { } "), r#"{"__typename":"User"}"#);
    // An existing top-level `__typename` is replaced, wherever it is, however it is spelt;
    // nested ones are data and stay.
    assert_eq!(
        ok(&r, r#"{"__typename":"Old","a":{"__typename":"Inner"}}"#),
        r#"{"__typename":"User","a":{"__typename":"Inner"}}"#
    );
    assert_eq!(
        ok(&r, r#"{"a":1,"__typename":"Old"}"#),
        r#"{"__typename":"User","a":1}"#
    );
    assert_eq!(
        ok(&r, r#"{"a":1,"\u005f_typename":"Old","b":2}"#),
        r#"{"__typename":"User","a":1,"b":2}"#
    );
    // Non-object rows are not touched.
    for row in ["[{\"a\":1}]", "1", "\"s\"", "null", "[]"] {
        assert_eq!(ok(&r, row), row);
    }
    // The name is escaped once, at build time.
    let r = Rewriter::new().typename("a\"b\\c\n");
    assert_eq!(ok(&r, "{}"), r#"{"__typename":"a\"b\\c\n"}"#);
    // Without a type name, a `__typename` key is ordinary data.
    assert_eq!(ok(&id(), r#"{"__typename":"X"}"#), r#"{"__typename":"X"}"#);
}

#[test]
fn projection_is_exact_and_top_level_only() {
    let r = Rewriter::new().project(["id"]);
    assert_eq!(
        ok(&r, r#"{"idx":1,"i":2,"id":3,"ID":4,"id ":5,"Id":6}"#),
        r#"{"id":3}"#
    );
    assert_eq!(ok(&r, r#"{"a":1}"#), "{}");
    assert_eq!(
        ok(&r, r#"{"a":{"id":1},"id":{"id":2,"a":[{"idx":0}]}}"#),
        r#"{"id":{"id":2,"a":[{"idx":0}]}}"#
    );
    // First, middle, last and all dropped; whitespace and nested content in dropped members.
    let r = Rewriter::new().project(["b", "d"]);
    let row =
        r#" { "a" : [ 1, { "b": 2 } ] , "b" : { "x" : 1 } , "c" : "s" , "d" : [ ] , "e" : null } "#;
    assert_eq!(ok(&r, row), r#"{"b":{"x":1},"d":[]}"#);
    assert_eq!(ok(&r, r#"{"b":1,"c":2}"#), r#"{"b":1}"#);
    assert_eq!(ok(&r, r#"{"c":2,"d":1}"#), r#"{"d":1}"#);
    assert_eq!(ok(&r, r#"{"x":1,"y":2}"#), "{}");
    assert_eq!(ok(&r, r#"{"b":1,"b":2}"#), r#"{"b":1,"b":2}"#);
    // Empty projection keeps nothing.
    assert_eq!(
        ok(&Rewriter::new().project(Vec::<&str>::new()), r#"{"a":1}"#),
        "{}"
    );
    // Matching is on the output key.
    let r = Rewriter::new()
        .camel_case(true)
        .project(["userId", "user_name"]);
    assert_eq!(
        ok(&r, r#"{"user_id":1,"user_name":2,"userName":3}"#),
        r#"{"userId":1}"#
    );
    let r = Rewriter::new().project(["user_id"]);
    assert_eq!(ok(&r, r#"{"user_id":1,"userId":2}"#), r#"{"user_id":1}"#);
    // Escaped keys are matched on their decoded text and copied as written.
    let r = Rewriter::new().project(["id", "a\"b"]);
    assert_eq!(
        ok(&r, r#"{"\u0069d":1,"a\"b":2,"a\u0022c":3}"#),
        r#"{"\u0069d":1,"a\"b":2}"#
    );
    // Non-object rows pass through.
    assert_eq!(
        ok(&Rewriter::new().project(["a"]), r#"[{"b":1}]"#),
        r#"[{"b":1}]"#
    );
    // An escaped top-level key is decided on before its value (which has escaped keys of
    // its own) is parsed. Found by the property tests.
    let r = Rewriter::new().camel_case(true).project(["A", "bC"]);
    assert_eq!(
        ok(
            &r,
            r#"{"\u0041":[{"a\u005f_0_":null}],"b\u005fc":{"\u0078_y":1},"d":2}"#
        ),
        r#"{"\u0041":[{"a\u005f_0_":null}],"bC":{"xY":1}}"#
    );
}

#[test]
fn projection_of_long_names_and_many_fields() {
    // Same length, same first and last eight bytes: only the middle differs.
    let (x, y) = ("abcdefgh_X_ijklmnop", "abcdefgh_Y_ijklmnop");
    let row = format!(r#"{{"{x}":1,"{y}":2,"abcdefgh_ijklmnop":3}}"#);
    for extra in [0, 20] {
        let mut fields: Vec<String> = (0..extra).map(|k| format!("f{k}")).collect();
        fields.push(y.to_string());
        fields.push("abcdefgh__ijklmnop".to_string());
        let r = Rewriter::new().project(&fields);
        assert_eq!(
            ok(&r, &row),
            format!(r#"{{"{y}":2}}"#),
            "{extra} extra fields"
        );
        fields.push(x.to_string());
        let r = Rewriter::new().project(&fields);
        assert_eq!(ok(&r, &row), format!(r#"{{"{x}":1,"{y}":2}}"#));
    }
    // Short names of every length, with many fields.
    let names: Vec<String> = (0..20).map(|k| "k".repeat(k)).collect();
    let row = format!(
        "{{{}}}",
        names
            .iter()
            .map(|n| format!("\"{n}\":0"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let every_other: Vec<&String> = names.iter().step_by(2).collect();
    let want = format!(
        "{{{}}}",
        every_other
            .iter()
            .map(|n| format!("\"{n}\":0"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(ok(&Rewriter::new().project(&every_other), &row), want);
}

#[test]
fn camel_typename_and_projection_together() {
    let r = Rewriter::new().camel_case(true).typename("Post").project([
        "postId",
        "authorInfo",
        "__typename",
    ]);
    let row = r#"{"__typename": "Old", "post_id": 9, "body_text": "a\nb", "author_info": {"user_id": 1, "post_id": 2}}"#;
    assert_eq!(
        ok(&r, row),
        r#"{"__typename":"Post","postId":9,"authorInfo":{"userId":1,"postId":2}}"#
    );
    assert_eq!(ok(&r, r#"{"x":1}"#), r#"{"__typename":"Post"}"#);
    // Project before camel_case: the order of builder calls does not matter.
    let r2 = Rewriter::new()
        .project(["postId"])
        .typename("Post")
        .camel_case(true);
    assert_eq!(ok(&r2, row), r#"{"__typename":"Post","postId":9}"#);
}

#[test]
fn errors_after_output_was_written_restore_the_buffer() {
    let r = Rewriter::new()
        .camel_case(true)
        .typename("T")
        .project(["aB"]);
    for input in [
        &br#"{"a_b": "x", "c_d": [1, 2, {"e": }]}"#[..],
        br#"{"c": 1, "a_b": "x" "#,
        br#"{"a_b": [1, 2, 3], "z": "\ud800"}"#,
        br#"{"a_b": 1} 2"#,
    ] {
        err(&r, input);
        err(&id(), input);
    }
}

#[test]
fn empty_containers() {
    for s in [
        "[]",
        "{}",
        "[[],{}]",
        "[{},[]]",
        "{\"a\":{},\"b_c\":[]}",
        "[[[]]]",
    ] {
        assert_eq!(ok(&id(), s), s);
    }
    assert_eq!(ok(&id(), "[ [ ] , { } ]"), "[[],{}]");
    assert_eq!(
        ok(&camel(), "{\"a\":{},\"b_c\":[]}"),
        "{\"a\":{},\"bC\":[]}"
    );
    let r = Rewriter::new()
        .camel_case(true)
        .typename("T")
        .project(["bC"]);
    assert_eq!(
        ok(&r, "{\"a\":{},\"b_c\":[]}"),
        "{\"__typename\":\"T\",\"bC\":[]}"
    );
    assert_eq!(ok(&r, "[{}]"), "[{}]");
}

#[test]
fn error_messages_are_specific() {
    let msgs = [
        RewriteError::Truncated { offset: 3 }.to_string(),
        RewriteError::Unexpected {
            byte: b'x',
            offset: 1,
        }
        .to_string(),
        RewriteError::Unexpected { byte: 0, offset: 1 }.to_string(),
        RewriteError::TooDeep {
            offset: 4,
            limit: 3,
        }
        .to_string(),
    ];
    assert_eq!(
        msgs[0],
        "truncated JSON: input ends at offset 3 in the middle of a value"
    );
    assert_eq!(msgs[1], "unexpected 'x' at offset 1");
    assert_eq!(msgs[2], "unexpected byte 0x00 at offset 1");
    assert_eq!(msgs[3], "nesting deeper than 3 levels at offset 4");
}
