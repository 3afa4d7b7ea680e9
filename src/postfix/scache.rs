//! Client of Postfix's connection cache, scache(8): file idle connections under endpoint
//! and destination labels, and take them back, over `private/scache` with the attribute
//! protocol; the sockets themselves travel as SCM_RIGHTS messages.
//!
//! The exchange per request (global/scache_clnt.c and scache/scache.c, Linux variant):
//! save_endp sends the request, waits for the server's `dummy` attribute, sends the socket
//! (one data byte plus the descriptor), then reads the status; find_endp/find_dest read
//! status and properties, and when found send a `dummy`, receive the socket and send
//! another `dummy`. As in Postfix, a cache that keeps failing is switched off for the
//! life of the process with "disabling connection caching": caching is an optimisation,
//! never a reason to delay mail.

use super::attr::ServiceConn;
use crate::log;
use crate::session::reuse::{Cached, ConnCache};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

const PROTO: &str = "connection_cache_protocol";
/// Tries per request before the cache is given up (Postfix's SCACHE_MAX_TRIES).
const MAX_TRIES: usize = 2;

type Channel = ServiceConn;

pub struct ScacheClient {
    path: PathBuf,
    timeout: Duration,
    chan: Option<Channel>,
    disabled: bool,
}

type Res<T> = Result<T, String>;

impl ScacheClient {
    /// A client for `private/<service>` relative to the queue directory (our working
    /// directory under master, also after chroot).
    pub fn new(service: &str, timeout: Duration) -> ScacheClient {
        ScacheClient {
            path: PathBuf::from("private").join(service),
            timeout: timeout.max(Duration::from_secs(1)),
            chan: None,
            disabled: false,
        }
    }

    pub fn with_path(path: PathBuf, timeout: Duration) -> ScacheClient {
        ScacheClient {
            path,
            timeout,
            chan: None,
            disabled: false,
        }
    }

    fn channel(&mut self) -> Res<&mut Channel> {
        if self.chan.is_none() {
            self.chan = Some(ServiceConn::connect(&self.path, self.timeout, PROTO)?);
        }
        self.chan.as_mut().ok_or_else(|| "no channel".to_string())
    }

    /// Run one exchange, retrying once on a fresh connection; after that, caching is off.
    fn call<T>(&mut self, mut f: impl FnMut(&mut Channel) -> Res<T>) -> Option<T> {
        for attempt in 0..MAX_TRIES {
            if self.disabled {
                return None;
            }
            let r = self.channel().and_then(&mut f);
            match r {
                Ok(v) => return Some(v),
                Err(e) => {
                    self.chan = None;
                    if attempt > 0 {
                        log::warn(&format!(
                            "problem talking to service {}: {e}",
                            self.path.display()
                        ));
                    }
                }
            }
        }
        log::warn("disabling connection caching");
        self.disabled = true;
        None
    }

    fn find(&mut self, req: &str, label: &str, dest: bool) -> Option<Cached> {
        self.call(|ch| {
            ch.writer.str("request", req).map_err(|e| e.to_string())?;
            ch.writer.str("label", label).map_err(|e| e.to_string())?;
            ch.writer.end().map_err(|e| e.to_string())?;
            ch.writer.flush().map_err(|e| e.to_string())?;
            let status = ch.reader.expect_int("status").map_err(|e| e.to_string())?;
            let first = ch
                .reader
                .expect_str("property")
                .map_err(|e| e.to_string())?;
            let second = if dest {
                Some(
                    ch.reader
                        .expect_str("property")
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            };
            ch.reader.expect_end().map_err(|e| e.to_string())?;
            if status != 0 {
                return Ok(None);
            }
            dummy(ch)?;
            let fd = recv_fd(&ch.sock)?;
            dummy(ch)?;
            let (dest_prop, endp_prop) = match second {
                Some(endp) => (first, endp),
                None => (String::new(), first),
            };
            Ok(Some(Cached {
                fd,
                dest_prop,
                endp_prop,
            }))
        })
        .flatten()
    }
}

fn dummy(ch: &mut Channel) -> Res<()> {
    ch.writer.str("dummy", "").map_err(|e| e.to_string())?;
    ch.writer.end().map_err(|e| e.to_string())?;
    ch.writer.flush().map_err(|e| e.to_string())
}

fn recv_fd(sock: &UnixStream) -> Res<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receive file descriptor: {e}"))?;
    let mut got = None;
    for c in msg.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    got.ok_or_else(|| "no file descriptor received".to_string())
}

fn send_fd(sock: &UnixStream, fd: &OwnedFd) -> Res<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    // One data byte travels with the descriptor, as Postfix's unix_send_fd does.
    let iov = [IoSlice::new(&[0u8])];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| format!("send file descriptor: {e}"))?;
    Ok(())
}

fn ttl_secs(ttl: Duration) -> i32 {
    i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX)
}

impl ConnCache for ScacheClient {
    fn find_dest(&mut self, label: &str) -> Option<Cached> {
        self.find("find_dest", label, true)
    }

    fn find_endp(&mut self, label: &str) -> Option<Cached> {
        self.find("find_endp", label, false)
    }

    fn save_endp(&mut self, ttl: Duration, label: &str, prop: &str, fd: OwnedFd) {
        self.call(|ch| {
            ch.writer
                .str("request", "save_endp")
                .map_err(|e| e.to_string())?;
            ch.writer
                .int("ttl", ttl_secs(ttl))
                .map_err(|e| e.to_string())?;
            ch.writer.str("label", label).map_err(|e| e.to_string())?;
            ch.writer.str("property", prop).map_err(|e| e.to_string())?;
            ch.writer.end().map_err(|e| e.to_string())?;
            ch.writer.flush().map_err(|e| e.to_string())?;
            ch.reader.expect_str("dummy").map_err(|e| e.to_string())?;
            ch.reader.expect_end().map_err(|e| e.to_string())?;
            send_fd(&ch.sock, &fd)?;
            let status = ch.reader.expect_int("status").map_err(|e| e.to_string())?;
            ch.reader.expect_end().map_err(|e| e.to_string())?;
            // A refused save (status != 0) only means this connection is not cached;
            // Postfix reports it only in verbose mode.
            let _ = status;
            Ok(())
        });
        // Our copy of the socket closes here; the cache holds its own.
        drop(fd);
    }

    fn save_dest(&mut self, ttl: Duration, label: &str, prop: &str, endp_label: &str) {
        self.call(|ch| {
            ch.writer
                .str("request", "save_dest")
                .map_err(|e| e.to_string())?;
            ch.writer
                .int("ttl", ttl_secs(ttl))
                .map_err(|e| e.to_string())?;
            ch.writer.str("label", label).map_err(|e| e.to_string())?;
            ch.writer.str("property", prop).map_err(|e| e.to_string())?;
            ch.writer
                .str("label", endp_label)
                .map_err(|e| e.to_string())?;
            ch.writer.end().map_err(|e| e.to_string())?;
            ch.writer.flush().map_err(|e| e.to_string())?;
            ch.reader.expect_int("status").map_err(|e| e.to_string())?;
            ch.reader.expect_end().map_err(|e| e.to_string())?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::attr::{AttrReader, AttrWriter};
    use super::*;
    use std::io::BufReader;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    /// A minimal scache server speaking the same exchange, holding one connection.
    fn fake_server(path: PathBuf) -> std::thread::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let (sock, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
            let mut w = AttrWriter::new(sock.try_clone().unwrap_or_else(|e| panic!("{e}")));
            let mut r = AttrReader::new(BufReader::new(
                sock.try_clone().unwrap_or_else(|e| panic!("{e}")),
            ));
            let ok =
                |x: Result<(), super::super::attr::AttrError>| x.unwrap_or_else(|e| panic!("{e}"));
            ok(w.protocol(PROTO));
            ok(w.flush());
            let mut held: Option<(String, String, OwnedFd)> = None;
            while let Ok(req) = r.expect_str("request") {
                seen.push(req.clone());
                match req.as_str() {
                    "save_endp" => {
                        let _ttl = r.expect_int("ttl");
                        let label = r.expect_str("label").unwrap_or_default();
                        let prop = r.expect_str("property").unwrap_or_default();
                        ok(r.expect_end());
                        ok(w.str("dummy", ""));
                        ok(w.end());
                        ok(w.flush());
                        let fd = recv_fd(&sock).unwrap_or_else(|e| panic!("{e}"));
                        held = Some((label, prop, fd));
                        ok(w.int("status", 0));
                        ok(w.end());
                        ok(w.flush());
                    }
                    "find_endp" => {
                        let label = r.expect_str("label").unwrap_or_default();
                        ok(r.expect_end());
                        match held.take() {
                            Some((l, prop, fd)) if l == label => {
                                ok(w.int("status", 0));
                                ok(w.str("property", &prop));
                                ok(w.end());
                                ok(w.flush());
                                let _ = r.expect_str("dummy");
                                ok(r.expect_end());
                                send_fd(&sock, &fd).unwrap_or_else(|e| panic!("{e}"));
                                let _ = r.expect_str("dummy");
                                ok(r.expect_end());
                            }
                            other => {
                                held = other;
                                ok(w.int("status", -1));
                                ok(w.str("property", ""));
                                ok(w.end());
                                ok(w.flush());
                            }
                        }
                    }
                    _ => break,
                }
            }
            seen
        })
    }

    #[test]
    fn socket_survives_a_round_trip_through_the_cache() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("scache");
        let server = fake_server(path.clone());
        let mut c = ScacheClient::with_path(path, Duration::from_secs(5));
        let (mine, mut theirs) = UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        assert!(c.find_endp("smtp\n1.2.3.4\n25\n0\n0\n").is_none());
        c.save_endp(
            Duration::from_secs(2),
            "smtp\n1.2.3.4\n25\n0\n0\n",
            "reuse_count=0\n",
            OwnedFd::from(mine),
        );
        let got = c
            .find_endp("smtp\n1.2.3.4\n25\n0\n0\n")
            .unwrap_or_else(|| panic!("not found"));
        assert_eq!(got.endp_prop, "reuse_count=0\n");
        // The descriptor that came back is the same connection.
        let mut back = UnixStream::from(got.fd);
        back.write_all(b"ping").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 4];
        theirs
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf, b"ping");
        drop(c);
        let seen = server.join().unwrap_or_else(|_| panic!("server"));
        assert_eq!(seen, vec!["find_endp", "save_endp", "find_endp"]);
    }

    #[test]
    fn a_missing_cache_disables_caching_without_delay() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut c = ScacheClient::with_path(dir.path().join("none"), Duration::from_secs(1));
        assert!(c.find_dest("x").is_none());
        assert!(c.disabled);
        assert!(c.find_endp("x").is_none());
    }
}
