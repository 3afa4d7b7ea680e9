//! Hand a recipient to another Postfix transport (deliver_pass): what smtp(8) does with
//! mail that loops back to this host when best_mx_transport is set.
//!
//! One request per recipient, as Postfix does: the other agent reports the outcome and
//! marks the recipient done; we only learn whether it deferred. Trouble reaching it is a
//! deferral of ours ("mail transport unavailable"), never a bounce.

use super::attr::{AttrReader, AttrWriter};
use super::request::{self, DeliveryRequest, PfRecipient};
use crate::log;
use crate::outcome::Dsn;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Pass `rcpt` to `service` (`transport` or `transport:nexthop`; without a nexthop the
/// request's own). `Ok(true)`: the other agent deferred it; `Ok(false)`: settled there.
pub fn deliver_pass(
    service: &str,
    req: &DeliveryRequest,
    rcpt: &PfRecipient,
    timeout: Duration,
) -> Result<bool, Dsn> {
    pass_in(Path::new("."), service, req, rcpt, timeout)
}

/// `deliver_pass` with the queue directory given (tests).
pub fn pass_in(
    queue_dir: &Path,
    service: &str,
    req: &DeliveryRequest,
    rcpt: &PfRecipient,
    timeout: Duration,
) -> Result<bool, Dsn> {
    let (transport, nexthop) = match service.split_once(':') {
        Some((t, n)) if !n.is_empty() => (t, n.to_string()),
        Some((t, _)) => (t, req.nexthop.clone()),
        None => (service, req.nexthop.clone()),
    };
    log::info(&format!(
        "{}: passing <{}> to transport={transport}",
        req.queue_id, rcpt.address
    ));
    let unavailable = || Dsn::new("4.3.0", "mail transport unavailable");
    let path = queue_dir.join(super::status::CLASS_PRIVATE).join(transport);
    // Postfix waits for the service to come up; a few tries cover a master restart.
    let mut sock = None;
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        match UnixStream::connect(&path) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => {
                log::warn(&format!(
                    "connect to {}: {}",
                    path.display(),
                    log::strerror(&e)
                ));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    let sock = sock.ok_or_else(unavailable)?;
    let _ = sock.set_read_timeout(Some(timeout));
    let _ = sock.set_write_timeout(Some(timeout));
    let w = sock.try_clone().map_err(|_| unavailable())?;
    let mut reader = AttrReader::new(BufReader::new(sock));
    let mut writer = AttrWriter::new(w);
    if let Err(e) = request::read_initial(&mut reader) {
        log::warn(&format!("{}: malformed response: {e}", path.display()));
        return Err(unavailable());
    }
    let one = DeliveryRequest {
        nexthop,
        recipients: vec![rcpt.clone()],
        ..req.clone()
    };
    if let Err(e) = request::write_request(&mut writer, &one) {
        log::warn(&format!("{}: bad write: {e}", path.display()));
        return Err(unavailable());
    }
    match request::read_reply(&mut reader) {
        Ok((status, _)) => Ok(status != 0),
        Err(e) => {
            log::warn(&format!("{}: malformed response: {e}", path.display()));
            Err(Dsn::new("4.3.0", "unknown mail transport error"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn req() -> DeliveryRequest {
        DeliveryRequest {
            queue_name: "active".into(),
            queue_id: "ABC123".into(),
            nexthop: "loop.test".into(),
            sender: "s@x.test".into(),
            recipients: vec![
                PfRecipient {
                    address: "a@loop.test".into(),
                    offset: 100,
                    ..PfRecipient::default()
                },
                PfRecipient {
                    address: "b@loop.test".into(),
                    offset: 200,
                    ..PfRecipient::default()
                },
            ],
            ..DeliveryRequest::default()
        }
    }

    /// A delivery agent that reads one request and answers with `status`.
    fn agent(dir: &Path, status: i32) -> std::thread::JoinHandle<DeliveryRequest> {
        let _ = std::fs::create_dir_all(dir.join("private"));
        let l = UnixListener::bind(dir.join("private/relay")).unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap_or_else(|e| panic!("{e}"));
            let mut w = AttrWriter::new(s.try_clone().unwrap_or_else(|e| panic!("{e}")));
            request::write_initial(&mut w).unwrap_or_else(|e| panic!("{e}"));
            let mut r = BufReader::new(s);
            let got = request::read_request(&mut r).unwrap_or_else(|e| panic!("{e}"));
            request::write_reply(&mut w, status, None).unwrap_or_else(|e| panic!("{e}"));
            got
        })
    }

    #[test]
    fn one_recipient_per_request_with_the_given_nexthop() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = agent(dir.path(), 0);
        let r = req();
        let out = pass_in(
            dir.path(),
            "relay:[10.0.0.1]:2525",
            &r,
            &r.recipients[1],
            Duration::from_secs(5),
        );
        assert_eq!(out, Ok(false));
        let got = a.join().unwrap_or_else(|_| panic!("agent"));
        assert_eq!(got.nexthop, "[10.0.0.1]:2525");
        assert_eq!(got.queue_id, "ABC123");
        assert_eq!(got.recipients.len(), 1);
        assert_eq!(got.recipients[0].address, "b@loop.test");
        assert_eq!(got.recipients[0].offset, 200);
    }

    #[test]
    fn deferral_there_and_trouble_here() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = agent(dir.path(), 1);
        let r = req();
        // Without a nexthop in the service, the request's own is passed on.
        assert_eq!(
            pass_in(
                dir.path(),
                "relay",
                &r,
                &r.recipients[0],
                Duration::from_secs(5)
            ),
            Ok(true)
        );
        assert_eq!(
            a.join().map(|g| g.nexthop).ok().as_deref(),
            Some("loop.test")
        );
        // No such service: our own deferral, never a bounce.
        let e = pass_in(
            dir.path(),
            "nosuch",
            &r,
            &r.recipients[0],
            Duration::from_secs(1),
        );
        assert_eq!(e.map_err(|d| d.status), Err("4.3.0".to_string()));
    }
}
