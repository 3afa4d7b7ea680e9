//! cidr: tables and the address/prefix matching shared with match lists (Postfix's
//! dict_cidr.c and cidr_match.c). Address text is parsed with the C library's
//! inet_pton(), so what counts as a valid address is exactly what Postfix accepts.

use super::text::{self, is_space};
use super::{Dict, TableError};
use std::ffi::CString;

/// A parsed address/prefix pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Cidr {
    v6: bool,
    net: [u8; 16],
    mask: [u8; 16],
    bits: u32,
}

fn family_len(v6: bool) -> usize {
    if v6 { 16 } else { 4 }
}

unsafe extern "C" {
    // Not bound by the libc crate; glibc's, so parsing is exactly what Postfix sees.
    fn inet_pton(af: libc::c_int, src: *const libc::c_char, dst: *mut libc::c_void) -> libc::c_int;
}

/// inet_pton() for the family Postfix picks: IPv6 when the text has a colon.
pub fn pton(text: &str) -> Option<(bool, [u8; 16])> {
    let v6 = text.contains(':');
    let c = CString::new(text).ok()?;
    let mut buf = [0u8; 16];
    let af = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: buf has room for either address family; c is NUL-terminated.
    let rc = unsafe { inet_pton(af, c.as_ptr(), buf.as_mut_ptr().cast()) };
    (rc == 1).then_some((v6, buf))
}

fn ntop(v6: bool, bytes: &[u8; 16]) -> String {
    if v6 {
        std::net::Ipv6Addr::from(*bytes).to_string()
    } else {
        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
    }
}

fn apply_mask(bytes: &mut [u8; 16], len: usize, bits: u32) {
    for (i, b) in bytes.iter_mut().enumerate().take(len) {
        let keep = bits.saturating_sub(8 * i as u32).min(8);
        *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
}

impl Cidr {
    /// Parse `addr`, `addr/len`, `[addr]`, `[addr]/len` or `[addr/len]`. Errors carry
    /// Postfix's wording.
    pub fn parse(pattern: &str) -> Result<Cidr, String> {
        let (addr, mask): (&str, Option<&str>) = if let Some(rest) = pattern.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                return Err(format!("missing ']' character after \"[{rest}\""));
            };
            let (inside, after) = (&rest[..close], &rest[close + 1..]);
            if let Some(m) = after.strip_prefix('/') {
                (inside, Some(m))
            } else if !after.is_empty() {
                return Err(format!("garbage after \"[{inside}]\""));
            } else {
                match inside.split_once('/') {
                    Some((a, m)) => (a, Some(m)),
                    None => (inside, None),
                }
            }
        } else {
            match pattern.split_once('/') {
                Some((a, m)) => (a, Some(m)),
                None => (pattern, None),
            }
        };
        let v6 = addr.contains(':');
        let len = family_len(v6);
        let all = 8 * len as u32;
        match mask {
            Some(m) => {
                let err = if !m.bytes().all(|b| b.is_ascii_digit()) {
                    Some("bad mask value")
                } else if m.parse::<u32>().map(|n| n > all).unwrap_or(!m.is_empty()) {
                    Some("bad mask length")
                } else if pton(addr).is_none() {
                    Some("bad network value")
                } else {
                    None
                };
                if let Some(e) = err {
                    return Err(format!("{e} in \"{addr}/{m}\""));
                }
                // An empty mask is all digits and atoi("") is 0 in Postfix.
                let bits = m.parse::<u32>().unwrap_or(0);
                let (_, net) =
                    pton(addr).ok_or_else(|| format!("bad network value in \"{addr}/{m}\""))?;
                let mut mask_bytes = [0u8; 16];
                for b in mask_bytes.iter_mut().take(len) {
                    *b = 0xff;
                }
                apply_mask(&mut mask_bytes, len, bits);
                let mut masked = net;
                apply_mask(&mut masked, len, bits);
                if masked[..len] != net[..len] {
                    return Err(format!(
                        "non-null host address bits in \"{addr}/{m}\", perhaps you should use \"{}/{bits}\" instead",
                        ntop(v6, &masked)
                    ));
                }
                Ok(Cidr {
                    v6,
                    net,
                    mask: mask_bytes,
                    bits,
                })
            }
            None => {
                let Some((_, net)) = pton(addr) else {
                    return Err(format!("bad address pattern: \"{addr}\""));
                };
                let mut mask_bytes = [0u8; 16];
                for b in mask_bytes.iter_mut().take(len) {
                    *b = 0xff;
                }
                Ok(Cidr {
                    v6,
                    net,
                    mask: mask_bytes,
                    bits: all,
                })
            }
        }
    }

    /// Does an address (already converted) fall in this prefix?
    pub fn contains(&self, v6: bool, addr: &[u8; 16]) -> bool {
        if v6 != self.v6 {
            return false;
        }
        let len = family_len(v6);
        (0..len).all(|i| addr[i] & self.mask[i] == self.net[i])
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }
}

#[derive(Debug)]
enum Op {
    Match {
        cidr: Cidr,
        positive: bool,
        value: String,
    },
    If {
        cidr: Cidr,
        positive: bool,
        end: Option<usize>,
    },
    Endif,
}

/// A parsed cidr: table.
#[derive(Debug)]
pub struct CidrTable {
    ops: Vec<Op>,
    pub warnings: Vec<String>,
}

impl CidrTable {
    pub fn parse(name: &str, data: &[u8]) -> CidrTable {
        let mut warnings = Vec::new();
        let lines = text::logical_lines(data, &mut warnings, name);
        let mut ops = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        for (lineno, raw) in lines {
            let line = String::from_utf8_lossy(&raw).into_owned();
            match parse_rule(&line, !stack.is_empty()) {
                Ok(op) => {
                    match &op {
                        Op::If { .. } => stack.push(ops.len()),
                        Op::Endif => {
                            if let Some(i) = stack.pop() {
                                let here = ops.len();
                                if let Some(Op::If { end, .. }) = ops.get_mut(i) {
                                    *end = Some(here);
                                }
                            }
                        }
                        Op::Match { .. } => {}
                    }
                    ops.push(op);
                }
                Err(why) => warnings.push(format!(
                    "cidr map {name}, line {lineno}: {why}: skipping this rule"
                )),
            }
        }
        // Postfix 3.7's cidr_match reports an IF without ENDIF here too.
        for i in stack.into_iter().rev() {
            warnings.push(format!(
                "cidr map {name}: IF at rule {} has no matching ENDIF",
                i + 1
            ));
        }
        CidrTable { ops, warnings }
    }

    pub fn lookup_str(&self, key: &str) -> Option<&str> {
        let (v6, addr) = pton(key)?;
        let mut i = 0;
        while i < self.ops.len() {
            match &self.ops[i] {
                Op::Match {
                    cidr,
                    positive,
                    value,
                } => {
                    if cidr.v6 == v6 && cidr.contains(v6, &addr) == *positive {
                        return Some(value);
                    }
                }
                Op::If {
                    cidr,
                    positive,
                    end,
                } => {
                    if !(cidr.v6 == v6 && cidr.contains(v6, &addr) == *positive) {
                        match end {
                            Some(e) => i = *e,
                            None => return None,
                        }
                    }
                }
                Op::Endif => {}
            }
            i += 1;
        }
        None
    }
}

fn skip_negations(mut s: &str) -> (bool, &str) {
    let mut positive = true;
    loop {
        if let Some(r) = s.strip_prefix('!') {
            positive = !positive;
            s = r;
        } else if s.as_bytes().first().is_some_and(|&b| is_space(b)) {
            s = &s[1..];
        } else {
            return (positive, s);
        }
    }
}

fn keyword<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let b = line.as_bytes();
    if b.len() >= word.len()
        && b[..word.len()].eq_ignore_ascii_case(word.as_bytes())
        && !b.get(word.len()).is_some_and(|c| c.is_ascii_alphanumeric())
    {
        Some(&line[word.len()..])
    } else {
        None
    }
}

fn parse_rule(line: &str, nested: bool) -> Result<Op, String> {
    let trim =
        |s: &str| -> String { String::from_utf8_lossy(text::trim_end(s.as_bytes())).into_owned() };
    if let Some(rest) = keyword(line, "IF") {
        let (positive, rest) = skip_negations(rest);
        if rest.is_empty() {
            return Err("no address pattern".into());
        }
        let cidr = Cidr::parse(&trim(rest))?;
        return Ok(Op::If {
            cidr,
            positive,
            end: None,
        });
    }
    if let Some(rest) = keyword(line, "ENDIF") {
        if !text::trim_start(rest.as_bytes()).is_empty() {
            return Err("garbage after ENDIF".into());
        }
        if !nested {
            return Err("ENDIF without IF".into());
        }
        return Ok(Op::Endif);
    }
    let (positive, rest) = skip_negations(line);
    let end = rest.bytes().position(is_space).unwrap_or(rest.len());
    let pattern = &rest[..end];
    let value = trim(std::str::from_utf8(text::trim_start(&rest.as_bytes()[end..])).unwrap_or(""));
    if pattern.is_empty() {
        return Err("no address pattern".into());
    }
    let cidr = Cidr::parse(pattern)?;
    if value.is_empty() {
        return Err("no lookup result".into());
    }
    Ok(Op::Match {
        cidr,
        positive,
        value,
    })
}

impl Dict for CidrTable {
    fn lookup(&self, key: &str) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self.lookup_str(key).map(|v| v.as_bytes().to_vec()))
    }
    fn fixed(&self) -> bool {
        false
    }
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}
