//! The engine's API driven directly (no command line): the address loop, final-server
//! rules, XFORWARD, SMTPUTF8 and the bind address.

mod common;
use common::*;
use outpost::delivery::{Collect, Delivery};
use outpost::log::MsgStats;
use outpost::message::memory::MemoryContent;
use outpost::outcome::Status;
use outpost::request::{Recipient, Request};
use outpost::session::conn::Tracer;
use outpost::session::{Endpoint, Params, Peer};
use std::net::SocketAddr;

fn request(rcpts: &[&str]) -> Request {
    Request {
        queue_id: "ENGINE1".into(),
        sender: "s@example.org".into(),
        recipients: rcpts.iter().map(|r| Recipient::new(*r)).collect(),
        size: MSG.len() as u64,
        stats: MsgStats::default(),
        ..Default::default()
    }
}

fn ep(addr: &str) -> Endpoint {
    let sa: SocketAddr = addr.parse().expect("socket address");
    Endpoint::inet(sa.ip().to_string(), sa)
}

fn dead_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn deliver(
    req: &Request,
    params: &Params,
    eps: &[Endpoint],
) -> Vec<Option<outpost::outcome::Outcome>> {
    let mut collect = Collect::default();
    {
        let mut dl = Delivery::new(req, params, &mut collect);
        dl.nexthop = "example.net".into();
        let mut content = MemoryContent::new(MSG.to_vec());
        let mut none = |_: &Peer| -> Option<Tracer> { None };
        dl.run(eps, &mut content, &mut none);
    }
    let mut v = collect.outcomes;
    v.resize(req.recipients.len(), None);
    v
}

#[test]
fn dead_first_address_then_next() {
    let sink = Sink::start(&[]);
    let req = request(&["a@example.net"]);
    let out = deliver(
        &req,
        &Params::default(),
        &[ep(&dead_port()), ep(&sink.addr)],
    );
    let o = out[0].as_ref().expect("outcome");
    assert_eq!(o.status, Status::Sent);
    assert_eq!(o.relay, format!("127.0.0.1[127.0.0.1]:{}", sink.port()));
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn greeting_4xx_and_5xx_move_to_the_next_address() {
    for reply in ["421 4.3.2 busy", "554 5.3.2 not now"] {
        let bad = Sink::start(&["--reply", &format!("greeting={reply}")]);
        let good = Sink::start(&[]);
        let req = request(&["a@example.net"]);
        let out = deliver(&req, &Params::default(), &[ep(&bad.addr), ep(&good.addr)]);
        assert_eq!(
            out[0].as_ref().map(|o| o.status),
            Some(Status::Sent),
            "{reply}"
        );
        assert_eq!(good.messages().len(), 1, "{reply}");
    }
}

#[test]
fn soft_rcpt_failure_is_retried_on_the_next_server_hard_is_final() {
    let first = Sink::start(&[
        "--reply",
        "rcpt:soft@example.net=450 4.2.0 later",
        "--reply",
        "rcpt:hard@example.net=550 5.1.1 unknown",
    ]);
    let second = Sink::start(&[]);
    let req = request(&["soft@example.net", "hard@example.net", "ok@example.net"]);
    let out = deliver(
        &req,
        &Params::default(),
        &[ep(&first.addr), ep(&second.addr)],
    );
    let st: Vec<_> = out.iter().map(|o| o.as_ref().map(|o| o.status)).collect();
    assert_eq!(
        st,
        [
            Some(Status::Sent),
            Some(Status::Bounced),
            Some(Status::Sent)
        ]
    );
    assert_eq!(first.rcpts(0), ["<ok@example.net>"]);
    assert_eq!(second.rcpts(0), ["<soft@example.net>"]);
    // The soft one was relayed by the second server.
    let relay = &out[0].as_ref().expect("o").relay;
    assert!(relay.ends_with(&format!(":{}", second.port())), "{relay}");
}

#[test]
fn soft_failure_on_the_last_server_defers_with_its_text() {
    let only = Sink::start(&["--reply", "mail=451 4.3.0 local problem"]);
    let req = request(&["a@example.net", "b@example.net"]);
    let out = deliver(
        &req,
        &Params::default(),
        &[ep(&dead_port()), ep(&only.addr)],
    );
    for o in out {
        let o = o.expect("outcome");
        assert_eq!(o.status, Status::Deferred);
        assert!(
            o.dsn
                .reason
                .contains("451 4.3.0 local problem (in reply to MAIL FROM command)")
        );
    }
}

#[test]
fn all_addresses_dead_defers_with_the_last_error_and_relay_none() {
    let (a, b) = (dead_port(), dead_port());
    let req = request(&["a@example.net"]);
    let out = deliver(&req, &Params::default(), &[ep(&a), ep(&b)]);
    let o = out[0].as_ref().expect("outcome");
    assert_eq!(o.status, Status::Deferred);
    assert_eq!(o.relay, "none");
    assert_eq!(o.dsn.status, "4.4.1");
    assert_eq!(
        o.dsn.reason,
        format!(
            "connect to 127.0.0.1[127.0.0.1]:{}: Connection refused",
            b.rsplit(':').next().unwrap_or("")
        )
    );
}

#[test]
fn xforward_is_sent_when_offered_and_enabled() {
    let sink = Sink::start(&["--caps", "PIPELINING,XFORWARD NAME ADDR PROTO HELO SOURCE"]);
    let mut req = request(&["a@example.net"]);
    req.xforward.name = "client.example".into();
    req.xforward.addr = "192.0.2.7".into();
    req.xforward.port = "4711".into(); // not offered: must not be sent
    req.xforward.proto = "ESMTP".into();
    req.xforward.helo = "helo x".into();
    req.xforward.domain = "remote".into();
    let params = Params {
        send_xforward: true,
        ..Params::default()
    };
    let out = deliver(&req, &params, &[ep(&sink.addr)]);
    assert_eq!(out[0].as_ref().map(|o| o.status), Some(Status::Sent));
    let d = sink.dialogue();
    assert!(
        d.contains("C: XFORWARD NAME=client.example ADDR=192.0.2.7\r\n"),
        "{d}"
    );
    assert!(
        d.contains("C: XFORWARD PROTO=ESMTP HELO=helo+20x SOURCE=REMOTE\r\n"),
        "{d}"
    );
    // Off by default.
    let sink2 = Sink::start(&["--caps", "XFORWARD NAME ADDR"]);
    deliver(&req, &Params::default(), &[ep(&sink2.addr)]);
    assert!(!sink2.dialogue().contains("C: XFORWARD"));
}

#[test]
fn smtputf8_required_but_not_offered_bounces() {
    let sink = Sink::start(&["--caps", "PIPELINING,8BITMIME"]);
    let mut req = request(&["j\u{f6}rg@example.net"]);
    req.smtputf8 = true;
    req.smtputf8_required = true;
    let out = deliver(&req, &Params::default(), &[ep(&sink.addr)]);
    let o = out[0].as_ref().expect("outcome");
    assert_eq!(o.status, Status::Bounced);
    assert_eq!(o.dsn.status, "5.6.7");
    assert_eq!(
        o.dsn.reason,
        "SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]"
    );
    // Offered: MAIL FROM carries SMTPUTF8.
    let ok = Sink::start(&[]);
    deliver(&req, &Params::default(), &[ep(&ok.addr)]);
    assert_eq!(
        ok.meta(0, "Mail"),
        [format!("<s@example.org> SIZE={} SMTPUTF8", MSG.len())]
    );
}

#[test]
fn bind_address_is_used() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    l.set_nonblocking(true).expect("nonblocking");
    // Accept with a deadline so that a client that never connects fails the test, not hangs it.
    let t = std::thread::spawn(move || {
        for _ in 0..200 {
            if let Ok((_, peer)) = l.accept() {
                return Some(peer.ip().to_string());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    });
    let dest = format!("[127.0.0.1]:{port}");
    let run = outpost(
        &[
            "send",
            "-q",
            "-d",
            &dest,
            "-o",
            "smtp_bind_address=127.0.0.2",
            "-o",
            "smtp_helo_timeout=1s",
            "a@b.test",
        ],
        MSG,
    );
    assert_eq!(run.code, 75, "{run}");
    assert_eq!(t.join().expect("join").as_deref(), Some("127.0.0.2"));
}

#[test]
fn lmtp_names_and_timeouts_come_from_lmtp_parameters() {
    let sink = Sink::start(&["--lmtp", "--delay", "lhlo=3s"]);
    let dest = format!("inet:127.0.0.1:{}", sink.port());
    // lmtp_lhlo_timeout applies to LHLO (smtp_helo_timeout must not).
    let run = send(
        &dest,
        &["-o", "lmtp_lhlo_timeout=1s", "-o", "smtp_helo_timeout=100s"],
        &["a@b.test"],
        MSG,
    );
    assert!(
        run.result("a@b.test")
            .contains("timed out while performing the LHLO handshake"),
        "{run}"
    );
    let quick = Sink::start(&["--lmtp"]);
    let dest = format!("inet:127.0.0.1:{}", quick.port());
    let run = send(
        &dest,
        &[
            "-o",
            "lmtp_lhlo_name=lhlo.test",
            "-o",
            "smtp_helo_name=wrong.test",
        ],
        &["a@b.test"],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(quick.meta(0, "Helo"), ["lhlo.test"]);
}

/// A bare-bones server answering each command line by its verb, recording what it got.
fn raw_server(
    answer: fn(&str) -> Option<&'static str>,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let t = std::thread::spawn(move || {
        let mut got = Vec::new();
        let Ok((s, _)) = l.accept() else { return got };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut w = s.try_clone().expect("clone");
        let _ = w.write_all(b"220 raw.test ESMTP\r\n");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let cmd = line.trim_end().to_string();
            line.clear();
            let reply = answer(&cmd);
            got.push(cmd);
            if let Some(rep) = reply {
                let _ = w.write_all(rep.as_bytes());
            }
        }
        got
    });
    (addr, t)
}

#[test]
fn data_accepted_with_no_recipients_ends_with_a_lone_dot() {
    let (addr, t) = raw_server(|cmd| {
        let verb = cmd
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        Some(match verb.as_str() {
            "EHLO" => "250-raw.test\r\n250 PIPELINING\r\n",
            "MAIL" => "250 ok\r\n",
            "RCPT" => "550 5.1.1 no\r\n",
            "DATA" => "354 go\r\n",
            "." => "250 ok\r\n",
            "QUIT" => "221 bye\r\n",
            _ => return None,
        })
    });
    let req = request(&["a@example.net"]);
    let out = deliver(&req, &Params::default(), &[ep(&addr)]);
    assert_eq!(out[0].as_ref().map(|o| o.status), Some(Status::Bounced));
    let got = t.join().expect("server");
    let tail: Vec<&str> = got.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(tail, ["DATA", ".", "QUIT"], "{got:?}");
}

#[test]
fn quit_is_sent_without_pipelining_even_when_its_reply_is_skipped() {
    let (addr, t) = raw_server(|cmd| {
        let verb = cmd
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        Some(match verb.as_str() {
            "EHLO" => "250 raw.test\r\n",
            "MAIL" | "RCPT" | "." => "250 ok\r\n",
            "DATA" => "354 go\r\n",
            "QUIT" => "221 bye\r\n",
            _ => return None,
        })
    });
    let req = request(&["a@example.net"]);
    let out = deliver(&req, &Params::default(), &[ep(&addr)]);
    assert_eq!(out[0].as_ref().map(|o| o.status), Some(Status::Sent));
    let got = t.join().expect("server");
    assert_eq!(got.last().map(String::as_str), Some("QUIT"), "{got:?}");
}

#[test]
fn session_limit_makes_the_second_session_final() {
    // Three servers that all defer MAIL: with smtp_mx_session_limit=2 the second session is
    // final (its deferral is reported) and the third is never contacted.
    let a = Sink::start(&["--reply", "mail=451 4.3.0 first"]);
    let b = Sink::start(&["--reply", "mail=451 4.3.0 second"]);
    let c = Sink::start(&[]);
    let req = request(&["x@example.net"]);
    let out = deliver(
        &req,
        &Params::default(),
        &[ep(&a.addr), ep(&b.addr), ep(&c.addr)],
    );
    let o = out[0].as_ref().expect("outcome");
    assert_eq!(o.status, Status::Deferred);
    assert!(o.dsn.reason.contains("451 4.3.0 second"), "{o:?}");
    assert!(c.dialogue().is_empty() && c.messages().is_empty());
    // With an address limit of 1, only the first is tried.
    let params = Params {
        mx_address_limit: 1,
        ..Params::default()
    };
    let out = deliver(&req, &params, &[ep(&dead_port()), ep(&c.addr)]);
    assert_eq!(
        out[0].as_ref().map(|o| o.dsn.status.as_str()),
        Some("4.4.1")
    );
}

#[test]
fn address_probes_stop_at_rcpt_or_at_data() {
    // smtp_address_verify_target = rcpt (default): RSET after the RCPT replies.
    let sink = Sink::start(&["--reply", "rcpt:bad@example.net=550 5.1.1 unknown"]);
    let mut req = request(&["good@example.net", "bad@example.net"]);
    req.trace_only = true;
    let out = deliver(&req, &Params::default(), &[ep(&sink.addr)]);
    let st: Vec<_> = out
        .iter()
        .map(|o| o.as_ref().map(|o| (o.status, o.dsn.status.clone())))
        .collect();
    assert_eq!(
        st,
        [
            Some((Status::Sent, "2.1.5".to_string())),
            Some((Status::Bounced, "5.1.1".to_string()))
        ]
    );
    let d = sink.dialogue();
    assert!(d.contains("C: RSET") && !d.contains("C: DATA"), "{d}");
    assert!(sink.messages().is_empty());
    // smtp_address_verify_target = data: DATA is sent, 354 means deliverable, and the
    // connection is dropped without sending a message.
    let sink = Sink::start(&[]);
    let params = Params {
        verify_at_rcpt: false,
        ..Params::default()
    };
    let out = deliver(&req, &params, &[ep(&sink.addr)]);
    assert!(
        out.iter()
            .all(|o| o.as_ref().map(|o| o.status) == Some(Status::Sent)),
        "{out:?}"
    );
    assert_eq!(
        out[0].as_ref().map(|o| o.dsn.status.as_str()),
        Some("2.0.0")
    );
    let d = sink.dialogue();
    assert!(d.contains("C: DATA") && !d.contains("C: ."), "{d}");
    assert!(sink.messages().is_empty());
}

#[test]
fn pix_greeting_enables_workarounds() {
    // A "220 ****" greeting: HELO instead of EHLO; for mail older than the threshold, a
    // pause before the final dot (0s here to keep the test fast).
    let sink = Sink::start(&["--reply", "greeting=220 ********"]);
    let mut req = request(&["a@example.net"]);
    req.stats.incoming_arrival =
        Some(std::time::SystemTime::now() - std::time::Duration::from_secs(1000));
    let params = Params {
        pix_delay: std::time::Duration::ZERO,
        ..Params::default()
    };
    let out = deliver(&req, &params, &[ep(&sink.addr)]);
    assert_eq!(out[0].as_ref().map(|o| o.status), Some(Status::Sent));
    let d = sink.dialogue();
    assert!(d.contains("C: HELO") && !d.contains("C: EHLO"), "{d}");
    // An ordinary greeting: EHLO as usual.
    let plain = Sink::start(&[]);
    deliver(&req, &params, &[ep(&plain.addr)]);
    assert!(plain.dialogue().contains("C: EHLO"));
    // Workarounds switched off: EHLO even for the PIX greeting.
    let off = Params {
        pix_workarounds: Vec::new(),
        ..params
    };
    let sink2 = Sink::start(&["--reply", "greeting=220 ********"]);
    deliver(&req, &off, &[ep(&sink2.addr)]);
    assert!(sink2.dialogue().contains("C: EHLO"));
}

/// best_mx_transport: when routing finds that this host is the best MX ("loops back to
/// myself"), the engine hands each open recipient to the hand-off instead of bouncing;
/// a hand-off that fails defers that recipient (never a bounce). Without a hand-off the
/// loop bounces.
#[test]
fn routing_loop_goes_to_the_handoff_not_to_a_bounce() {
    use outpost::outcome::Dsn;
    use outpost::route::Hop;
    let req = request(&["a@loop.test", "b@loop.test"]);
    let params = Params::default();
    let hops = vec![Hop {
        nexthop: "loop.test".into(),
        endpoints: Err(Dsn::new("5.4.6", "mail for loop.test loops back to myself")),
        i_am_mx: true,
        is_fallback: false,
    }];
    let mut passed = Vec::new();
    let mut collect = Collect::default();
    {
        let mut handoff = |i: usize| -> Result<(), Dsn> {
            passed.push(i);
            if i == 1 {
                Err(Dsn::new("4.3.0", "mail transport unavailable"))
            } else {
                Ok(())
            }
        };
        let mut dl = Delivery::new(&req, &params, &mut collect);
        dl.loop_handoff = Some(&mut handoff);
        let mut content = MemoryContent::new(MSG.to_vec());
        let mut none = |_: &Peer| -> Option<Tracer> { None };
        dl.run_hops(&hops, &mut content, &mut none);
    }
    assert_eq!(passed, vec![0, 1]);
    // The first was settled by the other transport: nothing reported here.
    assert!(collect.outcomes.first().cloned().flatten().is_none());
    let b = collect
        .outcomes
        .get(1)
        .cloned()
        .flatten()
        .expect("b reported");
    assert_eq!(b.status, Status::Deferred);
    assert_eq!(b.dsn.status, "4.3.0");

    let mut collect = Collect::default();
    {
        let mut dl = Delivery::new(&req, &params, &mut collect);
        let mut content = MemoryContent::new(MSG.to_vec());
        let mut none = |_: &Peer| -> Option<Tracer> { None };
        dl.run_hops(&hops, &mut content, &mut none);
    }
    let a = collect
        .outcomes
        .first()
        .cloned()
        .flatten()
        .expect("a reported");
    assert_eq!(a.status, Status::Bounced);
    assert_eq!(a.dsn.status, "5.4.6");
}
