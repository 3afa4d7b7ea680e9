//! End-to-end routing tests: `outpost send` without `-d` looks up MX records through the
//! DNS stub and picks hosts and addresses as Postfix 3.7's smtp(8) does.
//!
//! Each test gets a private network namespace (see tests/support_dns) in which dnsmasq
//! serves the test's records on 127.0.0.53 (every other name under .test is NXDOMAIN),
//! `outpost sink` processes listen on 127.0.0.x:25 / [::1]:25, and `outpost send` runs
//! with `-o inet_protocols=ipv4` unless the test says otherwise. 127.0.0.4 is never
//! listened on ("dead"). Needs root, iproute2 and dnsmasq; otherwise each test prints
//! "SKIP: ..." and passes.

mod support_dns;

use support_dns::*;

const EX_TEMPFAIL: i32 = 75;

fn is_sent(run: &Run, rcpt: &str, relay: &str) {
    let line = run.result(rcpt);
    assert!(
        line.starts_with(&format!("{rcpt}: sent dsn=2."))
            && line.contains(&format!(" relay={relay} ")),
        "want sent via {relay}:\n{run}"
    );
}

fn pref_records() -> Vec<&'static str> {
    vec![
        "--mx-host=pref.test,mx1.pref.test,10",
        "--mx-host=pref.test,mx2.pref.test,20",
        "--host-record=mx1.pref.test,127.0.0.2",
        "--host-record=mx2.pref.test,127.0.0.3",
    ]
}

fn show(net: &Net, run: &Run, sinks: &[&Sink]) -> String {
    let mut s = format!("{run}");
    for k in sinks {
        s.push_str(&k.show());
    }
    s.push_str(&net.dns_log());
    s
}

// 1. Different preferences: the better MX gets the mail, the other sees nothing.
#[test]
fn lower_preference_wins() {
    let Some(mut net) = Net::start(&pref_records()) else {
        return;
    };
    let s2 = net.sink("127.0.0.2:25", &[]);
    let s3 = net.sink("127.0.0.3:25", &[]);
    let run = net.send(&[], &["rcpt@pref.test"]);
    let why = show(&net, &run, &[&s2, &s3]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@pref.test", "mx1.pref.test[127.0.0.2]:25");
    assert_eq!(s2.rcpts(), vec![vec!["<rcpt@pref.test>"]], "{why}");
    assert_eq!(s3.messages().len(), 0, "{why}");
    assert_eq!(s3.sessions(), 0, "second MX contacted:\n{why}");
}

// 2. Dead first MX: Postfix logs the refused connection and uses the next MX.
#[test]
fn dead_first_mx_falls_through_to_second() {
    let Some(mut net) = Net::start(&[
        "--mx-host=dead.test,mx1.dead.test,10",
        "--mx-host=dead.test,mx2.dead.test,20",
        "--host-record=mx1.dead.test,127.0.0.4",
        "--host-record=mx2.dead.test,127.0.0.3",
    ]) else {
        return;
    };
    let s3 = net.sink("127.0.0.3:25", &[]);
    let run = net.send(&[], &["rcpt@dead.test"]);
    let why = show(&net, &run, &[&s3]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@dead.test", "mx2.dead.test[127.0.0.3]:25");
    assert!(
        run.stderr.lines().any(|l| l.contains("postfix/smtp[")
            && l.ends_with("]: connect to mx1.dead.test[127.0.0.4]:25: Connection refused")),
        "no connect-refused info line:\n{why}"
    );
    assert_eq!(s3.rcpts(), vec![vec!["<rcpt@dead.test>"]], "{why}");
}

// 3. Equal preferences: randomised by default (both get mail over 30 sends), a stable
//    order with smtp_randomize_addresses=no (every send goes to the same one).
#[test]
fn equal_preferences_are_shuffled_unless_disabled() {
    let Some(mut net) = Net::start(&[
        "--mx-host=eq.test,a.eq.test,10",
        "--mx-host=eq.test,b.eq.test,10",
        "--host-record=a.eq.test,127.0.0.2",
        "--host-record=b.eq.test,127.0.0.3",
    ]) else {
        return;
    };
    let sa = net.sink("127.0.0.2:25", &[]);
    let sb = net.sink("127.0.0.3:25", &[]);
    for i in 0..30 {
        let run = net.send(&[], &["rcpt@eq.test"]);
        assert_eq!(run.code, 0, "send {i}: {}", show(&net, &run, &[]));
        let line = run.result("rcpt@eq.test");
        assert!(
            line.contains(" relay=a.eq.test[127.0.0.2]:25 ")
                || line.contains(" relay=b.eq.test[127.0.0.3]:25 "),
            "{run}"
        );
    }
    let (a, b) = (sa.messages().len(), sb.messages().len());
    eprintln!("randomized: a.eq.test got {a}, b.eq.test got {b}");
    assert_eq!(a + b, 30);
    assert!(
        a > 0 && b > 0,
        "no spreading over equal MX preferences: {a}/{b}"
    );

    for i in 0..10 {
        let run = net.send(&["-o", "smtp_randomize_addresses=no"], &["rcpt@eq.test"]);
        assert_eq!(run.code, 0, "send {i}: {run}");
    }
    let (a2, b2) = (sa.messages().len() - a, sb.messages().len() - b);
    eprintln!("not randomized: a.eq.test got {a2}, b.eq.test got {b2}");
    assert!(
        (a2, b2) == (10, 0) || (a2, b2) == (0, 10),
        "smtp_randomize_addresses=no must keep one order: {a2}/{b2}"
    );
}

// 4. The better MX has no address record: the other MX is used.
#[test]
fn mx_without_address_is_skipped() {
    let Some(mut net) = Net::start(&[
        "--mx-host=noa.test,mx1.noa.test,10",
        "--mx-host=noa.test,mx2.noa.test,20",
        "--host-record=mx2.noa.test,127.0.0.3",
    ]) else {
        return;
    };
    let s3 = net.sink("127.0.0.3:25", &[]);
    let run = net.send(&[], &["rcpt@noa.test"]);
    let why = show(&net, &run, &[&s3]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@noa.test", "mx2.noa.test[127.0.0.3]:25");
    assert_eq!(s3.messages().len(), 1, "{why}");
}

// 5. NXDOMAIN: bounced with Postfix's text (the A lookup after "no MX" fails).
#[test]
fn nxdomain_bounces() {
    let Some(net) = Net::start(&["--local=/nx.test/"]) else {
        return;
    };
    let run = net.send(&[], &["rcpt@nx.test"]);
    let why = show(&net, &run, &[]);
    assert_eq!(
        run.result("rcpt@nx.test"),
        "rcpt@nx.test: bounced dsn=5.4.4 relay=none (Host or domain name not found. \
         Name service error for name=nx.test type=A: Host not found)",
        "{why}"
    );
    assert!(
        run.code != 0 && run.code != EX_TEMPFAIL,
        "exit {}: {why}",
        run.code
    );
}

// 6a. SERVFAIL for the MX lookup: deferred 4.4.3, exit 75.
#[test]
fn servfail_defers() {
    let Some(mut net) = Net::start(&["--server=/sf.test/127.0.0.99"]) else {
        return;
    };
    net.servfail_server("127.0.0.99");
    let run = net.send(&[], &["rcpt@sf.test"]);
    let why = show(&net, &run, &[]);
    let line = run.result("rcpt@sf.test");
    assert!(
        line.starts_with("rcpt@sf.test: deferred dsn=4.4.3 relay=none ("),
        "{why}"
    );
    // Postfix: "Host or domain name not found. Name service error for name=sf.test
    // type=MX: Host not found, try again".
    assert!(
        line.contains("name=sf.test type=MX") && line.contains("try again"),
        "{why}"
    );
    assert_eq!(run.code, EX_TEMPFAIL, "{why}");
}

// 6b. No name server answers at all: also a temporary failure.
#[test]
fn dead_nameserver_defers() {
    let Some(net) = Net::with(Dns::Dead("127.0.0.54")) else {
        return;
    };
    let run = net.send(&[], &["rcpt@pref.test"]);
    assert!(
        run.result("rcpt@pref.test")
            .starts_with("rcpt@pref.test: deferred dsn=4.4.3 relay=none ("),
        "{run}"
    );
    assert_eq!(run.code, EX_TEMPFAIL, "{run}");
}

// 7. Null MX (RFC 7505, "MX 0 ."): bounced without trying anything.
#[test]
fn null_mx_bounces() {
    let Some(mut net) = Net::start(&[
        "--mx-host=null.test,.,0",
        "--host-record=null.test,127.0.0.2",
    ]) else {
        return;
    };
    // The domain has an address with a live server: only the null MX stops delivery.
    let s2 = net.sink("127.0.0.2:25", &[]);
    let run = net.send(&[], &["rcpt@null.test"]);
    let why = show(&net, &run, &[&s2]);
    let line = run.result("rcpt@null.test");
    eprintln!("null MX: {line}");
    // Postfix 3.7: "bounced dsn=5.1.0 ... (Domain null.test does not accept mail (nullMX))";
    // RFC 7505 suggests 5.1.10.
    assert!(
        line.starts_with("rcpt@null.test: bounced dsn=5.1.") && line.contains("relay=none"),
        "{why}"
    );
    assert!(
        line.to_ascii_lowercase().contains("null"),
        "text does not mention the null MX:\n{why}"
    );
    assert!(run.code != 0 && run.code != EX_TEMPFAIL, "{why}");
    assert_eq!(s2.sessions(), 0, "{why}");
}

// 8. The MX host is a CNAME: followed; the relay keeps the MX name (as Postfix's default
//    smtp_cname_overrides_servername=no does).
#[test]
fn mx_host_cname_is_followed() {
    let Some(mut net) = Net::start(&[
        "--mx-host=cn.test,mx.cn.test,10",
        "--cname=mx.cn.test,real.cn.test",
        "--host-record=real.cn.test,127.0.0.2",
    ]) else {
        return;
    };
    let s2 = net.sink("127.0.0.2:25", &[]);
    let run = net.send(&[], &["rcpt@cn.test"]);
    let why = show(&net, &run, &[&s2]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@cn.test", "mx.cn.test[127.0.0.2]:25");
    assert_eq!(s2.messages().len(), 1, "{why}");
    // smtp_cname_overrides_servername=yes names the server by the CNAME target.
    let run = net.send(
        &["-o", "smtp_cname_overrides_servername=yes"],
        &["rcpt@cn.test"],
    );
    let why = show(&net, &run, &[&s2]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@cn.test", "real.cn.test[127.0.0.2]:25");
}

// 9. An MX host with only an AAAA record (::1), with inet_protocols=all.
#[test]
fn ipv6_only_mx() {
    let Some(mut net) = Net::start(&[
        "--mx-host=six.test,v6.six.test,10",
        "--host-record=v6.six.test,::1",
    ]) else {
        return;
    };
    let s6 = net.sink("[::1]:25", &[]);
    // ::1 is an interface address: with the default inet_interfaces=all it is "myself".
    let run = net.send(
        &[
            "-o",
            "inet_protocols=all",
            "-o",
            "inet_interfaces=127.0.0.1",
        ],
        &["rcpt@six.test"],
    );
    let why = show(&net, &run, &[&s6]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@six.test", "v6.six.test[::1]:25");
    assert_eq!(s6.rcpts(), vec![vec!["<rcpt@six.test>"]], "{why}");

    let run = net.send(&["-o", "inet_protocols=all"], &["rcpt@six.test"]);
    assert_eq!(
        run.result("rcpt@six.test"),
        "rcpt@six.test: bounced dsn=5.4.6 relay=none (mail for six.test loops back to myself)",
        "{}",
        show(&net, &run, &[&s6])
    );
    assert_eq!(s6.messages().len(), 1);
}

// 10a. smtp_mx_address_limit=1 with a dead first MX: the second is never tried.
#[test]
fn address_limit_stops_after_first_address() {
    let Some(mut net) = Net::start(&[
        "--mx-host=lim.test,mx1.lim.test,10",
        "--mx-host=lim.test,mx2.lim.test,20",
        "--host-record=mx1.lim.test,127.0.0.4",
        "--host-record=mx2.lim.test,127.0.0.3",
    ]) else {
        return;
    };
    let s3 = net.sink("127.0.0.3:25", &[]);
    let run = net.send(&["-o", "smtp_mx_address_limit=1"], &["rcpt@lim.test"]);
    let why = show(&net, &run, &[&s3]);
    assert_eq!(
        run.result("rcpt@lim.test"),
        "rcpt@lim.test: deferred dsn=4.4.1 relay=none \
         (connect to mx1.lim.test[127.0.0.4]:25: Connection refused)",
        "{why}"
    );
    assert_eq!(run.code, EX_TEMPFAIL, "{why}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        s3.sessions(),
        0,
        "second MX tried despite the limit:\n{why}"
    );

    // Without the limit the same set-up delivers to the second MX.
    let run = net.send(&[], &["rcpt@lim.test"]);
    is_sent(&run, "rcpt@lim.test", "mx2.lim.test[127.0.0.3]:25");
}

// 10b. smtp_mx_session_limit (default 2): three MX hosts all answer 451 to MAIL; the
//      third is never connected to.
#[test]
fn session_limit_stops_after_two_sessions() {
    let Some(mut net) = Net::start(&[
        "--mx-host=busy.test,mx1.busy.test,10",
        "--mx-host=busy.test,mx2.busy.test,20",
        "--mx-host=busy.test,mx3.busy.test,30",
        "--host-record=mx1.busy.test,127.0.0.2",
        "--host-record=mx2.busy.test,127.0.0.3",
        "--host-record=mx3.busy.test,127.0.0.5",
    ]) else {
        return;
    };
    let busy = ["--reply", "mail=451 4.3.0 busy"];
    let s1 = net.sink("127.0.0.2:25", &busy);
    let s2 = net.sink("127.0.0.3:25", &busy);
    let s3 = net.sink("127.0.0.5:25", &busy);
    let run = net.send(&[], &["rcpt@busy.test"]);
    let why = || show(&net, &run, &[&s1, &s2, &s3]);
    assert_eq!(
        run.result("rcpt@busy.test"),
        "rcpt@busy.test: deferred dsn=4.3.0 relay=mx2.busy.test[127.0.0.3]:25 \
         (host mx2.busy.test[127.0.0.3] said: 451 4.3.0 busy (in reply to MAIL FROM command))",
        "{}",
        why()
    );
    assert_eq!(run.code, EX_TEMPFAIL, "{}", why());
    assert_eq!(
        (s1.wait_sessions(1), s2.wait_sessions(1)),
        (1, 1),
        "{}",
        why()
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(s3.sessions(), 0, "third MX contacted:\n{}", why());

    // With a limit of 3 the third one is reached: the zero above was not for lack of a way.
    let run = net.send(&["-o", "smtp_mx_session_limit=3"], &["rcpt@busy.test"]);
    assert!(
        run.result("rcpt@busy.test")
            .contains(" relay=mx3.busy.test[127.0.0.5]:25 "),
        "{run}"
    );
    assert_eq!(s3.wait_sessions(1), 1);
}

// 11. Only a dead MX, and smtp_fallback_relay: delivered by the fallback relay.
#[test]
fn fallback_relay_after_dead_mx() {
    let Some(mut net) = Net::start(&[
        "--mx-host=fb.test,mx1.fb.test,10",
        "--host-record=mx1.fb.test,127.0.0.4",
    ]) else {
        return;
    };
    let s3 = net.sink("127.0.0.3:25", &[]);
    let run = net.send(
        &["-o", "smtp_fallback_relay=[127.0.0.3]:25"],
        &["rcpt@fb.test"],
    );
    let why = show(&net, &run, &[&s3]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@fb.test", "127.0.0.3[127.0.0.3]:25");
    assert!(
        run.stderr
            .contains("connect to mx1.fb.test[127.0.0.4]:25: Connection refused"),
        "MX not tried first:\n{why}"
    );
    assert_eq!(s3.rcpts(), vec![vec!["<rcpt@fb.test>"]], "{why}");
}

// 12. The only MX is an address this host receives mail on: mail loops back to myself.
#[test]
fn mx_pointing_at_myself_bounces() {
    let Some(mut net) = Net::start(&[
        "--mx-host=loop.test,mx1.loop.test,10",
        "--host-record=mx1.loop.test,127.0.0.9",
    ]) else {
        return;
    };
    // A live server there: only loop detection keeps the mail from it.
    let s9 = net.sink("127.0.0.9:25", &[]);
    let run = net.send(&["-o", "inet_interfaces=127.0.0.9"], &["rcpt@loop.test"]);
    let why = show(&net, &run, &[&s9]);
    assert_eq!(
        run.result("rcpt@loop.test"),
        "rcpt@loop.test: bounced dsn=5.4.6 relay=none (mail for loop.test loops back to myself)",
        "{why}"
    );
    assert!(run.code != 0 && run.code != EX_TEMPFAIL, "{why}");
    assert_eq!(s9.sessions(), 0, "{why}");

    // Receiving on another address, the same MX is a peer like any other.
    let run = net.send(&["-o", "inet_interfaces=127.0.0.1"], &["rcpt@loop.test"]);
    is_sent(&run, "rcpt@loop.test", "mx1.loop.test[127.0.0.9]:25");
}

// 13. --explain lists the MX hosts and addresses in order, and sends nothing.
#[test]
fn explain_lists_mx_hosts_in_order() {
    let Some(mut net) = Net::start(&pref_records()) else {
        return;
    };
    let s2 = net.sink("127.0.0.2:25", &[]);
    let run = net.outpost(
        &[
            "send",
            "--explain",
            "-o",
            "inet_protocols=ipv4",
            "rcpt@pref.test",
        ],
        b"",
    );
    let why = show(&net, &run, &[&s2]);
    eprintln!("{}", run.stdout);
    assert_eq!(run.code, 0, "{why}");
    let pos = |needle: &str| run.stdout.lines().position(|l| l.contains(needle));
    let first = pos("mx1.pref.test[127.0.0.2]:25");
    let second = pos("mx2.pref.test[127.0.0.3]:25");
    assert!(
        matches!((first, second), (Some(a), Some(b)) if a < b),
        "MX hosts missing or out of order:\n{why}"
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(s2.sessions(), 0, "--explain connected:\n{why}");
}

// 14. Recipients in two domains: each routed through its own MX, one line each.
#[test]
fn recipients_grouped_by_domain() {
    let mut records = pref_records();
    records.extend([
        "--mx-host=grp.test,mx.grp.test,10",
        "--host-record=mx.grp.test,127.0.0.5",
    ]);
    let Some(mut net) = Net::start(&records) else {
        return;
    };
    let s2 = net.sink("127.0.0.2:25", &[]);
    let s3 = net.sink("127.0.0.3:25", &[]);
    let s5 = net.sink("127.0.0.5:25", &[]);
    let run = net.send(&[], &["a@pref.test", "b@grp.test", "c@pref.test"]);
    let why = show(&net, &run, &[&s2, &s3, &s5]);
    assert_eq!(run.code, 0, "{why}");
    assert_eq!(run.stdout.lines().count(), 3, "{why}");
    is_sent(&run, "a@pref.test", "mx1.pref.test[127.0.0.2]:25");
    is_sent(&run, "c@pref.test", "mx1.pref.test[127.0.0.2]:25");
    is_sent(&run, "b@grp.test", "mx.grp.test[127.0.0.5]:25");
    assert_eq!(
        s2.rcpts(),
        vec![vec!["<a@pref.test>", "<c@pref.test>"]],
        "{why}"
    );
    assert_eq!(s5.rcpts(), vec![vec!["<b@grp.test>"]], "{why}");
    assert_eq!(s3.sessions(), 0, "{why}");
}

// ignore_mx_lookup_error: a failing MX lookup falls back to the domain's own address.
#[test]
fn ignore_mx_lookup_error_uses_the_domain_address() {
    let Some(mut net) = Net::start(&[
        "--server=/sf.test/127.0.0.99",
        "--host-record=sf.test,127.0.0.2",
    ]) else {
        return;
    };
    net.servfail_server("127.0.0.99");
    let s2 = net.sink("127.0.0.2:25", &[]);
    let run = net.send(&[], &["rcpt@sf.test"]);
    let why = show(&net, &run, &[&s2]);
    assert!(
        run.result("rcpt@sf.test").contains("deferred dsn=4.4.3"),
        "{why}"
    );
    let run = net.send(&["-o", "ignore_mx_lookup_error=yes"], &["rcpt@sf.test"]);
    let why = show(&net, &run, &[&s2]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@sf.test", "sf.test[127.0.0.2]:25");
}

// An MX host without an address: bounce, or defer with smtp_defer_if_no_mx_address_found.
#[test]
fn mx_without_address_bounces_or_defers() {
    let Some(net) = Net::start(&["--mx-host=nomx.test,gone.nomx.test,10"]) else {
        return;
    };
    let run = net.send(&[], &["rcpt@nomx.test"]);
    let why = show(&net, &run, &[]);
    assert!(
        run.result("rcpt@nomx.test").contains("bounced dsn=5.4.4"),
        "{why}"
    );
    assert!(
        run.stderr
            .contains("warning: no MX host for nomx.test has a valid address record"),
        "{why}"
    );
    let run = net.send(
        &["-o", "smtp_defer_if_no_mx_address_found=yes"],
        &["rcpt@nomx.test"],
    );
    let why = show(&net, &run, &[]);
    assert!(
        run.result("rcpt@nomx.test").contains("deferred dsn=4.4.4"),
        "{why}"
    );
    assert_eq!(run.code, EX_TEMPFAIL, "{why}");
}

// disable_dns_lookups: no MX lookup, the domain's address from the system resolver.
#[test]
fn disable_dns_lookups_skips_mx() {
    let Some(mut net) = Net::start(&[
        "--mx-host=nodns.test,mx.nodns.test,10",
        "--host-record=mx.nodns.test,127.0.0.2",
        "--host-record=nodns.test,127.0.0.3",
    ]) else {
        return;
    };
    let s2 = net.sink("127.0.0.2:25", &[]);
    let s3 = net.sink("127.0.0.3:25", &[]);
    let run = net.send(&["-o", "disable_dns_lookups=yes"], &["rcpt@nodns.test"]);
    let why = show(&net, &run, &[&s2, &s3]);
    assert_eq!(run.code, 0, "{why}");
    is_sent(&run, "rcpt@nodns.test", "nodns.test[127.0.0.3]:25");
    assert!(s2.messages().is_empty(), "{why}");
}

// smtp_dns_reply_filter: records whose text form ("name. ttl IN TYPE data") matches an
// IGNORE rule are dropped (and logged), so the better MX is skipped; a filter that drops
// every record defers with Postfix's 4.7.0 text; an unknown action fails the lookup softly.
#[test]
fn dns_reply_filter_drops_records() {
    let Some(mut net) = Net::start(&pref_records()) else {
        return;
    };
    let s2 = net.sink("127.0.0.2:25", &[]);
    let s3 = net.sink("127.0.0.3:25", &[]);
    let run = net.send(
        &[
            "-o",
            "smtp_dns_reply_filter=regexp:{{/ IN MX 10 mx1\\.pref\\.test\\.$$/ IGNORE}}",
        ],
        &["rcpt@pref.test"],
    );
    let why = show(&net, &run, &[&s2, &s3]);
    is_sent(&run, "rcpt@pref.test", "mx2.pref.test[127.0.0.3]:25");
    assert!(
        run.stderr.contains("ignoring DNS RR: pref.test. ")
            && run.stderr.contains(" IN MX 10 mx1.pref.test."),
        "{why}"
    );
    assert_eq!(s2.sessions(), 0, "{why}");

    let run = net.send(
        &["-o", "smtp_dns_reply_filter=regexp:{{/ IN MX / IGNORE}}"],
        &["rcpt@pref.test"],
    );
    let why = show(&net, &run, &[&s2, &s3]);
    assert_eq!(run.code, EX_TEMPFAIL, "{why}");
    assert!(
        run.result("rcpt@pref.test").contains(
            "deferred dsn=4.7.0 relay=none (Error looking up name=pref.test type=MX: DNS reply filter drops all results)"
        ),
        "{why}"
    );

    let run = net.send(
        &["-o", "smtp_dns_reply_filter=regexp:{{/ IN A / DISCARD}}"],
        &["rcpt@pref.test"],
    );
    let why = show(&net, &run, &[&s2, &s3]);
    assert_eq!(run.code, EX_TEMPFAIL, "{why}");
    assert!(
        run.stderr
            .contains("smtp_dns_reply_filter: unknown DNS filter action: \"DISCARD\""),
        "{why}"
    );
    assert!(
        run.result("rcpt@pref.test")
            .contains("Invalid DNS reply filter syntax"),
        "{why}"
    );
}
