//! On-disk recording for `outpost sink`: per-message files for `--dir`
//! (`<seq>-<pid>.eml`, X-Sink-* header block, then the unstuffed data) and
//! per-session wire logs for `--raw-dir` (`<conn>-<pid>.log`, lines prefixed
//! `C: ` / `S: `).  Both are written to a dot-named temporary file first and
//! renamed into place, so a visible file is always complete.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TMP_SEQ: AtomicU64 = AtomicU64::new(1);

fn tmp_path(dir: &Path) -> PathBuf {
    let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".tmp-{}-{n}", std::process::id()))
}

/// A temporary file that is renamed into place on commit and removed if
/// dropped uncommitted.
struct TmpFile {
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl TmpFile {
    fn create(dir: &Path) -> io::Result<TmpFile> {
        let tmp = tmp_path(dir);
        let f = File::create(&tmp)?;
        Ok(TmpFile {
            tmp,
            out: Some(BufWriter::with_capacity(64 * 1024, f)),
        })
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        match self.out.as_mut() {
            Some(w) => w.write_all(b),
            None => Err(io::Error::other("file already committed")),
        }
    }

    fn commit(mut self, dest: &Path) -> io::Result<()> {
        let Some(w) = self.out.take() else {
            return Err(io::Error::other("file already committed"));
        };
        let res = w.into_inner().map_err(|e| e.into_error()).and_then(|f| {
            drop(f);
            fs::rename(&self.tmp, dest)
        });
        if res.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        res
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The recorded envelope of one message.
pub struct Envelope<'a> {
    pub helo: &'a [u8],
    pub mail: &'a [u8],
    pub rcpts: Vec<&'a [u8]>,
    pub proto: &'a str,
    /// "MECHANISM user" when the client authenticated.
    pub auth: Option<&'a str>,
    /// The TLS session the message came over (`TlsRecord::describe`).
    pub tls: Option<&'a str>,
}

/// One message being recorded into `--dir`.
pub struct MessageFile {
    dir: PathBuf,
    file: TmpFile,
}

impl MessageFile {
    /// Starts a message file and writes its header block.
    pub fn create(dir: &Path, env: &Envelope<'_>) -> io::Result<MessageFile> {
        let mut file = TmpFile::create(dir)?;
        let mut h = Vec::with_capacity(256);
        header(&mut h, "X-Sink-Helo", env.helo);
        header(&mut h, "X-Sink-Mail", env.mail);
        for r in &env.rcpts {
            header(&mut h, "X-Sink-Rcpt", r);
        }
        header(&mut h, "X-Sink-Proto", env.proto.as_bytes());
        if let Some(a) = env.auth {
            header(&mut h, "X-Sink-Auth", a.as_bytes());
        }
        if let Some(t) = env.tls {
            header(&mut h, "X-Sink-TLS", t.as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        file.write(&h)?;
        Ok(MessageFile {
            dir: dir.to_path_buf(),
            file,
        })
    }

    /// Appends message data (already unstuffed).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write(data)
    }

    /// Renames the file to `<seq>-<pid>.eml`; returns the final path.
    pub fn commit(self, seq: &str) -> io::Result<PathBuf> {
        let dest = self.dir.join(format!("{seq}-{}.eml", std::process::id()));
        self.file.commit(&dest)?;
        Ok(dest)
    }
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The wire log of one session for `--raw-dir`.
pub struct RawLog {
    dest: PathBuf,
    file: Option<TmpFile>,
    client_bol: bool,
}

impl RawLog {
    /// Starts the log for session number `conn`.
    pub fn create(dir: &Path, conn: &str) -> io::Result<RawLog> {
        Ok(RawLog {
            dest: dir.join(format!("{conn}-{}.log", std::process::id())),
            file: Some(TmpFile::create(dir)?),
            client_bol: true,
        })
    }

    /// Logs bytes received from the client (one line or a line fragment).
    /// Logging errors are ignored: the log must not break the dialogue.
    pub fn client(&mut self, b: &[u8]) {
        let Some(f) = self.file.as_mut() else { return };
        if self.client_bol {
            let _ = f.write(b"C: ");
        }
        let _ = f.write(b);
        self.client_bol = b.ends_with(b"\n");
    }

    /// Logs bytes sent to the server side; each line gets an `S: ` prefix.
    pub fn server(&mut self, b: &[u8]) {
        let Some(f) = self.file.as_mut() else { return };
        if !self.client_bol {
            // The client's last line was incomplete; keep prefixes aligned.
            let _ = f.write(b"\n");
            self.client_bol = true;
        }
        for line in b.split_inclusive(|&c| c == b'\n') {
            let _ = f.write(b"S: ");
            let _ = f.write(line);
        }
        if !b.is_empty() && !b.ends_with(b"\n") {
            let _ = f.write(b"\n");
        }
    }

    /// Renames the log into place; later calls do nothing.
    pub fn commit(&mut self) -> io::Result<()> {
        match self.file.take() {
            Some(f) => f.commit(&self.dest),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_file_layout_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let env = Envelope {
            helo: b"client.test",
            mail: b"<a@x.test> SIZE=5",
            rcpts: vec![b"<b@x.test>", b"<c@x.test> NOTIFY=NEVER"],
            proto: "ESMTP",
            auth: None,
            tls: None,
        };
        let mut m = MessageFile::create(dir.path(), &env).unwrap();
        m.write(b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        let p = m.commit("000042").unwrap();
        assert!(p.ends_with(format!("000042-{}.eml", std::process::id())));
        let got = fs::read(&p).unwrap();
        assert_eq!(
            got,
            b"X-Sink-Helo: client.test\r\nX-Sink-Mail: <a@x.test> SIZE=5\r\n\
              X-Sink-Rcpt: <b@x.test>\r\nX-Sink-Rcpt: <c@x.test> NOTIFY=NEVER\r\n\
              X-Sink-Proto: ESMTP\r\n\r\nSubject: hi\r\n\r\nbody\r\n"
                .to_vec()
        );
        // An abandoned message leaves nothing behind.
        let mut m = MessageFile::create(dir.path(), &env).unwrap();
        m.write(b"partial").unwrap();
        drop(m);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn raw_log_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RawLog::create(dir.path(), "000001").unwrap();
        r.server(b"220 hi\r\n");
        r.client(b"EHLO x\r\n");
        r.server(b"250-a\r\n250 b\r\n");
        r.client(b"DAT");
        r.client(b"A\r\n");
        r.server(b"no newline");
        r.commit().unwrap();
        r.commit().unwrap();
        let p = dir
            .path()
            .join(format!("000001-{}.log", std::process::id()));
        assert_eq!(
            fs::read(p).unwrap(),
            b"S: 220 hi\r\nC: EHLO x\r\nS: 250-a\r\nS: 250 b\r\nC: DATA\r\nS: no newline\n"
                .to_vec()
        );
    }
}
