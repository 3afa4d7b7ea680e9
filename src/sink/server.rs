//! Listener side of `outpost sink`: parses LISTEN addresses, binds TCP or
//! UNIX-domain sockets, runs the accept loop (one thread per connection) and
//! implements shutdown for `stop()`, `--once` and `--max-messages`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::SinkConfig;
use super::session;

/// How long `--max-messages` waits for open sessions before cutting them.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

static CONN_SEQ: AtomicU64 = AtomicU64::new(1);

/// A parsed LISTEN argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListenSpec {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// Parses `HOST:PORT`, `[IPV6]:PORT`, `:PORT` or `unix:PATH`.
pub(crate) fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    const FORMS: &str = "use HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH";
    if let Some(p) = s.strip_prefix("unix:") {
        if p.is_empty() {
            return Err(format!("empty socket path in \"{s}\""));
        }
        return Ok(ListenSpec::Unix(PathBuf::from(p)));
    }
    let t = s.strip_prefix("inet:").unwrap_or(s);
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in \"{s}\""))?;
        let p = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing port in \"{s}\": {FORMS}"))?;
        (h, p)
    } else {
        let (h, p) = t
            .rsplit_once(':')
            .ok_or_else(|| format!("bad listen address \"{s}\": {FORMS}"))?;
        if h.contains(':') {
            return Err(format!("put IPv6 addresses in brackets: \"{s}\""));
        }
        (h, p)
    };
    let port: u16 = port.parse().map_err(|_| format!("bad port in \"{s}\""))?;
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    Ok(ListenSpec::Tcp(host.to_string(), port))
}

/// A connected client socket.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// After STARTTLS or with --tls-wrapper (see tls.rs).
    Tls(super::tls::Conn),
}

impl Stream {
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tls(s) => Stream::Tls(s.try_clone()?),
        })
    }

    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tls(s) => {
                s.raw.shutdown();
                Ok(())
            }
        };
    }

    /// Sets read and write timeouts (zero means none).
    pub(crate) fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        let t = (!t.is_zero()).then_some(t);
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Tls(s) => s.raw.set_timeouts(t.unwrap_or_default()),
        }
    }

    pub(crate) fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "unknown".into()),
            Stream::Unix(_) => "unix".into(),
            Stream::Tls(s) => s.raw.peer(),
        }
    }

    fn prepare(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_nodelay(true)
            }
            Stream::Unix(s) => s.set_nonblocking(false),
            Stream::Tls(s) => s.raw.prepare(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A bound listening socket.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        Ok(match self {
            Listener::Tcp(l) => Stream::Tcp(l.accept()?.0),
            Listener::Unix(l, _) => Stream::Unix(l.accept()?.0),
        })
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l, _) => l.set_nonblocking(true),
        }
    }
}

/// Binds the listener; returns it with its actual address in LISTEN syntax.
pub(crate) fn bind(spec: &ListenSpec) -> io::Result<(Listener, String)> {
    match spec {
        ListenSpec::Tcp(host, port) => {
            let mut last = io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{host}: no address found"),
            );
            for a in (host.as_str(), *port).to_socket_addrs()? {
                match TcpListener::bind(a) {
                    Ok(l) => {
                        let addr = l.local_addr()?.to_string();
                        return Ok((Listener::Tcp(l), addr));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        ListenSpec::Unix(path) => {
            if let Ok(md) = std::fs::symlink_metadata(path) {
                if !md.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            let l = UnixListener::bind(path)?;
            Ok((
                Listener::Unix(l, path.clone()),
                format!("unix:{}", path.display()),
            ))
        }
    }
}

/// State shared by the accept loop, the sessions and the handle.
pub(crate) struct Shared {
    pub(crate) cfg: SinkConfig,
    pub(crate) stop: AtomicBool,
    pub(crate) draining: AtomicBool,
    pub(crate) messages: AtomicU64,
    /// Set when the sink has a TLS certificate.
    pub(crate) tls: Option<super::tls::Server>,
    conns: Mutex<HashMap<u64, Stream>>,
    waker: UnixStream,
}

impl Shared {
    pub(crate) fn new(cfg: SinkConfig, waker: UnixStream) -> Shared {
        Shared {
            cfg,
            stop: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            messages: AtomicU64::new(0),
            tls: None,
            conns: Mutex::new(HashMap::new()),
            waker,
        }
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Stream>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the accept loop so it re-checks its flags.
    pub(crate) fn wake(&self) {
        let _ = (&self.waker).write(&[1]);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Counts a completed DATA transfer; starts draining at --max-messages.
    pub(crate) fn message_done(&self) {
        let n = self.messages.fetch_add(1, Ordering::SeqCst) + 1;
        if self.cfg.max_messages.is_some_and(|max| n >= max) {
            self.draining.store(true, Ordering::SeqCst);
            self.wake();
        }
    }

    pub(crate) fn log(&self, msg: &str) {
        if !self.cfg.quiet {
            eprintln!("outpost-sink: {msg}");
        }
    }

    fn shutdown_all(&self) {
        for s in self.conns().values() {
            s.shutdown();
        }
    }
}

/// Unregisters a session when it ends, however it ends.
struct ConnGuard<'a> {
    sh: &'a Shared,
    id: u64,
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.sh.conns().remove(&self.id) {
            s.shutdown();
        }
    }
}

fn serve_conn(sh: &Shared, id: u64, stream: Stream) {
    let _guard = ConnGuard { sh, id };
    session::run(sh, id, stream);
}

/// Registers and starts one session; returns false once the server is done.
fn start_conn(sh: &Arc<Shared>, stream: Stream) -> bool {
    if let Err(e) = stream.prepare() {
        sh.log(&format!("cannot set up connection: {e}"));
        return true;
    }
    let id = CONN_SEQ.fetch_add(1, Ordering::Relaxed);
    match stream.try_clone() {
        Ok(c) => {
            sh.conns().insert(id, c);
        }
        Err(e) => {
            sh.log(&format!("cannot set up connection: {e}"));
            return true;
        }
    }
    if sh.cfg.once {
        serve_conn(sh, id, stream);
        return false;
    }
    let sh2 = Arc::clone(sh);
    let spawned = thread::Builder::new()
        .name(format!("sink-conn-{id}"))
        .spawn(move || serve_conn(&sh2, id, stream));
    if let Err(e) = spawned {
        sh.log(&format!("cannot start session thread: {e}"));
        if let Some(s) = sh.conns().remove(&id) {
            s.shutdown();
        }
    }
    true
}

/// Runs the accept loop until stopped, then tears everything down.
pub(crate) fn run(listener: Listener, sh: &Arc<Shared>, waker_rx: UnixStream) {
    if let Err(e) = listener.set_nonblocking() {
        sh.log(&format!("listener setup failed: {e}"));
        return;
    }
    'outer: while !sh.stopping() && !sh.draining.load(Ordering::SeqCst) {
        let (lready, wready) = {
            let lfd = match &listener {
                Listener::Tcp(l) => l.as_fd(),
                Listener::Unix(l, _) => l.as_fd(),
            };
            let mut fds = [
                PollFd::new(lfd, PollFlags::POLLIN),
                PollFd::new(waker_rx.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false)),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    sh.log(&format!("poll: {e}"));
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        };
        if wready {
            let mut b = [0u8; 64];
            while matches!((&waker_rx).read(&mut b), Ok(n) if n > 0) {}
        }
        if !lready || sh.stopping() {
            continue;
        }
        loop {
            match listener.accept() {
                Ok(stream) => {
                    if !start_conn(sh, stream) {
                        break 'outer;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // E.g. out of file descriptors: back off a little.
                    sh.log(&format!("accept: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    break;
                }
            }
        }
    }
    if !sh.stopping() && sh.draining.load(Ordering::SeqCst) {
        let deadline = Instant::now() + DRAIN_GRACE;
        while !sh.stopping() && !sh.conns().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
    sh.shutdown_all();
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:25"),
            Ok(ListenSpec::Tcp("127.0.0.1".into(), 25))
        );
        assert_eq!(
            parse_listen(":0"),
            Ok(ListenSpec::Tcp("127.0.0.1".into(), 0))
        );
        assert_eq!(
            parse_listen("[::1]:2525"),
            Ok(ListenSpec::Tcp("::1".into(), 2525))
        );
        assert_eq!(
            parse_listen("localhost:10025"),
            Ok(ListenSpec::Tcp("localhost".into(), 10025))
        );
        assert_eq!(
            parse_listen("unix:/tmp/x.sock"),
            Ok(ListenSpec::Unix("/tmp/x.sock".into()))
        );
        for bad in [
            "",
            "25",
            "::1:25",
            "[::1]25",
            "[::1",
            "host:99999",
            "host:",
            "unix:",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?} accepted");
        }
    }
}
