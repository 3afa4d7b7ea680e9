//! Parameters of smtp(8) whose effect is a matter of time or of the socket: the RSET,
//! QUIT, XFORWARD and message-body timeouts, smtp_per_request_deadline with
//! smtp_min_data_rate, tcp_windowsize and the PIX workarounds. Each test makes the
//! parameter decide the outcome (a timeout that fires against a slow server, and the
//! same server without it), so that a parameter that stopped working fails a test.
//!
//! Only lower bounds on time are asserted; slow servers are paced by sleeps in the
//! server, never by the test's own clock.

mod common;
use common::*;
use outpost::delivery::{Collect, Delivery};
use outpost::log::MsgStats;
use outpost::message::memory::MemoryContent;
use outpost::outcome::{Outcome, Status};
use outpost::request::{Recipient, Request};
use outpost::session::conn::Tracer;
use outpost::session::reuse::{Cached, ConnCache};
use outpost::session::{Endpoint, Params, Peer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

const R1: &str = "r1@example.net";

/// The sink's wire logs once at least `n` sessions have ended (a session whose client
/// gave up ends only when the sink's own scripted delay is over).
fn dialogues(sink: &Sink, n: usize) -> Vec<String> {
    let dir = sink.dir.path().join("raw");
    for _ in 0..750 {
        let logs = read_dir_sorted(&dir);
        if logs.len() >= n {
            return logs
                .iter()
                .map(|l| String::from_utf8_lossy(l).to_string())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("fewer than {n} sessions recorded in {}", dir.display());
}

fn in_parallel<T: Send + 'static>(cases: Vec<Box<dyn FnOnce() -> T + Send>>) -> Vec<T> {
    let handles: Vec<_> = cases.into_iter().map(std::thread::spawn).collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("test case"))
        .collect()
}

// ---- the engine driven directly --------------------------------------------------------

fn request(rcpts: &[&str]) -> Request {
    Request {
        queue_id: "PARAMS1".into(),
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

/// One delivery request through the engine, optionally with a connection cache.
fn deliver(
    req: &Request,
    params: &Params,
    eps: &[Endpoint],
    cache: Option<&mut dyn ConnCache>,
) -> Vec<Option<Outcome>> {
    let mut collect = Collect::default();
    {
        let mut dl = Delivery::new(req, params, &mut collect);
        dl.nexthop = "example.net".into();
        if let Some(c) = cache {
            dl.cache = Some(c);
            dl.set_cache_policy("example.net", "example.net", true, true);
        }
        let mut content = MemoryContent::new(MSG.to_vec());
        let mut none = |_: &Peer| -> Option<Tracer> { None };
        dl.run(eps, &mut content, &mut none);
    }
    let mut v = collect.outcomes;
    v.resize(req.recipients.len(), None);
    v
}

/// A connection cache in memory, standing in for scache(8).
#[derive(Default)]
struct MemCache {
    endp: std::collections::HashMap<String, (OwnedFd, String)>,
    dest: std::collections::HashMap<String, (String, String)>,
}

impl ConnCache for MemCache {
    fn find_dest(&mut self, label: &str) -> Option<Cached> {
        let (dest_prop, endp_label) = self.dest.get(label)?.clone();
        let (fd, endp_prop) = self.endp.remove(&endp_label)?;
        Some(Cached {
            fd,
            dest_prop,
            endp_prop,
        })
    }
    fn find_endp(&mut self, label: &str) -> Option<Cached> {
        let (fd, endp_prop) = self.endp.remove(label)?;
        Some(Cached {
            fd,
            dest_prop: String::new(),
            endp_prop,
        })
    }
    fn save_endp(&mut self, _ttl: Duration, label: &str, prop: &str, fd: OwnedFd) {
        self.endp.insert(label.into(), (fd, prop.into()));
    }
    fn save_dest(&mut self, _ttl: Duration, label: &str, prop: &str, endp_label: &str) {
        self.dest
            .insert(label.into(), (prop.into(), endp_label.into()));
    }
}

// ---- a raw server for timing the message body --------------------------------------------

/// How the raw server reads the message text after its 354.
#[derive(Clone, Copy)]
struct BodyPace {
    /// Read nothing at first, for this long.
    stall: Duration,
    /// Then read at most this many bytes at a time ...
    chunk: usize,
    /// ... with this pause after each read.
    pause: Duration,
}

const BODY_FREELY: BodyPace = BodyPace {
    stall: Duration::ZERO,
    chunk: 64 * 1024,
    pause: Duration::ZERO,
};

struct RawSession {
    /// Command lines received, in order.
    commands: Vec<String>,
    /// The message text as it arrived: each read with its time.
    body_reads: Vec<(Instant, Vec<u8>)>,
}

/// A one-connection SMTP server without PIPELINING. `greeting` is the 220 line; EHLO
/// is refused when `esmtp` is false. With `small_window` its receive buffer is small, so
/// that a client writing the message faster than the server reads it waits in its
/// writes all along (a server that stops reading needs no such help: its window closes).
fn raw_server(
    greeting: &'static str,
    esmtp: bool,
    pace: BodyPace,
    small_window: bool,
) -> (String, std::thread::JoinHandle<RawSession>) {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    if small_window {
        // Before listen(), so that accepted connections advertise a small window.
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    }
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    sock.listen(1).expect("listen");
    let listener: TcpListener = sock.into();
    let addr = listener.local_addr().expect("addr").to_string();
    let h = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let mut out = RawSession {
            commands: Vec::new(),
            body_reads: Vec::new(),
        };
        let mut buf: Vec<u8> = Vec::new();
        let say = |s: &mut TcpStream, text: &str| {
            let _ = s.write_all(format!("{text}\r\n").as_bytes());
        };
        say(&mut s, greeting);
        loop {
            let Some(line) = read_line(&mut s, &mut buf) else {
                return out;
            };
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            out.commands.push(line);
            match verb.as_str() {
                "EHLO" if esmtp => say(&mut s, "250-raw.test\r\n250 8BITMIME"),
                "EHLO" => say(&mut s, "502 5.5.2 Error: command not recognized"),
                "HELO" => say(&mut s, "250 raw.test"),
                "DATA" => {
                    say(&mut s, "354 go ahead");
                    if !read_body(&mut s, &mut buf, pace, &mut out.body_reads) {
                        return out;
                    }
                    say(&mut s, "250 2.0.0 Ok: queued");
                }
                "QUIT" => {
                    say(&mut s, "221 2.0.0 Bye");
                    return out;
                }
                _ => say(&mut s, "250 2.0.0 Ok"),
            }
        }
    });
    (addr, h)
}

fn read_line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            return Some(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Read message text up to and including the final dot, at `pace`. False when the
/// client went away first.
fn read_body(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    pace: BodyPace,
    reads: &mut Vec<(Instant, Vec<u8>)>,
) -> bool {
    std::thread::sleep(pace.stall);
    let mut text = std::mem::take(buf);
    let mut chunk = vec![0u8; pace.chunk];
    loop {
        if let Some(end) = text.windows(5).position(|w| w == b"\r\n.\r\n") {
            *buf = text.split_off(end + 5);
            return true;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                reads.push((Instant::now(), chunk[..n].to_vec()));
                text.extend_from_slice(&chunk[..n]);
            }
        }
        std::thread::sleep(pace.pause);
    }
}

/// A message of about `size` bytes of text lines.
fn big_message(size: usize) -> Vec<u8> {
    let mut m = b"From: a@example.org\nSubject: big\n\n".to_vec();
    let line = [b'x'; 76];
    while m.len() < size {
        m.extend_from_slice(&line);
        m.push(b'\n');
    }
    m
}

fn dest_of(addr: &str) -> String {
    let (h, p) = addr.rsplit_once(':').expect("host:port");
    format!("[{h}]:{p}")
}

// ---- smtp_rset_timeout ---------------------------------------------------------------------

/// After every recipient was refused the transaction ends with RSET, whose reply is
/// awaited for smtp_rset_timeout. A timeout there is not about the mail: Postfix's
/// smtp_loop() gives up the session without a word (the "sending final RSET" text is
/// never reported, the recipient keeps its bounce) and sends no QUIT. The same server
/// answering within the timeout gets its QUIT.
#[test]
fn final_rset_reply_is_awaited_for_smtp_rset_timeout() {
    let run = |rset_timeout: &'static str| -> Box<dyn FnOnce() -> (Run, String, u16) + Send> {
        Box::new(move || {
            // Lock-step (no PIPELINING), so that QUIT is sent only after RSET's reply.
            let sink = Sink::start(&[
                "--caps",
                "8BITMIME",
                "--reply",
                "rcpt=550 5.1.1 <r1@example.net>: no such user",
                "--delay",
                "rset=3s",
            ]);
            let o = format!("smtp_rset_timeout={rset_timeout}");
            let run = send(&sink.dest(), &["-o", &o], &[R1], MSG);
            let d = dialogues(&sink, 1).join("");
            (run, d, sink.port())
        })
    };
    let mut r = in_parallel(vec![run("1s"), run("10s")]);
    let (waited, d_waited, port_waited) = r.pop().expect("10s");
    let (run, d, port) = r.pop().expect("1s");
    for (run, d, port) in [(&run, &d, port), (&waited, &d_waited, port_waited)] {
        assert_eq!(run.code, 67, "{run}");
        assert!(
            run.result(R1).contains(&format!(
                "bounced dsn=5.1.1 relay=127.0.0.1[127.0.0.1]:{port} "
            )),
            "{run}"
        );
        assert!(
            run.result(R1).contains(
                "(host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <r1@example.net>: no such user (in reply to RCPT TO command))"
            ),
            "{run}"
        );
        assert_eq!(run.log_for(R1).len(), 1, "{run}");
        assert!(run.log_for(R1)[0].contains("status=bounced"), "{run}");
        assert!(!run.stderr.contains("timed out"), "{run}");
        assert!(d.contains("C: RSET\r\n"), "{d}");
    }
    // 1s: the client hung up before the reply came, without QUIT.
    assert!(!d.contains("C: QUIT"), "{d}");
    // 10s: the reply came and the session ended properly.
    assert!(d_waited.contains("C: QUIT\r\n"), "{d_waited}");
}

/// Before a cached connection is used again it is probed with RSET, whose reply is
/// awaited for smtp_rset_timeout. A server too slow to answer is dropped silently (the
/// probe is not part of sending mail) and the mail goes over a new connection.
#[test]
fn rset_probe_of_a_cached_connection_times_out() {
    let case = |rset_timeout: u64| -> Box<dyn FnOnce() -> (Vec<String>, Vec<Status>) + Send> {
        Box::new(move || {
            let sink = Sink::start(&["--delay", "rset=3s"]);
            let params = Params {
                rset_timeout: Duration::from_secs(rset_timeout),
                ..Params::default()
            };
            let mut cache = MemCache::default();
            let mut statuses = Vec::new();
            for _ in 0..2 {
                let out = deliver(
                    &request(&[R1]),
                    &params,
                    &[ep(&sink.addr)],
                    Some(&mut cache),
                );
                statuses.extend(out.into_iter().map(|o| o.expect("outcome").status));
            }
            // Close what is still cached, so that every session ends.
            drop(cache);
            let sessions = if rset_timeout < 3 { 2 } else { 1 };
            (dialogues(&sink, sessions), statuses)
        })
    };
    let mut r = in_parallel(vec![case(1), case(10)]);
    let (patient, patient_status) = r.pop().expect("10s");
    let (hasty, hasty_status) = r.pop().expect("1s");
    assert_eq!(hasty_status, [Status::Sent, Status::Sent]);
    assert_eq!(patient_status, [Status::Sent, Status::Sent]);
    // 1s: the probed connection carried no second message; a new one did.
    assert_eq!(hasty.len(), 2, "{hasty:?}");
    assert_eq!(hasty[0].matches("C: MAIL FROM").count(), 1, "{hasty:?}");
    assert!(hasty[0].contains("C: RSET\r\n"), "{hasty:?}");
    assert!(!hasty[0].contains("C: QUIT"), "{hasty:?}");
    assert_eq!(hasty[1].matches("C: MAIL FROM").count(), 1, "{hasty:?}");
    // 10s: the probe succeeded and both messages went over the one connection.
    assert_eq!(patient.len(), 1, "{patient:?}");
    assert_eq!(patient[0].matches("C: MAIL FROM").count(), 2, "{patient:?}");
}

// ---- smtp_quit_timeout ---------------------------------------------------------------------

/// With smtp_skip_quit_response=no the QUIT reply is awaited for smtp_quit_timeout. When
/// it does not come, the mail delivered before stays delivered (Postfix ignores trouble
/// after end-of-data was answered) and nothing about the timeout is reported.
#[test]
fn quit_reply_is_awaited_for_smtp_quit_timeout_and_the_mail_stays_sent() {
    let run = |quit_timeout: &'static str| -> Box<dyn FnOnce() -> (Run, u16) + Send> {
        Box::new(move || {
            // Lock-step: with PIPELINING the sink would hold back its reply to "." until
            // it has answered the QUIT behind it.
            let sink = Sink::start(&["--caps", "8BITMIME", "--delay", "quit=3s"]);
            let o = format!("smtp_quit_timeout={quit_timeout}");
            let run = send(
                &sink.dest(),
                &[
                    "-o",
                    "smtp_skip_quit_response=no",
                    "-o",
                    &o,
                    // The dialogue in the log: whether the 221 was read.
                    "-o",
                    "debug_peer_list=127.0.0.1",
                ],
                &[R1],
                MSG,
            );
            (run, sink.port())
        })
    };
    let mut r = in_parallel(vec![run("1s"), run("10s")]);
    let (waited, _) = r.pop().expect("10s");
    let (run, port) = r.pop().expect("1s");
    let peer = format!("127.0.0.1[127.0.0.1]:{port}");
    assert_eq!(run.code, 0, "{run}");
    assert!(run.result(R1).contains("sent dsn=2.0.0"), "{run}");
    assert_eq!(run.log_for(R1).len(), 1, "{run}");
    assert!(run.log_for(R1)[0].contains("status=sent"), "{run}");
    assert!(run.stderr.contains(&format!("> {peer}: QUIT")), "{run}");
    assert!(!run.stderr.contains("221 2.0.0"), "{run}");
    assert!(!run.stderr.contains("timed out"), "{run}");
    // Patient enough: the 221 was read.
    assert_eq!(waited.code, 0, "{waited}");
    assert!(waited.stderr.contains(": 221 2.0.0 Bye"), "{waited}");
}

// ---- smtp_xforward_timeout -----------------------------------------------------------------

/// Each XFORWARD command's reply is awaited for smtp_xforward_timeout; a timeout defers
/// the mail with Postfix's text for that command. (`outpost send` has no XFORWARD
/// attributes to forward, so the engine is driven directly.)
#[test]
fn xforward_replies_are_awaited_for_smtp_xforward_timeout() {
    let cases: Vec<(&str, &str)> = vec![
        ("xforward#1", "sending XFORWARD name/address"),
        ("xforward#2", "sending XFORWARD protocol/helo_name"),
    ];
    let results = in_parallel(
        cases
            .into_iter()
            .map(|(sel, doing)| -> Box<dyn FnOnce() + Send> {
                Box::new(move || {
                    // Lock-step: with PIPELINING the sink would hold back its reply to
                    // the first XFORWARD while it delays the second.
                    let sink = Sink::start(&[
                        "--caps",
                        "XFORWARD NAME ADDR PROTO HELO",
                        "--delay",
                        &format!("{sel}=3s"),
                    ]);
                    let mut req = request(&[R1]);
                    req.xforward.name = "client.example".into();
                    req.xforward.addr = "192.0.2.7".into();
                    req.xforward.proto = "ESMTP".into();
                    req.xforward.helo = "client.example".into();
                    let params = Params {
                        send_xforward: true,
                        xforward_timeout: Duration::from_secs(1),
                        ..Params::default()
                    };
                    let out = deliver(&req, &params, &[ep(&sink.addr)], None);
                    let o = out[0].as_ref().expect("outcome");
                    assert_eq!(o.status, Status::Deferred, "{sel}: {o:?}");
                    assert_eq!(o.dsn.status, "4.4.2", "{sel}: {o:?}");
                    assert_eq!(
                        o.dsn.reason,
                        format!("conversation with 127.0.0.1[127.0.0.1] timed out while {doing}"),
                        "{sel}"
                    );
                    assert!(sink.messages().is_empty());
                })
            })
            .collect(),
    );
    assert_eq!(results.len(), 2);
    // Patient enough: the same slow server gets the mail.
    let sink = Sink::start(&[
        "--caps",
        "PIPELINING,XFORWARD NAME ADDR PROTO HELO",
        "--delay",
        "xforward#1=1500ms",
    ]);
    let mut req = request(&[R1]);
    req.xforward.name = "client.example".into();
    let params = Params {
        send_xforward: true,
        xforward_timeout: Duration::from_secs(10),
        ..Params::default()
    };
    let out = deliver(&req, &params, &[ep(&sink.addr)], None);
    assert_eq!(out[0].as_ref().map(|o| o.status), Some(Status::Sent));
}

// ---- smtp_data_xfer_timeout ----------------------------------------------------------------

/// A server that stops reading the message text: the client's write waits
/// smtp_data_xfer_timeout, then the mail is deferred "while sending message body". The
/// same server resumes reading after 3s, so a client that waited longer would deliver.
#[test]
fn data_xfer_timeout_when_the_server_stops_reading() {
    let pace = BodyPace {
        stall: Duration::from_secs(3),
        ..BODY_FREELY
    };
    let (addr, server) = raw_server("220 raw.test ESMTP", true, pace, false);
    let msg = big_message(2 << 20);
    let run = send(
        &dest_of(&addr),
        &[
            "-o",
            "smtp_data_xfer_timeout=1s",
            // A small send buffer, so that the writes must wait for the server.
            "-o",
            "tcp_windowsize=16384",
        ],
        &[R1],
        &msg,
    );
    assert_eq!(run.code, 75, "{run}");
    assert!(
        run.result(R1)
            .contains("deferred dsn=4.4.2 relay=127.0.0.1[127.0.0.1]:")
            && run.result(R1).contains(
                "(conversation with 127.0.0.1[127.0.0.1] timed out while sending message body)"
            ),
        "{run}"
    );
    assert!(run.log_for(R1)[0].contains("status=deferred"), "{run}");
    let s = server.join().expect("server");
    assert!(s.commands.iter().any(|c| c == "DATA"), "{:?}", s.commands);
}

// ---- smtp_per_request_deadline and smtp_min_data_rate --------------------------------------

/// With smtp_per_request_deadline=yes a reply must arrive whole within the command's
/// timeout; without it only each read is limited. A server that sends its multi-line
/// MAIL reply one line every 500ms (2.5s in all, never 1s between lines) times out
/// under the deadline and is fine without it.
#[test]
fn per_request_deadline_covers_a_whole_multiline_reply() {
    let run = |deadline: &'static str| -> Box<dyn FnOnce() -> Run + Send> {
        Box::new(move || {
            let sink = Sink::start(&[
                "--caps",
                "8BITMIME",
                "--reply",
                "mail=250 2.1.0 one\\ntwo\\nthree\\nfour\\nfive\\nsix",
                "--line-delay",
                "mail=500ms",
            ]);
            let o = format!("smtp_per_request_deadline={deadline}");
            send(
                &sink.dest(),
                &["-o", "smtp_mail_timeout=1s", "-o", &o],
                &[R1],
                MSG,
            )
        })
    };
    let mut r = in_parallel(vec![run("yes"), run("no")]);
    let per_read = r.pop().expect("no");
    let deadline = r.pop().expect("yes");
    assert_eq!(deadline.code, 75, "{deadline}");
    assert!(
        deadline
            .result(R1)
            .contains("deferred dsn=4.4.2 relay=127.0.0.1[127.0.0.1]:")
            && deadline.result(R1).contains(
                "(conversation with 127.0.0.1[127.0.0.1] timed out while sending MAIL FROM)"
            ),
        "{deadline}"
    );
    assert!(
        deadline.log_for(R1)[0].contains("status=deferred"),
        "{deadline}"
    );
    assert_eq!(per_read.code, 0, "{per_read}");
}

/// Under the deadline the message body earns one second per smtp_min_data_rate bytes
/// sent (up to smtp_data_xfer_timeout). A server reading at most 400 KB/s takes over
/// 1.5s for a 600 KB message: with a rate it keeps up with, or without the deadline, the
/// mail goes through; with a rate it cannot reach, the 1s deadline runs out.
#[test]
fn min_data_rate_extends_the_body_deadline() {
    let pace = BodyPace {
        stall: Duration::ZERO,
        chunk: 4096,
        pause: Duration::from_millis(10),
    };
    let case = |deadline: &'static str,
                rate: &'static str|
     -> Box<dyn FnOnce() -> (Run, RawSession, Duration) + Send> {
        Box::new(move || {
            let (addr, server) = raw_server("220 raw.test ESMTP", true, pace, true);
            let msg = big_message(600 * 1024);
            let d = format!("smtp_per_request_deadline={deadline}");
            let r = format!("smtp_min_data_rate={rate}");
            let run = send(
                &dest_of(&addr),
                &[
                    "-o",
                    "smtp_data_xfer_timeout=1s",
                    "-o",
                    &d,
                    "-o",
                    &r,
                    "-o",
                    "tcp_windowsize=16384",
                ],
                &[R1],
                &msg,
            );
            let s = server.join().expect("server");
            let took = match (s.body_reads.first(), s.body_reads.last()) {
                (Some(a), Some(b)) => b.0 - a.0,
                _ => Duration::ZERO,
            };
            (run, s, took)
        })
    };
    let mut r = in_parallel(vec![
        case("yes", "100000000"),
        case("yes", "1000"),
        case("no", "100000000"),
    ]);
    let (no_deadline, _, took_plain) = r.pop().expect("no deadline");
    let (slow_rate, _, took_slow) = r.pop().expect("rate 1000");
    let (fast_rate, _, _) = r.pop().expect("rate 1e8");
    assert_eq!(fast_rate.code, 75, "{fast_rate}");
    assert!(
        fast_rate.result(R1).contains(
            "(conversation with 127.0.0.1[127.0.0.1] timed out while sending message body)"
        ),
        "{fast_rate}"
    );
    for (run, took) in [(&slow_rate, took_slow), (&no_deadline, took_plain)] {
        assert_eq!(run.code, 0, "{run}");
        // The transfer really outlasted the 1s timeout.
        assert!(took > Duration::from_secs(1), "{took:?} {run}");
    }
}

// ---- tcp_windowsize ------------------------------------------------------------------------

/// tcp_windowsize sets the send and receive buffers of the client socket before it
/// connects (Linux reports twice the value set); 0 leaves the system's defaults.
#[cfg(target_os = "linux")]
#[test]
fn tcp_windowsize_sets_the_socket_buffers() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let e = ep(&l.local_addr().expect("addr").to_string());
    let peer = Peer::of(&e, "client.test");
    let buffers = |size: i64| {
        let params = Params {
            tcp_windowsize: size,
            ..Params::default()
        };
        let stream = outpost::session::connect(&e, &peer, &params).expect("connect");
        let fd = stream.into_fd().expect("a socket");
        let s = socket2::SockRef::from(&fd);
        (
            s.recv_buffer_size().expect("SO_RCVBUF"),
            s.send_buffer_size().expect("SO_SNDBUF"),
        )
    };
    assert_eq!(buffers(20000), (40000, 40000));
    assert_eq!(buffers(30000), (60000, 60000));
    let (rcv, snd) = buffers(0);
    assert!(rcv != 40000 && rcv != 60000 && snd != 40000 && snd != 60000);
}

// ---- smtp_pix_workarounds, _threshold_time and _delay_time ---------------------------------

/// A greeting of "220" and asterisks is a Cisco PIX: disable_esmtp sends HELO, and for
/// mail older than smtp_pix_workaround_threshold_time (0 here: any mail) delay_dotcrlf
/// sends the message, waits smtp_pix_workaround_delay_time and only then sends the final
/// dot, in a packet of its own.
#[test]
fn pix_workarounds_helo_and_a_late_final_dot() {
    let (addr, server) = raw_server("220 ****************************", true, BODY_FREELY, false);
    let run = send(
        &dest_of(&addr),
        &[
            "-o",
            "smtp_pix_workaround_threshold_time=0",
            "-o",
            "smtp_pix_workaround_delay_time=1s",
        ],
        &[R1],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    let port = addr.rsplit_once(':').expect("port").1;
    assert!(
        run.stderr.contains(&format!(
            "TESTQID: enabling PIX workarounds: disable_esmtp delay_dotcrlf for 127.0.0.1[127.0.0.1]:{port}"
        )),
        "{run}"
    );
    let s = server.join().expect("server");
    assert!(
        s.commands.iter().any(|c| c == "HELO client.test")
            && !s.commands.iter().any(|c| c.starts_with("EHLO")),
        "{:?}",
        s.commands
    );
    // The message, then after the delay the dot alone.
    let (last_at, last) = s.body_reads.last().expect("body");
    assert_eq!(last.as_slice(), b".\r\n", "{:?}", s.body_reads);
    let (before_at, before) = &s.body_reads[s.body_reads.len() - 2];
    assert!(before.ends_with(b"Hello.\r\n"), "{:?}", s.body_reads);
    assert!(
        *last_at - *before_at >= Duration::from_secs(1),
        "{:?}",
        *last_at - *before_at
    );

    // The default threshold (500s): fresh mail gets only disable_esmtp, and the dot
    // follows the message at once.
    let (addr, server) = raw_server("220 ****************************", true, BODY_FREELY, false);
    let run = send(&dest_of(&addr), &[], &[R1], MSG);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr
            .contains("TESTQID: enabling PIX workarounds: disable_esmtp for 127.0.0.1"),
        "{run}"
    );
    let s = server.join().expect("server");
    let all: Vec<u8> = s.body_reads.iter().flat_map(|r| r.1.clone()).collect();
    assert!(all.ends_with(b"Hello.\r\n.\r\n"));

    // smtp_pix_workarounds empty: EHLO as to any server, and nothing logged.
    let (addr, server) = raw_server("220 ****************************", true, BODY_FREELY, false);
    let run = send(
        &dest_of(&addr),
        &["-o", "smtp_pix_workarounds="],
        &[R1],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(!run.stderr.contains("PIX"), "{run}");
    let s = server.join().expect("server");
    assert!(
        s.commands.iter().any(|c| c == "EHLO client.test"),
        "{:?}",
        s.commands
    );
}

/// Only delay_dotcrlf, for fresh mail: nothing is left to enable, and Postfix still logs
/// the line (with an empty list).
#[test]
fn pix_workarounds_logged_even_when_none_apply() {
    let sink = Sink::start(&["--reply", "greeting=220 ****"]);
    let run = send(
        &sink.dest(),
        &["-o", "smtp_pix_workarounds=delay_dotcrlf"],
        &[R1],
        MSG,
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "TESTQID: enabling PIX workarounds:  for 127.0.0.1[127.0.0.1]:{}",
            sink.port()
        )),
        "{run}"
    );
    assert_eq!(sink.meta(0, "Proto"), ["ESMTP"]);
}
