//! Parser and helper tests. Expected texts and orders come from Postfix's sources
//! (dict_regexp.c, dict_pcre.c, cidr_match.c, dict_inline.c, dict_static.c, extpar.c,
//! split_addr.c, quote_822_local.c); tests/tables.rs checks answers against postmap.

use super::regex::{Pcre, Posix, RegexTable};
use super::*;

fn regexp(src: &str) -> RegexTable<Posix> {
    RegexTable::parse("t", src.as_bytes())
}

fn pcre(src: &str) -> RegexTable<Pcre> {
    RegexTable::parse("t", src.as_bytes())
}

fn s(v: Option<Vec<u8>>) -> Option<String> {
    v.map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[test]
fn logical_lines_join_and_skip() {
    let mut w = Vec::new();
    let l = text::logical_lines(b"  leading\n# c\na b\n  c\n\n# x\n\td\ne\n", &mut w, "f");
    assert_eq!(l, vec![(3, b"a b  c\td".to_vec()), (8, b"e".to_vec())]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("logical line must not start with whitespace"));
}

#[test]
fn map_list_split_keeps_braces() {
    assert_eq!(
        split_map_list("hash:/a, lmdb:/b\ttexthash:/c,,inline:{ a=b, {c = d e} } static:{ x y }"),
        vec![
            "hash:/a",
            "lmdb:/b",
            "texthash:/c",
            "inline:{ a=b, {c = d e} }",
            "static:{ x y }"
        ]
    );
    // An unbalanced brace takes the rest, as mystrtokq() does.
    assert_eq!(split_map_list("static:{ a, b"), vec!["static:{ a, b"]);
}

#[test]
fn templates() {
    use text::Piece::*;
    assert_eq!(
        text::parse_template(b"a$1${2}$(3)$$b").unwrap_or_default(),
        vec![
            Literal(b"a".to_vec()),
            Group(1),
            Group(2),
            Group(3),
            Literal(b"$b".to_vec())
        ]
    );
    assert!(text::parse_template(b"$0").is_err());
    assert!(text::parse_template(b"$x").is_err());
    assert!(text::parse_template(b"${1").is_err());
    assert!(text::parse_template(b"a $").is_err());
    assert_eq!(text::parse_template(b"").unwrap_or_default(), vec![]);
}

fn open(spec: &str) -> Result<Maps, TableError> {
    Maps::open_strict("test", spec, &MapsOptions::default())
}

#[test]
fn static_syntax() {
    let m = open("static:{ two words }").expect("static");
    assert_eq!(
        m.find("anything").ok().flatten().as_deref(),
        Some("two words")
    );
    let m = open("static:plain").expect("static");
    assert_eq!(m.find("x").ok().flatten().as_deref(), Some("plain"));
    let e = open("static:{ open").expect_err("unbalanced");
    assert_eq!(e.class, ErrorClass::Config);
    assert_eq!(
        e.message,
        "bad static:name syntax: missing '}' in \"{ open\""
    );
    let e = open("static:{a}b").expect_err("trailing text");
    assert_eq!(
        e.message,
        "bad static:name syntax: syntax error after '}' in \"{a}b\""
    );
}

#[test]
fn inline_syntax() {
    let m = open("inline:{ Key=Value, {k2 = v w}, {\"q k\"=q} }").expect("inline");
    assert_eq!(m.find("\"Q K\"").ok().flatten().as_deref(), Some("q"));
    // Quotes do not protect spaces from the list splitter, only braces do.
    let e = open("inline:{ \"q k\"=q }").expect_err("split quote");
    assert!(e.message.starts_with("unbalanced '\"'"), "{e}");
    assert_eq!(m.find("KEY").ok().flatten().as_deref(), Some("Value"));
    assert_eq!(m.find("k2").ok().flatten().as_deref(), Some("v w"));
    assert_eq!(m.find("\"q").ok().flatten(), None);
    let e = open("inline:{}").expect_err("empty");
    assert_eq!(
        e.message,
        "bad syntax: \"inline:{}\"; need \"inline:{name=value...}\""
    );
    let e = open("inline:{ , }").expect_err("empty");
    assert_eq!(
        e.message,
        "empty table: \"inline:{ , }\"; need \"inline:{name=value...}\""
    );
    let e = open("inline:{a}").expect_err("no =");
    assert_eq!(
        e.message,
        "missing '=' after attribute name: \"inline:{a}\"; need \"inline:{name=value...}\""
    );
    let e = open("inline:a=b").expect_err("no braces");
    assert_eq!(e.class, ErrorClass::Config);
    // A key with an empty value is found, but maps_find() calls that a config error.
    let m = open("inline:{a=}").expect("inline");
    assert_eq!(
        m.find("a").expect_err("empty value").class,
        ErrorClass::Config
    );
}

#[test]
fn open_errors_and_types() {
    assert_eq!(
        open("nosuch:x").expect_err("type").message,
        "unsupported dictionary type: nosuch"
    );
    assert_eq!(
        Maps::open("t", "justaname", &MapsOptions::default())
            .expect_err("no type")
            .message,
        "open dictionary: expecting \"type:name\" form instead of \"justaname\""
    );
    // Lenient open keeps going: the good table answers, the bad one fails when reached.
    let m = Maps::open("t", "static:yes nosuch:x", &MapsOptions::default()).expect("open");
    assert_eq!(m.open_errors().len(), 1);
    assert_eq!(m.find("k").ok().flatten().as_deref(), Some("yes"));
    let m = Maps::open("t", "nosuch:x static:yes", &MapsOptions::default()).expect("open");
    let e = m.find("k").expect_err("stand-in fails");
    assert_eq!(
        e.message,
        "nosuch:x lookup error for \"k\": nosuch:x is unavailable. unsupported dictionary type: nosuch"
    );
    let m = open("fail:x").expect("fail");
    assert_eq!(m.find("k").expect_err("fail").class, ErrorClass::Temporary);
    // Empty keys are never looked up (maps_find's workaround).
    assert_eq!(
        open("static:v").expect("static").find("").ok().flatten(),
        None
    );
}

#[test]
fn proxy_opens_inner_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("t");
    std::fs::write(&p, "Key value\n").expect("write");
    let m = open(&format!("proxy:texthash:{}", p.display())).expect("proxy");
    assert_eq!(m.find("KEY").ok().flatten().as_deref(), Some("value"));
}

#[test]
fn texthash_duplicates_and_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("t");
    std::fs::write(&p, "a 1\nA 2\n").expect("write");
    let e = open(&format!("texthash:{}", p.display())).expect_err("duplicate");
    assert!(e.message.ends_with("line 2: duplicate entry: \"A\""), "{e}");
    std::fs::write(&p, "lonely\n\"un balanced x\nok  v  w  \nalias: x\n").expect("write");
    let m = open(&format!("texthash:{}", p.display())).expect("texthash");
    assert_eq!(m.find("ok").ok().flatten().as_deref(), Some("v  w"));
    assert_eq!(m.warnings().len(), 3, "{:?}", m.warnings());
    let e = open(&format!("texthash:{}/missing", dir.path().display())).expect_err("missing");
    assert_eq!(e.class, ErrorClass::Temporary);
    assert!(
        e.message.starts_with("open database ")
            && e.message.ends_with(": No such file or directory")
    );
}

#[test]
fn regexp_rules() {
    let t = regexp(
        "/^(a)(b)?c$/ one=$1 two=$2.\n\
         /x/!/y/ x-not-y\n\
         /CASE/i exact-case\n\
         !/@/ no-at\n\
         if /^if/\n\
         /z/ if-z\n\
         endif\n\
         /^if/ after-if\n",
    );
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert_eq!(s(t.lookup_bytes(b"ac")), Some("one=a two=.".into()));
    assert_eq!(s(t.lookup_bytes(b"ABC")), Some("one=A two=B.".into()));
    assert_eq!(s(t.lookup_bytes(b"x@")), Some("x-not-y".into()));
    assert_eq!(s(t.lookup_bytes(b"xy@")), None);
    assert_eq!(s(t.lookup_bytes(b"case@")), None);
    assert_eq!(s(t.lookup_bytes(b"CASE@")), Some("exact-case".into()));
    assert_eq!(s(t.lookup_bytes(b"plain")), Some("no-at".into()));
    assert_eq!(s(t.lookup_bytes(b"ifz@")), Some("if-z".into()));
    assert_eq!(s(t.lookup_bytes(b"xz@")), Some("x-not-y".into()));
    assert_eq!(s(t.lookup_bytes(b"if@")), Some("after-if".into()));
}

#[test]
fn regexp_bad_rules_are_skipped() {
    let t = regexp(
        "/open\n\
         /a/q x\n\
         !/(a)/ $1\n\
         /(a)/ $2\n\
         /a/ $x\n\
         /(/ bad\n\
         endif\n\
         bogus\n\
         /a/\n\
         if /never/\n\
         /n/ inside\n",
    );
    let w = t.warnings.join("\n");
    for want in [
        "regexp map t, line 1: no closing regexp delimiter \"/\": skipping this rule",
        "regexp map t, line 2: unknown regexp option \"q\": skipping this rule",
        "regexp map t, line 3: $number found in negative match replacement text: skipping this rule",
        "regexp map t, line 4: out of range replacement index \"2\": skipping this rule",
        "regexp map t, line 5: bad replacement syntax: skipping this rule",
        "regexp map t, line 7: ignoring ENDIF without matching IF",
        "regexp map t, line 8: ignoring unrecognized request",
        "regexp map t, line 9: no replacement text: using empty string",
        "regexp map t, line 10: IF has no matching ENDIF",
    ] {
        assert!(w.contains(want), "missing {want:?} in\n{w}");
    }
    assert!(w.contains("regexp map t, line 6: "), "{w}");
    // `/a/` with no text answers an empty string; the open IF swallows the rest.
    assert_eq!(s(t.lookup_bytes(b"a")), Some(String::new()));
    assert_eq!(s(t.lookup_bytes(b"n")), None);
}

#[test]
fn pcre_rules_and_flags() {
    let t = pcre(
        "/^(?<name>a+)(b)?$/ $1-$2\n\
         /^x y$/x spaced\n\
         /^xy$/x extended\n\
         /^Up$/i exact\n\
         /^a.c$/ dotall\n\
         /^m$/m multiline\n\
         /^t$/E dollar-endonly\n\
         /^k/A anchored\n\
         /^(u+?)u*$/U $1\n\
         /x/!/y/ not-pcre-syntax\n",
    );
    let w = t.warnings.join("\n");
    assert!(
        w.contains("pcre map t, line 10: unknown regexp option \"!\": skipping this rule"),
        "{w}"
    );
    assert_eq!(s(t.lookup_bytes(b"aab")), Some("aa-b".into()));
    assert_eq!(s(t.lookup_bytes(b"AA")), Some("AA-".into()));
    assert_eq!(s(t.lookup_bytes(b"x y")), None);
    // x turns extended mode on, so `^x y$` is `^xy$` and answers first.
    assert_eq!(s(t.lookup_bytes(b"xy")), Some("spaced".into()));
    assert_eq!(s(t.lookup_bytes(b"up")), None);
    assert_eq!(s(t.lookup_bytes(b"Up")), Some("exact".into()));
    assert_eq!(s(t.lookup_bytes(b"a\nc")), Some("dotall".into()));
    assert_eq!(s(t.lookup_bytes(b"q\nm")), Some("multiline".into()));
    assert_eq!(s(t.lookup_bytes(b"t\n")), None);
    assert_eq!(s(t.lookup_bytes(b"k1")), Some("anchored".into()));
    // U swaps greediness: `u+?` becomes greedy.
    assert_eq!(s(t.lookup_bytes(b"uuu")), Some("uuu".into()));
    let bad = pcre("/(/ x\n");
    assert!(
        bad.warnings[0].starts_with("pcre map t, line 1: error in regex at offset 1: "),
        "{:?}",
        bad.warnings
    );
}

#[test]
fn cidr_patterns() {
    let ok = |p: &str| Cidr::parse(p).map(|c| c.bits());
    assert_eq!(ok("10.0.0.0/8"), Ok(8));
    assert_eq!(ok("[2001:db8::]/32"), Ok(32));
    assert_eq!(ok("[2001:db8::/32]"), Ok(32));
    assert_eq!(ok("::1"), Ok(128));
    assert_eq!(ok("1.2.3.4"), Ok(32));
    assert_eq!(ok("0.0.0.0/0"), Ok(0));
    assert_eq!(
        ok("10.1.2.3/8"),
        Err("non-null host address bits in \"10.1.2.3/8\", perhaps you should use \"10.0.0.0/8\" instead".into())
    );
    assert_eq!(
        ok("10.0.0.0/33"),
        Err("bad mask length in \"10.0.0.0/33\"".into())
    );
    assert_eq!(
        ok("10.0.0.0/x"),
        Err("bad mask value in \"10.0.0.0/x\"".into())
    );
    assert_eq!(
        ok("10.0.0/8"),
        Err("bad network value in \"10.0.0/8\"".into())
    );
    assert_eq!(ok("host"), Err("bad address pattern: \"host\"".into()));
    assert_eq!(
        ok("[1.2.3.4"),
        Err("missing ']' character after \"[1.2.3.4\"".into())
    );
    assert_eq!(ok("[1.2.3.4]x"), Err("garbage after \"[1.2.3.4]\"".into()));

    let t = cidr::CidrTable::parse(
        "t",
        b"1.2.3.4 exact\n!10.0.0.0/8 not-ten\nIF 10.0.0.0/8\n10.1.0.0/16 ten-one\nENDIF\n\
          2001:db8::/32 v6\n10.1.2.3/8 bad\n5.6.7.8\nendif\nif 9.9.9.9 junk\n",
    );
    assert_eq!(t.lookup_str("1.2.3.4"), Some("exact"));
    assert_eq!(t.lookup_str("11.0.0.1"), Some("not-ten"));
    assert_eq!(t.lookup_str("10.1.9.9"), Some("ten-one"));
    assert_eq!(t.lookup_str("10.2.0.1"), None);
    assert_eq!(t.lookup_str("2001:DB8::1"), Some("v6"));
    assert_eq!(t.lookup_str("not an address"), None);
    let w = t.warnings.join("\n");
    assert!(
        w.contains("cidr map t, line 7: non-null host address bits"),
        "{w}"
    );
    assert!(
        w.contains("cidr map t, line 8: no lookup result: skipping this rule"),
        "{w}"
    );
    assert!(
        w.contains("cidr map t, line 9: ENDIF without IF: skipping this rule"),
        "{w}"
    );
    assert!(
        w.contains(
            "cidr map t, line 10: bad address pattern: \"9.9.9.9 junk\": skipping this rule"
        ),
        "{w}"
    );
}

#[test]
fn address_helpers() {
    let o = AddrOptions {
        recipient_delimiter: "+-".into(),
        ..Default::default()
    };
    let st = |a: &str| strip_extension(a, &o);
    assert_eq!(st("user+ext@d"), Some(("user@d".into(), "+ext".into())));
    assert_eq!(st("user-a+b@d"), Some(("user@d".into(), "-a+b".into())));
    assert_eq!(st("+ext@d"), None);
    assert_eq!(st("user@d+x"), None);
    // Only the whole local part is special: postmaster+x is split, mailer-daemon is not.
    assert_eq!(
        st("PostMaster+x@d"),
        Some(("PostMaster@d".into(), "+x".into()))
    );
    assert_eq!(st("MAILER-DAEMON@d"), None);
    assert_eq!(st("owner-list@d"), None);
    assert_eq!(st("list-request@d"), None);
    assert_eq!(st("Double-Bounce@d"), None);
    assert_eq!(st("noext"), None);
    let plus = AddrOptions {
        recipient_delimiter: "+".into(),
        ..Default::default()
    };
    assert_eq!(
        strip_extension("owner-x+y@d", &plus),
        Some(("owner-x@d".into(), "+y".into()))
    );

    assert_eq!(quote_822_local("user@d", false), "user@d");
    assert_eq!(quote_822_local("odd user@d", false), "\"odd user\"@d");
    assert_eq!(quote_822_local("a\"b@d", false), "\"a\\\"b\"@d");
    assert_eq!(quote_822_local("a..b@d", false), "\"a..b\"@d");
    assert_eq!(quote_822_local("a@b", true), "\"a@b\"");
    assert_eq!(quote_822_local("ünï@d", false), "ünï@d");
    assert_eq!(
        quote_822_local("@route:odd user@d", false),
        "@route:\"odd user\"@d"
    );
}

/// Corrupt or hostile cdb files: lookups fail or miss, never panic.
#[test]
fn cdb_corruption_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("c");
    let mut seed: u64 = 1;
    for round in 0..200 {
        let mut data = Vec::new();
        let len = 2048 + (round * 37) % 600;
        for _ in 0..len {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            data.push((seed >> 56) as u8);
        }
        // Make some header slots point inside the file with huge lengths.
        if round % 2 == 0 {
            for slot in 0..256usize {
                let pos = (2048 + slot) as u32;
                data[slot * 8..slot * 8 + 4].copy_from_slice(&pos.to_le_bytes());
                data[slot * 8 + 4..slot * 8 + 8]
                    .copy_from_slice(&(u32::MAX - slot as u32).to_le_bytes());
            }
        }
        std::fs::write(format!("{}.cdb", base.display()), &data).expect("write");
        let m = Maps::open(
            "t",
            &format!("cdb:{}", base.display()),
            &MapsOptions::default(),
        )
        .expect("open");
        for k in ["a", "key", "user@example.com", "ü"] {
            let _ = m.find(k);
        }
    }
    std::fs::write(format!("{}.cdb", base.display()), b"short").expect("write");
    assert!(open(&format!("cdb:{}", base.display())).is_err());
}

#[test]
fn key_folding_per_type() {
    // Fixed tables fold; pattern tables see the key as given.
    let dir = tempfile::tempdir().expect("tempdir");
    let re = dir.path().join("re");
    std::fs::write(&re, "/^ABC$/i upper-only\n").expect("write");
    let m = open(&format!("inline:{{abc=inline}} regexp:{}", re.display())).expect("open");
    assert_eq!(m.find("ABC").ok().flatten().as_deref(), Some("inline"));
    let m = open(&format!("regexp:{} inline:{{abc=inline}}", re.display())).expect("open");
    assert_eq!(m.find("ABC").ok().flatten().as_deref(), Some("upper-only"));
    assert_eq!(m.find("abc").ok().flatten().as_deref(), Some("inline"));
    let ascii = Maps::open_strict(
        "t",
        "inline:{straße=x}",
        &MapsOptions {
            utf8: false,
            fold: true,
        },
    )
    .expect("open");
    assert_eq!(ascii.find("STRAßE").ok().flatten().as_deref(), Some("x"));
    assert_eq!(ascii.find("STRASSE").ok().flatten(), None);
    let utf8 = open("inline:{straße=x}").expect("open");
    assert_eq!(utf8.find("STRASSE").ok().flatten().as_deref(), Some("x"));
    let nofold = Maps::open_strict(
        "t",
        "inline:{Abc=x}",
        &MapsOptions {
            utf8: true,
            fold: false,
        },
    )
    .expect("open");
    assert_eq!(nofold.find("abc").ok().flatten(), None);
    assert_eq!(nofold.find("Abc").ok().flatten().as_deref(), Some("x"));
}

#[test]
fn match_list_syntax() {
    let l = MatchList::new("p", "a, !b #c d", false, true).expect("list");
    assert!(l.warnings()[0].contains("comment at end of line is not supported"));
    assert!(l.matches_string("A").unwrap_or(false));
    assert!(!l.matches_string("b").unwrap_or(true));
    assert!(!l.matches_string("d").unwrap_or(true));
    let l = MatchList::new("p", "!!x, inline:{y=1}", false, true).expect("list");
    assert!(l.matches_string("x").unwrap_or(false));
    assert!(l.matches_string("Y").unwrap_or(false));
    let l = MatchList::new("p", "[1.2.3.4] [2001:db8::]/32 [::1]/128", false, true).expect("list");
    assert!(l.matches_host("h", "1.2.3.4").unwrap_or(false));
    assert!(l.matches_host("h", "2001:DB8::9").unwrap_or(false));
    assert!(l.matches_host("h", "0:0:0:0:0:0:0:1").unwrap_or(false));
    assert!(!l.matches_host("h", "1.2.3.5").unwrap_or(true));
    // Without brackets an IPv6 prefix has a colon, so it is taken for a table.
    let l = MatchList::new("p", "2001:db8::/32", false, true).expect("list");
    assert!(l.matches_host("h", "2001:db8::9").is_err());
    let l = MatchList::new("p", "10.0.0.1/8", false, true).expect("list");
    assert_eq!(
        l.matches_host("h", "10.0.0.1").map_err(|e| e.class),
        Err(ErrorClass::Temporary)
    );
}

#[test]
fn maps_can_move_between_threads() {
    fn send<T: Send>(_: &T) {}
    let m = open("static:x").expect("static");
    send(&m);
    let l = MatchList::new("p", "a", false, true).expect("list");
    send(&l);
}

#[test]
fn changed_tables_are_noticed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("t");
    std::fs::write(&p, "a 1\n").expect("write");
    let spec = format!(
        "static:x texthash:{} proxy:texthash:{}/missing",
        p.display(),
        dir.path().display()
    );
    let m = Maps::open("t", &spec, &MapsOptions::default()).expect("open");
    assert_eq!(m.changed(), None);
    // A new file (postmap renames a fresh one into place) is a change.
    let tmp = dir.path().join("t.new");
    std::fs::write(&tmp, "a 2\n").expect("write");
    std::fs::rename(&tmp, &p).expect("rename");
    assert_eq!(
        m.changed(),
        Some(format!("texthash:{}", p.display()).as_str())
    );
    // A table that was missing at open counts as changed once it appears.
    let m = Maps::open("t", &spec, &MapsOptions::default()).expect("open");
    std::fs::write(dir.path().join("missing"), "k v\n").expect("write");
    assert_eq!(
        m.changed(),
        Some(format!("proxy:texthash:{}/missing", dir.path().display()).as_str())
    );
}

#[test]
fn parent_walk_with_non_ascii_first_label() {
    let m = open("inline:{.example.com=dot, example.org=plain}").expect("open");
    assert_eq!(
        m.find_domain("ü.example.com", false)
            .ok()
            .flatten()
            .as_deref(),
        Some("dot")
    );
    assert_eq!(
        m.find_domain("é.example.org", true)
            .ok()
            .flatten()
            .as_deref(),
        Some("plain")
    );
    assert_eq!(m.find_domain("ü", true).ok().flatten(), None);
    let l = MatchList::new("p", "inline:{example.org=1}", true, true).expect("list");
    assert_eq!(l.matches_domain("ß.example.org").ok(), Some(true));
}

/// Random table sources, keys and list values: parsers and lookups never panic.
#[test]
fn random_input_never_panics() {
    let mut seed: u64 = 42;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let alphabet: Vec<char> = "/!$(){}[]\\.:@+-= \t\n#iIxXmsAEU01239abcAZ\"'ü€ß,;"
        .chars()
        .collect();
    for _ in 0..400 {
        let len = next() % 60;
        let text: String = (0..len)
            .map(|_| alphabet[next() % alphabet.len()])
            .collect();
        let bytes = text.as_bytes();
        let r = regexp(&text);
        let p = pcre(&text);
        let c = cidr::CidrTable::parse("t", bytes);
        for key in [text.as_str(), "", "a", "1.2.3.4", "::1", "ü@x"] {
            let _ = r.lookup_bytes(key.as_bytes());
            let _ = p.lookup_bytes(key.as_bytes());
            let _ = c.lookup_str(key);
            let _ = quote_822_local(key, next() % 2 == 0);
            let _ = strip_extension(
                key,
                &AddrOptions {
                    recipient_delimiter: "+-ü".into(),
                    ..Default::default()
                },
            );
        }
        let _ = text::parse_template(bytes);
        let _ = split_map_list(&text);
        let _ = Cidr::parse(&text);
        for spec in [
            format!("inline:{text}"),
            format!("static:{text}"),
            format!("inline:{{{text}}}"),
        ] {
            if let Ok(m) = Maps::open("t", &spec, &MapsOptions::default()) {
                let _ = m.find(&text);
                let _ = m.find_domain(&text, next() % 2 == 0);
                let mut local = |_: &str| Ok(true);
                let strategy = AddrStrategy {
                    domain: true,
                    parent_dot_subdomains: true,
                    localpart_at: true,
                    ..AddrStrategy::DEFAULT
                };
                let _ = m.find_addr_opt(&text, &strategy, &AddrOptions::default(), &mut local);
            }
        }
        if let Ok(l) = MatchList::new("p", &text.replace('/', "_"), next() % 2 == 0, true) {
            let _ = l.matches_host(&text, &text);
            let _ = l.matches_domain(&text);
            let _ = l.matches_string(&text);
        }
    }
}
