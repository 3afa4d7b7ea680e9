//! Server side of SMTP AUTH for `outpost sink`: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1 and
//! SCRAM-SHA-256 against one configured user (`--auth-user`, `--auth-pass`), offered as
//! `--auth-mechs` lists them.
//!
//! The exchange is an I/O-free state machine: the session feeds it the AUTH arguments and
//! each client line, and sends what it returns (a 334 challenge, an error reply, or the
//! verdict, whose final reply the reply script may override). Proofs are checked for
//! real (CRAM-MD5 digest, SCRAM client proof), so a client with a wrong password fails
//! here exactly as it would against a real server.

use crate::sasl::mech::{self, Hash};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Mechanisms offered when `--auth-mechs` is not given.
pub const DEFAULT_MECHS: &str = "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256";

/// The SCRAM iteration count the sink announces (RFC 7677's example value).
const SCRAM_ITERATIONS: u32 = 4096;

/// The credentials and mechanisms the sink accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    pub user: String,
    pub pass: String,
    /// Mechanism names as offered in EHLO (upper case).
    pub mechs: Vec<String>,
    /// Test hook: send a wrong SCRAM server signature, to exercise client verification.
    pub bad_server_signature: bool,
}

impl AuthConfig {
    /// Build from option values; `mechs` is a blank/comma separated list.
    pub fn new(user: &str, pass: &str, mechs: Option<&str>) -> Result<AuthConfig, String> {
        let list = mechs.unwrap_or(DEFAULT_MECHS);
        let mut v: Vec<String> = Vec::new();
        for m in list.split([' ', ',', '\t']).filter(|m| !m.is_empty()) {
            let Some(known) = mech::Mech::from_name(m) else {
                return Err(format!("unsupported AUTH mechanism \"{m}\""));
            };
            let name = known.name().to_string();
            if !v.contains(&name) {
                v.push(name);
            }
        }
        if v.is_empty() {
            return Err("empty AUTH mechanism list".into());
        }
        Ok(AuthConfig {
            user: user.to_string(),
            pass: pass.to_string(),
            mechs: v,
            bad_server_signature: false,
        })
    }

    /// The EHLO keyword line.
    pub fn ehlo_keyword(&self) -> String {
        format!("AUTH {}", self.mechs.join(" "))
    }
}

/// The end of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub mech: String,
    /// The authentication id the client gave (empty if it never got that far).
    pub user: String,
}

/// What the session must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <text>` and feed the client's next line to `Exchange::next`.
    Challenge(String),
    /// Send this error reply; the exchange is over without a verdict.
    Reply(u16, String),
    /// Send the final reply for this verdict (scriptable).
    Done(Verdict),
}

enum State {
    Plain,
    LoginUser,
    LoginPass { user: String },
    Cram { challenge: String },
    ScramFirst(Hash),
    ScramFinal(Box<ScramServer>),
    ScramAck { user: String },
}

struct ScramServer {
    hash: Hash,
    user: String,
    gs2: String,
    nonce: String,
    auth_prefix: String,
    keys: mech::ScramKeys,
}

/// One AUTH exchange.
pub struct Exchange<'a> {
    cfg: &'a AuthConfig,
    mech: String,
    state: State,
}

fn decode(line: &[u8]) -> Option<Vec<u8>> {
    // RFC 4954: "=" stands for an empty initial response.
    if line == b"=" {
        return Some(Vec::new());
    }
    B64.decode(line).ok()
}

fn cannot_decode() -> Step {
    Step::Reply(501, "5.5.2 Cannot decode response".into())
}

impl<'a> Exchange<'a> {
    /// Start an exchange for `AUTH mech [initial-response]`.
    pub fn start(
        cfg: &'a AuthConfig,
        hostname: &str,
        mech_name: &[u8],
        initial: Option<&[u8]>,
    ) -> (Option<Exchange<'a>>, Step) {
        let name = String::from_utf8_lossy(mech_name).to_ascii_uppercase();
        let known =
            mech::Mech::from_name(&name).filter(|m| cfg.mechs.iter().any(|c| c == m.name()));
        let Some(m) = known else {
            return (
                None,
                Step::Reply(504, "5.5.4 Unsupported authentication mechanism".into()),
            );
        };
        let state = match m {
            mech::Mech::Plain => State::Plain,
            mech::Mech::Login => State::LoginUser,
            mech::Mech::CramMd5 => {
                // Unique per exchange, in the RFC 2195 form <random.time@host>.
                let rnd = u64::from_be_bytes(mech::random_bytes(8).try_into().unwrap_or([0; 8]));
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                State::Cram {
                    challenge: format!("<{rnd}.{secs}@{hostname}>"),
                }
            }
            mech::Mech::ScramSha1 => State::ScramFirst(Hash::Sha1),
            mech::Mech::ScramSha256 => State::ScramFirst(Hash::Sha256),
        };
        let mut x = Exchange {
            cfg,
            mech: m.name().to_string(),
            state,
        };
        let step = match (initial, &x.state) {
            // CRAM-MD5 has no initial response; the server speaks first.
            (_, State::Cram { challenge }) => Step::Challenge(B64.encode(challenge)),
            (Some(ir), _) => x.next(ir),
            (None, State::LoginUser) => Step::Challenge(B64.encode("Username:")),
            (None, _) => Step::Challenge(String::new()),
        };
        let keep = matches!(step, Step::Challenge(_));
        (keep.then_some(x), step)
    }

    fn verdict(&self, ok: bool, user: &str) -> Step {
        Step::Done(Verdict {
            ok,
            mech: self.mech.clone(),
            user: user.to_string(),
        })
    }

    /// Feed one client line (without CRLF). The session handles "*" itself.
    pub fn next(&mut self, line: &[u8]) -> Step {
        let Some(data) = decode(line) else {
            return cannot_decode();
        };
        let cfg = self.cfg;
        match std::mem::replace(&mut self.state, State::Plain) {
            State::Plain => {
                let mut parts = data.split(|&b| b == 0);
                let (Some(authz), Some(authc), Some(pass), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Step::Reply(501, "5.5.2 Invalid PLAIN response".into());
                };
                let user = String::from_utf8_lossy(authc).into_owned();
                let ok = authc == cfg.user.as_bytes()
                    && mech::ct_eq(pass, cfg.pass.as_bytes())
                    && (authz.is_empty() || authz == authc);
                self.verdict(ok, &user)
            }
            State::LoginUser => {
                self.state = State::LoginPass {
                    user: String::from_utf8_lossy(&data).into_owned(),
                };
                Step::Challenge(B64.encode("Password:"))
            }
            State::LoginPass { user } => {
                let ok = user == cfg.user && mech::ct_eq(&data, cfg.pass.as_bytes());
                self.verdict(ok, &user)
            }
            State::Cram { challenge } => {
                let text = String::from_utf8_lossy(&data).into_owned();
                let Some((user, _digest)) = text.rsplit_once(' ') else {
                    return Step::Reply(501, "5.5.2 Invalid CRAM-MD5 response".into());
                };
                let want = mech::cram_md5_response(&cfg.user, &cfg.pass, challenge.as_bytes());
                let ok = user == cfg.user && mech::ct_eq(&data, &want);
                self.verdict(ok, user)
            }
            State::ScramFirst(hash) => self.scram_first(hash, &data),
            State::ScramFinal(s) => self.scram_final(*s, &data),
            // The client acknowledges our server-final message with an empty response.
            State::ScramAck { user } => self.verdict(data.is_empty(), &user),
        }
    }

    fn scram_first(&mut self, hash: Hash, data: &[u8]) -> Step {
        let bad = || Step::Reply(501, "5.5.2 Invalid SCRAM client-first message".into());
        let Ok(msg) = std::str::from_utf8(data) else {
            return bad();
        };
        // gs2-header: cbind flag, optional authzid, then the bare message.
        let mut it = msg.splitn(3, ',');
        let (Some(cb), Some(authz), Some(bare)) = (it.next(), it.next(), it.next()) else {
            return bad();
        };
        if cb != "n" && cb != "y" {
            // Channel binding ("p=") is not offered, so a client must not ask for it.
            return bad();
        }
        let attrs = mech::scram_attrs(bare);
        let get = |k: char| attrs.iter().find(|(a, _)| *a == k).map(|(_, v)| *v);
        let (Some(uname), Some(cnonce)) = (get('n'), get('r')) else {
            return bad();
        };
        let Some(user) = mech::scram_unescape(uname) else {
            return bad();
        };
        if !authz.is_empty() {
            let same = authz
                .strip_prefix("a=")
                .and_then(mech::scram_unescape)
                .is_some_and(|a| a == user);
            if !same {
                return self.verdict(false, &user);
            }
        }
        let salt = mech::random_bytes(16);
        let nonce = format!("{cnonce}{}", B64.encode(mech::random_bytes(18)));
        let server_first = format!("r={nonce},s={},i={SCRAM_ITERATIONS}", B64.encode(&salt));
        // An unknown user still gets a full exchange (with keys no password produces), so
        // the failure only shows at the end, as with a real server.
        let pass = if user == self.cfg.user {
            self.cfg.pass.clone()
        } else {
            B64.encode(mech::random_bytes(18))
        };
        let keys = mech::scram_keys(hash, &pass, &salt, SCRAM_ITERATIONS);
        self.state = State::ScramFinal(Box::new(ScramServer {
            hash,
            user,
            gs2: format!("{cb},{authz},"),
            nonce,
            auth_prefix: format!("{bare},{server_first}"),
            keys,
        }));
        Step::Challenge(B64.encode(server_first))
    }

    fn scram_final(&mut self, s: ScramServer, data: &[u8]) -> Step {
        let fail = |x: &Self| x.verdict(false, &s.user);
        let Ok(msg) = std::str::from_utf8(data) else {
            return fail(self);
        };
        let Some((without_proof, proof)) = msg.rsplit_once(",p=") else {
            return fail(self);
        };
        let attrs = mech::scram_attrs(without_proof);
        let get = |k: char| attrs.iter().find(|(a, _)| *a == k).map(|(_, v)| *v);
        let binding_ok = get('c') == Some(B64.encode(s.gs2.as_bytes()).as_str());
        let nonce_ok = get('r') == Some(s.nonce.as_str());
        let Ok(proof) = B64.decode(proof) else {
            return fail(self);
        };
        let auth_message = format!("{},{without_proof}", s.auth_prefix);
        let client_sig = s.hash.hmac(&s.keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        let proof_ok = proof.len() == client_sig.len()
            && mech::ct_eq(&s.hash.digest(&client_key), &s.keys.stored_key);
        if !(binding_ok && nonce_ok && proof_ok && s.user == self.cfg.user) {
            return fail(self);
        }
        let mut server_sig = s.hash.hmac(&s.keys.server_key, auth_message.as_bytes());
        if self.cfg.bad_server_signature
            && let Some(b) = server_sig.first_mut()
        {
            *b ^= 0xff;
        }
        self.state = State::ScramAck { user: s.user };
        Step::Challenge(B64.encode(format!("v={}", B64.encode(server_sig))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::mech::{Client, Credentials, Mech};

    fn cfg() -> AuthConfig {
        AuthConfig::new("joe", "s3cr:et", None).unwrap()
    }

    /// Run a client mechanism against the server machine; the verdict, if reached.
    fn run(cfg: &AuthConfig, mech: Mech, pass: &str) -> Option<Verdict> {
        let creds = Credentials {
            username: "joe".into(),
            password: pass.into(),
        };
        let (mut client, ir) = Client::start(mech, &creds, false);
        let ir = ir.map(|b| B64.encode(b));
        let (mut x, mut step) = Exchange::start(
            cfg,
            "sink.test",
            mech.name().as_bytes(),
            ir.as_deref().map(str::as_bytes),
        );
        loop {
            match step {
                Step::Done(v) => return Some(v),
                Step::Reply(..) => return None,
                Step::Challenge(c) => {
                    let decoded = B64.decode(c).ok()?;
                    let out = client.step(&decoded).ok()?;
                    step = x.as_mut()?.next(B64.encode(out).as_bytes());
                }
            }
        }
    }

    #[test]
    fn every_mechanism_verifies() {
        let c = cfg();
        for m in Mech::ALL {
            let v = run(&c, m, "s3cr:et").unwrap();
            assert!(v.ok, "{m:?}");
            assert_eq!((v.mech.as_str(), v.user.as_str()), (m.name(), "joe"));
            let bad = run(&c, m, "wrong");
            assert!(bad.is_none_or(|v| !v.ok), "{m:?} accepted a wrong password");
        }
    }

    #[test]
    fn bad_server_signature_is_caught_by_client() {
        let mut c = cfg();
        c.bad_server_signature = true;
        assert_eq!(run(&c, Mech::ScramSha256, "s3cr:et"), None);
    }

    #[test]
    fn mechanism_list_and_errors() {
        assert!(AuthConfig::new("u", "p", Some("PLAIN NTLM")).is_err());
        assert!(AuthConfig::new("u", "p", Some("")).is_err());
        let c = AuthConfig::new("u", "p", Some("plain,login")).unwrap();
        assert_eq!(c.ehlo_keyword(), "AUTH PLAIN LOGIN");
        let (x, s) = Exchange::start(&c, "h", b"CRAM-MD5", None);
        assert!(x.is_none());
        assert!(matches!(s, Step::Reply(504, _)));
        let (_, s) = Exchange::start(&c, "h", b"PLAIN", Some(b"!!!"));
        assert_eq!(s, cannot_decode());
        let (_, s) = Exchange::start(&c, "h", b"PLAIN", Some(b"="));
        assert!(matches!(s, Step::Reply(501, _)));
        let (x, s) = Exchange::start(&c, "h", b"LOGIN", None);
        assert_eq!(s, Step::Challenge("VXNlcm5hbWU6".into()));
        assert!(x.is_some());
    }

    #[test]
    fn command_line_options() {
        use crate::sink::SinkConfig;
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = SinkConfig::from_args(&args(&[
            "--auth-user",
            "joe",
            "--auth-pass",
            "pw",
            "--auth-mechs",
            "cram-md5 plain",
            ":25",
        ]))
        .unwrap();
        let a = c.auth.unwrap();
        assert_eq!((a.user.as_str(), a.pass.as_str()), ("joe", "pw"));
        assert_eq!(a.mechs, ["CRAM-MD5", "PLAIN"]);
        assert!(!a.bad_server_signature);
        assert!(SinkConfig::from_args(&args(&["--auth-pass", "pw", ":25"])).is_err());
        assert!(
            SinkConfig::from_args(&args(&["--auth-user", "u", "--auth-mechs", "NTLM", ":25"]))
                .is_err()
        );
        let c = SinkConfig::from_args(&args(&["--auth-user", "u", ":25"])).unwrap();
        assert_eq!(c.auth.unwrap().mechs.len(), 5);
    }
}
