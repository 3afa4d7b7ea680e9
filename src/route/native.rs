//! Host lookups through the system resolver (getaddrinfo: /etc/hosts, nsswitch), for
//! smtp_host_lookup = native and for when DNS lookups are disabled. MX records cannot be
//! had this way, so `mx` always answers "not found".

use super::select::{Lookup, LookupError, Mx};
use std::ffi::{CStr, CString};
use std::net::IpAddr;

pub struct Native;

fn gai_text(code: i32) -> String {
    // SAFETY: gai_strerror returns a pointer to a static string for any code.
    unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

/// getaddrinfo for one name, addresses in the order returned, duplicates removed.
pub fn getaddrinfo(host: &str) -> Result<Vec<IpAddr>, (i32, String)> {
    let c = CString::new(host).map_err(|_| (libc::EAI_NONAME, gai_text(libc::EAI_NONAME)))?;
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_family = libc::AF_UNSPEC;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string, zeroed hints, out-pointer freed below.
    let rc = unsafe { libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        return Err((rc, gai_text(rc)));
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p walks the list getaddrinfo returned; sockaddr lengths are checked.
        let ai = unsafe { &*p };
        if !ai.ai_addr.is_null() {
            match ai.ai_family {
                libc::AF_INET
                    if ai.ai_addrlen as usize >= std::mem::size_of::<libc::sockaddr_in>() =>
                {
                    let sin = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ));
                }
                libc::AF_INET6
                    if ai.ai_addrlen as usize >= std::mem::size_of::<libc::sockaddr_in6>() =>
                {
                    let sin6 = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from a successful getaddrinfo.
    unsafe { libc::freeaddrinfo(res) };
    let mut seen = Vec::new();
    for a in out {
        if !seen.contains(&a) {
            seen.push(a);
        }
    }
    Ok(seen)
}

impl Lookup for Native {
    fn mx(&self, domain: &str) -> Result<Vec<Mx>, LookupError> {
        Err(LookupError::NotFound(format!(
            "no MX lookup for {domain} with the native resolver"
        )))
    }

    fn host(&self, host: &str, want4: bool, want6: bool) -> Result<Vec<IpAddr>, LookupError> {
        match getaddrinfo(host) {
            Ok(v) => {
                let v: Vec<IpAddr> = v
                    .into_iter()
                    .filter(|a| (a.is_ipv4() && want4) || (a.is_ipv6() && want6))
                    .collect();
                if v.is_empty() {
                    Err(LookupError::NotFound(format!("{host}: host not found")))
                } else {
                    Ok(v)
                }
            }
            Err((code, text)) => {
                let text = format!("unable to look up host {host}: {text}");
                if code == libc::EAI_AGAIN || code == libc::EAI_MEMORY || code == libc::EAI_SYSTEM {
                    Err(LookupError::Retry(text))
                } else {
                    Err(LookupError::NotFound(text))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_and_literals() {
        let v = Native.host("localhost", true, true).unwrap_or_default();
        assert!(v.iter().any(|a| a.is_loopback()), "{v:?}");
        let e = Native.host("no-such-host.invalid", true, true);
        assert!(
            matches!(
                e,
                Err(LookupError::NotFound(_)) | Err(LookupError::Retry(_))
            ),
            "{e:?}"
        );
    }
}
