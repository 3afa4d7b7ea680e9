//! Certificate and public-key fingerprints in Postfix's format: upper-case hex bytes
//! separated by colons, over the DER certificate or the DER SubjectPublicKeyInfo.

use openssl::hash::{MessageDigest, hash};
use openssl::x509::X509Ref;

/// The digest named by smtp_tls_fingerprint_digest (OpenSSL names, any case).
pub fn digest_by_name(name: &str) -> Option<MessageDigest> {
    MessageDigest::from_name(&name.to_ascii_lowercase())
}

/// Upper-case colon-separated hex, e.g. `AB:01:FF`.
pub fn encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// Decodes a configured fingerprint: hex digit pairs, each optionally followed by one
/// colon (so both `AB:CD` and `abcd` work). `None` when malformed.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    let mut i = 0;
    while i < b.len() {
        let hi = char::from(*b.get(i)?).to_digit(16)?;
        let lo = char::from(*b.get(i + 1)?).to_digit(16)?;
        out.push(u8::try_from(hi * 16 + lo).ok()?);
        i += 2;
        if i < b.len() && b[i] == b':' {
            i += 1;
            if i == b.len() {
                return None;
            }
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Fingerprint of the whole certificate.
pub fn cert_fprint(cert: &X509Ref, md: MessageDigest) -> Option<String> {
    let der = cert.to_der().ok()?;
    Some(encode(&hash(md, &der).ok()?))
}

/// Fingerprint of the certificate's public key (DER SubjectPublicKeyInfo).
pub fn pkey_fprint(cert: &X509Ref, md: MessageDigest) -> Option<String> {
    let der = cert.public_key().ok()?.public_key_to_der().ok()?;
    Some(encode(&hash(md, &der).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_format() {
        assert_eq!(encode(&[0xab, 0x01, 0xff]), "AB:01:FF");
        assert_eq!(encode(&[]), "");
        let md5 = hash(MessageDigest::md5(), b"").unwrap();
        assert_eq!(
            encode(&md5),
            "D4:1D:8C:D9:8F:00:B2:04:E9:80:09:98:EC:F8:42:7E"
        );
    }

    #[test]
    fn decode_forms() {
        assert_eq!(decode("AB:01:ff"), Some(vec![0xab, 0x01, 0xff]));
        assert_eq!(decode("ab01FF"), Some(vec![0xab, 0x01, 0xff]));
        assert_eq!(decode("AB:01:"), None);
        assert_eq!(decode("AB::01"), None);
        assert_eq!(decode("ABC"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode(""), None);
    }

    #[test]
    fn digest_names() {
        for n in ["md5", "sha1", "sha256", "SHA512"] {
            assert!(digest_by_name(n).is_some(), "{n}");
        }
        assert!(digest_by_name("nosuch").is_none());
    }
}
