//! A connected byte stream with Postfix-style per-phase deadlines, a read buffer for reply
//! lines and a write buffer for (pipelined) commands.
//!
//! The writer and reader share nothing but the socket: commands can be queued while replies
//! are still outstanding, which is what pipelining and connection reuse build on.
//! Timeouts follow smtp_per_request_deadline: by default each read or write system call gets
//! the phase's full timeout (Postfix's behaviour); with a per-request deadline the phase's
//! timeout is a budget for all I/O from the start of the phase (`set_timeout`) until the
//! next one: a whole multi-line reply, or the whole message body (which earns extra time
//! as it moves, smtp_min_data_rate).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Anything we can speak SMTP over: TCP, a UNIX-domain socket, and later TLS on either.
pub trait Stream: Read + Write + Send {
    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn close(&self);
    /// The bare socket, for handing an idle connection to the connection cache; `None`
    /// for streams with state of their own beyond the socket (TLS).
    fn into_fd(self: Box<Self>) -> Option<OwnedFd> {
        None
    }
    /// Input has arrived that nobody has read yet (checked without waiting).
    fn input_waiting(&self) -> bool {
        false
    }
}

/// Whether a socket has input, without waiting.
pub fn fd_readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut p, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
}

impl Stream for TcpStream {
    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
    fn into_fd(self: Box<Self>) -> Option<OwnedFd> {
        Some(OwnedFd::from(*self))
    }
    fn input_waiting(&self) -> bool {
        use std::os::fd::AsFd;
        fd_readable(self.as_fd())
    }
}

impl Stream for UnixStream {
    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
    fn into_fd(self: Box<Self>) -> Option<OwnedFd> {
        Some(OwnedFd::from(*self))
    }
    fn input_waiting(&self) -> bool {
        use std::os::fd::AsFd;
        fd_readable(self.as_fd())
    }
}

/// Why an I/O operation failed, in the terms Postfix reports.
#[derive(Debug)]
pub enum IoFailure {
    /// The phase deadline passed ("conversation ... timed out while ...").
    Timeout,
    /// The peer closed or reset the connection ("lost connection with ... while ...").
    Lost,
    /// Anything else from the operating system.
    Other(io::Error),
}

impl From<io::Error> for IoFailure {
    fn from(e: io::Error) -> IoFailure {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => IoFailure::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected => IoFailure::Lost,
            _ => IoFailure::Other(e),
        }
    }
}

/// Direction of a traced line, for `-v` dialogue output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Sent,
    Received,
}

pub type Tracer = Box<dyn FnMut(Dir, &[u8]) + Send>;

/// A tracer that logs the dialogue as Postfix's smtp does in verbose mode
/// ("> host[addr]:port: COMMAND", "< host[addr]:port: reply"), for debug_peer_list.
pub fn logging_tracer(namaddrport: String) -> Tracer {
    Box::new(move |dir: Dir, data: &[u8]| {
        let arrow = if dir == Dir::Sent { '>' } else { '<' };
        crate::log::info(&format!(
            "{arrow} {namaddrport}: {}",
            String::from_utf8_lossy(data)
        ));
    })
}

/// One line read from the peer.
pub struct Line {
    /// The line without its CRLF/LF; truncated at the caller's limit.
    pub text: Vec<u8>,
    /// True when the line ended with LF (false: truncated, or cut short by EOF).
    pub complete: bool,
}

pub struct Conn {
    stream: Box<dyn Stream>,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    wbuf: Vec<u8>,
    timeout: Duration,
    /// smtp_per_request_deadline: `timeout` is a budget for the whole phase.
    per_record: bool,
    /// With the deadline: I/O time left in this phase, in nanoseconds (negative once an
    /// operation overran it, as Postfix's time_limit can go).
    left_ns: i128,
    /// With the deadline: bytes per second that earn one more second (0: none).
    min_data_rate: u64,
    tracer: Option<Tracer>,
}

const READ_CHUNK: usize = 16 * 1024;

impl Conn {
    pub fn new(stream: Box<dyn Stream>, per_record: bool) -> Conn {
        Conn {
            stream,
            rbuf: vec![0; READ_CHUNK],
            rpos: 0,
            rend: 0,
            wbuf: Vec::with_capacity(READ_CHUNK),
            timeout: Duration::from_secs(300),
            per_record,
            left_ns: 300_000_000_000,
            min_data_rate: 0,
            tracer: None,
        }
    }

    pub fn set_tracer(&mut self, tracer: Option<Tracer>) {
        self.tracer = tracer;
    }

    /// Start a protocol phase with its own timeout (smtp_helo_timeout etc.). With the
    /// per-request deadline this also starts the phase's budget, as Postfix's
    /// smtp_stream_setup() does.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.set_timeout_rate(timeout, 0);
    }

    /// `set_timeout` for the message body: under the per-request deadline every
    /// `min_data_rate` bytes sent add one second to the budget, which never grows beyond
    /// the timeout itself (smtp_min_data_rate, Postfix's VSTREAM_CTL_MIN_DATA_RATE).
    pub fn set_timeout_rate(&mut self, timeout: Duration, min_data_rate: u64) {
        // A zero timeout would mean "block forever" to the kernel; Postfix treats the
        // parameters as at least one second, so do we.
        self.timeout = timeout.max(Duration::from_secs(1));
        self.left_ns = i128::try_from(self.timeout.as_nanos()).unwrap_or(i128::MAX);
        self.min_data_rate = min_data_rate;
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Replace the underlying stream (STARTTLS); buffered input is discarded so that bytes a
    /// server sent before the handshake can never be taken as replies after it.
    pub fn replace_stream(
        &mut self,
        f: impl FnOnce(Box<dyn Stream>) -> io::Result<Box<dyn Stream>>,
    ) -> io::Result<()> {
        self.rpos = 0;
        self.rend = 0;
        self.wbuf.clear();
        let placeholder: Box<dyn Stream> = Box::new(ClosedStream);
        let old = std::mem::replace(&mut self.stream, placeholder);
        self.stream = f(old)?;
        Ok(())
    }

    /// Give up the connection's socket for caching. Refused (`None`) while unread input
    /// or unsent output would be lost with it, or when the stream is not a bare socket.
    pub fn into_fd(self) -> Option<OwnedFd> {
        if self.rpos < self.rend || !self.wbuf.is_empty() {
            return None;
        }
        self.stream.into_fd()
    }

    /// Bytes already received but not yet consumed.
    pub fn pending_input(&self) -> usize {
        self.rend - self.rpos
    }

    /// Anything from the peer waiting to be read: buffered here or in the stream.
    pub fn input_waiting(&self) -> bool {
        self.pending_input() > 0 || self.stream.input_waiting()
    }

    /// The timeout for the next read or write system call. With the deadline it is the
    /// budget left, rounded up to whole seconds as Postfix's vstream does (so an
    /// operation started with some time left may overrun it); none left is a timeout.
    fn io_timeout(&self) -> Result<Duration, IoFailure> {
        if !self.per_record {
            return Ok(self.timeout);
        }
        if self.left_ns <= 0 {
            return Err(IoFailure::Timeout);
        }
        let secs = (self.left_ns + 999_999_999) / 1_000_000_000;
        Ok(Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX)))
    }

    /// Charge one system call against the deadline: only the time spent inside I/O
    /// counts (not our own work between calls), and with a minimum data rate the bytes
    /// moved earn time back, up to the full timeout.
    fn charge(&mut self, started: Instant, moved: usize) {
        if !self.per_record {
            return;
        }
        let spent = i128::try_from(started.elapsed().as_nanos()).unwrap_or(i128::MAX);
        self.left_ns = self.left_ns.saturating_sub(spent);
        if self.min_data_rate > 0 && moved > 0 {
            let bonus = i128::try_from(moved).unwrap_or(i128::MAX) * 1_000_000_000
                / i128::from(self.min_data_rate);
            let full = i128::try_from(self.timeout.as_nanos()).unwrap_or(i128::MAX);
            self.left_ns = self.left_ns.saturating_add(bonus).min(full);
        }
    }

    /// A system call timed out: the budget is gone (Postfix zeroes its time limit).
    fn expired(&mut self, e: &io::Error) {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            self.left_ns = 0;
        }
    }

    fn fill(&mut self) -> Result<usize, IoFailure> {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.rend == self.rbuf.len() {
            if self.rpos > 0 {
                self.rbuf.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
            } else {
                self.rbuf.resize(self.rbuf.len() * 2, 0);
            }
        }
        loop {
            let t = self.io_timeout()?;
            self.stream.set_timeouts(Some(t))?;
            let started = Instant::now();
            let r = self.stream.read(&mut self.rbuf[self.rend..]);
            self.charge(started, *r.as_ref().unwrap_or(&0));
            match r {
                Ok(0) => return Err(IoFailure::Lost),
                Ok(n) => {
                    self.rend += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.expired(&e);
                    return Err(e.into());
                }
            }
        }
    }

    /// Read one line of at most `limit` bytes; the excess of a longer line is skipped, as
    /// Postfix's reply reader does, so a hostile server cannot make us buffer without bound.
    pub fn read_line(&mut self, limit: usize) -> Result<Line, IoFailure> {
        let mut text = Vec::new();
        loop {
            if self.rpos == self.rend {
                // EOF, even after part of a line, is a lost connection (as in Postfix).
                self.fill()?;
            }
            let avail = &self.rbuf[self.rpos..self.rend];
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let room = limit.saturating_sub(text.len());
                    text.extend_from_slice(&avail[..i.min(room)]);
                    let truncated = i > room;
                    self.rpos += i + 1;
                    if !truncated {
                        while text.last() == Some(&b'\r') {
                            text.pop();
                        }
                    }
                    self.trace(Dir::Received, &text);
                    return Ok(Line {
                        text,
                        complete: !truncated,
                    });
                }
                None => {
                    let room = limit.saturating_sub(text.len());
                    let n = avail.len();
                    text.extend_from_slice(&avail[..n.min(room)]);
                    self.rpos = self.rend;
                }
            }
        }
    }

    /// Queue bytes for sending; nothing reaches the wire until `flush` (or the buffer grows
    /// past its threshold, see `write_cmd`).
    pub fn queue(&mut self, data: &[u8]) {
        self.wbuf.extend_from_slice(data);
    }

    /// Queue one command line (CRLF added) and trace it.
    pub fn queue_cmd(&mut self, line: &str) {
        self.trace(Dir::Sent, line.as_bytes());
        self.wbuf.extend_from_slice(line.as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
    }

    /// Drop queued output that can no longer be sent (after a write failure).
    pub fn purge_output(&mut self) {
        self.wbuf.clear();
    }

    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    /// Send everything queued within the current phase's timeout (or what is left of
    /// its deadline).
    pub fn flush(&mut self) -> Result<(), IoFailure> {
        let mut off = 0;
        while off < self.wbuf.len() {
            let t = match self.io_timeout() {
                Ok(t) => t,
                Err(e) => {
                    self.wbuf.drain(..off);
                    return Err(e);
                }
            };
            self.stream.set_timeouts(Some(t))?;
            let started = Instant::now();
            let r = self.stream.write(&self.wbuf[off..]);
            self.charge(started, *r.as_ref().unwrap_or(&0));
            match r {
                Ok(0) => return Err(IoFailure::Lost),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.expired(&e);
                    return Err(e.into());
                }
            }
        }
        self.wbuf.clear();
        self.stream.flush().map_err(IoFailure::from)
    }

    pub fn trace(&mut self, dir: Dir, data: &[u8]) {
        if let Some(t) = self.tracer.as_mut() {
            t(dir, data);
        }
    }

    pub fn close(&mut self) {
        self.stream.close();
    }
}

/// Stands in for the stream while it is being replaced; every operation fails.
/// A stream that is no longer there (after a failed TLS start).
pub struct ClosedStream;

impl Read for ClosedStream {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::NotConnected.into())
    }
}
impl Write for ClosedStream {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::NotConnected.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Stream for ClosedStream {
    fn set_timeouts(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that sends one line every 600ms.
    fn trickle(lines: &'static [&'static str]) -> Conn {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        std::thread::spawn(move || {
            for (i, l) in lines.iter().enumerate() {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(600));
                }
                if b.write_all(l.as_bytes()).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_secs(3));
        });
        Conn::new(Box::new(a), false)
    }

    #[test]
    fn per_request_deadline_spans_reads_and_rounds_up_like_postfix() {
        const LINES: &[&str] = &["250-a\n", "250-b\n", "250-c\n", "250 d\n"];
        // Per system call: every line comes within the 1s.
        let mut c = trickle(LINES);
        c.set_timeout(Duration::from_secs(1));
        for _ in LINES {
            assert!(c.read_line(100).is_ok());
        }
        // One deadline for the phase: the second read leaves about 0.4s, which the
        // third read may use rounded up to a whole second (as Postfix's vstream does);
        // after that nothing is left, and the fourth read fails at once.
        let mut c = trickle(LINES);
        c.per_record = true;
        c.set_timeout(Duration::from_secs(1));
        for _ in 0..3 {
            assert!(c.read_line(100).is_ok());
        }
        assert!(matches!(c.read_line(100), Err(IoFailure::Timeout)));
        // A new phase starts a new deadline.
        c.set_timeout(Duration::from_secs(1));
        assert!(c.read_line(100).is_ok());
    }

    #[test]
    fn min_data_rate_earns_time_up_to_the_timeout() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let mut c = Conn::new(Box::new(a), true);
        c.set_timeout_rate(Duration::from_secs(2), 1000);
        c.left_ns = 500_000_000;
        // 1000 bytes at 1000 bytes/s: one more second.
        c.charge(Instant::now(), 1000);
        assert!(c.left_ns > 1_400_000_000 && c.left_ns <= 1_500_000_000);
        // Never more than the timeout itself.
        c.charge(Instant::now(), 1_000_000);
        assert_eq!(c.left_ns, 2_000_000_000);
        // Without a rate (any other phase) nothing is earned.
        c.set_timeout(Duration::from_secs(2));
        c.left_ns = 500_000_000;
        c.charge(Instant::now(), 1_000_000);
        assert!(c.left_ns <= 500_000_000);
        // Rounded up to whole seconds; none left is a timeout.
        assert_eq!(c.io_timeout().ok(), Some(Duration::from_secs(1)));
        c.left_ns = -1;
        assert!(matches!(c.io_timeout(), Err(IoFailure::Timeout)));
    }
}
