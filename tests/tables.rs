//! Lookup tables against Postfix itself: each table is built (or read) by Debian's
//! postmap, and for every probe key our answer must equal `postmap -q - type:name`.
//! Runs twice: SMTPUTF8 off (compatibility_level 0, ASCII folding) and on
//! (compatibility_level 3.6, Unicode folding). Skips, saying why, when postmap or a
//! table type is missing; scripts/test-deps.sh installs them.

use outpost::table::{AddrOptions, AddrStrategy, Maps, MapsOptions, MatchList};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Postfix {
    dir: tempfile::TempDir,
    types: BTreeSet<String>,
}

impl Postfix {
    fn conf(&self, utf8: bool) -> PathBuf {
        self.dir.path().join(if utf8 { "utf8" } else { "ascii" })
    }
}

/// A scratch Postfix config (postmap needs a main.cf) and the supported map types.
fn postfix() -> Option<Postfix> {
    if Command::new("postmap")
        .arg("-h")
        .stderr(Stdio::null())
        .output()
        .is_err()
    {
        eprintln!("skip: postmap not installed (scripts/test-deps.sh installs postfix)");
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    for (sub, text) in [("ascii", ""), ("utf8", "compatibility_level = 3.6\n")] {
        std::fs::create_dir_all(dir.path().join(sub)).ok()?;
        std::fs::write(dir.path().join(sub).join("main.cf"), text).ok()?;
    }
    let out = Command::new("postconf")
        .arg("-c")
        .arg(dir.path().join("ascii"))
        .arg("-m")
        .output()
        .ok()?;
    let types = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    Some(Postfix { dir, types })
}

fn have(pf: &Postfix, ty: &str) -> bool {
    if !outpost::table::SUPPORTED_TYPES.contains(&ty) {
        eprintln!("skip: {ty} tables not built in (cargo feature bdb)");
        return false;
    }
    let ok = pf.types.contains(ty);
    if !ok {
        eprintln!("skip: postfix map type {ty} not available (postfix-{ty} package)");
    }
    ok
}

/// Ask postmap for every probe at once; returns key -> value for the keys found.
fn postmap_query(conf: &Path, map: &str, probes: &[String]) -> BTreeMap<String, String> {
    let mut child = Command::new("postmap")
        .arg("-c")
        .arg(conf)
        .arg("-q")
        .arg("-")
        .arg(map)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postmap");
    let mut input = String::new();
    for p in probes {
        input.push_str(p);
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("postmap output");
    writer.join().expect("join").expect("write probes");
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "postmap -q - {map} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once('\t').expect("key<TAB>value");
        found.insert(k.to_string(), v.to_string());
    }
    found
}

fn postmap_build(conf: &Path, map: &str) {
    let out = Command::new("postmap")
        .arg("-c")
        .arg(conf)
        .arg(map)
        .output()
        .expect("run postmap");
    assert!(
        out.status.success(),
        "postmap {map}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ours(map: &str, utf8: bool, probes: &[String]) -> BTreeMap<String, String> {
    let maps = Maps::open_strict("test", map, &MapsOptions { utf8, fold: true }).expect("open");
    let mut found = BTreeMap::new();
    for p in probes {
        if let Some(v) = maps.find(p).unwrap_or_else(|e| panic!("{map}: {p}: {e}")) {
            found.insert(p.clone(), v);
        }
    }
    found
}

fn compare(pf: &Postfix, map: &str, utf8: bool, probes: &[String]) -> usize {
    let want = postmap_query(&pf.conf(utf8), map, probes);
    let got = ours(map, utf8, probes);
    for p in probes {
        assert_eq!(got.get(p), want.get(p), "{map} (utf8={utf8}) key {p:?}");
    }
    assert!(
        !want.is_empty(),
        "{map}: no probe was found at all, the test proves nothing"
    );
    want.len()
}

/// Small deterministic generator (no external crate needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() as usize) % xs.len()]
    }
}

fn mixed_case(r: &mut Lcg, s: &str) -> String {
    s.chars()
        .map(|c| {
            if r.next() & 1 == 0 {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_lowercase().collect()
            }
        })
        .collect()
}

/// A few hundred keys: words, addresses, domains, UTF-8, quoted keys with spaces.
/// Unique under Unicode case folding so no table has duplicates.
fn keys() -> Vec<String> {
    let mut r = Lcg(7);
    let words = [
        "alpha",
        "Bravo",
        "charlie",
        "DELTA",
        "echo",
        "straße",
        "ünïcode",
        "σίσυφος",
        "bücher",
        "Ärger",
    ];
    let tlds = ["com", "ORG", "example", "de", "Local"];
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for n in 0..320 {
        let w = r.pick(&words);
        let k = match n % 6 {
            0 => format!("{w}{n}"),
            1 => format!(
                "{}{n}@{}.{}",
                mixed_case(&mut r, w),
                r.pick(&words),
                r.pick(&tlds)
            ),
            2 => format!("host{n}.{}.{}", r.pick(&words), r.pick(&tlds)),
            3 => format!(".{}{n}.{}", r.pick(&words), r.pick(&tlds)),
            4 => format!("\"{w} with space {n}\""),
            _ => format!("@{}{n}.{}", mixed_case(&mut r, w), r.pick(&tlds)),
        };
        let k = mixed_case(&mut r, &k);
        if seen.insert(caseless::default_case_fold_str(&k)) {
            out.push(k);
        }
    }
    out
}

fn probes_for(keys: &[String]) -> Vec<String> {
    let mut set = BTreeSet::new();
    for k in keys {
        set.insert(k.clone());
        set.insert(k.to_uppercase());
        set.insert(k.to_lowercase());
        set.insert(k.to_ascii_uppercase());
        set.insert(caseless::default_case_fold_str(k));
        set.insert(format!("{k}x"));
        set.insert(k.trim_matches('"').to_string());
        if let Some((l, d)) = k.rsplit_once('@') {
            set.insert(format!("@{d}"));
            set.insert(l.to_string());
        }
    }
    set.into_iter().filter(|p| !p.is_empty()).collect()
}

fn write_source(dir: &Path, name: &str, keys: &[String]) -> PathBuf {
    let mut text = String::from("# generated\n\n");
    for (i, k) in keys.iter().enumerate() {
        text.push_str(&format!("{k}\tvalue {i} for {k}\n"));
        if i % 50 == 0 {
            // A continuation line (leading whitespace) joins the previous one.
            text.push_str(&format!("{k}-continued\tfirst part\n  second part {i}\n"));
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write source");
    path
}

fn indexed(ty: &str) {
    let Some(pf) = postfix() else { return };
    if !have(&pf, ty) {
        return;
    }
    let keys = keys();
    let probes = probes_for(&keys);
    for utf8 in [false, true] {
        let src = write_source(pf.dir.path(), &format!("{ty}-{utf8}"), &keys);
        let map = format!("{ty}:{}", src.display());
        if ty != "texthash" {
            postmap_build(&pf.conf(utf8), &map);
        }
        let n = compare(&pf, &map, utf8, &probes);
        eprintln!(
            "{map}: {n} of {} probes found, all equal to postmap -q",
            probes.len()
        );
    }
}

#[test]
fn hash_matches_postmap() {
    indexed("hash");
}

#[test]
fn btree_matches_postmap() {
    indexed("btree");
}

#[test]
fn lmdb_matches_postmap() {
    indexed("lmdb");
}

#[test]
fn cdb_matches_postmap() {
    indexed("cdb");
}

#[test]
fn texthash_matches_postmap() {
    indexed("texthash");
}

const REGEX_RULES: &str = r#"# rules shared by regexp: and pcre:
/^([a-z]+)([0-9]+)@([^.]+)\.com$/	user=$1 num=$2 dom=${3}
/^host([0-9]+)\.(bravo|delta)\./	host $1 in $(2)
/^HOST1[0-9]\./I	never: the I flag is not an option
/^host2[0-9]\.echo\./i	case-sensitive host $$ literal
if /example$/
/^host([0-9]*)(x)?\./	example host $1 [$2]
!/^host/	example non-host
endif
IF !/\.de$/
/bücher/	not-de bücher
ENDIF
/^"(alpha|charlie) with space ([0-9]+)"$/	quoted $1 $2
/straße|strasse/	street
/@/	fallback at
"#;

const REGEXP_ONLY: &str = r#"/^echo/!/5$/	echo not ending in 5
/^a[[:digit:]]+/	bad:class
"#;

const PCRE_ONLY: &str = r#"/^echo(?=1)/	echo lookahead
/^delta \d+$/x	never, x ignores the space
/^DELTA\d+$/i	case-sensitive delta
/^alpha\d+.*$/U	ungreedy
"#;

fn regex_table(ty: &str, extra: &str) {
    let Some(pf) = postfix() else { return };
    if !have(&pf, ty) {
        return;
    }
    let mut probes = probes_for(&keys());
    probes.extend(
        [
            "host12.bravo.x",
            "HOST12.BRAVO.X",
            "host22.echo.x",
            "HOST22.ECHO.x",
            "hostx.example",
            "echo15",
            "echo16",
        ]
        .map(String::from),
    );
    let path = pf.dir.path().join(format!("{ty}.cf"));
    std::fs::write(&path, format!("{REGEX_RULES}{extra}")).expect("write");
    let map = format!("{ty}:{}", path.display());
    for utf8 in [false, true] {
        let n = compare(&pf, &map, utf8, &probes);
        eprintln!(
            "{map}: {n} of {} probes found, all equal to postmap -q",
            probes.len()
        );
    }
}

#[test]
fn regexp_matches_postmap() {
    regex_table("regexp", REGEXP_ONLY);
}

#[test]
fn pcre_matches_postmap() {
    regex_table("pcre", PCRE_ONLY);
}

#[test]
fn cidr_matches_postmap() {
    let Some(pf) = postfix() else { return };
    if !have(&pf, "cidr") {
        return;
    }
    let rules = "192.168.1.1\texact\n\
                 10.0.0.0/8\tten\n\
                 !172.16.0.0/12\tnot-172\n\
                 if 172.16.0.0/12\n\
                 172.16.5.0/24\tinside 5\n\
                 endif\n\
                 [2001:db8::]/32\tdoc v6\n\
                 ::1\tloopback6\n\
                 [fe80::1]\tlinklocal\n\
                 10.1.2.3/8\tbad: host bits set\n\
                 0.0.0.0/0\tanything v4\n";
    let path = pf.dir.path().join("cidr.cf");
    std::fs::write(&path, rules).expect("write");
    let mut r = Lcg(3);
    let mut probes: Vec<String> = (0..200)
        .map(|_| {
            let a = [192, 10, 172, 8][(r.next() % 4) as usize];
            format!("{a}.{}.{}.{}", r.next() % 40, r.next() % 8, r.next() % 4)
        })
        .collect();
    probes.extend(
        [
            "192.168.1.1",
            "172.16.5.9",
            "172.17.0.1",
            "2001:db8::5",
            "2001:DB8:0:0::1",
            "::1",
            "fe80::1",
            "fe80::2",
            "not-an-ip",
            "300.1.1.1",
            "010.1.1.1",
        ]
        .map(String::from),
    );
    let map = format!("cidr:{}", path.display());
    let n = compare(&pf, &map, false, &probes);
    eprintln!("{map}: {n} of {} probes found", probes.len());
}

#[test]
fn inline_and_static_match_postmap() {
    let Some(pf) = postfix() else { return };
    let inline = "inline:{ Alpha=one, beta=two, { \"Gamma Ray\" = three words }, {\"quoted key\"=q}, straße=s }";
    let probes: Vec<String> = [
        "alpha",
        "ALPHA",
        "beta",
        "gamma",
        "gamma ray",
        "\"GAMMA RAY\"",
        "\"gamma ray\"",
        "\"quoted key\"",
        "quoted key",
        "STRASSE",
        "straße",
        "x",
    ]
    .map(String::from)
    .to_vec();
    for utf8 in [false, true] {
        compare(&pf, inline, utf8, &probes);
        compare(&pf, "static:{ value with spaces }", utf8, &probes);
        compare(&pf, "static:plain", utf8, &probes);
    }
    // Outside braces whitespace separates elements, so `beta = two` is three of them:
    // postmap gives up, and so do we, with the same words.
    let bad = "inline:{ beta = two }";
    let out = Command::new("postmap")
        .arg("-c")
        .arg(pf.conf(false))
        .args(["-q", "beta", bad])
        .output()
        .expect("postmap");
    assert!(!out.status.success());
    let e = Maps::open_strict("t", bad, &MapsOptions::default()).expect_err("bad inline");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&e.message),
        "{e} vs {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rule tables given inline (`pcre:{{/re/ value}, ...}`, also regexp and cidr) give
/// postmap's answers; a rule without its own braces is refused with Postfix's words.
#[test]
fn inline_rule_tables_match_postmap() {
    let Some(pf) = postfix() else { return };
    let probes: Vec<String> = ["x", "xy", "y", "zzz", "10.1.2.3", "192.0.2.1"]
        .map(String::from)
        .to_vec();
    let mut maps = vec![
        "regexp:{{/^x$/ one}, {/y/ two words}}".to_string(),
        "cidr:{{10.0.0.0/8 ten}, {192.0.2.0/24 doc}}".to_string(),
    ];
    if have(&pf, "pcre") {
        maps.push("pcre:{{/^x/ first}, { /y$/ second }}".to_string());
    }
    for m in &maps {
        compare(&pf, m, false, &probes);
    }
    let bad = "regexp:{/x/ 1}";
    let out = Command::new("postmap")
        .arg("-c")
        .arg(pf.conf(false))
        .args(["-q", "x", bad])
        .output()
        .expect("postmap");
    assert!(!out.status.success());
    let e = Maps::open_strict("t", bad, &MapsOptions::default()).expect_err("bad inline rules");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&e.message),
        "{e} vs {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Open failures are errors naming the table, and a lookup through a broken table
/// defers (Temporary) with Postfix's wording.
#[test]
fn missing_and_corrupt_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = format!("lmdb:{}/nope", dir.path().display());
    let maps =
        Maps::open("smtp_sasl_password_maps", &missing, &MapsOptions::default()).expect("open");
    let e = &maps.open_errors()[0];
    assert_eq!(e.class, outpost::table::ErrorClass::Temporary);
    assert_eq!(
        e.message,
        format!(
            "open database {}/nope.lmdb: No such file or directory",
            dir.path().display()
        )
    );
    let err = maps.find("key").expect_err("lookup must fail");
    assert!(err.message.contains("is unavailable"), "{err}");

    for ty in ["lmdb", "cdb", "hash"]
        .into_iter()
        .filter(|t| outpost::table::SUPPORTED_TYPES.contains(t))
    {
        let base = dir.path().join(format!("junk-{ty}"));
        let suffix = if ty == "hash" { "db" } else { ty };
        std::fs::write(format!("{}.{suffix}", base.display()), vec![0x5au8; 4096]).expect("write");
        let spec = format!("{ty}:{}", base.display());
        match Maps::open_strict("t", &spec, &MapsOptions::default()) {
            Err(e) => assert_eq!(
                e.class,
                outpost::table::ErrorClass::Temporary,
                "{spec}: {e}"
            ),
            // A cdb of junk has a valid-looking header; lookups must then fail or miss
            // without panicking.
            Ok(m) => {
                let _ = m.find("anything");
            }
        }
    }
    let e =
        Maps::open_strict("t", "nosuchtype:/x", &MapsOptions::default()).expect_err("unknown type");
    assert_eq!(e.class, outpost::table::ErrorClass::Config);
    assert_eq!(e.message, "unsupported dictionary type: nosuchtype");
    assert!(Maps::open("t", "/etc/postfix/x", &MapsOptions::default()).is_err());
}

/// The search order of mail_addr_find(): full address, then without extension
/// (fixed-key tables only), localpart when local, @domain. Each step is shown by a
/// table that has only that key; regexp tables are asked only for the full address.
#[test]
fn find_addr_order() {
    let Some(pf) = postfix() else { return };
    let d = pf.dir.path();
    let src = d.join("addr");
    std::fs::write(
        &src,
        "user+ext@example.com full\nuser@example.com noext\nuser+ext local-with-ext\nuser localpart\n@example.com atdomain\n\"odd user\"@example.com quoted\n",
    )
    .expect("write");
    let hash = format!("hash:{}", src.display());
    if !have(&pf, "hash") {
        return;
    }
    postmap_build(&pf.conf(true), &hash);
    let maps = Maps::open_strict("t", &hash, &MapsOptions::default()).expect("open");
    let opts = AddrOptions {
        recipient_delimiter: "+".into(),
        ..Default::default()
    };
    let mut local = |d: &str| Ok(d == "example.com");
    let mut remote = |_: &str| Ok(false);
    let f = |a: &str, l: &mut dyn FnMut(&str) -> Result<bool, outpost::table::TableError>| {
        maps.find_addr(a, &opts, l)
            .expect("lookup")
            .map(|m| (m.value, m.extension))
    };
    assert_eq!(
        f("user+ext@example.com", &mut local),
        Some(("full".into(), None))
    );
    assert_eq!(
        f("User+Other@Example.COM", &mut local),
        Some(("noext".into(), Some("+Other".into())))
    );
    assert_eq!(
        f("odd user@example.com", &mut local),
        Some(("quoted".into(), None))
    );
    assert_eq!(
        f("someone@example.com", &mut local),
        Some(("atdomain".into(), None))
    );
    assert_eq!(f("someone@elsewhere.com", &mut remote), None);
    // Remote domain, no address or @domain key: nothing.
    assert_eq!(f("user+ext@other.org", &mut remote), None);

    // With only localpart keys, the domain decides.
    let lp = d.join("lp");
    std::fs::write(&lp, "user+ext local-with-ext\nuser localpart\n").expect("write");
    let lpmap = format!("hash:{}", lp.display());
    postmap_build(&pf.conf(true), &lpmap);
    let maps = Maps::open_strict("t", &lpmap, &MapsOptions::default()).expect("open");
    let g = |a: &str, l: &mut dyn FnMut(&str) -> Result<bool, outpost::table::TableError>| {
        maps.find_addr(a, &opts, l)
            .expect("lookup")
            .map(|m| (m.value, m.extension))
    };
    assert_eq!(
        g("user+ext@example.com", &mut local),
        Some(("local-with-ext".into(), None))
    );
    assert_eq!(
        g("user+zzz@example.com", &mut local),
        Some(("localpart".into(), Some("+zzz".into())))
    );
    assert_eq!(g("user+ext@example.com", &mut remote), None);

    // A regexp table sees the full address only.
    let re = d.join("re");
    std::fs::write(&re, "/^user@/ partial-seen\n/^@example/ at-seen\n").expect("write");
    let maps = Maps::open_strict(
        "t",
        &format!("regexp:{}", re.display()),
        &MapsOptions::default(),
    )
    .expect("open");
    assert_eq!(
        maps.find_addr("user+ext@example.com", &opts, &mut local)
            .expect("lookup"),
        None
    );
    let all = AddrStrategy {
        localpart_at: true,
        ..AddrStrategy::DEFAULT
    };
    assert_eq!(
        maps.find_addr_opt("user@example.com", &all, &opts, &mut local)
            .expect("lookup")
            .map(|m| m.value),
        Some("partial-seen".into())
    );

    // An error in the local-domain decision stops the search.
    let mut broken = |_: &str| {
        Err(outpost::table::TableError {
            class: outpost::table::ErrorClass::Temporary,
            table: "x".into(),
            message: "dns".into(),
        })
    };
    assert!(
        maps.find_addr("nobody@example.com", &opts, &mut broken)
            .is_err()
    );
}

/// find_domain walks parents as smtp_tls_policy_maps does (`.parent`), or as
/// parent_domain_matches_subdomains (`parent`); a regexp table is asked each time.
#[test]
fn find_domain_parents() {
    let Some(pf) = postfix() else { return };
    if !have(&pf, "hash") {
        return;
    }
    let src = pf.dir.path().join("dom");
    std::fs::write(
        &src,
        "example.com plain\n.example.org dotted\nexample.net parent-net\n",
    )
    .expect("write");
    let map = format!("hash:{}", src.display());
    postmap_build(&pf.conf(true), &map);
    let maps = Maps::open_strict("t", &map, &MapsOptions::default()).expect("open");
    // The fixed answers come from postmap -q itself for the keys the walk uses.
    let want = postmap_query(
        &pf.conf(true),
        &map,
        &[
            "example.com".into(),
            ".example.org".into(),
            "example.net".into(),
        ],
    );
    assert_eq!(
        maps.find_domain("Example.COM", false).expect("ok").as_ref(),
        want.get("example.com")
    );
    assert_eq!(
        maps.find_domain("a.b.example.org", false)
            .expect("ok")
            .as_ref(),
        want.get(".example.org")
    );
    assert_eq!(maps.find_domain("a.example.com", false).expect("ok"), None);
    assert_eq!(
        maps.find_domain("a.example.net", true)
            .expect("ok")
            .as_ref(),
        want.get("example.net")
    );
    assert_eq!(maps.find_domain("example.org", false).expect("ok"), None);
}

/// namadr_list patterns against hostnames and addresses, with a table and a file.
#[test]
fn match_list_host_and_addr() {
    let Some(pf) = postfix() else { return };
    let d = pf.dir.path();
    let file = d.join("peers");
    std::fs::write(&file, "# comment\n!bad.example.com\n.example.com\n").expect("write");
    let list = format!(
        "10.0.0.0/8, [::1], !192.168.1.5 192.168.1.0/24 {} example.org",
        file.display()
    );
    // Without MATCH_FLAG_PARENT: `.example.com` matches subdomains, `example.org` itself.
    let ml = MatchList::new("debug_peer_list", &list, false, true).expect("parse");
    assert!(ml.matches_host("unknown", "10.1.2.3").expect("ok"));
    assert!(ml.matches_host("unknown", "::1").expect("ok"));
    assert!(!ml.matches_host("unknown", "192.168.1.5").expect("ok"));
    assert!(ml.matches_host("unknown", "192.168.1.6").expect("ok"));
    assert!(!ml.matches_host("bad.example.com", "1.1.1.1").expect("ok"));
    assert!(ml.matches_host("Good.Example.COM", "1.1.1.1").expect("ok"));
    assert!(!ml.matches_host("mx.example.org", "1.1.1.1").expect("ok"));
    assert!(ml.matches_host("example.org", "1.1.1.1").expect("ok"));
    // With it (parent_domain_matches_subdomains lists the parameter), `example.org`
    // matches its subdomains; match_hostname then ignores the `.domain` form.
    let parent = MatchList::new("debug_peer_list", &list, true, true).expect("parse");
    assert!(
        parent
            .matches_host("mx.example.org", "1.1.1.1")
            .expect("ok")
    );
    assert!(
        !parent
            .matches_host("good.example.com", "1.1.1.1")
            .expect("ok")
    );
    let strict = MatchList::new("smtp_x", "example.org", false, true).expect("parse");
    assert!(!strict.matches_domain("mx.example.org").expect("ok"));
    assert!(strict.matches_domain("EXAMPLE.org").expect("ok"));
    let missing = MatchList::new("x", "/no/such/file", false, true).expect("parse");
    assert!(missing.matches_domain("a").is_err());
    assert!(MatchList::new("x", "!", false, true).is_err());
}

/// Postfix's own mail_addr_find_opt(), compiled from tests/oracle against Debian's
/// libpostfix-global, answers for every (strategy, address); ours must agree, including
/// the extension. None when cc or the library is missing.
fn build_oracle(dir: &Path) -> Option<PathBuf> {
    let lib = Path::new("/usr/lib/postfix/libpostfix-global.so");
    if !lib.exists() {
        eprintln!(
            "skip: {} not installed (Debian postfix package)",
            lib.display()
        );
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/mail_addr_find.c");
    let bin = dir.join("mail_addr_find");
    let out = Command::new("cc")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .args([
            "-L/usr/lib/postfix",
            "-lpostfix-global",
            "-lpostfix-util",
            "-Wl,-rpath,/usr/lib/postfix",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(bin),
        Ok(o) => {
            eprintln!(
                "skip: cannot build the mail_addr_find oracle: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("skip: no C compiler for the mail_addr_find oracle: {e}");
            None
        }
    }
}

const MA_FULL: u32 = 1;
const MA_NOEXT: u32 = 2;
const MA_LOCALPART_IF_LOCAL: u32 = 4;
const MA_LOCALPART_AT_IF_LOCAL: u32 = 8;
const MA_AT_DOMAIN: u32 = 16;
const MA_DOMAIN: u32 = 32;
const MA_PDMS: u32 = 64;
const MA_PDDMDS: u32 = 128;
const MA_LOCALPART_AT: u32 = 256;

fn strategy(bits: u32) -> AddrStrategy {
    AddrStrategy {
        full: bits & MA_FULL != 0,
        noext: bits & MA_NOEXT != 0,
        localpart_if_local: bits & MA_LOCALPART_IF_LOCAL != 0,
        localpart_at_if_local: bits & MA_LOCALPART_AT_IF_LOCAL != 0,
        at_domain: bits & MA_AT_DOMAIN != 0,
        domain: bits & MA_DOMAIN != 0,
        parent_matches_subdomains: bits & MA_PDMS != 0,
        parent_dot_subdomains: bits & MA_PDDMDS != 0,
        localpart_at: bits & MA_LOCALPART_AT != 0,
    }
}

#[test]
fn find_addr_matches_postfix() {
    let Some(pf) = postfix() else { return };
    if !have(&pf, "hash") || !have(&pf, "regexp") {
        return;
    }
    let d = pf.dir.path();
    let Some(oracle) = build_oracle(d) else {
        return;
    };
    let conf = d.join("addr-conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("main.cf"),
        "compatibility_level = 3.6\nrecipient_delimiter = +-\nmyorigin = origin.example\n\
         mydestination = local.example, localhost\nmyhostname = mx.local.example\n\
         inet_interfaces = loopback-only\n",
    )
    .expect("main.cf");
    let table = d.join("addrs");
    let mut text = String::new();
    let users = [
        "user",
        "User.Name",
        "odd user",
        "owner-list",
        "list-request",
        "postmaster",
        "ünï",
        "a\"b",
    ];
    let domains = [
        "local.example",
        "origin.example",
        "remote.example",
        "sub.remote.example",
        "a.b.remote.example",
    ];
    let mut n = 0;
    for u in users {
        for (i, dom) in domains.iter().enumerate() {
            n += 1;
            let q = outpost::table::quote_822_local(u, true);
            match (n + i) % 5 {
                0 => text.push_str(&format!("{q}@{dom} full-{n}\n")),
                1 => text.push_str(&format!("{q}+tag@{dom} ext-{n}\n")),
                2 => text.push_str(&format!("{q}@ localat-{n}\n")),
                3 => text.push_str(&format!("{q} local-{n}\n")),
                _ => text.push_str(&format!("@{dom} at-{n}\n")),
            }
        }
    }
    text.push_str("remote.example domain\n.remote.example dot-domain\nb.remote.example parent-b\n");
    // Keys that only a wrong split would reach (owner-/-request are never split on '-').
    text.push_str("owner@local.example owner-stripped\nlist@remote.example list-stripped\nowner local-owner\n");
    std::fs::write(&table, text).expect("write");
    let hash = format!("hash:{}", table.display());
    postmap_build(&conf, &hash);
    let re = d.join("addr-re");
    std::fs::write(
        &re,
        "/^user-x@/ re-user-x\n/^(.*)\\+(.*)@local\\.example$/ re $1 $2\n/^@remote/ re-at\n",
    )
    .expect("write");
    let maps_spec = format!("{hash} regexp:{}", re.display());

    let strategies = [
        MA_FULL | MA_NOEXT | MA_LOCALPART_IF_LOCAL | MA_AT_DOMAIN,
        MA_FULL | MA_NOEXT | MA_LOCALPART_AT_IF_LOCAL | MA_AT_DOMAIN,
        MA_FULL | MA_NOEXT | MA_LOCALPART_IF_LOCAL | MA_LOCALPART_AT_IF_LOCAL,
        MA_FULL | MA_DOMAIN,
        MA_FULL | MA_DOMAIN | MA_PDMS,
        MA_NOEXT | MA_DOMAIN | MA_PDDMDS,
        MA_FULL | MA_NOEXT | MA_LOCALPART_AT,
        MA_NOEXT | MA_AT_DOMAIN | MA_LOCALPART_AT,
    ];
    let mut queries = Vec::new();
    for s in strategies {
        for u in users {
            for dom in domains {
                for ext in ["", "+tag", "+other", "-x", "+a-b"] {
                    queries.push((s, format!("{u}{ext}@{dom}")));
                    queries.push((
                        s,
                        format!("{}{ext}@{}", u.to_uppercase(), dom.to_uppercase()),
                    ));
                }
            }
        }
        // mail_addr_find() dereferences a missing '@' with LOCALPART_AT; keep to others.
        if s & MA_LOCALPART_AT == 0 {
            queries.push((s, "user+tag".into()));
            queries.push((s, "user-x".into()));
        }
    }
    let mut child = Command::new(&oracle)
        .arg(&maps_spec)
        .env("MAIL_CONFIG", &conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oracle");
    let input: String = queries.iter().map(|(s, a)| format!("{s}\t{a}\n")).collect();
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("oracle output");
    writer.join().expect("join").expect("write");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        answers.len(),
        queries.len(),
        "oracle stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let maps = Maps::open_strict("t", &maps_spec, &MapsOptions::default()).expect("open");
    let opts = AddrOptions {
        recipient_delimiter: "+-".into(),
        ..Default::default()
    };
    // resolve_local() for these names: myorigin and mydestination, case-insensitively.
    let mut is_local = |d: &str| {
        Ok(["local.example", "origin.example", "localhost"]
            .iter()
            .any(|l| l.eq_ignore_ascii_case(d)))
    };
    let mut found = 0;
    for ((s, addr), line) in queries.iter().zip(&answers) {
        let mut f = line.split('\t');
        let (a, want, want_ext) = (
            f.next().unwrap_or(""),
            f.next().unwrap_or(""),
            f.next().unwrap_or(""),
        );
        assert_eq!(a, addr);
        let got = maps
            .find_addr_opt(addr, &strategy(*s), &opts, &mut is_local)
            .expect("lookup");
        let (v, e) = match &got {
            Some(m) => (m.value.as_str(), m.extension.as_deref().unwrap_or("")),
            None => ("(none)", ""),
        };
        assert_eq!((v, e), (want, want_ext), "strategy {s} address {addr:?}");
        if got.is_some() {
            found += 1;
        }
    }
    eprintln!(
        "mail_addr_find: {} queries, {found} found, all equal to Postfix",
        queries.len()
    );
    assert!(
        found > queries.len() / 4,
        "too few hits to prove anything: {found}"
    );
}

/// MatchList against Postfix's own match_list_match() with match_hostname and
/// match_hostaddr (namadr_list, domain_list), with and without MATCH_FLAG_PARENT.
#[test]
fn match_lists_match_postfix() {
    let Some(pf) = postfix() else { return };
    if !have(&pf, "hash") || !have(&pf, "cidr") || !have(&pf, "regexp") {
        return;
    }
    let d = pf.dir.path();
    let lib = Path::new("/usr/lib/postfix/libpostfix-util.so");
    if !lib.exists() {
        eprintln!("skip: {} not installed", lib.display());
        return;
    }
    let bin = d.join("match_list");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/match_list.c");
    match Command::new("cc")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .args([
            "-L/usr/lib/postfix",
            "-lpostfix-global",
            "-lpostfix-util",
            "-Wl,-rpath,/usr/lib/postfix",
        ])
        .output()
    {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("skip: cannot build the match_list oracle: {other:?}");
            return;
        }
    }
    let conf = pf.conf(true);
    let hosts = d.join("hosts");
    std::fs::write(
        &hosts,
        "tabled.example.net ok\n.dotted.example.net ok\nparent.example.net ok\n10.9.9.9 ok\n",
    )
    .expect("write");
    postmap_build(&conf, &format!("hash:{}", hosts.display()));
    let cidr = d.join("nets");
    std::fs::write(&cidr, "172.16.0.0/12 ok\n2001:db8:1::/48 ok\n").expect("write");
    let re = d.join("re");
    std::fs::write(
        &re,
        "/^re-[0-9]+\\.example\\.com$/ ok\n/^[0-9.]*\\.77$/ ok\n",
    )
    .expect("write");
    let file = d.join("list");
    std::fs::write(
        &file,
        "# comment\n!blocked.example.com\nfromfile.example.com, 192.0.2.0/24\n",
    )
    .expect("write");
    let lists = [
        format!(
            "10.0.0.0/8, [::1], !192.168.1.5 192.168.1.0/24 !bad.example.com .example.com example.org \
             [2001:db8::]/32 [fe80::1] hash:{} cidr:{} regexp:{} {} !!twice.example",
            hosts.display(),
            cidr.display(),
            re.display(),
            file.display()
        ),
        "example.org, .example.com, 10.1.2.3 [10.1.2.4] 10.1.2.3/32".to_string(),
        "10.0.0.1/8 example.org".to_string(),
        "nosuchtype:x example.org".to_string(),
        format!("{} /no/such/file", file.display()),
    ];
    let names = [
        "example.org",
        "mx.example.org",
        "a.b.example.org",
        "Example.COM",
        "x.example.com",
        "bad.example.com",
        "tabled.example.net",
        "x.tabled.example.net",
        "x.dotted.example.net",
        "dotted.example.net",
        "a.parent.example.net",
        "re-12.example.com",
        "RE-3.EXAMPLE.COM",
        "fromfile.example.com",
        "blocked.example.com",
        "twice.example",
        "unknown",
        "",
    ];
    let addrs = [
        "10.1.2.3",
        "10.1.2.4",
        "11.0.0.1",
        "::1",
        "0:0:0:0:0:0:0:1",
        "192.168.1.5",
        "192.168.1.6",
        "2001:db8::5",
        "2001:DB8:1::9",
        "fe80::1",
        "172.20.1.1",
        "10.9.9.9",
        "1.2.3.77",
        "192.0.2.9",
        "unknown",
        "not:an:addr",
    ];
    let mut total = 0;
    let mut hits = 0;
    for list in &lists {
        for parent in [false, true] {
            let mut queries = Vec::new();
            for (i, n) in names.iter().enumerate() {
                for a in addrs.iter().skip(i % 3).step_by(2) {
                    queries.push((n.to_string(), a.to_string()));
                }
            }
            let mut child = Command::new(&bin)
                .arg(if parent { "1" } else { "0" })
                .arg(list)
                .env("MAIL_CONFIG", &conf)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run oracle");
            let input: String = queries.iter().map(|(n, a)| format!("{n}\t{a}\n")).collect();
            let mut stdin = child.stdin.take().expect("stdin");
            let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
            let out = child.wait_with_output().expect("oracle");
            writer.join().expect("join").expect("write");
            let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            assert_eq!(
                answers.len(),
                queries.len(),
                "{list}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ours = MatchList::new("list", list, parent, true).expect("parse");
            let show = |r: Result<bool, outpost::table::TableError>| match r {
                Ok(true) => "1",
                Ok(false) => "0",
                Err(_) => "E",
            };
            for ((n, a), line) in queries.iter().zip(&answers) {
                let want: Vec<&str> = line.split('\t').collect();
                let got_n = show(ours.matches_host(n, a));
                let got_d = show(ours.matches_domain(n));
                assert_eq!(
                    (got_n, got_d),
                    (
                        want.get(2).copied().unwrap_or("?"),
                        want.get(3).copied().unwrap_or("?")
                    ),
                    "list {list:?} parent={parent} name={n:?} addr={a:?}"
                );
                total += 1;
                hits += (got_n == "1") as usize;
            }
        }
    }
    eprintln!("match lists: {total} queries, {hits} namadr hits, all equal to Postfix");
    assert!(hits > total / 5, "too few hits: {hits}");
}

/// unionmap: and pipemap: over fixed and pattern tables, where who folds the key
/// depends on the first member and on SMTPUTF8.
#[test]
fn union_and_pipe_match_postmap() {
    let Some(pf) = postfix() else { return };
    if !have(&pf, "unionmap") || !have(&pf, "pipemap") || !have(&pf, "regexp") {
        return;
    }
    let d = pf.dir.path();
    let re = d.join("chain-re");
    std::fs::write(
        &re,
        "/^([A-Z]+)$/i upper-$1\n/^([a-z]+)$/ lower-$1\n/^lower-(.*)$/ piped-$1\n/^upper-(.*)$/ piped-upper-$1\n",
    )
    .expect("write");
    let re = format!("regexp:{}", re.display());
    let inline = "inline:{abc=Fixed, lower-abc=lower-via-inline, upper-ABC=upper-via-inline}";
    let probes: Vec<String> = ["abc", "ABC", "Abc", "xyz", "XYZ", "lower-abc", "nothing-1"]
        .map(String::from)
        .to_vec();
    for utf8 in [false, true] {
        for spec in [
            format!("unionmap:{{{inline}, {re}}}"),
            format!("unionmap:{{{re}, {inline}}}"),
            format!("pipemap:{{{re}, {inline}}}"),
            format!("pipemap:{{{inline}, {re}}}"),
            format!("pipemap:{{{re}, {re}}}"),
        ] {
            compare(&pf, &spec, utf8, &probes);
        }
    }
    let e = Maps::open_strict("t", "unionmap:{nocolon}", &MapsOptions::default()).expect_err("bad");
    assert_eq!(
        e.message,
        "bad syntax: \"unionmap:{nocolon}\"; need \"unionmap:{type:name...}\""
    );
}
