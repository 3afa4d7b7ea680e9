//! `outpost send`: deliver one message from the shell, sendmail/msmtp style, with the same
//! engine, parameters and log lines as the daemon. Per-recipient results go to standard
//! output, Postfix-format log lines to standard error, and the exit code follows sysexits.

use crate::config::{Config, Mode};
use crate::delivery::{Collect, Delivery};
use crate::log::{self, MsgStats, Target};
use crate::message::memory::MemoryContent;
use crate::outcome::{Dsn, Status};
use crate::request::{Encoding, Recipient, Request, Ret, notify};
use crate::route;
use crate::session::conn::{Dir, Tracer};
use crate::session::{Params, Peer};
use crate::sysexits::*;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::SystemTime;

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.parsing_style(getopts::ParsingStyle::FloatingFrees);
    o.optopt(
        "f",
        "from",
        "envelope sender (default: your login @ myorigin)",
        "SENDER",
    );
    o.optflag(
        "t",
        "read-recipients",
        "take recipients from To, Cc and Bcc headers (Bcc is removed)",
    );
    o.optopt("d", "destination", "next hop in Postfix syntax: host, [host]:port, inet:host:port, unix:/path (default: relayhost)", "DEST");
    o.optopt(
        "N",
        "notify",
        "DSN NOTIFY: never, or a list of success,failure,delay",
        "LIST",
    );
    o.optopt("R", "ret", "DSN RET: full or hdrs", "RET");
    o.optopt("V", "envid", "DSN envelope id", "ENVID");
    o.optopt(
        "c",
        "config",
        "Postfix configuration directory (default: built-in defaults, or $MAIL_CONFIG)",
        "DIR",
    );
    o.optmulti("o", "", "override a parameter", "NAME=VALUE");
    o.optflag(
        "v",
        "verbose",
        "print the SMTP/LMTP dialogue on standard error",
    );
    o.optflag(
        "",
        "lmtp",
        "speak LMTP (default for unix: and inet: destinations)",
    );
    o.optflag(
        "",
        "smtp",
        "speak SMTP even for unix: and inet: destinations",
    );
    o.optopt(
        "",
        "file",
        "read the message from FILE instead of standard input",
        "FILE",
    );
    o.optopt(
        "",
        "queue-id",
        "queue id to show in log lines (default: made up)",
        "ID",
    );
    o.optopt(
        "B",
        "body",
        "declare the body type: 7BIT or 8BITMIME (default: from the content)",
        "TYPE",
    );
    o.optflag("", "smtputf8", "request SMTPUTF8");
    o.optflag("q", "quiet", "no log lines on standard error");
    o.optflag("", "syslog", "log to syslog instead of standard error");
    o.optflag(
        "i",
        "",
        "ignored (sendmail compatibility: a lone dot never ends input here)",
    );
    o.optflag(
        "",
        "explain",
        "show the MX records and addresses that would be tried, in order; send nothing",
    );
    o.optflag("h", "help", "show this help");
    o
}

fn usage(o: &getopts::Options) -> String {
    o.usage("usage: outpost send [options] [recipient ...]\n\nDeliver one message (standard input, or --file) to the recipients, through the\ndestination given with -d or the configured relayhost.")
}

fn make_queue_id() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:05X}{:05X}",
        now.subsec_micros() & 0xFFFFF,
        (std::process::id() ^ (now.as_secs() as u32)) & 0xFFFFF
    )
}

fn login_name() -> String {
    std::env::var("LOGNAME")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "nobody".to_string())
}

/// The body type a message declares in its top-level Content-Transfer-Encoding, as
/// Postfix's cleanup derives it: 8bit/binary means 8BITMIME, 7bit/base64/quoted-printable
/// 7BIT, anything else (or no MIME header) says nothing.
fn declared_encoding(data: &[u8]) -> Encoding {
    let text = String::from_utf8_lossy(data);
    let mut value: Option<String> = None;
    let mut in_cte = false;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let (true, Some(v)) = (in_cte, value.as_mut()) {
                v.push_str(line);
            }
            continue;
        }
        in_cte = false;
        if let Some((name, v)) = line.split_once(':')
            && name
                .trim()
                .eq_ignore_ascii_case("content-transfer-encoding")
        {
            value = Some(v.to_string());
            in_cte = true;
        }
    }
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("8bit") | Some("binary") => Encoding::EightBit,
        Some("7bit") | Some("base64") | Some("quoted-printable") => Encoding::SevenBit,
        _ => Encoding::Unknown,
    }
}

/// Deliver one destination's recipients; returns (recipient index, outcome) pairs.
#[allow(clippy::too_many_arguments)]
fn deliver_group(
    nexthop: &str,
    idx: &[usize],
    req_template: &Request,
    rcpt_addrs: &[String],
    notify_mask: u32,
    params: &Params,
    rp: &route::RouteParams,
    lookup: &(dyn route::select::Lookup + Send + Sync),
    content: &mut MemoryContent,
    verbose: bool,
    security: &crate::security::Security,
    rewrite: &crate::rewrite::Rewrite,
) -> Vec<(usize, Option<crate::outcome::Outcome>)> {
    let mut req = req_template.clone();
    req.recipients = idx
        .iter()
        .filter_map(|&i| rcpt_addrs.get(i))
        .map(|a| Recipient {
            notify: notify_mask,
            // As submitted: the ORCPT Postfix sends when the server offers DSN.
            orig_address: a.clone(),
            ..Recipient::new(a.clone())
        })
        .collect();
    let mut collect = Collect::default();
    {
        let mut dl = Delivery::new(&req, params, &mut collect);
        dl.nexthop = nexthop.to_string();
        dl.security = Some(security);
        dl.rewrite = Some(rewrite);
        if nexthop.is_empty() {
            dl.fail_all(Dsn::new("5.1.3", "bad address syntax: no domain part"));
        } else {
            let hops = route::plan(nexthop, rp, lookup);
            let mut tracer = |peer: &Peer| -> Option<Tracer> {
                if !verbose {
                    // debug_peer_list: the dialogue with matching servers is logged.
                    return params
                        .debug_peer(peer)
                        .then(|| crate::session::conn::logging_tracer(peer.namaddrport()));
                }
                let name = peer.namaddrport();
                Some(Box::new(move |dir: Dir, data: &[u8]| {
                    let arrow = if dir == Dir::Sent { '>' } else { '<' };
                    let text = String::from_utf8_lossy(data);
                    let _ = writeln!(std::io::stderr(), "{arrow} {name}: {text}");
                }))
            };
            dl.run_hops(&hops, content, &mut tracer);
        }
    }
    idx.iter()
        .enumerate()
        .map(|(k, &i)| (i, collect.outcomes.get(k).cloned().flatten()))
        .collect()
}

/// `--explain`: what would be tried for each destination, without sending anything.
fn explain(
    groups: &[(String, Vec<usize>)],
    rcpt_addrs: &[String],
    rp: &route::RouteParams,
    lookup: &(dyn route::select::Lookup + Send + Sync),
) -> i32 {
    let mut code = EX_OK;
    for (nexthop, idx) in groups {
        let who: Vec<&str> = idx
            .iter()
            .filter_map(|&i| rcpt_addrs.get(i))
            .map(String::as_str)
            .collect();
        println!("destination {nexthop} (recipients: {})", who.join(", "));
        if rp.select.address_limit > 0 {
            println!(
                "  limits: smtp_mx_address_limit={}",
                rp.select.address_limit
            );
        }
        for hop in route::plan(nexthop, rp, lookup) {
            let kind = if hop.is_fallback {
                "fallback relay"
            } else {
                "next hop"
            };
            match &hop.endpoints {
                Ok(eps) => {
                    println!("  {kind} {}:", hop.nexthop);
                    for (n, ep) in eps.iter().enumerate() {
                        let peer = Peer::of(ep, "localhost");
                        let best = if ep.best_mx { " (best MX)" } else { "" };
                        println!("    {}. {}{best}", n + 1, peer.namaddrport());
                    }
                    if hop.i_am_mx {
                        println!(
                            "    (this host is an MX host for {}: no further backups)",
                            hop.nexthop
                        );
                    }
                }
                Err(d) => {
                    println!("  {kind} {}: {} ({})", hop.nexthop, d.status, d.reason);
                    if code == EX_OK {
                        code = if d.status.starts_with('4') {
                            EX_TEMPFAIL
                        } else {
                            for_permanent(&d.status)
                        };
                    }
                }
            }
        }
    }
    code
}

/// Run `outpost send`; `args` excludes "outpost send".
pub fn main(args: &[String]) -> i32 {
    let o = options();
    let m = match o.parse(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("outpost send: {e}");
            eprint!("{}", usage(&o));
            return EX_USAGE;
        }
    };
    if m.opt_present("h") {
        print!("{}", usage(&o));
        return EX_OK;
    }
    let dest_arg = m.opt_str("d");
    let lmtp = if m.opt_present("smtp") {
        false
    } else {
        m.opt_present("lmtp")
            || dest_arg
                .as_deref()
                .is_some_and(|d| d.starts_with("unix:") || d.starts_with("inet:"))
    };
    let mode = if lmtp { Mode::Lmtp } else { Mode::Smtp };
    let process = if lmtp { "lmtp" } else { "smtp" };
    let cfg = match Config::load(
        m.opt_str("c").map(PathBuf::from).as_deref(),
        &m.opt_strs("o"),
        mode,
        process,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("outpost send: fatal: {e}");
            return EX_CONFIG;
        }
    };
    let tag = format!("{}/{}", cfg.get("syslog_name"), process);
    if m.opt_present("q") {
        log::init(Target::Discard, &tag);
    } else if m.opt_present("syslog") {
        let fac = log::facility(&cfg.get("syslog_facility")).unwrap_or(libc::LOG_MAIL);
        log::init(Target::Syslog(fac), &tag);
    } else {
        log::init(Target::Stderr, &tag);
    }
    let params = Params::from_config(&cfg);
    let security = match crate::security::Security::from_config(&cfg) {
        Ok(s) => s,
        Err(e) => {
            log::error(&format!("fatal: {e}"));
            return EX_CONFIG;
        }
    };
    let rewrite = match crate::rewrite::Rewrite::from_config(&cfg) {
        Ok(r) => r,
        Err(e) => {
            log::error(&format!("fatal: {e}"));
            return EX_CONFIG;
        }
    };

    // The message.
    let mut data = Vec::new();
    let read = match m.opt_str("file") {
        Some(f) => std::fs::File::open(&f)
            .and_then(|mut fh| fh.read_to_end(&mut data))
            .map_err(|e| format!("{f}: {e}")),
        None => std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| format!("standard input: {e}")),
    };
    if let Err(e) = read {
        eprintln!("outpost send: cannot read message: {e}");
        return EX_NOINPUT;
    }

    // Recipients.
    let mut rcpt_addrs: Vec<String> = m.free.clone();
    if m.opt_present("t") {
        let (found, stripped) = super::headers::recipients_from_headers(&data);
        rcpt_addrs.extend(found);
        data = stripped;
    }
    if rcpt_addrs.is_empty() {
        eprintln!("outpost send: no recipients given");
        return EX_USAGE;
    }
    let notify_mask = match m.opt_str("N") {
        None => 0,
        Some(s) => match notify::parse(&s) {
            Some(v) => v,
            None => {
                eprintln!(
                    "outpost send: bad -N value \"{s}\": use never, or success,failure,delay"
                );
                return EX_USAGE;
            }
        },
    };
    let ret = match m.opt_str("R").map(|s| s.to_ascii_lowercase()) {
        None => None,
        Some(s) if s == "full" => Some(Ret::Full),
        Some(s) if s == "hdrs" => Some(Ret::Hdrs),
        Some(s) => {
            eprintln!("outpost send: bad -R value \"{s}\": use full or hdrs");
            return EX_USAGE;
        }
    };
    let envid = m.opt_str("V").unwrap_or_default();
    if envid.bytes().any(|b| !(32..127).contains(&b)) {
        eprintln!("outpost send: bad -V value: printable ASCII only");
        return EX_USAGE;
    }
    let encoding = match m.opt_str("B").map(|s| s.to_ascii_uppercase()) {
        None => declared_encoding(&data),
        Some(s) if s == "8BITMIME" => Encoding::EightBit,
        Some(s) if s == "7BIT" => Encoding::SevenBit,
        Some(s) => {
            eprintln!("outpost send: bad -B value \"{s}\": use 7BIT or 8BITMIME");
            return EX_USAGE;
        }
    };
    let sender = match m.opt_str("f") {
        Some(s) => s.trim_start_matches('<').trim_end_matches('>').to_string(),
        None => format!("{}@{}", login_name(), cfg.get("myorigin")),
    };
    for a in rcpt_addrs.iter().chain(std::iter::once(&sender)) {
        if a.bytes().any(|b| b < 32 || b == 127) || a.contains(['<', '>']) {
            eprintln!("outpost send: bad address \"{}\"", a.escape_default());
            return EX_USAGE;
        }
    }
    let any_utf8 = !sender.is_ascii() || rcpt_addrs.iter().any(|a| !a.is_ascii());
    let smtputf8 = m.opt_present("smtputf8") || any_utf8;

    let now = SystemTime::now();
    let size: u64 = data.len() as u64 + u64::from(!data.is_empty() && !data.ends_with(b"\n"))
        - data.windows(2).filter(|w| w == b"\r\n").count() as u64;
    let req_template = Request {
        queue_id: m.opt_str("queue-id").unwrap_or_else(make_queue_id),
        sender,
        recipients: Vec::new(),
        envid,
        ret,
        encoding,
        smtputf8,
        smtputf8_required: smtputf8 && any_utf8,
        size,
        stats: MsgStats {
            incoming_arrival: Some(now),
            active_arrival: Some(now),
            agent_handoff: Some(now),
            ..Default::default()
        },
        xforward: Default::default(),
        trace_only: false,
    };

    // Destinations: -d, else relayhost, else each recipient's domain.
    let dest_text = dest_arg.or_else(|| Some(params.relayhost.clone()).filter(|s| !s.is_empty()));
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, a) in rcpt_addrs.iter().enumerate() {
        let key = match &dest_text {
            Some(d) => d.clone(),
            None => a
                .rsplit_once('@')
                .map(|(_, d)| d.to_string())
                .unwrap_or_default(),
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => groups.push((key, vec![i])),
        }
    }

    let verbose = m.opt_present("v");
    let rp = route::RouteParams::from_config(&cfg, &params);
    let lookup = route::system_lookup(&rp);
    if m.opt_present("explain") {
        return explain(&groups, &rcpt_addrs, &rp, lookup.as_ref());
    }
    let content = MemoryContent::new(data);
    let mut results: Vec<Option<crate::outcome::Outcome>> = vec![None; rcpt_addrs.len()];
    // One worker thread per destination, a bounded number at a time.
    let parallel = usize::try_from(cfg.int("smtp_destination_concurrency_limit"))
        .unwrap_or(8)
        .clamp(1, 8);
    for batch in groups.chunks(parallel) {
        let done: Vec<Vec<(usize, Option<crate::outcome::Outcome>)>> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(nexthop, idx)| {
                        let (params, rp, lookup, req_template, rcpt_addrs, security, rewrite) = (
                            &params,
                            &rp,
                            lookup.as_ref(),
                            &req_template,
                            &rcpt_addrs,
                            &security,
                            &rewrite,
                        );
                        let mut content = content.share();
                        scope.spawn(move || {
                            deliver_group(
                                nexthop,
                                idx,
                                req_template,
                                rcpt_addrs,
                                notify_mask,
                                params,
                                rp,
                                lookup,
                                &mut content,
                                verbose,
                                security,
                                rewrite,
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
        for (i, o) in done.into_iter().flatten() {
            if let Some(slot) = results.get_mut(i) {
                *slot = o;
            }
        }
    }

    // Report and exit code.
    let mut any_deferred = false;
    let mut first_bounce: Option<String> = None;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (a, r) in rcpt_addrs.iter().zip(results) {
        match r {
            Some(o) => {
                match o.status {
                    Status::Deferred => any_deferred = true,
                    Status::Bounced => {
                        first_bounce.get_or_insert(o.dsn.status.clone());
                    }
                    Status::Sent => {}
                }
                let _ = writeln!(
                    out,
                    "{a}: {} dsn={} relay={} ({})",
                    o.status.word(),
                    o.dsn.status,
                    o.relay,
                    o.dsn.reason
                );
            }
            None => {
                // Never lose a recipient silently: an unreported one counts as deferred.
                any_deferred = true;
                let _ = writeln!(
                    out,
                    "{a}: deferred dsn=4.3.0 relay=none (no outcome recorded)"
                );
            }
        }
    }
    if any_deferred {
        EX_TEMPFAIL
    } else if let Some(s) = first_bounce {
        for_permanent(&s)
    } else {
        EX_OK
    }
}
