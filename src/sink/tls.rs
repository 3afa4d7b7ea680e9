//! TLS for `outpost sink`: STARTTLS and implicit TLS (`--tls-wrapper`) with a given
//! certificate and key, an optional reply line injected right after the 220 to STARTTLS
//! (in the same packet, to test a client's defence against response injection), and a
//! record of each handshake (protocol, cipher, whether the client sent a certificate).
//!
//! The server accepts every protocol version and cipher OpenSSL allows at security
//! level 0, so that what gets negotiated shows the client's own restrictions. It asks
//! for a client certificate but accepts any, or none.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::ssl::{
    HandshakeError, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslStream, SslVerifyMode,
};

use super::server::Stream;

/// TLS settings of a sink.
#[derive(Clone, Debug, Default)]
pub struct SinkTls {
    /// PEM certificate (chain) file.
    pub cert: PathBuf,
    /// PEM private key file (default: the certificate file).
    pub key: Option<PathBuf>,
    /// Implicit TLS: handshake before the greeting (SMTPS, port 465 style).
    pub wrapper: bool,
    /// Sent right after the 220 to STARTTLS, before the handshake, in the same write.
    pub inject: Option<String>,
    /// Anonymous cipher suites only (TLS 1.2 at most): the certificate is never sent.
    pub anon: bool,
    /// Sent unasked right after the reply to EHLO/LHLO over TLS, in the same write.
    pub early: Option<String>,
}

/// What one handshake negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRecord {
    /// Connection number (as in the event log `#N`).
    pub conn: u64,
    pub protocol: String,
    pub cipher: String,
    /// The client presented a certificate.
    pub client_cert: bool,
    /// Its subject CN, when it did.
    pub client_cn: Option<String>,
    /// The SNI name the client sent.
    pub sni: Option<String>,
}

impl TlsRecord {
    /// One-line form for the event log and the X-Sink-TLS header.
    pub fn describe(&self) -> String {
        format!(
            "{} {} client-cert={}{}",
            self.protocol,
            self.cipher,
            match &self.client_cn {
                Some(cn) => cn.as_str(),
                None if self.client_cert => "yes",
                None => "no",
            },
            self.sni
                .as_deref()
                .map(|s| format!(" sni={s}"))
                .unwrap_or_default()
        )
    }
}

/// The server side TLS context plus the handshake records.
pub(crate) struct Server {
    ctx: SslContext,
    pub(crate) records: Mutex<Vec<TlsRecord>>,
}

impl Server {
    pub(crate) fn new(t: &SinkTls) -> Result<Server, String> {
        let err = |what: &str, e: openssl::error::ErrorStack| format!("{what}: {e}");
        let mut b =
            SslContextBuilder::new(SslMethod::tls_server()).map_err(|e| err("TLS setup", e))?;
        // Allow everything, old protocols and weak ciphers included: tests look at what
        // the client's policy let through.
        b.set_security_level(0);
        b.set_min_proto_version(None)
            .map_err(|e| err("TLS setup", e))?;
        if t.anon {
            b.set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
                .map_err(|e| err("TLS setup", e))?;
            b.set_cipher_list("aNULL:@SECLEVEL=0")
                .map_err(|e| err("TLS setup", e))?;
        } else {
            b.set_cipher_list("ALL:@SECLEVEL=0")
                .map_err(|e| err("TLS setup", e))?;
        }
        b.set_certificate_chain_file(&t.cert)
            .map_err(|e| err(&format!("{}", t.cert.display()), e))?;
        let key = t.key.as_ref().unwrap_or(&t.cert);
        b.set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| err(&format!("{}", key.display()), e))?;
        b.check_private_key()
            .map_err(|e| err("certificate and key do not match", e))?;
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        // Required for resumption once client certificates are requested.
        b.set_session_id_context(b"outpost-sink")
            .map_err(|e| err("TLS setup", e))?;
        Ok(Server {
            ctx: b.build(),
            records: Mutex::new(Vec::new()),
        })
    }

    /// Runs the server handshake on `raw` (within `timeout`, zero = none) and records it.
    pub(crate) fn accept(
        &self,
        conn: u64,
        raw: Stream,
        timeout: Duration,
    ) -> io::Result<(Stream, TlsRecord)> {
        raw.set_timeouts(timeout)?;
        let keep = raw.try_clone()?;
        let ssl = openssl::ssl::Ssl::new(&self.ctx).map_err(io::Error::other)?;
        let s = ssl.accept(raw).map_err(|e| {
            io::Error::other(match e {
                HandshakeError::SetupFailure(e) => e.to_string(),
                HandshakeError::Failure(m) | HandshakeError::WouldBlock(m) => m.error().to_string(),
            })
        })?;
        let r = s.ssl();
        let cert = r.peer_certificate();
        let rec = TlsRecord {
            conn,
            protocol: r.version_str().to_string(),
            cipher: r
                .current_cipher()
                .map(|c| c.name().to_string())
                .unwrap_or_default(),
            client_cert: cert.is_some(),
            client_cn: cert.as_ref().and_then(|c| {
                c.subject_name()
                    .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                    .next()
                    .and_then(|e| e.data().to_string().ok().map(|s| s.to_string()))
            }),
            sni: r
                .servername(openssl::ssl::NameType::HOST_NAME)
                .map(String::from),
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rec.clone());
        Ok((
            Stream::Tls(Conn {
                ssl: Arc::new(Mutex::new(s)),
                raw: Box::new(keep),
            }),
            rec,
        ))
    }
}

/// A server-side TLS connection shared by the session's reader and writer halves.
pub(crate) struct Conn {
    ssl: Arc<Mutex<SslStream<Stream>>>,
    /// The plain socket, for timeouts, peer address and shutdown from other threads.
    pub(crate) raw: Box<Stream>,
}

impl Conn {
    pub(crate) fn try_clone(&self) -> io::Result<Conn> {
        Ok(Conn {
            ssl: Arc::clone(&self.ssl),
            raw: Box::new(self.raw.try_clone()?),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SslStream<Stream>> {
        self.ssl.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// The session reads and writes from one thread, so the lock is never contended.
impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read(buf)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush()
    }
}
